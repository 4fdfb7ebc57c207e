package mqtt

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
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
	// HTTPAddr serves /healthz; "" disables it.
	HTTPAddr string

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
	// SharedStrategy is the default member-picking strategy of shared
	// subscription groups; SharedStrategies overrides it per group name.
	SharedStrategy   string
	SharedStrategies map[string]string
	// TopicCacheSize bounds the topic tree's match cache (0 disables it).
	TopicCacheSize int
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
	if o.MQTTAddr == "" && o.WSAddr == "" {
		errs = append(errs, errors.New("MQTTAddr and WSAddr are both empty: enable at least one listener"))
	}
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
