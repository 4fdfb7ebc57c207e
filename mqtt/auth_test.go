package mqtt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/beaconmq/beacon/packets"
)

// testBcrypt hashes pw at the lowest cost, to keep tests fast.
func testBcrypt(t testing.TB, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// tempFile writes data to name in a fresh temporary directory.
func tempFile(t testing.TB, name, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// withUser sets user name and password in a CONNECT.
func withUser(user, pass string) func(*packets.Connect) {
	return func(p *packets.Connect) {
		p.Username, p.UsernameFlag = user, true
		if pass != "" {
			p.Password, p.PasswordFlag = []byte(pass), true
		}
	}
}

// refusedCount reads Stats.Refused for one reason (also used by limits_test.go).
func refusedCount(s *Server, reason string) uint64 {
	var n uint64
	s.stats.Refused.Each(func(l []string, v uint64) {
		if l[0] == reason {
			n = v
		}
	})
	return n
}

func TestParsePasswordFile(t *testing.T) {
	good := "# users\n\nalice:" + testBcrypt(t, "a") + "\r\n  bob:$2y$04$" + strings.Repeat("a", 53) + "\n"
	pf, err := ParsePasswordFile([]byte(good), "pw")
	if err != nil {
		t.Fatalf("good file: %v", err)
	}
	if pf.Len() != 2 {
		t.Errorf("users %d, want 2", pf.Len())
	}
	// $2y$ (htpasswd -B, Mosquitto) is the same algorithm as $2a$.
	y := "$2y$" + strings.TrimPrefix(testBcrypt(t, "pw"), "$2a$")
	pf, err = ParsePasswordFile([]byte("carol:"+y), "pw")
	if err != nil {
		t.Fatal(err)
	}
	if pf.Authenticate(&AuthRequest{Username: "carol", HasUsername: true, Password: []byte("pw"), HasPassword: true}) != nil {
		t.Error("a $2y$ hash does not check out")
	}
	for _, tc := range []struct{ data, want string }{
		{"alice\n", "pw:1: want user:hash"},
		{"# c\nalice:" + testBcrypt(t, "a") + "\nalice:" + testBcrypt(t, "b"), "pw:3: user \"alice\" appears twice"},
		{"\n\ncarol:plaintext", "pw:3: user \"carol\": unknown hash format"},
		{"dave:$2a$04$short", "pw:1: user \"dave\": bad bcrypt hash"},
		{"erin:$scram-sha-256$4096$AAAA", "pw:1: user \"erin\": SCRAM hash"},
		{":" + testBcrypt(t, "a"), "pw:1: want user:hash"},
	} {
		_, err := ParsePasswordFile([]byte(tc.data), "pw")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.data, err, tc.want)
		}
	}
}

// With a password file: good credentials connect, a bad password or an
// unknown user get 0x86 (3.1.1: 4), an anonymous client 0x87 (3.1.1: 5).
func TestPasswordAuthentication(t *testing.T) {
	path := tempFile(t, "passwd", "alice:"+testBcrypt(t, "secret")+"\n")
	s := startServer(t, func(o *Options) { o.PasswordFile = path })
	for _, v := range []packets.Version{packets.V5, packets.V311} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			c := dial(t, s, v)
			c.connect("good"+fmt.Sprint(v), true, withUser("alice", "secret"))
			c.publish("a/b", "x", 1, false, 1)
			c.disconnect()
			for _, tc := range []struct {
				name string
				mod  func(*packets.Connect)
				want packets.ReasonCode
			}{
				{"bad password", withUser("alice", "wrong"), packets.BadUsernameOrPassword},
				{"no password", withUser("alice", ""), packets.BadUsernameOrPassword},
				{"unknown user", withUser("mallory", "secret"), packets.BadUsernameOrPassword},
				{"anonymous", nil, packets.NotAuthorized},
			} {
				c := dial(t, s, v)
				ack := c.tryConnect("x", true, tc.mod)
				if ack.ReasonCode != tc.want {
					t.Errorf("%s: CONNACK %v, want %v", tc.name, ack.ReasonCode, tc.want)
				}
				c.expectClosed()
			}
		})
	}
	if n := refusedCount(s, packets.BadUsernameOrPassword.String()); n != 6 {
		t.Errorf("refused as bad user name or password: %d, want 6", n)
	}
	if n := refusedCount(s, packets.NotAuthorized.String()); n != 2 {
		t.Errorf("refused as not authorized: %d, want 2", n)
	}
}

// AllowAnonymous lets clients without a user name in, but a wrong password
// is still refused; without any authentication configured everyone may
// connect, user name or not.
func TestAnonymousAccess(t *testing.T) {
	path := tempFile(t, "passwd", "alice:"+testBcrypt(t, "secret")+"\n")
	s := startServer(t, func(o *Options) { o.PasswordFile = path; o.AllowAnonymous = true })
	c := dial(t, s, packets.V311)
	c.connect("anon", true, nil)
	c = dial(t, s, packets.V311)
	if ack := c.tryConnect("bad", true, withUser("alice", "nope")); ack.ReasonCode != packets.BadUsernameOrPassword {
		t.Errorf("bad password with AllowAnonymous: CONNACK %v", ack.ReasonCode)
	}

	open := startServer(t, nil)
	c = dial(t, open, packets.V5)
	c.connect("anon", true, nil)
	c = dial(t, open, packets.V5)
	c.connect("named", true, withUser("whoever", "whatever"))
}

// fakeAuth is an embedder's Authenticator.
type fakeAuth struct{ err error }

func (f fakeAuth) Authenticate(req *AuthRequest) error {
	if req.Username == "ok" && string(req.Password) == "pw" && req.RemoteAddr != nil && req.ClientID != "" {
		return nil
	}
	return f.err
}

// Options.Authenticator: its errors map to CONNACK codes; a failing back
// end is 0x88 Server Unavailable (3.1.1: 3).
func TestCustomAuthenticator(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want packets.ReasonCode
	}{
		{ErrBadCredentials, packets.BadUsernameOrPassword},
		{fmt.Errorf("banned: %w", ErrNotAuthorized), packets.NotAuthorized},
		{packets.Banned, packets.Banned},
		{errors.New("database down"), packets.ServerUnavailable},
	} {
		s := startServer(t, func(o *Options) { o.Authenticator = fakeAuth{tc.err} })
		c := dial(t, s, packets.V5)
		c.connect("c1", true, withUser("ok", "pw"))
		c = dial(t, s, packets.V5)
		if ack := c.tryConnect("c2", true, withUser("ok", "no")); ack.ReasonCode != tc.want {
			t.Errorf("%v: CONNACK %v, want %v", tc.err, ack.ReasonCode, tc.want)
		}
		c = dial(t, s, packets.V5)
		if ack := c.tryConnect("c3", true, nil); ack.ReasonCode != packets.NotAuthorized {
			t.Errorf("anonymous: CONNACK %v, want 0x87", ack.ReasonCode)
		}
	}
}

func TestAuthOptionsValidate(t *testing.T) {
	o := DefaultOptions()
	o.PasswordFile, o.Authenticator = "x", fakeAuth{}
	o.ACLFile, o.Authorizer = "y", &ACL{}
	o.ACLDenyAction = "explode"
	err := o.Validate()
	for _, want := range []string{"PasswordFile and Authenticator", "ACLFile and Authorizer", "ACLDenyAction \"explode\""} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v, want a complaint about %s", err, want)
		}
	}
	o = DefaultOptions()
	o.MQTTAddr, o.WSAddr, o.HTTPAddr = "127.0.0.1:0", "", ""
	o.PasswordFile = filepath.Join(t.TempDir(), "missing")
	if _, err := New(o); err == nil || !strings.Contains(err.Error(), "password file") {
		t.Errorf("New with a missing password file: %v", err)
	}
	o.PasswordFile = tempFile(t, "pw", "alice:x\n")
	if _, err := New(o); err == nil || !strings.Contains(err.Error(), "pw:1") {
		t.Errorf("New with a broken password file: %v", err)
	}
}

// Reload re-reads the password file: a client connected before stays
// connected, new connections see the new passwords; a broken file keeps
// the old one and the error names file and line.
func TestReloadPasswordFile(t *testing.T) {
	path := tempFile(t, "passwd", "alice:"+testBcrypt(t, "old")+"\n")
	s := startServer(t, func(o *Options) { o.PasswordFile = path })
	kept := dial(t, s, packets.V5)
	kept.connect("kept", true, withUser("alice", "old"))

	if err := os.WriteFile(path, []byte("alice:"+testBcrypt(t, "new")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	c := dial(t, s, packets.V5)
	if ack := c.tryConnect("c1", true, withUser("alice", "old")); ack.ReasonCode != packets.BadUsernameOrPassword {
		t.Errorf("old password after reload: CONNACK %v", ack.ReasonCode)
	}
	c = dial(t, s, packets.V5)
	c.connect("c2", true, withUser("alice", "new"))

	if err := os.WriteFile(path, []byte("# broken\nalice "+testBcrypt(t, "newer")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := s.Reload()
	if err == nil || !strings.Contains(err.Error(), path+":2") {
		t.Fatalf("Reload of a broken file: %v, want an error naming %s:2", err, path)
	}
	c = dial(t, s, packets.V5)
	c.connect("c3", true, withUser("alice", "new")) // the previous file still holds
	kept.publish("still/here", "x", 1, false, 1)
}

// reqSpy records what an Authenticator is asked.
type reqSpy struct{ reqs chan AuthRequest }

func (a reqSpy) Authenticate(req *AuthRequest) error {
	a.reqs <- *req
	return nil
}

// Over mutual TLS: with TLSUseCNAsUsername a client is authenticated by
// its certificate although a password file is set, and the ACL applies to
// the CN (%u); without it, the Authenticator still learns the verified CN.
func TestCertIdentityAuthAndACL(t *testing.T) {
	pw := tempFile(t, "passwd", "alice:"+testBcrypt(t, "secret")+"\n")
	acl := tempFile(t, "acl", "user device-7\nallow both devices/%u/#\n")
	fx := startTLS(t, func(o *Options) {
		o.TLSClientAuth, o.TLSUseCNAsUsername = "require", true
		o.PasswordFile, o.ACLFile = pw, acl
	})
	c, err := fx.dialTLS(t, fx.clientConfig(fx.ca.keyPair(t, "device-7")), packets.V5)
	if err != nil {
		t.Fatal(err)
	}
	c.connect("d7", true, nil) // no user name, no password: the certificate is both
	c.send(&packets.Publish{Topic: "devices/device-7/state", QoS: 1, PacketID: 1})
	if a := recvAs[*packets.Puback](c); a.ReasonCode != packets.Success {
		t.Errorf("own topic: PUBACK %v", a.ReasonCode)
	}
	c.send(&packets.Publish{Topic: "devices/device-8/state", QoS: 1, PacketID: 2})
	if a := recvAs[*packets.Puback](c); a.ReasonCode != packets.NotAuthorized {
		t.Errorf("another device's topic: PUBACK %v, want 0x87", a.ReasonCode)
	}

	spy := reqSpy{reqs: make(chan AuthRequest, 1)}
	fx = startTLS(t, func(o *Options) { o.TLSClientAuth, o.Authenticator = "request", spy })
	c, err = fx.dialTLS(t, fx.clientConfig(fx.ca.keyPair(t, "device-9")), packets.V311)
	if err != nil {
		t.Fatal(err)
	}
	c.connect("d9", true, withUser("operator", "pw"))
	select {
	case req := <-spy.reqs:
		if req.Username != "operator" || req.CertCommonName != "device-9" || string(req.Password) != "pw" {
			t.Errorf("AuthRequest %+v, want user operator with certificate CN device-9", req)
		}
	case <-time.After(testTimeout):
		t.Fatal("the Authenticator was not asked")
	}
}

// BenchmarkPasswordCheck is the CPU one CONNECT with a password costs:
// bcrypt at `beacon passwd`'s default cost 10, and a SCRAM-SHA-256 entry
// (4096 PBKDF2 iterations).
func BenchmarkPasswordCheck(b *testing.B) {
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), 10)
	if err != nil {
		b.Fatal(err)
	}
	sh, err := NewSCRAMHash("pw", 0)
	if err != nil {
		b.Fatal(err)
	}
	pf, err := ParsePasswordFile([]byte("b:"+string(h)+"\ns:"+sh+"\n"), "bench")
	if err != nil {
		b.Fatal(err)
	}
	for _, user := range []string{"b", "s"} {
		name := map[string]string{"b": "bcrypt-10", "s": "scram-4096"}[user]
		b.Run(name, func(b *testing.B) {
			req := &AuthRequest{Username: user, HasUsername: true, Password: []byte("pw"), HasPassword: true}
			for b.Loop() {
				if err := pf.Authenticate(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
