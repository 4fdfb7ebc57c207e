// Package storage keeps everything Beacon must not forget behind small
// interfaces: the ordered message log, session records (with a revision for
// compare-and-swap), each session's pending deliveries and inbound QoS 2
// state, retained messages and bridge cursors.
//
// The memory implementation (NewMemory) backs tests and `--storage memory`;
// the badger implementation is the default of `beacon serve`. Both run the
// same test suite (suite_test.go). No other package of Beacon knows badger.
package storage

import (
	"context"
	"errors"
	"time"

	"github.com/beaconmq/beacon/packets"
)

// Errors returned by every implementation.
var (
	// ErrNotFound: no record under that key.
	ErrNotFound = errors.New("storage: not found")
	// ErrRevisionMismatch: a compare-and-swap write carried a stale
	// revision; another owner wrote the record since it was read.
	ErrRevisionMismatch = errors.New("storage: revision mismatch")
	// ErrFull: the store cannot take more data (disk full, size limit).
	ErrFull = errors.New("storage: full")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("storage: closed")
)

// Message is one application message on the log. It is written once
// however many sessions it reaches; sessions and bridges refer to it by Seq.
type Message struct {
	Seq        uint64 // assigned by Log.Append, strictly increasing
	Topic      string
	Payload    []byte
	QoS        byte
	Retain     bool
	Properties packets.Properties // 5.0 properties as published, topic alias stripped
	Publisher  string             // client ID of the publisher (No Local)
	Created    time.Time          // arrival time; with Properties.MessageExpiry gives expiry
}

// ExpiresAt is the moment the message expires, or the zero time if it
// carries no Message Expiry Interval.
func (m *Message) ExpiresAt() time.Time {
	if !m.Properties.Has(packets.PropMessageExpiry) {
		return time.Time{}
	}
	return m.Created.Add(time.Duration(m.Properties.MessageExpiry) * time.Second)
}

// Log is the ordered message log with one global sequence.
type Log interface {
	// Append stores msgs in order, assigns each its Seq (one call's messages
	// get consecutive numbers) and returns once they are durable in the
	// configured durability mode. Concurrent callers are group-committed.
	// Messages become visible to readers in Seq order. ctx bounds only the
	// wait to be accepted: once accepted the call waits for the outcome. On
	// error Seq is left 0 and the caller must not acknowledge the messages;
	// they may still be on disk (a failed fsync after the write), which makes
	// a retry a duplicate, never a loss.
	//
	// A message is immutable once appended: the store may keep the value
	// it is given (the memory store does, to save a copy per message), so
	// the caller must not change it, or anything it points to, afterwards.
	// The broker never does: by then the message is shared with every
	// session it was routed to. What Get, Scan and the other readers
	// return is the caller's own copy.
	Append(ctx context.Context, msgs ...*Message) error
	// Get returns the message with sequence seq, or ErrNotFound.
	Get(seq uint64) (*Message, error)
	// Scan calls fn for messages with from <= Seq, in order, until fn
	// returns false or the log ends. No lock is held while fn runs, so fn
	// may call the store.
	Scan(from uint64, fn func(*Message) bool) error
	// ScanSeqs is Scan for the sequence numbers only: it decodes no
	// message, so the log collector can walk a large backlog cheaply.
	ScanSeqs(from uint64, fn func(seq uint64) bool) error
	// Head is the last sequence number assigned (0 when nothing was ever
	// appended). It does not go back when that message is deleted, nor on
	// restart: sequence numbers are never reused.
	Head() uint64
	// DeleteMessages removes log entries nothing refers to any more;
	// unknown sequence numbers are ignored.
	DeleteMessages(seqs ...uint64) error
}

// Subscription is one stored subscription of a session.
type Subscription struct {
	Filter            string // as subscribed, including any $share/{group}/ prefix
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	SubscriptionID    uint32 // 0 = none
}

// Session is the persistent part of one client's session.
type Session struct {
	ClientID       string
	Revision       uint64 // set by the store on every successful save
	Version        packets.Version
	ExpiryInterval uint32    // seconds; 0xFFFFFFFF never expires
	DisconnectedAt time.Time // zero while connected
	Subscriptions  []Subscription
	// Will is the pending will message of a disconnected session whose Will
	// Delay has not elapsed yet; WillAt says when it is due.
	Will   *Message
	WillAt time.Time
}

// SessionStore keeps session records, keyed by client ID [MQTT-3.1.3-2],
// with compare-and-swap revisions, the fence for session takeover.
// Revisions come from one store-wide counter, so a record deleted and
// created again never repeats a revision a stale owner may still hold.
type SessionStore interface {
	// LoadSession returns the record or ErrNotFound.
	LoadSession(clientID string) (*Session, error)
	// SaveSession writes s if the stored revision equals s.Revision (0 =
	// must not exist yet), then sets s.Revision to the new revision.
	// Otherwise it returns ErrRevisionMismatch.
	SaveSession(s *Session) error
	// DeleteSession removes the record and the session's pending and
	// inbound entries, if the stored revision equals rev (0 = any; with rev
	// != 0 a missing record is ErrRevisionMismatch). Retained messages are
	// not session state and stay [MQTT-3.1.2-7].
	DeleteSession(clientID string, rev uint64) error
	// Sessions calls fn for every stored session.
	Sessions(fn func(*Session) bool) error
}

// Delivery states of a pending entry.
const (
	PendingQueued   byte = iota // not sent yet
	PendingSent                 // PUBLISH sent, awaiting PUBACK/PUBREC
	PendingReleased             // QoS 2: PUBREC received, PUBREL sent, awaiting PUBCOMP
)

// Pending is one outbound delivery owed to a session: a pointer to a log
// message with its delivery QoS and state.
type Pending struct {
	Seq             uint64
	QoS             byte // delivery QoS: min(published, granted)
	Retain          bool // RETAIN flag to send
	SubscriptionIDs []uint32
	PacketID        uint16 // assigned when first sent
	State           byte
}

// QueueStore keeps each session's pending deliveries (offline queue and
// outbound inflight) and its inbound QoS 2 packet identifiers.
type QueueStore interface {
	// Enqueue adds entries for clientID, ordered by Seq; an entry whose Seq
	// is already queued replaces it.
	Enqueue(clientID string, entries ...Pending) error
	// UpdatePending replaces the entry with the same Seq, or returns
	// ErrNotFound.
	UpdatePending(clientID string, p Pending) error
	// RemovePending deletes the entries with these sequence numbers;
	// unknown ones are ignored.
	RemovePending(clientID string, seqs ...uint64) error
	// ScanPending calls fn for clientID's entries with Seq >= from in Seq
	// order until fn returns false.
	ScanPending(clientID string, from uint64, fn func(Pending) bool) error
	// CountPending returns the number of entries for clientID.
	CountPending(clientID string) (int, error)
	// Inbound QoS 2: packet identifiers whose PUBLISH was received and
	// acknowledged with PUBREC but not yet released; a PUBLISH arriving
	// again with such an id is answered without a second onward delivery
	// [MQTT-4.3.3-2] (3.1.1) [MQTT-4.3.3-10] (5.0), also after a restart.
	// Inbound lists them in ascending order.
	AddInbound(clientID string, packetID uint16) error
	RemoveInbound(clientID string, packetID uint16) error
	Inbound(clientID string) ([]uint16, error)
}

// RetainedStore keeps the last retained message per topic [MQTT-3.3.1-5].
type RetainedStore interface {
	// SetRetained stores m as the retained message of m.Topic.
	SetRetained(m *Message) error
	// DeleteRetained removes the retained message of topic, if any.
	DeleteRetained(topic string) error
	// Retained calls fn for every retained message.
	Retained(fn func(*Message) bool) error
}

// CursorStore keeps named positions on the log (bridges).
type CursorStore interface {
	Cursor(name string) (uint64, error) // 0 when never set
	SetCursor(name string, seq uint64) error
}

// DelayedStore keeps messages scheduled for later publication (a PUBLISH
// to $delayed/{seconds}/{topic}). They are not on the log: at their due
// time the broker publishes them like any other message and removes them.
type DelayedStore interface {
	// AddDelayed stores a copy of m, due at due, and returns its id once it
	// is durable in the configured mode. Ids are never reused, also not
	// after a restart.
	AddDelayed(due time.Time, m *Message) (id uint64, err error)
	// RemoveDelayed deletes the entry; an unknown id is ignored.
	RemoveDelayed(id uint64) error
	// Delayed calls fn for every entry in due order (ties by id) until fn
	// returns false. No lock is held while fn runs.
	Delayed(fn func(id uint64, due time.Time, m *Message) bool) error
}

// Store is everything a broker needs from persistence. Every method is
// safe for concurrent use; after Close every method returns ErrClosed.
type Store interface {
	Log
	SessionStore
	QueueStore
	RetainedStore
	CursorStore
	DelayedStore
	DeadLetterStore // deadletter.go
	Close() error
}
