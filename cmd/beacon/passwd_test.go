package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/beaconmq/beacon/mqtt"
)

// runPasswd runs `beacon passwd args...` with stdin and returns the exit
// code and standard error.
func runPasswd(t *testing.T, stdin string, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := passwd(args, strings.NewReader(stdin), &out, &errb)
	return code, errb.String()
}

// authOK reports whether user/password authenticates against file.
func authOK(t *testing.T, file, user, pw string) bool {
	t.Helper()
	pf, err := mqtt.LoadPasswordFile(file)
	if err != nil {
		t.Fatalf("the file beacon passwd wrote does not load: %v", err)
	}
	return pf.Authenticate(&mqtt.AuthRequest{Username: user, HasUsername: true, Password: []byte(pw), HasPassword: true}) == nil
}

// beacon passwd in stdin mode creates the file (0600), adds, updates and
// deletes users, and keeps comments and the other users.
func TestPasswdStdin(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	if code, stderr := runPasswd(t, "s3cret\n", "-cost", "4", file, "alice"); code != exitOK {
		t.Fatalf("create: exit %d: %s", code, stderr)
	}
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("new file mode %v, want 0600", st.Mode().Perm())
	}
	if !authOK(t, file, "alice", "s3cret") || authOK(t, file, "alice", "wrong") {
		t.Fatal("alice's password does not check out")
	}

	// Comments survive; bob is added with a SCRAM credential (no trailing
	// newline on stdin is fine).
	data, _ := os.ReadFile(file)
	if err := os.WriteFile(file, append([]byte("# fleet users\n"), data...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o640); err != nil {
		t.Fatal(err)
	}
	if code, stderr := runPasswd(t, "builder", "--scram", file, "bob"); code != exitOK {
		t.Fatalf("add bob: exit %d: %s", code, stderr)
	}
	if code, stderr := runPasswd(t, "n3w\r\n", "-cost", "4", file, "alice"); code != exitOK {
		t.Fatalf("update alice: exit %d: %s", code, stderr)
	}
	data, _ = os.ReadFile(file)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 3 || lines[0] != "# fleet users" || !strings.HasPrefix(lines[1], "alice:$2a$04$") || !strings.HasPrefix(lines[2], "bob:$scram-sha-256$4096$") {
		t.Fatalf("file after update:\n%s", data)
	}
	if authOK(t, file, "alice", "s3cret") || !authOK(t, file, "alice", "n3w") || !authOK(t, file, "bob", "builder") {
		t.Fatal("passwords after update do not check out")
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o640 {
		t.Errorf("mode of an existing file changed to %v", st.Mode().Perm())
	}

	if code, stderr := runPasswd(t, "", "-D", file, "alice"); code != exitOK {
		t.Fatalf("delete: exit %d: %s", code, stderr)
	}
	if authOK(t, file, "alice", "n3w") || !authOK(t, file, "bob", "builder") {
		t.Fatal("after deleting alice")
	}
	if code, _ := runPasswd(t, "", "-D", file, "alice"); code != exitFailure {
		t.Errorf("deleting an absent user: exit %d, want 1", code)
	}
	entries, _ := os.ReadDir(filepath.Dir(file))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestPasswdErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "passwd")
	for _, tc := range []struct {
		stdin string
		args  []string
		code  int
		msg   string
	}{
		{"pw\n", []string{file}, exitUsage, "want FILE USER"},
		{"pw\n", []string{file, "a:b"}, exitUsage, "contains ':'"},
		{"pw\n", []string{file, "#x"}, exitUsage, "starts with '#'"},
		{"pw\n", []string{file, " x"}, exitUsage, "white space"},
		{"pw\n", []string{"-cost", "99", file, "x"}, exitUsage, "-cost 99"},
		{"", []string{file, "x"}, exitFailure, "no password on standard input"},
		{"\n", []string{file, "x"}, exitFailure, "empty password"},
		{strings.Repeat("p", 73) + "\n", []string{file, "x"}, exitFailure, "longer than 72 bytes"},
		{"pw\n", []string{filepath.Join(dir, "missing", "passwd"), "x"}, exitFailure, "no such file"},
	} {
		code, stderr := runPasswd(t, tc.stdin, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%v: exit %d %q, want %d and %q", tc.args, code, stderr, tc.code, tc.msg)
		}
	}
	if _, err := os.Stat(file); err == nil {
		t.Error("a failed run created the file")
	}
	// A broken line is not silently carried over.
	if err := os.WriteFile(file, []byte("carol:plain\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, stderr := runPasswd(t, "pw\n", "-cost", "4", file, "dave"); code != exitFailure || !strings.Contains(stderr, file+":1") {
		t.Errorf("broken file: exit %d %q", code, stderr)
	}
}

// The command line dispatches to passwd.
func TestPasswdCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(t.Context(), func() {}, []string{"passwd", "-h"}, &out, &errb); code != exitOK || !strings.Contains(errb.String(), "Usage: beacon passwd") {
		t.Errorf("beacon passwd -h: exit %d, %q", code, errb.String())
	}
}

// On a terminal beacon passwd prompts twice and refuses two different
// answers. The terminal is a pseudo-terminal made by script(1); whether
// the typed text is echoed cannot be checked this way (script writes the
// input into the terminal before the prompt switches echo off).
func TestPasswdTerminal(t *testing.T) {
	scriptPath, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script (util-linux) is not installed: no pseudo-terminal to run the prompts on")
	}
	file := filepath.Join(t.TempDir(), "passwd")
	run := func(input, user string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, scriptPath, "-qec", beaconBin+" passwd -cost 4 "+file+" "+user, "/dev/null")
		cmd.Stdin = strings.NewReader(input)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("abc123\nabc123\n", "alice")
	if err != nil || !strings.Contains(out, "Password: ") || !strings.Contains(out, "Reenter password: ") {
		t.Fatalf("two prompts: %v\n%s", err, out)
	}
	if !authOK(t, file, "alice", "abc123") {
		t.Fatal("the password typed at the prompts does not check out")
	}
	out, err = run("abc\nxyz\n", "bob")
	if err == nil || !strings.Contains(out, "do not match") {
		t.Fatalf("different answers: %v\n%s", err, out)
	}
	if authOK(t, file, "bob", "abc") {
		t.Fatal("bob added although the answers differed")
	}
}
