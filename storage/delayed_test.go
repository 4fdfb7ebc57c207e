package storage

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
)

type delayedEntry struct {
	id  uint64
	due time.Time
	m   *Message
}

func delayedAll(t *testing.T, s Store) []delayedEntry {
	t.Helper()
	var out []delayedEntry
	must(t, s.Delayed(func(id uint64, due time.Time, m *Message) bool {
		out = append(out, delayedEntry{id, due, m})
		return true
	}))
	return out
}

func delayedTopics(es []delayedEntry) string {
	var b bytes.Buffer
	for i, e := range es {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(e.m.Topic)
	}
	return b.String()
}

// Entries come back in due order whatever order they were added in (ties
// in id order), with every field kept, and RemoveDelayed takes out exactly
// the entry named.
func testDelayed(t *testing.T, s Store) {
	closeStore(t, s)
	base := time.Unix(1800000000, 0)
	full := &Message{
		Topic: "d/full", Payload: []byte("payload"), QoS: 2, Retain: true,
		Publisher: "pub", Created: time.Unix(1799999990, 123).UTC(),
	}
	full.Properties.MessageExpiry = 60
	full.Properties.Mark(packets.PropMessageExpiry)
	full.Properties.ContentType = "text/plain"
	full.Properties.User = []packets.UserProperty{{Key: "k", Value: "v"}}

	add := func(due time.Time, m *Message) uint64 {
		t.Helper()
		id, err := s.AddDelayed(due, m)
		must(t, err)
		if id == 0 {
			t.Fatal("AddDelayed returned id 0")
		}
		return id
	}
	idC := add(base.Add(3*time.Second), msg("d/c", "c"))
	idA := add(base.Add(1*time.Second), full)
	idB1 := add(base.Add(2*time.Second), msg("d/b1", "b1"))
	idB2 := add(base.Add(2*time.Second), msg("d/b2", "b2")) // same due: id order
	if idA == idC || idB1 == idB2 || idB2 <= idB1 {
		t.Fatalf("ids %d %d %d %d: not distinct and increasing", idC, idA, idB1, idB2)
	}

	got := delayedAll(t, s)
	if topics := delayedTopics(got); topics != "d/full,d/b1,d/b2,d/c" {
		t.Fatalf("Delayed order = %s, want d/full,d/b1,d/b2,d/c", topics)
	}
	a := got[0]
	if a.id != idA || !a.due.Equal(base.Add(time.Second)) {
		t.Fatalf("first entry id %d due %v, want %d %v", a.id, a.due, idA, base.Add(time.Second))
	}
	m := a.m
	if string(m.Payload) != "payload" || m.QoS != 2 || !m.Retain || m.Publisher != "pub" || !m.Created.Equal(full.Created) ||
		!m.Properties.Has(packets.PropMessageExpiry) || m.Properties.MessageExpiry != 60 || m.Properties.ContentType != "text/plain" ||
		len(m.Properties.User) != 1 || m.Properties.User[0] != (packets.UserProperty{Key: "k", Value: "v"}) {
		t.Fatalf("round trip lost fields: %+v", m)
	}

	// Stopping early.
	n := 0
	must(t, s.Delayed(func(uint64, time.Time, *Message) bool { n++; return n < 2 }))
	if n != 2 {
		t.Fatalf("Delayed went on after fn returned false: %d calls", n)
	}

	must(t, s.RemoveDelayed(idB1))
	must(t, s.RemoveDelayed(idB1))   // twice: ignored
	must(t, s.RemoveDelayed(999999)) // unknown: ignored
	if topics := delayedTopics(delayedAll(t, s)); topics != "d/full,d/b2,d/c" {
		t.Fatalf("after RemoveDelayed: %s, want d/full,d/b2,d/c", topics)
	}
	// The callback may call the store (no lock held): remove everything.
	must(t, s.Delayed(func(id uint64, _ time.Time, _ *Message) bool {
		must(t, s.RemoveDelayed(id))
		return true
	}))
	if left := delayedAll(t, s); len(left) != 0 {
		t.Fatalf("%d entries left after removing all", len(left))
	}
	// Delayed messages are not on the log.
	if got := scanAll(t, s, 0); len(got) != 0 {
		t.Fatalf("delayed messages appeared on the log: %d", len(got))
	}
}

// Ids are never reused after removal; the store keeps its own copy.
func testDelayedCopies(t *testing.T, s Store) {
	closeStore(t, s)
	due := time.Unix(1800000000, 0)
	m := msg("d/x", "orig")
	id1, err := s.AddDelayed(due, m)
	must(t, err)
	m.Payload[0] = 'X'
	m.Topic = "changed"
	got := delayedAll(t, s)
	if len(got) != 1 || got[0].m.Topic != "d/x" || string(got[0].m.Payload) != "orig" {
		t.Fatalf("stored entry changed with the caller's message: %+v", got)
	}
	got[0].m.Payload[0] = 'Y'
	if again := delayedAll(t, s); string(again[0].m.Payload) != "orig" {
		t.Fatalf("mutating a returned message changed the store: %q", again[0].m.Payload)
	}
	must(t, s.RemoveDelayed(id1))
	id2, err := s.AddDelayed(due, msg("d/y", "y"))
	must(t, err)
	if id2 <= id1 {
		t.Fatalf("id after removal = %d, not above %d", id2, id1)
	}
}

func testDelayedClosed(t *testing.T, s Store) {
	id, err := s.AddDelayed(time.Now(), msg("d/a", "a"))
	must(t, err)
	must(t, s.Close())
	if _, err := s.AddDelayed(time.Now(), msg("d/a", "a")); !errors.Is(err, ErrClosed) {
		t.Errorf("AddDelayed after Close = %v, want ErrClosed", err)
	}
	if err := s.RemoveDelayed(id); !errors.Is(err, ErrClosed) {
		t.Errorf("RemoveDelayed after Close = %v, want ErrClosed", err)
	}
	if err := s.Delayed(func(uint64, time.Time, *Message) bool { return true }); !errors.Is(err, ErrClosed) {
		t.Errorf("Delayed after Close = %v, want ErrClosed", err)
	}
}

// Delayed messages, their order and the id counter survive a reopen of
// the badger store; a removal before the reopen stays removed.
func TestBadgerDelayedReopen(t *testing.T) {
	dir := t.TempDir()
	s := openBadgerT(t, dir, DurabilitySync)
	base := time.Unix(1800000000, 0)
	var ids []uint64
	for i := 5; i > 0; i-- {
		id, err := s.AddDelayed(base.Add(time.Duration(i)*time.Second), msg(fmt.Sprintf("d/%d", i), "p"))
		must(t, err)
		ids = append(ids, id)
	}
	must(t, s.RemoveDelayed(ids[0])) // d/5
	must(t, s.Close())

	s = openBadgerT(t, dir, DurabilityBatch)
	closeStore(t, s)
	got := delayedAll(t, s)
	if topics := delayedTopics(got); topics != "d/1,d/2,d/3,d/4" {
		t.Fatalf("after reopen: %s, want d/1,d/2,d/3,d/4", topics)
	}
	for i, e := range got {
		if want := base.Add(time.Duration(i+1) * time.Second); !e.due.Equal(want) {
			t.Fatalf("d/%d due %v after reopen, want %v", i+1, e.due, want)
		}
	}
	id, err := s.AddDelayed(base, msg("d/0", "p"))
	must(t, err)
	for _, old := range ids {
		if id <= old {
			t.Fatalf("id after reopen = %d, not above %d", id, old)
		}
	}
	// The t/ index survived too: removal by id works after the reopen.
	must(t, s.RemoveDelayed(got[0].id))
	if topics := delayedTopics(delayedAll(t, s)); topics != "d/0,d/2,d/3,d/4" {
		t.Fatalf("after remove: %s", topics)
	}
}
