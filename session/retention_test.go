package session

import (
	"testing"
)

// DropQueued takes the deliveries retention removes out of a paged
// session: from the in-memory queue and from the entries spilled to the
// store, with their messages, and leaves in-flight deliveries and the rest
// of the queue to be delivered in order.
func TestDropQueuedMemoryAndSpilled(t *testing.T) {
	f := newFixture()
	const mem, n = 10, 60
	s := New(f.pagingConfig("c", mem, 2))
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for range n {
		d := f.msg(t, 1, 0)
		seqs = append(seqs, d.Seq)
		if err := s.Push(d); err != nil {
			t.Fatal(err)
		}
	}
	// Two deliveries go in flight; then everything below seqs[40] except
	// seqs[5] (a retained message, say) is removed by retention.
	w := &recWriter{}
	s.Attach(w, 0)
	if len(w.pubs) != 2 {
		t.Fatalf("%d in flight, want 2", len(w.pubs))
	}
	cut, keep := seqs[40], seqs[5]
	dropped := s.DropQueued(cut, func(seq uint64) bool { return seq != keep })
	if len(dropped) != 40-2-1 {
		t.Fatalf("dropped %d, want %d (40 below the cut, 2 in flight, 1 kept)", len(dropped), 40-2-1)
	}
	for _, d := range dropped {
		if d.Msg == nil || d.Msg.Seq != d.Seq {
			t.Fatalf("dropped delivery %d without its message", d.Seq)
		}
		if d.Seq >= cut || d.Seq == keep || d.Seq == seqs[0] || d.Seq == seqs[1] {
			t.Fatalf("dropped %d, which is not to go", d.Seq)
		}
	}
	if c, _ := f.store.CountPending("c"); c != n-len(dropped) {
		t.Fatalf("store holds %d pending, want %d", c, n-len(dropped))
	}
	// The queued bytes shrink with the dropped deliveries: what is left
	// queued is 21 deliveries (keep and seqs[40:]), each charged the same.
	if got, per := s.QueuedBytes(), deliveryBytes(dropped[0]); got != 21*per {
		t.Errorf("QueuedBytes = %d after the drop, want %d (21 × %d)", got, 21*per, per)
	}
	want := append([]uint64{seqs[0], seqs[1], keep}, seqs[40:]...)
	checkInOrder(t, ackAll(t, s, w, mem), want)
	if c, _ := f.store.CountPending("c"); c != 0 {
		t.Fatalf("store still holds %d pending entries", c)
	}
}
