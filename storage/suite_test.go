package storage

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
)

// runSuite checks the Store contract against one implementation. open must
// return a fresh, empty store; the suite closes it.
func runSuite(t *testing.T, open func(t *testing.T) Store) {
	t.Run("Append assigns increasing sequence from 1", func(t *testing.T) { testAppendSeq(t, open(t)) })
	t.Run("Get and Scan return what was appended", func(t *testing.T) { testGetScan(t, open(t)) })
	t.Run("Message round trip keeps every field", func(t *testing.T) { testMessageRoundTrip(t, open(t)) })
	t.Run("Stored data is a copy", func(t *testing.T) { testCopyOnStore(t, open(t)) })
	t.Run("DeleteMessages", func(t *testing.T) { testDeleteMessages(t, open(t)) })
	t.Run("Scan callback may call the store", func(t *testing.T) { testScanReentrant(t, open(t)) })
	t.Run("Session compare-and-swap", func(t *testing.T) { testSessionCAS(t, open(t)) })
	t.Run("DeleteSession removes pending and inbound", func(t *testing.T) { testDeleteSession(t, open(t)) })
	t.Run("Sessions lists all", func(t *testing.T) { testSessionsList(t, open(t)) })
	t.Run("Pending queue", func(t *testing.T) { testPending(t, open(t)) })
	t.Run("Pending queues are per client", func(t *testing.T) { testPendingIsolation(t, open(t)) })
	t.Run("Inbound QoS 2 ids", func(t *testing.T) { testInbound(t, open(t)) })
	t.Run("Retained", func(t *testing.T) { testRetained(t, open(t)) })
	t.Run("Cursors", func(t *testing.T) { testCursors(t, open(t)) })
	t.Run("Concurrent appends", func(t *testing.T) { testConcurrentAppend(t, open(t)) })
	t.Run("Closed store returns ErrClosed", func(t *testing.T) { testClosed(t, open(t)) })
	t.Run("Delayed messages", func(t *testing.T) { testDelayed(t, open(t)) })
	t.Run("Delayed ids and copies", func(t *testing.T) { testDelayedCopies(t, open(t)) })
	t.Run("Delayed after Close", func(t *testing.T) { testDelayedClosed(t, open(t)) })
	t.Run("Writes larger than one transaction", func(t *testing.T) { testLargeWrites(t, open(t)) })
}

// A single call may carry more than badger takes in one transaction (a
// publisher's batch of thousands of messages, a session's whole queue): it
// succeeds, and an append's messages still get consecutive sequence
// numbers. The payloads are below badger's ValueThreshold, so that they
// count whole in the transaction.
func testLargeWrites(t *testing.T, s Store) {
	closeStore(t, s)
	must(t, s.Append(context.Background(), msg("first", "x")))
	const n = 6000
	msgs := make([]*Message, n)
	for i := range msgs {
		msgs[i] = &Message{Topic: fmt.Sprintf("big/%d", i), QoS: 1, Payload: make([]byte, 400)}
		msgs[i].Payload[0] = byte(i)
	}
	must(t, s.Append(context.Background(), msgs...))
	for i, m := range msgs {
		if m.Seq != msgs[0].Seq+uint64(i) {
			t.Fatalf("message %d has seq %d, want %d (consecutive)", i, m.Seq, msgs[0].Seq+uint64(i))
		}
	}
	if got := s.Head(); got != msgs[n-1].Seq {
		t.Fatalf("Head = %d, want %d", got, msgs[n-1].Seq)
	}
	for _, i := range []int{0, n / 2, n - 1} {
		m, err := s.Get(msgs[i].Seq)
		must(t, err)
		if m.Topic != msgs[i].Topic || len(m.Payload) != 400 || m.Payload[0] != byte(i) {
			t.Fatalf("Get(%d) = %q with %d bytes", msgs[i].Seq, m.Topic, len(m.Payload))
		}
	}
	pend := make([]Pending, n)
	seqs := make([]uint64, n)
	for i, m := range msgs {
		pend[i] = Pending{Seq: m.Seq, QoS: 1}
		seqs[i] = m.Seq
	}
	must(t, s.Enqueue("big-client", pend...))
	if c, err := s.CountPending("big-client"); err != nil || c != n {
		t.Fatalf("CountPending after enqueueing %d = %d, %v", n, c, err)
	}
	must(t, s.RemovePending("big-client", seqs...))
	if c, err := s.CountPending("big-client"); err != nil || c != 0 {
		t.Fatalf("CountPending after removing all = %d, %v", c, err)
	}
	must(t, s.DeleteMessages(seqs...))
	left := 0
	must(t, s.ScanSeqs(0, func(uint64) bool { left++; return true }))
	if left != 1 {
		t.Fatalf("%d messages left after deleting the %d large ones, want 1", left, n)
	}
}

func closeStore(t *testing.T, s Store) {
	t.Helper()
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func msg(topic, payload string) *Message {
	return &Message{Topic: topic, Payload: []byte(payload), QoS: 1, Created: time.Unix(1700000000, 0).UTC()}
}

func appendN(t *testing.T, s Store, n int, prefix string) []uint64 {
	t.Helper()
	seqs := make([]uint64, 0, n)
	for i := 0; i < n; i++ {
		m := msg(fmt.Sprintf("%s/%d", prefix, i), fmt.Sprintf("p%d", i))
		must(t, s.Append(context.Background(), m))
		seqs = append(seqs, m.Seq)
	}
	return seqs
}

func scanAll(t *testing.T, s Store, from uint64) []*Message {
	t.Helper()
	var out []*Message
	must(t, s.Scan(from, func(m *Message) bool { out = append(out, m); return true }))
	return out
}

func testAppendSeq(t *testing.T, s Store) {
	closeStore(t, s)
	if h := s.Head(); h != 0 {
		t.Fatalf("Head of empty store = %d, want 0", h)
	}
	a, b, c := msg("a", "1"), msg("b", "2"), msg("c", "3")
	must(t, s.Append(context.Background(), a))
	if a.Seq != 1 {
		t.Fatalf("first Seq = %d, want 1", a.Seq)
	}
	must(t, s.Append(context.Background(), b, c)) // several in one call keep argument order
	if b.Seq != 2 || c.Seq != 3 {
		t.Fatalf("Seqs = %d,%d, want 2,3", b.Seq, c.Seq)
	}
	if h := s.Head(); h != 3 {
		t.Fatalf("Head = %d, want 3", h)
	}
	must(t, s.Append(context.Background())) // empty append is a no-op
	if h := s.Head(); h != 3 {
		t.Fatalf("Head after empty append = %d, want 3", h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Append(ctx, msg("d", "4")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with cancelled context = %v, want context.Canceled", err)
	}
}

func testGetScan(t *testing.T, s Store) {
	closeStore(t, s)
	seqs := appendN(t, s, 600, "t") // more than one scan chunk
	m, err := s.Get(seqs[10])
	must(t, err)
	if m.Seq != seqs[10] || m.Topic != "t/10" || string(m.Payload) != "p10" {
		t.Fatalf("Get(%d) = seq %d topic %q payload %q", seqs[10], m.Seq, m.Topic, m.Payload)
	}
	if _, err := s.Get(0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(0) = %v, want ErrNotFound", err)
	}
	if _, err := s.Get(seqs[599] + 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(head+1) = %v, want ErrNotFound", err)
	}
	all := scanAll(t, s, 0)
	if len(all) != 600 {
		t.Fatalf("Scan(0) returned %d messages, want 600", len(all))
	}
	for i, m := range all {
		if m.Seq != seqs[i] || m.Topic != fmt.Sprintf("t/%d", i) {
			t.Fatalf("Scan[%d] = seq %d topic %q, want seq %d", i, m.Seq, m.Topic, seqs[i])
		}
	}
	tail := scanAll(t, s, seqs[590])
	if len(tail) != 10 || tail[0].Seq != seqs[590] {
		t.Fatalf("Scan(from %d) gave %d messages starting at %v", seqs[590], len(tail), tail)
	}
	if got := scanAll(t, s, seqs[599]+1); len(got) != 0 {
		t.Fatalf("Scan past head gave %d messages", len(got))
	}
	var got []uint64
	must(t, s.ScanSeqs(seqs[3], func(seq uint64) bool { got = append(got, seq); return true }))
	if !slices.Equal(got, seqs[3:]) {
		t.Fatalf("ScanSeqs(from %d) gave %d sequence numbers, want %d in order", seqs[3], len(got), len(seqs)-3)
	}
	must(t, s.DeleteMessages(seqs[5], seqs[400]))
	got = got[:0]
	must(t, s.ScanSeqs(0, func(seq uint64) bool { got = append(got, seq); return len(got) < 500 }))
	want := slices.DeleteFunc(slices.Clone(seqs), func(q uint64) bool { return q == seqs[5] || q == seqs[400] })[:500]
	if !slices.Equal(got, want) {
		t.Fatalf("ScanSeqs after deleting two and stopping at 500: %d sequence numbers, want %d (deleted ones skipped)", len(got), len(want))
	}
	n := 0
	must(t, s.Scan(1, func(*Message) bool { n++; return n < 3 }))
	if n != 3 {
		t.Fatalf("Scan did not stop when fn returned false: %d calls", n)
	}
}

func testMessageRoundTrip(t *testing.T, s Store) {
	closeStore(t, s)
	in := &Message{
		Topic:     "devices/42/temp",
		Payload:   []byte{0, 1, 2, 0xff},
		QoS:       2,
		Retain:    true,
		Publisher: "dev-42",
		Created:   time.Date(2026, 11, 22, 22, 30, 0, 123456789, time.UTC),
	}
	in.Properties.PayloadFormat = 1
	in.Properties.MessageExpiry = 3600
	in.Properties.ContentType = "application/json"
	in.Properties.ResponseTopic = "reply/42"
	in.Properties.CorrelationData = []byte("corr")
	in.Properties.SubscriptionIDs = []uint32{7, 268435455}
	in.Properties.User = []packets.UserProperty{{Key: "k", Value: "v1"}, {Key: "k", Value: "v2"}, {Key: "", Value: ""}}
	in.Properties.Mark(packets.PropRequestProblemInfo) // present with a zero value
	must(t, s.Append(context.Background(), in))
	out, err := s.Get(in.Seq)
	must(t, err)
	if !out.Created.Equal(in.Created) {
		t.Fatalf("Created = %v, want %v", out.Created, in.Created)
	}
	out.Created = in.Created // compare the rest with the location normalised
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("round trip:\n got %#v\nwant %#v", out, in)
	}
	if !out.Properties.Has(packets.PropRequestProblemInfo) {
		t.Fatal("a property marked present with a zero value was lost")
	}
	if !out.ExpiresAt().Equal(in.Created.Add(time.Hour)) {
		t.Fatalf("ExpiresAt = %v", out.ExpiresAt())
	}
	// A message with nothing set survives too (nil payload, zero time).
	empty := &Message{Topic: "e"}
	must(t, s.Append(context.Background(), empty))
	got, err := s.Get(empty.Seq)
	must(t, err)
	if got.Topic != "e" || len(got.Payload) != 0 || !got.Created.IsZero() || got.Properties.Has(packets.PropMessageExpiry) {
		t.Fatalf("empty message round trip = %#v", got)
	}
}

func testCopyOnStore(t *testing.T, s Store) {
	closeStore(t, s)
	m := msg("a", "original")
	m.Properties.User = []packets.UserProperty{{Key: "k", Value: "v"}}
	// An appended message is immutable (Log.Append): the store may keep
	// it, so only what readers get back must be their own copy.
	must(t, s.Append(context.Background(), m))
	got, err := s.Get(m.Seq)
	must(t, err)
	got.Payload[0] = 'Y'
	got.Properties.User[0].Value = "changed"
	again, err := s.Get(m.Seq)
	must(t, err)
	if string(again.Payload) != "original" || again.Properties.User[0].Value != "v" {
		t.Fatalf("mutation of a returned message reached the store: %q %v", again.Payload, again.Properties.User)
	}
	var scanned *Message
	must(t, s.Scan(m.Seq, func(x *Message) bool { scanned = x; return false }))
	scanned.Payload[0] = 'Z'
	again, err = s.Get(m.Seq)
	must(t, err)
	if string(again.Payload) != "original" {
		t.Fatalf("mutation of a scanned message reached the store: %q", again.Payload)
	}

	sess := &Session{ClientID: "c", Subscriptions: []Subscription{{Filter: "a/#", QoS: 1}}}
	must(t, s.SaveSession(sess))
	sess.Subscriptions[0].Filter = "changed"
	loaded, err := s.LoadSession("c")
	must(t, err)
	if loaded.Subscriptions[0].Filter != "a/#" {
		t.Fatalf("caller's mutation after SaveSession reached the store: %q", loaded.Subscriptions[0].Filter)
	}

	p := Pending{Seq: 1, QoS: 1, SubscriptionIDs: []uint32{5}}
	must(t, s.Enqueue("c", p))
	p.SubscriptionIDs[0] = 99
	var seen []uint32
	must(t, s.ScanPending("c", 0, func(p Pending) bool { seen = p.SubscriptionIDs; return true }))
	if !slices.Equal(seen, []uint32{5}) {
		t.Fatalf("caller's mutation after Enqueue reached the store: %v", seen)
	}

	r := msg("r", "retained")
	must(t, s.SetRetained(r))
	r.Payload[0] = 'X'
	must(t, s.Retained(func(m *Message) bool { r = m; return true }))
	if string(r.Payload) != "retained" {
		t.Fatalf("caller's mutation after SetRetained reached the store: %q", r.Payload)
	}
}

func testDeleteMessages(t *testing.T, s Store) {
	closeStore(t, s)
	seqs := appendN(t, s, 10, "d")
	must(t, s.DeleteMessages(seqs[0], seqs[4], seqs[9], 12345)) // unknown seq ignored
	for _, i := range []int{0, 4, 9} {
		if _, err := s.Get(seqs[i]); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get(deleted %d) = %v, want ErrNotFound", seqs[i], err)
		}
	}
	var got []uint64
	for _, m := range scanAll(t, s, 0) {
		got = append(got, m.Seq)
	}
	want := []uint64{seqs[1], seqs[2], seqs[3], seqs[5], seqs[6], seqs[7], seqs[8]}
	if !slices.Equal(got, want) {
		t.Fatalf("Scan after delete = %v, want %v", got, want)
	}
	// Deleting the newest message must not let its sequence be reused.
	if h := s.Head(); h != seqs[9] {
		t.Fatalf("Head after deleting the newest = %d, want %d", h, seqs[9])
	}
	m := msg("d/next", "x")
	must(t, s.Append(context.Background(), m))
	if m.Seq != seqs[9]+1 {
		t.Fatalf("next Seq after deleting the newest = %d, want %d", m.Seq, seqs[9]+1)
	}
	// Deleting everything leaves an empty scan and Head unchanged.
	must(t, s.DeleteMessages(append(want, m.Seq)...))
	if got := scanAll(t, s, 0); len(got) != 0 {
		t.Fatalf("Scan after deleting all = %d messages", len(got))
	}
	if h := s.Head(); h != m.Seq {
		t.Fatalf("Head after deleting all = %d, want %d", h, m.Seq)
	}
}

func testScanReentrant(t *testing.T, s Store) {
	closeStore(t, s)
	appendN(t, s, 5, "r")
	done := make(chan error, 1)
	go func() {
		n := 0
		done <- s.Scan(0, func(m *Message) bool {
			n++
			if err := s.Append(context.Background(), msg("r/new", "x")); err != nil {
				t.Errorf("Append inside Scan: %v", err)
				return false
			}
			if err := s.DeleteMessages(m.Seq); err != nil {
				t.Errorf("DeleteMessages inside Scan: %v", err)
				return false
			}
			return n < 20
		})
	}()
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Scan with a callback that writes to the store did not finish (deadlock?)")
	}
}

func testSessionCAS(t *testing.T, s Store) {
	closeStore(t, s)
	if _, err := s.LoadSession("c1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LoadSession(missing) = %v, want ErrNotFound", err)
	}
	// Creating needs Revision 0.
	if err := s.SaveSession(&Session{ClientID: "c1", Revision: 7}); !errors.Is(err, ErrRevisionMismatch) {
		t.Fatalf("create with Revision 7 = %v, want ErrRevisionMismatch", err)
	}
	s1 := &Session{
		ClientID:       "c1",
		Version:        packets.V5,
		ExpiryInterval: 0xFFFFFFFF,
		DisconnectedAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
		Subscriptions: []Subscription{
			{Filter: "a/+", QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2, SubscriptionID: 9},
			{Filter: "$share/g/b/#", QoS: 2},
		},
		Will:   &Message{Topic: "will/c1", Payload: []byte("gone"), QoS: 1, Retain: true, Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		WillAt: time.Date(2026, 1, 2, 3, 5, 0, 0, time.UTC),
	}
	must(t, s.SaveSession(s1))
	if s1.Revision == 0 {
		t.Fatal("SaveSession did not set a revision")
	}
	got, err := s.LoadSession("c1")
	must(t, err)
	if !got.DisconnectedAt.Equal(s1.DisconnectedAt) || !got.WillAt.Equal(s1.WillAt) || !got.Will.Created.Equal(s1.Will.Created) {
		t.Fatalf("session times changed: %v %v %v", got.DisconnectedAt, got.WillAt, got.Will.Created)
	}
	got.DisconnectedAt, got.WillAt, got.Will.Created = s1.DisconnectedAt, s1.WillAt, s1.Will.Created
	if !reflect.DeepEqual(got, s1) {
		t.Fatalf("LoadSession:\n got %#v\nwant %#v", got, s1)
	}
	// A second create (Revision 0) of an existing record fails.
	if err := s.SaveSession(&Session{ClientID: "c1"}); !errors.Is(err, ErrRevisionMismatch) {
		t.Fatalf("second create = %v, want ErrRevisionMismatch", err)
	}
	// Two owners read revision r; the first write wins, the stale one fails.
	a, err := s.LoadSession("c1")
	must(t, err)
	b, err := s.LoadSession("c1")
	must(t, err)
	old := a.Revision
	a.ExpiryInterval = 60
	must(t, s.SaveSession(a))
	if a.Revision == old {
		t.Fatal("revision did not change on save")
	}
	b.ExpiryInterval = 120
	if err := s.SaveSession(b); !errors.Is(err, ErrRevisionMismatch) {
		t.Fatalf("stale save = %v, want ErrRevisionMismatch", err)
	}
	if b.Revision != old {
		t.Fatalf("failed save changed the caller's Revision to %d", b.Revision)
	}
	cur, err := s.LoadSession("c1")
	must(t, err)
	if cur.ExpiryInterval != 60 || cur.Revision != a.Revision {
		t.Fatalf("after stale save: expiry %d rev %d, want 60 rev %d", cur.ExpiryInterval, cur.Revision, a.Revision)
	}
	// Delete with a stale revision fails; with the current one it works.
	if err := s.DeleteSession("c1", old); !errors.Is(err, ErrRevisionMismatch) {
		t.Fatalf("DeleteSession(stale) = %v, want ErrRevisionMismatch", err)
	}
	must(t, s.DeleteSession("c1", a.Revision))
	if _, err := s.LoadSession("c1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LoadSession after delete = %v, want ErrNotFound", err)
	}
	if err := s.DeleteSession("c1", a.Revision); !errors.Is(err, ErrRevisionMismatch) {
		t.Fatalf("DeleteSession(rev) of a missing record = %v, want ErrRevisionMismatch", err)
	}
	must(t, s.DeleteSession("c1", 0)) // unconditional delete of nothing is fine
	// Re-created record never repeats a revision a stale owner could hold.
	n := &Session{ClientID: "c1"}
	must(t, s.SaveSession(n))
	if n.Revision == old || n.Revision == a.Revision {
		t.Fatalf("re-created session reused revision %d", n.Revision)
	}
	if err := s.SaveSession(a); !errors.Is(err, ErrRevisionMismatch) { // a still holds its old revision
		t.Fatalf("stale owner after re-create = %v, want ErrRevisionMismatch", err)
	}
}

func testDeleteSession(t *testing.T, s Store) {
	closeStore(t, s)
	for _, id := range []string{"c", "c2"} {
		must(t, s.SaveSession(&Session{ClientID: id}))
		must(t, s.Enqueue(id, Pending{Seq: 1, QoS: 1}, Pending{Seq: 2, QoS: 2}))
		must(t, s.AddInbound(id, 10))
	}
	must(t, s.DeleteSession("c", 0))
	if n, err := s.CountPending("c"); err != nil || n != 0 {
		t.Fatalf("CountPending after DeleteSession = %d, %v; want 0", n, err)
	}
	ids, err := s.Inbound("c")
	must(t, err)
	if len(ids) != 0 {
		t.Fatalf("Inbound after DeleteSession = %v", ids)
	}
	// The other session is untouched.
	if n, err := s.CountPending("c2"); err != nil || n != 2 {
		t.Fatalf("CountPending(c2) = %d, %v; want 2", n, err)
	}
	ids, err = s.Inbound("c2")
	must(t, err)
	if !slices.Equal(ids, []uint16{10}) {
		t.Fatalf("Inbound(c2) = %v", ids)
	}
	// Client IDs that are prefixes of each other do not leak into each other.
	must(t, s.Enqueue("ab", Pending{Seq: 5}))
	must(t, s.Enqueue("a", Pending{Seq: 6}))
	must(t, s.AddInbound("ab", 1))
	must(t, s.DeleteSession("a", 0))
	if n, _ := s.CountPending("ab"); n != 1 {
		t.Fatalf("DeleteSession(a) removed ab's pending: %d left", n)
	}
	if ids, _ := s.Inbound("ab"); len(ids) != 1 {
		t.Fatalf("DeleteSession(a) removed ab's inbound: %v", ids)
	}
}

func testSessionsList(t *testing.T, s Store) {
	closeStore(t, s)
	want := []string{"a", "b", "c"}
	for _, id := range []string{"c", "a", "b"} {
		must(t, s.SaveSession(&Session{ClientID: id}))
	}
	var got []string
	must(t, s.Sessions(func(x *Session) bool {
		if x.Revision == 0 {
			t.Errorf("session %s listed without revision", x.ClientID)
		}
		got = append(got, x.ClientID)
		return true
	}))
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("Sessions = %v, want %v", got, want)
	}
	n := 0
	must(t, s.Sessions(func(*Session) bool { n++; return false }))
	if n != 1 {
		t.Fatalf("Sessions did not stop when fn returned false: %d calls", n)
	}
}

func pendingSeqs(t *testing.T, s Store, id string, from uint64) []Pending {
	t.Helper()
	var out []Pending
	must(t, s.ScanPending(id, from, func(p Pending) bool { out = append(out, p); return true }))
	return out
}

func testPending(t *testing.T, s Store) {
	closeStore(t, s)
	if n, err := s.CountPending("c"); err != nil || n != 0 {
		t.Fatalf("CountPending(empty) = %d, %v", n, err)
	}
	// Out of order enqueue comes back in Seq order, 300+ entries (several chunks).
	var entries []Pending
	for i := 300; i >= 1; i-- {
		entries = append(entries, Pending{Seq: uint64(i) * 2, QoS: byte(i % 3), SubscriptionIDs: []uint32{uint32(i)}})
	}
	must(t, s.Enqueue("c", entries[:150]...))
	must(t, s.Enqueue("c", entries[150:]...))
	got := pendingSeqs(t, s, "c", 0)
	if len(got) != 300 {
		t.Fatalf("ScanPending returned %d entries, want 300", len(got))
	}
	for i, p := range got {
		if p.Seq != uint64(i+1)*2 || !slices.Equal(p.SubscriptionIDs, []uint32{uint32(i + 1)}) {
			t.Fatalf("entry %d = %+v", i, p)
		}
	}
	if n, err := s.CountPending("c"); err != nil || n != 300 {
		t.Fatalf("CountPending = %d, %v; want 300", n, err)
	}
	// from is inclusive and may fall between entries.
	if got := pendingSeqs(t, s, "c", 11); len(got) != 295 || got[0].Seq != 12 {
		t.Fatalf("ScanPending(from 11) = %d entries starting %v", len(got), got[0])
	}
	if got := pendingSeqs(t, s, "c", 12); got[0].Seq != 12 {
		t.Fatalf("ScanPending(from 12) starts at %d", got[0].Seq)
	}
	// Update keeps position and changes state.
	up := Pending{Seq: 4, QoS: 2, Retain: true, PacketID: 77, State: PendingSent, SubscriptionIDs: []uint32{1, 2}}
	must(t, s.UpdatePending("c", up))
	first := pendingSeqs(t, s, "c", 4)[0]
	if !reflect.DeepEqual(first, up) {
		t.Fatalf("after UpdatePending: %+v, want %+v", first, up)
	}
	if err := s.UpdatePending("c", Pending{Seq: 5}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("UpdatePending(missing) = %v, want ErrNotFound", err)
	}
	if err := s.UpdatePending("other", Pending{Seq: 4}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("UpdatePending(other client) = %v, want ErrNotFound", err)
	}
	up.State = PendingReleased
	must(t, s.UpdatePending("c", up))
	if p := pendingSeqs(t, s, "c", 4)[0]; p.State != PendingReleased {
		t.Fatalf("State = %d, want PendingReleased", p.State)
	}
	// Enqueue of an existing Seq replaces it rather than duplicating.
	must(t, s.Enqueue("c", Pending{Seq: 2, QoS: 0, PacketID: 5}))
	if n, _ := s.CountPending("c"); n != 300 {
		t.Fatalf("re-enqueue changed count to %d", n)
	}
	// Remove.
	must(t, s.RemovePending("c", 2, 4, 600, 9999))
	got = pendingSeqs(t, s, "c", 0)
	if len(got) != 297 || got[0].Seq != 6 || got[len(got)-1].Seq != 598 {
		t.Fatalf("after RemovePending: %d entries, first %d last %d", len(got), got[0].Seq, got[len(got)-1].Seq)
	}
	if n, _ := s.CountPending("c"); n != 297 {
		t.Fatalf("CountPending after remove = %d, want 297", n)
	}
	// Stopping early.
	n := 0
	must(t, s.ScanPending("c", 0, func(Pending) bool { n++; return n < 2 }))
	if n != 2 {
		t.Fatalf("ScanPending did not stop: %d calls", n)
	}
	// ScanPending's callback may write to the queue.
	must(t, s.ScanPending("c", 0, func(p Pending) bool {
		if err := s.RemovePending("c", p.Seq); err != nil {
			t.Errorf("RemovePending inside ScanPending: %v", err)
			return false
		}
		return true
	}))
	if n, _ := s.CountPending("c"); n != 0 {
		t.Fatalf("draining inside ScanPending left %d entries", n)
	}
}

func testPendingIsolation(t *testing.T, s Store) {
	closeStore(t, s)
	must(t, s.Enqueue("a", Pending{Seq: 1}, Pending{Seq: 3}))
	must(t, s.Enqueue("ab", Pending{Seq: 2}))
	must(t, s.Enqueue("a\x00", Pending{Seq: 4}))
	if got := pendingSeqs(t, s, "a", 0); len(got) != 2 || got[0].Seq != 1 || got[1].Seq != 3 {
		t.Fatalf("ScanPending(a) = %+v", got)
	}
	if n, _ := s.CountPending("ab"); n != 1 {
		t.Fatalf("CountPending(ab) = %d", n)
	}
	if n, _ := s.CountPending(""); n != 0 {
		t.Fatalf("CountPending(\"\") = %d", n)
	}
}

func testInbound(t *testing.T, s Store) {
	closeStore(t, s)
	ids, err := s.Inbound("c")
	must(t, err)
	if len(ids) != 0 {
		t.Fatalf("Inbound(empty) = %v", ids)
	}
	for _, id := range []uint16{300, 1, 65535, 2, 1} {
		must(t, s.AddInbound("c", id))
	}
	must(t, s.AddInbound("d", 5))
	ids, err = s.Inbound("c")
	must(t, err)
	if !slices.Equal(ids, []uint16{1, 2, 300, 65535}) {
		t.Fatalf("Inbound = %v, want [1 2 300 65535]", ids)
	}
	must(t, s.RemoveInbound("c", 2))
	must(t, s.RemoveInbound("c", 4)) // unknown id is fine
	ids, err = s.Inbound("c")
	must(t, err)
	if !slices.Equal(ids, []uint16{1, 300, 65535}) {
		t.Fatalf("Inbound after remove = %v", ids)
	}
	ids, err = s.Inbound("d")
	must(t, err)
	if !slices.Equal(ids, []uint16{5}) {
		t.Fatalf("Inbound(d) = %v", ids)
	}
}

func retainedTopics(t *testing.T, s Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	must(t, s.Retained(func(m *Message) bool { out[m.Topic] = string(m.Payload); return true }))
	return out
}

func testRetained(t *testing.T, s Store) {
	closeStore(t, s)
	if got := retainedTopics(t, s); len(got) != 0 {
		t.Fatalf("Retained(empty) = %v", got)
	}
	must(t, s.SetRetained(msg("a/b", "1")))
	must(t, s.SetRetained(msg("a", "2")))
	must(t, s.SetRetained(msg("a/b/c", "3")))
	must(t, s.SetRetained(msg("a/b", "4"))) // replace
	want := map[string]string{"a/b": "4", "a": "2", "a/b/c": "3"}
	if got := retainedTopics(t, s); !reflect.DeepEqual(got, want) {
		t.Fatalf("Retained = %v, want %v", got, want)
	}
	must(t, s.DeleteRetained("a/b"))
	must(t, s.DeleteRetained("nope"))
	delete(want, "a/b")
	if got := retainedTopics(t, s); !reflect.DeepEqual(got, want) {
		t.Fatalf("Retained after delete = %v, want %v", got, want)
	}
	n := 0
	must(t, s.Retained(func(*Message) bool { n++; return false }))
	if n != 1 {
		t.Fatalf("Retained did not stop: %d calls", n)
	}
	// The retained record keeps the message's fields.
	r := msg("x", "y")
	r.QoS, r.Retain, r.Seq, r.Publisher = 2, true, 42, "pub"
	r.Properties.ContentType = "text/plain"
	must(t, s.SetRetained(r))
	must(t, s.Retained(func(m *Message) bool {
		if m.Topic == "x" && (m.QoS != 2 || !m.Retain || m.Seq != 42 || m.Publisher != "pub" || m.Properties.ContentType != "text/plain" || !m.Created.Equal(r.Created)) {
			t.Errorf("retained x = %+v", m)
		}
		return true
	}))
}

func testCursors(t *testing.T, s Store) {
	closeStore(t, s)
	if c, err := s.Cursor("bridge-a"); err != nil || c != 0 {
		t.Fatalf("Cursor(never set) = %d, %v", c, err)
	}
	must(t, s.SetCursor("bridge-a", 10))
	must(t, s.SetCursor("bridge-b", 1<<40))
	must(t, s.SetCursor("bridge-a", 11))
	if c, err := s.Cursor("bridge-a"); err != nil || c != 11 {
		t.Fatalf("Cursor(a) = %d, %v; want 11", c, err)
	}
	if c, err := s.Cursor("bridge-b"); err != nil || c != 1<<40 {
		t.Fatalf("Cursor(b) = %d, %v", c, err)
	}
}

func testConcurrentAppend(t *testing.T, s Store) {
	closeStore(t, s)
	const workers, per = 8, 50
	var wg sync.WaitGroup
	seqs := make([][]uint64, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				m := msg(fmt.Sprintf("w%d", w), fmt.Sprint(i))
				var err error
				if i%5 == 0 {
					m2 := msg(fmt.Sprintf("w%d", w), fmt.Sprint(i)+"b")
					err = s.Append(context.Background(), m, m2)
					if err == nil && m2.Seq != m.Seq+1 {
						t.Errorf("one Append call split: %d then %d", m.Seq, m2.Seq)
					}
					if err == nil {
						seqs[w] = append(seqs[w], m.Seq, m2.Seq)
					}
				} else {
					err = s.Append(context.Background(), m)
					if err == nil {
						seqs[w] = append(seqs[w], m.Seq)
					}
				}
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				// Durable on return: a reader sees it at once.
				if _, err := s.Get(m.Seq); err != nil {
					t.Errorf("Get(%d) right after Append: %v", m.Seq, err)
				}
			}
		}()
	}
	wg.Wait()
	total := workers * (per + per/5)
	seen := make(map[uint64]bool)
	for w, list := range seqs {
		if !slices.IsSorted(list) {
			t.Fatalf("worker %d saw non-increasing seqs %v", w, list)
		}
		for _, q := range list {
			if seen[q] {
				t.Fatalf("seq %d assigned twice", q)
			}
			seen[q] = true
		}
	}
	if len(seen) != total {
		t.Fatalf("%d seqs assigned, want %d", len(seen), total)
	}
	if h := s.Head(); h != uint64(total) {
		t.Fatalf("Head = %d, want %d (no gaps)", h, total)
	}
	all := scanAll(t, s, 0)
	if len(all) != total {
		t.Fatalf("Scan found %d, want %d", len(all), total)
	}
	for i, m := range all {
		if m.Seq != uint64(i+1) {
			t.Fatalf("Scan[%d].Seq = %d", i, m.Seq)
		}
	}
}

func testClosed(t *testing.T, s Store) {
	must(t, s.Append(context.Background(), msg("a", "b")))
	must(t, s.Close())
	ctx := context.Background()
	check := func(name string, err error) {
		t.Helper()
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	check("Append", s.Append(ctx, msg("a", "b")))
	_, err := s.Get(1)
	check("Get", err)
	check("Scan", s.Scan(0, func(*Message) bool { return true }))
	check("DeleteMessages", s.DeleteMessages(1))
	_, err = s.LoadSession("c")
	check("LoadSession", err)
	check("SaveSession", s.SaveSession(&Session{ClientID: "c"}))
	check("DeleteSession", s.DeleteSession("c", 0))
	check("Sessions", s.Sessions(func(*Session) bool { return true }))
	check("Enqueue", s.Enqueue("c", Pending{Seq: 1}))
	check("UpdatePending", s.UpdatePending("c", Pending{Seq: 1}))
	check("RemovePending", s.RemovePending("c", 1))
	check("ScanPending", s.ScanPending("c", 0, func(Pending) bool { return true }))
	_, err = s.CountPending("c")
	check("CountPending", err)
	check("AddInbound", s.AddInbound("c", 1))
	check("RemoveInbound", s.RemoveInbound("c", 1))
	_, err = s.Inbound("c")
	check("Inbound", err)
	check("SetRetained", s.SetRetained(msg("a", "b")))
	check("DeleteRetained", s.DeleteRetained("a"))
	check("Retained", s.Retained(func(*Message) bool { return true }))
	_, err = s.Cursor("x")
	check("Cursor", err)
	check("SetCursor", s.SetCursor("x", 1))
	if err := s.Close(); err != nil && !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
}
