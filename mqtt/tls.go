package mqtt

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"

	"github.com/beaconmq/beacon/packets"
)

// TLS: MQTT over TLS (TLSAddr) and WebSocket over TLS (WSSAddr) share one
// certificate, key and client CA set, loaded on Start and re-read by
// Reload (SIGHUP). Both listeners hand every handshake the configuration
// current at that moment (tls.Config.GetConfigForClient), so after a
// reload new handshakes use the new files and connections already
// established keep the session they negotiated. A reload that fails (a
// missing file, a key that does not match) leaves the previous files in
// force.
//
// The handshake runs in the connection's own reader goroutine, inside the
// ConnectTimeout deadline that also bounds CONNECT (readLoop sets it
// before the first read, which performs the handshake), so a client that
// stalls its handshake never holds up the accept loop and is closed like
// one that never sends CONNECT. WebSocket over TLS handshakes run in the
// HTTP server's per-connection goroutine, bounded by ConnectTimeout too
// (then the upgrade request, then CONNECT, each by ConnectTimeout).

// tlsState is the loaded TLS configuration. The pointers are swapped whole
// on reload; a *tls.Config is never modified once published.
type tlsState struct {
	mqtt atomic.Pointer[tls.Config] // for TLSAddr
	ws   atomic.Pointer[tls.Config] // for WSSAddr: ALPN http/1.1
}

// tlsEnabled reports whether a TLS listener is configured.
func (o *Options) tlsEnabled() bool { return o.TLSAddr != "" || o.WSSAddr != "" }

// tlsClientAuth maps TLSClientAuth to the crypto/tls policy.
func tlsClientAuth(s string) (tls.ClientAuthType, error) {
	switch s {
	case "", "none":
		return tls.NoClientCert, nil
	case "request":
		return tls.VerifyClientCertIfGiven, nil
	case "require":
		return tls.RequireAndVerifyClientCert, nil
	}
	return 0, fmt.Errorf("TLSClientAuth %q: use none, request or require", s)
}

// tlsMinVersion maps TLSMinVersion to the crypto/tls constant. TLS 1.0 and
// 1.1 are refused: both are deprecated (RFC 8996).
func tlsMinVersion(s string) (uint16, error) {
	switch s {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("TLSMinVersion %q: use 1.2 or 1.3 (TLS 1.0 and 1.1 are deprecated and refused)", s)
}

// validateTLS checks the TLS options; part of Validate. It does not read
// the files: Start does, and reports what is wrong with them.
func (o *Options) validateTLS() []error {
	var errs []error
	for _, a := range []struct{ name, addr string }{{"TLSAddr", o.TLSAddr}, {"WSSAddr", o.WSSAddr}} {
		if a.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q is not host:port (use \":8883\", \"127.0.0.1:0\" or \"\" to disable): %v", a.name, a.addr, err))
		}
	}
	auth, err := tlsClientAuth(o.TLSClientAuth)
	if err != nil {
		errs = append(errs, err)
	}
	if _, err := tlsMinVersion(o.TLSMinVersion); err != nil {
		errs = append(errs, err)
	}
	if !o.tlsEnabled() {
		return errs
	}
	if o.TLSCertFile == "" || o.TLSKeyFile == "" {
		errs = append(errs, errors.New("TLSCertFile and TLSKeyFile are required with TLSAddr or WSSAddr: give the PEM server certificate (chain) and its private key"))
	}
	if auth != tls.NoClientCert && o.TLSCAFile == "" {
		errs = append(errs, fmt.Errorf("TLSClientAuth %q needs TLSCAFile: give the PEM CA certificates client certificates are issued by", o.TLSClientAuth))
	}
	if o.TLSUseCNAsUsername && auth == tls.NoClientCert {
		errs = append(errs, errors.New("TLSUseCNAsUsername needs client certificates: set TLSClientAuth to require (or request)"))
	}
	return errs
}

// loadTLS reads the certificate, key and client CA files and returns the
// configurations of the MQTT and WebSocket TLS listeners.
func (o *Options) loadTLS() (mqttCfg, wsCfg *tls.Config, err error) {
	cert, err := tls.LoadX509KeyPair(o.TLSCertFile, o.TLSKeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("TLSCertFile %s / TLSKeyFile %s: %w", o.TLSCertFile, o.TLSKeyFile, err)
	}
	auth, _ := tlsClientAuth(o.TLSClientAuth)
	minV, _ := tlsMinVersion(o.TLSMinVersion)
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   auth,
		MinVersion:   minV,
	}
	if o.TLSCAFile != "" {
		pem, err := os.ReadFile(o.TLSCAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("TLSCAFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("TLSCAFile %s: no PEM certificate found", o.TLSCAFile)
		}
		cfg.ClientCAs = pool
	}
	ws := cfg.Clone()
	ws.NextProtos = []string{"http/1.1"} // WebSocket upgrades need HTTP/1.1
	return cfg, ws, nil
}

// startTLS loads the TLS files (Start).
func (s *Server) startTLS() error {
	if !s.opts.tlsEnabled() {
		return nil
	}
	m, w, err := s.opts.loadTLS()
	if err != nil {
		return err
	}
	s.tls.mqtt.Store(m)
	s.tls.ws.Store(w)
	return nil
}

// reloadTLS re-reads the TLS files (SIGHUP): new handshakes use them,
// established connections are untouched. On error the previous
// configuration stays in force.
func (s *Server) reloadTLS() error {
	if !s.opts.tlsEnabled() || s.tls.mqtt.Load() == nil {
		return nil
	}
	m, w, err := s.opts.loadTLS()
	if err != nil {
		return fmt.Errorf("TLS files not reloaded, the previous ones stay in force: %w", err)
	}
	s.tls.mqtt.Store(m)
	s.tls.ws.Store(w)
	s.log.Info("TLS certificates reloaded", "cert", s.opts.TLSCertFile)
	return nil
}

// listenerTLSConfig returns the configuration a TLS listener is built
// with: it only points every handshake at the current configuration.
func (s *Server) listenerTLSConfig(ws bool) *tls.Config {
	cur := &s.tls.mqtt
	if ws {
		cur = &s.tls.ws
	}
	return &tls.Config{
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return cur.Load(), nil },
		// Used only if GetConfigForClient were not consulted.
		MinVersion: tls.VersionTLS12,
	}
}

// listenTLS binds the TLS and WebSocket-over-TLS listeners (Start).
func (s *Server) listenTLS() error {
	var err error
	if s.opts.TLSAddr != "" {
		ln, err := net.Listen("tcp", s.opts.TLSAddr)
		if err != nil {
			return fmt.Errorf("mqtt: listening on TLSAddr %s: %w", s.opts.TLSAddr, err)
		}
		// tls.NewListener does no I/O in Accept: the handshake happens on
		// the connection's first read, in its reader goroutine.
		s.tlsLn = tls.NewListener(ln, s.listenerTLSConfig(false))
	}
	if s.opts.WSSAddr != "" {
		if s.wssLn, err = listenWSS(s.opts.WSSAddr, s.listenerTLSConfig(true), s.opts.ConnectTimeout, s.log); err != nil {
			return fmt.Errorf("mqtt: listening on WSSAddr %s: %w", s.opts.WSSAddr, err)
		}
	}
	return nil
}

// TLSAddr is the bound MQTT over TLS address ("" when disabled or not
// started).
func (s *Server) TLSAddr() string { return addrOf(s.tlsLn) }

// WSSAddr is the bound WebSocket over TLS address ("" when disabled or
// not started).
func (s *Server) WSSAddr() string { return addrOf(s.wssLn) }

// tlsConnOf returns the TLS connection under conn: conn itself for MQTT
// over TLS, the upgraded connection's socket for WebSocket over TLS.
func tlsConnOf(conn net.Conn) *tls.Conn {
	switch c := conn.(type) {
	case *tls.Conn:
		return c
	case *wsConn:
		tc, _ := c.ws.NetConn().(*tls.Conn)
		return tc
	}
	return nil
}

// ConnectionState is the TLS state of a WebSocket over TLS connection (the
// zero value for plain WebSocket), so that code asking a connection for
// its TLS state (client certificates) treats WSS like MQTT over TLS.
func (c *wsConn) ConnectionState() tls.ConnectionState {
	if tc, ok := c.ws.NetConn().(*tls.Conn); ok {
		return tc.ConnectionState()
	}
	return tls.ConnectionState{}
}

// tlsHandshakeFailed reports whether the first read of the connection
// failed in the TLS handshake (bad or missing client certificate, a
// version below TLSMinVersion, no handshake within ConnectTimeout, not TLS
// at all), counting it in TLSHandshakeErrors.
func (c *client) tlsHandshakeFailed(err error) bool {
	tc, ok := c.conn.(*tls.Conn)
	if !ok || tc.ConnectionState().HandshakeComplete {
		return false
	}
	c.srv.stats.TLSHandshakeErrors.Add(1)
	c.srv.stats.ConnectsRefused.Add(1)
	c.srv.stats.Refused.Inc("tls-handshake")
	c.log.Debug("TLS handshake failed", "err", err)
	return true
}

// certIdentity applies TLSUseCNAsUsername: when the client presented a
// certificate that verified against TLSCAFile, its Subject Common Name
// replaces the username of CONNECT (as Mosquitto's
// use_identity_as_username does), before authentication sees it. The
// certificate is then the credential: a password in CONNECT is ignored,
// and authentication accepts a user name equal to the verified CN without
// one (auth.go). It reports whether the username came from a certificate.
func (c *client) certIdentity(p *packets.Connect) bool {
	if !c.srv.opts.TLSUseCNAsUsername {
		return false
	}
	tc := tlsConnOf(c.conn)
	if tc == nil {
		return false
	}
	st := tc.ConnectionState()
	if len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return false // no certificate, or not verified: the CONNECT username stands
	}
	cn := st.PeerCertificates[0].Subject.CommonName
	if cn == "" {
		return false
	}
	p.Username, p.UsernameFlag = cn, true
	p.Password, p.PasswordFlag = nil, false
	c.lim.certUser = cn
	return true
}
