package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/beaconmq/beacon/mqtt"
)

// The hardened example config in docs/security.md works as written: with
// its /etc/beacon/ files created (a CA, a server certificate, a password
// file, an ACL) and its listeners moved to free loopback ports, `serve
// --check` accepts it and the broker starts, serving TLS.
func TestSecurityDocHardenedConfig(t *testing.T) {
	doc, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	i := strings.Index(text, "## A hardened example config")
	j := strings.Index(text[max(i, 0):], "```yaml\n")
	if i < 0 || j < 0 {
		t.Fatal("no ```yaml block under \"## A hardened example config\" in docs/security.md")
	}
	block := text[i+j+len("```yaml\n"):]
	block = block[:strings.Index(block, "```")]

	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "tls"), 0o700))
	writeTestCerts(t, filepath.Join(dir, "tls"))
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	must(err)
	must(os.WriteFile(filepath.Join(dir, "passwd"), []byte("backend:"+string(hash)+"\n"), 0o600))
	must(os.WriteFile(filepath.Join(dir, "acl"), []byte("user backend\nallow both #\n"), 0o600))

	cfg := strings.ReplaceAll(block, "/etc/beacon/", dir+"/")
	for _, addr := range []string{`":8883"`, `":8084"`, `"127.0.0.1:8080"`} {
		if !strings.Contains(cfg, addr) {
			t.Fatalf("the example no longer has listener %s; update this test", addr)
		}
		cfg = strings.Replace(cfg, addr, `"127.0.0.1:0"`, 1)
	}
	path := writeConfig(t, cfg)
	if code, out := runBeacon(t, "serve", "--check", "--config", path); code != 0 {
		t.Fatalf("serve --check on the documented example: exit %d\n%s", code, out)
	}

	c, err := loadConfig([]string{"--config", path}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := mqtt.New(c.opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("the documented example does not start: %v", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	if srv.MQTTAddr() != "" || srv.WSAddr() != "" || srv.TLSAddr() == "" {
		t.Fatalf("listeners mqtt %q ws %q tls %q: want TLS only", srv.MQTTAddr(), srv.WSAddr(), srv.TLSAddr())
	}
	// A client without a certificate is refused: tls_client_auth require.
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", srv.TLSAddr(), &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1)) // TLS 1.3 reports the refusal on the first read
		conn.Close()
	}
	if err == nil {
		t.Fatal("a client without a certificate got through tls_client_auth: require")
	}
}

// writeTestCerts writes server.pem, server.key (for 127.0.0.1) and
// devices-ca.pem (the CA that signed it) into dir.
func writeTestCerts(t *testing.T, dir string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test devices CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("server.pem", "CERTIFICATE", leafDER)
	write("server.key", "EC PRIVATE KEY", keyDER)
	write("devices-ca.pem", "CERTIFICATE", caDER)
}
