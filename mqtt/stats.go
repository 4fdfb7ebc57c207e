package mqtt

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/beaconmq/beacon/session"
)

// Stats are the server's counters: plain atomics, read by $SYS and (later)
// the Prometheus exporter. Every message the server does not deliver is
// counted under one of the Dropped fields, so nothing is lost silently.
type Stats struct {
	ConnectionsTotal  atomic.Uint64 // connections accepted
	ClientsConnected  atomic.Int64  // clients past CONNACK, now
	ConnectsRefused   atomic.Uint64 // CONNACK with an error code, or CONNECT timeout
	Connects          atomic.Uint64 // CONNECT packets received
	PacketsReceived   atomic.Uint64 // control packets of any type received
	PacketsSent       atomic.Uint64 // control packets of any type queued for sending
	MessagesReceived  atomic.Uint64 // PUBLISH packets received
	MessagesSent      atomic.Uint64 // PUBLISH packets sent
	BytesReceived     atomic.Uint64
	BytesSent         atomic.Uint64
	PublishReceived   [3]atomic.Uint64 // by QoS
	PublishSent       [3]atomic.Uint64 // by QoS
	PayloadReceived   [3]atomic.Uint64 // application payload bytes of PUBLISH packets received, by QoS
	PayloadSent       [3]atomic.Uint64 // application payload bytes of PUBLISH packets sent, by QoS
	RetainedStored    atomic.Uint64
	WillsPublished    atomic.Uint64
	SessionsExpired   atomic.Uint64
	Takeovers         atomic.Uint64
	SharedRerouted    atomic.Uint64 // unacknowledged shared deliveries handed to another member
	ProtocolErrors    atomic.Uint64 // connections closed for a malformed packet or protocol error
	KeepAliveTimeouts atomic.Uint64
	SlowConsumers     atomic.Uint64 // clients disconnected because a write blocked past WriteTimeout
	NegativeAcks      atomic.Uint64 // PUBACK/PUBREC with a reason code >= 0x80 (5.0)
	StorageErrors     atomic.Uint64 // log appends and retained writes that failed
	LogCollected      atomic.Uint64 // log entries deleted by CollectLog
	DeadLettered      atomic.Uint64 // messages republished on $dlq/broker/...
	DeadLetterDropped atomic.Uint64 // dead letters lost: queue to the dead-letter publisher full, or publish failed
	DelayedStored     atomic.Uint64 // PUBLISHes to $delayed/{seconds}/{topic} stored for later
	DelayedPublished  atomic.Uint64 // delayed messages published at their due time
	DelayedExpired    atomic.Uint64 // delayed messages whose Message Expiry passed before their due time (dead-lettered)

	// Retention (loggc.go): entries removed by LogRetention/LogRetentionBytes
	// that collection alone would have kept (at or above the lowest position
	// still needed); session deliveries of them dead-lettered; and messages
	// dead-lettered for a log reader (HoldLog) that had not read them.
	RetentionRemoved      atomic.Uint64
	RetentionDeadLettered atomic.Uint64
	RetentionReaderGaps   atomic.Uint64

	DroppedReserved       atomic.Uint64 // client PUBLISH to $SYS/ or $dlq/
	DroppedDelayedInvalid atomic.Uint64 // PUBLISH to a malformed $delayed/ topic (5.0 QoS >= 1: refused with 0x90)
	DroppedSlowQoS0       atomic.Uint64 // QoS 0 beyond a connection's MaxOutboundBytes
	BackPressureWaits     atomic.Uint64 // publisher batches held back for a congested subscriber (session/congestion.go)
	DroppedNoRoute        atomic.Uint64 // QoS 1/2 deliveries refused by a fenced/ended session
	DroppedQueueFull      atomic.Uint64 // refused by a full session queue (also in Session.Overflow)
	DroppedTopicLimit     atomic.Uint64 // PUBLISH whose topic exceeds MaxTopicLength/MaxTopicLevels (5.0 QoS >= 1: refused with 0x90)

	// Dead-letter replay and purge (deadletter.go).
	DeadLettersReplayed    atomic.Uint64 // replayed to their destination and removed from the index
	DeadLetterReplayFailed atomic.Uint64 // replays that failed (the dead letter stays, or is dead-lettered again)
	DeadLettersPurged      atomic.Uint64 // removed from the index by purge

	// Limits and TLS (limits.go, tls.go).
	PublishRateLimited   atomic.Uint64 // PUBLISH over MaxPublishRate: not routed (5.0 QoS >= 1: PUBACK/PUBREC 0x97; 3.1.1 QoS >= 1: disconnected)
	SubscriptionsRefused atomic.Uint64 // SUBSCRIBE filters refused by MaxSubscriptionsPerClient, MaxTopicLength or MaxTopicLevels
	TLSHandshakeErrors   atomic.Uint64 // TLS handshakes that failed or timed out (MQTT over TLS)
	PacketsTooLarge      atomic.Uint64 // connections closed for a packet over MaxPacketSize (5.0: DISCONNECT 0x95)
	ReceiveMaxExceeded   atomic.Uint64 // connections closed for exceeding Receive Maximum (5.0: DISCONNECT 0x93)

	// Authorization (acl.go, auth.go). Refused CONNECTs are in Refused by
	// reason code.
	DroppedNotAuthorized atomic.Uint64 // PUBLISH refused by the ACL (dropped, 0x87, or disconnected)
	SubscribeDenied      atomic.Uint64 // SUBSCRIBE filters refused by the ACL
	ReauthFailures       atomic.Uint64 // failed 5.0 re-authentications (disconnected)

	// AppendLatency is the distribution of log append durations of the
	// publish path (metrics.go).
	AppendLatency LatencyHistogram

	// DeadLetters counts dead letters by source and reason; Refused counts
	// refused connections by reason (a CONNACK reason code name, or a
	// limit's name). Both feed labelled Prometheus counters.
	DeadLetters LabeledCounter
	Refused     LabeledCounter

	// Session holds the counters the session package increments: expired
	// while queued, queue overflow, too large for the client, QoS 0 for an
	// offline session, storage errors.
	Session session.Stats
}

// LabeledCounter is a set of counters keyed by label values, for counts
// whose labels are not known in advance (dead letters by source and
// reason). The zero value is ready to use.
type LabeledCounter struct {
	mu sync.Mutex
	m  map[string]*atomic.Uint64
}

// Inc adds one to the counter of labels.
func (c *LabeledCounter) Inc(labels ...string) {
	key := strings.Join(labels, "\x00")
	c.mu.Lock()
	n := c.m[key]
	if n == nil {
		if c.m == nil {
			c.m = make(map[string]*atomic.Uint64)
		}
		n = new(atomic.Uint64)
		c.m[key] = n
	}
	c.mu.Unlock()
	n.Add(1)
}

// Each calls fn with the label values and count of every counter.
func (c *LabeledCounter) Each(fn func(labels []string, n uint64)) {
	c.mu.Lock()
	keys := make([]string, 0, len(c.m))
	vals := make([]uint64, 0, len(c.m))
	for k, v := range c.m {
		keys = append(keys, k)
		vals = append(vals, v.Load())
	}
	c.mu.Unlock()
	for i, k := range keys {
		fn(strings.Split(k, "\x00"), vals[i])
	}
}
