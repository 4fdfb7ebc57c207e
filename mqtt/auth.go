package mqtt

import (
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/beaconmq/beacon/packets"
)

// Authentication decides who may connect; authorization (acl.go) decides
// what a connected client may publish and subscribe to. Both are small
// interfaces so that an embedding program can plug in its own (a database,
// an identity provider); the password file (PasswordFile, below) and the
// ACL file (ACL, acl.go) are the built-in implementations.
//
// The rule for anonymous clients (no user name in CONNECT): as long as no
// authentication is configured everyone may connect, as before; as soon as
// there is a password file or an Authenticator, anonymous clients are
// refused (CONNACK 0x87, 3.1.1 return code 5) unless AllowAnonymous is set.

// AuthRequest is what an Authenticator learns about a client asking to
// connect.
type AuthRequest struct {
	ClientID    string
	Username    string
	HasUsername bool // the CONNECT had a User Name (which may be empty in 5.0)
	Password    []byte
	HasPassword bool
	Version     packets.Version
	RemoteAddr  net.Addr
	// CertCommonName is the Common Name of the client's TLS certificate
	// when the connection is TLS and the certificate chain was verified
	// against the configured client CA; "" otherwise.
	CertCommonName string
}

// Authenticator checks the credentials of a CONNECT. Authenticate returns
// nil to let the client in. To refuse it returns ErrBadCredentials
// (CONNACK 0x86, 3.1.1 return code 4), ErrNotAuthorized (0x87, 3.1.1 return
// code 5), or a packets.ReasonCode valid in CONNACK; any other error means
// the check itself failed (a back end is down) and the client gets 0x88
// Server Unavailable (3.1.1 return code 3). It is called from the
// connection's reader goroutine and may block it (bcrypt takes tens of
// milliseconds), but never other clients; it must be safe for concurrent
// use.
type Authenticator interface {
	Authenticate(req *AuthRequest) error
}

// EnhancedAuthenticator is an Authenticator that also runs 5.0 enhanced
// authentication (5.0 §4.12): a CONNECT with an Authentication Method
// starts an exchange of AUTH packets that ends with CONNACK, and a
// connected client can re-authenticate with AUTH 0x19.
type EnhancedAuthenticator interface {
	Authenticator
	// StartAuth begins an exchange of method for the client described by
	// req. It returns ErrBadAuthMethod for a method it does not support
	// (CONNACK 0x8C); other errors are mapped as for Authenticate.
	StartAuth(method string, req *AuthRequest) (AuthExchange, error)
}

// AuthExchange is one enhanced authentication conversation. Step receives
// the Authentication Data of each client packet in turn (CONNECT or AUTH
// 0x19 first, then AUTH 0x18) and returns what the server answers: more
// data for AUTH 0x18 while Done is false; when Done, the client is
// authenticated as Username and Data goes into the CONNACK (or, on
// re-authentication, AUTH 0x00). An error ends the exchange and is mapped
// as for Authenticate.
type AuthExchange interface {
	Step(data []byte) (AuthStep, error)
}

// AuthStep is one answer of an AuthExchange.
type AuthStep struct {
	Data     []byte
	Done     bool
	Username string // the authenticated user, when Done
}

// Errors an Authenticator returns to refuse a client.
var (
	ErrBadCredentials = errors.New("mqtt: bad user name or password")
	ErrNotAuthorized  = errors.New("mqtt: not authorized")
	ErrBadAuthMethod  = errors.New("mqtt: authentication method not supported")
)

// authConfig is one consistent generation of the authentication and
// authorization settings. Reload builds a new one and swaps it in whole,
// so a connection never sees a password file from one generation with the
// ACL of another.
type authConfig struct {
	authn     Authenticator // nil: no authentication configured
	authz     Authorizer    // nil: every topic allowed but the reserved prefixes
	anonymous bool          // clients without a user name may connect
}

// loadAuthConfig reads the password and ACL files named in o (if any).
// A file that does not load is an error naming the file and line.
func loadAuthConfig(o *Options) (*authConfig, error) {
	cfg := &authConfig{authn: o.Authenticator, authz: o.Authorizer}
	if o.PasswordFile != "" {
		pf, err := LoadPasswordFile(o.PasswordFile)
		if err != nil {
			return nil, err
		}
		cfg.authn = pf
	}
	if o.ACLFile != "" {
		acl, err := LoadACL(o.ACLFile)
		if err != nil {
			return nil, err
		}
		cfg.authz = acl
	}
	cfg.anonymous = cfg.authn == nil || o.AllowAnonymous
	return cfg, nil
}

// initAuth loads the configured files for New. A password file that
// other users may read is loaded with a warning: its hashes can be
// attacked offline.
func (s *Server) initAuth() error {
	cfg, err := loadAuthConfig(&s.opts)
	if err != nil {
		return err
	}
	s.auth.Store(cfg)
	if p := s.opts.PasswordFile; p != "" {
		if st, err := os.Stat(p); err == nil && st.Mode().Perm()&0o007 != 0 {
			s.log.Warn("the password file is readable or writable by every user: chmod o-rwx it", "file", p, "mode", st.Mode().Perm().String())
		}
	}
	return nil
}

// reloadAuth re-reads the password and ACL files (SIGHUP). Either both
// load and replace the old ones together, or nothing changes and the error
// names the file and line at fault. Connected clients stay connected and
// keep their identity; the new ACL applies from their next PUBLISH or
// SUBSCRIBE.
func (s *Server) reloadAuth() error {
	if s.opts.PasswordFile == "" && s.opts.ACLFile == "" {
		return nil
	}
	cfg, err := loadAuthConfig(&s.opts)
	if err != nil {
		return fmt.Errorf("reload: %w", err) // logged by the caller
	}
	s.auth.Store(cfg)
	s.log.Info("authentication files reloaded", "password_file", s.opts.PasswordFile, "acl_file", s.opts.ACLFile)
	return nil
}

// connAuth is a connection's authentication state, owned by its reader
// goroutine (apart from waiting, which the exchange timer reads).
type connAuth struct {
	info     ClientInfo       // who the client is, for the Authorizer
	method   string           // Authentication Method of CONNECT (5.0), "" without
	exchange AuthExchange     // the enhanced authentication in progress, if any
	pending  *packets.Connect // CONNECT whose CONNACK waits for the exchange
	final    []byte           // Authentication Data for the successful CONNACK
	waiting  atomic.Bool      // an exchange before CONNACK is in progress
}

// authOutcome is the result of the authentication step of CONNECT.
type authOutcome int

const (
	authOK      authOutcome = iota // go on with the session and CONNACK
	authPending                    // AUTH 0x18 sent; CONNACK waits for the client's answer
	authRefused                    // CONNACK with an error sent; close
)

// peerCommonName returns the Common Name of a verified TLS client
// certificate on conn, or "".
func peerCommonName(conn net.Conn) string {
	tc, ok := conn.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		return ""
	}
	st := tc.ConnectionState()
	if len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return ""
	}
	return st.PeerCertificates[0].Subject.CommonName
}

// authRequest describes p for an Authenticator.
func (c *client) authRequest(p *packets.Connect) *AuthRequest {
	return &AuthRequest{
		ClientID:       c.id,
		Username:       p.Username,
		HasUsername:    p.UsernameFlag,
		Password:       p.Password,
		HasPassword:    p.PasswordFlag,
		Version:        c.version,
		RemoteAddr:     c.conn.RemoteAddr(),
		CertCommonName: peerCommonName(c.conn),
	}
}

// authCode maps an Authenticator's error to the CONNACK reason code.
func (c *client) authCode(err error) packets.ReasonCode {
	var rc packets.ReasonCode
	switch {
	case errors.Is(err, ErrBadCredentials):
		return packets.BadUsernameOrPassword
	case errors.Is(err, ErrNotAuthorized):
		return packets.NotAuthorized
	case errors.Is(err, ErrBadAuthMethod):
		return packets.BadAuthenticationMethod
	case errors.As(err, &rc) && rc.IsError():
		return rc
	}
	c.log.Warn("authentication failed to run", "err", err)
	return packets.ServerUnavailable
}

// authenticate is the authentication step of CONNECT, after the CONNECT
// itself was validated and before any session is touched. A client
// whose user name equals the Common Name of its verified TLS client
// certificate and that sends no password is authenticated by the
// certificate.
func (c *client) authenticate(p *packets.Connect) authOutcome {
	cfg := c.srv.auth.Load()
	req := c.authRequest(p)
	c.auth.info = ClientInfo{ClientID: c.id, Username: p.Username, HasUsername: p.UsernameFlag,
		RemoteAddr: req.RemoteAddr, CertCommonName: req.CertCommonName}
	if method := p.Properties.AuthMethod; method != "" {
		ea, ok := cfg.authn.(EnhancedAuthenticator)
		if !ok {
			c.refuse(packets.BadAuthenticationMethod, "enhanced authentication is not supported") // [MQTT-4.12.0-1]
			return authRefused
		}
		ex, err := ea.StartAuth(method, req)
		if err != nil {
			c.refuse(c.authCode(err), "authentication method "+method+" refused")
			return authRefused
		}
		c.auth.method, c.auth.exchange = method, ex
		return c.connectAuthStep(p, p.Properties.AuthData)
	}
	switch {
	case !p.UsernameFlag:
		if !cfg.anonymous {
			c.refuse(packets.NotAuthorized, "anonymous access is disabled")
			return authRefused
		}
		return authOK
	case cfg.authn == nil:
		return authOK // no authentication configured: the name is only used by the ACL
	case req.CertCommonName != "" && p.Username == req.CertCommonName && !p.PasswordFlag:
		return authOK // authenticated by the client certificate
	}
	if err := cfg.authn.Authenticate(req); err != nil {
		c.refuse(c.authCode(err), "authentication of user "+strconv.Quote(p.Username)+" failed")
		return authRefused
	}
	return authOK
}

// connectAuthStep feeds data to the exchange of a CONNECT: it answers with
// AUTH 0x18 while the exchange goes on (bounded by ConnectTimeout), or
// settles the authentication.
func (c *client) connectAuthStep(p *packets.Connect, data []byte) authOutcome {
	st, err := c.auth.exchange.Step(data)
	if err != nil {
		c.auth.exchange = nil
		c.refuse(c.authCode(err), "authentication failed")
		return authRefused
	}
	if !st.Done {
		// [MQTT-4.12.0-2] AUTH 0x18 with the same method.
		err := c.send(&packets.Auth{ReasonCode: packets.ContinueAuthentication,
			Properties: packets.Properties{AuthMethod: c.auth.method, AuthData: st.Data}})
		if err != nil {
			return authRefused
		}
		if c.auth.pending == nil {
			c.auth.pending = p
			c.auth.waiting.Store(true)
			time.AfterFunc(c.srv.opts.ConnectTimeout, c.authTimeout)
		}
		return authPending
	}
	c.auth.exchange = nil
	c.auth.final = st.Data
	c.auth.info.Username, c.auth.info.HasUsername = st.Username, true
	return authOK
}

// authTimeout closes a connection whose enhanced authentication did not
// finish within ConnectTimeout of its CONNECT.
func (c *client) authTimeout() {
	select {
	case <-c.done:
		return
	default:
	}
	if c.auth.waiting.Load() {
		c.srv.stats.ConnectsRefused.Add(1)
		c.srv.stats.Refused.Inc("auth-timeout")
		c.log.Debug("enhanced authentication timed out", "timeout", c.srv.opts.ConnectTimeout)
		c.closeConn()
	}
}

// errAuthRefused ends the reader quietly after a refusing CONNACK was
// queued during an AUTH exchange.
var errAuthRefused = fmt.Errorf("authentication refused: %w", errClientDisconnect)

// handlePendingAuth takes a packet received while the CONNACK waits for an
// enhanced authentication exchange: only AUTH may come [MQTT-3.1.2-30]
// (or DISCONNECT, which simply ends the connection).
func (c *client) handlePendingAuth(pk packets.Packet) error {
	switch p := pk.(type) {
	case *packets.Auth:
		if p.ReasonCode != packets.ContinueAuthentication || p.Properties.AuthMethod != c.auth.method {
			c.auth.waiting.Store(false)
			c.refuse(packets.ProtocolError, "AUTH must continue the authentication with the same method")
			return errAuthRefused
		}
		out := c.connectAuthStep(c.auth.pending, p.Properties.AuthData)
		switch out {
		case authPending:
			return nil
		case authRefused:
			c.auth.waiting.Store(false)
			return errAuthRefused
		}
		c.auth.waiting.Store(false)
		cp := c.auth.pending
		c.auth.pending = nil
		if !c.completeConnect(cp) {
			return errAuthRefused
		}
		return nil
	case *packets.Disconnect:
		c.auth.waiting.Store(false)
		c.noWill = true
		return errClientDisconnect
	}
	c.auth.waiting.Store(false)
	c.refuse(packets.ProtocolError, "only AUTH may be sent before CONNACK during enhanced authentication")
	return errAuthRefused
}

// handleAuth takes an AUTH packet after CONNACK: a re-authentication
// (0x19) or its continuation (0x18), with the method of CONNECT
// [MQTT-4.12.1-1]. A failed re-authentication ends the connection with
// DISCONNECT 0x87 [MQTT-4.12.1-2] (0x86 and 0x8C are not DISCONNECT
// reason codes); the identity may not change.
func (c *client) handleAuth(p *packets.Auth) error {
	err := c.reauth(p)
	var rc packets.ReasonCode
	if errors.As(err, &rc) && rc != packets.ProtocolError {
		c.srv.stats.ReauthFailures.Add(1)
		c.log.Debug("re-authentication failed", "reason", rc)
		return packets.NotAuthorized
	}
	return err
}

func (c *client) reauth(p *packets.Auth) error {
	if c.auth.method == "" || p.Properties.AuthMethod != c.auth.method {
		return packets.ProtocolError // no enhanced authentication on this connection, or another method
	}
	switch p.ReasonCode {
	case packets.ReAuthenticate:
		if c.auth.exchange != nil {
			return packets.ProtocolError // one re-authentication at a time
		}
		ea, ok := c.srv.auth.Load().authn.(EnhancedAuthenticator)
		if !ok {
			return packets.BadAuthenticationMethod
		}
		req := &AuthRequest{ClientID: c.id, Username: c.auth.info.Username, HasUsername: true, Version: c.version,
			RemoteAddr: c.auth.info.RemoteAddr, CertCommonName: c.auth.info.CertCommonName}
		ex, err := ea.StartAuth(c.auth.method, req)
		if err != nil {
			return c.authCode(err)
		}
		c.auth.exchange = ex
	case packets.ContinueAuthentication:
		if c.auth.exchange == nil {
			return packets.ProtocolError
		}
	default:
		return packets.ProtocolError
	}
	st, err := c.auth.exchange.Step(p.Properties.AuthData)
	if err != nil {
		c.auth.exchange = nil
		return c.authCode(err)
	}
	if !st.Done {
		return c.send(&packets.Auth{ReasonCode: packets.ContinueAuthentication,
			Properties: packets.Properties{AuthMethod: c.auth.method, AuthData: st.Data}})
	}
	c.auth.exchange = nil
	if st.Username != c.auth.info.Username {
		c.log.Debug("re-authentication as another user refused", "user", st.Username)
		return packets.NotAuthorized
	}
	return c.send(&packets.Auth{ReasonCode: packets.Success,
		Properties: packets.Properties{AuthMethod: c.auth.method, AuthData: st.Data}})
}

// PasswordFile is the built-in Authenticator: a file of "user:hash" lines
// in the style of Mosquitto's password file, written by `beacon passwd`.
// Blank lines and lines starting with '#' are ignored. A hash is either
// bcrypt ($2a$, $2b$ or $2y$) or a SCRAM-SHA-256 credential
// ($scram-sha-256$..., see NewSCRAMHash); a SCRAM entry also checks plain
// passwords, so it serves both kinds of client. The file is read whole
// when loaded; a PasswordFile never changes afterwards (Reload loads a new
// one), so it is safe for concurrent use.
type PasswordFile struct {
	users  map[string]passwordEntry
	dummy  passwordEntry // checked for an unknown user (see Authenticate)
	secret []byte        // keys the made-up SCRAM salts of unknown users
}

type passwordEntry struct {
	bcrypt []byte
	scram  *scramCredential
}

var (
	_ Authenticator         = (*PasswordFile)(nil)
	_ EnhancedAuthenticator = (*PasswordFile)(nil)
)

// LoadPasswordFile reads a password file. Errors name the file and line.
func LoadPasswordFile(path string) (*PasswordFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("password file: %w", err)
	}
	return ParsePasswordFile(data, path)
}

// ParsePasswordFile parses the contents of a password file; name is used
// in error messages.
func ParsePasswordFile(data []byte, name string) (*PasswordFile, error) {
	f := &PasswordFile{users: make(map[string]passwordEntry), secret: make([]byte, 32)}
	if _, err := rand.Read(f.secret); err != nil {
		return nil, err
	}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		where := fmt.Sprintf("password file %s:%d", name, i+1)
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("%s: want user:hash (create entries with `beacon passwd %s USER`)", where, name)
		}
		if _, dup := f.users[user]; dup {
			return nil, fmt.Errorf("%s: user %q appears twice", where, user)
		}
		var e passwordEntry
		switch {
		case strings.HasPrefix(hash, "$2a$") || strings.HasPrefix(hash, "$2b$") || strings.HasPrefix(hash, "$2y$"):
			if _, err := bcrypt.Cost([]byte(hash)); err != nil {
				return nil, fmt.Errorf("%s: user %q: bad bcrypt hash: %v", where, user, err)
			}
			e.bcrypt = []byte(hash)
		case strings.HasPrefix(hash, scramPrefix):
			c, err := parseSCRAM(hash)
			if err != nil {
				return nil, fmt.Errorf("%s: user %q: %v", where, user, err)
			}
			e.scram = c
		default:
			return nil, fmt.Errorf("%s: user %q: unknown hash format: want bcrypt ($2a$, $2b$, $2y$) or $scram-sha-256$, as `beacon passwd` writes", where, user)
		}
		f.users[user] = e
		if f.dummy.bcrypt == nil && f.dummy.scram == nil {
			f.dummy = e
		}
	}
	return f, nil
}

// Len returns the number of users.
func (f *PasswordFile) Len() int { return len(f.users) }

// Authenticate implements Authenticator: the user must exist and the
// password match its hash.
func (f *PasswordFile) Authenticate(req *AuthRequest) error {
	e, ok := f.users[req.Username]
	if !ok || !req.HasUsername {
		// An unknown user costs as much time as a wrong password (a check
		// against another user's hash, whose result is ignored), so that
		// timing does not tell which user names exist.
		_ = f.dummy.check(req.Password)
		return ErrBadCredentials
	}
	if !req.HasPassword {
		return ErrBadCredentials
	}
	if !e.check(req.Password) {
		return ErrBadCredentials
	}
	return nil
}

// check reports whether password matches the entry.
func (e passwordEntry) check(password []byte) bool {
	switch {
	case e.scram != nil:
		return e.scram.verifyPassword(password)
	case e.bcrypt != nil:
		return bcrypt.CompareHashAndPassword(e.bcrypt, password) == nil
	}
	return false
}

// StartAuth implements EnhancedAuthenticator with SCRAM-SHA-256. Users
// whose entry is a bcrypt hash cannot use it: their exchange fails like a
// wrong password.
func (f *PasswordFile) StartAuth(method string, _ *AuthRequest) (AuthExchange, error) {
	if method != SCRAMSHA256 {
		return nil, ErrBadAuthMethod
	}
	return &scramServer{f: f}, nil
}

// scramCredential returns the SCRAM credential of user, nil when there is
// none.
func (f *PasswordFile) scramCredential(user string) *scramCredential {
	return f.users[user].scram
}

// scramSalt returns the salt and iteration count to send user: its own,
// or for an unknown user a salt made up from the user name, the same on
// every attempt, so that the answer does not reveal whether it exists.
func (f *PasswordFile) scramSalt(user string) ([]byte, int) {
	if c := f.users[user].scram; c != nil {
		return c.salt, c.iter
	}
	return hmacSHA256(f.secret, user)[:16], SCRAMIterations
}

// ACLDenyAction values.
const (
	ACLDenyDrop       = "drop"
	ACLDenyDisconnect = "disconnect"
)

// validateAuth checks the authentication and authorization options (the
// files themselves are loaded by New).
func (o *Options) validateAuth() []error {
	var errs []error
	if o.PasswordFile != "" && o.Authenticator != nil {
		errs = append(errs, errors.New("PasswordFile and Authenticator are both set: use one (the password file is an Authenticator)"))
	}
	if o.ACLFile != "" && o.Authorizer != nil {
		errs = append(errs, errors.New("ACLFile and Authorizer are both set: use one (the ACL file is an Authorizer)"))
	}
	switch o.ACLDenyAction {
	case "", ACLDenyDrop, ACLDenyDisconnect: // "" is drop
	default:
		errs = append(errs, fmt.Errorf("ACLDenyAction %q: use drop or disconnect (default drop)", o.ACLDenyAction))
	}
	return errs
}
