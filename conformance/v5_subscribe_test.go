package conformance

// MQTT 5.0 SUBSCRIBE/SUBACK (§3.8, §3.9), UNSUBSCRIBE/UNSUBACK (§3.10,
// §3.11), topic names and filters (§4.7) and shared subscriptions (§4.8.2).

import (
	"slices"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
)

// A SUBSCRIBE whose fixed-header flags are not 0010 is malformed.
func TestMQTT5_3_8_1_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Client(t, tg)
	c.sendRaw(rawPkt(0x80, []byte{0, 1}, []byte{0}, rawStr(topic(t)), []byte{1}))
	v5ExpectDisconnect(c, tg, packets.MalformedPacket) // [MQTT-3.8.1-1]
}

// No Local 1: the publisher's own messages are not sent back to it; other
// clients still receive them.
func TestMQTT5_3_8_3_3(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := topic(t)
	me := v5Client(t, tg)
	v5Sub(me, packets.Subscription{Filter: tp, QoS: 1, NoLocal: true}, packets.Properties{})
	other := v5Client(t, tg)
	v5MustSub(other, tp, 1)
	me.publish(tp, []byte("mine"), 1, false)
	other.receive(wait)
	me.expectNone(short) // [MQTT-3.8.3-3]
	v5Client(t, tg).publish(tp, []byte("theirs"), 1, false)
	if p := me.receive(wait); string(p.Payload) != "theirs" {
		t.Errorf("got %q", p.Payload)
	}
}

// Reserved bits 6-7 of the Subscription Options set: malformed.
func TestMQTT5_3_8_3_5(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Client(t, tg)
	c.sendRaw(rawPkt(0x82, []byte{0, 1}, []byte{0}, rawStr(topic(t)), []byte{0xC1}))
	v5ExpectDisconnect(c, tg, packets.MalformedPacket, packets.ProtocolError) // [MQTT-3.8.3-5]
}

// Every SUBSCRIBE is answered with a SUBACK, also one with a refused filter.
func TestMQTT5_3_8_4_1(t *testing.T) {
	t.Parallel()
	c := v5Client(t, target(t))
	for _, f := range []string{topic(t), topic(t, "+"), topic(t, "#")} {
		c.subscribe(f, 1) // waits for the SUBACK [MQTT-3.8.4-1]
	}
}

// The SUBACK carries the SUBSCRIBE's Packet Identifier.
func TestMQTT5_3_8_4_2(t *testing.T) {
	t.Parallel()
	c := v5Client(t, target(t))
	for _, id := range []uint16{9, 0x8000} {
		c.send(&packets.Subscribe{PacketID: id, Subscriptions: []packets.Subscription{{Filter: topic(t)}}})
		if sa := expectType[*packets.Suback](c, wait); sa.PacketID != id {
			t.Errorf("SUBACK id %d, want %d [MQTT-3.8.4-2]", sa.PacketID, id)
		}
	}
}

// Subscribing again to the same filter replaces the subscription: one copy,
// at the new QoS.
func TestMQTT5_3_8_4_3(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := topic(t)
	s := v5Client(t, tg)
	v5MustSub(s, tp, 0)
	v5MustSub(s, tp, 2)
	v5Client(t, tg).publish(tp, []byte("x"), 2, false)
	got := v5Collect(s, 1, short*3)
	if len(got) != 1 || got[0].QoS != 2 {
		t.Errorf("after replacement got %d copies (%s), want one at QoS 2 [MQTT-3.8.4-3]", len(got), describe(toPackets(got)))
	}
}

func toPackets(ps []*packets.Publish) []packets.Packet {
	out := make([]packets.Packet, len(ps))
	for i, p := range ps {
		out[i] = p
	}
	return out
}

// Replacing a subscription with Retain Handling 0 resends the retained
// messages and loses no live message.
func TestMQTT5_3_8_4_4(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := v5RetainedTopic(t, tg)
	s := v5Client(t, tg)
	v5MustSub(s, tp, 1)
	if p := s.receive(wait); !p.Retain {
		t.Fatalf("first subscribe: no retained message")
	}
	v5MustSub(s, tp, 1)
	if p := s.receive(wait); !p.Retain || string(p.Payload) != "r" {
		t.Errorf("re-subscribe: got %s, want the retained message [MQTT-3.8.4-4]", describe([]packets.Packet{p}))
	}
	v5Client(t, tg).publish(tp, []byte("live"), 1, false)
	if p := s.receive(wait); string(p.Payload) != "live" {
		t.Errorf("got %q, want live", p.Payload)
	}
}

// A multi-filter SUBSCRIBE is handled like separate ones and answered by one
// SUBACK: each filter then delivers.
func TestMQTT5_3_8_4_5(t *testing.T) {
	t.Parallel()
	tg := target(t)
	a, b := topic(t), topic(t)
	s := v5Client(t, tg)
	sa := s.subscribeWith(&packets.Subscribe{Subscriptions: []packets.Subscription{{Filter: a, QoS: 1}, {Filter: b, QoS: 1}}})
	if len(sa.ReasonCodes) != 2 {
		t.Fatalf("one SUBACK with %d codes for 2 filters [MQTT-3.8.4-5]", len(sa.ReasonCodes))
	}
	s.expectNone(short) // no second SUBACK
	p := v5Client(t, tg)
	p.publish(a, []byte("a"), 1, false)
	p.publish(b, []byte("b"), 1, false)
	if got := v5Payloads(v5CollectN(s, 2)); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("delivered %v [MQTT-3.8.4-5]", got)
	}
}

// The SUBACK has one reason code per filter.
func TestMQTT5_3_8_4_6(t *testing.T) {
	t.Parallel()
	c := v5Client(t, target(t))
	subs := []packets.Subscription{{Filter: topic(t), QoS: 0}, {Filter: topic(t), QoS: 1}, {Filter: topic(t), QoS: 2}, {Filter: topic(t, "+"), QoS: 1}}
	if sa := c.subscribeWith(&packets.Subscribe{Subscriptions: subs}); len(sa.ReasonCodes) != len(subs) {
		t.Errorf("%d reason codes for %d filters [MQTT-3.8.4-6]", len(sa.ReasonCodes), len(subs))
	}
}

// Each SUBACK code is a granted QoS no higher than requested, or a failure.
func TestMQTT5_3_8_4_7(t *testing.T) {
	t.Parallel()
	c := v5Client(t, target(t))
	subs := []packets.Subscription{{Filter: topic(t), QoS: 0}, {Filter: topic(t), QoS: 1}, {Filter: topic(t), QoS: 2}}
	sa := c.subscribeWith(&packets.Subscribe{Subscriptions: subs})
	for i, code := range sa.ReasonCodes {
		if !code.IsError() && byte(code) > subs[i].QoS {
			t.Errorf("filter %d requested QoS %d, granted %v [MQTT-3.8.4-7]", i, subs[i].QoS, code)
		}
	}
}

// The delivered QoS is the lower of the published QoS and the granted QoS.
func TestMQTT5_3_8_4_8(t *testing.T) {
	t.Parallel()
	tg := target(t)
	for sq := byte(0); sq <= 2; sq++ {
		for pq := byte(0); pq <= 2; pq++ {
			tp := topic(t)
			s := v5Client(t, tg)
			v5MustSub(s, tp, sq)
			v5Client(t, tg).publish(tp, []byte("x"), pq, false)
			if p := s.receive(wait); p.QoS != min(sq, pq) {
				t.Errorf("subscribed %d, published %d: delivered QoS %d [MQTT-3.8.4-8]", sq, pq, p.QoS)
			}
		}
	}
}

// SUBACK reason codes follow the order of the filters.
func TestMQTT5_3_9_3_1(t *testing.T) {
	t.Parallel()
	c := v5Client(t, target(t))
	subs := []packets.Subscription{{Filter: topic(t), QoS: 2}, {Filter: topic(t), QoS: 0}, {Filter: topic(t), QoS: 1}}
	sa := c.subscribeWith(&packets.Subscribe{Subscriptions: subs})
	if !slices.Equal(sa.ReasonCodes, []rc{2, 0, 1}) {
		t.Errorf("SUBACK codes %v, want [2 0 1] [MQTT-3.9.3-1]", sa.ReasonCodes)
	}
}

// SUBACK codes are from the Subscribe Reason Code table, also for a shared
// subscription and a wildcard.
func TestMQTT5_3_9_3_2(t *testing.T) {
	t.Parallel()
	c := v5Client(t, target(t))
	subs := []packets.Subscription{{Filter: topic(t), QoS: 2}, {Filter: topic(t, "#"), QoS: 1}, {Filter: "$share/g" + uid(t) + "/" + topic(t), QoS: 1}}
	sa := c.subscribeWith(&packets.Subscribe{Subscriptions: subs, Properties: packets.Properties{SubscriptionIDs: []uint32{5}}})
	for _, code := range sa.ReasonCodes {
		if !slices.Contains(v5SubackCodes, code) {
			t.Errorf("SUBACK code %#x undefined [MQTT-3.9.3-2]", byte(code))
		}
	}
}

// An UNSUBSCRIBE whose fixed-header flags are not 0010 is malformed.
func TestMQTT5_3_10_1_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Client(t, tg)
	c.sendRaw(rawPkt(0xA0, []byte{0, 1}, []byte{0}, rawStr(topic(t))))
	v5ExpectDisconnect(c, tg, packets.MalformedPacket) // [MQTT-3.10.1-1]
}

// UNSUBSCRIBE filters are compared literally: "x/a" does not remove "x/+".
func TestMQTT5_3_10_4_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	root := topic(t)
	s := v5Client(t, tg)
	v5MustSub(s, root+"/+", 1)
	if ua := s.unsubscribe(root + "/a"); len(ua.ReasonCodes) != 1 || ua.ReasonCodes[0] != packets.NoSubscriptionExisted {
		t.Errorf("UNSUBSCRIBE of a non-literal match: %v, want 0x11 [MQTT-3.10.4-1]", ua.ReasonCodes)
	}
	pub := v5Client(t, tg)
	pub.publish(root+"/a", []byte("still"), 1, false)
	s.receive(wait) // [MQTT-3.10.4-1] subscription kept
	if ua := s.unsubscribe(root + "/+"); len(ua.ReasonCodes) != 1 || ua.ReasonCodes[0] != packets.Success {
		t.Errorf("UNSUBSCRIBE of the exact filter: %v, want 0x00", ua.ReasonCodes)
	}
	pub.publish(root+"/a", []byte("gone"), 1, false)
	s.expectNone(short)
}

// After UNSUBSCRIBE no new matching messages are delivered, including while
// the client is offline with its session.
func TestMQTT5_3_10_4_2(t *testing.T) {
	t.Parallel()
	tg := target(t)
	id, tp := clientID(t), topic(t)
	s, _ := v5Connect(t, tg, id, v5Session(true, 60))
	v5MustSub(s, tp, 1)
	s.unsubscribe(tp)
	pub := v5Client(t, tg)
	pub.publish(tp, []byte("x"), 1, false)
	s.expectNone(short) // [MQTT-3.10.4-2]
	v5Leave(s)
	pub.publish(tp, []byte("y"), 1, false)
	s2, _ := v5Connect(t, tg, id, v5Session(false, 60))
	s2.expectNone(short) // [MQTT-3.10.4-2]
}

// QoS 2 deliveries started before UNSUBSCRIBE are completed.
func TestMQTT5_3_10_4_3(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := topic(t)
	s := v5Client(t, tg)
	v5MustSub(s, tp, 2)
	v5Client(t, tg).publish(tp, []byte("x"), 2, false)
	p := s.expectPublish(wait)
	s.unsubscribe(tp)
	s.ack(p) // PUBREC -> PUBREL -> PUBCOMP still happens [MQTT-3.10.4-3]
}

// Every UNSUBSCRIBE is answered by an UNSUBACK.
func TestMQTT5_3_10_4_4(t *testing.T) {
	t.Parallel()
	c := v5Client(t, target(t))
	tp := topic(t)
	v5MustSub(c, tp, 0)
	c.unsubscribe(tp)
	c.unsubscribe(tp)
	c.unsubscribe(topic(t, "#")) // [MQTT-3.10.4-4]
}

// The UNSUBACK carries the UNSUBSCRIBE's identifier even when nothing was
// removed.
func TestMQTT5_3_10_4_5(t *testing.T) {
	t.Parallel()
	c := v5Client(t, target(t))
	c.send(&packets.Unsubscribe{PacketID: 0x4321, Filters: []string{topic(t)}})
	ua := expectType[*packets.Unsuback](c, wait)
	if ua.PacketID != 0x4321 {
		t.Errorf("UNSUBACK id %#x [MQTT-3.10.4-5]", ua.PacketID)
	}
	if len(ua.ReasonCodes) != 1 || ua.ReasonCodes[0] != packets.NoSubscriptionExisted {
		t.Errorf("UNSUBACK codes %v, want [0x11]", ua.ReasonCodes)
	}
}

// A multi-filter UNSUBSCRIBE is answered by one UNSUBACK and removes each.
func TestMQTT5_3_10_4_6(t *testing.T) {
	t.Parallel()
	tg := target(t)
	a, b := topic(t), topic(t)
	s := v5Client(t, tg)
	v5MustSub(s, a, 1)
	v5MustSub(s, b, 1)
	if ua := s.unsubscribe(a, b); len(ua.ReasonCodes) != 2 {
		t.Errorf("UNSUBACK with %d codes for 2 filters [MQTT-3.10.4-6]", len(ua.ReasonCodes))
	}
	s.expectNone(short) // no second UNSUBACK
	p := v5Client(t, tg)
	p.publish(a, []byte("a"), 1, false)
	p.publish(b, []byte("b"), 1, false)
	s.expectNone(short)
}

// UNSUBACK codes follow the order of the filters.
func TestMQTT5_3_11_3_1(t *testing.T) {
	t.Parallel()
	c := v5Client(t, target(t))
	a, b, none := topic(t), topic(t), topic(t)
	v5MustSub(c, a, 0)
	v5MustSub(c, b, 0)
	ua := c.unsubscribe(none, a, none+"/x", b)
	if !slices.Equal(ua.ReasonCodes, []rc{0x11, 0x00, 0x11, 0x00}) {
		t.Errorf("UNSUBACK codes %v, want [0x11 0 0x11 0] [MQTT-3.11.3-1]", ua.ReasonCodes)
	}
}

// UNSUBACK codes are from the Unsubscribe Reason Code table.
func TestMQTT5_3_11_3_2(t *testing.T) {
	t.Parallel()
	c := v5Client(t, target(t))
	a := topic(t)
	v5MustSub(c, a, 0)
	ua := c.unsubscribe(a, topic(t), "$share/g"+uid(t)+"/"+topic(t))
	for _, code := range ua.ReasonCodes {
		if !slices.Contains(v5UnsubackCodes, code) {
			t.Errorf("UNSUBACK code %#x undefined [MQTT-3.11.3-2]", byte(code))
		}
	}
}

// v5BadFilter subscribes to an invalid filter and requires a refusal: a
// SUBACK failure code or the connection closed (0x81, 0x82, 0x8F).
func v5BadFilter(t *testing.T, tg *Target, filter, id string) {
	t.Helper()
	c := v5Client(t, tg)
	c.sendRaw(rawPkt(0x82, []byte{0, 1}, []byte{0}, rawStr(filter), []byte{1})) // raw: the encoder refuses bad filters
	switch p := c.waitClosedOrPacket().(type) {
	case nil:
	case *packets.Suback:
		if len(p.ReasonCodes) != 1 || !p.ReasonCodes[0].IsError() {
			t.Errorf("invalid filter %q granted: %v [%s]", filter, p.ReasonCodes, id)
		}
	case *packets.Disconnect:
		if !slices.Contains([]rc{packets.MalformedPacket, packets.ProtocolError, packets.TopicFilterInvalid}, p.ReasonCode) {
			t.Errorf("invalid filter %q: DISCONNECT %v", filter, p.ReasonCode)
		}
		c.expectClosed(wait)
	default:
		t.Errorf("invalid filter %q answered with %s", filter, describe([]packets.Packet{p}))
	}
}

// '#' must be last and alone in its level.
func TestMQTT5_4_7_1_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	root := topic(t)
	for _, f := range []string{root + "/#/x", root + "/a#", root + "#"} {
		v5BadFilter(t, tg, f, "MQTT-4.7.1-1")
	}
	c := v5Client(t, tg)
	v5MustSub(c, root+"/#", 0)
	v5Client(t, tg).publish(root, []byte("parent"), 0, false)
	if p := c.receive(wait); p.Topic != root {
		t.Errorf("'%s/#' did not match the parent level %q", root, root)
	}
}

// '+' fills a whole level: invalid inside a level; matches exactly one
// level, including an empty one.
func TestMQTT5_4_7_1_2(t *testing.T) {
	t.Parallel()
	tg := target(t)
	root := topic(t)
	v5BadFilter(t, tg, root+"/a+", "MQTT-4.7.1-2")
	v5BadFilter(t, tg, root+"/+a/b", "MQTT-4.7.1-2")
	s := v5Client(t, tg)
	v5MustSub(s, root+"/+/z", 1)
	p := v5Client(t, tg)
	for _, tp := range []string{root + "/a/z", root + "//z", root + "/a/b/z", root + "/z"} {
		p.publish(tp, []byte(tp), 1, false)
	}
	var got []string
	for _, g := range v5Collect(s, 2, short*3) {
		got = append(got, g.Topic)
	}
	slices.Sort(got)
	if want := []string{root + "//z", root + "/a/z"}; !slices.Equal(got, want) {
		t.Errorf("'+' matched %q, want %q [MQTT-4.7.1-2]", got, want)
	}
}

// Filters starting with '#' or '+' do not match topics starting with '$'.
func TestMQTT5_4_7_2_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	dollar := "$cf" + uid(t) + "/x"
	all := v5Client(t, tg)
	v5MustSub(all, "#", 0)
	v5MustSub(all, "+/x", 0)
	direct := v5Client(t, tg)
	v5MustSub(direct, dollar, 0)
	v5Client(t, tg).publish(dollar, []byte("d"), 1, false)
	if p := direct.receive(wait); p.Topic != dollar {
		t.Fatalf("exact subscriber got %q", p.Topic)
	}
	for _, p := range v5Publishes(all, 0, short*2) {
		if p.Topic == dollar {
			t.Errorf("'#' or '+/x' matched %q [MQTT-4.7.2-1]", dollar)
		}
	}
}

// Topic Names and Filters are at least one character: an empty Topic Name
// without an alias and an empty filter are refused.
func TestMQTT5_4_7_3_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Client(t, tg)
	c.sendRaw(rawPublish0("", []byte{0}, "empty"))
	v5ExpectDisconnect(c, tg, packets.ProtocolError, packets.MalformedPacket, packets.TopicNameInvalid) // [MQTT-4.7.3-1]
	v5BadFilter(t, tg, "", "MQTT-4.7.3-1")
}

// A NUL character in a Topic Filter is refused.
func TestMQTT5_4_7_3_2(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Client(t, tg)
	c.sendRaw(rawPkt(0x82, []byte{0, 1}, []byte{0}, rawStr(topic(t)+"/a\x00b"), []byte{1}))
	switch p := c.waitClosedOrPacket().(type) {
	case nil:
	case *packets.Suback:
		if !p.ReasonCodes[0].IsError() {
			t.Errorf("filter with U+0000 granted [MQTT-4.7.3-2]")
		}
	case *packets.Disconnect:
		if !slices.Contains([]rc{packets.MalformedPacket, packets.TopicFilterInvalid, packets.ProtocolError}, p.ReasonCode) {
			t.Errorf("DISCONNECT %v", p.ReasonCode)
		}
	default:
		t.Errorf("got %s", describe([]packets.Packet{p}))
	}
}

// Matching does no normalisation: case, trailing slash, doubled slash and
// Unicode normal forms all count as different topics.
func TestMQTT5_4_7_3_4(t *testing.T) {
	t.Parallel()
	tg := target(t)
	root := topic(t)
	s := v5Client(t, tg)
	v5MustSub(s, root+"/caf\u00e9", 1) // NFC
	p := v5Client(t, tg)
	for _, tp := range []string{root + "/cafe\u0301", root + "/CAF\u00c9", root + "/caf\u00e9/", root + "//caf\u00e9", root + "/caf\u00e9"} {
		p.publish(tp, []byte(tp), 1, false)
	}
	got := v5Collect(s, 1, short*3)
	if len(got) != 1 || got[0].Topic != root+"/caf\u00e9" {
		var tps []string
		for _, g := range got {
			tps = append(tps, g.Topic)
		}
		t.Errorf("matched %q, want only the exact NFC topic [MQTT-4.7.3-4]", tps)
	}
}

// v5SharedOK returns whether the server supports shared subscriptions
// (Shared Subscription Available absent or 1).
func v5SharedOK(ack *packets.Connack) bool {
	return !ack.Properties.Has(packets.PropSharedSubAvailable) || ack.Properties.SharedSubAvailable == 1
}

// "$share/" must be followed by a non-empty ShareName.
func TestMQTT5_4_8_2_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	v5BadFilter(t, tg, "$share//"+topic(t), "MQTT-4.8.2-1")
	c, ack := v5Connect(t, tg, "", nil)
	if v5SharedOK(ack) {
		v5MustSub(c, "$share/g"+uid(t)+"/"+topic(t), 1)
	}
}

// The ShareName has no '/', '+' or '#' and is followed by '/' and a filter.
func TestMQTT5_4_8_2_2(t *testing.T) {
	t.Parallel()
	tg := target(t)
	for _, f := range []string{"$share/g+x/" + topic(t), "$share/g#/" + topic(t), "$share/g" + uid(t)} {
		v5BadFilter(t, tg, f, "MQTT-4.8.2-2")
	}
}

// v5ShareGroup subscribes n members to a fresh shared subscription at qos;
// it returns the members, the topic and the shared filter.
func v5ShareGroup(t *testing.T, tg *Target, n int, qos byte, mod func(*packets.Connect)) ([]*Client, string) {
	t.Helper()
	tp := topic(t)
	filter := "$share/g" + uid(t) + "/" + tp
	var members []*Client
	for range n {
		c, ack := v5Connect(t, tg, "", mod)
		if !v5SharedOK(ack) {
			t.Skip("server announces Shared Subscription Available 0")
		}
		v5MustSub(c, filter, qos)
		members = append(members, c)
	}
	return members, tp
}

// A shared subscription delivers at the QoS granted to the receiving member.
func TestMQTT5_4_8_2_3(t *testing.T) {
	t.Parallel()
	tg := target(t)
	members, tp := v5ShareGroup(t, tg, 1, 0, nil)
	v5Client(t, tg).publish(tp, []byte("x"), 2, false)
	if p := members[0].receive(wait); p.QoS != 0 {
		t.Errorf("shared delivery at QoS %d, granted 0 [MQTT-4.8.2-3]", p.QoS)
	}
}

// An interrupted QoS 2 delivery to a shared subscriber is completed when that
// client reconnects, and nobody else gets the message.
func TestMQTT5_4_8_2_4(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := topic(t)
	filter := "$share/g" + uid(t) + "/" + tp
	id := clientID(t)
	a, ack := v5Connect(t, tg, id, v5Session(true, 60))
	if !v5SharedOK(ack) {
		t.Skip("server announces Shared Subscription Available 0")
	}
	v5MustSub(a, filter, 2)
	v5Client(t, tg).publish(tp, []byte("q2"), 2, false)
	p := a.expectPublish(wait)
	a.close()
	b := v5Client(t, tg)
	v5MustSub(b, filter, 2)
	a2, _ := v5Connect(t, tg, id, v5Session(false, 60))
	again := a2.expectPublish(wait) // [MQTT-4.8.2-4]
	if again.PacketID != p.PacketID || string(again.Payload) != "q2" {
		t.Errorf("resent %s, want id %d", describe([]packets.Packet{again}), p.PacketID)
	}
	a2.ack(again)
	b.expectNone(short)
}

// If the session of a shared subscriber with an interrupted QoS 2 delivery
// ends before it reconnects, the message goes to no other member.
func TestMQTT5_4_8_2_5(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := topic(t)
	filter := "$share/g" + uid(t) + "/" + tp
	a, ack := v5Connect(t, tg, "", v5Session(true, 0))
	if !v5SharedOK(ack) {
		t.Skip("server announces Shared Subscription Available 0")
	}
	v5MustSub(a, filter, 2)
	v5Client(t, tg).publish(tp, []byte("q2"), 2, false)
	a.expectPublish(wait)
	b := v5Client(t, tg)
	v5MustSub(b, filter, 2)
	a.close() // session expiry 0: the session ends with the connection
	for _, p := range v5Publishes(b, 0, 1500*time.Millisecond) {
		if string(p.Payload) == "q2" {
			t.Errorf("interrupted QoS 2 message redelivered to another member [MQTT-4.8.2-5]")
		}
	}
}

// A shared subscriber's error PUBACK discards the message: it is not sent to
// another member.
func TestMQTT5_4_8_2_6(t *testing.T) {
	t.Parallel()
	tg := target(t)
	members, tp := v5ShareGroup(t, tg, 2, 1, nil)
	v5Client(t, tg).publish(tp, []byte("reject-me"), 1, false)
	got, who := v5FirstOf(t, members)
	members[who].send(&packets.Puback{PacketID: got.PacketID, ReasonCode: packets.UnspecifiedError})
	other := members[1-who]
	for _, p := range v5Publishes(other, 0, 1500*time.Millisecond) {
		if string(p.Payload) == "reject-me" {
			t.Errorf("rejected message redelivered to another member [MQTT-4.8.2-6]")
		}
	}
}

// v5FirstOf waits for the first PUBLISH to reach any of the clients and
// returns it with the index of the client that got it.
func v5FirstOf(t *testing.T, cs []*Client) (*packets.Publish, int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		for i, c := range cs {
			if len(c.queue) == 0 {
				c.pull(20 * time.Millisecond)
			}
			if len(c.queue) > 0 {
				return c.expectPublish(wait), i
			}
		}
	}
	t.Fatalf("no client received a PUBLISH within %v", wait)
	return nil, 0
}
