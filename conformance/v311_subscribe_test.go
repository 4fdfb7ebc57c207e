package conformance

// MQTT 3.1.1 §3.8-3.11 SUBSCRIBE/SUBACK/UNSUBSCRIBE/UNSUBACK and §4.7 topic
// names, filters and matching.

import (
	"testing"

	"github.com/beaconmq/beacon/packets"
)

// expectRejectedFilter sends a SUBSCRIBE for an invalid filter and accepts
// either answer 3.1.1 allows: the connection closed as for a protocol
// violation [MQTT-4.8.0-1], or a SUBACK with the failure code 0x80.
func expectRejectedFilter(t *testing.T, tg *Target, filter string) {
	t.Helper()
	c := connectNew(t, tg, v4, clientID(t), true)
	c.sendRaw(raw(0x82, u16(3), str(filter), []byte{0})) // raw: our encoder refuses invalid filters
	p := c.waitOrClose(wait)
	if p == nil {
		return
	}
	sa, ok := p.(*packets.Suback)
	if !ok || len(sa.ReasonCodes) != 1 || sa.ReasonCodes[0] != 0x80 {
		t.Fatalf("invalid filter %q: got %s, want SUBACK 0x80 or a close", filter, describe([]packets.Packet{p}))
	}
}

// TestMQTT311_3_8_1_1: a SUBSCRIBE whose fixed-header flags are not 0010 is
// malformed; the server closes the connection.
func TestMQTT311_3_8_1_1(t *testing.T) {
	tg := target(t)
	c := connectNew(t, tg, v4, clientID(t), true)
	c.sendRaw(raw(0x80, u16(1), str(topic(t)), []byte{0}))
	c.expectClosed(wait)
}

// TestMQTT311_3_8_3_2: a server that does not support wildcards rejects
// filters that hold them; one that accepts them must make them work.
func TestMQTT311_3_8_3_2(t *testing.T) {
	tg := target(t)
	root := topic(t)
	sub := connectNew(t, tg, v4, clientID(t), true)
	code := sub.subscribe(root+"/+/x/#", 1)
	if code == 0x80 {
		return // wildcards not supported: rejected, as required
	}
	pub := connectNew(t, tg, v4, clientID(t), true)
	pub.publish(root+"/a/x/b/c", []byte("w"), 1, false)
	if p := sub.receive(wait); p.Topic != root+"/a/x/b/c" {
		t.Fatalf("wildcard subscription granted (%v) but delivered %q", code, p.Topic)
	}
}

// TestMQTT311_3_8_3_4: non-zero reserved bits in the requested-QoS byte, or
// QoS 3, make the SUBSCRIBE malformed; the server closes the connection.
func TestMQTT311_3_8_3_4(t *testing.T) {
	for name, opt := range map[string]byte{"qos 3": 0x03, "reserved bit 2": 0x05, "reserved bit 7": 0x81} {
		t.Run(name, func(t *testing.T) {
			tg := target(t)
			c := connectNew(t, tg, v4, clientID(t), true)
			c.sendRaw(raw(0x82, u16(1), str(topic(t)), []byte{opt}))
			c.expectClosed(wait)
		})
	}
}

// TestMQTT311_3_8_4_1: every SUBSCRIBE is answered with a SUBACK, also
// repeated and overlapping ones.
func TestMQTT311_3_8_4_1(t *testing.T) {
	tg := target(t)
	c := connectNew(t, tg, v4, clientID(t), true)
	root := topic(t)
	for _, f := range []string{root + "/a", root + "/a", root + "/#", root + "/+"} {
		c.subscribe(f, 1) // fails unless a SUBACK with the same id comes back
	}
}

// TestMQTT311_3_8_4_2: the SUBACK carries the SUBSCRIBE's packet id.
func TestMQTT311_3_8_4_2(t *testing.T) {
	tg := target(t)
	c := connectNew(t, tg, v4, clientID(t), true)
	for _, id := range []uint16{1, 0xABCD, 0xFFFF} {
		c.subscribeWith(&packets.Subscribe{PacketID: id, Subscriptions: []packets.Subscription{{Filter: topic(t)}}})
	}
}

// TestMQTT311_3_8_4_3: subscribing again to an identical filter replaces the
// subscription (new QoS, one copy per message), resends the retained
// message, and keeps publications flowing.
func TestMQTT311_3_8_4_3(t *testing.T) {
	tg := target(t)
	tp := topic(t, "again")
	pub := connectNew(t, tg, v4, clientID(t), true)
	pub.publish(tp, []byte("ret"), 1, true)
	sub := connectNew(t, tg, v4, clientID(t), true)
	sub.subscribe(tp, 0)
	if p := sub.receive(wait); string(p.Payload) != "ret" {
		t.Fatalf("got %q, want the retained message", p.Payload)
	}
	sub.subscribe(tp, 1)
	if p := sub.receive(wait); string(p.Payload) != "ret" || !p.Retain {
		t.Fatalf("got %s, want the retained message again", describe([]packets.Packet{p}))
	}
	pub.publish(tp, []byte("live"), 1, false)
	p := sub.receive(wait)
	if string(p.Payload) != "live" || p.QoS != 1 {
		t.Fatalf("got %s, want live at the new QoS 1", describe([]packets.Packet{p}))
	}
	sub.expectNone(short) // replaced, not added: a single copy
	clearRetained(t, tg, tp)
}

// TestMQTT311_3_8_4_4: a SUBSCRIBE with several filters is handled like
// separate ones and answered by a single SUBACK.
func TestMQTT311_3_8_4_4(t *testing.T) {
	tg := target(t)
	root := topic(t)
	sub := connectNew(t, tg, v4, clientID(t), true)
	sa := sub.subscribeWith(&packets.Subscribe{Subscriptions: []packets.Subscription{
		{Filter: root + "/a", QoS: 0}, {Filter: root + "/b", QoS: 1}, {Filter: root + "/c", QoS: 2},
	}})
	if len(sa.ReasonCodes) != 3 {
		t.Fatalf("SUBACK has %d codes, want 3", len(sa.ReasonCodes))
	}
	sub.expectNone(short) // one SUBACK only
	pub := connectNew(t, tg, v4, clientID(t), true)
	got := map[string]bool{}
	for _, l := range []string{"a", "b", "c"} {
		pub.publish(root+"/"+l, []byte(l), 2, false)
		got[sub.receive(wait).Topic] = true
	}
	if len(got) != 3 {
		t.Fatalf("deliveries %v, want one per filter", got)
	}
}

// TestMQTT311_3_8_4_5: the SUBACK has one return code per filter, each a
// granted QoS no higher than requested, or 0x80.
func TestMQTT311_3_8_4_5(t *testing.T) {
	tg := target(t)
	root := topic(t)
	c := connectNew(t, tg, v4, clientID(t), true)
	req := []byte{2, 1, 0, 2}
	subs := make([]packets.Subscription, len(req))
	for i, q := range req {
		subs[i] = packets.Subscription{Filter: root + "/" + string(rune('a'+i)), QoS: q}
	}
	sa := c.subscribeWith(&packets.Subscribe{Subscriptions: subs})
	if len(sa.ReasonCodes) != len(req) {
		t.Fatalf("SUBACK has %d codes for %d filters", len(sa.ReasonCodes), len(req))
	}
	for i, code := range sa.ReasonCodes {
		if code != 0x80 && byte(code) > req[i] {
			t.Fatalf("code %d is %#x for requested QoS %d", i, byte(code), req[i])
		}
	}
}

// TestMQTT311_3_8_4_6: the delivered QoS is the lower of the published QoS
// and the granted QoS.
func TestMQTT311_3_8_4_6(t *testing.T) {
	tg := target(t)
	for _, tc := range []struct{ sub, pub byte }{{1, 2}, {2, 1}, {0, 2}, {2, 0}, {1, 1}} {
		tp := topic(t, "min")
		s := connectNew(t, tg, v4, clientID(t), true)
		granted := byte(s.subscribe(tp, tc.sub))
		if granted > 2 {
			t.Fatalf("SUBSCRIBE QoS %d refused", tc.sub)
		}
		p := connectNew(t, tg, v4, clientID(t), true)
		p.publish(tp, []byte("q"), tc.pub, false)
		if got := s.receive(wait); got.QoS != min(granted, tc.pub) {
			t.Fatalf("granted %d, published %d: delivered at QoS %d", granted, tc.pub, got.QoS)
		}
	}
}

// TestMQTT311_3_9_3_1: SUBACK return codes follow the order of the filters.
func TestMQTT311_3_9_3_1(t *testing.T) {
	tg := target(t)
	root := topic(t)
	c := connectNew(t, tg, v4, clientID(t), true)
	req := []byte{2, 0, 1}
	sa := c.subscribeWith(&packets.Subscribe{Subscriptions: []packets.Subscription{
		{Filter: root + "/x", QoS: 2}, {Filter: root + "/y", QoS: 0}, {Filter: root + "/z", QoS: 1},
	}})
	if len(sa.ReasonCodes) != 3 {
		t.Fatalf("SUBACK has %d codes", len(sa.ReasonCodes))
	}
	// A server may grant less than asked, never more: with 2, 0, 1 asked,
	// any reordering of grants shows up as a grant above its request.
	for i, code := range sa.ReasonCodes {
		if code != 0x80 && byte(code) > req[i] {
			t.Fatalf("codes %v do not follow the filter order (requested %v)", sa.ReasonCodes, req)
		}
	}
}

// TestMQTT311_3_9_3_2: SUBACK return codes are only 0x00, 0x01, 0x02 and
// 0x80.
func TestMQTT311_3_9_3_2(t *testing.T) {
	tg := target(t)
	root := topic(t)
	c := connectNew(t, tg, v4, clientID(t), true)
	sa := c.subscribeWith(&packets.Subscribe{Subscriptions: []packets.Subscription{
		{Filter: root + "/a", QoS: 0}, {Filter: root + "/+", QoS: 1}, {Filter: root + "/#", QoS: 2},
		{Filter: "$SYS/" + uid(t), QoS: 2}, {Filter: "+/" + uid(t), QoS: 1},
	}})
	for _, f := range c.rawFrames() {
		if f[0] == 0x90 {
			for _, b := range frameBody(f)[2:] { // after the packet id
				if b != 0 && b != 1 && b != 2 && b != 0x80 {
					t.Fatalf("SUBACK return code %#x", b)
				}
			}
		}
	}
	if len(sa.ReasonCodes) != 5 {
		t.Fatalf("SUBACK has %d codes, want 5", len(sa.ReasonCodes))
	}
}

// TestMQTT311_3_10_1_1: an UNSUBSCRIBE whose fixed-header flags are not
// 0010 is malformed; the server closes the connection.
func TestMQTT311_3_10_1_1(t *testing.T) {
	tg := target(t)
	c := connectNew(t, tg, v4, clientID(t), true)
	c.sendRaw(raw(0xA0, u16(1), str(topic(t))))
	c.expectClosed(wait)
}

// TestMQTT311_3_10_4_1: UNSUBSCRIBE filters are compared character by
// character with stored filters; a wildcard does not remove the filters it
// would match, an exact filter removes its subscription.
func TestMQTT311_3_10_4_1(t *testing.T) {
	tg := target(t)
	root := topic(t)
	sub, pub := pair(t, tg, root+"/a", 1)
	sub.unsubscribe(root+"/+", root+"/#")
	pub.publish(root+"/a", []byte("still"), 1, false)
	if p := sub.receive(wait); string(p.Payload) != "still" {
		t.Fatalf("got %q", p.Payload)
	}
	sub.unsubscribe(root + "/a")
	pub.publish(root+"/a", []byte("gone"), 1, false)
	sub.expectNone(short)
}

// TestMQTT311_3_10_4_2: after UNSUBSCRIBE no new messages arrive on the
// removed subscription.
func TestMQTT311_3_10_4_2(t *testing.T) {
	tg := target(t)
	tp := topic(t, "u")
	sub, pub := pair(t, tg, tp, 2)
	pub.publish(tp, []byte("before"), 2, false)
	sub.receive(wait)
	sub.unsubscribe(tp)
	for q := byte(0); q <= 2; q++ {
		pub.publish(tp, []byte("after"), q, false)
	}
	sub.expectNone(short)
}

// TestMQTT311_3_10_4_3: QoS 1 and 2 deliveries already started complete
// after the subscription is removed.
func TestMQTT311_3_10_4_3(t *testing.T) {
	tg := target(t)
	tp := topic(t, "u")
	sub, pub := pair(t, tg, tp, 2)
	pub.publish(tp, []byte("inflight"), 2, false)
	p := sub.expectPublish(wait)
	sub.unsubscribe(tp)
	sub.send(&packets.Pubrec{PacketID: p.PacketID})
	if r := expectType[*packets.Pubrel](sub, wait); r.PacketID != p.PacketID {
		t.Fatalf("PUBREL id %d, want %d", r.PacketID, p.PacketID)
	}
	sub.send(&packets.Pubcomp{PacketID: p.PacketID})
	sub.expectOpen()
}

// TestMQTT311_3_10_4_4: the UNSUBACK carries the UNSUBSCRIBE's packet id.
func TestMQTT311_3_10_4_4(t *testing.T) {
	tg := target(t)
	c := connectNew(t, tg, v4, clientID(t), true)
	tp := topic(t)
	c.subscribe(tp, 0)
	for _, id := range []uint16{0x1234, 0xFFFF} {
		c.send(&packets.Unsubscribe{PacketID: id, Filters: []string{tp}})
		if ua := expectType[*packets.Unsuback](c, wait); ua.PacketID != id {
			t.Fatalf("UNSUBACK id %#x, want %#x", ua.PacketID, id)
		}
	}
}

// TestMQTT311_3_10_4_5: UNSUBACK is sent even when nothing was removed.
func TestMQTT311_3_10_4_5(t *testing.T) {
	tg := target(t)
	c := connectNew(t, tg, v4, clientID(t), true)
	c.unsubscribe(topic(t, "never"))
}

// TestMQTT311_3_10_4_6: an UNSUBSCRIBE with several filters is handled like
// separate ones and answered by a single UNSUBACK.
func TestMQTT311_3_10_4_6(t *testing.T) {
	tg := target(t)
	root := topic(t)
	sub := connectNew(t, tg, v4, clientID(t), true)
	sub.subscribe(root+"/a", 1)
	sub.subscribe(root+"/b", 1)
	sub.unsubscribe(root+"/a", root+"/b")
	sub.expectNone(short) // one UNSUBACK only
	pub := connectNew(t, tg, v4, clientID(t), true)
	pub.publish(root+"/a", []byte("x"), 1, false)
	pub.publish(root+"/b", []byte("x"), 1, false)
	sub.expectNone(short)
}

// TestMQTT311_4_7_1_2: '#' is valid only alone or after '/', as the last
// character; where valid it matches the parent level and any number of
// levels below.
func TestMQTT311_4_7_1_2(t *testing.T) {
	tg := target(t)
	root := topic(t)
	for _, bad := range []string{root + "/#/x", root + "/a#", root + "#"} {
		t.Run("reject "+bad[len(root):], func(t *testing.T) { expectRejectedFilter(t, tg, bad) })
	}
	sub, pub := pair(t, tg, root+"/s/#", 0)
	for _, tp := range []string{root + "/s", root + "/s/a", root + "/s/a/b/c"} {
		pub.publish(tp, []byte("x"), 0, false)
		if p := sub.expectPublish(wait); p.Topic != tp {
			t.Fatalf("got %q, want %q", p.Topic, tp)
		}
	}
	pub.publish(root+"/sx", []byte("x"), 0, false)
	sub.expectNone(short)
}

// TestMQTT311_4_7_1_3: '+' must fill a whole level; it matches exactly one
// level, the empty level included.
func TestMQTT311_4_7_1_3(t *testing.T) {
	tg := target(t)
	root := topic(t)
	for _, bad := range []string{root + "/a+", root + "/+a/b", root + "+"} {
		t.Run("reject "+bad[len(root):], func(t *testing.T) { expectRejectedFilter(t, tg, bad) })
	}
	sub, pub := pair(t, tg, root+"/+/c", 0)
	for _, tp := range []string{root + "/b/c", root + "//c"} {
		pub.publish(tp, []byte("x"), 0, false)
		if p := sub.expectPublish(wait); p.Topic != tp {
			t.Fatalf("got %q, want %q", p.Topic, tp)
		}
	}
	pub.publish(root+"/a/b/c", []byte("x"), 0, false)
	pub.publish(root+"/c", []byte("x"), 0, false)
	sub.expectNone(short)
}

// TestMQTT311_4_7_2_1: filters starting with '#' or '+' do not match topic
// names starting with '$'.
func TestMQTT311_4_7_2_1(t *testing.T) {
	tg := target(t)
	dollar := "$cf" + uid(t)
	wild := connectNew(t, tg, v4, clientID(t), true)
	wild.subscribe("#", 0)
	wild.subscribe("+/x", 0)
	wild.subscribe("+/+", 0)
	control := connectNew(t, tg, v4, clientID(t), true)
	control.subscribe(dollar+"/#", 0)
	pub := connectNew(t, tg, v4, clientID(t), true)
	pub.publish(dollar+"/x", []byte("d"), 1, false)
	if p := control.expectPublish(wait); p.Topic != dollar+"/x" {
		t.Fatalf("control subscriber got %q", p.Topic)
	}
	for _, p := range wild.collect(short) {
		if p.Topic != "" && p.Topic[0] == '$' {
			t.Fatalf("wildcard subscriber received %q", p.Topic)
		}
	}
}

// TestMQTT311_4_7_3_1: topic names and filters are at least one character:
// an empty topic name is a protocol violation; an empty filter is refused.
func TestMQTT311_4_7_3_1(t *testing.T) {
	tg := target(t)
	t.Run("publish", func(t *testing.T) {
		c := connectNew(t, tg, v4, clientID(t), true)
		c.sendRaw(raw(0x30, str(""), []byte("x")))
		c.expectClosed(wait)
	})
	t.Run("subscribe", func(t *testing.T) { expectRejectedFilter(t, tg, "") })
}

// TestMQTT311_4_7_3_2: topic names and filters never hold U+0000.
func TestMQTT311_4_7_3_2(t *testing.T) {
	tg := target(t)
	t.Run("publish", func(t *testing.T) {
		c := connectNew(t, tg, v4, clientID(t), true)
		c.sendRaw(raw(0x30, str(topic(t)+"/a\x00b"), []byte("x")))
		c.expectClosed(wait)
	})
	t.Run("subscribe", func(t *testing.T) {
		c := connectNew(t, tg, v4, clientID(t), true)
		c.sendRaw(raw(0x82, u16(1), str(topic(t)+"/a\x00b"), []byte{0}))
		if p := c.waitOrClose(wait); p != nil {
			if sa, ok := p.(*packets.Suback); !ok || sa.ReasonCodes[0] != 0x80 {
				t.Fatalf("filter with U+0000: got %s, want a close (or SUBACK 0x80)", describe([]packets.Packet{p}))
			}
		}
	})
}

// TestMQTT311_4_7_3_4: topics are matched without normalisation: case,
// trailing separators and Unicode composition all count.
func TestMQTT311_4_7_3_4(t *testing.T) {
	tg := target(t)
	root := topic(t)
	composed := root + "/\u00e9"
	sub, pub := pair(t, tg, composed, 0)
	sub.subscribe(root+"/Abc", 0)
	for _, tp := range []string{root + "/e\u0301", root + "/\u00e9/", root + "/abc", root + "/ABC", root + "/Abc "} {
		pub.publish(tp, []byte("x"), 0, false)
	}
	sub.expectNone(short)
	pub.publish(composed, []byte("y"), 0, false)
	if p := sub.expectPublish(wait); p.Topic != composed {
		t.Fatalf("got %q", p.Topic)
	}
}
