package session

import (
	"errors"
	"fmt"
	"strings"

	"github.com/beaconmq/beacon/storage"
)

// Outbound delivery: the server side of the QoS 1 and QoS 2 protocol flows
// (MQTT 5.0 §4.3, §4.4, §4.9). A delivery first waits in the queue, then
// enters the inflight window (PUBLISH sent, packet identifier assigned),
// then leaves on PUBACK (QoS 1) or PUBCOMP (QoS 2) after PUBREC moved it to
// the released state. The window is the client's Receive Maximum
// [MQTT-3.3.4-9] [MQTT-4.9.0-1], and only PUBLISH waits for it: control
// packets are never held back [MQTT-3.3.4-10]; the queue is bounded by MaxQueued with the
// refuse-newest overflow policy: a delivery arriving at a full queue is not
// queued, and Stats.Overflow counts it. (Refusing the newest keeps every
// delivery already promised — and possibly already persisted — intact, and
// matches what Mosquitto users expect of max_queued_messages.)

// PushQoS0 sends a QoS 0 delivery at once if the client is connected. QoS 0
// messages are not queued for offline sessions (MQTT allows but does not
// require it, 5.0 §3.1.2.4); such a drop is counted in Stats.Offline0.
func (s *Session) PushQoS0(d *Delivery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		s.stats.Offline0.Add(1)
		return
	}
	if err := s.w.WritePublish(d, false); errors.Is(err, ErrTooLarge) {
		s.stats.TooLarge.Add(1)
		s.dropped(d, DropTooLarge)
	}
}

// Push queues a QoS 1 or 2 delivery (d.Seq must be the message's log
// sequence) and, if the client is connected and the window has room, sends
// it. A durable session persists the pending entry first, so the delivery
// survives a restart. A delivery for a sequence already pending is ignored.
// It returns ErrQueueFull when the queue is at MaxQueued (counted).
func (s *Session) Push(d *Delivery) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fenced {
		return ErrFenced
	}
	if _, dup := s.bySeq[d.Seq]; dup {
		return nil
	}
	if s.cfg.MaxQueued > 0 && s.queuedLocked() >= s.cfg.MaxQueued || s.bytesFullLocked(d) {
		s.stats.Overflow.Add(1)
		s.dropped(d, DropQueueFull)
		return ErrQueueFull
	}
	d.State = storage.PendingQueued
	d.PacketID = 0
	d.stored = false
	if d.Seq <= s.spill.rmMax || d.Seq <= s.spill.removingHigh {
		// The entry about to be stored must not be removed by the pending
		// batch of removals or one under way (queue.go).
		s.flushRemovalsLocked()
	}
	if s.spillingLocked() {
		// Beyond the in-memory bound: the delivery waits in the store only.
		if err := s.spillLocked(d); err != nil {
			return err
		}
		s.chargeLocked(d)
		if s.fenced {
			return ErrFenced
		}
		s.pumpLocked()
		return nil
	}
	// A durable session persists the entry now, unless it goes straight
	// into the inflight window, where pumpLocked stores it once in its sent
	// state (one store write instead of two). Either way it is stored
	// before Push returns, so before the publisher is acknowledged.
	sendNow := s.w != nil && s.qhead == len(s.queue) && s.flight.Len() < s.window
	if s.durableLocked() && !sendNow {
		if err := s.cfg.Store.Enqueue(s.id, d.Pending); err != nil {
			return s.storeErr(err)
		}
		d.stored = true
	}
	s.bySeq[d.Seq] = d
	s.queue = append(s.queue, d)
	s.chargeLocked(d)
	s.pumpLocked()
	if sendNow && s.durableLocked() && !d.stored && s.bySeq[d.Seq] == d {
		// The write-ahead in pumpLocked failed: the delivery stays queued
		// in memory, but the caller must not acknowledge the publisher.
		return fmt.Errorf("session: storing pending delivery: %w", s.lastErr)
	}
	return nil
}

// Pump fills the inflight window from the queue (after acknowledgements free
// slots, or when the connection's outbound buffer drained).
func (s *Session) Pump() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pumpLocked()
}

// pumpLocked moves queued deliveries into the inflight window while it has
// room and a writer is attached, so at most Receive Maximum QoS > 0
// PUBLISH packets are unacknowledged [MQTT-3.3.4-9] [MQTT-4.9.0-2].
// Messages whose Message Expiry Interval passed while queued are dropped
// and counted [MQTT-3.3.2-5]. A packet too large for the client is dropped
// as if delivered [MQTT-3.1.2-25].
func (s *Session) pumpLocked() {
	if s.w == nil {
		return
	}
	now := s.now()
	var expired []uint64
	s.refillLocked()
	for s.flight.Len() < s.window {
		if s.qhead == len(s.queue) {
			if s.refillLocked(); s.qhead == len(s.queue) {
				break
			}
		}
		d := s.queue[s.qhead]
		s.queue[s.qhead] = nil
		s.qhead++
		if d.Msg == nil && !s.loadLocked(d) {
			delete(s.bySeq, d.Seq)
			if d.stored {
				expired = append(expired, d.Seq)
			}
			continue
		}
		s.unchargeLocked(d)
		if exp := d.Msg.ExpiresAt(); !exp.IsZero() && !now.Before(exp) {
			s.stats.Expired.Add(1)
			s.dropped(d, DropExpired)
			delete(s.bySeq, d.Seq)
			if d.stored {
				expired = append(expired, d.Seq)
			}
			continue
		}
		if d.PacketID == 0 {
			d.PacketID = s.allocIDLocked()
		}
		d.State = storage.PendingSent
		// Write-ahead: a durable session records the packet identifier
		// before the PUBLISH leaves. Were it recorded after, a crash in
		// between would restart the delivery under a new identifier while
		// the client still holds the old one unreleased, and a later
		// message given the old identifier would be discarded by the client
		// as a duplicate [MQTT-2.3.1-4] [MQTT-4.3.3-2].
		//
		// A QoS 1 delivery whose entry is stored already is not written
		// again: the receiver keeps no state for a QoS 1 identifier after
		// its PUBACK [MQTT-4.3.2-5], so after a crash the delivery is simply
		// made again under a new identifier, a duplicate QoS 1 allows. This
		// saves a synchronous store write per message on the drain path.
		if s.durableLocked() && !s.fenced && (!d.stored || d.QoS == 2) {
			var err error
			if d.stored {
				err = s.cfg.Store.UpdatePending(s.id, d.Pending)
			} else {
				err = s.cfg.Store.Enqueue(s.id, d.Pending)
			}
			if err == nil {
				d.stored = true
			} else {
				d.PacketID, d.State = 0, storage.PendingQueued
				s.qhead--
				s.queue[s.qhead] = d
				s.chargeLocked(d)
				_ = s.storeErr(err)
				break
			}
		}
		err := s.w.WritePublish(d, false)
		if errors.Is(err, ErrBusy) {
			// The connection's buffer is full: the delivery stays first in
			// the queue; the writer pumps again once it drained. It keeps
			// its packet identifier, reserved in byID: the store may already
			// hold the identifier for it (write-ahead above), and giving the
			// identifier to another delivery would leave two stored entries
			// under one identifier after a crash [MQTT-2.3.1-4].
			d.State = storage.PendingQueued
			s.byID[d.PacketID] = d
			s.qhead--
			s.queue[s.qhead] = d
			s.chargeLocked(d)
			break
		}
		if errors.Is(err, ErrTooLarge) {
			s.stats.TooLarge.Add(1)
			s.dropped(d, DropTooLarge)
			delete(s.bySeq, d.Seq)
			if d.stored {
				expired = append(expired, d.Seq)
			}
			continue
		}
		s.flight.Push(d)
		s.byID[d.PacketID] = d
	}
	if s.qhead == len(s.queue) {
		s.queue = s.queue[:0]
		s.qhead = 0
		if !s.spill.on {
			s.qbytes = 0 // nothing queued: no drift survives (queue.go)
		}
	} else if s.qhead > 1024 && s.qhead > len(s.queue)/2 {
		s.queue = append(s.queue[:0], s.queue[s.qhead:]...)
		s.qhead = 0
	}
	if len(expired) > 0 && s.durableLocked() && !s.fenced {
		_ = s.storeErr(s.cfg.Store.RemovePending(s.id, expired...))
	}
	if s.flight.Len() == 0 && s.qhead == len(s.queue) && !s.spill.on {
		// Idle: make the store exact (queue.go); a large batch, the end of
		// a drain, in the background.
		if len(s.spill.rm) >= idleRemoveInBackground {
			s.startRemovalsLocked()
		} else {
			s.flushRemovalsLocked()
		}
	}
	s.updateCongestionLocked()
}

// allocIDLocked returns a non-zero packet identifier not used by any
// delivery in flight [MQTT-2.2.1-4] [MQTT-4.3.2-1] [MQTT-4.3.3-1]. The
// window never exceeds 65535, so a free identifier always exists.
func (s *Session) allocIDLocked() uint16 {
	for {
		s.nextID++
		if s.nextID == 0 {
			s.nextID = 1
		}
		if _, used := s.byID[s.nextID]; !used {
			return s.nextID
		}
	}
}

// completeLocked removes d from the inflight window and the store.
func (s *Session) completeLocked(d *Delivery) {
	if s.byID[d.PacketID] == d {
		delete(s.byID, d.PacketID)
	}
	delete(s.bySeq, d.Seq)
	s.flight.Remove(d)
	s.cong.progress++
	s.removeLocked(d)
}

// Puback handles a PUBACK: the QoS 1 delivery with that packet identifier
// is complete and the identifier free again [MQTT-4.3.2-3]. The freed slot
// is refilled from the queue. It returns the completed delivery (the caller
// dead-letters it when the reason code is an error), or ErrUnknownPacketID.
func (s *Session) Puback(packetID uint16) (*Delivery, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.byID[packetID]
	if d == nil || d.QoS != 1 || d.State == storage.PendingQueued {
		return nil, ErrUnknownPacketID // not sent: an identifier only reserved
	}
	s.completeLocked(d)
	s.pumpLocked()
	return d, nil
}

// Pubrec handles a PUBREC for a QoS 2 delivery. With a success reason code
// the delivery moves to the released state and the caller sends PUBREL
// [MQTT-4.3.3-4]; from then on the PUBLISH is never resent [MQTT-4.3.3-6]
// and the message no longer expires [MQTT-4.3.3-7]. With an error reason
// code (5.0, >= 0x80) the exchange ends here and is not retransmitted
// [MQTT-4.4.0-2]. It returns the delivery, or ErrUnknownPacketID.
func (s *Session) Pubrec(packetID uint16, failed bool) (*Delivery, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.byID[packetID]
	if d == nil || d.QoS != 2 || d.State == storage.PendingQueued {
		return nil, ErrUnknownPacketID // not sent: an identifier only reserved
	}
	if failed {
		s.completeLocked(d)
		s.pumpLocked()
		return d, nil
	}
	if d.State != storage.PendingReleased {
		d.State = storage.PendingReleased
		if s.durableLocked() && !s.fenced {
			_ = s.storeErr(s.cfg.Store.UpdatePending(s.id, d.Pending))
		}
	}
	return d, nil
}

// Pubcomp handles a PUBCOMP: the QoS 2 delivery is complete and its packet
// identifier free again [MQTT-4.3.3-5]. It returns ErrUnknownPacketID
// when no released delivery has that identifier.
func (s *Session) Pubcomp(packetID uint16) (*Delivery, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.byID[packetID]
	if d == nil || d.State != storage.PendingReleased {
		return nil, ErrUnknownPacketID
	}
	s.completeLocked(d)
	s.pumpLocked()
	return d, nil
}

// Unacknowledged returns the deliveries in flight (sent, not completed) in
// send order, and the deliveries still queued (for admin views and tests;
// a queued delivery restored from the store may not have its Msg loaded
// yet). Deliveries spilled to the store (queue.go) are not included.
func (s *Session) Unacknowledged() (inflight, queued []*Delivery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inflight = s.flight.All()
	queued = append(queued, s.queue[s.qhead:]...)
	return inflight, queued
}

// Counts returns how many deliveries are in flight and queued.
func (s *Session) Counts() (inflight, queued int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flight.Len(), s.queuedLocked()
}

// Drain removes every delivery (queued and inflight, including released
// QoS 2 ones) and returns those whose PUBLISH the client has not
// acknowledged yet (not released), so the caller can route them elsewhere
// (shared subscriptions, 5.0 §4.8.2). The session keeps nothing pending.
// Deliveries spilled to the store (queue.go) are paged in and returned only
// if the session has a shared subscription (no other delivery can be
// routed elsewhere); otherwise their entries stay in the store for the
// caller's Delete, so ending a session with a large backlog does not load
// it into memory.
func (s *Session) Drain() []*Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waitSpillWritesLocked()
	if s.spill.on && s.hasSharedLocked() {
		s.unspillAllLocked()
	}
	s.endSpillLocked()
	s.flushRemovalsLocked()
	var out, seqs []*Delivery
	s.flight.Each(func(d *Delivery) {
		if d.stored {
			seqs = append(seqs, d)
		}
		if d.State != storage.PendingReleased {
			out = append(out, d)
		}
	})
	for _, d := range s.queue[s.qhead:] {
		if d.stored {
			seqs = append(seqs, d)
		}
		if d.Msg != nil || s.loadLocked(d) {
			out = append(out, d)
		}
	}
	s.flight.Reset()
	s.queue, s.qhead, s.qbytes = nil, 0, 0
	s.updateCongestionLocked()
	s.byID = make(map[uint16]*Delivery)
	s.bySeq = make(map[uint64]*Delivery)
	if s.durableLocked() && !s.fenced && len(seqs) > 0 {
		ids := make([]uint64, len(seqs))
		for i, d := range seqs {
			ids[i] = d.Seq
		}
		_ = s.storeErr(s.cfg.Store.RemovePending(s.id, ids...))
	}
	return out
}

// hasSharedLocked reports whether the session has a shared subscription.
func (s *Session) hasSharedLocked() bool {
	for f := range s.subs {
		if strings.HasPrefix(f, "$share/") {
			return true
		}
	}
	return false
}

// LowestPendingSeq returns the lowest log sequence number of any delivery
// the session still owes (queued or in flight), or 0 when it owes none.
// The log collector keeps everything from there on.
func (s *Session) LowestPendingSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var low uint64
	for seq := range s.bySeq {
		if seq != 0 && (low == 0 || seq < low) {
			low = seq
		}
	}
	// Spilled entries, and entries of completed deliveries not removed yet,
	// point at the log too (queue.go).
	if s.spill.on && s.spill.from != 0 && (low == 0 || s.spill.from < low) {
		low = s.spill.from
	}
	for _, seq := range s.spill.rm {
		if seq != 0 && (low == 0 || seq < low) {
			low = seq
		}
	}
	if r := s.spill.removingLow; r != 0 && (low == 0 || r < low) {
		low = r
	}
	return low
}

// loadLocked reads the message of a restored queued delivery from the log.
// A message gone from the log (which the broker's log collection prevents)
// is counted in Stats.Missing and reported as false.
func (s *Session) loadLocked(d *Delivery) bool {
	m, err := s.cfg.Store.Get(d.Seq)
	if err != nil {
		s.stats.Missing.Add(1)
		return false
	}
	d.Msg = m
	return true
}
