package interop

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/beaconmq/beacon/mqtt"
	"github.com/beaconmq/beacon/storage"
)

// Authentication and ACLs seen by mosquitto_pub and mosquitto_sub with -u
// and -P: CONNACK codes of both protocol versions, SUBACK and PUBACK
// refusals, %u/%c patterns, and a reload under a connected client.

const authTestACL = `user alice
allow both alice/#
pattern readwrite users/%u/#
pattern readwrite devices/%c/#
`

// authBroker is a Beacon with a password file (alice/secret) and the ACL
// above, and the paths of both files.
type authBroker struct {
	srv         *mqtt.Server
	host, port  string
	passwd, acl string
}

func startAuthBeacon(t *testing.T, allowAnonymous bool) *authBroker {
	t.Helper()
	dir := t.TempDir()
	h, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	b := &authBroker{passwd: filepath.Join(dir, "passwd"), acl: filepath.Join(dir, "acl")}
	if err := os.WriteFile(b.passwd, []byte("# test users\nalice:"+string(h)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.acl, []byte(authTestACL), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := mqtt.DefaultOptions()
	opts.MQTTAddr, opts.WSAddr, opts.HTTPAddr = "127.0.0.1:0", "", ""
	opts.Store = storage.NewMemory()
	opts.PasswordFile, opts.ACLFile, opts.AllowAnonymous = b.passwd, b.acl, allowAnonymous
	if os.Getenv("BEACON_INTEROP_LOG") == "1" {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := mqtt.New(opts)
	if err != nil {
		t.Fatalf("mqtt.New: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		_ = opts.Store.Close()
	})
	b.srv = srv
	b.host, b.port, _ = strings.Cut(srv.MQTTAddr(), ":")
	return b
}

// mosq runs a mosquitto tool to completion with -d (debug output, which
// shows the CONNACK, SUBACK and PUBACK codes) and returns its exit code and
// combined output.
func (b *authBroker) mosq(t *testing.T, tool, version string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), procTimeout)
	defer cancel()
	all := append([]string{"-h", b.host, "-p", b.port, "-V", version, "-d"}, args...)
	out, err := exec.CommandContext(ctx, tool, all...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("%s: %v\n%s", tool, err, out)
	return 0, ""
}

// requireMosquittoClients finds mosquitto_pub, mosquitto_sub and stdbuf.
func requireMosquittoClients(t *testing.T) mosquittoClients {
	return mosquittoClients{
		pub:    requireTool(t, mosquittoPubPath, "mosquitto-clients"),
		sub:    requireTool(t, mosquittoSubPath, "mosquitto-clients"),
		stdbuf: requireTool(t, stdbufPath, "coreutils"),
	}
}

func mosquittoVersions() []struct{ name, flag, badCreds, notAuth, subDenied string } {
	return []struct{ name, flag, badCreds, notAuth, subDenied string }{
		{"v3.1.1", "mqttv311", "CONNACK (4)", "CONNACK (5)", "Subscribed (mid: 1): 128"},
		{"v5", "mqttv5", "CONNACK (134)", "CONNACK (135)", "Subscribed (mid: 1): 135"},
	}
}

// Password authentication: good password in, bad password and anonymous
// clients refused with each version's code.
func TestInteropAuthPasswords(t *testing.T) {
	pub := requireTool(t, mosquittoPubPath, "mosquitto-clients")
	b := startAuthBeacon(t, false)
	for _, v := range mosquittoVersions() {
		t.Run(v.name, func(t *testing.T) {
			if code, out := b.mosq(t, pub, v.flag, "-u", "alice", "-P", "secret", "-q", "1", "-t", "alice/x", "-m", "hi"); code != 0 || !strings.Contains(out, "CONNACK (0)") {
				t.Errorf("good password: exit %d\n%s", code, out)
			}
			if code, out := b.mosq(t, pub, v.flag, "-u", "alice", "-P", "wrong", "-t", "alice/x", "-m", "hi"); code == 0 || !strings.Contains(out, v.badCreds) {
				t.Errorf("bad password: exit %d, want %s\n%s", code, v.badCreds, out)
			}
			if code, out := b.mosq(t, pub, v.flag, "-u", "nobody", "-P", "secret", "-t", "alice/x", "-m", "hi"); code == 0 || !strings.Contains(out, v.badCreds) {
				t.Errorf("unknown user: exit %d, want %s\n%s", code, v.badCreds, out)
			}
			if code, out := b.mosq(t, pub, v.flag, "-t", "alice/x", "-m", "hi"); code == 0 || !strings.Contains(out, v.notAuth) {
				t.Errorf("anonymous: exit %d, want %s\n%s", code, v.notAuth, out)
			}
		})
	}
}

// allow_anonymous lets mosquitto_pub in without -u; a wrong password is
// still refused.
func TestInteropAuthAnonymousAllowed(t *testing.T) {
	pub := requireTool(t, mosquittoPubPath, "mosquitto-clients")
	b := startAuthBeacon(t, true)
	for _, v := range mosquittoVersions() {
		if code, out := b.mosq(t, pub, v.flag, "-t", "anything", "-m", "hi"); code != 0 || !strings.Contains(out, "CONNACK (0)") {
			t.Errorf("%s anonymous: exit %d\n%s", v.name, code, out)
		}
		if code, out := b.mosq(t, pub, v.flag, "-u", "alice", "-P", "wrong", "-t", "alice/x", "-m", "hi"); code == 0 || !strings.Contains(out, v.badCreds) {
			t.Errorf("%s bad password: exit %d\n%s", v.name, code, out)
		}
	}
}

// ACL: a denied subscription gets 128 (3.1.1) or 135 (5.0); a subscriber
// allowed through %u and %c receives what alice may publish, and not a
// message to another client's devices/ tree, which 5.0 mosquitto_pub is
// told about (PUBACK 135) and 3.1.1 is not.
func TestInteropAuthACL(t *testing.T) {
	m := requireMosquittoClients(t)
	b := startAuthBeacon(t, false)
	for _, v := range mosquittoVersions() {
		t.Run(v.name, func(t *testing.T) {
			if code, out := b.mosq(t, m.sub, v.flag, "-u", "alice", "-P", "secret", "-t", "bob/#", "-C", "1", "-W", "5"); !strings.Contains(out, v.subDenied) {
				t.Errorf("denied subscription: exit %d, want %q\n%s", code, v.subDenied, out)
			}
			dev := clientID(t.Name(), "dev")
			sub := startProc(t, parseMosquittoSub, "", m.stdbuf, "-oL", m.sub, "-h", b.host, "-p", b.port, "-V", v.flag,
				"-i", dev, "-u", "alice", "-P", "secret", "-q", "1", "-t", "devices/"+dev+"/#", "-t", "users/alice/#",
				"-d", "-F", "MSG|%q|%r|%t|%x", "-C", "1", "-W", "20")
			if ev := sub.waitFor(t, "subscribed", setupTimeout); len(ev.Granted) != 2 || ev.Granted[0] != 1 || ev.Granted[1] != 1 {
				t.Fatalf("SUBACK %v, want [1 1]\n%s", ev.Granted, sub.diag())
			}
			// alice publishing as another client: devices/%c is not hers.
			code, out := b.mosq(t, m.pub, v.flag, "-i", clientID(t.Name(), "pub"), "-u", "alice", "-P", "secret", "-q", "1", "-t", "devices/"+dev+"/in", "-m", "denied")
			if code != 0 {
				t.Fatalf("publish: exit %d\n%s", code, out)
			}
			if denied := strings.Contains(out, "RC:135"); denied != (v.flag == "mqttv5") {
				t.Errorf("denied publish: PUBACK 135 shown %v\n%s", denied, out)
			}
			// ... nor as a client whose identifier merely starts the same.
			if code, out := b.mosq(t, m.pub, v.flag, "-i", dev+"x", "-u", "alice", "-P", "secret", "-q", "1", "-t", "devices/"+dev+"/in", "-m", "never"); code != 0 {
				t.Fatalf("publish: exit %d\n%s", code, out)
			}
			if code, out := b.mosq(t, m.pub, v.flag, "-i", clientID(t.Name(), "pub"), "-u", "alice", "-P", "secret", "-q", "1", "-t", "users/alice/in", "-m", "allowed"); code != 0 || !strings.Contains(out, "RC:0") {
				t.Fatalf("allowed publish: exit %d\n%s", code, out)
			}
			// Each publisher finished its QoS 1 flow before the next
			// started, so the first message proves the others were dropped.
			got := extSubscription{sub}.await(t, 1, deliverTimeout)
			if got[0].Topic != "users/alice/in" || got[0].Payload != "allowed" {
				t.Fatalf("subscriber got %v first, want the allowed message", got[0])
			}
		})
	}
	if n := b.srv.Stats().DroppedNotAuthorized.Load(); n != 4 {
		t.Errorf("DroppedNotAuthorized %d, want 4", n)
	}
}

// Reload (what SIGHUP runs) changes what an already connected mosquitto_pub
// may publish, without disconnecting it: one connection, three lines, the
// middle one published while the ACL denies it.
func TestInteropAuthReload(t *testing.T) {
	m := requireMosquittoClients(t)
	b := startAuthBeacon(t, false)
	sub := startProc(t, parseMosquittoSub, "", m.stdbuf, "-oL", m.sub, "-h", b.host, "-p", b.port, "-V", "mqttv5",
		"-i", clientID(t.Name(), "sub"), "-u", "alice", "-P", "secret", "-q", "1", "-t", "alice/#",
		"-d", "-F", "MSG|%q|%r|%t|%x", "-W", "20")
	sub.waitFor(t, "subscribed", setupTimeout)

	ctx, cancel := context.WithTimeout(context.Background(), procTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, m.stdbuf, "-oL", m.pub, "-h", b.host, "-p", b.port, "-V", "mqttv5", "-d",
		"-i", clientID(t.Name(), "pub"), "-u", "alice", "-P", "secret", "-q", "1", "-t", "alice/line", "-l")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var seen []string
	waitLine := func(sub string) {
		t.Helper()
		timeout := time.After(setupTimeout)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("mosquitto_pub exited before %q:\n%s", sub, strings.Join(seen, "\n"))
				}
				seen = append(seen, l)
				if strings.Contains(l, sub) {
					return
				}
			case <-timeout:
				t.Fatalf("no %q from mosquitto_pub:\n%s", sub, strings.Join(seen, "\n"))
			}
		}
	}
	write := func(s string) {
		t.Helper()
		if _, err := stdin.Write([]byte(s + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	write("one")
	waitLine("RC:0")
	if err := os.WriteFile(b.acl, []byte("user alice\nallow subscribe alice/#\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := b.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	write("two")
	waitLine("RC:135")
	if err := os.WriteFile(b.acl, []byte(authTestACL), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := b.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	write("three")
	waitLine("RC:0")
	_ = stdin.Close()
	got := extSubscription{sub}.await(t, 2, deliverTimeout)
	if got[0].Payload != "one" || got[1].Payload != "three" {
		t.Fatalf("subscriber got %v, want one and three", got)
	}
	connects := 0
	for _, l := range seen {
		if strings.Contains(l, "sending CONNECT") {
			connects++
		}
	}
	if connects != 1 {
		t.Errorf("mosquitto_pub connected %d times, want once:\n%s", connects, strings.Join(seen, "\n"))
	}
}
