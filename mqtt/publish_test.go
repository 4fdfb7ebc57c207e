package mqtt

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
)

// Delivered QoS is min(published, granted) for every combination, and the
// packet flows complete.
func TestPublishQoSMatrix(t *testing.T) {
	s := startServer(t, nil)
	for _, v := range []packets.Version{packets.V311, packets.V5} {
		for sq := byte(0); sq <= 2; sq++ {
			for pq := byte(0); pq <= 2; pq++ {
				name := fmt.Sprintf("%v/sub%d/pub%d", v, sq, pq)
				sub := dial(t, s, v)
				sub.connect("sub-"+name, true, nil)
				sa := sub.subscribe(1, packets.Subscription{Filter: "m/" + name, QoS: sq})
				if sa.ReasonCodes[0] != packets.ReasonCode(sq) {
					t.Fatalf("%s: granted %v", name, sa.ReasonCodes[0])
				}
				pub := dial(t, s, v)
				pub.connect("pub-"+name, true, nil)
				pub.publish("m/"+name, "x", pq, false, 7)
				p := sub.recvPublish(true)
				if want := min(sq, pq); p.QoS != want {
					t.Errorf("%s: delivered QoS %d, want %d", name, p.QoS, want)
				}
				if p.Dup || p.Retain {
					t.Errorf("%s: DUP %v RETAIN %v on first delivery", name, p.Dup, p.Retain)
				}
				if p.QoS > 0 && p.PacketID == 0 {
					t.Errorf("%s: packet id 0", name) // [MQTT-2.2.1-4]
				}
				sub.disconnect()
				pub.disconnect()
			}
		}
	}
}

// [MQTT-4.3.3-10] a QoS 2 PUBLISH resent before PUBREL is acknowledged but
// delivered once; [MQTT-4.3.3-12] after PUBCOMP the id is new again.
func TestInboundQoS2Dedup(t *testing.T) {
	s := startServer(t, nil)
	sub := dial(t, s, packets.V311)
	sub.connect("sub", true, nil)
	sub.subscribe(1, packets.Subscription{Filter: "q2", QoS: 2})
	pub := dial(t, s, packets.V311)
	pub.connect("pub", true, nil)
	pub.send(&packets.Publish{Topic: "q2", Payload: []byte("once"), QoS: 2, PacketID: 5})
	recvAs[*packets.Pubrec](pub)
	pub.send(&packets.Publish{Topic: "q2", Payload: []byte("once"), QoS: 2, PacketID: 5, Dup: true})
	recvAs[*packets.Pubrec](pub)
	pub.send(&packets.Pubrel{PacketID: 5})
	recvAs[*packets.Pubcomp](pub)
	pub.publish("q2", "twice", 2, false, 5)

	a := sub.recvPublish(false)
	b := sub.recvPublish(false)
	sub.ack(a)
	sub.ack(b)
	if string(a.Payload) != "once" || string(b.Payload) != "twice" {
		t.Fatalf("got %q, %q; want once, twice", a.Payload, b.Payload)
	}
	sub.expectNothing(100 * time.Millisecond)
}

// A persistent session queues QoS 1/2 while offline and delivers in order on
// reconnect; unacknowledged PUBLISH is resent with DUP and the same packet
// id, and PUBREL is resent [MQTT-4.4.0-1] [MQTT-4.6.0-1].
func TestPersistentSessionResume(t *testing.T) {
	for _, v := range []packets.Version{packets.V311, packets.V5} {
		t.Run(v.String(), func(t *testing.T) {
			s := startServer(t, nil)
			persist := func(p *packets.Connect) { p.Properties.SessionExpiry = 300 }
			sub := dial(t, s, v)
			sub.connect("dur", false, persist)
			sub.subscribe(1, packets.Subscription{Filter: "d/#", QoS: 2})
			pub := dial(t, s, v)
			pub.connect("pub", true, nil)

			// One QoS 1 left unacknowledged, one QoS 2 left at PUBREL.
			pub.publish("d/1", "un-acked", 1, false, 1)
			p1 := sub.recvPublish(false)
			pub.publish("d/2", "released", 2, false, 2)
			p2 := sub.recvPublish(false)
			sub.send(&packets.Pubrec{PacketID: p2.PacketID})
			recvAs[*packets.Pubrel](sub)
			_ = sub.conn.Close()

			eventually(t, testTimeout, func() error {
				if s.stats.ClientsConnected.Load() != 1 {
					return fmt.Errorf("%d connected", s.stats.ClientsConnected.Load())
				}
				return nil
			})
			for i := range 3 {
				pub.publish("d/q", fmt.Sprint("q", i), 1, false, uint16(10+i))
			}
			pub.publish("d/zero", "qos0-dropped", 0, false, 0)
			pub.send(&packets.Pingreq{}) // the PUBLISH before it has been routed
			recvAs[*packets.Pingresp](pub)

			sub = dial(t, s, v)
			ca := sub.connect("dur", false, persist)
			if !ca.SessionPresent {
				t.Fatal("session not present") // [MQTT-3.2.2-3]
			}
			r1 := recvAs[*packets.Publish](sub)
			if !r1.Dup || r1.PacketID != p1.PacketID || string(r1.Payload) != "un-acked" {
				t.Fatalf("resent %+v, want DUP id %d", r1, p1.PacketID)
			}
			rel := recvAs[*packets.Pubrel](sub)
			if rel.PacketID != p2.PacketID {
				t.Fatalf("PUBREL id %d want %d", rel.PacketID, p2.PacketID)
			}
			var got []*packets.Publish
			for range 3 {
				got = append(got, sub.recvPublish(true))
			}
			if payloads(got) != "q0,q1,q2" {
				t.Fatalf("queued delivered as %s", payloads(got))
			}
			sub.ack(r1)
			sub.send(&packets.Pubcomp{PacketID: rel.PacketID})
			sub.expectNothing(100 * time.Millisecond)
			if s.stats.Session.Offline0.Load() != 1 {
				t.Errorf("offline QoS 0 drops %d, want 1", s.stats.Session.Offline0.Load())
			}
		})
	}
}

// Clean start discards the session [MQTT-3.1.2-4].
func TestCleanStartDiscardsSession(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s, packets.V311)
	c.connect("cs", false, nil)
	c.subscribe(1, packets.Subscription{Filter: "cs/#", QoS: 1})
	c.disconnect()
	c = dial(t, s, packets.V311)
	if ca := c.connect("cs", true, nil); ca.SessionPresent {
		t.Fatal("session present after clean session") // [MQTT-3.2.2-1]
	}
	pub := dial(t, s, packets.V311)
	pub.connect("pub", true, nil)
	pub.publish("cs/x", "nobody", 1, false, 1)
	c.expectNothing(100 * time.Millisecond)
}

// Will: published on abrupt close, not on normal DISCONNECT, published on
// 5.0 DISCONNECT 0x04 [MQTT-3.14.4-3].
func TestWill(t *testing.T) {
	s := startServer(t, nil)
	w := dial(t, s, packets.V5)
	w.connect("watch", true, nil)
	w.subscribe(1, packets.Subscription{Filter: "will/#", QoS: 1})
	withWill := func(topic string) func(*packets.Connect) {
		return func(p *packets.Connect) {
			p.Will = &packets.Will{Topic: topic, Payload: []byte("gone"), QoS: 1,
				Properties: packets.Properties{User: []packets.UserProperty{{Key: "a", Value: "1"}, {Key: "b", Value: "2"}}}}
		}
	}
	c := dial(t, s, packets.V5)
	c.connect("w1", true, withWill("will/abrupt"))
	_ = c.conn.Close()
	p := w.recvPublish(true)
	if p.Topic != "will/abrupt" || len(p.Properties.User) != 2 || p.Properties.User[0].Key != "a" {
		t.Fatalf("will %+v", p) // [MQTT-3.1.3-10] user properties in order
	}

	c = dial(t, s, packets.V5)
	c.connect("w2", true, withWill("will/normal"))
	c.disconnect()
	c = dial(t, s, packets.V5)
	c.connect("w3", true, withWill("will/with"))
	c.send(&packets.Disconnect{ReasonCode: packets.DisconnectWithWill})
	p = w.recvPublish(true)
	if p.Topic != "will/with" {
		t.Fatalf("got will %q, want will/with (normal disconnect must not send one)", p.Topic)
	}
}

// Will delay: a reconnection before the delay cancels the will
// [MQTT-3.1.3-9]; otherwise it is published after the delay.
func TestWillDelay(t *testing.T) {
	s := startServer(t, nil)
	w := dial(t, s, packets.V5)
	w.connect("watch", true, nil)
	w.subscribe(1, packets.Subscription{Filter: "wd/#", QoS: 0})
	opts := func(topic string) func(*packets.Connect) {
		return func(p *packets.Connect) {
			p.Properties.SessionExpiry = 60
			p.Will = &packets.Will{Topic: topic, Payload: []byte("late"), Properties: packets.Properties{WillDelay: 1}}
		}
	}
	c := dial(t, s, packets.V5)
	c.connect("d1", false, opts("wd/cancelled"))
	_ = c.conn.Close()
	eventually(t, testTimeout, func() error {
		if s.stats.ClientsConnected.Load() != 1 {
			return fmt.Errorf("still connected")
		}
		return nil
	})
	c = dial(t, s, packets.V5)
	c.connect("d1", false, nil) // before the delay: no will

	start := time.Now()
	c2 := dial(t, s, packets.V5)
	c2.connect("d2", false, opts("wd/sent"))
	_ = c2.conn.Close()
	p := w.recvPublish(false)
	if p.Topic != "wd/sent" {
		t.Fatalf("got will %q, want wd/sent", p.Topic)
	}
	if el := time.Since(start); el < 900*time.Millisecond {
		t.Errorf("will after %v, before its delay", el)
	}
}

// Retained messages: stored, sent on subscribe with RETAIN, replaced,
// deleted by an empty payload; retain handling 1 and 2.
func TestRetained(t *testing.T) {
	s := startServer(t, nil)
	pub := dial(t, s, packets.V5)
	pub.connect("pub", true, nil)
	pub.publish("r/a", "first", 1, true, 1)
	pub.publish("r/a", "second", 1, true, 2) // replaces [MQTT-3.3.1-5]
	pub.publish("r/b", "b", 0, true, 0)

	sub := dial(t, s, packets.V5)
	sub.connect("sub", true, nil)
	sub.subscribe(1, packets.Subscription{Filter: "r/#", QoS: 1})
	got := map[string]string{}
	for range 2 {
		p := sub.recvPublish(true)
		if !p.Retain {
			t.Errorf("retained %s without RETAIN", p.Topic) // [MQTT-3.3.1-8]
		}
		got[p.Topic] = string(p.Payload)
	}
	if got["r/a"] != "second" || got["r/b"] != "b" {
		t.Fatalf("retained %v", got)
	}
	// Live message: RETAIN cleared (no retain-as-published) [MQTT-3.3.1-12].
	pub.publish("r/a", "live", 0, true, 0)
	if p := sub.recvPublish(true); p.Retain || string(p.Payload) != "live" {
		t.Fatalf("live %+v", p)
	}
	// Retain handling 1: resubscribing sends nothing.
	sub.subscribe(2, packets.Subscription{Filter: "r/#", QoS: 1, RetainHandling: 1})
	sub.expectNothing(100 * time.Millisecond)
	// Retain as published keeps RETAIN.
	sub.subscribe(3, packets.Subscription{Filter: "r/#", QoS: 1, RetainHandling: 2, RetainAsPublished: true})
	sub.expectNothing(100 * time.Millisecond) // handling 2: none [MQTT-3.3.1-11]
	pub.publish("r/a", "rap", 0, true, 0)
	if p := sub.recvPublish(true); !p.Retain {
		t.Fatalf("retain as published lost RETAIN") // [MQTT-3.3.1-13]
	}
	// Empty payload deletes [MQTT-3.3.1-6].
	pub.publish("r/a", "", 0, true, 0)
	sub.recvPublish(true)
	s2 := dial(t, s, packets.V311)
	s2.connect("s2", true, nil)
	s2.subscribe(1, packets.Subscription{Filter: "r/a", QoS: 1})
	s2.expectNothing(100 * time.Millisecond)
}

// Overlapping subscriptions: one copy at the highest QoS with every
// subscription identifier [MQTT-3.3.4-2] [MQTT-3.3.4-4].
func TestOverlappingSubscriptions(t *testing.T) {
	s := startServer(t, nil)
	sub := dial(t, s, packets.V5)
	sub.connect("sub", true, nil)
	sub.send(&packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: "o/+", QoS: 0}}, Properties: packets.Properties{SubscriptionIDs: []uint32{7}}})
	recvAs[*packets.Suback](sub)
	sub.send(&packets.Subscribe{PacketID: 2, Subscriptions: []packets.Subscription{{Filter: "o/#", QoS: 1}}, Properties: packets.Properties{SubscriptionIDs: []uint32{9}}})
	recvAs[*packets.Suback](sub)
	pub := dial(t, s, packets.V5)
	pub.connect("pub", true, nil)
	pub.publish("o/x", "one", 2, false, 1)
	p := sub.recvPublish(true)
	if p.QoS != 1 {
		t.Errorf("QoS %d, want 1", p.QoS)
	}
	ids := slices.Clone(p.Properties.SubscriptionIDs)
	slices.Sort(ids)
	if !slices.Equal(ids, []uint32{7, 9}) {
		t.Errorf("subscription ids %v, want 7 and 9", ids)
	}
	sub.expectNothing(100 * time.Millisecond)
}

// No Local: a client does not get its own messages [MQTT-3.8.3-3].
func TestNoLocal(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s, packets.V5)
	c.connect("me", true, nil)
	c.subscribe(1, packets.Subscription{Filter: "nl", QoS: 0, NoLocal: true})
	c.publish("nl", "mine", 0, false, 0)
	o := dial(t, s, packets.V5)
	o.connect("other", true, nil)
	o.publish("nl", "theirs", 0, false, 0)
	if p := c.recvPublish(true); string(p.Payload) != "theirs" {
		t.Fatalf("got %q", p.Payload)
	}
}

// Clients may not publish under $SYS/ or $dlq/: 5.0 QoS 1 gets PUBACK
// 0x87; nothing is delivered; `#` does not match $ topics [MQTT-4.7.2-1].
func TestReservedTopics(t *testing.T) {
	s := startServer(t, nil)
	sub := dial(t, s, packets.V5)
	sub.connect("sub", true, nil)
	sub.subscribe(1, packets.Subscription{Filter: "$SYS/#", QoS: 1})
	sub.subscribe(2, packets.Subscription{Filter: "#", QoS: 1})
	pub := dial(t, s, packets.V5)
	pub.connect("pub", true, nil)
	pub.send(&packets.Publish{Topic: "$SYS/fake", QoS: 1, PacketID: 3, Payload: []byte("x")})
	if a := recvAs[*packets.Puback](pub); a.ReasonCode != packets.NotAuthorized {
		t.Fatalf("PUBACK %v, want 0x87", a.ReasonCode)
	}
	pub.publish("$other/x", "dollar", 0, false, 0) // other $ topics are usable, not matched by #
	sub.expectNothing(100 * time.Millisecond)
	if s.stats.DroppedReserved.Load() != 1 {
		t.Errorf("reserved drops %d", s.stats.DroppedReserved.Load())
	}
}

// A 5.0 client exceeding the server's Receive Maximum gets DISCONNECT 0x93.
func TestReceiveMaximumExceeded(t *testing.T) {
	s := startServer(t, func(o *Options) { o.ReceiveMaximum = 2 })
	c := dial(t, s, packets.V5)
	c.connect("greedy", true, nil)
	for id := uint16(1); id <= 2; id++ {
		c.send(&packets.Publish{Topic: "rm", QoS: 2, PacketID: id})
		recvAs[*packets.Pubrec](c)
	}
	c.send(&packets.Publish{Topic: "rm", QoS: 2, PacketID: 3})
	got := c.expectClosed()
	if len(got) != 1 || got[0].(*packets.Disconnect).ReasonCode != packets.ReceiveMaximumExceeded {
		t.Fatalf("got %v, want DISCONNECT 0x93", got)
	}
}

// The server keeps at most the client's Receive Maximum QoS > 0 messages
// unacknowledged [MQTT-3.3.4-9].
func TestOutboundReceiveMaximum(t *testing.T) {
	s := startServer(t, nil)
	sub := dial(t, s, packets.V5)
	sub.connect("slow", true, func(p *packets.Connect) { p.Properties.ReceiveMaximum = 2 })
	sub.subscribe(1, packets.Subscription{Filter: "w", QoS: 1})
	pub := dial(t, s, packets.V5)
	pub.connect("pub", true, nil)
	for i := range 5 {
		pub.publish("w", fmt.Sprint(i), 1, false, uint16(i+1))
	}
	a := sub.recvPublish(false)
	b := sub.recvPublish(false)
	sub.expectNothing(100 * time.Millisecond)
	sub.ack(a)
	c := sub.recvPublish(false)
	sub.expectNothing(50 * time.Millisecond)
	if c.PacketID == b.PacketID {
		t.Fatal("packet id reused while in flight") // [MQTT-2.2.1-4]
	}
	sub.ack(b)
	sub.ack(c)
	var rest []*packets.Publish
	rest = append(rest, sub.recvPublish(true), sub.recvPublish(true))
	if payloads(rest) != "3,4" {
		t.Fatalf("got %s", payloads(rest))
	}
}

// Topic aliases inbound: a valid alias resolves; one above the maximum is
// 0x94 [MQTT-3.3.2-9].
func TestTopicAliasInbound(t *testing.T) {
	s := startServer(t, func(o *Options) { o.TopicAliasMaximum = 2 })
	sub := dial(t, s, packets.V311)
	sub.connect("sub", true, nil)
	sub.subscribe(1, packets.Subscription{Filter: "alias/t"})
	c := dial(t, s, packets.V5)
	c.connect("aliaser", true, nil)
	c.send(&packets.Publish{Topic: "alias/t", Payload: []byte("1"), Properties: packets.Properties{TopicAlias: 1}})
	c.send(&packets.Publish{Payload: []byte("2"), Properties: packets.Properties{TopicAlias: 1}})
	if got := payloads([]*packets.Publish{sub.recvPublish(true), sub.recvPublish(true)}); got != "1,2" {
		t.Fatalf("got %s", got)
	}
	c.send(&packets.Publish{Topic: "alias/t", Properties: packets.Properties{TopicAlias: 3}})
	got := c.expectClosed()
	if len(got) != 1 || got[0].(*packets.Disconnect).ReasonCode != packets.TopicAliasInvalid {
		t.Fatalf("got %v, want DISCONNECT 0x94", got)
	}
}

// Topic aliases outbound: assigned when the client allows them; the second
// message on a topic carries only the alias [MQTT-3.1.2-26].
func TestTopicAliasOutbound(t *testing.T) {
	s := startServer(t, nil)
	sub := dial(t, s, packets.V5)
	sub.connect("sub", true, func(p *packets.Connect) { p.Properties.TopicAliasMaximum = 1 })
	sub.subscribe(1, packets.Subscription{Filter: "ta/#"})
	pub := dial(t, s, packets.V5)
	pub.connect("pub", true, nil)
	pub.publish("ta/1", "a", 0, false, 0)
	pub.publish("ta/1", "b", 0, false, 0)
	pub.publish("ta/2", "c", 0, false, 0)
	p1, p2, p3 := sub.recvPublish(true), sub.recvPublish(true), sub.recvPublish(true)
	if p1.Topic != "ta/1" || p1.Properties.TopicAlias != 1 {
		t.Errorf("first %+v", p1)
	}
	if p2.Topic != "" || p2.Properties.TopicAlias != 1 {
		t.Errorf("second %+v", p2)
	}
	if p3.Topic != "ta/2" || p3.Properties.TopicAlias != 0 {
		t.Errorf("third (no alias left) %+v", p3) // [MQTT-3.1.2-26]
	}
}

// A message larger than the client's Maximum Packet Size is not sent
// [MQTT-3.1.2-24] and is counted.
func TestMaximumPacketSizeOutbound(t *testing.T) {
	s := startServer(t, nil)
	sub := dial(t, s, packets.V5)
	sub.connect("small", true, func(p *packets.Connect) { p.Properties.MaximumPacketSize = 64 })
	sub.subscribe(1, packets.Subscription{Filter: "mps", QoS: 1})
	pub := dial(t, s, packets.V5)
	pub.connect("pub", true, nil)
	pub.publish("mps", string(make([]byte, 200)), 1, false, 1)
	pub.publish("mps", "small", 1, false, 2)
	if p := sub.recvPublish(true); string(p.Payload) != "small" {
		t.Fatalf("got %d bytes", len(p.Payload))
	}
	if s.stats.Session.TooLarge.Load() != 1 {
		t.Errorf("too-large count %d", s.stats.Session.TooLarge.Load())
	}
}

// A packet over the server's maximum is refused with 0x95.
func TestMaximumPacketSizeInbound(t *testing.T) {
	s := startServer(t, func(o *Options) { o.MaxPacketSize = 128 })
	c := dial(t, s, packets.V5)
	c.connect("big", true, nil)
	c.send(&packets.Publish{Topic: "big", Payload: make([]byte, 300)})
	got := c.expectClosed()
	if len(got) != 1 || got[0].(*packets.Disconnect).ReasonCode != packets.PacketTooLarge {
		t.Fatalf("got %v, want DISCONNECT 0x95", got)
	}
}

// Message expiry is passed on counted down; request/response properties and
// user properties pass through.
func TestPropertiesPassThrough(t *testing.T) {
	s := startServer(t, nil)
	sub := dial(t, s, packets.V5)
	sub.connect("sub", true, nil)
	sub.subscribe(1, packets.Subscription{Filter: "pp", QoS: 1})
	pub := dial(t, s, packets.V5)
	pub.connect("pub", true, nil)
	props := packets.Properties{MessageExpiry: 100, ResponseTopic: "reply", CorrelationData: []byte{1, 2},
		ContentType: "text/plain", PayloadFormat: 1, User: []packets.UserProperty{{Key: "k", Value: "v"}, {Key: "k", Value: "w"}}}
	pub.send(&packets.Publish{Topic: "pp", QoS: 1, PacketID: 1, Payload: []byte("x"), Properties: props})
	recvAs[*packets.Puback](pub)
	p := sub.recvPublish(true)
	pr := p.Properties
	if pr.MessageExpiry == 0 || pr.MessageExpiry > 100 || pr.ResponseTopic != "reply" || string(pr.CorrelationData) != "\x01\x02" ||
		pr.ContentType != "text/plain" || pr.PayloadFormat != 1 || len(pr.User) != 2 || pr.User[1].Value != "w" {
		t.Fatalf("properties %+v", pr)
	}
}

// An invalid filter is refused with 0x8F. The codec rejects the whole
// SUBSCRIBE when one filter is invalid, so the answer is DISCONNECT 0x8F
// rather than a SUBACK with 0x8F for that filter; either carries the code.
func TestSubscribeInvalidFilter(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s, packets.V5)
	c.connect("c5", true, nil)
	// The codec refuses to encode an invalid filter: raw bytes.
	// SUBSCRIBE id 1, no properties, "a/#/b" QoS 0.
	c.raw(0x82, 0, 1, 0, 0, 5, 'a', '/', '#', '/', 'b', 0)
	switch p := c.recv().(type) {
	case *packets.Suback:
		if p.ReasonCodes[0] != packets.TopicFilterInvalid {
			t.Fatalf("SUBACK %v", p.ReasonCodes)
		}
	case *packets.Disconnect:
		if p.ReasonCode != packets.TopicFilterInvalid {
			t.Fatalf("DISCONNECT %v", p.ReasonCode)
		}
	default:
		t.Fatalf("got %T", p)
	}
}

// UNSUBACK reports 0x11 for a filter that was not subscribed and is sent
// even when nothing was removed [MQTT-3.10.4-5]; the removed subscription
// no longer receives.
func TestUnsubscribe(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s, packets.V5)
	c.connect("c5", true, nil)
	c.subscribe(1, packets.Subscription{Filter: "ok", QoS: 2})
	c.send(&packets.Unsubscribe{PacketID: 2, Filters: []string{"ok", "never"}})
	ua := recvAs[*packets.Unsuback](c)
	if ua.PacketID != 2 || ua.ReasonCodes[0] != packets.Success || ua.ReasonCodes[1] != packets.NoSubscriptionExisted {
		t.Fatalf("UNSUBACK %+v", ua)
	}
	pub := dial(t, s, packets.V5)
	pub.connect("pub", true, nil)
	pub.publish("ok", "gone", 0, false, 0)
	c.expectNothing(100 * time.Millisecond)
}

// Packets only a server sends, and AUTH without an authentication method,
// are protocol errors from a client: DISCONNECT 0x82 and close.
func TestServerOnlyPacketsFromClient(t *testing.T) {
	s := startServer(t, nil)
	for i, p := range []packets.Packet{
		&packets.Connack{}, &packets.Suback{PacketID: 1, ReasonCodes: []packets.ReasonCode{0}},
		&packets.Unsuback{PacketID: 1, ReasonCodes: []packets.ReasonCode{0}}, &packets.Pingresp{},
		&packets.Auth{ReasonCode: packets.ContinueAuthentication, Properties: packets.Properties{AuthMethod: "x"}},
	} {
		c := dial(t, s, packets.V5)
		c.connect(fmt.Sprint("bad", i), true, nil)
		c.send(p)
		got := c.expectClosed()
		if len(got) != 1 || got[0].(*packets.Disconnect).ReasonCode != packets.ProtocolError {
			t.Errorf("%T: got %v, want DISCONNECT 0x82", p, got)
		}
	}
	if n := s.stats.ProtocolErrors.Load(); n != 5 {
		t.Errorf("protocol errors %d, want 5", n)
	}
}

// Outbound QoS 2: PUBREC -> PUBREL -> PUBCOMP frees the identifier; a
// PUBREC with an error code ends the exchange without PUBREL
// [MQTT-4.4.0-2]; an unknown PUBREC gets PUBREL 0x92.
func TestOutboundQoS2(t *testing.T) {
	s := startServer(t, nil)
	sub := dial(t, s, packets.V5)
	sub.connect("sub", true, nil)
	sub.subscribe(1, packets.Subscription{Filter: "o2", QoS: 2})
	pub := dial(t, s, packets.V5)
	pub.connect("pub", true, nil)
	pub.publish("o2", "a", 2, false, 1)
	p := sub.recvPublish(false)
	sub.send(&packets.Pubrec{PacketID: p.PacketID, ReasonCode: packets.UnspecifiedError})
	sub.expectNothing(100 * time.Millisecond)
	pub.publish("o2", "b", 2, false, 2)
	sub.recvPublish(true) // full flow through the helper
	sub.send(&packets.Pubrec{PacketID: 999})
	if r := recvAs[*packets.Pubrel](sub); r.PacketID != 999 || r.ReasonCode != packets.PacketIdentifierNotFound {
		t.Fatalf("PUBREL %+v, want 0x92", r)
	}
	sub.send(&packets.Pubrel{PacketID: 777})
	if c := recvAs[*packets.Pubcomp](sub); c.PacketID != 777 || c.ReasonCode != packets.PacketIdentifierNotFound {
		t.Fatalf("PUBCOMP %+v, want 0x92", c)
	}
	if s.stats.NegativeAcks.Load() != 1 {
		t.Errorf("negative acks %d", s.stats.NegativeAcks.Load())
	}
}
