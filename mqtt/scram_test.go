package mqtt

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/beaconmq/beacon/packets"
)

// scramClient is the client side of SCRAM-SHA-256, written from RFC 5802
// for the tests (independently of the server's code).
type scramClient struct {
	user, pass, cnonce string
	bare               string
	serverSig          []byte
}

func (c *scramClient) first() []byte {
	name := strings.NewReplacer("=", "=3D", ",", "=2C").Replace(c.user)
	c.bare = "n=" + name + ",r=" + c.cnonce
	return []byte("n,," + c.bare)
}

func (c *scramClient) final(serverFirst []byte) ([]byte, error) {
	var nonce, salt string
	iter := 0
	for _, a := range strings.Split(string(serverFirst), ",") {
		switch {
		case strings.HasPrefix(a, "r="):
			nonce = a[2:]
		case strings.HasPrefix(a, "s="):
			salt = a[2:]
		case strings.HasPrefix(a, "i="):
			iter, _ = strconv.Atoi(a[2:])
		}
	}
	if !strings.HasPrefix(nonce, c.cnonce) || len(nonce) == len(c.cnonce) || iter < 4096 {
		return nil, fmt.Errorf("bad server-first-message %q", serverFirst)
	}
	s, err := base64.StdEncoding.DecodeString(salt)
	if err != nil {
		return nil, err
	}
	salted, _ := pbkdf2.Key(sha256.New, c.pass, s, iter, 32)
	mac := func(k []byte, m string) []byte { h := hmac.New(sha256.New, k); h.Write([]byte(m)); return h.Sum(nil) }
	clientKey := mac(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	withoutProof := "c=biws,r=" + nonce
	authMsg := c.bare + "," + string(serverFirst) + "," + withoutProof
	sig := mac(stored[:], authMsg)
	proof := make([]byte, 32)
	for i := range proof {
		proof[i] = clientKey[i] ^ sig[i]
	}
	c.serverSig = mac(mac(salted, "Server Key"), authMsg)
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

// verify checks server-final-message: the server knew the credentials.
func (c *scramClient) verify(serverFinal []byte) error {
	if string(serverFinal) != "v="+base64.StdEncoding.EncodeToString(c.serverSig) {
		return fmt.Errorf("server signature %q does not verify", serverFinal)
	}
	return nil
}

// The server side reproduces the exchange of RFC 7677 §3 byte for byte.
func TestSCRAMRFC7677Vector(t *testing.T) {
	salt, _ := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	cred, err := deriveSCRAM("pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	nonce := "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	x := &scramServer{state: 1, user: "user", cred: cred, gs2: "n,,",
		clientFirstBare: "n=user,r=rOprNGfwEbeRWgbNEkqO",
		serverFirst:     "r=" + nonce + ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		nonce:           nonce}
	st, err := x.Step([]byte("c=biws,r=" + nonce + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="))
	if err != nil {
		t.Fatalf("proof refused: %v", err)
	}
	if !st.Done || st.Username != "user" || string(st.Data) != "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=" {
		t.Fatalf("server-final %+v", st)
	}
	// The test client computes the same proof.
	c := &scramClient{user: "user", pass: "pencil", cnonce: "rOprNGfwEbeRWgbNEkqO"}
	c.first()
	fin, err := c.final([]byte(x.serverFirst))
	if err != nil || !strings.HasSuffix(string(fin), "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=") {
		t.Fatalf("test client final %q, %v", fin, err)
	}
	if err := c.verify(st.Data); err != nil {
		t.Fatal(err)
	}
}

func TestSCRAMHashRoundTrip(t *testing.T) {
	h, err := NewSCRAMHash("s3cret", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$scram-sha-256$4096$") {
		t.Fatalf("hash %q", h)
	}
	c, err := parseSCRAM(h)
	if err != nil {
		t.Fatal(err)
	}
	if !c.verifyPassword([]byte("s3cret")) || c.verifyPassword([]byte("s3creT")) {
		t.Fatal("verifyPassword accepts the wrong password or refuses the right one")
	}
	if _, err := NewSCRAMHash("x", 100); err == nil {
		t.Error("100 iterations accepted")
	}
	for _, bad := range []string{"$scram-sha-256$4096$c2FsdA==$AAAA", "$scram-sha-256$x$c2FsdA==$" + strings.Repeat("A", 44) + "$" + strings.Repeat("A", 44),
		"$scram-sha-256$4096$c2FsdA==$AAAA$" + strings.Repeat("A", 44)} {
		if _, err := parseSCRAM(bad); err == nil {
			t.Errorf("parseSCRAM(%q) accepted", bad)
		}
	}
}

// Exchanges that must fail: wrong password, unknown user, bcrypt-only
// user, tampered nonce, channel binding, garbage.
func TestSCRAMExchangeFailures(t *testing.T) {
	scramHash, _ := NewSCRAMHash("right", 0)
	pf, err := ParsePasswordFile([]byte("alice:"+scramHash+"\nbob:"+testBcrypt(t, "right")+"\n"), "test")
	if err != nil {
		t.Fatal(err)
	}
	run := func(user, pass string, tamper func([]byte) []byte) error {
		ex, err := pf.StartAuth(SCRAMSHA256, &AuthRequest{})
		if err != nil {
			return err
		}
		c := &scramClient{user: user, pass: pass, cnonce: "abcdefgh"}
		st, err := ex.Step(c.first())
		if err != nil {
			return err
		}
		fin, err := c.final(st.Data)
		if err != nil {
			return err
		}
		if tamper != nil {
			fin = tamper(fin)
		}
		st, err = ex.Step(fin)
		if err != nil {
			return err
		}
		if !st.Done || st.Username != user {
			return fmt.Errorf("step %+v", st)
		}
		return c.verify(st.Data)
	}
	if err := run("alice", "right", nil); err != nil {
		t.Fatalf("good exchange: %v", err)
	}
	for name, err := range map[string]error{
		"wrong password": run("alice", "wrong", nil),
		"unknown user":   run("mallory", "right", nil),
		"bcrypt user":    run("bob", "right", nil),
	} {
		if !errors.Is(err, ErrBadCredentials) {
			t.Errorf("%s: %v, want ErrBadCredentials", name, err)
		}
	}
	err = run("alice", "right", func(b []byte) []byte { return []byte(strings.Replace(string(b), "r=abcdefgh", "r=abcdefgX", 1)) })
	if !errors.Is(err, ErrNotAuthorized) {
		t.Errorf("tampered nonce: %v", err)
	}
	if _, err := pf.StartAuth("PLAIN", &AuthRequest{}); !errors.Is(err, ErrBadAuthMethod) {
		t.Errorf("unknown method: %v", err)
	}
	for _, first := range []string{"", "p=tls-server-end-point,,n=alice,r=x", "n,a=bob,n=alice,r=x", "n,,r=x,n=alice", "n,,n=al=ice,r=x", "n,,n=alice,r="} {
		ex, _ := pf.StartAuth(SCRAMSHA256, &AuthRequest{})
		if _, err := ex.Step([]byte(first)); !errors.Is(err, ErrNotAuthorized) {
			t.Errorf("client-first %q: %v, want a refusal", first, err)
		}
	}
	// The salt offered for an unknown user is stable, so it does not give
	// the user's absence away.
	s1, _ := pf.scramSalt("nobody")
	s2, _ := pf.scramSalt("nobody")
	if string(s1) != string(s2) || len(s1) != 16 {
		t.Error("made-up salt is not stable")
	}
}

// scramServer5 starts a server whose password file has alice (SCRAM,
// password "wonderland") and bob (bcrypt, "builder"); it returns the
// file's path too.
func scramServer5(t *testing.T, mod func(*Options)) (*Server, string) {
	t.Helper()
	h, err := NewSCRAMHash("wonderland", 0)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(path, []byte("alice:"+h+"\nbob:"+testBcrypt(t, "builder")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, func(o *Options) {
		o.PasswordFile = path
		if mod != nil {
			mod(o)
		}
	})
	return s, path
}

// A SCRAM-SHA-256 exchange over the wire: CONNECT, AUTH 0x18 both ways,
// CONNACK with the server's signature [MQTT-4.12.0-2] [MQTT-4.12.0-5];
// then re-authentication with AUTH 0x19 [MQTT-4.12.1-1].
func TestSCRAMConnectAndReauth(t *testing.T) {
	s, _ := scramServer5(t, nil)
	c := dial(t, s, packets.V5)
	sc := &scramClient{user: "alice", pass: "wonderland", cnonce: "n0nce-one"}
	c.send(&packets.Connect{Version: packets.V5, ClientID: "scram1", CleanStart: true, KeepAlive: 30,
		Properties: packets.Properties{AuthMethod: SCRAMSHA256, AuthData: sc.first()}})
	a := recvAs[*packets.Auth](c)
	if a.ReasonCode != packets.ContinueAuthentication || a.Properties.AuthMethod != SCRAMSHA256 {
		t.Fatalf("AUTH %v %q", a.ReasonCode, a.Properties.AuthMethod)
	}
	fin, err := sc.final(a.Properties.AuthData)
	if err != nil {
		t.Fatal(err)
	}
	c.send(&packets.Auth{ReasonCode: packets.ContinueAuthentication, Properties: packets.Properties{AuthMethod: SCRAMSHA256, AuthData: fin}})
	ack := recvAs[*packets.Connack](c)
	if ack.ReasonCode != packets.Success || ack.Properties.AuthMethod != SCRAMSHA256 {
		t.Fatalf("CONNACK %v method %q", ack.ReasonCode, ack.Properties.AuthMethod)
	}
	if err := sc.verify(ack.Properties.AuthData); err != nil {
		t.Fatal(err)
	}
	// The connection works, and re-authentication succeeds.
	c.publish("scram/x", "p", 1, false, 1)
	sc2 := &scramClient{user: "alice", pass: "wonderland", cnonce: "n0nce-two"}
	c.send(&packets.Auth{ReasonCode: packets.ReAuthenticate, Properties: packets.Properties{AuthMethod: SCRAMSHA256, AuthData: sc2.first()}})
	a = recvAs[*packets.Auth](c)
	fin, err = sc2.final(a.Properties.AuthData)
	if err != nil {
		t.Fatal(err)
	}
	c.send(&packets.Auth{ReasonCode: packets.ContinueAuthentication, Properties: packets.Properties{AuthMethod: SCRAMSHA256, AuthData: fin}})
	a = recvAs[*packets.Auth](c)
	if a.ReasonCode != packets.Success || sc2.verify(a.Properties.AuthData) != nil {
		t.Fatalf("re-authentication answer %v %q", a.ReasonCode, a.Properties.AuthData)
	}
	c.publish("scram/x", "p", 1, false, 2)

	// A failed re-authentication ends the connection with DISCONNECT
	// [MQTT-4.12.1-2].
	sc3 := &scramClient{user: "alice", pass: "wrong", cnonce: "n0nce-three"}
	c.send(&packets.Auth{ReasonCode: packets.ReAuthenticate, Properties: packets.Properties{AuthMethod: SCRAMSHA256, AuthData: sc3.first()}})
	a = recvAs[*packets.Auth](c)
	fin, _ = sc3.final(a.Properties.AuthData)
	c.send(&packets.Auth{ReasonCode: packets.ContinueAuthentication, Properties: packets.Properties{AuthMethod: SCRAMSHA256, AuthData: fin}})
	got := c.expectClosed()
	if len(got) != 1 || got[0].(*packets.Disconnect).ReasonCode != packets.NotAuthorized {
		t.Fatalf("failed re-authentication: got %v, want DISCONNECT 0x87", got)
	}
	if n := s.stats.ReauthFailures.Load(); n != 1 {
		t.Errorf("ReauthFailures %d, want 1", n)
	}
}

// SCRAM failures at CONNECT: wrong password 0x86, unknown method 0x8C,
// another packet than AUTH before CONNACK is a protocol error
// [MQTT-3.1.2-30], and a user with a SCRAM entry can also log in with a
// plain password.
func TestSCRAMConnectFailures(t *testing.T) {
	s, _ := scramServer5(t, nil)
	c := dial(t, s, packets.V5)
	sc := &scramClient{user: "alice", pass: "bad", cnonce: "xyz"}
	c.send(&packets.Connect{Version: packets.V5, ClientID: "f1", CleanStart: true,
		Properties: packets.Properties{AuthMethod: SCRAMSHA256, AuthData: sc.first()}})
	a := recvAs[*packets.Auth](c)
	fin, _ := sc.final(a.Properties.AuthData)
	c.send(&packets.Auth{ReasonCode: packets.ContinueAuthentication, Properties: packets.Properties{AuthMethod: SCRAMSHA256, AuthData: fin}})
	if got := c.expectClosed(); len(got) != 1 || got[0].(*packets.Connack).ReasonCode != packets.BadUsernameOrPassword {
		t.Fatalf("wrong SCRAM password: got %v, want CONNACK 0x86", got)
	}

	c = dial(t, s, packets.V5)
	if ack := c.tryConnect("f2", true, func(p *packets.Connect) { p.Properties.AuthMethod = "KERBEROS" }); ack.ReasonCode != packets.BadAuthenticationMethod {
		t.Fatalf("unknown method: CONNACK %v", ack.ReasonCode)
	}

	c = dial(t, s, packets.V5)
	sc = &scramClient{user: "alice", pass: "wonderland", cnonce: "xyz"}
	c.send(&packets.Connect{Version: packets.V5, ClientID: "f3", CleanStart: true,
		Properties: packets.Properties{AuthMethod: SCRAMSHA256, AuthData: sc.first()}})
	recvAs[*packets.Auth](c)
	c.send(&packets.Publish{Topic: "early", Payload: []byte("x")})
	if got := c.expectClosed(); len(got) != 1 || got[0].(*packets.Connack).ReasonCode != packets.ProtocolError {
		t.Fatalf("PUBLISH during authentication: got %v, want CONNACK 0x82", got)
	}

	c = dial(t, s, packets.V5)
	c.connect("f4", true, func(p *packets.Connect) {
		p.Username, p.UsernameFlag, p.Password, p.PasswordFlag = "alice", true, []byte("wonderland"), true
	})
	// The counter moves just after CONNACK is queued: poll for it.
	eventually(t, testTimeout, func() error {
		if n := s.stats.ClientsConnected.Load(); n != 1 {
			return fmt.Errorf("connected clients %d, want 1", n)
		}
		return nil
	})
}

// An exchange that the client never finishes is ended after
// ConnectTimeout.
func TestSCRAMExchangeTimeout(t *testing.T) {
	s, _ := scramServer5(t, func(o *Options) { o.ConnectTimeout = 300 * time.Millisecond })
	c := dial(t, s, packets.V5)
	sc := &scramClient{user: "alice", pass: "wonderland", cnonce: "slow"}
	c.send(&packets.Connect{Version: packets.V5, ClientID: "slow", CleanStart: true,
		Properties: packets.Properties{AuthMethod: SCRAMSHA256, AuthData: sc.first()}})
	recvAs[*packets.Auth](c)
	c.expectClosed()
	eventually(t, testTimeout, func() error {
		if n := refusedCount(s, "auth-timeout"); n != 1 {
			return fmt.Errorf("auth-timeout refusals %d, want 1", refusedCount(s, "auth-timeout"))
		}
		return nil
	})
}

// pahoSCRAM is paho.golang's Auther for SCRAM-SHA-256.
type pahoSCRAM struct {
	c    *scramClient
	once sync.Once
	done chan struct{}
}

func (a *pahoSCRAM) Authenticate(in *paho.Auth) *paho.Auth {
	fin, err := a.c.final(in.Properties.AuthData)
	if err != nil {
		fin = []byte("invalid")
	}
	return &paho.Auth{ReasonCode: byte(packets.ContinueAuthentication), Properties: &paho.AuthProperties{AuthMethod: SCRAMSHA256, AuthData: fin}}
}

func (a *pahoSCRAM) Authenticated() { a.once.Do(func() { close(a.done) }) }

// paho.golang, through its Auther interface, authenticates with SCRAM and
// re-authenticates.
func TestSCRAMPahoGolang(t *testing.T) {
	s, _ := scramServer5(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	connect := func(pass string) (*paho.Client, *pahoSCRAM, *paho.Connack, error) {
		conn, err := net.Dial("tcp", s.MQTTAddr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		auth := &pahoSCRAM{c: &scramClient{user: "alice", pass: pass, cnonce: "paho-" + pass}, done: make(chan struct{})}
		cl := paho.NewClient(paho.ClientConfig{Conn: conn, AuthHandler: auth})
		ca, err := cl.Connect(ctx, &paho.Connect{ClientID: "paho-scram-" + pass, CleanStart: true, KeepAlive: 30,
			Properties: &paho.ConnectProperties{AuthMethod: SCRAMSHA256, AuthData: auth.c.first()}})
		return cl, auth, ca, err
	}
	cl, auth, ca, err := connect("wonderland")
	if err != nil || ca.ReasonCode != 0 {
		t.Fatalf("connect: %v %+v", err, ca)
	}
	if err := auth.c.verify(ca.Properties.AuthData); err != nil {
		t.Fatal(err)
	}
	select {
	case <-auth.done:
	case <-ctx.Done():
		t.Fatal("Authenticated not called")
	}
	auth.c.cnonce = "paho-again"
	resp, err := cl.Authenticate(ctx, &paho.Auth{ReasonCode: byte(packets.ReAuthenticate),
		Properties: &paho.AuthProperties{AuthMethod: SCRAMSHA256, AuthData: auth.c.first()}})
	if err != nil || !resp.Success {
		t.Fatalf("re-authentication: %v %+v", err, resp)
	}
	// paho.golang's AuthResponse leaves out the Authentication Data of
	// the final AUTH, so the server signature cannot be checked here
	// (TestSCRAMConnectAndReauth checks it on the wire).
	if resp.ReasonCode != byte(packets.Success) {
		t.Fatalf("re-authentication reason %#x", resp.ReasonCode)
	}
	_ = cl.Disconnect(&paho.Disconnect{})

	_, _, ca, err = connect("nope")
	if ca == nil || ca.ReasonCode != byte(packets.BadUsernameOrPassword) {
		t.Fatalf("wrong password: %v %+v, want CONNACK 0x86", err, ca)
	}
}

// FuzzSCRAMServer throws arbitrary client messages at the server side of
// SCRAM: it must never panic, and never authenticate (a valid proof needs
// the server's random nonce, which a fuzzer cannot know).
func FuzzSCRAMServer(f *testing.F) {
	f.Add([]byte("n,,n=alice,r=abc"), []byte("c=biws,r=abc,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="))
	f.Add([]byte("y,,n=al=2Cice,r=x,ext=1"), []byte("c=eSws,r=x,p="))
	f.Add([]byte("n,,n=nobody,r=%%%"), []byte(",p=,p="))
	f.Add([]byte("p=x,,n=a,r=b"), []byte(""))
	h, err := NewSCRAMHash("pw", 0)
	if err != nil {
		f.Fatal(err)
	}
	pf, err := ParsePasswordFile([]byte("alice:"+h+"\n"), "fuzz")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, first, final []byte) {
		ex, err := pf.StartAuth(SCRAMSHA256, &AuthRequest{})
		if err != nil {
			t.Fatal(err)
		}
		st, err := ex.Step(first)
		if err != nil {
			return
		}
		if st.Done {
			t.Fatal("authenticated after client-first-message")
		}
		if st, err := ex.Step(final); err == nil || st.Done {
			t.Fatalf("fuzzed client-final-message accepted: %+v", st)
		}
		if _, err := ex.Step(final); err == nil {
			t.Fatal("a finished exchange took another step")
		}
	})
}
