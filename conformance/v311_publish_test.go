package conformance

// MQTT 3.1.1 §3.3 PUBLISH, §3.6 PUBREL, §4.3 QoS flows, §4.4 redelivery,
// §4.5 and §4.6 delivery and ordering, and retained messages.

import (
	"fmt"
	"testing"
	"unicode/utf8"

	"github.com/beaconmq/beacon/packets"
)

// pair returns a subscriber on tp at qos and a publisher, both fresh
// CleanSession=1 3.1.1 clients.
func pair(t *testing.T, tg *Target, tp string, qos byte) (sub, pub *Client) {
	t.Helper()
	sub = connectNew(t, tg, v4, clientID(t), true)
	if code := sub.subscribe(tp, qos); code != packets.ReasonCode(qos) {
		t.Fatalf("SUBSCRIBE %q QoS %d granted %v", tp, qos, code)
	}
	pub = connectNew(t, tg, v4, clientID(t), true)
	return sub, pub
}

// TestMQTT311_3_3_1_1: a PUBLISH re-delivered by the server (unacknowledged
// QoS 1, session resumed) has DUP=1.
func TestMQTT311_3_3_1_1(t *testing.T) {
	tg := target(t)
	id, tp := clientID(t), topic(t, "dup")
	c := connectNew(t, tg, v4, id, false)
	c.subscribe(tp, 1)
	pub := connectNew(t, tg, v4, clientID(t), true)
	pub.publish(tp, []byte("m"), 1, false)
	first := c.expectPublish(wait)
	if first.Dup {
		t.Fatalf("first delivery has DUP=1")
	}
	c.close() // no PUBACK
	c = connectNew(t, tg, v4, id, false)
	again := c.expectPublish(wait)
	if !again.Dup || again.PacketID != first.PacketID || string(again.Payload) != "m" {
		t.Fatalf("re-delivery %s, want DUP=1 with packet id %d", describe([]packets.Packet{again}), first.PacketID)
	}
	c.ack(again)
	cleanup(t, tg, id)
}

// TestMQTT311_3_3_1_2: every QoS 0 PUBLISH from the server has DUP=0.
func TestMQTT311_3_3_1_2(t *testing.T) {
	tg := target(t)
	tp := topic(t, "q0")
	sub, pub := pair(t, tg, tp, 0)
	pub.publish(tp, []byte("a"), 0, false)
	pub.publish(tp, []byte("b"), 1, false) // downgraded to QoS 0
	for range 2 {
		if p := sub.expectPublish(wait); p.Dup || p.QoS != 0 {
			t.Fatalf("got %s, want QoS 0 with DUP=0", describe([]packets.Packet{p}))
		}
	}
	for _, f := range sub.rawFrames() {
		if f[0]>>4 == byte(packets.TypePublish) && f[0]&0x08 != 0 {
			t.Fatalf("QoS 0 PUBLISH on the wire with DUP bit: % x", f[:2])
		}
	}
}

// TestMQTT311_3_3_1_3: the DUP flag of an outgoing PUBLISH depends only on
// whether that PUBLISH is a retransmission: a message received with DUP=1
// goes out to a subscriber for the first time with DUP=0.
func TestMQTT311_3_3_1_3(t *testing.T) {
	tg := target(t)
	tp := topic(t, "dupin")
	sub, pub := pair(t, tg, tp, 1)
	pub.publishWith(&packets.Publish{Topic: tp, Payload: []byte("d"), QoS: 1, Dup: true})
	if p := sub.receive(wait); p.Dup {
		t.Fatalf("first delivery to the subscriber carries DUP=1")
	}
}

// TestMQTT311_3_3_1_4: a PUBLISH with both QoS bits set is malformed; the
// server closes the connection.
func TestMQTT311_3_3_1_4(t *testing.T) {
	tg := target(t)
	c := connectNew(t, tg, v4, clientID(t), true)
	c.sendRaw(raw(0x36, str(topic(t)), u16(1), []byte("x")))
	c.expectClosed(wait)
}

// TestMQTT311_3_3_1_5: a RETAIN=1 message is stored with its QoS and given
// to future subscribers.
func TestMQTT311_3_3_1_5(t *testing.T) {
	tg := target(t)
	tp := topic(t, "ret")
	pub := connectNew(t, tg, v4, clientID(t), true)
	pub.publish(tp, []byte("stored"), 1, true)
	sub := connectNew(t, tg, v4, clientID(t), true)
	sub.subscribe(tp, 2)
	p := sub.receive(wait)
	if string(p.Payload) != "stored" || p.QoS != 1 || !p.Retain {
		t.Fatalf("got %s, want the retained message at its QoS 1", describe([]packets.Packet{p}))
	}
	clearRetained(t, tg, tp)
}

// TestMQTT311_3_3_1_6: a new subscription receives the last retained
// message of every matching topic.
func TestMQTT311_3_3_1_6(t *testing.T) {
	tg := target(t)
	root := topic(t)
	pub := connectNew(t, tg, v4, clientID(t), true)
	pub.publish(root+"/a", []byte("a-old"), 1, true)
	pub.publish(root+"/a", []byte("a-new"), 1, true)
	pub.publish(root+"/b", []byte("b"), 1, true)
	sub := connectNew(t, tg, v4, clientID(t), true)
	sub.subscribe(root+"/+", 1)
	got := map[string]string{}
	for range 2 {
		p := sub.receive(wait)
		got[p.Topic] = string(p.Payload)
	}
	if got[root+"/a"] != "a-new" || got[root+"/b"] != "b" {
		t.Fatalf("retained messages %v, want a-new and b", got)
	}
	sub.expectNone(short)
	clearRetained(t, tg, root+"/a")
	clearRetained(t, tg, root+"/b")
}

// TestMQTT311_3_3_1_7: a retained QoS 0 message replaces the stored one.
// (The server may discard a retained QoS 0 message later; right after the
// PUBLISH it must at least never hand out the replaced message.)
func TestMQTT311_3_3_1_7(t *testing.T) {
	tg := target(t)
	tp := topic(t, "ret0")
	pub := connectNew(t, tg, v4, clientID(t), true)
	pub.publish(tp, []byte("old"), 1, true)
	pub.publish(tp, []byte("new"), 0, true)
	pub.expectOpen() // the QoS 0 PUBLISH has been read before this PINGRESP
	sub := connectNew(t, tg, v4, clientID(t), true)
	sub.subscribe(tp, 1)
	if p := sub.receive(wait); string(p.Payload) != "new" || p.QoS != 0 {
		t.Fatalf("got %s, want the replacing QoS 0 message", describe([]packets.Packet{p}))
	}
	clearRetained(t, tg, tp)
}

// TestMQTT311_3_3_1_8: messages sent because of a new subscription carry
// RETAIN=1.
func TestMQTT311_3_3_1_8(t *testing.T) {
	tg := target(t)
	tp := topic(t, "rflag")
	pub := connectNew(t, tg, v4, clientID(t), true)
	pub.publish(tp, []byte("r"), 0, true)
	pub.expectOpen()
	sub := connectNew(t, tg, v4, clientID(t), true)
	sub.subscribe(tp, 0)
	if p := sub.expectPublish(wait); !p.Retain {
		t.Fatalf("retained message sent on subscription with RETAIN=0")
	}
	clearRetained(t, tg, tp)
}

// TestMQTT311_3_3_1_9: messages forwarded on an established subscription
// carry RETAIN=0 even when published with RETAIN=1.
func TestMQTT311_3_3_1_9(t *testing.T) {
	tg := target(t)
	tp := topic(t, "rlive")
	sub, pub := pair(t, tg, tp, 1)
	pub.publish(tp, []byte("live"), 1, true)
	if p := sub.receive(wait); p.Retain {
		t.Fatalf("message forwarded on an established subscription with RETAIN=1")
	}
	clearRetained(t, tg, tp)
}

// TestMQTT311_3_3_1_10: a retained PUBLISH with an empty payload removes the
// retained message of the topic.
func TestMQTT311_3_3_1_10(t *testing.T) {
	tg := target(t)
	tp := topic(t, "rdel")
	pub := connectNew(t, tg, v4, clientID(t), true)
	pub.publish(tp, []byte("x"), 1, true)
	pub.publish(tp, nil, 1, true)
	sub := connectNew(t, tg, v4, clientID(t), true)
	sub.subscribe(tp, 1)
	sub.expectNone(short)
}

// TestMQTT311_3_3_1_11: an empty-payload retained message is not itself
// kept as a retained message.
func TestMQTT311_3_3_1_11(t *testing.T) {
	tg := target(t)
	tp := topic(t, "rempty")
	pub := connectNew(t, tg, v4, clientID(t), true)
	pub.publish(tp, nil, 1, true)
	sub := connectNew(t, tg, v4, clientID(t), true)
	sub.subscribe(tp, 1)
	sub.expectNone(short)
}

// TestMQTT311_3_3_1_12: a RETAIN=0 PUBLISH is neither stored as retained nor
// changes the retained message already stored.
func TestMQTT311_3_3_1_12(t *testing.T) {
	tg := target(t)
	tp, fresh := topic(t, "keep"), topic(t, "fresh")
	pub := connectNew(t, tg, v4, clientID(t), true)
	pub.publish(tp, []byte("retained"), 1, true)
	pub.publish(tp, []byte("plain"), 1, false)
	pub.publish(fresh, []byte("plain"), 1, false)
	sub := connectNew(t, tg, v4, clientID(t), true)
	sub.subscribe(tp, 1)
	if p := sub.receive(wait); string(p.Payload) != "retained" {
		t.Fatalf("retained message is %q, want %q", p.Payload, "retained")
	}
	sub.subscribe(fresh, 1)
	sub.expectNone(short)
	clearRetained(t, tg, tp)
}

// TestMQTT311_3_3_2_1: the Topic Name of a delivered PUBLISH is the UTF-8
// string that was published, multi-byte characters intact.
func TestMQTT311_3_3_2_1(t *testing.T) {
	tg := target(t)
	tp := topic(t, "é", "日本", "ü")
	sub, pub := pair(t, tg, tp, 0)
	pub.publish(tp, []byte("u"), 0, false)
	p := sub.expectPublish(wait)
	if !utf8.ValidString(p.Topic) || p.Topic != tp {
		t.Fatalf("topic %q, want %q", p.Topic, tp)
	}
}

// TestMQTT311_3_3_2_2: a PUBLISH whose Topic Name holds a wildcard is a
// protocol violation; the server closes the connection.
func TestMQTT311_3_3_2_2(t *testing.T) {
	for _, name := range []string{"+", "#", "/a/+/b", "a/#"} {
		t.Run(name, func(t *testing.T) {
			tg := target(t)
			c := connectNew(t, tg, v4, clientID(t), true)
			c.sendRaw(raw(0x30, str(topic(t)+"/"+name), []byte("x")))
			c.expectClosed(wait)
		})
	}
}

// TestMQTT311_3_3_2_3: the Topic Name delivered is the published name that
// matched the filter, not the filter.
func TestMQTT311_3_3_2_3(t *testing.T) {
	tg := target(t)
	root := topic(t)
	sub, pub := pair(t, tg, root+"/+/c/#", 0)
	pub.publish(root+"/b/c/d/e", []byte("x"), 0, false)
	if p := sub.expectPublish(wait); p.Topic != root+"/b/c/d/e" {
		t.Fatalf("delivered topic %q", p.Topic)
	}
}

// TestMQTT311_3_3_4_1: the server answers a PUBLISH as its QoS requires:
// nothing for QoS 0, PUBACK for QoS 1, PUBREC (then PUBCOMP) for QoS 2.
func TestMQTT311_3_3_4_1(t *testing.T) {
	tg := target(t)
	c := connectNew(t, tg, v4, clientID(t), true)
	tp := topic(t, "ack")
	c.send(&packets.Publish{Topic: tp, Payload: []byte("0")})
	c.expectNone(short)
	c.send(&packets.Publish{Topic: tp, Payload: []byte("1"), QoS: 1, PacketID: 11})
	if a := expectType[*packets.Puback](c, wait); a.PacketID != 11 {
		t.Fatalf("PUBACK id %d", a.PacketID)
	}
	c.send(&packets.Publish{Topic: tp, Payload: []byte("2"), QoS: 2, PacketID: 12})
	if r := expectType[*packets.Pubrec](c, wait); r.PacketID != 12 {
		t.Fatalf("PUBREC id %d", r.PacketID)
	}
	c.send(&packets.Pubrel{PacketID: 12})
	if r := expectType[*packets.Pubcomp](c, wait); r.PacketID != 12 {
		t.Fatalf("PUBCOMP id %d", r.PacketID)
	}
	c.expectNone(short)
}

// TestMQTT311_3_3_5_1: a message matching overlapping subscriptions is
// delivered at the highest QoS among them (further copies are allowed).
func TestMQTT311_3_3_5_1(t *testing.T) {
	tg := target(t)
	root := topic(t)
	sub := connectNew(t, tg, v4, clientID(t), true)
	sub.subscribe(root+"/#", 0)
	sub.subscribe(root+"/a", 2)
	sub.subscribe(root+"/+", 1)
	pub := connectNew(t, tg, v4, clientID(t), true)
	pub.publish(root+"/a", []byte("x"), 2, false)
	first := sub.expectPublish(wait)
	sub.ack(first)
	pubs := append([]*packets.Publish{first}, sub.collect(short)...)
	best := byte(0)
	for _, p := range pubs {
		best = max(best, p.QoS)
	}
	if best != 2 {
		t.Fatalf("copies delivered at QoS %v, want one at QoS 2", qosList(pubs))
	}
}

// TestMQTT311_3_3_5_2: a PUBLISH the server does not authorise is still
// acknowledged as its QoS requires, or the connection is closed. Clients may
// not publish under $SYS/, so such a PUBLISH is the probe here.
func TestMQTT311_3_3_5_2(t *testing.T) {
	tg := target(t)
	c := connectNew(t, tg, v4, clientID(t), true)
	c.send(&packets.Publish{Topic: "$SYS/" + uid(t) + "/x", Payload: []byte("x"), QoS: 1, PacketID: 77})
	c.send(&packets.Pingreq{})
	p := c.waitOrClose(wait)
	if p == nil {
		return // closed: allowed
	}
	if a, ok := p.(*packets.Puback); !ok || a.PacketID != 77 {
		t.Fatalf("first answer %s, want PUBACK 77 or a close", describe([]packets.Packet{p}))
	}
}

// TestMQTT311_3_6_1_1: a PUBREL whose fixed-header flags are not 0010 is
// malformed; the server closes the connection.
func TestMQTT311_3_6_1_1(t *testing.T) {
	tg := target(t)
	c := connectNew(t, tg, v4, clientID(t), true)
	c.send(&packets.Publish{Topic: topic(t), Payload: []byte("x"), QoS: 2, PacketID: 5})
	expectType[*packets.Pubrec](c, wait)
	c.sendRaw(raw(0x60, u16(5)))
	c.expectClosed(wait)
}

// TestMQTT311_4_3_1_1: the server sends QoS 0 messages with QoS=0 and DUP=0
// in the fixed header.
func TestMQTT311_4_3_1_1(t *testing.T) {
	tg := target(t)
	tp := topic(t, "q0")
	sub, pub := pair(t, tg, tp, 0)
	pub.publish(tp, []byte("z"), 0, false)
	sub.expectPublish(wait)
	for _, f := range sub.rawFrames() {
		if f[0]>>4 == byte(packets.TypePublish) && f[0]&0x0e != 0 {
			t.Fatalf("QoS 0 PUBLISH header %#x: QoS or DUP bits set", f[0])
		}
	}
}

// TestMQTT311_4_3_2_1: the server sends QoS 1 messages with a fresh non-zero
// packet identifier, QoS=1, DUP=0, and treats them as unacknowledged until
// PUBACK (they come back on session resumption).
func TestMQTT311_4_3_2_1(t *testing.T) {
	tg := target(t)
	id, tp := clientID(t), topic(t, "q1")
	c := connectNew(t, tg, v4, id, false)
	c.subscribe(tp, 1)
	pub := connectNew(t, tg, v4, clientID(t), true)
	pub.publish(tp, []byte("a"), 1, false)
	pub.publish(tp, []byte("b"), 1, false)
	p1, p2 := c.expectPublish(wait), c.expectPublish(wait)
	for _, p := range []*packets.Publish{p1, p2} {
		if p.QoS != 1 || p.Dup || p.PacketID == 0 {
			t.Fatalf("got %s, want QoS 1, DUP 0, non-zero id", describe([]packets.Packet{p}))
		}
	}
	if p1.PacketID == p2.PacketID {
		t.Fatalf("two unacknowledged QoS 1 messages share packet id %d", p1.PacketID)
	}
	c.ack(p1)
	// The server handles a connection's packets in order: the PINGRESP
	// proves the PUBACK was processed before this connection goes away.
	c.expectOpen()
	c.close()
	c = connectNew(t, tg, v4, id, false)
	again := c.expectPublish(wait)
	if again.PacketID != p2.PacketID || string(again.Payload) != "b" {
		t.Fatalf("after reconnect got %s, want the unacknowledged message %d", describe([]packets.Packet{again}), p2.PacketID)
	}
	c.ack(again)
	c.expectNone(short)
	cleanup(t, tg, id)
}

// TestMQTT311_4_3_2_2: the server answers a QoS 1 PUBLISH with a PUBACK
// carrying its identifier; a later PUBLISH reusing the identifier is a new
// message and is delivered again.
func TestMQTT311_4_3_2_2(t *testing.T) {
	tg := target(t)
	tp := topic(t, "reuse")
	sub, pub := pair(t, tg, tp, 1)
	for _, payload := range []string{"first", "second"} {
		pub.publishWith(&packets.Publish{Topic: tp, Payload: []byte(payload), QoS: 1, PacketID: 42})
		if p := sub.receive(wait); string(p.Payload) != payload {
			t.Fatalf("got %q, want %q", p.Payload, payload)
		}
	}
}

// TestMQTT311_4_3_3_1: the server as QoS 2 sender: fresh identifier, QoS=2,
// DUP=0; after PUBREC it sends PUBREL and never the PUBLISH again, even when
// the session resumes (it resends the PUBREL).
func TestMQTT311_4_3_3_1(t *testing.T) {
	tg := target(t)
	id, tp := clientID(t), topic(t, "q2")
	c := connectNew(t, tg, v4, id, false)
	c.subscribe(tp, 2)
	pub := connectNew(t, tg, v4, clientID(t), true)
	pub.publish(tp, []byte("x"), 2, false)
	p := c.expectPublish(wait)
	if p.QoS != 2 || p.Dup || p.PacketID == 0 {
		t.Fatalf("got %s, want QoS 2, DUP 0, non-zero id", describe([]packets.Packet{p}))
	}
	c.send(&packets.Pubrec{PacketID: p.PacketID})
	if r := expectType[*packets.Pubrel](c, wait); r.PacketID != p.PacketID {
		t.Fatalf("PUBREL id %d, want %d", r.PacketID, p.PacketID)
	}
	c.close() // no PUBCOMP
	c = connectNew(t, tg, v4, id, false)
	if got := c.next(wait); got.Type() != packets.TypePubrel || got.(*packets.Pubrel).PacketID != p.PacketID {
		t.Fatalf("after reconnect got %s, want PUBREL %d", describe([]packets.Packet{got}), p.PacketID)
	}
	c.send(&packets.Pubcomp{PacketID: p.PacketID})
	c.expectNone(short)
	cleanup(t, tg, id)
}

// TestMQTT311_4_3_3_2: the server as QoS 2 receiver: PUBREC, a duplicate
// PUBLISH before PUBREL is answered with PUBREC again but not delivered
// twice, PUBCOMP answers PUBREL, and then the identifier names a new
// message.
func TestMQTT311_4_3_3_2(t *testing.T) {
	tg := target(t)
	tp := topic(t, "q2in")
	sub, pub := pair(t, tg, tp, 2)
	p := &packets.Publish{Topic: tp, Payload: []byte("once"), QoS: 2, PacketID: 9}
	pub.send(p)
	expectType[*packets.Pubrec](pub, wait)
	dup := *p
	dup.Dup = true
	pub.send(&dup)
	if r := expectType[*packets.Pubrec](pub, wait); r.PacketID != 9 {
		t.Fatalf("PUBREC for the duplicate has id %d", r.PacketID)
	}
	pub.send(&packets.Pubrel{PacketID: 9})
	if r := expectType[*packets.Pubcomp](pub, wait); r.PacketID != 9 {
		t.Fatalf("PUBCOMP id %d", r.PacketID)
	}
	if got := sub.receive(wait); string(got.Payload) != "once" {
		t.Fatalf("got %q", got.Payload)
	}
	sub.expectNone(short)
	pub.publishWith(&packets.Publish{Topic: tp, Payload: []byte("again"), QoS: 2, PacketID: 9})
	if got := sub.receive(wait); string(got.Payload) != "again" {
		t.Fatalf("identifier reuse: got %q, want the new message", got.Payload)
	}
}

// TestMQTT311_4_4_0_1: on resumption of a CleanSession=0 session the server
// resends unacknowledged PUBLISH packets (DUP=1) and PUBREL packets with
// their original identifiers.
func TestMQTT311_4_4_0_1(t *testing.T) {
	tg := target(t)
	id, root := clientID(t), topic(t)
	c := connectNew(t, tg, v4, id, false)
	c.subscribe(root+"/+", 2)
	pub := connectNew(t, tg, v4, clientID(t), true)
	pub.publish(root+"/one", []byte("q1"), 1, false)
	pub.publish(root+"/two", []byte("q2"), 2, false)
	var q1, q2 *packets.Publish
	for range 2 {
		p := c.expectPublish(wait)
		if p.QoS == 1 {
			q1 = p
		} else {
			q2 = p
		}
	}
	if q1 == nil || q2 == nil {
		t.Fatalf("expected one QoS 1 and one QoS 2 delivery")
	}
	c.send(&packets.Pubrec{PacketID: q2.PacketID})
	expectType[*packets.Pubrel](c, wait)
	c.close()

	c = connectNew(t, tg, v4, id, false)
	var sawPub, sawRel bool
	for !sawPub || !sawRel {
		switch p := c.next(wait).(type) {
		case *packets.Publish:
			if p.PacketID != q1.PacketID || !p.Dup || string(p.Payload) != "q1" {
				t.Fatalf("resent %s, want QoS 1 id %d with DUP=1", describe([]packets.Packet{p}), q1.PacketID)
			}
			c.ack(p)
			sawPub = true
		case *packets.Pubrel:
			if p.PacketID != q2.PacketID {
				t.Fatalf("resent PUBREL id %d, want %d", p.PacketID, q2.PacketID)
			}
			c.send(&packets.Pubcomp{PacketID: p.PacketID})
			sawRel = true
		default:
			t.Fatalf("unexpected %s", describe([]packets.Packet{p}))
		}
	}
	cleanup(t, tg, id)
}

// TestMQTT311_4_5_0_1: a message the server has accepted reaches the
// session of every matching subscriber, connected or not.
func TestMQTT311_4_5_0_1(t *testing.T) {
	tg := target(t)
	root := topic(t)
	off := clientID(t)
	o := connectNew(t, tg, v4, off, false)
	o.subscribe(root+"/#", 1)
	o.disconnect()
	a := connectNew(t, tg, v4, clientID(t), true)
	a.subscribe(root+"/x", 1)
	b := connectNew(t, tg, v4, clientID(t), true)
	b.subscribe(root+"/+", 0)
	pub := connectNew(t, tg, v4, clientID(t), true)
	pub.publish(root+"/x", []byte("all"), 1, false)
	for _, c := range []*Client{a, b} {
		if p := c.receive(wait); string(p.Payload) != "all" {
			t.Fatalf("got %q", p.Payload)
		}
	}
	o = connectNew(t, tg, v4, off, false)
	if p := o.receive(wait); string(p.Payload) != "all" {
		t.Fatalf("offline subscriber got %q", p.Payload)
	}
	cleanup(t, tg, off)
}

// TestMQTT311_4_6_0_6: messages from one client on one topic at one QoS are
// forwarded in the order they arrived (QoS 0, 1 and 2, pipelined).
func TestMQTT311_4_6_0_6(t *testing.T) {
	const n = 30
	for qos := byte(0); qos <= 2; qos++ {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) {
			tg := target(t)
			tp := topic(t, "order")
			sub, pub := pair(t, tg, tp, qos)
			for i := range n {
				p := &packets.Publish{Topic: tp, Payload: fmt.Appendf(nil, "%d", i), QoS: qos}
				if qos > 0 {
					p.PacketID = uint16(i + 1)
				}
				pub.send(p)
			}
			if qos == 2 { // release every message: a receiver may hold QoS 2 messages until PUBREL
				for range n {
					r := expectType[*packets.Pubrec](pub, wait)
					pub.send(&packets.Pubrel{PacketID: r.PacketID})
				}
			}
			for i := range n {
				got := sub.receive(wait)
				if string(got.Payload) != fmt.Sprint(i) {
					t.Fatalf("message %d has payload %q: out of order", i, got.Payload)
				}
			}
		})
	}
}

// TestMQTT311_7_1_1_1: the server speaks MQTT over TCP, an ordered lossless
// two-way byte stream: a packet sent byte by byte is understood.
func TestMQTT311_7_1_1_1(t *testing.T) {
	tg := target(t)
	c := dial(t, tg, v4)
	b := encode(t, &packets.Connect{ProtocolName: "MQTT", Version: v4, ClientID: clientID(t), CleanStart: true}, v4)
	for i := range b {
		c.sendRaw(b[i : i+1])
	}
	if ca := expectType[*packets.Connack](c, wait); ca.ReasonCode != packets.Success {
		t.Fatalf("CONNACK %v", ca.ReasonCode)
	}
	c.expectOpen()
}

// qosList lists the QoS of each PUBLISH for messages.
func qosList(ps []*packets.Publish) []byte {
	out := make([]byte, len(ps))
	for i, p := range ps {
		out[i] = p.QoS
	}
	return out
}
