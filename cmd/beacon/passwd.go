package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"github.com/beaconmq/beacon/mqtt"
)

const passwdUsage = `Usage: beacon passwd [flags] FILE USER

Adds USER to the password file FILE, or changes its password; with -D
removes it. FILE is created (mode 0600) when it does not exist, and always
rewritten atomically (a new file renamed over the old one), keeping comments
and other users as they were. The password is asked for twice on a
terminal; otherwise one line is read from standard input:

  echo "$PASSWORD" | beacon passwd /etc/beacon/passwd alice

A running broker reads the change on SIGHUP. See docs/security.md.

Flags:
`

// passwd is `beacon passwd`. It returns the exit code: 0 done, 1 the file
// could not be read or written (or the user to delete is absent), 2 a
// usage error.
func passwd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("beacon passwd", flag.ContinueOnError)
	flags.SetOutput(stderr)
	del := flags.Bool("D", false, "delete USER from FILE")
	scram := flags.Bool("scram", false, "store a SCRAM-SHA-256 credential instead of a bcrypt hash: the user can then log in with MQTT 5.0 enhanced authentication (SCRAM-SHA-256) as well as with a plain password")
	cost := flags.Int("cost", 10, "bcrypt cost (4 to 31)")
	iterations := flags.Int("iterations", mqtt.SCRAMIterations, "PBKDF2 iterations of a SCRAM credential (at least 4096)")
	flags.Usage = func() {
		fmt.Fprint(flags.Output(), passwdUsage)
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if flags.NArg() != 2 {
		fmt.Fprintf(stderr, "beacon passwd: want FILE USER, got %d arguments\n\n", flags.NArg())
		flags.Usage()
		return exitUsage
	}
	file, user := flags.Arg(0), flags.Arg(1)
	if err := validUsername(user); err != nil {
		fmt.Fprintf(stderr, "beacon passwd: user name %q: %v\n", user, err)
		return exitUsage
	}
	if *cost < bcrypt.MinCost || *cost > bcrypt.MaxCost {
		fmt.Fprintf(stderr, "beacon passwd: -cost %d: use %d to %d\n", *cost, bcrypt.MinCost, bcrypt.MaxCost)
		return exitUsage
	}
	if *iterations < 4096 {
		fmt.Fprintf(stderr, "beacon passwd: -iterations %d: use at least 4096 (RFC 7677)\n", *iterations)
		return exitUsage
	}

	lines, mode, err := readPasswdLines(file)
	if err != nil {
		fmt.Fprintf(stderr, "beacon passwd: %v\n", err)
		return exitFailure
	}
	at := -1
	for i, l := range lines {
		if u, _, ok := strings.Cut(strings.TrimSpace(l), ":"); ok && !strings.HasPrefix(strings.TrimSpace(l), "#") && u == user {
			at = i
			break
		}
	}
	if *del {
		if at < 0 {
			fmt.Fprintf(stderr, "beacon passwd: user %q is not in %s\n", user, file)
			return exitFailure
		}
		lines = append(lines[:at], lines[at+1:]...)
	} else {
		pw, err := readPassword(stdin, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "beacon passwd: %v\n", err)
			return exitFailure
		}
		var hash string
		if *scram {
			hash, err = mqtt.NewSCRAMHash(pw, *iterations)
		} else {
			var h []byte
			h, err = bcrypt.GenerateFromPassword([]byte(pw), *cost)
			hash = string(h)
		}
		if err != nil {
			fmt.Fprintf(stderr, "beacon passwd: hashing: %v\n", err)
			return exitFailure
		}
		if at >= 0 {
			lines[at] = user + ":" + hash
		} else {
			lines = append(lines, user+":"+hash)
		}
	}
	data := []byte(strings.Join(lines, "\n"))
	if len(lines) > 0 {
		data = append(data, '\n')
	}
	// Never write a file the broker would refuse to load.
	if _, err := mqtt.ParsePasswordFile(data, file); err != nil {
		fmt.Fprintf(stderr, "beacon passwd: %v; fix that line first\n", err)
		return exitFailure
	}
	if err := writeFileAtomic(file, data, mode); err != nil {
		fmt.Fprintf(stderr, "beacon passwd: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// validUsername refuses names the password file cannot hold: empty, with
// ':' (the separator), control characters, surrounding spaces, or a
// leading '#' (a comment); MQTT allows at most 65535 bytes.
func validUsername(u string) error {
	switch {
	case u == "":
		return errors.New("empty")
	case len(u) > 65535:
		return errors.New("longer than 65535 bytes")
	case !utf8.ValidString(u):
		return errors.New("not valid UTF-8")
	case strings.Contains(u, ":"):
		return errors.New("contains ':'")
	case strings.HasPrefix(u, "#"):
		return errors.New("starts with '#'")
	case strings.TrimSpace(u) != u:
		return errors.New("starts or ends with white space")
	case strings.IndexFunc(u, unicode.IsControl) >= 0:
		return errors.New("contains a control character")
	}
	return nil
}

// readPasswdLines returns the lines of file (none when it does not exist)
// and the mode to write it back with (0600 for a new file).
func readPasswdLines(file string) ([]string, fs.FileMode, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0o600, nil
	}
	if err != nil {
		return nil, 0, err
	}
	mode := fs.FileMode(0o600)
	if st, err := os.Stat(file); err == nil {
		mode = st.Mode().Perm()
	}
	text := strings.TrimSuffix(string(data), "\n")
	if text == "" {
		return nil, mode, nil
	}
	return strings.Split(text, "\n"), mode, nil
}

// readPassword reads the password: twice without echo from a terminal,
// else one line from stdin.
func readPassword(stdin io.Reader, stderr io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && isTerminal(f) {
		pw, err := promptNoEcho(f, stderr, "Password: ")
		if err != nil {
			return "", err
		}
		again, err := promptNoEcho(f, stderr, "Reenter password: ")
		if err != nil {
			return "", err
		}
		if pw != again {
			return "", errors.New("the passwords do not match")
		}
		return checkPassword(pw)
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		if errors.Is(err, io.EOF) {
			return "", errors.New("no password on standard input")
		}
		return "", err
	}
	return checkPassword(strings.TrimRight(line, "\r\n"))
}

func checkPassword(pw string) (string, error) {
	if pw == "" {
		return "", errors.New("empty password")
	}
	if len(pw) > 72 {
		// bcrypt uses only the first 72 bytes; refusing is clearer than
		// silently ignoring the rest.
		return "", errors.New("password longer than 72 bytes")
	}
	return pw, nil
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// promptNoEcho prints prompt and reads a line from the terminal f with echo
// switched off (by stty, restored afterwards).
func promptNoEcho(f *os.File, out io.Writer, prompt string) (string, error) {
	fmt.Fprint(out, prompt)
	off := exec.Command("stty", "-echo")
	off.Stdin = f
	if err := off.Run(); err == nil {
		defer func() {
			on := exec.Command("stty", "echo")
			on.Stdin = f
			_ = on.Run()
		}()
	}
	line, err := bufio.NewReader(f).ReadString('\n')
	fmt.Fprintln(out)
	if err != nil && line == "" {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// writeFileAtomic replaces file with data: written to a temporary file in
// the same directory, synced, then renamed over it, so a reader (the
// broker on SIGHUP) sees either the old file or the new one, never half.
func writeFileAtomic(file string, data []byte, mode fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			_ = tmp.Close()
			_ = os.Remove(name)
		}
	}()
	if err := tmp.Chmod(mode); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(name, file); err != nil {
		return err
	}
	ok = true
	return nil
}
