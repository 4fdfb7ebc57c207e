package session

import (
	"testing"
	"time"
)

// A connected session with a long queue is congested until the queue is
// back to the low mark; a waiting publisher is released once it drained,
// and a detached session is never congested.
func TestCongestionFollowsQueue(t *testing.T) {
	f := newFixture()
	s := New(f.config("c", 0))
	w := &chanWriter{ch: make(chan Delivery, 16)}
	s.Attach(w, 10)
	for i := range congestHigh + 10 {
		if s.Congested() {
			t.Fatalf("congested after %d pushes (window 10, high mark %d)", i, congestHigh)
		}
		if err := s.Push(f.msg(t, 1, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if !s.Congested() {
		t.Fatalf("not congested with %d queued", congestHigh)
	}

	// A subscriber that acknowledges everything it gets drains the queue;
	// WaitUncongested returns when it is back to the low mark (or
	// earlier only if acknowledgements stop, which they do not here).
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case d := <-w.ch:
				if _, err := s.Puback(d.PacketID); err != nil {
					t.Errorf("puback: %v", err)
					return
				}
			case <-stop:
				return
			}
		}
	}()
	s.WaitUncongested(time.Minute)
	if s.Congested() {
		t.Fatal("WaitUncongested returned while still congested and acknowledgements flow")
	}
	if _, q := s.Counts(); q > congestLow {
		t.Fatalf("%d queued after the wait, want at most %d", q, congestLow)
	}
	close(stop)
	<-done

	// Congested again, then detached: not congested.
	for range congestHigh + 10 {
		if err := s.Push(f.msg(t, 1, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if !s.Congested() {
		t.Fatal("not congested after refilling the queue")
	}
	if !s.Detach(w) {
		t.Fatal("Detach failed")
	}
	if s.Congested() {
		t.Fatal("a detached session is congested")
	}
}

// A subscriber that stops acknowledging does not hold the publisher: the
// wait ends although the session stays congested.
func TestCongestionWaitEndsWhenSubscriberStalls(t *testing.T) {
	f := newFixture()
	s := New(f.config("c", 0))
	w := &chanWriter{ch: make(chan Delivery, 16)}
	s.Attach(w, 10)
	for range congestHigh + 10 {
		if err := s.Push(f.msg(t, 1, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if !s.Congested() {
		t.Fatal("not congested")
	}
	waitReturns(t, s, "WaitUncongested still waiting for a subscriber that acknowledges nothing")
	if !s.Congested() {
		t.Fatal("the stalled session is no longer congested")
	}
	// Marked stalled, so later waits return without waiting for progress
	// (that they do not wait congestStall each is checked through the
	// broker: TestBackPressureStuckQoS0Subscriber).
	waitReturns(t, s, "WaitUncongested waited again for a subscriber known to be stalled")
	s.mu.Lock()
	stalled := s.cong.stalled
	s.mu.Unlock()
	if !stalled {
		t.Fatal("the session is not marked stalled")
	}
}

// waitReturns fails with msg unless s.WaitUncongested(time.Hour) returns
// within 30 s.
func waitReturns(t *testing.T, s *Session, msg string) {
	t.Helper()
	returned := make(chan struct{})
	go func() {
		s.WaitUncongested(time.Hour)
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(30 * time.Second):
		t.Fatal(msg)
	}
}
