package mqtt

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/storage"
)

// Shared subscriptions: each message goes to one member (round robin); when
// a member's session ends with messages unacknowledged they go to another
// member.
func TestSharedSubscription(t *testing.T) {
	s := startServer(t, nil)
	m1 := dial(t, s, packets.V5)
	m1.connect("m1", true, nil)
	m1.subscribe(1, packets.Subscription{Filter: "$share/g/sh/#", QoS: 1})
	m2 := dial(t, s, packets.V5)
	m2.connect("m2", true, nil)
	m2.subscribe(1, packets.Subscription{Filter: "$share/g/sh/#", QoS: 1})
	pub := dial(t, s, packets.V5)
	pub.connect("pub", true, nil)
	for i := range 4 {
		pub.publish("sh/x", fmt.Sprint(i), 1, false, uint16(i+1))
	}
	a := []*packets.Publish{m1.recvPublish(false), m1.recvPublish(false)}
	b := []*packets.Publish{m2.recvPublish(true), m2.recvPublish(true)}
	m1.expectNothing(50 * time.Millisecond)
	m2.expectNothing(50 * time.Millisecond)
	if got := payloads(a) + "|" + payloads(b); got != "0,2|1,3" && got != "1,3|0,2" {
		t.Fatalf("split %s", got)
	}
	// m1 leaves without acknowledging: its two messages go to m2.
	_ = m1.conn.Close()
	re := []*packets.Publish{m2.recvPublish(true), m2.recvPublish(true)}
	if payloads(re) != payloads(a) {
		t.Fatalf("re-routed %s, want %s", payloads(re), payloads(a))
	}
	if s.stats.SharedRerouted.Load() != 2 {
		t.Errorf("rerouted %d", s.stats.SharedRerouted.Load())
	}
}

// A 5.0 session with an expiry interval ends when it passes: its
// subscriptions stop receiving and it is gone from the store.
func TestSessionExpiry(t *testing.T) {
	st := storage.NewMemory()
	s := startServer(t, func(o *Options) { o.Store = st })
	c := dial(t, s, packets.V5)
	c.connect("exp", false, func(p *packets.Connect) { p.Properties.SessionExpiry = 1 })
	c.subscribe(1, packets.Subscription{Filter: "e", QoS: 1})
	c.disconnect()
	eventually(t, testTimeout, func() error {
		if n := s.stats.SessionsExpired.Load(); n != 1 {
			return fmt.Errorf("expired %d", n)
		}
		return nil
	})
	if _, err := st.LoadSession("exp"); err == nil {
		t.Error("expired session still stored")
	}
	if s.tree.Count() != 0 {
		t.Errorf("%d subscriptions left in the tree", s.tree.Count())
	}
	c = dial(t, s, packets.V5)
	if ca := c.connect("exp", false, nil); ca.SessionPresent {
		t.Error("session present after expiry")
	}
}

// Durable sessions, their queued messages and retained messages survive a
// restart: on the same memory store, and on a badger store closed and
// reopened from its directory.
func TestRestartKeepsSessions(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		st := storage.NewMemory()
		testRestart(t, st, func() storage.Store { return st })
	})
	t.Run("badger", func(t *testing.T) {
		dir := t.TempDir()
		open := func() storage.Store {
			st, err := storage.OpenBadger(storage.BadgerOptions{Dir: dir, Durability: storage.DurabilityNone})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			return st
		}
		st := open()
		testRestart(t, st, func() storage.Store {
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			return open()
		})
	})
}

func testRestart(t *testing.T, st storage.Store, reopen func() storage.Store) {
	s1 := startServer(t, func(o *Options) { o.Store = st })
	c := dial(t, s1, packets.V311)
	c.connect("keeper", false, nil)
	c.subscribe(1, packets.Subscription{Filter: "k/#", QoS: 1})
	c.disconnect()
	pub := dial(t, s1, packets.V311)
	pub.connect("pub", true, nil)
	pub.publish("k/1", "kept", 1, false, 1)
	pub.publish("k/r", "retained", 1, true, 2)
	eventually(t, testTimeout, func() error {
		if n, _ := st.CountPending("keeper"); n != 2 {
			return fmt.Errorf("%d pending", n)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := s1.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	st = reopen()

	s2 := startServer(t, func(o *Options) { o.Store = st })
	c = dial(t, s2, packets.V311)
	if ca := c.connect("keeper", false, nil); !ca.SessionPresent {
		t.Fatal("session lost in restart")
	}
	got := []*packets.Publish{c.recvPublish(true), c.recvPublish(true)}
	if payloads(got) != "kept,retained" {
		t.Fatalf("after restart got %s", payloads(got))
	}
	pub = dial(t, s2, packets.V311)
	pub.connect("pub", true, nil)
	pub.publish("k/2", "live", 1, false, 1)
	if p := c.recvPublish(true); string(p.Payload) != "live" {
		t.Fatalf("subscription lost: %q", p.Payload)
	}
	s3 := dial(t, s2, packets.V311)
	s3.connect("s3", true, nil)
	s3.subscribe(1, packets.Subscription{Filter: "k/r", QoS: 1})
	if p := s3.recvPublish(true); string(p.Payload) != "retained" {
		t.Fatalf("retained lost: %q", p.Payload)
	}
}

// Slow consumer: a client that does not read has QoS 0 dropped (counted)
// beyond MaxOutboundBytes, and is disconnected once a write blocks longer
// than WriteTimeout; publishers are never blocked.
func TestSlowConsumer(t *testing.T) {
	s := startServer(t, func(o *Options) {
		o.MaxOutboundBytes = 64 << 10
		o.WriteTimeout = 300 * time.Millisecond
	})
	slow := dial(t, s, packets.V311)
	slow.connect("slow", true, nil)
	slow.subscribe(1, packets.Subscription{Filter: "flood"})
	pub := dial(t, s, packets.V311)
	pub.connect("pub", true, nil)
	payload := string(make([]byte, 16<<10))
	eventually(t, 10*time.Second, func() error {
		for range 64 {
			pub.publish("flood", payload, 0, false, 0)
		}
		pub.send(&packets.Pingreq{}) // the publisher is still served
		recvAs[*packets.Pingresp](pub)
		if s.stats.DroppedSlowQoS0.Load() == 0 || s.stats.SlowConsumers.Load() == 0 {
			return fmt.Errorf("dropped %d, slow consumers %d", s.stats.DroppedSlowQoS0.Load(), s.stats.SlowConsumers.Load())
		}
		return nil
	})
}

// $SYS topics are published every SysInterval (retained, so a late
// subscriber gets the current values).
func TestSysTopics(t *testing.T) {
	s := startServer(t, func(o *Options) { o.SysInterval = 50 * time.Millisecond })
	c := dial(t, s, packets.V311)
	c.connect("sys", true, nil)
	c.subscribe(1, packets.Subscription{Filter: "$SYS/broker/version"})
	p := c.recvPublish(true)
	if p.Topic != "$SYS/broker/version" || len(p.Payload) == 0 {
		t.Fatalf("got %+v", p)
	}
	c.subscribe(2, packets.Subscription{Filter: "$SYS/broker/clients/connected"})
	eventually(t, testTimeout, func() error {
		p := c.recvPublish(true)
		if p.Topic != "$SYS/broker/clients/connected" || string(p.Payload) != "1" {
			return fmt.Errorf("got %s = %q", p.Topic, p.Payload)
		}
		return nil
	})
}

// Failed deliveries are dead-lettered on $dlq/broker/{topic} with the
// reason in user properties: a negative PUBACK and a message too large for
// the client.
func TestDeadLetters(t *testing.T) {
	s := startServer(t, nil)
	dlq := dial(t, s, packets.V5)
	dlq.connect("dlq-reader", true, nil)
	dlq.subscribe(1, packets.Subscription{Filter: "$dlq/#", QoS: 1})
	sub := dial(t, s, packets.V5)
	sub.connect("picky", true, func(p *packets.Connect) { p.Properties.MaximumPacketSize = 100 })
	sub.subscribe(1, packets.Subscription{Filter: "dl/#", QoS: 1})
	pub := dial(t, s, packets.V5)
	pub.connect("pub", true, nil)

	pub.publish("dl/nack", "refused", 1, false, 1)
	p := sub.recvPublish(false)
	sub.send(&packets.Puback{PacketID: p.PacketID, ReasonCode: packets.UnspecifiedError})
	pub.publish("dl/big", string(make([]byte, 300)), 1, false, 2)

	reasons := map[string]string{}
	for range 2 {
		d := dlq.recvPublish(true)
		props := map[string]string{}
		for _, u := range d.Properties.User {
			props[u.Key] = u.Value
		}
		if d.Topic != "$dlq/broker/"+props["dlq-original-topic"] || props["dlq-client"] != "picky" {
			t.Fatalf("dead letter %s %v", d.Topic, props)
		}
		reasons[props["dlq-original-topic"]] = props["dlq-reason"]
	}
	if reasons["dl/nack"] != "nack" || reasons["dl/big"] != "too-large" {
		t.Fatalf("reasons %v", reasons)
	}
	eventually(t, testTimeout, func() error {
		if n := s.stats.DeadLettered.Load(); n != 2 {
			return fmt.Errorf("dead-lettered %d", n)
		}
		return nil
	})
}
