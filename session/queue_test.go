package session

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/beaconmq/beacon/storage"
)

// pagingConfig is a durable session with a small in-memory bound.
func (f *fixture) pagingConfig(id string, mem int, inflight uint16) Config {
	cfg := f.config(id, NeverExpire)
	cfg.MaxInMemory = mem
	cfg.MaxInflight = inflight
	return cfg
}

// memQueued is the number of queued deliveries held in memory.
func memQueued(s *Session) int {
	_, q := s.Unacknowledged()
	return len(q)
}

// ackAll acknowledges every PUBLISH w received, including the ones the
// acknowledgements pump into the window, and returns the sequence numbers
// in delivery order. It checks the in-memory bound after every step.
func ackAll(t *testing.T, s *Session, w *recWriter, mem int) []uint64 {
	t.Helper()
	var got []uint64
	for i := 0; i < len(w.pubs); i++ {
		d := w.pubs[i]
		got = append(got, d.Seq)
		switch d.QoS {
		case 1:
			if _, err := s.Puback(d.PacketID); err != nil {
				t.Fatalf("PUBACK %d (seq %d): %v", d.PacketID, d.Seq, err)
			}
		case 2:
			if _, err := s.Pubrec(d.PacketID, false); err != nil {
				t.Fatalf("PUBREC %d: %v", d.PacketID, err)
			}
			if _, err := s.Pubcomp(d.PacketID); err != nil {
				t.Fatalf("PUBCOMP %d: %v", d.PacketID, err)
			}
		}
		if n := memQueued(s); n > mem {
			t.Fatalf("%d queued deliveries in memory, bound %d", n, mem)
		}
	}
	return got
}

func checkInOrder(t *testing.T, got, want []uint64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("delivered %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delivery %d: seq %d, want %d (order or loss)", i, got[i], want[i])
		}
	}
}

// An offline backlog larger than the in-memory bound stays in the store,
// is counted whole, and drains in log order, each message once, leaving no
// pending entry behind.
func TestPagingOfflineBacklogInOrder(t *testing.T) {
	f := newFixture()
	const mem, n = 10, 137
	s := New(f.pagingConfig("c", mem, 4))
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	var want []uint64
	for i := range n {
		d := f.msg(t, byte(1+i%2), 0)
		want = append(want, d.Seq)
		if err := s.Push(d); err != nil {
			t.Fatal(err)
		}
	}
	if got := memQueued(s); got != mem {
		t.Fatalf("in memory: %d, want %d", got, mem)
	}
	if got := s.Spilled(); got != n-mem {
		t.Fatalf("spilled: %d, want %d", got, n-mem)
	}
	if _, q := s.Counts(); q != n {
		t.Fatalf("Counts queued = %d, want %d", q, n)
	}
	if c, _ := f.store.CountPending("c"); c != n {
		t.Fatalf("store holds %d pending, want %d", c, n)
	}
	w := &recWriter{}
	s.Attach(w, 0)
	checkInOrder(t, ackAll(t, s, w, mem), want)
	if fl, q := s.Counts(); fl != 0 || q != 0 || s.Spilled() != 0 {
		t.Fatalf("after drain: inflight %d queued %d spilled %d", fl, q, s.Spilled())
	}
	if c, _ := f.store.CountPending("c"); c != 0 {
		t.Fatalf("store still holds %d pending entries after the drain", c)
	}
	if low := s.LowestPendingSeq(); low != 0 {
		t.Fatalf("LowestPendingSeq = %d after the drain", low)
	}
}

// A connected slow consumer spills too: deliveries pushed while it is
// spilled queue behind the spilled ones, and the order stays the log order.
func TestPagingOnlineSpill(t *testing.T) {
	f := newFixture()
	const mem = 8
	s := New(f.pagingConfig("c", mem, 3))
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	w := &recWriter{}
	s.Attach(w, 0)
	var want []uint64
	push := func(k int) {
		for range k {
			d := f.msg(t, 1, 0)
			want = append(want, d.Seq)
			if err := s.Push(d); err != nil {
				t.Fatal(err)
			}
		}
	}
	push(50)
	if s.Spilled() == 0 {
		t.Fatal("50 deliveries to a consumer with window 3 and bound 8 did not spill")
	}
	// Acknowledge a few, push more while still spilled, then drain.
	var got []uint64
	for i := range 5 {
		d := w.pubs[i]
		got = append(got, d.Seq)
		if _, err := s.Puback(d.PacketID); err != nil {
			t.Fatal(err)
		}
	}
	w.pubs = w.pubs[5:]
	push(30)
	got = append(got, ackAll(t, s, w, mem)...)
	checkInOrder(t, got, want)
	if c, _ := f.store.CountPending("c"); c != 0 {
		t.Fatalf("store still holds %d pending entries", c)
	}
}

// MaxQueued counts spilled deliveries: the queue is full at MaxQueued
// whatever part of it is in memory.
func TestPagingMaxQueuedCountsSpilled(t *testing.T) {
	f := newFixture()
	cfg := f.pagingConfig("c", 5, 4)
	cfg.MaxQueued = 20
	s := New(cfg)
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	refused := 0
	for range 25 {
		if err := s.Push(f.msg(t, 1, 0)); errors.Is(err, ErrQueueFull) {
			refused++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if refused != 5 {
		t.Fatalf("refused %d, want 5", refused)
	}
	if _, q := s.Counts(); q != 20 {
		t.Fatalf("queued %d, want 20", q)
	}
	if memQueued(s) != 5 {
		t.Fatalf("in memory %d, want 5", memQueued(s))
	}
}

// After a restart the session pages its backlog in instead of loading it
// whole; inflight entries (wherever they are in the log order) are
// restored with their packet identifiers; the rest drains in order.
func TestPagingRestore(t *testing.T) {
	f := newFixture()
	const mem, n = 10, 95
	cfg := f.pagingConfig("c", mem, 4)
	s := New(cfg)
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	w := &recWriter{}
	s.Attach(w, 0)
	var want []uint64
	for range n {
		d := f.msg(t, 2, 0)
		want = append(want, d.Seq)
		if err := s.Push(d); err != nil {
			t.Fatal(err)
		}
	}
	if len(w.pubs) != 4 {
		t.Fatalf("%d sent, want the window of 4", len(w.pubs))
	}
	inflight := append([]*Delivery(nil), w.pubs...)
	// "Crash": restore from the store with no shutdown.
	rec, err := f.store.LoadSession("c")
	if err != nil {
		t.Fatal(err)
	}
	r, lost, err := Restore(cfg, rec)
	if err != nil || lost != 0 {
		t.Fatalf("Restore: lost %d, %v", lost, err)
	}
	fl, q := r.Counts()
	if fl != 4 || q != n-4 {
		t.Fatalf("restored inflight %d queued %d, want 4 and %d", fl, q, n-4)
	}
	if memQueued(r) > mem {
		t.Fatalf("restore loaded %d queued deliveries into memory, bound %d", memQueued(r), mem)
	}
	w2 := &recWriter{}
	r.Attach(w2, 0)
	for i, d := range inflight {
		if w2.pubs[i].Seq != d.Seq || w2.pubs[i].PacketID != d.PacketID || !w2.dups[i] {
			t.Fatalf("resend %d: seq %d id %d dup %v, want seq %d id %d dup", i, w2.pubs[i].Seq, w2.pubs[i].PacketID, w2.dups[i], d.Seq, d.PacketID)
		}
	}
	checkInOrder(t, ackAll(t, r, w2, mem), want)
	if c, _ := f.store.CountPending("c"); c != 0 {
		t.Fatalf("store still holds %d pending entries", c)
	}
}

// Removals are batched, but a crash before the batch is written never
// makes a completed QoS 2 delivery's PUBLISH go out again: the restored
// entry is in the released state and only PUBREL is resent
// [MQTT-4.3.3-6]. A completed QoS 1 delivery may be delivered again
// (at least once).
func TestBatchedRemovalCrashSafety(t *testing.T) {
	f := newFixture()
	cfg := f.pagingConfig("c", 100, 10)
	s := New(cfg)
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	w := &recWriter{}
	s.Attach(w, 0)
	q2 := f.msg(t, 2, 0)
	q1 := f.msg(t, 1, 0)
	held := f.msg(t, 1, 0) // stays in flight, so the session is not idle
	for _, d := range []*Delivery{q2, q1, held} {
		if err := s.Push(d); err != nil {
			t.Fatal(err)
		}
	}
	id2 := w.pubs[0].PacketID
	if _, err := s.Pubrec(id2, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pubcomp(id2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Puback(w.pubs[1].PacketID); err != nil {
		t.Fatal(err)
	}
	rec, err := f.store.LoadSession("c")
	if err != nil {
		t.Fatal(err)
	}
	r, _, err := Restore(cfg, rec)
	if err != nil {
		t.Fatal(err)
	}
	w2 := &recWriter{}
	r.Attach(w2, 0)
	for _, p := range w2.pubs {
		if p.Seq == q2.Seq {
			t.Fatalf("completed QoS 2 message seq %d was sent again after the crash", p.Seq)
		}
	}
	if len(w2.rels) != 1 || w2.rels[0] != id2 {
		t.Fatalf("PUBRELs resent %v, want [%d] (the completed QoS 2 entry, still released)", w2.rels, id2)
	}
	// Once flushed, nothing of the completed deliveries is left.
	s.FlushRemovals()
	var left []string
	_ = f.store.ScanPending("c", 0, func(p storage.Pending) bool {
		left = append(left, fmt.Sprint(p.Seq))
		return true
	})
	if len(left) != 1 || left[0] != fmt.Sprint(held.Seq) {
		t.Fatalf("pending after flush: %v, want only %d", left, held.Seq)
	}
}

// A session ceasing to be durable takes its spilled deliveries back into
// memory before its store entries go, losing none.
func TestPagingUnspillOnExpiryZero(t *testing.T) {
	f := newFixture()
	s := New(f.pagingConfig("c", 4, 100))
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	var want []uint64
	for range 30 {
		d := f.msg(t, 1, 0)
		want = append(want, d.Seq)
		if err := s.Push(d); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetExpiryInterval(0); err != nil {
		t.Fatal(err)
	}
	if s.Spilled() != 0 || memQueued(s) != 30 {
		t.Fatalf("after expiry 0: spilled %d, in memory %d", s.Spilled(), memQueued(s))
	}
	w := &recWriter{}
	s.Attach(w, 0)
	checkInOrder(t, ackAll(t, s, w, 30), want)
}

// chanWriter hands each PUBLISH to a channel (large enough never to block:
// the inflight window bounds what is outstanding).
type chanWriter struct{ ch chan Delivery }

func (w *chanWriter) WritePublish(d *Delivery, dup bool) error { w.ch <- *d; return nil }
func (w *chanWriter) WritePubrel(uint16)                       {}

// Publishers pushing concurrently to a spilling session while it drains:
// every message arrives once, and each publisher's messages in the order
// published [MQTT-4.6.0-5]. (Run with -race: spilled entries are written
// without the session lock.)
func TestPagingConcurrentPublishers(t *testing.T) {
	f := newFixture()
	const pubs, per, mem = 8, 300, 16
	s := New(f.pagingConfig("c", mem, 8))
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	w := &chanWriter{ch: make(chan Delivery, 64)}
	s.Attach(w, 0)
	owner := make(map[uint64]int) // seq -> publisher
	var ownerMu sync.Mutex
	var wg sync.WaitGroup
	for p := range pubs {
		wg.Go(func() {
			for range per {
				d := f.msg(t, 1, 0)
				ownerMu.Lock()
				owner[d.Seq] = p
				ownerMu.Unlock()
				if err := s.Push(d); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	seen := make(map[uint64]bool)
	last := make(map[int]uint64)
	for len(seen) < pubs*per {
		select {
		case d := <-w.ch:
			if seen[d.Seq] {
				t.Fatalf("seq %d delivered twice", d.Seq)
			}
			seen[d.Seq] = true
			ownerMu.Lock()
			p := owner[d.Seq]
			ownerMu.Unlock()
			if d.Seq < last[p] {
				t.Fatalf("publisher %d: seq %d delivered after %d", p, d.Seq, last[p])
			}
			last[p] = d.Seq
			if _, err := s.Puback(d.PacketID); err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("stuck after %d of %d deliveries (queued %d, spilled %d)", len(seen), pubs*per, memQueued(s), s.Spilled())
		}
	}
	wg.Wait()
	s.FlushRemovals()
	if c, _ := f.store.CountPending("c"); c != 0 {
		t.Fatalf("store still holds %d pending entries", c)
	}
}

// gatedStore holds RemovePending calls until release is closed.
type gatedStore struct {
	*storage.Memory
	entered chan []uint64
	release chan struct{}
}

func (g *gatedStore) RemovePending(clientID string, seqs ...uint64) error {
	g.entered <- seqs
	<-g.release
	return g.Memory.RemovePending(clientID, seqs...)
}

// gatedSession is an attached durable session "c" whose store holds
// RemovePending calls until g.release is closed; n bounds both its
// in-memory queue and its inflight window.
func gatedSession(t *testing.T, n int) (*fixture, *gatedStore, *Session, *recWriter) {
	t.Helper()
	f := newFixture()
	g := &gatedStore{Memory: f.store, entered: make(chan []uint64, 1), release: make(chan struct{})}
	cfg := f.pagingConfig("c", n, uint16(n))
	cfg.Store = g
	s := New(cfg)
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	w := &recWriter{}
	s.Attach(w, 0)
	return f, g, s, w
}

// storedSeqs is the set of sequence numbers with a pending entry for c.
func storedSeqs(t *testing.T, st storage.Store) map[uint64]bool {
	t.Helper()
	got := map[uint64]bool{}
	if err := st.ScanPending("c", 0, func(p storage.Pending) bool { got[p.Seq] = true; return true }); err != nil {
		t.Fatal(err)
	}
	return got
}

// A batch of removals a second old is removed in the background: the
// acknowledgement that completes it does not wait for the store, the log
// collector still keeps the messages its entries point at, and a delivery
// stored again under one of its sequence numbers (a retained message sent
// once more) is stored after the removal, not wiped out by it.
func TestBatchedRemovalInBackground(t *testing.T) {
	f, g, s, w := gatedSession(t, 1000)
	var ds []*Delivery
	for range 300 {
		d := f.msg(t, 1, 0)
		if err := s.Push(d); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	held := f.msg(t, 1, 0) // stays in flight: the session never goes idle
	if err := s.Push(held); err != nil {
		t.Fatal(err)
	}
	if n := len(storedSeqs(t, f.store)); n != 301 {
		t.Fatalf("%d pending entries stored, want 301", n)
	}
	ack := func(i int) {
		t.Helper()
		if _, err := s.Puback(w.pubs[i].PacketID); err != nil {
			t.Fatal(err)
		}
	}
	ack(0)
	f.now = f.now.Add(2 * removeEvery)
	for i := 1; i < 256; i++ {
		ack(i) // the 256th completion finds the batch old enough
	}
	var batch []uint64
	select {
	case batch = <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("256 completions, the first 2 s old: no batch of removals started within 10 s")
	}
	if len(batch) != 256 {
		t.Fatalf("batch of %d removals, want 256", len(batch))
	}
	// The store call is held, and the acknowledgement that started it has
	// returned.
	if low := s.LowestPendingSeq(); low > ds[0].Seq {
		t.Fatalf("LowestPendingSeq %d while the removal of %d is under way", low, ds[0].Seq)
	}
	again := &Delivery{Pending: storage.Pending{Seq: ds[5].Seq, QoS: 1}, Msg: ds[5].Msg}
	pushed := make(chan error, 1)
	go func() { pushed <- s.Push(again) }()
	// Push must wait for the batch: it may not return (having stored the
	// entry the batch is about to remove) while the removal is held. A
	// negative can only be watched for a while; 200 ms is long enough to
	// catch a Push that does not wait, and a Push that waits passes
	// however slow the machine.
	select {
	case err := <-pushed:
		t.Fatalf("Push of seq %d returned (%v) while the removal of that seq was still under way", again.Seq, err)
	case <-time.After(200 * time.Millisecond):
	}
	close(g.release)
	if err := <-pushed; err != nil {
		t.Fatal(err)
	}
	stored := storedSeqs(t, f.store)
	if !stored[ds[5].Seq] {
		t.Fatalf("the delivery stored again under seq %d was removed by the batch before it", ds[5].Seq)
	}
	for _, d := range ds[:256] {
		if d != ds[5] && stored[d.Seq] {
			t.Fatalf("seq %d still stored after its batch of removals", d.Seq)
		}
	}
	if !stored[ds[256].Seq] || !stored[held.Seq] {
		t.Fatal("entries of deliveries still in flight were removed")
	}
}

// A session that goes idle with a large batch of completed deliveries (the
// end of a drain) removes it in the background: the last acknowledgement
// does not wait for the store.
func TestIdleRemovalOfLargeBatchInBackground(t *testing.T) {
	f, g, s, w := gatedSession(t, 10000)
	for range idleRemoveInBackground {
		if err := s.Push(f.msg(t, 1, 0)); err != nil {
			t.Fatal(err)
		}
	}
	acked := make(chan error, 1)
	go func() {
		for _, p := range w.pubs {
			if _, err := s.Puback(p.PacketID); err != nil {
				acked <- err
				return
			}
		}
		acked <- nil
	}()
	select {
	case batch := <-g.entered:
		if len(batch) != idleRemoveInBackground {
			t.Fatalf("idle removal of %d entries, want %d", len(batch), idleRemoveInBackground)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no removal within 10 s of the session going idle")
	}
	// The removal is held; the acknowledgements have all returned.
	select {
	case err := <-acked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the last acknowledgement waited for the idle removal")
	}
	close(g.release)
	s.FlushRemovals() // waits for the batch under way
	if n := len(storedSeqs(t, f.store)); n != 0 {
		t.Fatalf("%d pending entries left after the idle removal", n)
	}
}
