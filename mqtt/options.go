package mqtt

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/beaconmq/beacon/storage"
)

// Options configures a Server. Start from DefaultOptions; Validate (called
// by New) explains every value it rejects. Only cmd/ reads flags, files and
// the environment; this package takes everything from Options.
type Options struct {
	// MQTTAddr is the TCP listen address for MQTT ("" disables it; port 0
	// picks a free port).
	MQTTAddr string
	// WSAddr is the WebSocket listen address (path /mqtt, subprotocols mqtt
	// and mqttv3.1); "" disables it.
	WSAddr string
	// HTTPAddr serves /healthz, /readyz, /metrics and the admin API under
	// /api/v1; "" disables it.
	HTTPAddr string
	// AdminToken is the bearer token the admin API (/api/v1) requires
	// ("Authorization: Bearer TOKEN"). Empty means no token: the admin API
	// then answers only clients connecting from a loopback address.
	AdminToken string

	// Store persists sessions, pending deliveries, retained messages and the
	// log. nil means a fresh memory store owned (and closed) by the Server;
	// a Store passed in is left open on Shutdown for its owner to close.
	Store storage.Store
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger

	// MaxPacketSize is the largest packet the server accepts (fixed header
	// included), advertised to 5.0 clients as Maximum Packet Size; a client
	// exceeding it is disconnected with 0x95.
	MaxPacketSize uint32
	// ConnectTimeout bounds the wait for the first packet (CONNECT) of a new
	// connection.
	ConnectTimeout time.Duration
	// MaxKeepAlive caps the Keep Alive of 5.0 clients (seconds); a client
	// asking for more, or for 0, gets Server Keep Alive = MaxKeepAlive in
	// CONNACK. 0 means no cap.
	MaxKeepAlive uint16
	// MaxSessionExpiry caps the Session Expiry Interval a 5.0 client may ask
	// for (seconds; 0 means no cap). 3.1.1 persistent sessions never expire.
	MaxSessionExpiry uint32
	// ReceiveMaximum is how many unacknowledged QoS 1/2 PUBLISH packets a
	// 5.0 client may send; exceeding it gets DISCONNECT 0x93.
	ReceiveMaximum uint16
	// MaxInflight caps the outbound inflight window of every session (the
	// client's Receive Maximum can only make it smaller).
	MaxInflight uint16
	// TopicAliasMaximum is the highest topic alias a 5.0 client may use
	// towards the server (0 disables inbound aliases).
	TopicAliasMaximum uint16
	// OutboundTopicAliases is how many topic aliases the server assigns per
	// connection when the client allows them (0 disables outbound aliases).
	OutboundTopicAliases uint16
	// MaxQueuedMessages bounds each session's queue of QoS 1/2 deliveries
	// waiting for the inflight window (0 = unlimited). Overflow policy:
	// refuse the newest, counted in Stats.DroppedQueueFull.
	MaxQueuedMessages int
	// MaxOutboundBytes bounds each connection's outbound buffer (at least
	// 64 KiB): QoS 0 messages that do not fit are dropped and counted, new
	// QoS 1/2 deliveries wait in the session queue. A packet larger than
	// the bound still goes out when the buffer is empty.
	MaxOutboundBytes int
	// WriteTimeout is how long one batched write to a client may block; a
	// client stuck longer is a slow consumer and is disconnected.
	WriteTimeout time.Duration
	// RetainAvailable enables retained messages (advertised in CONNACK).
	RetainAvailable bool
	// MaxQoS is the highest QoS the server supports (0, 1 or 2).
	MaxQoS byte
	// SysInterval is how often $SYS topics are published (0 disables).
	SysInterval time.Duration
	// LogGCInterval is how often log entries that no session, retained
	// message or log reader needs any more are deleted (0 disables, and the
	// log then grows without bound).
	LogGCInterval time.Duration
	// LogRetention and LogRetentionBytes bound the log by age and by size
	// (topic, payload and properties of its messages) even where entries
	// are still needed; each log collection enforces them, and what a
	// session or log reader still needed is dead-lettered, never dropped
	// silently (loggc.go). 0 = no limit. They need LogGCInterval > 0.
	LogRetention      time.Duration
	LogRetentionBytes int64
	// SharedStrategy is the default member-picking strategy of shared
	// subscription groups; SharedStrategies overrides it per group name.
	SharedStrategy   string
	SharedStrategies map[string]string
	// TopicCacheSize bounds the topic tree's match cache (0 disables it).
	TopicCacheSize int

	// TLS listeners and client certificates (tls.go, docs/security.md).
	//
	// TLSAddr is the MQTT over TLS listen address (Mosquitto users expect
	// ":8883"); WSSAddr the WebSocket over TLS one (path /mqtt). "" disables
	// each. Both need TLSCertFile and TLSKeyFile (PEM), re-read on Reload.
	TLSAddr     string
	WSSAddr     string
	TLSCertFile string
	TLSKeyFile  string
	// TLSCAFile holds the PEM CA certificates that client certificates must
	// chain to; required when TLSClientAuth is "request" or "require".
	TLSCAFile string
	// TLSClientAuth is "none" (no client certificate asked for), "request"
	// (verified when sent) or "require" (handshake refused without a valid
	// one).
	TLSClientAuth string
	// TLSUseCNAsUsername makes the Common Name of a verified client
	// certificate the connection's username, whatever CONNECT says.
	TLSUseCNAsUsername bool
	// TLSMinVersion is the lowest TLS version accepted: "1.2" or "1.3".
	TLSMinVersion string

	// Limits (limits.go, docs/security.md). 0 means unlimited everywhere.
	//
	// MaxConnections and MaxConnectionsPerIP bound open network connections
	// (CONNACK 0x97 Quota exceeded; 3.1.1: 0x03 Server unavailable).
	MaxConnections      int
	MaxConnectionsPerIP int
	// MaxConnectRatePerIP is the sustained rate of new connections per
	// remote IP (per second, token bucket of ConnectBurstPerIP; CONNACK
	// 0x9F Connection rate exceeded).
	MaxConnectRatePerIP float64
	ConnectBurstPerIP   int
	// MaxPublishRate is the sustained rate of PUBLISH packets per
	// connection (per second, token bucket of PublishBurst): beyond it 5.0
	// QoS 1/2 is refused with 0x97, QoS 0 dropped and counted, and a 3.1.1
	// QoS 1/2 publisher disconnected.
	MaxPublishRate float64
	PublishBurst   int
	// MaxQueuedBytes bounds the payload and topic bytes of each session's
	// queued QoS 1/2 deliveries; a delivery beyond it is dead-lettered with
	// reason queue-full.
	MaxQueuedBytes int
	// MaxSubscriptionsPerClient bounds each session's subscriptions
	// (SUBACK 0x97 Quota exceeded; 3.1.1: 0x80).
	MaxSubscriptionsPerClient int
	// MaxTopicLength (bytes) and MaxTopicLevels bound topic names and
	// filters: PUBLISH gets 0x90 Topic Name invalid, SUBSCRIBE 0x8F Topic
	// Filter invalid.
	MaxTopicLength int
	MaxTopicLevels int

	// Authentication and authorization (auth.go, acl.go, docs/security.md).
	//
	// PasswordFile holds "user:hash" lines (bcrypt or SCRAM-SHA-256, written
	// by `beacon passwd`); ACLFile the access rules. Both are re-read on
	// Reload. Authenticator and Authorizer are the same hooks for programs
	// embedding the broker; each excludes its file.
	PasswordFile  string
	ACLFile       string
	Authenticator Authenticator
	Authorizer    Authorizer
	// AllowAnonymous lets clients without a user name connect when
	// authentication is configured (without any, everyone may connect).
	AllowAnonymous bool
	// ACLDenyAction is what a PUBLISH the ACL refuses leads to: "drop"
	// (counted; 5.0 QoS 1/2 answered with 0x87) or "disconnect".
	ACLDenyAction string
}

// DefaultOptions returns the configuration `beacon serve` runs with when
// nothing overrides it.
func DefaultOptions() Options {
	return Options{
		MQTTAddr:             ":1883",
		WSAddr:               ":8083",
		HTTPAddr:             ":8080",
		MaxPacketSize:        1 << 20,
		ConnectTimeout:       10 * time.Second,
		MaxKeepAlive:         0,
		ReceiveMaximum:       1024,
		MaxInflight:          1024,
		TopicAliasMaximum:    1024,
		OutboundTopicAliases: 64,
		MaxQueuedMessages:    10000,
		MaxOutboundBytes:     4 << 20,
		WriteTimeout:         10 * time.Second,
		RetainAvailable:      true,
		MaxQoS:               2,
		SysInterval:          10 * time.Second,
		LogGCInterval:        10 * time.Second,
		SharedStrategy:       string(sharedRoundRobin),
		TopicCacheSize:       4096,
		TLSClientAuth:        "none",
		TLSMinVersion:        "1.2",
		MaxTopicLevels:       defaultMaxTopicLevels,
		ACLDenyAction:        ACLDenyDrop,
	}
}

// Validate reports the first invalid setting with a message saying how to
// fix it.
func (o *Options) Validate() error {
	var errs []error
	for _, a := range []struct{ name, addr string }{{"MQTTAddr", o.MQTTAddr}, {"WSAddr", o.WSAddr}, {"HTTPAddr", o.HTTPAddr}} {
		if a.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q is not host:port (use \":1883\", \"127.0.0.1:0\" or \"\" to disable): %v", a.name, a.addr, err))
		}
	}
	if strings.ContainsAny(o.AdminToken, " \t\r\n") {
		errs = append(errs, errors.New("AdminToken contains white space: use a token without spaces or line breaks (e.g. the output of `openssl rand -hex 32`)"))
	}
	if o.MQTTAddr == "" && o.WSAddr == "" && o.TLSAddr == "" && o.WSSAddr == "" {
		errs = append(errs, errors.New("MQTTAddr, WSAddr, TLSAddr and WSSAddr are all empty: enable at least one listener"))
	}
	errs = append(errs, o.validateTLS()...)    // tls.go
	errs = append(errs, o.validateLimits()...) // limits.go
	errs = append(errs, o.validateAuth()...)   // auth.go
	if o.MaxPacketSize < 64 || o.MaxPacketSize > 268435460 {
		errs = append(errs, fmt.Errorf("MaxPacketSize %d out of range: use 64..268435460 bytes (default 1 MiB)", o.MaxPacketSize))
	}
	if o.ConnectTimeout <= 0 {
		errs = append(errs, fmt.Errorf("ConnectTimeout %v must be positive (default 10s)", o.ConnectTimeout))
	}
	if o.ReceiveMaximum == 0 {
		errs = append(errs, errors.New("ReceiveMaximum must be 1..65535 (default 1024)"))
	}
	if o.MaxInflight == 0 {
		errs = append(errs, errors.New("MaxInflight must be 1..65535 (default 1024)"))
	}
	if o.MaxQueuedMessages < 0 {
		errs = append(errs, fmt.Errorf("MaxQueuedMessages %d is negative: use 0 for unlimited", o.MaxQueuedMessages))
	}
	if o.MaxOutboundBytes < 64<<10 {
		errs = append(errs, fmt.Errorf("MaxOutboundBytes %d is too small: use at least 64 KiB (default 4 MiB)", o.MaxOutboundBytes))
	}
	if o.WriteTimeout <= 0 {
		errs = append(errs, fmt.Errorf("WriteTimeout %v must be positive (default 10s)", o.WriteTimeout))
	}
	if o.MaxQoS > 2 {
		errs = append(errs, fmt.Errorf("MaxQoS %d: use 0, 1 or 2", o.MaxQoS))
	}
	if o.LogGCInterval < 0 {
		errs = append(errs, fmt.Errorf("LogGCInterval %v is negative: use 0 to disable log garbage collection", o.LogGCInterval))
	}
	if o.LogRetention < 0 || o.LogRetentionBytes < 0 {
		errs = append(errs, fmt.Errorf("LogRetention %v / LogRetentionBytes %d is negative: use 0 for no limit", o.LogRetention, o.LogRetentionBytes))
	}
	if (o.LogRetention > 0 || o.LogRetentionBytes > 0) && o.LogGCInterval == 0 {
		errs = append(errs, errors.New("LogRetention and LogRetentionBytes are enforced by log collection, which LogGCInterval 0 disables: set LogGCInterval (e.g. 10s) or remove the retention limits"))
	}
	if o.SysInterval < 0 {
		errs = append(errs, fmt.Errorf("SysInterval %v is negative: use 0 to disable $SYS", o.SysInterval))
	}
	if o.TopicCacheSize < 0 {
		errs = append(errs, fmt.Errorf("TopicCacheSize %d is negative: use 0 to disable the cache", o.TopicCacheSize))
	}
	if _, err := parseSharedStrategy(o.SharedStrategy); err != nil {
		errs = append(errs, fmt.Errorf("SharedStrategy: %w", err))
	}
	for g, s := range o.SharedStrategies {
		if _, err := parseSharedStrategy(s); err != nil {
			errs = append(errs, fmt.Errorf("SharedStrategies[%q]: %w", g, err))
		}
	}
	return errors.Join(errs...)
}
