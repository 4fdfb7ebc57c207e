package bridge

// Helpers for the mqtt sink and source tests: remote brokers (a second
// in-process Beacon, a Mosquitto process), a paho client on the remote,
// certificates for TLS, and polling.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"

	"github.com/beaconmq/beacon/mqtt"
	"github.com/beaconmq/beacon/storage"
)

const mqTimeout = 20 * time.Second

// mqLogger routes logs to t.Log until the test ends.
func mqLogger(t testing.TB) *slog.Logger {
	w := &mqLogWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type mqLogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *mqLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// mqEventually polls fn until it returns nil or timeout passes.
func mqEventually(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// remoteBeacon is a second in-process Beacon playing the remote broker.
type remoteBeacon struct {
	srv *mqtt.Server
	// addr is the MQTT address; ws the WebSocket one when enabled.
	addr, ws string
}

// startRemoteBeacon starts a Beacon on addr ("127.0.0.1:0" for any port)
// with a memory store; wsAddr "" disables WebSocket. Shut down on cleanup.
func startRemoteBeacon(t testing.TB, addr, wsAddr string) *remoteBeacon {
	t.Helper()
	o := mqtt.DefaultOptions()
	o.MQTTAddr = addr
	o.WSAddr = wsAddr
	o.HTTPAddr = ""
	o.SysInterval = 0
	o.Store = storage.NewMemory()
	o.Logger = mqLogger(t).With("broker", "remote")
	s, err := mqtt.New(o)
	if err != nil {
		t.Fatalf("mqtt.New: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	rb := &remoteBeacon{srv: s, addr: s.MQTTAddr(), ws: s.WSAddr()}
	t.Cleanup(func() { rb.stop(t) })
	return rb
}

func (rb *remoteBeacon) stop(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), mqTimeout)
	defer cancel()
	if err := rb.srv.Shutdown(ctx); err != nil && !errors.Is(err, mqtt.ErrServerClosed) {
		t.Errorf("Shutdown: %v", err)
	}
}

// mosquitto is a Mosquitto process playing the remote broker.
type mosquitto struct {
	t    testing.TB
	dir  string
	conf string
	port int
	addr string
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan struct{}
}

const mosquittoBin = "/usr/sbin/mosquitto"

// startMosquitto runs Mosquitto on a free loopback port with extra config
// lines (extra may use {dir} for the test's temp dir). It is killed by PID
// on cleanup. Without the binary the test is skipped, saying so.
func startMosquitto(t testing.TB, extra string) *mosquitto {
	t.Helper()
	bin := mosquittoBin
	if _, err := os.Stat(bin); err != nil {
		p, lerr := exec.LookPath("mosquitto")
		if lerr != nil {
			t.Skip("SKIPPED: Mosquitto is not installed (apt-get install mosquitto); CI installs it and runs this test")
		}
		bin = p
	}
	m := &mosquitto{t: t, dir: t.TempDir(), port: mqFreePort(t)}
	m.addr = fmt.Sprintf("127.0.0.1:%d", m.port)
	conf := fmt.Sprintf("listener %d 127.0.0.1\npersistence false\nmax_queued_messages 100000\nmax_inflight_messages 0\nuser root\nlog_dest stderr\nlog_type all\n", m.port)
	if !strings.Contains(extra, "allow_anonymous") {
		conf += "allow_anonymous true\n"
	}
	conf += strings.ReplaceAll(extra, "{dir}", m.dir)
	m.conf = filepath.Join(m.dir, "mosquitto.conf")
	if err := os.WriteFile(m.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	m.start(bin)
	t.Cleanup(m.stop)
	return m
}

func (m *mosquitto) start(bin string) {
	m.t.Helper()
	m.out = &bytes.Buffer{}
	m.cmd = exec.Command(bin, "-c", m.conf)
	m.cmd.Stdout, m.cmd.Stderr = &lockedBuffer{b: m.out}, &lockedBuffer{b: m.out}
	if err := m.cmd.Start(); err != nil {
		m.t.Fatalf("starting mosquitto: %v", err)
	}
	m.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(m.cmd, m.done)
	deadline := time.Now().Add(mqTimeout)
	for {
		c, err := net.DialTimeout("tcp", m.addr, time.Second)
		if err == nil {
			_ = c.Close()
			return
		}
		select {
		case <-m.done:
			m.t.Fatalf("mosquitto exited at start: %s", m.out.String())
		default:
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("mosquitto does not accept connections on %s: %v\n%s", m.addr, err, m.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop kills the process by its PID and waits for it.
func (m *mosquitto) stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	select {
	case <-m.done:
	default:
		_ = m.cmd.Process.Kill()
		<-m.done
	}
	if m.t.Failed() {
		m.t.Logf("mosquitto output:\n%s", m.out.String())
	}
	m.cmd = nil
}

// restart stops Mosquitto and starts it again on the same port and config.
func (m *mosquitto) restart() {
	bin := m.cmd.Path
	m.stop()
	m.start(bin)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// mqFreePort returns a loopback port that was free a moment ago.
func mqFreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// remoteClient is a plain paho client on the remote broker: it publishes
// and subscribes for the tests.
type remoteClient struct {
	cli *paho.Client
	got chan *paho.Publish
}

func dialRemote(t testing.TB, addr, id string) *remoteClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), mqTimeout)
	defer cancel()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	rc := &remoteClient{got: make(chan *paho.Publish, 1000)}
	rc.cli = paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) { rc.got <- pr.Packet; return true, nil },
	}})
	ca, err := rc.cli.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatalf("connect %s to %s: %v %+v", id, addr, err, ca)
	}
	t.Cleanup(func() { _ = rc.cli.Disconnect(&paho.Disconnect{}) })
	return rc
}

func (rc *remoteClient) subscribe(t testing.TB, filter string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), mqTimeout)
	defer cancel()
	if _, err := rc.cli.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
}

func (rc *remoteClient) publish(t testing.TB, p *paho.Publish) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), mqTimeout)
	defer cancel()
	if _, err := rc.cli.Publish(ctx, p); err != nil {
		t.Fatalf("publish %s: %v", p.Topic, err)
	}
}

// next returns the next message the client received.
func (rc *remoteClient) next(t testing.TB) *paho.Publish {
	t.Helper()
	select {
	case p := <-rc.got:
		return p
	case <-time.After(mqTimeout):
		t.Fatal("nothing received on the remote")
		return nil
	}
}

// mqTestCerts writes a CA and a server certificate for 127.0.0.1 signed by
// it into dir, and returns the paths. It also writes a client certificate
// signed by the CA (CN "bridge") as client.pem and client.key in dir.
func mqTestCerts(t testing.TB, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "beacon test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ckey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ctmpl := &x509.Certificate{
		SerialNumber: big.NewInt(3),
		Subject:      pkix.Name{CommonName: "bridge"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	cder, err := x509.CreateCertificate(rand.Reader, ctmpl, caCert, &ckey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ckeyDER, err := x509.MarshalECPrivateKey(ckey)
	if err != nil {
		t.Fatal(err)
	}
	write("client.pem", "CERTIFICATE", cder)
	write("client.key", "EC PRIVATE KEY", ckeyDER)
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", der), write("server.key", "EC PRIVATE KEY", keyDER)
}

// mqFastReconnect is a backoff that keeps tests quick.
var mqFastReconnect = MQTTBackoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}

// mqQoS returns a pointer to q for MQTTConfig.QoS.
func mqQoS(q byte) *byte { return &q }
