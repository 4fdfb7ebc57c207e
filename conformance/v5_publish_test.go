package conformance

// MQTT 5.0 §3.3 PUBLISH: flags, retained messages, retain handling and
// retain-as-published, forwarded properties, message expiry, topic aliases,
// overlapping subscriptions and subscription identifiers.

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
)

// DUP is set when the server re-delivers a PUBLISH: an unacknowledged QoS 1
// message is resent with DUP 1 when the session resumes.
func TestMQTT5_3_3_1_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	id, tp := clientID(t), topic(t)
	c, _ := v5Connect(t, tg, id, v5Session(true, 60))
	v5MustSub(c, tp, 1)
	v5Client(t, tg).publish(tp, []byte("m"), 1, false)
	first := c.expectPublish(wait)
	if first.Dup {
		t.Errorf("first delivery has DUP 1 [MQTT-3.3.1-1]")
	}
	c.close()
	c2, _ := v5Connect(t, tg, id, v5Session(false, 60))
	again := c2.expectPublish(wait)
	if !again.Dup || again.PacketID != first.PacketID || string(again.Payload) != "m" {
		t.Errorf("redelivery %s, want DUP 1 with packet id %d [MQTT-3.3.1-1]", describe([]packets.Packet{again}), first.PacketID)
	}
	c2.ack(again)
}

// DUP is 0 on every QoS 0 message, including a QoS 1 message published with
// DUP 1 and downgraded to a QoS 0 subscription.
func TestMQTT5_3_3_1_2(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := topic(t)
	sub := v5Client(t, tg)
	v5MustSub(sub, tp, 0)
	v5Client(t, tg).publishWith(&packets.Publish{Topic: tp, QoS: 1, Dup: true, Payload: []byte("d")})
	if p := sub.receive(wait); p.Dup || p.QoS != 0 {
		t.Errorf("QoS 0 delivery with DUP %v QoS %d [MQTT-3.3.1-2]", p.Dup, p.QoS)
	}
}

// The outgoing DUP flag does not copy the incoming one: a first delivery is
// DUP 0 even when the publisher set DUP 1.
func TestMQTT5_3_3_1_3(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := topic(t)
	sub := v5Client(t, tg)
	v5MustSub(sub, tp, 1)
	v5Client(t, tg).publishWith(&packets.Publish{Topic: tp, QoS: 1, Dup: true, Payload: []byte("d")})
	if p := sub.receive(wait); p.Dup {
		t.Errorf("first delivery carries the publisher's DUP 1 [MQTT-3.3.1-3]")
	}
}

// A PUBLISH with both QoS bits set is malformed: DISCONNECT 0x81, close.
func TestMQTT5_3_3_1_4(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := topic(t)
	sub := v5Client(t, tg)
	v5MustSub(sub, tp, 2)
	c := v5Client(t, tg)
	c.sendRaw(rawPkt(0x36, rawStr(tp), []byte{0, 1}, []byte{0}, []byte("q3")))
	v5ExpectDisconnect(c, tg, packets.MalformedPacket) // [MQTT-3.3.1-4]
	sub.expectNone(short)
}

// RETAIN 1 replaces the topic's retained message.
func TestMQTT5_3_3_1_5(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := topic(t)
	c := v5Client(t, tg)
	c.publish(tp, []byte("old"), 1, true)
	c.publish(tp, []byte("new"), 1, true)
	s := v5Client(t, tg)
	v5MustSub(s, tp, 1)
	got := v5Collect(s, 1, short*2)
	if len(got) != 1 || string(got[0].Payload) != "new" || !got[0].Retain {
		t.Errorf("retained after replacement: %v, want only new [MQTT-3.3.1-5]", v5Payloads(got))
	}
	c.publish(tp, nil, 1, true)
}

// A retained PUBLISH with an empty payload deletes the retained message.
func TestMQTT5_3_3_1_6(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := topic(t)
	c := v5Client(t, tg)
	c.publish(tp, []byte("x"), 1, true)
	c.publish(tp, nil, 1, true)
	s := v5Client(t, tg)
	v5MustSub(s, tp, 1)
	s.expectNone(short) // [MQTT-3.3.1-6]
}

// A retained message with an empty payload is not stored, but it is still
// forwarded to current subscribers.
func TestMQTT5_3_3_1_7(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := topic(t)
	live := v5Client(t, tg)
	v5MustSub(live, tp, 1)
	v5Client(t, tg).publish(tp, nil, 1, true)
	if p := live.receive(wait); len(p.Payload) != 0 {
		t.Errorf("live subscriber got %q", p.Payload)
	}
	s := v5Client(t, tg)
	v5MustSub(s, tp, 1)
	s.expectNone(short) // [MQTT-3.3.1-7]
}

// RETAIN 0 is neither stored nor changes the existing retained message.
func TestMQTT5_3_3_1_8(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp, other := topic(t), topic(t)
	c := v5Client(t, tg)
	c.publish(tp, []byte("kept"), 1, true)
	c.publish(tp, []byte("plain"), 1, false)
	c.publish(other, []byte("plain"), 1, false)
	s := v5Client(t, tg)
	v5MustSub(s, tp, 1)
	v5MustSub(s, other, 1)
	got := v5Collect(s, 1, short*2)
	if len(got) != 1 || string(got[0].Payload) != "kept" {
		t.Errorf("retained messages %v, want only kept [MQTT-3.3.1-8]", v5Payloads(got))
	}
	c.publish(tp, nil, 1, true)
}

// v5RetainedTopic publishes a retained message on a fresh topic and returns
// the topic.
func v5RetainedTopic(t *testing.T, tg *Target) string {
	t.Helper()
	tp := topic(t)
	c := v5Client(t, tg)
	c.publish(tp, []byte("r"), 1, true)
	t.Cleanup(func() { c.publish(tp, nil, 1, true) })
	return tp
}

// Retain Handling 0: retained messages are sent at every subscribe, also on
// re-subscription.
func TestMQTT5_3_3_1_9(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := v5RetainedTopic(t, tg)
	s := v5Client(t, tg)
	for i := range 2 {
		v5Sub(s, packets.Subscription{Filter: tp, QoS: 1, RetainHandling: 0}, packets.Properties{})
		if p := s.receive(wait); !p.Retain || string(p.Payload) != "r" {
			t.Errorf("subscribe %d: got %s [MQTT-3.3.1-9]", i, describe([]packets.Packet{p}))
		}
	}
}

// Retain Handling 1: retained messages only for a new subscription.
func TestMQTT5_3_3_1_10(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := v5RetainedTopic(t, tg)
	s := v5Client(t, tg)
	v5Sub(s, packets.Subscription{Filter: tp, QoS: 1, RetainHandling: 1}, packets.Properties{})
	if p := s.receive(wait); !p.Retain {
		t.Errorf("new subscription: got non-retained %s [MQTT-3.3.1-10]", describe([]packets.Packet{p}))
	}
	v5Sub(s, packets.Subscription{Filter: tp, QoS: 1, RetainHandling: 1}, packets.Properties{})
	s.expectNone(short) // [MQTT-3.3.1-10] subscription existed
}

// Retain Handling 2: no retained messages at subscribe time.
func TestMQTT5_3_3_1_11(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := v5RetainedTopic(t, tg)
	s := v5Client(t, tg)
	v5Sub(s, packets.Subscription{Filter: tp, QoS: 1, RetainHandling: 2}, packets.Properties{})
	s.expectNone(short) // [MQTT-3.3.1-11]
}

// Retain As Published 0: live forwarded messages have RETAIN 0.
func TestMQTT5_3_3_1_12(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := topic(t)
	s := v5Client(t, tg)
	v5Sub(s, packets.Subscription{Filter: tp, QoS: 1, RetainHandling: 2}, packets.Properties{})
	c := v5Client(t, tg)
	c.publish(tp, []byte("r"), 1, true)
	if p := s.receive(wait); p.Retain {
		t.Errorf("Retain As Published 0: forwarded with RETAIN 1 [MQTT-3.3.1-12]")
	}
	c.publish(tp, nil, 1, true)
}

// Retain As Published 1: the forwarded RETAIN flag equals the published one.
func TestMQTT5_3_3_1_13(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := topic(t)
	s := v5Client(t, tg)
	v5Sub(s, packets.Subscription{Filter: tp, QoS: 1, RetainAsPublished: true, RetainHandling: 2}, packets.Properties{})
	c := v5Client(t, tg)
	c.publish(tp, []byte("r"), 1, true)
	c.publish(tp, []byte("n"), 1, false)
	got := v5Collect(s, 2, short*3)
	if len(got) != 2 || !got[0].Retain || got[1].Retain {
		t.Errorf("RETAIN flags %v: want [true false] [MQTT-3.3.1-13]", func() []bool {
			var f []bool
			for _, p := range got {
				f = append(f, p.Retain)
			}
			return f
		}())
	}
	c.publish(tp, nil, 1, true)
}

// A Topic Name that is not valid UTF-8 (a lone 0xFF byte) makes the PUBLISH
// malformed: DISCONNECT 0x81 and close; nothing is delivered.
func TestMQTT5_3_3_2_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	root := topic(t)
	sub := v5Client(t, tg)
	v5MustSub(sub, root+"/#", 0)
	c := v5Client(t, tg)
	c.sendRaw(rawPublish0(root+"/\xff", []byte{0}, "bad"))
	v5ExpectDisconnect(c, tg, packets.MalformedPacket, packets.TopicNameInvalid) // [MQTT-3.3.2-1]
	sub.expectNone(short)
}

// A Topic Name with a wildcard is refused (the connection is closed, 0x81,
// 0x82 or 0x90) and is delivered to nobody.
func TestMQTT5_3_3_2_2(t *testing.T) {
	t.Parallel()
	tg := target(t)
	root := topic(t)
	sub := v5Client(t, tg)
	v5MustSub(sub, root+"/#", 0)
	c := v5Client(t, tg)
	c.sendRaw(rawPublish0(root+"/+", []byte{0}, "wild"))
	v5ExpectDisconnect(c, tg, packets.MalformedPacket, packets.ProtocolError, packets.TopicNameInvalid) // [MQTT-3.3.2-2]
	sub.expectNone(short)
}

// Wildcards never appear in Topic Names: '#' in a PUBLISH topic is refused.
func TestMQTT5_4_7_0_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	root := topic(t)
	sub := v5Client(t, tg)
	v5MustSub(sub, root+"/#", 0)
	c := v5Client(t, tg)
	c.sendRaw(rawPublish0(root+"/#", []byte{0}, "wild"))
	v5ExpectDisconnect(c, tg, packets.MalformedPacket, packets.ProtocolError, packets.TopicNameInvalid) // [MQTT-4.7.0-1]
	sub.expectNone(short)
}

// The Topic Name delivered matches the subscription's filter.
func TestMQTT5_3_3_2_3(t *testing.T) {
	t.Parallel()
	tg := target(t)
	root := topic(t)
	s := v5Client(t, tg)
	v5MustSub(s, root+"/+/c", 0)
	p := v5Client(t, tg)
	for _, tp := range []string{root + "/b/c", root + "/b/d", root + "/b/c/d", root + "/c", root + "//c"} {
		p.publish(tp, []byte(tp), 1, false)
	}
	got := v5Collect(s, 2, short*3)
	var topics []string
	for _, g := range got {
		topics = append(topics, g.Topic)
		if g.Topic != string(g.Payload) {
			t.Errorf("payload for %q arrived with topic %q [MQTT-3.3.2-3]", g.Payload, g.Topic)
		}
	}
	slices.Sort(topics)
	if want := []string{root + "//c", root + "/b/c"}; !slices.Equal(topics, want) {
		t.Errorf("delivered topics %q, want %q [MQTT-3.3.2-3]", topics, want)
	}
}

// v5Forward publishes pub at QoS 1 to a fresh topic with one subscriber and
// returns what the subscriber received.
func v5Forward(t *testing.T, tg *Target, pub *packets.Publish) *packets.Publish {
	t.Helper()
	pub.Topic = topic(t)
	s := v5Client(t, tg)
	v5MustSub(s, pub.Topic, 1)
	v5Client(t, tg).publishWith(pub)
	return s.receive(wait)
}

// The Payload Format Indicator is forwarded unchanged.
func TestMQTT5_3_3_2_4(t *testing.T) {
	t.Parallel()
	tg := target(t)
	got := v5Forward(t, tg, &packets.Publish{QoS: 1, Payload: []byte("text"), Properties: packets.Properties{PayloadFormat: 1}})
	if got.Properties.PayloadFormat != 1 {
		t.Errorf("Payload Format Indicator %d, want 1 [MQTT-3.3.2-4]", got.Properties.PayloadFormat)
	}
	pf := packets.Properties{}
	pf.Mark(packets.PropPayloadFormat)
	got = v5Forward(t, tg, &packets.Publish{QoS: 1, Payload: []byte{0xff, 0}, Properties: pf})
	if got.Properties.PayloadFormat != 0 {
		t.Errorf("Payload Format Indicator %d, want 0 [MQTT-3.3.2-4]", got.Properties.PayloadFormat)
	}
}

// A queued message whose expiry passes before delivery starts is not
// delivered; an unexpired one queued alongside is.
func TestMQTT5_3_3_2_5(t *testing.T) {
	t.Parallel()
	tg := target(t)
	id, tp := clientID(t), topic(t)
	v5Persisted(t, tg, id, tp, 1)
	p := v5Client(t, tg)
	p.publishWith(&packets.Publish{Topic: tp, QoS: 1, Payload: []byte("short"), Properties: packets.Properties{MessageExpiry: 1}})
	p.publishWith(&packets.Publish{Topic: tp, QoS: 1, Payload: []byte("long"), Properties: packets.Properties{MessageExpiry: 600}})
	letTimePass(2500 * time.Millisecond)
	c, _ := v5Connect(t, tg, id, v5Session(false, 60))
	got := v5Collect(c, 1, short*3)
	if len(got) != 1 || string(got[0].Payload) != "long" {
		t.Errorf("after expiry delivered %v, want only long [MQTT-3.3.2-5]", v5Payloads(got))
	}

	// A retained message expires too: a subscriber arriving after its
	// expiry does not get it.
	rt := topic(t)
	p.publishWith(&packets.Publish{Topic: rt, QoS: 1, Retain: true, Payload: []byte("stale"), Properties: packets.Properties{MessageExpiry: 1}})
	letTimePass(2200 * time.Millisecond)
	late := v5Client(t, tg)
	v5MustSub(late, rt, 1)
	late.expectNone(short) // [MQTT-3.3.2-5]
}

// The forwarded Message Expiry Interval is the received one minus the time
// the message waited in the server.
func TestMQTT5_3_3_2_6(t *testing.T) {
	t.Parallel()
	tg := target(t)
	id, tp := clientID(t), topic(t)
	v5Persisted(t, tg, id, tp, 1)
	v5Client(t, tg).publishWith(&packets.Publish{Topic: tp, QoS: 1, Payload: []byte("e"), Properties: packets.Properties{MessageExpiry: 60}})
	letTimePass(2200 * time.Millisecond)
	c, _ := v5Connect(t, tg, id, v5Session(false, 60))
	got := c.receive(wait)
	if e := got.Properties.MessageExpiry; !got.Properties.Has(packets.PropMessageExpiry) || e > 58 || e == 0 {
		t.Errorf("Message Expiry Interval %d after >2 s queued, want 1..58 [MQTT-3.3.2-6]", e)
	}
	// Immediate delivery: at most the published value.
	s := v5Client(t, tg)
	tp2 := topic(t)
	v5MustSub(s, tp2, 1)
	v5Client(t, tg).publishWith(&packets.Publish{Topic: tp2, QoS: 1, Payload: []byte("e"), Properties: packets.Properties{MessageExpiry: 60}})
	if e := s.receive(wait).Properties.MessageExpiry; e == 0 || e > 60 {
		t.Errorf("live Message Expiry Interval %d, want 1..60 [MQTT-3.3.2-6]", e)
	}

	// Retained messages count down as well.
	rt := topic(t)
	pub := v5Client(t, tg)
	pub.publishWith(&packets.Publish{Topic: rt, QoS: 1, Retain: true, Payload: []byte("r"), Properties: packets.Properties{MessageExpiry: 60}})
	letTimePass(2200 * time.Millisecond)
	late := v5Client(t, tg)
	v5MustSub(late, rt, 1)
	got = late.receive(wait)
	if e := got.Properties.MessageExpiry; !got.Retain || e > 58 || e == 0 {
		t.Errorf("retained message after >2 s: retain %v, Message Expiry Interval %d, want 1..58 [MQTT-3.3.2-6]", got.Retain, e)
	}
	pub.publish(rt, nil, 1, true)
}

// v5ServerAliasMax connects a client and returns it with the server's Topic
// Alias Maximum.
func v5ServerAliasMax(t *testing.T, tg *Target) (*Client, uint16) {
	t.Helper()
	c, ack := v5Connect(t, tg, "", nil)
	return c, ack.Properties.TopicAliasMaximum
}

// Topic Alias mappings belong to one connection: an alias set on one
// connection is unknown on the next one of the same client (Protocol Error).
func TestMQTT5_3_3_2_7(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp, id := topic(t), clientID(t)
	sub := v5Client(t, tg)
	v5MustSub(sub, tp, 0)
	c, ack := v5Connect(t, tg, id, v5Session(true, 60))
	if ack.Properties.TopicAliasMaximum == 0 {
		t.Skip("server accepts no topic aliases (Topic Alias Maximum 0); no mapping to carry over")
	}
	c.publishWith(&packets.Publish{Topic: tp, Payload: []byte("set"), Properties: packets.Properties{TopicAlias: 1}})
	sub.receive(wait)
	v5Leave(c)
	c2, _ := v5Connect(t, tg, id, v5Session(false, 60))
	c2.publishWith(&packets.Publish{Topic: "", Payload: []byte("stale"), Properties: packets.Properties{TopicAlias: 1}})
	v5ExpectDisconnect(c2, tg, packets.ProtocolError, packets.TopicAliasInvalid) // [MQTT-3.3.2-7]
	sub.expectNone(short)
}

// Topic Alias 0 is never used: a client sending it gets DISCONNECT 0x94; a
// server sending aliases never sends 0.
func TestMQTT5_3_3_2_8(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := topic(t)
	s, _ := v5Connect(t, tg, "", func(c *packets.Connect) { c.Properties.TopicAliasMaximum = 10 })
	v5MustSub(s, tp, 0)
	p := v5Client(t, tg)
	for range 3 {
		p.publish(tp, []byte("x"), 0, false)
	}
	for _, g := range v5Publishes(s, 3, short) {
		if g.Properties.Has(packets.PropTopicAlias) && g.Properties.TopicAlias == 0 {
			t.Errorf("server sent Topic Alias 0 [MQTT-3.3.2-8]")
		}
	}
	// Client sends alias 0 (raw: the encoder leaves a zero alias out).
	p.sendRaw(rawPublish0(tp, rawProps([]byte{0x23, 0, 0}), "zero"))
	v5ExpectDisconnect(p, tg, packets.TopicAliasInvalid, packets.ProtocolError, packets.MalformedPacket) // [MQTT-3.3.2-8]
}

// The server never uses a Topic Alias above the client's Topic Alias
// Maximum (3 here, with 4 topics in use).
func TestMQTT5_3_1_2_26(t *testing.T) {
	t.Parallel()
	v5AliasesWithin(t, target(t), 3, "MQTT-3.1.2-26")
}

// No Topic Alias at all for a client whose Topic Alias Maximum is absent.
func TestMQTT5_3_1_2_27(t *testing.T) {
	t.Parallel()
	v5AliasesWithin(t, target(t), 0, "MQTT-3.1.2-27")
}

// The server never uses a Topic Alias above the client's Topic Alias
// Maximum, and always sends a Topic Name the first time it uses an alias.
func TestMQTT5_3_3_2_11(t *testing.T) {
	t.Parallel()
	tg := target(t)
	v5AliasesWithin(t, tg, 2, "MQTT-3.3.2-11")
}

// v5AliasesWithin subscribes with Topic Alias Maximum max, receives messages
// on several topics twice each and checks every alias the server uses.
func v5AliasesWithin(t *testing.T, tg *Target, max uint16, id string) {
	t.Helper()
	root := topic(t)
	s, _ := v5Connect(t, tg, "", func(c *packets.Connect) { c.Properties.TopicAliasMaximum = max })
	v5MustSub(s, root+"/#", 0)
	p := v5Client(t, tg)
	var want []string
	for range 2 {
		for _, l := range []string{"a", "b", "c", "d"} {
			p.publish(root+"/"+l, []byte(l), 0, false)
			want = append(want, root+"/"+l)
		}
	}
	aliases := map[uint16]string{}
	used := 0
	defer func() { t.Logf("%d of %d messages used a topic alias", used, len(want)) }()
	got := v5Publishes(s, len(want), short)
	if len(got) != len(want) {
		t.Fatalf("received %d messages, want %d", len(got), len(want))
	}
	for i, g := range got {
		a := g.Properties.TopicAlias
		if !g.Properties.Has(packets.PropTopicAlias) {
			if g.Topic != want[i] {
				t.Errorf("message %d topic %q, want %q", i, g.Topic, want[i])
			}
			continue
		}
		used++
		if max == 0 {
			t.Errorf("Topic Alias %d sent to a client without Topic Alias Maximum [%s]", a, id)
			continue
		}
		if a == 0 || a > max {
			t.Errorf("Topic Alias %d outside 1..%d [%s]", a, max, id)
		}
		name := g.Topic
		if name == "" {
			name = aliases[a]
			if name == "" {
				t.Errorf("alias %d used with an empty topic before being mapped", a)
			}
		}
		aliases[a] = name
		if name != want[i] {
			t.Errorf("message %d resolves to %q, want %q", i, name, want[i])
		}
	}
}

// The server accepts every Topic Alias from 1 to its own Topic Alias
// Maximum, and refuses the one above with DISCONNECT 0x94.
func TestMQTT5_3_3_2_12(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := topic(t)
	sub := v5Client(t, tg)
	v5MustSub(sub, tp, 0)
	c, max := v5ServerAliasMax(t, tg)
	for a := uint16(1); a <= max && a <= 20; a++ {
		c.publishWith(&packets.Publish{Topic: tp, Payload: []byte("set"), Properties: packets.Properties{TopicAlias: a}})
		c.publishWith(&packets.Publish{Topic: "", Payload: []byte("use"), Properties: packets.Properties{TopicAlias: a}})
		for _, want := range []string{"set", "use"} {
			if p := sub.receive(wait); p.Topic != tp || string(p.Payload) != want {
				t.Errorf("alias %d: got %s [MQTT-3.3.2-12]", a, describe([]packets.Packet{p}))
			}
		}
	}
	if max >= 1 {
		// Re-mapping an alias to another topic is allowed; the alias then
		// stands for the new topic.
		other := topic(t)
		v5MustSub(sub, other, 0)
		c.publishWith(&packets.Publish{Topic: other, Payload: []byte("remap"), Properties: packets.Properties{TopicAlias: 1}})
		c.publishWith(&packets.Publish{Topic: "", Payload: []byte("remapped"), Properties: packets.Properties{TopicAlias: 1}})
		for _, want := range []string{"remap", "remapped"} {
			if p := sub.receive(wait); p.Topic != other || string(p.Payload) != want {
				t.Errorf("re-mapped alias 1: got %s [MQTT-3.3.2-12]", describe([]packets.Packet{p}))
			}
		}
	}
	c.publishWith(&packets.Publish{Topic: tp, Payload: []byte("over"), Properties: packets.Properties{TopicAlias: max + 1}})
	v5ExpectDisconnect(c, tg, packets.TopicAliasInvalid) // [MQTT-3.3.2-12] (converse)
	sub.expectNone(short)
}

// A Response Topic that is not valid UTF-8 makes the PUBLISH malformed.
func TestMQTT5_3_3_2_13(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := topic(t)
	sub := v5Client(t, tg)
	v5MustSub(sub, tp, 0)
	c := v5Client(t, tg)
	c.sendRaw(rawPublish0(tp, rawProps(append([]byte{0x08}, rawStr("a/\xc0\x80")...)), "x"))
	v5ExpectDisconnect(c, tg, packets.MalformedPacket) // [MQTT-3.3.2-13]
	sub.expectNone(short)
}

// A Response Topic with wildcards is never forwarded: the server refuses the
// PUBLISH (close, or an error PUBACK) and no subscriber receives it.
func TestMQTT5_3_3_2_14(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := topic(t)
	sub := v5Client(t, tg)
	v5MustSub(sub, tp, 1)
	c := v5Client(t, tg)
	c.sendRaw(rawPkt(0x32, rawStr(tp), []byte{0, 9}, rawProps(append([]byte{0x08}, rawStr("reply/#")...)), []byte("x")))
	switch p := c.waitClosedOrPacket().(type) {
	case nil:
	case *packets.Puback:
		// Acknowledging is not itself forbidden; forwarding is (below).
	case *packets.Disconnect:
		if !slices.Contains([]rc{packets.MalformedPacket, packets.ProtocolError}, p.ReasonCode) {
			t.Errorf("DISCONNECT %v, want 0x81 or 0x82", p.ReasonCode)
		}
	default:
		t.Errorf("unexpected %s", describe([]packets.Packet{p}))
	}
	for _, g := range v5Publishes(sub, 0, short*2) {
		t.Errorf("forwarded a PUBLISH with Response Topic %q [MQTT-3.3.2-14]", g.Properties.ResponseTopic)
	}
}

// The Response Topic is forwarded unchanged.
func TestMQTT5_3_3_2_15(t *testing.T) {
	t.Parallel()
	tg := target(t)
	rt := "reply/" + uid(t) + "/ü"
	got := v5Forward(t, tg, &packets.Publish{QoS: 1, Payload: []byte("q"), Properties: packets.Properties{ResponseTopic: rt}})
	if got.Properties.ResponseTopic != rt {
		t.Errorf("Response Topic %q, want %q [MQTT-3.3.2-15]", got.Properties.ResponseTopic, rt)
	}
}

// Correlation Data is forwarded unchanged (binary, including zero bytes).
func TestMQTT5_3_3_2_16(t *testing.T) {
	t.Parallel()
	tg := target(t)
	cd := []byte{0, 1, 2, 0xff, 0xfe, 0}
	got := v5Forward(t, tg, &packets.Publish{QoS: 1, Payload: []byte("q"), Properties: packets.Properties{ResponseTopic: "r/" + uid(t), CorrelationData: cd}})
	if !bytes.Equal(got.Properties.CorrelationData, cd) {
		t.Errorf("Correlation Data %x, want %x [MQTT-3.3.2-16]", got.Properties.CorrelationData, cd)
	}
}

// All User Properties are forwarded unchanged, duplicates included.
func TestMQTT5_3_3_2_17(t *testing.T) {
	t.Parallel()
	tg := target(t)
	up := []packets.UserProperty{{Key: "k", Value: "v1"}, {Key: "k", Value: "v1"}, {Key: "empty", Value: ""}, {Key: "ünï", Value: "çødé"}}
	got := v5Forward(t, tg, &packets.Publish{QoS: 1, Payload: []byte("q"), Properties: packets.Properties{User: slices.Clone(up)}})
	a, b := slices.Clone(got.Properties.User), slices.Clone(up)
	less := func(x, y packets.UserProperty) int {
		if x.Key != y.Key {
			return compareStr(x.Key, y.Key)
		}
		return compareStr(x.Value, y.Value)
	}
	slices.SortFunc(a, less)
	slices.SortFunc(b, less)
	if !slices.Equal(a, b) {
		t.Errorf("User Properties %v, want %v [MQTT-3.3.2-17]", got.Properties.User, up)
	}
}

func compareStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// User Properties keep their order when forwarded.
func TestMQTT5_3_3_2_18(t *testing.T) {
	t.Parallel()
	tg := target(t)
	up := []packets.UserProperty{{Key: "z", Value: "1"}, {Key: "a", Value: "2"}, {Key: "z", Value: "3"}, {Key: "m", Value: "4"}}
	got := v5Forward(t, tg, &packets.Publish{QoS: 1, Payload: []byte("q"), Properties: packets.Properties{User: slices.Clone(up)}})
	if !slices.Equal(got.Properties.User, up) {
		t.Errorf("User Properties %v, want %v in order [MQTT-3.3.2-18]", got.Properties.User, up)
	}
}

// A Content Type that is not valid UTF-8 (an encoded surrogate) makes the
// PUBLISH malformed.
func TestMQTT5_3_3_2_19(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := topic(t)
	sub := v5Client(t, tg)
	v5MustSub(sub, tp, 0)
	c := v5Client(t, tg)
	c.sendRaw(rawPublish0(tp, rawProps(append([]byte{0x03}, rawStr("text/\xed\xa0\x80")...)), "x"))
	v5ExpectDisconnect(c, tg, packets.MalformedPacket) // [MQTT-3.3.2-19]
	sub.expectNone(short)
}

// The Content Type is forwarded unchanged.
func TestMQTT5_3_3_2_20(t *testing.T) {
	t.Parallel()
	tg := target(t)
	ct := "application/x-cf; v=" + uid(t)
	got := v5Forward(t, tg, &packets.Publish{QoS: 1, Payload: []byte("q"), Properties: packets.Properties{ContentType: ct}})
	if got.Properties.ContentType != ct {
		t.Errorf("Content Type %q, want %q [MQTT-3.3.2-20]", got.Properties.ContentType, ct)
	}
}

// A message matching overlapping subscriptions is delivered at the highest
// QoS among them.
func TestMQTT5_3_3_4_2(t *testing.T) {
	t.Parallel()
	tg := target(t)
	root := topic(t)
	s := v5Client(t, tg)
	v5MustSub(s, root+"/#", 0)
	v5MustSub(s, root+"/a", 2)
	v5MustSub(s, root+"/+", 1)
	v5Client(t, tg).publish(root+"/a", []byte("x"), 2, false)
	got := v5Collect(s, 1, short*3)
	var hi byte
	for _, g := range got {
		hi = max(hi, g.QoS)
	}
	if hi != 2 {
		t.Errorf("highest delivered QoS %d, want 2 [MQTT-3.3.4-2]", hi)
	}
}

// v5OverlapIDs subscribes to two overlapping filters with identifiers 1 and
// 2, publishes one matching message and returns the copies received.
func v5OverlapIDs(t *testing.T, tg *Target) []*packets.Publish {
	t.Helper()
	root := topic(t)
	s := v5Client(t, tg)
	v5SubID(s, root+"/#", 1, 1)
	v5SubID(s, root+"/a", 1, 2)
	v5Client(t, tg).publish(root+"/a", []byte("x"), 1, false)
	return v5Collect(s, 1, short*3)
}

// The Subscription Identifiers of all matching subscriptions reach the
// client across the copies it receives.
func TestMQTT5_3_3_4_3(t *testing.T) {
	t.Parallel()
	tg := target(t)
	var ids []uint32
	for _, g := range v5OverlapIDs(t, tg) {
		ids = append(ids, g.Properties.SubscriptionIDs...)
	}
	slices.Sort(ids)
	if !slices.Equal(slices.Compact(ids), []uint32{1, 2}) {
		t.Errorf("subscription identifiers %v, want 1 and 2 [MQTT-3.3.4-3]", ids)
	}

	// A retained message sent because of a subscription carries that
	// subscription's identifier too.
	tp := v5RetainedTopic(t, tg)
	s := v5Client(t, tg)
	v5SubID(s, tp, 1, 42)
	if p := s.receive(wait); !slices.Equal(p.Properties.SubscriptionIDs, []uint32{42}) {
		t.Errorf("retained message carries identifiers %v, want [42] [MQTT-3.3.4-3]", p.Properties.SubscriptionIDs)
	}
}

// A single delivered copy carries the identifiers of all matching
// subscriptions.
func TestMQTT5_3_3_4_4(t *testing.T) {
	t.Parallel()
	got := v5OverlapIDs(t, target(t))
	if len(got) != 1 {
		t.Logf("server sent %d copies; the single-copy rule does not apply (see MQTT-3.3.4-5)", len(got))
		return
	}
	ids := slices.Sorted(slices.Values(got[0].Properties.SubscriptionIDs))
	if !slices.Equal(ids, []uint32{1, 2}) {
		t.Errorf("single copy carries identifiers %v, want [1 2] [MQTT-3.3.4-4]", ids)
	}
}

// Separate copies each carry the identifier of their own subscription.
func TestMQTT5_3_3_4_5(t *testing.T) {
	t.Parallel()
	tg := target(t)
	root := topic(t)
	s := v5Client(t, tg)
	v5SubID(s, root+"/#", 1, 7)
	v5MustSub(s, root+"/a", 1) // no identifier
	v5Client(t, tg).publish(root+"/a", []byte("x"), 1, false)
	got := v5Collect(s, 1, short*3)
	if len(got) == 1 {
		if ids := got[0].Properties.SubscriptionIDs; !slices.Equal(ids, []uint32{7}) {
			t.Errorf("single copy carries %v, want [7]", ids)
		}
		return
	}
	var withID, without int
	for _, g := range got {
		switch ids := g.Properties.SubscriptionIDs; {
		case len(ids) == 0:
			without++
		case slices.Equal(ids, []uint32{7}):
			withID++
		default:
			t.Errorf("copy carries identifiers %v, want [7] or none [MQTT-3.3.4-5]", ids)
		}
	}
	if withID != 1 || without != 1 {
		t.Errorf("%d copies with id 7 and %d without, want one each [MQTT-3.3.4-5]", withID, without)
	}
}

// Payloads starting with a UTF-8 BOM and a BOM inside a topic and a user
// property arrive intact: the receiver never strips U+FEFF.
func TestMQTT5_1_5_4_3(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := topic(t, "\uFEFFbom")
	s := v5Client(t, tg)
	v5MustSub(s, tp, 1)
	up := []packets.UserProperty{{Key: "\uFEFFk", Value: "\uFEFF"}}
	v5Client(t, tg).publishWith(&packets.Publish{Topic: tp, QoS: 1, Payload: []byte("\uFEFFp"), Properties: packets.Properties{User: up, ContentType: "\uFEFFct"}})
	g := s.receive(wait)
	if g.Topic != tp || !slices.Equal(g.Properties.User, up) || g.Properties.ContentType != "\uFEFFct" {
		t.Errorf("BOM lost: topic %q user %v content type %q [MQTT-1.5.4-3]", g.Topic, g.Properties.User, g.Properties.ContentType)
	}
}
