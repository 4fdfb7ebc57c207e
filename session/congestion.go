package session

import (
	"sync/atomic"
	"time"
)

// Back pressure. A connected subscriber that acknowledges more slowly
// than publishers publish collects a queue in memory; left alone it grows
// until the garbage collector spends most of the CPU on it, every message
// waits seconds behind it, and MaxQueued finally overflows. Instead the
// publishing side asks Congested after routing to a session and, while it
// is, waits (WaitUncongested) before taking more from its own client: the
// publisher's socket fills, TCP slows the publisher, and the queue stays
// short. The wait is bounded, and ends as soon as the subscriber stops
// acknowledging; after that nobody waits for it again until it makes
// progress: a stuck subscriber must not hold the publishers back — its
// queue fills and overflows as usual (counted and dead-lettered).
//
// Only the in-memory queue counts: a durable session beyond its in-memory
// bound spills to the store (queue.go), which is what the log is for.
//
// QoS 0 deliveries are never queued here: they go straight into the
// connection's outbound buffer, and are dropped when it is full. The
// connection reports a filling buffer with WriterBusy and a drained one
// with WriterDrained, which makes the session congested the same way.

const (
	// congestHigh queued deliveries make a connected session congested;
	// it stays so until its queue is back to congestLow.
	congestHigh = 2048
	congestLow  = 512
	// congestStall: a wait ends when the subscriber made no progress (no
	// acknowledgement, no outbound buffer written out) for this long.
	congestStall = 100 * time.Millisecond
)

// congestion is the Session's back-pressure state.
type congestion struct {
	on       atomic.Bool   // the queue is long
	writer   atomic.Bool   // the connection's outbound buffer is filling
	drained  chan struct{} // closed when both clear; nil until someone waits
	progress uint64        // acknowledgements and buffer drains, to tell slow from stuck
	// stalled: a wait found no progress for congestStall; until progress
	// moves past stalledAt, nobody waits for this session again.
	stalled   bool
	stalledAt uint64
}

// updateCongestionLocked sets or clears the congested state from the
// queue's length, waking waiters when it clears.
func (s *Session) updateCongestionLocked() {
	n := len(s.queue) - s.qhead
	switch {
	case s.w != nil && n >= congestHigh:
		s.cong.on.Store(true)
	case s.w == nil || n <= congestLow:
		if s.cong.on.Load() {
			s.cong.on.Store(false)
		}
		if s.w == nil {
			s.cong.writer.Store(false)
		}
		s.wakeUncongestedLocked()
	}
}

// wakeUncongestedLocked releases the waiters once nothing is congested.
func (s *Session) wakeUncongestedLocked() {
	if s.cong.drained != nil && !s.cong.on.Load() && !s.cong.writer.Load() {
		close(s.cong.drained)
		s.cong.drained = nil
	}
}

// WriterBusy marks the session congested because its connection's
// outbound buffer is filling. It takes no lock: the connection calls it
// from WritePublish, with the session lock held.
func (s *Session) WriterBusy() { s.cong.writer.Store(true) }

// WriterDrained clears what WriterBusy set, once the connection wrote its
// buffer out; it must not be called with the session lock held.
func (s *Session) WriterDrained() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cong.writer.Store(false)
	s.cong.progress++
	s.wakeUncongestedLocked()
}

// Congested reports whether the session is connected and its queue in
// memory is long (see above). It takes no lock.
func (s *Session) Congested() bool { return s.cong.on.Load() || s.cong.writer.Load() }

// WaitUncongested blocks while the session is congested and its
// subscriber keeps acknowledging (or reading), for at most max. It returns at once if
// the session is not congested.
func (s *Session) WaitUncongested(max time.Duration) {
	if !s.Congested() {
		return
	}
	deadline := time.Now().Add(max)
	for {
		s.mu.Lock()
		if !s.Congested() || s.cong.stalled && s.cong.progress == s.cong.stalledAt {
			s.mu.Unlock()
			return
		}
		s.cong.stalled = false
		if s.cong.drained == nil {
			s.cong.drained = make(chan struct{})
		}
		ch, progress := s.cong.drained, s.cong.progress
		s.mu.Unlock()
		wait := min(congestStall, time.Until(deadline))
		if wait <= 0 {
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-ch:
			t.Stop()
			return
		case <-t.C:
		}
		s.mu.Lock()
		stalled := s.cong.progress == progress
		if stalled {
			s.cong.stalled, s.cong.stalledAt = true, progress
		}
		s.mu.Unlock()
		if stalled {
			return
		}
	}
}
