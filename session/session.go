// Package session holds one MQTT client's session state (MQTT 5.0 §4.1,
// 3.1.1 §4.1): its subscriptions, the outbound QoS 1/2 deliveries (queued
// and inflight) with their packet identifiers, the inbound QoS 2 packet
// identifiers awaiting PUBREL, the will message and the expiry interval.
//
// A Session is safe for concurrent use: one mutex (mu) guards every field.
// The routing code of any connection calls Push/PushQoS0 on a subscriber's
// session; the subscriber's own reader goroutine calls the acknowledgement
// methods. Packets leave through the Writer attached by the connection that
// currently owns the session; Writer methods are called with mu held, so
// that the order in which deliveries enter the inflight window is the order
// in which they are written [MQTT-4.6.0-6]. A Writer must therefore never
// block and never call back into the Session.
//
// Durable sessions (3.1.1 clean session 0, 5.0 Session Expiry Interval > 0)
// mirror their state into a storage.Store: subscriptions and the will in
// the session record (saved with compare-and-swap on its revision), every
// QoS 1/2 delivery as a storage.Pending pointing at the message's log
// sequence, and inbound QoS 2 packet identifiers. A non-durable session
// ends with its network connection [MQTT-3.1.2-6] and keeps nothing in the
// store.
package session

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/storage"
)

// NeverExpire is the Session Expiry Interval meaning "the session does not
// expire" (MQTT 5.0 §3.1.2.11.2); 3.1.1 sessions with clean session 0 use it.
const NeverExpire = 0xFFFFFFFF

// Errors returned by Session methods.
var (
	// ErrQueueFull: the session's queue holds MaxQueued deliveries; the new
	// one was refused (see OverflowPolicy).
	ErrQueueFull = errors.New("session: queue full")
	// ErrReceiveMaximum: the client sent more unacknowledged QoS > 0
	// PUBLISH packets than the server's Receive Maximum allows.
	ErrReceiveMaximum = errors.New("session: receive maximum exceeded")
	// ErrUnknownPacketID: an acknowledgement named no delivery in flight.
	ErrUnknownPacketID = errors.New("session: packet identifier not found")
	// ErrTooLarge may be returned by Writer.WritePublish when the packet
	// exceeds the client's Maximum Packet Size; the delivery is then
	// discarded [MQTT-3.1.2-25] and counted.
	ErrTooLarge = errors.New("session: packet too large for client")
	// ErrBusy may be returned by Writer.WritePublish for a new QoS 1/2
	// delivery when the connection's outbound buffer is full: the delivery
	// stays queued until Pump is called.
	ErrBusy = errors.New("session: connection busy")
	// ErrFenced: the stored session record was written by another owner
	// (revision mismatch); this Session must not write any more.
	ErrFenced = errors.New("session: taken over by another owner")
)

// Delivery is one message owed to the client: the pending entry (log
// sequence, delivery QoS, packet identifier, state) and the message itself.
// QoS 0 deliveries have no pending entry in the store. Msg is nil for a
// queued delivery restored from the store until it is about to be sent.
type Delivery struct {
	storage.Pending
	Msg *storage.Message

	stored bool // a pending entry for it is in the store
	fpos   int  // position in the inflight window (flight.go)
}

// Writer sends packets to the client currently connected to the session.
// Its methods are called with the session lock held; they must queue the
// packet without blocking and must not call back into the Session.
type Writer interface {
	// WritePublish queues the PUBLISH for d; dup is set on redelivery
	// [MQTT-3.3.1-1]. Returning ErrTooLarge discards the delivery.
	WritePublish(d *Delivery, dup bool) error
	// WritePubrel queues a PUBREL for packetID (QoS 2 resend on resume).
	WritePubrel(packetID uint16)
}

// Stats are the counters a Session increments; several sessions share one.
type Stats struct {
	Expired    atomic.Uint64 // deliveries dropped because their message expired while queued
	Overflow   atomic.Uint64 // deliveries refused because the queue was full (messages or bytes)
	TooLarge   atomic.Uint64 // deliveries dropped because they exceed the client's Maximum Packet Size
	Offline0   atomic.Uint64 // QoS 0 messages dropped because the session was offline
	StoreError atomic.Uint64 // storage writes that failed
	Missing    atomic.Uint64 // pending deliveries whose message was gone from the log

	// OverflowBytes counts the part of Overflow refused by MaxQueuedBytes.
	OverflowBytes atomic.Uint64
}

// Config creates a Session.
type Config struct {
	ClientID string
	Version  packets.Version
	// ExpiryInterval is the Session Expiry Interval in seconds (0: the
	// session ends when the connection closes; NeverExpire: never).
	ExpiryInterval uint32
	// Store persists durable sessions; required.
	Store storage.Store
	// MaxInflight caps the outbound inflight window whatever the client's
	// Receive Maximum says (0 = 65535).
	MaxInflight uint16
	// MaxQueued caps the deliveries waiting to enter the inflight window (0 =
	// unlimited).
	MaxQueued int
	// MaxQueuedBytes caps the topic and payload bytes of those deliveries
	// (0 = unlimited); see queue.go. Refusals are counted in
	// Stats.OverflowBytes and reported to OnDrop as DropQueueFull.
	MaxQueuedBytes int
	// MaxInMemory bounds the queued deliveries a durable session keeps in
	// memory; the rest stay only in the store and are paged in as the queue
	// drains (queue.go). 0 means DefaultMaxInMemory, < 0 no bound.
	// Non-durable sessions keep their whole queue in memory.
	MaxInMemory int
	// ReceiveMaximum is the server's Receive Maximum: how many QoS > 0
	// PUBLISH packets the client may have unacknowledged (0 = 65535).
	ReceiveMaximum uint16
	// Stats receives the counters; nil gives the session its own.
	Stats *Stats
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
	// OnDrop, if set, is told about every delivery the session discards
	// without delivering it (so the broker can dead-letter it). It is
	// called with the session lock held: it must not block and must not
	// call into any Session.
	OnDrop func(clientID string, d *Delivery, reason DropReason)
}

// DropReason says why a session discarded a delivery.
type DropReason string

// Reasons a delivery is discarded.
const (
	DropExpired   DropReason = "expired"    // Message Expiry Interval passed while queued
	DropQueueFull DropReason = "queue-full" // MaxQueued or MaxQueuedBytes reached (refuse-newest policy)
	DropTooLarge  DropReason = "too-large"  // larger than the client's Maximum Packet Size
)

func (s *Session) dropped(d *Delivery, why DropReason) {
	if s.cfg.OnDrop != nil {
		s.cfg.OnDrop(s.id, d, why)
	}
}

// Session is one client's session state. See the package comment for the
// locking and persistence rules.
type Session struct {
	mu  sync.Mutex
	id  string
	cfg Config
	now func() time.Time

	rec     storage.Session // the persistent record (Revision tracks the store)
	fenced  bool
	lastErr error // the last failed storage write
	subs    map[string]storage.Subscription
	multi   atomic.Bool // subs has held more than one subscription
	w       Writer
	window  int // client's Receive Maximum capped by MaxInflight
	nextID  uint16
	flight  flightList           // outbound inflight in send order [MQTT-4.6.0-1]
	byID    map[uint16]*Delivery // the same, by packet identifier
	queue   []*Delivery          // waiting for a free inflight slot, in arrival order
	qhead   int
	bySeq   map[uint64]*Delivery // every queued or inflight delivery, by log seq
	inbound map[uint16]struct{}  // QoS 2 packet ids received, PUBREL not yet seen
	stats   *Stats
	spill   spillState // the part of a durable session's queue kept only in the store (queue.go)
	qbytes  int        // bytes of the queued deliveries, for MaxQueuedBytes (queue.go)
	cong    congestion // back pressure (congestion.go)
}

// New returns an empty session (no subscriptions, nothing pending) for
// cfg.ClientID. It does not touch the store; call Save to persist it.
func New(cfg Config) *Session {
	if cfg.MaxInflight == 0 {
		cfg.MaxInflight = 65535
	}
	if cfg.ReceiveMaximum == 0 {
		cfg.ReceiveMaximum = 65535
	}
	s := &Session{
		id:      cfg.ClientID,
		cfg:     cfg,
		now:     cfg.Now,
		subs:    make(map[string]storage.Subscription),
		byID:    make(map[uint16]*Delivery),
		bySeq:   make(map[uint64]*Delivery),
		inbound: make(map[uint16]struct{}),
		stats:   cfg.Stats,
		window:  int(cfg.MaxInflight),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.stats == nil {
		s.stats = new(Stats)
	}
	s.rec = storage.Session{ClientID: cfg.ClientID, Version: cfg.Version, ExpiryInterval: cfg.ExpiryInterval}
	return s
}

// ClientID returns the client identifier the session belongs to.
func (s *Session) ClientID() string { return s.id }

// durableLocked reports whether the session outlives its connection and is
// therefore mirrored into the store (3.1.1 clean session 0 [MQTT-3.1.2-4],
// 5.0 Session Expiry Interval > 0 [MQTT-3.1.2-23]).
func (s *Session) durableLocked() bool { return s.rec.ExpiryInterval > 0 }

// Durable reports whether the session is persisted (its expiry interval is
// not zero).
func (s *Session) Durable() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.durableLocked()
}

// ExpiryInterval returns the Session Expiry Interval in seconds.
func (s *Session) ExpiryInterval() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rec.ExpiryInterval
}

// SetExpiryInterval changes the Session Expiry Interval: on CONNECT, and
// when a 5.0 DISCONNECT carries a new one (the caller refuses a change
// from 0, a Protocol Error by 5.0 §3.14.2.2.2). A session becoming durable
// is saved with its pending state; one ceasing to be durable is removed
// from the store.
func (s *Session) SetExpiryInterval(sec uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	was := s.durableLocked()
	s.rec.ExpiryInterval = sec
	switch {
	case !was && s.durableLocked():
		if err := s.saveLocked(); err != nil {
			return err
		}
		var ps []storage.Pending
		s.flight.Each(func(d *Delivery) {
			ps = append(ps, d.Pending)
			d.stored = true
		})
		for _, d := range s.queue[s.qhead:] {
			ps = append(ps, d.Pending)
			d.stored = true
		}
		if len(ps) > 0 {
			if err := s.cfg.Store.Enqueue(s.id, ps...); err != nil {
				return s.storeErr(err)
			}
		}
		for id := range s.inbound {
			if err := s.cfg.Store.AddInbound(s.id, id); err != nil {
				return s.storeErr(err)
			}
		}
	case was && !s.durableLocked():
		if s.rec.Revision == 0 {
			return nil
		}
		// The store goes away: the whole queue has to be in memory first,
		// and batched removals need not happen any more (queue.go).
		s.rec.ExpiryInterval = 1
		s.unspillAllLocked()
		s.rec.ExpiryInterval = sec
		s.endSpillLocked()
		s.spill.rm, s.spill.rmMax = nil, 0
		err := s.cfg.Store.DeleteSession(s.id, s.rec.Revision)
		s.rec.Revision = 0
		s.flight.Each(func(d *Delivery) { d.stored = false })
		for _, d := range s.queue[s.qhead:] {
			d.stored = false
		}
		return s.storeErr(err)
	case s.durableLocked():
		return s.saveLocked()
	}
	return nil
}

// Attach makes w the writer of the session (a connection took it over) and
// sets the inflight window to the client's Receive Maximum
// (receiveMax, 0 = 65535) capped by MaxInflight [MQTT-3.3.4-9]. Then it
// resends, in their original order and with their original packet
// identifiers, every unacknowledged PUBLISH (DUP set) and PUBREL
// [MQTT-4.4.0-1] [MQTT-4.6.0-1], and fills the window from the queue.
// The caller must have queued the CONNACK first.
func (s *Session) Attach(w Writer, receiveMax uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.w = w
	if receiveMax == 0 {
		receiveMax = 65535
	}
	s.window = int(min(receiveMax, s.cfg.MaxInflight))
	s.rec.DisconnectedAt = time.Time{}
	for _, d := range s.flight.All() {
		if d.State == storage.PendingReleased {
			w.WritePubrel(d.PacketID)
			continue
		}
		if err := w.WritePublish(d, true); errors.Is(err, ErrTooLarge) {
			s.stats.TooLarge.Add(1)
			s.dropped(d, DropTooLarge)
			s.completeLocked(d)
		}
	}
	s.pumpLocked()
}

// Detach removes w if it is still the session's writer (a takeover may
// already have attached another) and records the disconnection time. It
// reports whether w was attached.
func (s *Session) Detach(w Writer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w != w {
		return false
	}
	s.w = nil
	s.rec.DisconnectedAt = s.now()
	s.flushRemovalsLocked()
	s.updateCongestionLocked()
	return true
}

// Connected reports whether a writer is attached.
func (s *Session) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w != nil
}

// storeErr counts a failed storage write; a revision mismatch fences the
// session (another owner wrote it), after which it writes no more.
func (s *Session) storeErr(err error) error {
	if err == nil {
		return nil
	}
	s.stats.StoreError.Add(1)
	s.lastErr = err
	if errors.Is(err, storage.ErrRevisionMismatch) {
		s.fenced = true
		return fmt.Errorf("%w: %v", ErrFenced, err)
	}
	return err
}

// saveLocked writes the session record (subscriptions, will, expiry) with
// compare-and-swap on its revision. Non-durable sessions are not saved.
func (s *Session) saveLocked() error {
	if !s.durableLocked() {
		return nil
	}
	if s.fenced {
		return ErrFenced
	}
	s.rec.Subscriptions = s.rec.Subscriptions[:0]
	for _, sub := range s.subs {
		s.rec.Subscriptions = append(s.rec.Subscriptions, sub)
	}
	return s.storeErr(s.cfg.Store.SaveSession(&s.rec))
}

// Save persists the session record if the session is durable.
func (s *Session) Save() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.saveLocked()
}

// Delete removes the session and everything it has pending from the store
// (clean start, expiry). The Session must not be used afterwards.
func (s *Session) Delete() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fenced = true
	s.w = nil
	s.waitSpillWritesLocked() // no entry may be written after the delete
	if s.rec.Revision == 0 {
		return nil // never stored
	}
	// Compare-and-swap on the revision: a new session of the same client
	// identifier may already have saved its own record.
	err := s.cfg.Store.DeleteSession(s.id, s.rec.Revision)
	if errors.Is(err, storage.ErrRevisionMismatch) {
		return nil
	}
	return err
}

// Record returns a copy of the persistent record (for admin views and tests).
func (s *Session) Record() storage.Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rec
	r.Subscriptions = nil
	for _, sub := range s.subs {
		r.Subscriptions = append(r.Subscriptions, sub)
	}
	return r
}

// Restore rebuilds a durable session from its stored record, its pending
// entries and inbound packet identifiers (broker restart). Pending entries
// whose message is gone from the log are dropped; the number dropped is
// returned with the session.
func Restore(cfg Config, rec *storage.Session) (*Session, int, error) {
	cfg.ClientID = rec.ClientID
	cfg.Version = rec.Version
	cfg.ExpiryInterval = rec.ExpiryInterval
	s := New(cfg)
	s.rec = *rec
	s.rec.Subscriptions = nil
	for _, sub := range rec.Subscriptions {
		s.subs[sub.Filter] = sub
	}
	s.multi.Store(len(s.subs) > 1)
	if s.rec.DisconnectedAt.IsZero() {
		// It was connected when the broker stopped: it disconnected then.
		s.rec.DisconnectedAt = s.now()
	}
	lost := 0
	var missing []uint64
	limit := s.memLimitLocked()
	err := cfg.Store.ScanPending(rec.ClientID, 0, func(p storage.Pending) bool {
		d := &Delivery{Pending: p, stored: true}
		if p.State == storage.PendingQueued || p.PacketID == 0 {
			// Queued deliveries beyond the in-memory bound stay in the
			// store only (queue.go): the session starts spilled, so a large
			// backlog does not have to fit in memory. (The scan still reads
			// every entry: an inflight one may follow queued ones.)
			if len(s.queue) >= limit {
				if !s.spill.on {
					s.spill.on, s.spill.from = true, p.Seq
				}
				s.spill.count++
				return true
			}
			d.State = storage.PendingQueued
			d.PacketID = 0
			s.bySeq[p.Seq] = d
			s.queue = append(s.queue, d)
		} else {
			m, err := cfg.Store.Get(p.Seq)
			if err != nil {
				missing = append(missing, p.Seq)
				lost++
				return true
			}
			d.Msg = m
			s.bySeq[p.Seq] = d
			s.flight.Push(d)
			s.byID[p.PacketID] = d
		}
		return true
	})
	if err != nil {
		return nil, 0, err
	}
	s.loadBatchLocked(s.queue)
	if len(missing) > 0 {
		if err := cfg.Store.RemovePending(rec.ClientID, missing...); err != nil {
			return nil, lost, err
		}
	}
	ids, err := cfg.Store.Inbound(rec.ClientID)
	if err != nil {
		return nil, lost, err
	}
	for _, id := range ids {
		s.inbound[id] = struct{}{}
	}
	return s, lost, nil
}
