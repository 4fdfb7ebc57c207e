package interop

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/beaconmq/beacon/mqtt"
	"github.com/beaconmq/beacon/storage"
)

// MQTT over TLS with real clients: mosquitto_pub and mosquitto_sub with
// --cafile, --cert and --key against Beacon's TLS listener, with
// certificates made in the test (a CA, a server certificate for
// 127.0.0.1, client certificates with a Common Name, and a rogue CA).

// pki is the files of one test's certificates.
type pki struct {
	dir                      string
	caFile                   string // the CA Beacon trusts and that signed the server certificate
	serverCert, serverKey    string
	clientCert, clientKey    string // CN sensor-1, signed by the CA
	rogueCA                  string // another CA
	rogueCert, rogueKey      string // CN sensor-1, signed by the rogue CA
	caCert, rogueCACert      *x509.Certificate
	caKey, rogueCAKey        *ecdsa.PrivateKey
	serialNext               int64
	clientCN, serverHostname string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir(), clientCN: "sensor-1", serverHostname: "127.0.0.1"}
	p.caCert, p.caKey, p.caFile = p.makeCA(t, "Beacon interop CA", "ca.pem")
	p.rogueCACert, p.rogueCAKey, p.rogueCA = p.makeCA(t, "Rogue CA", "rogue-ca.pem")
	p.serverCert, p.serverKey = p.issue(t, p.caCert, p.caKey, "127.0.0.1", true, "server")
	p.clientCert, p.clientKey = p.issue(t, p.caCert, p.caKey, p.clientCN, false, "client")
	p.rogueCert, p.rogueKey = p.issue(t, p.rogueCACert, p.rogueCAKey, p.clientCN, false, "rogue-client")
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (p *pki) makeCA(t *testing.T, cn, file string) (*x509.Certificate, *ecdsa.PrivateKey, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serialNext++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serialNext), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key, p.write(t, file, "CERTIFICATE", der)
}

func (p *pki) issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, server bool, base string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serialNext++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serialNext), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, base+".pem", "CERTIFICATE", der), p.write(t, base+".key", "EC PRIVATE KEY", kb)
}

// startBeaconTLS runs an in-process Beacon with plain MQTT and MQTT over
// TLS on free loopback ports, requiring client certificates from p's CA.
func startBeaconTLS(t *testing.T, p *pki, mod func(*mqtt.Options)) *mqtt.Server {
	t.Helper()
	o := mqtt.DefaultOptions()
	o.MQTTAddr, o.WSAddr, o.HTTPAddr = "127.0.0.1:0", "", ""
	o.TLSAddr = "127.0.0.1:0"
	o.TLSCertFile, o.TLSKeyFile, o.TLSCAFile = p.serverCert, p.serverKey, p.caFile
	o.TLSClientAuth = "require"
	store := storage.NewMemory()
	o.Store = store
	if mod != nil {
		mod(&o)
	}
	srv, err := mqtt.New(o)
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
		_ = store.Close()
	})
	return srv
}

// tlsArgs are mosquitto client options for addr with the given files
// ("" leaves an option out).
func tlsArgs(t *testing.T, addr, cafile, cert, key string) []string {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-h", host, "-p", port}
	if cafile != "" {
		args = append(args, "--cafile", cafile)
	}
	if cert != "" {
		args = append(args, "--cert", cert, "--key", key)
	}
	return args
}

// runPub runs mosquitto_pub to completion and returns its error and
// combined output.
func runPub(t *testing.T, args ...string) (string, error) {
	t.Helper()
	pub := requireTool(t, mosquittoPubPath, "mosquitto-clients")
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, pub, args...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("mosquitto_pub %s did not finish within %v\n%s", strings.Join(args, " "), setupTimeout, out)
	}
	return string(out), err
}

func TestInteropTLSMosquittoClients(t *testing.T) {
	p := newPKI(t)
	srv := startBeaconTLS(t, p, nil)
	requireTool(t, mosquittoSubPath, "mosquitto-clients")
	stdbuf := requireTool(t, stdbufPath, "coreutils")
	for _, v := range []string{"mqttv311", "mqttv5"} {
		t.Run(v, func(t *testing.T) {
			topic := "tls/" + v
			args := append([]string{"-oL", mosquittoSubPath}, tlsArgs(t, srv.TLSAddr(), p.caFile, p.clientCert, p.clientKey)...)
			args = append(args, "-V", v, "-i", "tls-sub-"+v, "-q", "1", "-t", topic, "-C", "1",
				"-d", "-F", "MSG|%q|%r|%t|%x", "-W", "20")
			sub := startProc(t, parseMosquittoSub, "", stdbuf, args...)
			sub.waitFor(t, "subscribed", setupTimeout)
			out, err := runPub(t, append(tlsArgs(t, srv.TLSAddr(), p.caFile, p.clientCert, p.clientKey),
				"-V", v, "-i", "tls-pub-"+v, "-q", "1", "-t", topic, "-m", "over mTLS")...)
			if err != nil {
				t.Fatalf("mosquitto_pub over mTLS: %v\n%s", err, out)
			}
			ev := sub.waitFor(t, "message", setupTimeout)
			if want := hex.EncodeToString([]byte("over mTLS")); ev.Payload != want || ev.Topic != topic {
				t.Fatalf("got %s %s, want %s %s", ev.Topic, ev.Payload, topic, want)
			}
			sub.waitExit(t, setupTimeout)
		})
	}
}

// Every way of getting TLS wrong is refused by the handshake: no client
// certificate, a client certificate from another CA, a client that does
// not trust the server's CA, and TLS 1.1.
func TestInteropTLSRefused(t *testing.T) {
	p := newPKI(t)
	srv := startBeaconTLS(t, p, nil)
	addr := srv.TLSAddr()
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no client certificate", tlsArgs(t, addr, p.caFile, "", "")},
		{"client certificate from another CA", tlsArgs(t, addr, p.caFile, p.rogueCert, p.rogueKey)},
		{"server not trusted by the client", tlsArgs(t, addr, p.rogueCA, p.clientCert, p.clientKey)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runPub(t, append(tc.args, "-V", "mqttv5", "-t", "never", "-m", "x", "-q", "1", "-d")...)
			if err == nil {
				t.Fatalf("mosquitto_pub succeeded, want the TLS handshake refused\n%s", out)
			}
			if strings.Contains(out, "received CONNACK") {
				t.Fatalf("a CONNACK came through a connection that should have failed in TLS:\n%s", out)
			}
		})
	}
	// mosquitto's --tls-version sets a minimum, so TLS 1.1 is offered with
	// openssl s_client, allowed to use it (SECLEVEL=0), and refused by the
	// broker.
	t.Run("TLS 1.1", func(t *testing.T) {
		openssl := requireTool(t, opensslPath, "openssl")
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, openssl, "s_client", "-connect", addr, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0",
			"-CAfile", p.caFile, "-cert", p.clientCert, "-key", p.clientKey)
		cmd.Stdin = strings.NewReader("")
		cmd.WaitDelay = time.Second
		out, err := cmd.CombinedOutput()
		// The broker answers the TLS 1.1 ClientHello with alert 70
		// (protocol_version); no cipher is ever agreed.
		if err == nil || !strings.Contains(string(out), "Cipher is (NONE)") {
			t.Fatalf("a TLS 1.1 handshake was not refused (err %v)\n%s", err, out)
		}
		if !strings.Contains(string(out), "alert protocol version") {
			t.Fatalf("refused, but not for the protocol version:\n%s", out)
		}
	})
	if n := srv.Stats().TLSHandshakeErrors.Load(); n < 3 {
		t.Fatalf("TLSHandshakeErrors = %d, want at least 3 (the server-side refusals)", n)
	}
}

const opensslPath = "/usr/bin/openssl"

// denyAll refuses every password: only a certificate gets a client in.
type denyAll struct{}

func (denyAll) Authenticate(*mqtt.AuthRequest) error { return mqtt.ErrBadCredentials }

// With tls_use_cn_as_username the certificate is the credential: the
// CONNECT's own user name and password are replaced by the CN, which
// authentication accepts, while the same user name and password over
// plain TCP are refused.
func TestInteropTLSCommonNameAsUsername(t *testing.T) {
	p := newPKI(t)
	srv := startBeaconTLS(t, p, func(o *mqtt.Options) {
		o.TLSUseCNAsUsername = true
		o.Authenticator = denyAll{}
	})
	creds := []string{"-u", "someone", "-P", "secret", "-V", "mqttv311", "-t", "cn", "-m", "x", "-q", "1", "-d"}
	out, err := runPub(t, append(tlsArgs(t, srv.TLSAddr(), p.caFile, p.clientCert, p.clientKey), creds...)...)
	if err != nil {
		t.Fatalf("client certificate with CN as username refused: %v\n%s", err, out)
	}
	out, err = runPub(t, append(tlsArgs(t, srv.MQTTAddr(), "", "", ""), creds...)...)
	if err == nil {
		t.Fatalf("plain TCP with a bad password accepted\n%s", out)
	}
}
