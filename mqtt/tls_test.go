package mqtt

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/beaconmq/beacon/packets"
)

// Test PKI, made fresh for each test with crypto/x509: a CA, server
// certificates for 127.0.0.1, client certificates with a Common Name.

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var testSerial atomic.Int64

func newTestCA(t testing.TB, cn string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(testSerial.Add(1)),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM certificate and key signed by ca: a server
// certificate for 127.0.0.1, or a client certificate.
func (ca *testCA) issue(t testing.TB, cn string, server bool) (certPEM, keyPEM []byte, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial = testSerial.Add(1)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), serial
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// keyPair returns a client certificate for cn as a tls.Certificate.
func (ca *testCA) keyPair(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	c, k, _ := ca.issue(t, cn, false)
	kp, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func writePEM(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// tlsFixture is a CA, the files of a server certificate it issued, and a
// server using them on TLSAddr and WSSAddr.
type tlsFixture struct {
	ca                        *testCA
	dir                       string
	certFile, keyFile, caFile string
	serial                    int64 // of the server certificate
	srv                       *Server
}

func startTLS(t *testing.T, mod func(*Options)) *tlsFixture {
	t.Helper()
	fx := &tlsFixture{ca: newTestCA(t, "Beacon Test CA"), dir: t.TempDir()}
	fx.certFile = filepath.Join(fx.dir, "server.pem")
	fx.keyFile = filepath.Join(fx.dir, "server.key")
	fx.caFile = filepath.Join(fx.dir, "ca.pem")
	c, k, serial := fx.ca.issue(t, "127.0.0.1", true)
	fx.serial = serial
	writePEM(t, fx.certFile, c)
	writePEM(t, fx.keyFile, k)
	writePEM(t, fx.caFile, fx.ca.pem)
	fx.srv = startServer(t, func(o *Options) {
		o.TLSAddr = "127.0.0.1:0"
		o.WSSAddr = "127.0.0.1:0"
		o.TLSCertFile, o.TLSKeyFile = fx.certFile, fx.keyFile
		if mod != nil {
			mod(o)
		}
		if o.TLSClientAuth != "none" && o.TLSCAFile == "" {
			o.TLSCAFile = fx.caFile
		}
	})
	return fx
}

// forceCert makes cfg present cert whatever CAs the server asks for (Go's
// client otherwise sends no certificate the server's CA list does not
// name, and a wrong-CA test would only test a missing certificate).
func forceCert(cfg *tls.Config, cert tls.Certificate) *tls.Config {
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	return cfg
}

// clientConfig trusts the fixture's CA and presents certs.
func (fx *tlsFixture) clientConfig(certs ...tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: fx.ca.pool(), Certificates: certs, ServerName: "127.0.0.1"}
}

// dialTLS connects to the MQTT over TLS listener and completes the
// handshake, or returns the handshake error.
func (fx *tlsFixture) dialTLS(t testing.TB, cfg *tls.Config, v packets.Version) (*tclient, error) {
	t.Helper()
	raw, err := net.DialTimeout("tcp", fx.srv.TLSAddr(), testTimeout)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	conn := tls.Client(raw, cfg)
	_ = conn.SetDeadline(time.Now().Add(testTimeout))
	if err := conn.Handshake(); err != nil {
		_ = raw.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return wrapConn(t, conn, v), nil
}

// refusedByTLS asserts that a client with cfg cannot get a CONNACK: the
// handshake fails, or (TLS 1.3, where the client finishes before the
// server checks its certificate) the first read does.
func (fx *tlsFixture) refusedByTLS(t *testing.T, cfg *tls.Config) error {
	t.Helper()
	c, err := fx.dialTLS(t, cfg, packets.V5)
	if err != nil {
		return err
	}
	b, _ := packets.Encode(nil, &packets.Connect{Version: packets.V5, ClientID: "refused", CleanStart: true}, packets.V5)
	_, _ = c.conn.Write(b)
	p, err := c.tryRecv(testTimeout)
	if err == nil {
		t.Fatalf("got %T %+v through a TLS connection that should have been refused", p, p)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection neither refused nor answered")
	}
	return err
}

func TestTLSConnectAndRoute(t *testing.T) {
	fx := startTLS(t, nil)
	c, err := fx.dialTLS(t, fx.clientConfig(), packets.V5)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	state := c.conn.(*tls.Conn).ConnectionState()
	if state.Version < tls.VersionTLS12 {
		t.Fatalf("negotiated TLS version %x below 1.2", state.Version)
	}
	c.connect("tls-sub", true, nil)
	c.subscribe(1, packets.Subscription{Filter: "t/#", QoS: 1})
	// A plain TCP client's message reaches the TLS subscriber.
	p := dial(t, fx.srv, packets.V311)
	p.connect("tcp-pub", true, nil)
	p.publish("t/1", "over tls", 1, false, 1)
	if m := c.recvPublish(true); string(m.Payload) != "over tls" {
		t.Fatalf("got %q", m.Payload)
	}
}

func TestTLSClientCertificates(t *testing.T) {
	fx := startTLS(t, func(o *Options) { o.TLSClientAuth = "require" })
	rogue := newTestCA(t, "Rogue CA")

	if err := fx.refusedByTLS(t, fx.clientConfig()); err == nil {
		t.Fatal("no client certificate: not refused")
	}
	if err := fx.refusedByTLS(t, forceCert(fx.clientConfig(), rogue.keyPair(t, "device-7"))); err == nil {
		t.Fatal("certificate from another CA: not refused")
	}
	eventually(t, testTimeout, func() error {
		if n := fx.srv.stats.TLSHandshakeErrors.Load(); n != 2 {
			return fmt.Errorf("TLSHandshakeErrors = %d, want 2", n)
		}
		return nil
	})
	c, err := fx.dialTLS(t, fx.clientConfig(fx.ca.keyPair(t, "device-7")), packets.V5)
	if err != nil {
		t.Fatalf("valid client certificate refused: %v", err)
	}
	c.connect("device-7", true, nil)
	// A plain TCP client is not affected by the TLS listener's policy.
	dial(t, fx.srv, packets.V5).connect("plain", true, nil)
}

func TestTLSClientCertRequested(t *testing.T) {
	fx := startTLS(t, func(o *Options) { o.TLSClientAuth = "request" })
	c, err := fx.dialTLS(t, fx.clientConfig(), packets.V5)
	if err != nil {
		t.Fatalf("no certificate with request: %v", err)
	}
	c.connect("anon", true, nil)
	rogue := newTestCA(t, "Rogue CA")
	if err := fx.refusedByTLS(t, forceCert(fx.clientConfig(), rogue.keyPair(t, "x"))); err == nil {
		t.Fatal("a certificate that does not verify was accepted with request")
	}
}

func TestTLSMinVersion(t *testing.T) {
	fx := startTLS(t, nil)
	old := fx.clientConfig()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	// The broker, not the client, refuses: it answers the TLS 1.1
	// ClientHello with the protocol_version alert.
	if _, err := fx.dialTLS(t, old, packets.V5); err == nil || !strings.Contains(err.Error(), "remote error: tls: protocol version not supported") {
		t.Fatalf("TLS 1.1 client: %v, want the broker's protocol version alert", err)
	}
	tls12 := fx.clientConfig()
	tls12.MaxVersion = tls.VersionTLS12
	c, err := fx.dialTLS(t, tls12, packets.V5)
	if err != nil {
		t.Fatalf("TLS 1.2 client refused with the default minimum: %v", err)
	}
	c.connect("tls12", true, nil)

	fx13 := startTLS(t, func(o *Options) { o.TLSMinVersion = "1.3" })
	if _, err := fx13.dialTLS(t, tls12, packets.V5); err == nil || !strings.Contains(err.Error(), "protocol version not supported") {
		t.Fatalf("TLS 1.2 client with TLSMinVersion 1.3: %v, want the broker's protocol version alert", err)
	}
	c, err = fx13.dialTLS(t, fx13.clientConfig(), packets.V5)
	if err != nil {
		t.Fatalf("TLS 1.3 client refused: %v", err)
	}
	if v := c.conn.(*tls.Conn).ConnectionState().Version; v != tls.VersionTLS13 {
		t.Fatalf("negotiated %x, want TLS 1.3", v)
	}
}

// authSpy is an Authenticator that records what it was asked.
type authSpy struct{ reqs chan AuthRequest }

func (a authSpy) Authenticate(req *AuthRequest) error {
	a.reqs <- *req
	return nil
}

// With TLSUseCNAsUsername the verified certificate's CN is the username
// authentication sees, whatever CONNECT says, over TLS and WSS alike.
func TestTLSCommonNameAsUsername(t *testing.T) {
	spy := authSpy{reqs: make(chan AuthRequest, 4)}
	fx := startTLS(t, func(o *Options) {
		o.TLSClientAuth = "require"
		o.TLSUseCNAsUsername = true
		o.Authenticator = spy
	})
	c, err := fx.dialTLS(t, fx.clientConfig(fx.ca.keyPair(t, "device-7")), packets.V311)
	if err != nil {
		t.Fatal(err)
	}
	c.connect("cn-client", true, func(p *packets.Connect) {
		p.UsernameFlag, p.Username = true, "someone-else"
		p.PasswordFlag, p.Password = true, []byte("whatever")
	})
	// The certificate authenticated the client; if the Authenticator is
	// asked at all, it must see the CN and no password.
	select {
	case req := <-spy.reqs:
		if req.Username != "device-7" || req.HasPassword {
			t.Fatalf("authentication saw user %q (password %v), want device-7 without password", req.Username, req.HasPassword)
		}
	default:
	}
	c.publish("who", "x", 1, false, 1)

	ws := fx.dialWSS(t, fx.clientConfig(fx.ca.keyPair(t, "device-8")))
	ws.connect("cn-ws", true, func(p *packets.Connect) { p.UsernameFlag, p.Username = true, "liar" })
	select {
	case req := <-spy.reqs:
		if req.Username != "device-8" {
			t.Fatalf("WSS: authentication saw user %q, want device-8", req.Username)
		}
	default:
	}
	// What the broker recorded for each connection.
	users := map[string]string{}
	fx.srv.mu.Lock()
	for cl := range fx.srv.clients {
		users[cl.id] = cl.lim.certUser
	}
	fx.srv.mu.Unlock()
	if users["cn-client"] != "device-7" || users["cn-ws"] != "device-8" {
		t.Fatalf("certificate users %v, want cn-client=device-7 cn-ws=device-8", users)
	}
}

// dialWSS opens MQTT over WebSocket over TLS.
func (fx *tlsFixture) dialWSS(t testing.TB, cfg *tls.Config) *tclient {
	t.Helper()
	d := websocket.Dialer{TLSClientConfig: cfg, Subprotocols: []string{"mqtt"}, HandshakeTimeout: testTimeout}
	ws, resp, err := d.Dial("wss://"+fx.srv.WSSAddr()+"/mqtt", nil)
	if err != nil {
		t.Fatalf("WSS dial: %v", err)
	}
	_ = resp.Body.Close()
	if ws.Subprotocol() != "mqtt" {
		t.Fatalf("subprotocol %q", ws.Subprotocol())
	}
	return wrapConn(t, &wsConn{ws: ws}, packets.V5)
}

func TestWSSConnectAndRoute(t *testing.T) {
	fx := startTLS(t, func(o *Options) { o.TLSClientAuth = "require" })
	c := fx.dialWSS(t, fx.clientConfig(fx.ca.keyPair(t, "browser")))
	c.connect("wss", true, nil)
	c.subscribe(1, packets.Subscription{Filter: "w", QoS: 1})
	p := dial(t, fx.srv, packets.V5)
	p.connect("tcp", true, nil)
	p.publish("w", "over wss", 1, false, 1)
	if m := c.recvPublish(true); string(m.Payload) != "over wss" {
		t.Fatalf("got %q", m.Payload)
	}
	d := websocket.Dialer{TLSClientConfig: fx.clientConfig(), HandshakeTimeout: testTimeout}
	if ws, _, err := d.Dial("wss://"+fx.srv.WSSAddr()+"/mqtt", nil); err == nil {
		ws.Close()
		t.Fatal("WSS without a client certificate accepted under require")
	}
}

// SIGHUP (Reload) swaps the certificate for new handshakes; connections
// already established keep working; a broken file leaves the old one.
func TestTLSReload(t *testing.T) {
	fx := startTLS(t, nil)
	peerSerial := func(c *tclient) int64 {
		return c.conn.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	first, err := fx.dialTLS(t, fx.clientConfig(), packets.V5)
	if err != nil {
		t.Fatal(err)
	}
	first.connect("first", true, nil)
	if got := peerSerial(first); got != fx.serial {
		t.Fatalf("serial %d, want %d", got, fx.serial)
	}

	c, k, serial2 := fx.ca.issue(t, "127.0.0.1", true)
	writePEM(t, fx.certFile, c)
	writePEM(t, fx.keyFile, k)
	if err := fx.srv.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	second, err := fx.dialTLS(t, fx.clientConfig(), packets.V5)
	if err != nil {
		t.Fatal(err)
	}
	if got := peerSerial(second); got != serial2 {
		t.Fatalf("after reload: serial %d, want the new %d", got, serial2)
	}
	first.send(&packets.Pingreq{})
	recvAs[*packets.Pingresp](first)
	// The WebSocket over TLS listener follows the same reload.
	ws := fx.dialWSS(t, fx.clientConfig())
	if got := ws.conn.(*wsConn).ConnectionState().PeerCertificates[0].SerialNumber.Int64(); got != serial2 {
		t.Fatalf("WSS after reload: serial %d, want %d", got, serial2)
	}

	writePEM(t, fx.certFile, []byte("not a certificate"))
	err = fx.srv.Reload()
	if err == nil || !strings.Contains(err.Error(), "previous ones stay in force") {
		t.Fatalf("Reload with a broken file: %v, want an error saying the old files stay", err)
	}
	third, err := fx.dialTLS(t, fx.clientConfig(), packets.V5)
	if err != nil {
		t.Fatalf("handshake after a failed reload: %v", err)
	}
	if got := peerSerial(third); got != serial2 {
		t.Fatalf("after a failed reload: serial %d, want %d", got, serial2)
	}
	third.connect("third", true, nil)
}

// Reload also re-reads the client CA file: a device CA added to it is
// trusted by the next handshake.
func TestTLSReloadClientCA(t *testing.T) {
	fx := startTLS(t, func(o *Options) { o.TLSClientAuth = "require" })
	newCA := newTestCA(t, "Second device CA")
	cfg := forceCert(fx.clientConfig(), newCA.keyPair(t, "new-device"))
	if err := fx.refusedByTLS(t, cfg); err == nil {
		t.Fatal("a certificate from a CA not (yet) in the CA file was accepted")
	}
	writePEM(t, fx.caFile, append(append([]byte(nil), fx.ca.pem...), newCA.pem...))
	if err := fx.srv.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	c, err := fx.dialTLS(t, cfg, packets.V5)
	if err != nil {
		t.Fatalf("certificate from the added CA after reload: %v", err)
	}
	c.connect("new-device", true, nil)
}

// A client that stalls its TLS handshake is closed after ConnectTimeout
// and holds up nobody: the accept loop serves others meanwhile.
func TestTLSHandshakeDeadline(t *testing.T) {
	fx := startTLS(t, func(o *Options) { o.ConnectTimeout = 400 * time.Millisecond })
	stalled, err := net.DialTimeout("tcp", fx.srv.TLSAddr(), testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	if _, err := stalled.Write([]byte{0x16, 0x03, 0x01}); err != nil { // a record header, then nothing
		t.Fatal(err)
	}
	c, err := fx.dialTLS(t, fx.clientConfig(), packets.V5)
	if err != nil {
		t.Fatalf("handshake while another one stalls: %v", err)
	}
	c.connect("meanwhile", true, nil)
	readUntilClosed(t, stalled, testTimeout)

	// The same on the WebSocket over TLS listener.
	wss, err := net.DialTimeout("tcp", fx.srv.WSSAddr(), testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer wss.Close()
	if _, err := wss.Write([]byte{0x16, 0x03, 0x01}); err != nil {
		t.Fatal(err)
	}
	readUntilClosed(t, wss, testTimeout)
	eventually(t, testTimeout, func() error {
		if n := fx.srv.stats.TLSHandshakeErrors.Load(); n != 1 {
			return fmt.Errorf("TLSHandshakeErrors = %d, want 1", n)
		}
		return nil
	})
}

func TestTLSOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"no cert", func(o *Options) { o.TLSAddr = ":8883" }, "TLSCertFile"},
		{"bad addr", func(o *Options) { o.TLSAddr, o.TLSCertFile, o.TLSKeyFile = "8883", "c", "k" }, "TLSAddr"},
		{"client auth without CA", func(o *Options) {
			o.WSSAddr, o.TLSCertFile, o.TLSKeyFile, o.TLSClientAuth = ":8084", "c", "k", "require"
		}, "TLSCAFile"},
		{"CN without client auth", func(o *Options) {
			o.TLSAddr, o.TLSCertFile, o.TLSKeyFile, o.TLSUseCNAsUsername = ":8883", "c", "k", true
		}, "TLSUseCNAsUsername"},
		{"TLS 1.1", func(o *Options) { o.TLSMinVersion = "1.1" }, "TLSMinVersion"},
		{"client auth value", func(o *Options) { o.TLSClientAuth = "optional" }, "TLSClientAuth"},
	} {
		o := DefaultOptions()
		tc.mod(&o)
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate() = %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
	o := DefaultOptions()
	o.MQTTAddr, o.WSAddr, o.HTTPAddr = "", "", ""
	o.TLSAddr, o.TLSCertFile, o.TLSKeyFile = "127.0.0.1:0", filepath.Join(t.TempDir(), "missing.pem"), "k"
	s, err := New(o)
	if err != nil {
		t.Fatalf("a TLS-only configuration is valid: %v", err)
	}
	if err := s.Start(); err == nil || !strings.Contains(err.Error(), "TLSCertFile") {
		t.Fatalf("Start with a missing certificate: %v, want an error naming TLSCertFile", err)
	}
}
