package session

import (
	"errors"
	"strings"
	"testing"

	"github.com/beaconmq/beacon/storage"
)

// sized appends a QoS 1 message on topic "t" with an n-byte payload; it is
// charged 1+n queued bytes.
func (f *fixture) sized(t *testing.T, n int) *Delivery {
	t.Helper()
	m := &storage.Message{Topic: "t", Payload: []byte(strings.Repeat("p", n)), QoS: 1, Created: f.now}
	if err := f.store.Append(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	return &Delivery{Pending: storage.Pending{Seq: m.Seq, QoS: 1}, Msg: m}
}

// A delivery that would take the queue past MaxQueuedBytes is refused
// like one past MaxQueued: ErrQueueFull, OnDrop with DropQueueFull,
// counted in Overflow and OverflowBytes. Deliveries leaving the queue give
// their bytes back.
func TestQueuedBytesLimit(t *testing.T) {
	f := newFixture()
	cfg := f.config("c", 0)
	cfg.MaxQueuedBytes = 250
	var drops []DropReason
	cfg.OnDrop = func(_ string, _ *Delivery, why DropReason) { drops = append(drops, why) }
	s := New(cfg)
	w := &recWriter{}
	s.Attach(w, 1)
	for i := range 3 { // one in flight (not charged), two queued: 202 bytes
		if err := s.Push(f.sized(t, 100)); err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
	}
	if got := s.QueuedBytes(); got != 202 {
		t.Fatalf("QueuedBytes %d, want 202", got)
	}
	if err := s.Push(f.sized(t, 100)); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("push past the byte limit: %v, want ErrQueueFull", err)
	}
	if len(drops) != 1 || drops[0] != DropQueueFull {
		t.Fatalf("OnDrop reasons %v, want [queue-full]", drops)
	}
	if o, ob := s.stats.Overflow.Load(), s.stats.OverflowBytes.Load(); o != 1 || ob != 1 {
		t.Fatalf("Overflow %d OverflowBytes %d, want 1 and 1", o, ob)
	}
	if err := s.Push(f.sized(t, 40)); err != nil { // 202+41 fits
		t.Fatalf("a small delivery that fits: %v", err)
	}
	for len(w.pubs) > 0 {
		p := w.pubs[0]
		w.pubs = w.pubs[1:]
		if _, err := s.Puback(p.PacketID); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.QueuedBytes(); got != 0 {
		t.Fatalf("QueuedBytes %d after everything was delivered, want 0", got)
	}
}

// One message larger than the limit still goes into an empty queue, so it
// can be delivered at all.
func TestQueuedBytesLargeMessageAlone(t *testing.T) {
	f := newFixture()
	cfg := f.config("c", 0)
	cfg.MaxQueuedBytes = 100
	s := New(cfg) // offline: everything queues
	if err := s.Push(f.sized(t, 500)); err != nil {
		t.Fatalf("a large message into an empty queue: %v", err)
	}
	if err := s.Push(f.sized(t, 1)); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("behind it: %v, want ErrQueueFull", err)
	}
}

// Spilled deliveries of a durable session are charged too, and paging
// them in and sending them gives the bytes back; a delivery put back by a
// busy connection stays charged.
func TestQueuedBytesSpilledAndBusy(t *testing.T) {
	f := newFixture()
	cfg := f.config("d", NeverExpire)
	cfg.MaxInMemory = 2
	cfg.MaxQueuedBytes = 1000
	s := New(cfg)
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	pushed := 0
	for {
		err := s.Push(f.sized(t, 100))
		if errors.Is(err, ErrQueueFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		pushed++
	}
	if pushed != 9 || s.Spilled() == 0 {
		t.Fatalf("%d queued (%d spilled), want 9 with some spilled", pushed, s.Spilled())
	}
	if got := s.QueuedBytes(); got != 909 {
		t.Fatalf("QueuedBytes %d, want 909", got)
	}
	w := &recWriter{busy: true}
	s.Attach(w, 100)
	if got := s.QueuedBytes(); got != 909 {
		t.Fatalf("QueuedBytes %d with the connection busy, want 909", got)
	}
	w.busy = false
	s.Pump()
	if len(w.pubs) != 9 {
		t.Fatalf("sent %d, want 9", len(w.pubs))
	}
	if got := s.QueuedBytes(); got != 0 {
		t.Fatalf("QueuedBytes %d after sending everything, want 0", got)
	}
}
