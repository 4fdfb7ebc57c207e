package mqtt

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/storage"
)

// delayedSlack bounds how late a delayed message may arrive after its due
// time: generous, because the race detector on a shared 2-core machine
// slows everything down. Arriving early is never allowed.
const delayedSlack = 3 * time.Second

func delayedCount(t *testing.T, st storage.Store) int {
	t.Helper()
	n := 0
	if err := st.Delayed(func(uint64, time.Time, *storage.Message) bool { n++; return true }); err != nil {
		t.Fatalf("Delayed: %v", err)
	}
	return n
}

// checkArrival fails unless at lies in [sent+delay, sent+delay+slack].
// sent is taken before the PUBLISH was written, so the server's due time
// (its receipt time + delay) is never earlier than sent+delay.
func checkArrival(t *testing.T, what string, sent time.Time, delay time.Duration, at time.Time) {
	t.Helper()
	if at.Before(sent.Add(delay)) {
		t.Fatalf("%s arrived %v after sending, before its delay of %v", what, at.Sub(sent), delay)
	}
	if at.After(sent.Add(delay + delayedSlack)) {
		t.Fatalf("%s arrived %v after sending, more than %v after its delay of %v", what, at.Sub(sent), delayedSlack, delay)
	}
}

// A delayed PUBLISH is acknowledged at once (QoS 1: PUBACK, QoS 2: the
// PUBREC/PUBREL/PUBCOMP flow), is not delivered before its time, arrives
// on the target topic with its QoS, payload and properties soon after,
// and is never visible under $delayed/ itself.
func TestDelayedPublishDelivered(t *testing.T) {
	t.Parallel()
	for _, v := range []packets.Version{packets.V311, packets.V5} {
		for _, qos := range []byte{0, 1, 2} {
			t.Run(fmt.Sprintf("%v/qos%d", v, qos), func(t *testing.T) {
				t.Parallel()
				s := startServer(t, nil)
				sub := dial(t, s, v)
				sub.connect("sub", true, nil)
				sub.subscribe(1, packets.Subscription{Filter: "dl/#", QoS: 2}, packets.Subscription{Filter: "$delayed/#", QoS: 2})
				pub := dial(t, s, v)
				pub.connect("pub", true, nil)

				sent := time.Now()
				pp := &packets.Publish{Topic: "$delayed/1/dl/a", Payload: []byte("later"), QoS: qos, PacketID: 3}
				if v == packets.V5 {
					pp.Properties.ContentType = "text/plain"
					pp.Properties.User = []packets.UserProperty{{Key: "k", Value: "v"}}
				}
				pub.send(pp)
				switch qos {
				case 1:
					if a := recvAs[*packets.Puback](pub); a.PacketID != 3 || a.ReasonCode != packets.Success {
						t.Fatalf("PUBACK %d %v, want 3 Success", a.PacketID, a.ReasonCode)
					}
				case 2:
					if a := recvAs[*packets.Pubrec](pub); a.PacketID != 3 || a.ReasonCode != packets.Success {
						t.Fatalf("PUBREC %d %v, want 3 Success", a.PacketID, a.ReasonCode)
					}
					pub.send(&packets.Pubrel{PacketID: 3})
					if a := recvAs[*packets.Pubcomp](pub); a.PacketID != 3 {
						t.Fatalf("PUBCOMP id %d, want 3", a.PacketID)
					}
				}
				p := sub.recvPublish(true)
				checkArrival(t, "delayed message", sent, time.Second, time.Now())
				if p.Topic != "dl/a" || string(p.Payload) != "later" || p.QoS != qos || p.Retain {
					t.Fatalf("got %q %q QoS %d retain %v; want dl/a later QoS %d no retain", p.Topic, p.Payload, p.QoS, p.Retain, qos)
				}
				if v == packets.V5 && (p.Properties.ContentType != "text/plain" || len(p.Properties.User) != 1 || p.Properties.User[0].Value != "v") {
					t.Fatalf("properties lost: %+v", p.Properties)
				}
				sub.expectNothing(300 * time.Millisecond) // once, and nothing under $delayed/
				if n := s.Stats().DelayedStored.Load(); n != 1 {
					t.Errorf("DelayedStored = %d, want 1", n)
				}
				if n := s.Stats().DelayedPublished.Load(); n != 1 {
					t.Errorf("DelayedPublished = %d, want 1", n)
				}
				eventually(t, testTimeout, func() error {
					if n := delayedCount(t, s.store); n != 0 {
						return fmt.Errorf("%d delayed entries left in the store", n)
					}
					return nil
				})
			})
		}
	}
}

// Several delayed messages come out in due order, not arrival order, and
// a delay of 0 is published at once.
func TestDelayedOrder(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	sub := dial(t, s, packets.V5)
	sub.connect("sub", true, nil)
	sub.subscribe(1, packets.Subscription{Filter: "ord/#", QoS: 1})
	pub := dial(t, s, packets.V5)
	pub.connect("pub", true, nil)
	pub.publish("$delayed/2/ord/b", "b", 1, false, 1)
	pub.publish("$delayed/1/ord/a", "a", 1, false, 2)
	pub.publish("$delayed/0/ord/now", "now", 1, false, 3)
	var got []*packets.Publish
	for range 3 {
		got = append(got, sub.recvPublish(true))
	}
	if ps := payloads(got); ps != "now,a,b" {
		t.Fatalf("order %s, want now,a,b", ps)
	}
}

// The RETAIN flag is honoured at the due time, not before: the target
// topic has no retained message until then, and keeps it afterwards.
func TestDelayedRetained(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	pub := dial(t, s, packets.V5)
	pub.connect("pub", true, nil)
	sent := time.Now()
	pub.publish("$delayed/1/ret/x", "kept", 1, true, 1)

	early := dial(t, s, packets.V5)
	early.connect("early", true, nil)
	early.subscribe(1, packets.Subscription{Filter: "ret/x", QoS: 1})
	p := early.recvPublish(true) // the live delivery at the due time, not a retained one
	checkArrival(t, "delayed retained message", sent, time.Second, time.Now())
	if p.Retain || string(p.Payload) != "kept" {
		t.Fatalf("live delivery: retain %v payload %q; want no RETAIN (not retain-as-published), kept", p.Retain, p.Payload)
	}
	late := dial(t, s, packets.V5)
	late.connect("late", true, nil)
	late.subscribe(1, packets.Subscription{Filter: "ret/x", QoS: 1})
	if r := late.recvPublish(true); !r.Retain || string(r.Payload) != "kept" {
		t.Fatalf("retained delivery: retain %v payload %q; want RETAIN kept", r.Retain, r.Payload)
	}
}

// Malformed $delayed topics are refused with 0x90 Topic Name invalid
// (5.0) or acknowledged and dropped (3.1.1), counted, and never delivered.
func TestDelayedInvalid(t *testing.T) {
	t.Parallel()
	bad := []string{
		"$delayed/x/t",              // not a number
		"$delayed/-1/t",             // sign
		"$delayed/ 1/t",             // space
		"$delayed/1.5/t",            // not an integer
		"$delayed/4294968/t",        // above the maximum
		"$delayed/99999999999999/t", // far above, too long
		"$delayed//t",               // empty seconds
		"$delayed/5",                // no topic
		"$delayed/5/",               // empty topic
		"$delayed/1/$SYS/x",         // reserved target
		"$delayed/1/$dlq/x",         // reserved target
		"$delayed/1/$delayed/1/x",   // nested
	}
	for _, v := range []packets.Version{packets.V311, packets.V5} {
		t.Run(v.String(), func(t *testing.T) {
			s := startServer(t, nil)
			sub := dial(t, s, v)
			sub.connect("sub", true, nil)
			sub.subscribe(1, packets.Subscription{Filter: "#", QoS: 1}, packets.Subscription{Filter: "$delayed/#", QoS: 1},
				packets.Subscription{Filter: "$SYS/#", QoS: 1}, packets.Subscription{Filter: "$dlq/#", QoS: 1})
			pub := dial(t, s, v)
			pub.connect("pub", true, nil)
			want := packets.TopicNameInvalid
			if v != packets.V5 {
				want = packets.Success // 3.1.1 PUBACK carries no reason code
			}
			for i, topic := range bad {
				id := uint16(i + 1)
				pub.send(&packets.Publish{Topic: topic, Payload: []byte("x"), QoS: 1, PacketID: id})
				if a := recvAs[*packets.Puback](pub); a.PacketID != id || a.ReasonCode != want {
					t.Fatalf("%q: PUBACK %d %v, want %d %v", topic, a.PacketID, a.ReasonCode, id, want)
				}
			}
			// QoS 2 and QoS 0 too.
			pub.send(&packets.Publish{Topic: "$delayed/x/t", Payload: []byte("x"), QoS: 2, PacketID: 100})
			if a := recvAs[*packets.Pubrec](pub); a.PacketID != 100 || a.ReasonCode != want {
				t.Fatalf("QoS 2: PUBREC %d %v, want 100 %v", a.PacketID, a.ReasonCode, want)
			}
			if v == packets.V5 {
				// Refused: no QoS 2 state kept, so PUBREL finds nothing.
				pub.send(&packets.Pubrel{PacketID: 100})
				if c := recvAs[*packets.Pubcomp](pub); c.ReasonCode != packets.PacketIdentifierNotFound {
					t.Fatalf("PUBCOMP after refused PUBREC: %v, want 0x92", c.ReasonCode)
				}
			} else {
				pub.send(&packets.Pubrel{PacketID: 100})
				recvAs[*packets.Pubcomp](pub)
			}
			pub.send(&packets.Publish{Topic: "$delayed/x/t", Payload: []byte("x")})
			wantDropped := uint64(len(bad) + 2)
			eventually(t, testTimeout, func() error {
				if n := s.Stats().DroppedDelayedInvalid.Load(); n != wantDropped {
					return fmt.Errorf("DroppedDelayedInvalid = %d, want %d", n, wantDropped)
				}
				return nil
			})
			if n := delayedCount(t, s.store); n != 0 {
				t.Fatalf("%d refused messages stored", n)
			}
			// The largest delay is accepted.
			pub.publish("$delayed/4294967/far", "x", 1, false, 200)
			if n := delayedCount(t, s.store); n != 1 {
				t.Fatalf("maximum delay: %d entries stored, want 1", n)
			}
			sub.expectNothing(300 * time.Millisecond)
		})
	}
}

// A delayed message whose Message Expiry passes before its due time is
// not published; it is counted and dead-lettered with reason "expired".
func TestDelayedExpiredBeforeDue(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	sub := dial(t, s, packets.V5)
	sub.connect("sub", true, nil)
	sub.subscribe(1, packets.Subscription{Filter: "exp/#", QoS: 1}, packets.Subscription{Filter: "$dlq/#", QoS: 1})
	pub := dial(t, s, packets.V5)
	pub.connect("pub", true, nil)
	pp := &packets.Publish{Topic: "$delayed/2/exp/a", Payload: []byte("stale"), QoS: 1, PacketID: 1}
	pp.Properties.MessageExpiry = 1
	pp.Properties.Mark(packets.PropMessageExpiry)
	pub.send(pp)
	if a := recvAs[*packets.Puback](pub); a.ReasonCode != packets.Success {
		t.Fatalf("PUBACK %v", a.ReasonCode)
	}
	p := sub.recvPublish(true)
	if p.Topic != "$dlq/broker/exp/a" {
		t.Fatalf("got %q, want the dead letter $dlq/broker/exp/a", p.Topic)
	}
	reason := ""
	for _, u := range p.Properties.User {
		if u.Key == "dlq-reason" {
			reason = u.Value
		}
	}
	if reason != "expired" || string(p.Payload) != "stale" {
		t.Fatalf("dead letter reason %q payload %q, want expired stale", reason, p.Payload)
	}
	if n := s.Stats().DelayedExpired.Load(); n != 1 {
		t.Fatalf("DelayedExpired = %d, want 1", n)
	}
	if n := s.Stats().DelayedPublished.Load(); n != 0 {
		t.Fatalf("DelayedPublished = %d, want 0", n)
	}
	sub.expectNothing(300 * time.Millisecond)
}

// A Message Expiry longer than the delay still counts from the original
// PUBLISH: the subscriber sees what is left of it.
func TestDelayedExpiryCountsFromPublish(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	sub := dial(t, s, packets.V5)
	sub.connect("sub", true, nil)
	sub.subscribe(1, packets.Subscription{Filter: "exp2/#", QoS: 1})
	pub := dial(t, s, packets.V5)
	pub.connect("pub", true, nil)
	pp := &packets.Publish{Topic: "$delayed/2/exp2/a", Payload: []byte("x"), QoS: 1, PacketID: 1}
	pp.Properties.MessageExpiry = 100
	pp.Properties.Mark(packets.PropMessageExpiry)
	pub.send(pp)
	recvAs[*packets.Puback](pub)
	p := sub.recvPublish(true)
	if !p.Properties.Has(packets.PropMessageExpiry) || p.Properties.MessageExpiry > 98 || p.Properties.MessageExpiry == 0 {
		t.Fatalf("Message Expiry %d (present %v), want at most 98 after a 2 s delay",
			p.Properties.MessageExpiry, p.Properties.Has(packets.PropMessageExpiry))
	}
}

func shutdownNow(t *testing.T, s *Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// Delayed messages survive a restart: two servers share one store; a
// message stored by the first is published by the second at its time,
// once. A message the first already published is not published again by
// the second.
func TestDelayedSurvivesRestart(t *testing.T) {
	t.Parallel()
	st := storage.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	a := startServer(t, func(o *Options) { o.Store = st })
	sub := dial(t, a, packets.V5)
	sub.connect("sub", true, nil)
	sub.subscribe(1, packets.Subscription{Filter: "rs/#", QoS: 1})
	pub := dial(t, a, packets.V5)
	pub.connect("pub", true, nil)
	pub.publish("$delayed/0/rs/done", "done", 1, false, 1) // published by A
	if p := sub.recvPublish(true); string(p.Payload) != "done" {
		t.Fatalf("got %q, want done", p.Payload)
	}
	sent := time.Now()
	pub.publish("$delayed/2/rs/later", "later", 2, false, 2)
	if n := delayedCount(t, st); n != 1 {
		t.Fatalf("%d delayed entries before restart, want 1", n)
	}
	shutdownNow(t, a)
	if n := a.Stats().DelayedPublished.Load(); n != 1 {
		t.Fatalf("A published %d delayed messages, want 1", n)
	}

	b := startServer(t, func(o *Options) { o.Store = st })
	sub2 := dial(t, b, packets.V5)
	sub2.connect("sub2", true, nil)
	sub2.subscribe(1, packets.Subscription{Filter: "rs/#", QoS: 2})
	p := sub2.recvPublish(true)
	checkArrival(t, "delayed message after restart", sent, 2*time.Second, time.Now())
	if p.Topic != "rs/later" || string(p.Payload) != "later" || p.QoS != 2 {
		t.Fatalf("got %q %q QoS %d, want rs/later later QoS 2", p.Topic, p.Payload, p.QoS)
	}
	sub2.expectNothing(500 * time.Millisecond) // not "done" again, not "later" twice
	if n := b.Stats().DelayedPublished.Load(); n != 1 {
		t.Fatalf("B published %d delayed messages, want 1", n)
	}
	if n := delayedCount(t, st); n != 0 {
		t.Fatalf("%d delayed entries left", n)
	}
}

// A message that fell due while the broker was down is published when it
// starts again, to the durable session restored from the store.
func TestDelayedDueDuringDowntime(t *testing.T) {
	t.Parallel()
	st := storage.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	persist := func(p *packets.Connect) { p.Properties.SessionExpiry = 300 }
	a := startServer(t, func(o *Options) { o.Store = st })
	sub := dial(t, a, packets.V5)
	sub.connect("dsub", false, persist)
	sub.subscribe(1, packets.Subscription{Filter: "down/#", QoS: 1})
	sub.disconnect()
	pub := dial(t, a, packets.V5)
	pub.connect("pub", true, nil)
	sent := time.Now()
	pub.publish("$delayed/1/down/x", "x", 1, false, 1)
	shutdownNow(t, a)
	if n := a.Stats().DelayedPublished.Load(); n != 0 {
		t.Fatalf("A published %d delayed messages before its due time", n)
	}
	// Wait out the due time with the broker down (wall clock, not
	// synchronisation: nothing runs that the test waits for).
	eventually(t, testTimeout, func() error {
		if d := time.Until(sent.Add(time.Second)); d > 0 {
			return fmt.Errorf("due in %v", d)
		}
		return nil
	})
	b := startServer(t, func(o *Options) { o.Store = st })
	eventually(t, testTimeout, func() error {
		if n := b.Stats().DelayedPublished.Load(); n != 1 {
			return fmt.Errorf("B published %d delayed messages, want 1", n)
		}
		return nil
	})
	sub2 := dial(t, b, packets.V5)
	if ca := sub2.connect("dsub", false, persist); !ca.SessionPresent {
		t.Fatal("session not restored")
	}
	if p := sub2.recvPublish(true); p.Topic != "down/x" || string(p.Payload) != "x" {
		t.Fatalf("got %q %q, want down/x x", p.Topic, p.Payload)
	}
	sub2.expectNothing(300 * time.Millisecond)
}

// The same across a restart of the badger store: the data dir is closed
// and opened again between the two servers.
func TestDelayedSurvivesBadgerRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	open := func() storage.Store {
		t.Helper()
		o := storage.DefaultBadgerOptions(dir)
		o.Durability = storage.DurabilityNone // kill -9 safety is the storage suite's business
		st, err := storage.OpenBadger(o)
		if err != nil {
			t.Fatalf("OpenBadger: %v", err)
		}
		// Registered before the server's cleanup, so it runs after the
		// server shut down; closing twice is harmless.
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
	st := open()
	a := startServer(t, func(o *Options) { o.Store = st })
	pub := dial(t, a, packets.V5)
	pub.connect("pub", true, nil)
	sent := time.Now()
	pp := &packets.Publish{Topic: "$delayed/2/bg/x", Payload: []byte("durable"), QoS: 1, Retain: true, PacketID: 1}
	pp.Properties.User = []packets.UserProperty{{Key: "k", Value: "v"}}
	pub.send(pp)
	if ack := recvAs[*packets.Puback](pub); ack.ReasonCode != packets.Success {
		t.Fatalf("PUBACK %v", ack.ReasonCode)
	}
	shutdownNow(t, a)
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	st = open()
	b := startServer(t, func(o *Options) { o.Store = st })
	sub := dial(t, b, packets.V5)
	sub.connect("sub", true, nil)
	sub.subscribe(1, packets.Subscription{Filter: "bg/#", QoS: 1, RetainAsPublished: true})
	p := sub.recvPublish(true)
	checkArrival(t, "delayed message after badger restart", sent, 2*time.Second, time.Now())
	if p.Topic != "bg/x" || string(p.Payload) != "durable" || !p.Retain || len(p.Properties.User) != 1 {
		t.Fatalf("got %q %q retain %v props %+v", p.Topic, p.Payload, p.Retain, p.Properties)
	}
	sub.expectNothing(300 * time.Millisecond)
	if n := delayedCount(t, st); n != 0 {
		t.Fatalf("%d delayed entries left", n)
	}
}
