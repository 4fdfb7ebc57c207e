package bridge

// The mqtt sink (direction out) and the shared part of both directions:
// configuration, dialling (TCP, TLS, WebSocket), and the connection loop
// that keeps one client connected with backoff. The protocol clients are
// in mqtt_client.go, the source (direction in) in mqtt_in.go.
// docs/bridges-mqtt.md is the user's reference for everything here.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pahopackets "github.com/eclipse/paho.golang/packets"
	"github.com/gorilla/websocket"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/storage"
)

// MarkerKey is the user property a bridge adds to every message it carries
// across, with its client_id (the base, without -out/-in) as value: on the
// remote broker for direction out, on the local broker for direction in.
// A message is never carried twice over the same link: the sink skips a
// message that already carries its client_id (it came in from that
// remote), and the source skips a remote message that does (it is the
// bridge's own publication coming back through its subscription). A pair
// of bridges, one out and one in, to the same remote therefore shares its
// client_id; docs/bridges-mqtt.md explains it.
const MarkerKey = "beacon-bridge"

// Defaults of MQTTConfig; docs/bridges-mqtt.md lists them too.
const (
	defaultMQTTKeepAlive      = 30 * time.Second
	defaultMQTTConnectTimeout = 10 * time.Second
	defaultMQTTAckTimeout     = 10 * time.Second
	defaultMQTTSessionExpiry  = 24 * time.Hour
	defaultMQTTBackoffInitial = 500 * time.Millisecond
	defaultMQTTBackoffMax     = 30 * time.Second
	// inReceiveMaximum bounds the messages the remote may have in flight
	// to the source: those are unacknowledged until published locally.
	inReceiveMaximum = 256
	// dropGrace is how long a connection the source gives up on stays
	// open so paho's ack tracker (which flushes every 50ms) sends the
	// acknowledgements of the messages before the failed one.
	dropGrace = 200 * time.Millisecond
)

// MQTTConfig is the `mqtt:` block of a bridge in beacon.yaml: the remote
// broker, how to reach it, and how topics map between the two brokers.
type MQTTConfig struct {
	// URL of the remote broker: mqtt://host:port, mqtts://host:port (TLS),
	// ws://host:port/path or wss://host:port/path (WebSocket).
	URL string `yaml:"url"`
	// Version of the protocol spoken to the remote: "5" (default, through
	// paho.golang) or "3.1.1" (a small client on Beacon's codec). 3.1.1
	// carries no properties, so neither the loop marker nor expiry crosses.
	Version string `yaml:"version"`
	// ClientID is the base of the client identifiers on the remote
	// (default beacon-bridge-{name}); direction out connects as
	// {client_id}-out, direction in as {client_id}-in, so a pair of
	// bridges sharing it does not take its own session over. It is also
	// the value of the loop marker (MarkerKey).
	ClientID string `yaml:"client_id"`
	Username string `yaml:"username"`
	// Password, or PasswordEnv: the name of an environment variable that
	// holds it (keeps the secret out of the file). At most one of them.
	Password    string        `yaml:"password"`
	PasswordEnv string        `yaml:"password_env"`
	TLS         MQTTTLSConfig `yaml:"tls"`
	// KeepAlive sent in CONNECT (default 30s, whole seconds, at most 18h12m15s).
	KeepAlive time.Duration `yaml:"keepalive"`
	// ConnectTimeout bounds dialling plus CONNECT/CONNACK (default 10s);
	// a Deliver while the remote is down waits at most this long for it.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// AckTimeout bounds the wait for PUBACK and SUBACK (default 10s).
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// QoS of publications to the remote (out) and of the subscriptions on
	// it (in): 0, 1 (default) or 2. Below 1 nothing is acknowledged and a
	// message lost on the way is not noticed.
	QoS *byte `yaml:"qos"`
	// LocalPrefix and RemotePrefix remap topics: a topic leaving one broker
	// loses that broker's prefix (when it starts with it) and gains the
	// other's. Out: remote = remote_prefix + (local without local_prefix).
	// In: local = local_prefix + (remote without remote_prefix).
	LocalPrefix  string `yaml:"local_prefix"`
	RemotePrefix string `yaml:"remote_prefix"`
	// Subscribe lists the remote topic filters (direction in).
	Subscribe []string `yaml:"subscribe"`
	// SessionExpiry of the persistent session on the remote (direction in,
	// default 24h): how long the remote keeps queueing for the bridge while
	// Beacon is down. 5.0 only; a 3.1.1 remote's configuration decides.
	SessionExpiry time.Duration `yaml:"session_expiry"`
	// Reconnect is the backoff between connection attempts.
	Reconnect MQTTBackoff `yaml:"reconnect"`
}

// MQTTTLSConfig configures TLS towards the remote (mqtts://, wss://).
type MQTTTLSConfig struct {
	CAFile             string `yaml:"ca_file"`   // PEM roots; default: the system's
	CertFile           string `yaml:"cert_file"` // client certificate (PEM), with KeyFile
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"` // tests only
	ServerName         string `yaml:"server_name"`          // default: the URL's host
}

// MQTTBackoff is an exponential backoff: the n-th wait is a random
// duration in [d/2, d] with d = initial·2^(n-1), capped at max.
type MQTTBackoff struct {
	Initial time.Duration `yaml:"initial"` // default 500ms
	Max     time.Duration `yaml:"max"`     // default 30s
}

// validate reports every bad field, named by its YAML key under mqtt:.
func (c *MQTTConfig) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("mqtt."+format, args...)) }
	if c.URL == "" {
		bad("url is empty: set the remote broker, e.g. mqtt://broker.example:1883 or mqtts://broker.example:8883")
	} else if u, err := url.Parse(c.URL); err != nil {
		bad("url %q: %v", c.URL, err)
	} else {
		switch u.Scheme {
		case "mqtt", "mqtts", "ws", "wss":
		default:
			bad("url %q: scheme %q is not one of mqtt, mqtts, ws, wss", c.URL, u.Scheme)
		}
		if u.Hostname() == "" {
			bad("url %q has no host", c.URL)
		}
		if (u.Scheme == "mqtt" || u.Scheme == "ws") && c.TLS != (MQTTTLSConfig{}) {
			bad("tls is set but url %q is not encrypted: use mqtts:// or wss://", c.URL)
		}
	}
	if _, ok := protocolVersion(c.Version); !ok {
		bad("version %q: use 5 (the default) or 3.1.1", c.Version)
	}
	if c.Password != "" && c.PasswordEnv != "" {
		bad("password and mqtt.password_env are both set: keep one")
	}
	if c.PasswordEnv != "" {
		if _, ok := os.LookupEnv(c.PasswordEnv); !ok {
			bad("password_env: environment variable %s is not set", c.PasswordEnv)
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls.cert_file and mqtt.tls.key_file go together: set both for a client certificate, or neither")
	}
	for _, f := range []struct{ key, path string }{{"tls.ca_file", c.TLS.CAFile}, {"tls.cert_file", c.TLS.CertFile}, {"tls.key_file", c.TLS.KeyFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			bad("%s: %v", f.key, err)
		}
	}
	if c.KeepAlive < 0 || c.KeepAlive > 65535*time.Second || (c.KeepAlive > 0 && c.KeepAlive < time.Second) {
		bad("keepalive %v: use whole seconds between 1s and 65535s (e.g. 30s), or leave it out for 30s", c.KeepAlive)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"connect_timeout", c.ConnectTimeout}, {"ack_timeout", c.AckTimeout}, {"reconnect.initial", c.Reconnect.Initial}, {"reconnect.max", c.Reconnect.Max}} {
		if d.v < 0 || (d.v > 0 && d.v < time.Millisecond) {
			bad("%s %v: use a duration such as 500ms or 10s (a bare number is nanoseconds)", d.key, d.v)
		}
	}
	if c.Reconnect.Initial > 0 && c.Reconnect.Max > 0 && c.Reconnect.Max < c.Reconnect.Initial {
		bad("reconnect.max %v is below mqtt.reconnect.initial %v", c.Reconnect.Max, c.Reconnect.Initial)
	}
	if c.QoS != nil && *c.QoS > 2 {
		bad("qos %d: use 0, 1 or 2", *c.QoS)
	}
	for _, p := range []struct{ key, v string }{{"local_prefix", c.LocalPrefix}, {"remote_prefix", c.RemotePrefix}} {
		if p.v == "" {
			continue
		}
		if err := packets.ValidTopicName(p.v); err != nil {
			bad("%s %q: %v (a prefix is the start of a topic name, e.g. \"site1/\")", p.key, p.v, err)
		}
	}
	for i, f := range c.Subscribe {
		if err := packets.ValidTopicFilter(f); err != nil {
			bad("subscribe[%d] %q: %v", i, f, err)
		}
	}
	if c.SessionExpiry < 0 || c.SessionExpiry > 0xFFFFFFFF*time.Second || (c.SessionExpiry > 0 && c.SessionExpiry < time.Second) {
		bad("session_expiry %v: use whole seconds (e.g. 24h), or leave it out for 24h", c.SessionExpiry)
	}
	return errors.Join(errs...)
}

// protocolVersion maps the version setting to the protocol level.
func protocolVersion(v string) (packets.Version, bool) {
	switch v {
	case "", "5", "5.0":
		return packets.V5, true
	case "3.1.1", "4":
		return packets.V311, true
	}
	return 0, false
}

// withDefaults returns a copy of c with every unset field at its default.
func (c *MQTTConfig) withDefaults(name string) MQTTConfig {
	d := *c
	if d.ClientID == "" {
		d.ClientID = "beacon-bridge-" + name
	}
	if d.KeepAlive == 0 {
		d.KeepAlive = defaultMQTTKeepAlive
	}
	if d.ConnectTimeout == 0 {
		d.ConnectTimeout = defaultMQTTConnectTimeout
	}
	if d.AckTimeout == 0 {
		d.AckTimeout = defaultMQTTAckTimeout
	}
	if d.QoS == nil {
		q := byte(1)
		d.QoS = &q
	}
	if d.SessionExpiry == 0 {
		d.SessionExpiry = defaultMQTTSessionExpiry
	}
	if d.Reconnect.Initial == 0 {
		d.Reconnect.Initial = defaultMQTTBackoffInitial
	}
	if d.Reconnect.Max == 0 {
		d.Reconnect.Max = max(defaultMQTTBackoffMax, d.Reconnect.Initial)
	}
	return d
}

// tlsConfig loads the certificates named in c.TLS.
func (c *MQTTConfig) tlsConfig() (*tls.Config, error) {
	t := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.TLS.ServerName,
		InsecureSkipVerify: c.TLS.InsecureSkipVerify,
	}
	if c.TLS.CAFile != "" {
		pem, err := os.ReadFile(c.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt.tls.ca_file %s: no PEM certificate in it", c.TLS.CAFile)
		}
		t.RootCAs = pool
	}
	if c.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt.tls.cert_file/key_file: %w", err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

// password resolves password or password_env.
func (c *MQTTConfig) password() ([]byte, error) {
	if c.PasswordEnv == "" {
		return []byte(c.Password), nil
	}
	v, ok := os.LookupEnv(c.PasswordEnv)
	if !ok {
		return nil, fmt.Errorf("mqtt.password_env: environment variable %s is not set", c.PasswordEnv)
	}
	return []byte(v), nil
}

// mapTopic strips from off topic when topic starts with it and prepends to.
func mapTopic(topic, from, to string) string {
	return to + strings.TrimPrefix(topic, from)
}

// hasMarker reports whether user holds the loop marker with value id.
func hasMarker(user []packets.UserProperty, id string) bool {
	for _, u := range user {
		if u.Key == MarkerKey && u.Value == id {
			return true
		}
	}
	return false
}

// remoteSession is one live connection to the remote with what its
// CONNACK announced.
type remoteSession struct {
	conn remoteConn
	connackInfo
	drop chan struct{} // buffered(1): ask the loop to end this connection
	// ctx ends when the connection has ended.
	ctx    context.Context
	cancel context.CancelFunc
	// failed (direction in): a local publish failed on this connection, so
	// later messages on it are neither published nor acknowledged; the
	// remote sends them again, in order, after the reconnect.
	failed atomic.Bool
}

// remote keeps one client (paho.golang for 5.0, client311 for 3.1.1)
// connected to the remote broker: it dials, connects, runs onUp (the
// source subscribes there), waits for the connection to end and tries
// again after a backoff, until close. One goroutine (run) owns the
// connection; others read the current one under mu.
type remote struct {
	name     string
	dir      string // "out" or "in"
	cfg      MQTTConfig
	url      *url.URL
	tls      *tls.Config
	password []byte
	log      *slog.Logger

	version packets.Version

	// Set by the direction before start.
	clientID      string
	cleanStart    bool
	sessionExpiry uint32
	// onPublish handles a received PUBLISH on session s (direction in);
	// ack acknowledges it to the remote.
	onPublish func(s *remoteSession, p *packets.Publish, ack func())
	// onUp runs on every new connection before it counts as up; an error
	// closes the connection and counts as a failed attempt.
	onUp func(ctx context.Context, s *remoteSession) error

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	cur     *remoteSession // nil while down
	up      chan struct{}  // closed when cur is set; replaced when it goes down
	lastErr error          // why the last attempt or connection ended
}

func newRemote(name, dir string, cfg *MQTTConfig, logger *slog.Logger) (*remote, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("bridge %s: %w", name, err)
	}
	d := cfg.withDefaults(name)
	u, _ := url.Parse(d.URL) // validate parsed it
	if u.Port() == "" {
		port := map[string]string{"mqtt": "1883", "mqtts": "8883", "ws": "80", "wss": "443"}[u.Scheme]
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	r := &remote{name: name, dir: dir, cfg: d, url: u, log: logger, up: make(chan struct{}), done: make(chan struct{})}
	r.version, _ = protocolVersion(d.Version)
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.log = r.log.With("bridge", name, "direction", dir, "remote", u.Redacted())
	if u.Scheme == "mqtts" || u.Scheme == "wss" {
		t, err := d.tlsConfig()
		if err != nil {
			return nil, fmt.Errorf("bridge %s: %w", name, err)
		}
		r.tls = t
	}
	pw, err := d.password()
	if err != nil {
		return nil, fmt.Errorf("bridge %s: %w", name, err)
	}
	r.password = pw
	r.clientID = d.ClientID + "-" + dir
	r.lastErr = errors.New("not connected yet")
	return r, nil
}

// start launches the connection loop; ctx ends it like close does.
func (r *remote) start(ctx context.Context) {
	r.ctx, r.cancel = context.WithCancel(ctx)
	go r.run()
}

// close ends the connection loop (DISCONNECT if connected) and waits for it.
func (r *remote) close() error {
	r.cancel()
	<-r.done
	return nil
}

// backoff is the wait before attempt n (n >= 1): random in [d/2, d] with
// d = initial·2^(n-1) capped at max, so a fleet of bridges does not
// reconnect in lockstep.
func (r *remote) backoff(n int) time.Duration {
	d := r.cfg.Reconnect.Initial
	for i := 1; i < n && d < r.cfg.Reconnect.Max; i++ {
		d *= 2
	}
	d = min(d, r.cfg.Reconnect.Max)
	return d/2 + rand.N(d/2+1)
}

func (r *remote) setErr(err error) {
	r.mu.Lock()
	r.lastErr = err
	r.mu.Unlock()
}

func (r *remote) run() {
	defer close(r.done)
	failures := 0
	for {
		if failures > 0 {
			t := time.NewTimer(r.backoff(failures))
			select {
			case <-t.C:
			case <-r.ctx.Done():
				t.Stop()
				return
			}
		}
		s, err := r.connect()
		if err != nil {
			if r.ctx.Err() != nil {
				return
			}
			failures++
			r.setErr(err)
			r.log.Warn("mqtt bridge: connecting to the remote failed", "attempt", failures, "err", err)
			continue
		}
		upAt := time.Now()
		r.mu.Lock()
		r.cur = s
		close(r.up)
		r.mu.Unlock()
		r.log.Info("mqtt bridge: connected", "client", r.clientID)

		var why error
		select {
		case <-s.conn.done():
			why = errors.New("connection lost")
		case <-s.drop:
			// The source could not publish a message locally: end the
			// connection so the remote redelivers what is unacknowledged.
			// Give the ack tracker time to send the acknowledgements that
			// precede the failed message first.
			t := time.NewTimer(dropGrace)
			select {
			case <-t.C:
			case <-r.ctx.Done():
				t.Stop()
			}
			s.conn.disconnect()
			why = errors.New("closed to have unacknowledged messages redelivered")
		case <-r.ctx.Done():
			s.conn.disconnect()
		}
		<-s.conn.done()
		s.cancel()
		r.mu.Lock()
		r.cur = nil
		r.up = make(chan struct{})
		if why != nil && r.lastErr == nil {
			r.lastErr = why
		}
		why = r.lastErr
		r.mu.Unlock()
		if r.ctx.Err() != nil {
			r.log.Info("mqtt bridge: disconnected")
			return
		}
		r.log.Warn("mqtt bridge: disconnected from the remote, reconnecting", "err", why)
		// A connection that lasted is a fresh start; one that failed
		// at once keeps the backoff growing (a remote that accepts and
		// then closes must not be hammered).
		if time.Since(upAt) > r.cfg.Reconnect.Max {
			failures = 0
		}
		failures++
	}
}

// connect dials the remote and completes CONNECT/CONNACK and onUp.
func (r *remote) connect() (*remoteSession, error) {
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.ConnectTimeout)
	defer cancel()
	conn, err := r.dial(ctx)
	if err != nil {
		return nil, err
	}
	s := &remoteSession{drop: make(chan struct{}, 1)}
	o := connectOpts{
		version:       r.version,
		clientID:      r.clientID,
		keepAlive:     uint16(r.cfg.KeepAlive / time.Second),
		cleanStart:    r.cleanStart,
		sessionExpiry: r.sessionExpiry,
		username:      r.cfg.Username,
		password:      r.password,
		ackTimeout:    r.cfg.AckTimeout,
		onError:       r.setErr,
	}
	if r.onPublish != nil {
		o.receiveMax = inReceiveMaximum
		o.onPublish = func(p *packets.Publish, ack func()) { r.onPublish(s, p, ack) }
	}
	r.setErr(nil)
	connect := connectPaho
	if r.version == packets.V311 {
		connect = connect311
	}
	s.conn, s.connackInfo, err = connect(ctx, conn, o)
	if err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if s.maxQoS < *r.cfg.QoS {
		r.log.Warn("mqtt bridge: the remote's Maximum QoS is below the configured qos; messages are sent with the lower QoS", "maximum_qos", s.maxQoS, "qos", *r.cfg.QoS)
	}
	if r.onUp != nil {
		if err := r.onUp(ctx, s); err != nil {
			s.conn.disconnect()
			<-s.conn.done()
			s.cancel()
			return nil, err
		}
	}
	return s, nil
}

// dial opens the transport named by the URL's scheme. The connection is
// safe for concurrent packet writes (paho writes from several goroutines:
// publishers, acks, pings).
func (r *remote) dial(ctx context.Context) (net.Conn, error) {
	switch r.url.Scheme {
	case "mqtt":
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", r.url.Host)
		if err != nil {
			return nil, err
		}
		return pahopackets.NewThreadSafeConn(c), nil
	case "mqtts":
		d := tls.Dialer{Config: r.tls}
		c, err := d.DialContext(ctx, "tcp", r.url.Host)
		if err != nil {
			return nil, err
		}
		return pahopackets.NewThreadSafeConn(c), nil
	default: // ws, wss
		d := websocket.Dialer{
			TLSClientConfig:  r.tls,
			Subprotocols:     []string{"mqtt"},
			HandshakeTimeout: r.cfg.ConnectTimeout,
		}
		u := *r.url
		c, _, err := d.DialContext(ctx, u.String(), nil)
		if err != nil {
			return nil, fmt.Errorf("websocket: %w", err)
		}
		return &wsConn{Conn: c}, nil
	}
}

// current returns the live connection, waiting while the remote is down
// until it is up again, ctx ends or ConnectTimeout passes.
func (r *remote) current(ctx context.Context) (*remoteSession, error) {
	r.mu.Lock()
	s, up := r.cur, r.up
	r.mu.Unlock()
	if s != nil {
		return s, nil
	}
	t := time.NewTimer(r.cfg.ConnectTimeout)
	defer t.Stop()
	select {
	case <-up:
		r.mu.Lock()
		s = r.cur
		r.mu.Unlock()
		if s != nil {
			return s, nil
		}
	case <-ctx.Done():
	case <-t.C:
	case <-r.done:
	}
	r.mu.Lock()
	err := r.lastErr
	r.mu.Unlock()
	if err == nil {
		err = errors.New("connection lost")
	}
	return nil, fmt.Errorf("remote %s not connected: %w", r.url.Redacted(), err)
}

// wsConn carries MQTT over a WebSocket as a net.Conn: every Write is one
// binary message, reads run across message boundaries (a packet may span
// messages, and a message may hold several packets [MQTT-6.0.0-2]).
// It implements sync.Locker so paho holds the lock for a whole packet
// (written as several Writes) and packets from different goroutines do
// not interleave.
type wsConn struct {
	*websocket.Conn
	pmu sync.Mutex // held by paho for one whole packet (Lock/Unlock)
	wmu sync.Mutex // one writer on the websocket at a time
	rmu sync.Mutex
	r   io.Reader
}

func (c *wsConn) Lock()   { c.pmu.Lock() }
func (c *wsConn) Unlock() { c.pmu.Unlock() }

func (c *wsConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if c.r == nil {
			_, r, err := c.NextReader()
			if err != nil {
				return 0, err
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

var _ Prober = (*mqttSink)(nil)

// mqttSink publishes bridge messages to the remote broker (direction out).
type mqttSink struct {
	name string
	r    *remote
	qos  byte
}

// Probe reports whether the sink is connected to the remote, waiting for
// the connection like Deliver does (see Prober).
func (s *mqttSink) Probe(ctx context.Context) error {
	_, err := s.r.current(ctx)
	return err
}

// newMQTTSink validates cfg and starts connecting in the background; the
// first Deliver waits for the connection (up to connect_timeout).
func newMQTTSink(name string, cfg *MQTTConfig, logger *slog.Logger) (Sink, error) {
	r, err := newRemote(name, "out", cfg, logger)
	if err != nil {
		return nil, err
	}
	// Out needs no session on the remote: a publication not acknowledged
	// when the connection drops fails its Deliver and the core sends it
	// again (at least once, duplicates possible).
	r.cleanStart = true
	r.start(context.Background())
	return &mqttSink{name: name, r: r, qos: *r.cfg.QoS}, nil
}

// Deliver publishes m on the remote and returns nil once it is
// acknowledged (QoS 1: PUBACK, QoS 2: PUBCOMP, each with a reason code
// below 0x80; QoS 0: once written). A refusal the remote will repeat is
// Permanent; a lost or absent connection and 0x97 Quota exceeded are
// retried by the core.
func (s *mqttSink) Deliver(ctx context.Context, m *storage.Message) error {
	if hasMarker(m.Properties.User, s.r.cfg.ClientID) {
		// It came in through this bridge: sending it back out would loop.
		s.r.log.Debug("mqtt bridge: not sending a message back the way it came", "topic", m.Topic)
		return nil
	}
	topic := mapTopic(m.Topic, s.r.cfg.LocalPrefix, s.r.cfg.RemotePrefix)
	if err := packets.ValidTopicName(topic); err != nil {
		return Permanent(fmt.Errorf("topic %q maps to remote topic %q: %w", m.Topic, topic, err))
	}
	props, err := outProperties(m, s.r.cfg.ClientID, time.Now())
	if err != nil {
		return Permanent(err)
	}
	rs, err := s.r.current(ctx)
	if err != nil {
		return err
	}
	p := &packets.Publish{
		QoS:        min(s.qos, rs.maxQoS),
		Retain:     m.Retain && rs.retain,
		Topic:      topic,
		Payload:    m.Payload,
		Properties: props,
	}
	if rs.maxPacket > 0 {
		if n := publishSize(p, s.r.version); n > int(rs.maxPacket) {
			return Permanent(fmt.Errorf("message of %d bytes exceeds the remote's Maximum Packet Size %d", n, rs.maxPacket))
		}
	}
	// The wait for the acknowledgement ends with the connection too (paho
	// does not wake a publisher whose connection is gone: its session
	// state forgets the packet).
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(rs.ctx, cancel)()
	code, reason, err := rs.conn.publish(pctx, p)
	if code >= 0x80 {
		if reason != "" {
			reason = ": " + reason
		}
		e := fmt.Errorf("remote refused the message: 0x%02x %s%s", byte(code), code.String(), reason)
		if code == packets.QuotaExceeded {
			return e // the remote's quota frees up: retry later
		}
		return Permanent(e)
	}
	if err != nil {
		var refused *refusedError
		if errors.As(err, &refused) {
			return Permanent(fmt.Errorf("remote cannot take the message: %w", err))
		}
		if rs.ctx.Err() != nil && ctx.Err() == nil {
			return fmt.Errorf("publishing to %s: connection lost before the acknowledgement", s.r.url.Redacted())
		}
		return fmt.Errorf("publishing to %s: %w", s.r.url.Redacted(), err)
	}
	return nil
}

// Close disconnects from the remote.
func (s *mqttSink) Close() error { return s.r.close() }

// outProperties converts the message's 5.0 properties for the remote: kept
// as published except the Message Expiry Interval, which is what remains
// of it now [MQTT-3.3.2-6], and the loop marker added. A message that has
// expired is refused (Permanent) rather than sent. (A 3.1.1 remote gets
// none of them: its PUBLISH has no properties.)
func outProperties(m *storage.Message, marker string, now time.Time) (packets.Properties, error) {
	mp := &m.Properties
	p := packets.Properties{
		ContentType:     mp.ContentType,
		ResponseTopic:   mp.ResponseTopic,
		CorrelationData: mp.CorrelationData,
	}
	if mp.Has(packets.PropPayloadFormat) {
		p.PayloadFormat = mp.PayloadFormat
		p.Mark(packets.PropPayloadFormat)
	}
	if mp.Has(packets.PropMessageExpiry) {
		left := m.ExpiresAt().Sub(now)
		if left <= 0 {
			return p, fmt.Errorf("message expired %v ago, before it could be delivered", -left.Round(time.Millisecond))
		}
		p.MessageExpiry = uint32((left + time.Second - 1) / time.Second)
		p.Mark(packets.PropMessageExpiry)
	}
	p.User = make([]packets.UserProperty, 0, len(mp.User)+1)
	p.User = append(p.User, mp.User...)
	p.User = append(p.User, packets.UserProperty{Key: MarkerKey, Value: marker})
	return p, nil
}

// publishSize is the encoded size of p for version v.
func publishSize(p *packets.Publish, v packets.Version) int {
	q := *p
	if q.QoS > 0 {
		q.PacketID = 1 // assigned when sent; its size is fixed
	}
	h, err := q.AppendHeader(nil, v)
	if err != nil {
		return 0 // the client's encoder reports the problem
	}
	return len(h) + len(p.Payload)
}
