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
// acknowledging: a stuck subscriber must not hold the publishers back —
// its queue fills and overflows as usual (counted and dead-lettered).
//
// Only the in-memory queue counts: a durable session beyond its in-memory
// bound spills to the store (queue.go), which is what the log is for.

const (
	// congestHigh queued deliveries make a connected session congested;
	// it stays so until its queue is back to congestLow.
	congestHigh = 2048
	congestLow  = 512
	// congestStall: a wait ends when no acknowledgement arrived for this
	// long.
	congestStall = 100 * time.Millisecond
)

// congestion is the Session's back-pressure state.
type congestion struct {
	on      atomic.Bool
	drained chan struct{} // closed when on clears; nil until someone waits
	acks    uint64        // completed deliveries, to tell slow from stuck
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
		if s.cong.drained != nil {
			close(s.cong.drained)
			s.cong.drained = nil
		}
	}
}

// Congested reports whether the session is connected and its queue in
// memory is long (see above). It takes no lock.
func (s *Session) Congested() bool { return s.cong.on.Load() }

// WaitUncongested blocks while the session is congested and its
// subscriber keeps acknowledging, for at most max. It returns at once if
// the session is not congested.
func (s *Session) WaitUncongested(max time.Duration) {
	if !s.cong.on.Load() {
		return
	}
	deadline := time.Now().Add(max)
	for {
		s.mu.Lock()
		if !s.cong.on.Load() {
			s.mu.Unlock()
			return
		}
		if s.cong.drained == nil {
			s.cong.drained = make(chan struct{})
		}
		ch, acks := s.cong.drained, s.cong.acks
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
		stalled := s.cong.acks == acks
		s.mu.Unlock()
		if stalled {
			return
		}
	}
}
