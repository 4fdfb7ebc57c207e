package session

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/storage"
)

// recWriter records what the session writes.
type recWriter struct {
	pubs     []*Delivery
	dups     []bool
	rels     []uint16
	tooLarge map[uint64]bool
	busy     bool
}

func (w *recWriter) WritePublish(d *Delivery, dup bool) error {
	if w.tooLarge[d.Seq] {
		return ErrTooLarge
	}
	if w.busy && !dup {
		return ErrBusy
	}
	c := *d
	w.pubs = append(w.pubs, &c)
	w.dups = append(w.dups, dup)
	return nil
}

func (w *recWriter) WritePubrel(id uint16) { w.rels = append(w.rels, id) }

type fixture struct {
	store *storage.Memory
	now   time.Time
	seq   uint64
}

func newFixture() *fixture {
	return &fixture{store: storage.NewMemory(), now: time.Unix(1_700_000_000, 0)}
}

func (f *fixture) config(id string, expiry uint32) Config {
	return Config{ClientID: id, Version: packets.V5, ExpiryInterval: expiry, Store: f.store,
		MaxInflight: 100, Now: func() time.Time { return f.now }}
}

// msg appends a message to the log and returns a delivery for it.
func (f *fixture) msg(t *testing.T, qos byte, expiry uint32) *Delivery {
	t.Helper()
	m := &storage.Message{Topic: "t", Payload: []byte("p"), QoS: qos, Created: f.now}
	if expiry > 0 {
		m.Properties.MessageExpiry = expiry
	}
	if err := f.store.Append(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	return &Delivery{Pending: storage.Pending{Seq: m.Seq, QoS: qos}, Msg: m}
}

// Packet identifiers are non-zero and never reused while in flight
// [MQTT-2.2.1-4], also across the 65535 wrap.
func TestPacketIDsNeverReusedInFlight(t *testing.T) {
	f := newFixture()
	s := New(f.config("c", 0))
	w := &recWriter{}
	s.Attach(w, 0)
	held := f.msg(t, 1, 0)
	if err := s.Push(held); err != nil {
		t.Fatal(err)
	}
	heldID := w.pubs[0].PacketID
	for i := range 70000 {
		d := f.msg(t, 1, 0)
		if err := s.Push(d); err != nil {
			t.Fatal(err)
		}
		id := w.pubs[len(w.pubs)-1].PacketID
		if id == 0 || id == heldID {
			t.Fatalf("message %d got packet id %d (held %d)", i, id, heldID)
		}
		if _, err := s.Puback(id); err != nil {
			t.Fatalf("puback %d: %v", id, err)
		}
	}
}

// The inflight window is the client's Receive Maximum [MQTT-3.3.4-9];
// acknowledgements refill it in order.
func TestInflightWindow(t *testing.T) {
	f := newFixture()
	s := New(f.config("c", 0))
	w := &recWriter{}
	s.Attach(w, 2)
	for range 5 {
		if err := s.Push(f.msg(t, 1, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if len(w.pubs) != 2 {
		t.Fatalf("sent %d, window 2", len(w.pubs))
	}
	if in, q := s.Counts(); in != 2 || q != 3 {
		t.Fatalf("inflight %d queued %d", in, q)
	}
	if _, err := s.Puback(w.pubs[0].PacketID); err != nil {
		t.Fatal(err)
	}
	if len(w.pubs) != 3 || w.pubs[2].Seq != 3 {
		t.Fatalf("after ack sent %d, last seq %d", len(w.pubs), w.pubs[len(w.pubs)-1].Seq)
	}
	if _, err := s.Puback(999); !errors.Is(err, ErrUnknownPacketID) {
		t.Fatalf("unknown ack: %v", err)
	}
}

// QoS 2: PUBREC moves to released; PUBCOMP completes; a PUBCOMP before
// PUBREC is unknown; PUBREC with an error code ends the flow [MQTT-4.4.0-2].
func TestQoS2Flow(t *testing.T) {
	f := newFixture()
	s := New(f.config("c", 0))
	w := &recWriter{}
	s.Attach(w, 0)
	_ = s.Push(f.msg(t, 2, 0))
	id := w.pubs[0].PacketID
	if _, err := s.Pubcomp(id); err == nil {
		t.Fatal("PUBCOMP before PUBREC accepted")
	}
	if _, err := s.Pubrec(id, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pubcomp(id); err != nil {
		t.Fatal(err)
	}
	if in, _ := s.Counts(); in != 0 {
		t.Fatalf("%d still in flight", in)
	}
	_ = s.Push(f.msg(t, 2, 0))
	if _, err := s.Pubrec(w.pubs[1].PacketID, true); err != nil {
		t.Fatal(err)
	}
	if in, _ := s.Counts(); in != 0 {
		t.Fatal("failed PUBREC left the delivery in flight")
	}
}

// Resume: inflight PUBLISH is resent with DUP in send order, released QoS 2
// as PUBREL [MQTT-4.4.0-1] [MQTT-4.6.0-1].
func TestResumeResends(t *testing.T) {
	f := newFixture()
	s := New(f.config("c", NeverExpire))
	w := &recWriter{}
	s.Attach(w, 0)
	a, b, c := f.msg(t, 1, 0), f.msg(t, 2, 0), f.msg(t, 2, 0)
	for _, d := range []*Delivery{a, b, c} {
		_ = s.Push(d)
	}
	if _, err := s.Pubrec(w.pubs[1].PacketID, false); err != nil {
		t.Fatal(err)
	}
	s.Detach(w)
	w2 := &recWriter{}
	s.Attach(w2, 0)
	if len(w2.pubs) != 2 || w2.pubs[0].Seq != a.Seq || w2.pubs[1].Seq != c.Seq || !w2.dups[0] || !w2.dups[1] {
		t.Fatalf("resent %v dups %v", w2.pubs, w2.dups)
	}
	if w2.pubs[0].PacketID != w.pubs[0].PacketID {
		t.Error("resend changed the packet id")
	}
	if len(w2.rels) != 1 || w2.rels[0] != w.pubs[1].PacketID {
		t.Fatalf("PUBRELs %v", w2.rels)
	}
}

// Messages expire while queued [MQTT-3.3.2-5] and are counted.
func TestExpiryWhileQueued(t *testing.T) {
	f := newFixture()
	s := New(f.config("c", NeverExpire))
	_ = s.Push(f.msg(t, 1, 10))
	_ = s.Push(f.msg(t, 1, 0))
	f.now = f.now.Add(11 * time.Second)
	w := &recWriter{}
	s.Attach(w, 0)
	if len(w.pubs) != 1 || w.pubs[0].Seq != 2 {
		t.Fatalf("sent %v", w.pubs)
	}
	if s.stats.Expired.Load() != 1 {
		t.Errorf("expired %d", s.stats.Expired.Load())
	}
	if n, _ := f.store.CountPending("c"); n != 1 {
		t.Errorf("store holds %d pending, want 1", n)
	}
}

// Overflow policy: refuse the newest, counted.
func TestQueueOverflowRefusesNewest(t *testing.T) {
	f := newFixture()
	cfg := f.config("c", NeverExpire)
	cfg.MaxQueued = 2
	s := New(cfg)
	for i := range 3 {
		err := s.Push(f.msg(t, 1, 0))
		if i < 2 && err != nil || i == 2 && !errors.Is(err, ErrQueueFull) {
			t.Fatalf("push %d: %v", i, err)
		}
	}
	if s.stats.Overflow.Load() != 1 {
		t.Errorf("overflow %d", s.stats.Overflow.Load())
	}
	w := &recWriter{}
	s.Attach(w, 0)
	if len(w.pubs) != 2 || w.pubs[0].Seq != 1 || w.pubs[1].Seq != 2 {
		t.Fatalf("delivered %v", w.pubs)
	}
}

// Too large for the client: dropped as if delivered [MQTT-3.1.2-25]; a busy
// connection keeps the delivery queued until Pump.
func TestTooLargeAndBusy(t *testing.T) {
	f := newFixture()
	s := New(f.config("c", 0))
	big := f.msg(t, 1, 0)
	w := &recWriter{tooLarge: map[uint64]bool{big.Seq: true}, busy: true}
	s.Attach(w, 0)
	_ = s.Push(big)
	_ = s.Push(f.msg(t, 1, 0))
	if in, q := s.Counts(); in != 0 || q != 1 {
		t.Fatalf("inflight %d queued %d", in, q)
	}
	w.busy = false
	s.Pump()
	if len(w.pubs) != 1 || w.pubs[0].Seq != 2 {
		t.Fatalf("sent %v", w.pubs)
	}
	if s.stats.TooLarge.Load() != 1 {
		t.Errorf("too large %d", s.stats.TooLarge.Load())
	}
}

// Inbound QoS 2 state: duplicates recognised until PUBREL
// [MQTT-4.3.3-10]; the server's Receive Maximum bounds it.
func TestInboundQoS2AndQuota(t *testing.T) {
	f := newFixture()
	cfg := f.config("c", NeverExpire)
	cfg.ReceiveMaximum = 2
	s := New(cfg)
	for id := uint16(1); id <= 2; id++ {
		if dup, err := s.InboundCheck(id, 2); dup || err != nil {
			t.Fatalf("check %d: %v %v", id, dup, err)
		}
		_ = s.InboundAdd(id)
	}
	if dup, _ := s.InboundCheck(1, 2); !dup {
		t.Error("resent QoS 2 not recognised")
	}
	if _, err := s.InboundCheck(3, 2); !errors.Is(err, ErrReceiveMaximum) {
		t.Errorf("third unacknowledged: %v", err)
	}
	if ids, _ := f.store.Inbound("c"); len(ids) != 2 {
		t.Errorf("store has inbound %v", ids)
	}
	if known, _ := s.InboundRelease(1); !known {
		t.Error("release of known id")
	}
	if known, _ := s.InboundRelease(1); known {
		t.Error("second release known")
	}
	if dup, err := s.InboundCheck(1, 2); dup || err != nil {
		t.Errorf("after release: %v %v", dup, err)
	}
}

// A durable session survives a restart: subscriptions, pending deliveries
// (queued and inflight), inbound ids and the pending will.
func TestRestore(t *testing.T) {
	f := newFixture()
	s := New(f.config("c", 3600))
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Subscribe(storage.Subscription{Filter: "a/#", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	w := &recWriter{}
	s.Attach(w, 1)
	a, b := f.msg(t, 1, 0), f.msg(t, 1, 0)
	_ = s.Push(a)
	_ = s.Push(b)
	_ = s.InboundAdd(7)
	s.Detach(w)
	will := &storage.Message{Topic: "w", Payload: []byte("bye")}
	if err := s.SetPendingWill(will, f.now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}

	rec, err := f.store.LoadSession("c")
	if err != nil {
		t.Fatal(err)
	}
	r, lost, err := Restore(f.config("", 0), rec)
	if err != nil || lost != 0 {
		t.Fatalf("restore: %v lost %d", err, lost)
	}
	if subs := r.Subscriptions(); len(subs) != 1 || subs[0].Filter != "a/#" {
		t.Errorf("subscriptions %v", subs)
	}
	if in, q := r.Counts(); in != 1 || q != 1 {
		t.Errorf("inflight %d queued %d", in, q)
	}
	if dup, _ := r.InboundCheck(7, 2); !dup {
		t.Error("inbound id lost")
	}
	if w, at := r.PeekWill(); w == nil || at.IsZero() {
		t.Error("pending will lost")
	}
	w2 := &recWriter{}
	r.Attach(w2, 0)
	if len(w2.pubs) != 2 || !w2.dups[0] || w2.dups[1] || w2.pubs[0].PacketID != w.pubs[0].PacketID {
		t.Fatalf("after restore sent %v dups %v", w2.pubs, w2.dups)
	}
}

// Revision fencing: a stale owner's save fails with ErrFenced.
func TestFencing(t *testing.T) {
	f := newFixture()
	a := New(f.config("c", 60))
	if err := a.Save(); err != nil {
		t.Fatal(err)
	}
	rec, _ := f.store.LoadSession("c")
	b, _, _ := Restore(f.config("", 0), rec)
	if _, err := b.Subscribe(storage.Subscription{Filter: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Subscribe(storage.Subscription{Filter: "y"}); !errors.Is(err, ErrFenced) {
		t.Fatalf("stale save: %v", err)
	}
	if err := a.Push(f.msg(t, 1, 0)); !errors.Is(err, ErrFenced) {
		t.Fatalf("fenced push: %v", err)
	}
}

// Durability follows the expiry interval: becoming durable saves the state;
// expiry 0 removes it.
func TestSetExpiryInterval(t *testing.T) {
	f := newFixture()
	s := New(f.config("c", 0))
	_, _ = s.Subscribe(storage.Subscription{Filter: "a"})
	_ = s.Push(f.msg(t, 1, 0))
	if _, err := f.store.LoadSession("c"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("non-durable session stored: %v", err)
	}
	if err := s.SetExpiryInterval(60); err != nil {
		t.Fatal(err)
	}
	rec, err := f.store.LoadSession("c")
	if err != nil || len(rec.Subscriptions) != 1 {
		t.Fatalf("after becoming durable: %v %v", rec, err)
	}
	if n, _ := f.store.CountPending("c"); n != 1 {
		t.Errorf("pending %d", n)
	}
	if err := s.SetExpiryInterval(0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.LoadSession("c"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("session kept after expiry 0: %v", err)
	}
}

// Drain hands back what the client has not acknowledged (shared
// subscription re-routing) and leaves nothing pending.
func TestDrain(t *testing.T) {
	f := newFixture()
	s := New(f.config("c", 60))
	_ = s.Save()
	w := &recWriter{}
	s.Attach(w, 1)
	a, b, c := f.msg(t, 2, 0), f.msg(t, 1, 0), f.msg(t, 1, 0)
	_ = s.Push(a)
	_ = s.Push(b)
	_ = s.Push(c)
	if _, err := s.Pubrec(w.pubs[0].PacketID, false); err != nil {
		t.Fatal(err)
	}
	got := s.Drain()
	if len(got) != 2 || got[0].Seq != b.Seq || got[1].Seq != c.Seq {
		var seqs []uint64
		for _, d := range got {
			seqs = append(seqs, d.Seq)
		}
		t.Fatalf("drained %v", seqs)
	}
	if n, _ := f.store.CountPending("c"); n != 0 {
		t.Errorf("store still has %d pending", n)
	}
	_ = fmt.Sprint
}

// Restored queued deliveries are read from the log only when sent; one
// whose log entry is gone is counted and dropped, not delivered.
func TestRestoreLazyAndMissing(t *testing.T) {
	f := newFixture()
	s := New(f.config("c", 3600))
	_ = s.Save()
	a, b := f.msg(t, 1, 0), f.msg(t, 1, 0)
	_ = s.Push(a)
	_ = s.Push(b)
	if err := f.store.DeleteMessages(a.Seq); err != nil {
		t.Fatal(err)
	}
	rec, _ := f.store.LoadSession("c")
	r, lost, err := Restore(f.config("", 0), rec)
	if err != nil || lost != 0 {
		t.Fatalf("restore: %v, lost %d", err, lost)
	}
	if in, q := r.Unacknowledged(); len(in) != 0 || len(q) != 2 || q[0].Msg != nil {
		t.Fatalf("restored inflight %d queued %d (msg loaded early: %v)", len(in), len(q), len(q) > 0 && q[0].Msg != nil)
	}
	w := &recWriter{}
	r.Attach(w, 0)
	if len(w.pubs) != 1 || w.pubs[0].Seq != b.Seq || w.pubs[0].Msg == nil {
		t.Fatalf("sent %v", w.pubs)
	}
	if r.stats.Missing.Load() != 1 {
		t.Errorf("missing %d", r.stats.Missing.Load())
	}
	if n, _ := f.store.CountPending("c"); n != 1 {
		t.Errorf("store still holds %d pending, want 1", n)
	}
}

// A QoS 2 delivery refused by a busy connection after its packet identifier
// was written ahead to the store keeps that identifier: no other delivery
// gets it, so the store never holds two entries under one identifier
// [MQTT-2.3.1-4], and an acknowledgement for it before it was sent is
// refused.
func TestBusyKeepsWrittenAheadPacketID(t *testing.T) {
	f := newFixture()
	s := New(f.config("c", 3600))
	w := &recWriter{busy: true}
	s.Attach(w, 0)
	first := f.msg(t, 2, 0)
	if err := s.Push(first); err != nil {
		t.Fatal(err)
	}
	if len(w.pubs) != 0 {
		t.Fatalf("sent %d while busy", len(w.pubs))
	}
	var reserved uint16
	f.store.ScanPending("c", 0, func(p storage.Pending) bool {
		if p.Seq == first.Seq {
			reserved = p.PacketID
		}
		return true
	})
	if reserved == 0 {
		t.Fatal("the identifier was not written ahead to the store")
	}
	if _, err := s.Pubrec(reserved, false); !errors.Is(err, ErrUnknownPacketID) {
		t.Fatalf("PUBREC for an unsent delivery: err %v, want ErrUnknownPacketID", err)
	}
	w.busy = false
	second := f.msg(t, 2, 0)
	if err := s.Push(second); err != nil {
		t.Fatal(err)
	}
	if len(w.pubs) != 2 || w.pubs[0].Seq != first.Seq || w.pubs[1].Seq != second.Seq {
		t.Fatalf("sent %v, want seq %d then %d", w.pubs, first.Seq, second.Seq)
	}
	if w.pubs[0].PacketID != reserved {
		t.Errorf("first delivery sent under id %d, want its reserved id %d", w.pubs[0].PacketID, reserved)
	}
	ids := map[uint16]uint64{}
	f.store.ScanPending("c", 0, func(p storage.Pending) bool {
		if prev, dup := ids[p.PacketID]; dup && p.PacketID != 0 {
			t.Errorf("seq %d and %d stored under the same packet id %d", prev, p.Seq, p.PacketID)
		}
		ids[p.PacketID] = p.Seq
		return true
	})
}
