package conformance

// MQTT 5.0 QoS flows (§4.3, §4.4), packet identifiers (§2.2.1), the
// acknowledgement packets and their reason codes (§3.4-§3.7), ordering
// (§4.6) and flow control with Receive Maximum (§3.3.4, §4.9).

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
)

// v5Subscriber connects a subscriber to a fresh topic at qos (with the
// CONNECT adjusted by mod) and returns it with the topic.
func v5Subscriber(t *testing.T, tg *Target, qos byte, mod func(*packets.Connect)) (*Client, string) {
	t.Helper()
	tp := topic(t)
	c, _ := v5Connect(t, tg, "", mod)
	v5MustSub(c, tp, qos)
	return c, tp
}

// A QoS 0 PUBLISH carries no Packet Identifier: the payload arrives intact,
// with no identifier bytes in front of it.
func TestMQTT5_2_2_1_2(t *testing.T) {
	t.Parallel()
	tg := target(t)
	s, tp := v5Subscriber(t, tg, 0, nil)
	v5Client(t, tg).publish(tp, []byte("hello"), 1, false)
	p := s.expectPublish(wait)
	if p.QoS != 0 || p.PacketID != 0 || string(p.Payload) != "hello" {
		t.Errorf("QoS 0 delivery %s [MQTT-2.2.1-2]", describe([]packets.Packet{p}))
	}
}

// The server's QoS>0 PUBLISHes carry non-zero identifiers not in use.
func TestMQTT5_2_2_1_4(t *testing.T) {
	t.Parallel()
	tg := target(t)
	for _, q := range []byte{1, 2} {
		s, tp := v5Subscriber(t, tg, q, nil)
		pub := v5Client(t, tg)
		for i := range 5 {
			pub.publish(tp, fmt.Appendf(nil, "%d", i), q, false)
		}
		seen := map[uint16]bool{}
		for range 5 {
			p := s.expectPublish(wait) // none acknowledged: all in use
			if p.PacketID == 0 || seen[p.PacketID] {
				t.Errorf("QoS %d: packet id %d is zero or already in use [MQTT-2.2.1-4]", q, p.PacketID)
			}
			seen[p.PacketID] = true
		}
	}
}

// PUBACK, PUBREC and PUBCOMP from the server reuse the PUBLISH's identifier,
// and so does its PUBREL when it delivers QoS 2.
func TestMQTT5_2_2_1_5(t *testing.T) {
	t.Parallel()
	tg := target(t)
	s, tp := v5Subscriber(t, tg, 2, nil)
	c := v5Client(t, tg)
	c.publishWith(&packets.Publish{Topic: tp, QoS: 1, PacketID: 0x1234, Payload: []byte("1")}) // checks the PUBACK id
	c.publishWith(&packets.Publish{Topic: tp, QoS: 2, PacketID: 0xBEEF, Payload: []byte("2")}) // checks PUBREC and PUBCOMP ids
	for range 2 {
		s.receive(wait) // QoS 2 receive checks the PUBREL id [MQTT-2.2.1-5]
	}
}

// SUBACK and UNSUBACK reuse the identifier of the packet they answer.
func TestMQTT5_2_2_1_6(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Client(t, tg)
	for _, id := range []uint16{1, 0x7fff, 0xffff} {
		c.subscribeWith(&packets.Subscribe{PacketID: id, Subscriptions: []packets.Subscription{{Filter: topic(t), QoS: 1}}}) // checks the id
		c.send(&packets.Unsubscribe{PacketID: id, Filters: []string{topic(t)}})
		if ua := expectType[*packets.Unsuback](c, wait); ua.PacketID != id {
			t.Errorf("UNSUBACK id %d, want %d [MQTT-2.2.1-6]", ua.PacketID, id)
		}
	}
}

// The receiver of a PUBLISH answers as its QoS demands: nothing for QoS 0,
// PUBACK for 1, PUBREC for 2.
func TestMQTT5_3_3_4_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Client(t, tg)
	tp := topic(t)
	c.send(&packets.Publish{Topic: tp, Payload: []byte("0")})
	c.expectNone(short)
	c.send(&packets.Publish{Topic: tp, QoS: 1, PacketID: 5, Payload: []byte("1")})
	if p := c.next(wait); p.Type() != packets.TypePuback {
		t.Errorf("QoS 1 answered with %s [MQTT-3.3.4-1]", describe([]packets.Packet{p}))
	}
	c.send(&packets.Publish{Topic: tp, QoS: 2, PacketID: 6, Payload: []byte("2")})
	if p := c.next(wait); p.Type() != packets.TypePubrec {
		t.Errorf("QoS 2 answered with %s [MQTT-3.3.4-1]", describe([]packets.Packet{p}))
	}
}

// The server never has more unacknowledged QoS 1/2 PUBLISHes in flight than
// the client's Receive Maximum; each acknowledgement releases one more.
func TestMQTT5_3_3_4_9(t *testing.T) {
	t.Parallel()
	tg := target(t)
	s, tp := v5Subscriber(t, tg, 1, func(c *packets.Connect) { c.Properties.ReceiveMaximum = 2 })
	pub := v5Client(t, tg)
	for i := range 5 {
		pub.publish(tp, fmt.Appendf(nil, "%d", i), 1, false)
	}
	var got []string
	for len(got) < 5 {
		window := v5Publishes(s, 1, short)
		if len(window) > 2 {
			t.Fatalf("%d unacknowledged PUBLISHes in flight (%s), Receive Maximum 2 [MQTT-3.3.4-9]", len(window), describe(toPackets(window)))
		}
		if len(window) == 0 {
			t.Fatalf("delivery stalled after %v", got)
		}
		for _, p := range window {
			got = append(got, string(p.Payload))
			s.ack(p)
		}
	}
	if !slices.Equal(got, []string{"0", "1", "2", "3", "4"}) {
		t.Errorf("delivered %v", got)
	}
}

// With its send quota used up the server still answers non-PUBLISH packets:
// PINGREQ, SUBSCRIBE and UNSUBSCRIBE.
func TestMQTT5_3_3_4_10(t *testing.T) {
	t.Parallel()
	tg := target(t)
	s, tp := v5Subscriber(t, tg, 1, func(c *packets.Connect) { c.Properties.ReceiveMaximum = 1 })
	pub := v5Client(t, tg)
	pub.publish(tp, []byte("a"), 1, false)
	pub.publish(tp, []byte("b"), 1, false)
	first := s.expectPublish(wait)
	s.expectOpen() // PINGRESP while blocked [MQTT-3.3.4-10]
	v5MustSub(s, topic(t), 1)
	s.unsubscribe(topic(t))
	if len(s.queue) != 0 {
		t.Errorf("a second PUBLISH arrived while the quota was used up: %s", describe(s.queue))
	}
	s.ack(first)
	if p := s.receive(wait); string(p.Payload) != "b" {
		t.Errorf("got %q, want b", p.Payload)
	}
}

// v5Acks publishes at qos to a topic with no subscribers and to a $SYS/
// topic, and returns the reason codes of the server's acknowledgements
// (PUBACK for QoS 1, PUBREC for QoS 2), completing successful QoS 2 flows.
func v5Acks(t *testing.T, c *Client, qos byte) []packets.ReasonCode {
	t.Helper()
	var codes []packets.ReasonCode
	for i, tp := range []string{topic(t, "nobody"), "$SYS/cf/" + uid(t)} {
		id := uint16(100 + i)
		c.send(&packets.Publish{Topic: tp, QoS: qos, PacketID: id, Payload: []byte("x")})
		p := c.next(wait)
		switch a := p.(type) {
		case *packets.Puback:
			codes = append(codes, a.ReasonCode)
		case *packets.Pubrec:
			codes = append(codes, a.ReasonCode)
			if !a.ReasonCode.IsError() {
				c.send(&packets.Pubrel{PacketID: id})
				expectType[*packets.Pubcomp](c, wait)
			}
		default:
			t.Fatalf("QoS %d PUBLISH answered with %s", qos, describe([]packets.Packet{p}))
		}
	}
	return codes
}

// PUBACK reason codes are from the PUBACK table.
func TestMQTT5_3_4_2_1(t *testing.T) {
	t.Parallel()
	for _, code := range v5Acks(t, v5Client(t, target(t)), 1) {
		if !slices.Contains(v5PubackCodes, code) {
			t.Errorf("PUBACK reason code %#x not defined for PUBACK [MQTT-3.4.2-1]", byte(code))
		}
	}
}

// PUBREC reason codes are from the PUBREC table.
func TestMQTT5_3_5_2_1(t *testing.T) {
	t.Parallel()
	for _, code := range v5Acks(t, v5Client(t, target(t)), 2) {
		if !slices.Contains(v5PubrecCodes, code) {
			t.Errorf("PUBREC reason code %#x not defined for PUBREC [MQTT-3.5.2-1]", byte(code))
		}
	}
}

// A PUBREL whose fixed-header flags are not 0010 is malformed.
func TestMQTT5_3_6_1_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Client(t, tg)
	c.send(&packets.Publish{Topic: topic(t), QoS: 2, PacketID: 3, Payload: []byte("x")})
	expectType[*packets.Pubrec](c, wait)
	c.sendRaw([]byte{0x60, 0x02, 0x00, 0x03})
	v5ExpectDisconnect(c, tg, packets.MalformedPacket) // [MQTT-3.6.1-1]
}

// The server's PUBREL reason codes are from the PUBREL table.
func TestMQTT5_3_6_2_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	s, tp := v5Subscriber(t, tg, 2, nil)
	v5Client(t, tg).publish(tp, []byte("x"), 2, false)
	p := s.expectPublish(wait)
	s.send(&packets.Pubrec{PacketID: p.PacketID})
	rel := expectType[*packets.Pubrel](s, wait)
	if !slices.Contains(v5PubrelCodes, rel.ReasonCode) {
		t.Errorf("PUBREL reason code %#x [MQTT-3.6.2-1]", byte(rel.ReasonCode))
	}
	s.send(&packets.Pubcomp{PacketID: p.PacketID})
}

// PUBCOMP reason codes are from the PUBCOMP table, also for a PUBREL with an
// unknown identifier (0x92 expected).
func TestMQTT5_3_7_2_1(t *testing.T) {
	t.Parallel()
	c := v5Client(t, target(t))
	c.send(&packets.Pubrel{PacketID: 999})
	pc := expectType[*packets.Pubcomp](c, wait)
	if pc.PacketID != 999 || !slices.Contains(v5PubcompCodes, pc.ReasonCode) {
		t.Errorf("PUBCOMP id %d code %#x [MQTT-3.7.2-1]", pc.PacketID, byte(pc.ReasonCode))
	}
	c.send(&packets.Publish{Topic: topic(t), QoS: 2, PacketID: 4, Payload: []byte("x")})
	expectType[*packets.Pubrec](c, wait)
	c.send(&packets.Pubrel{PacketID: 4})
	pc = expectType[*packets.Pubcomp](c, wait)
	if pc.ReasonCode != packets.Success {
		t.Errorf("PUBCOMP for a known id: %v [MQTT-3.7.2-1]", pc.ReasonCode)
	}
}

// The server's QoS 0 PUBLISH has QoS 0 and DUP 0.
func TestMQTT5_4_3_1_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	s, tp := v5Subscriber(t, tg, 0, nil)
	v5Client(t, tg).publish(tp, []byte("x"), 0, false)
	if p := s.expectPublish(wait); p.QoS != 0 || p.Dup {
		t.Errorf("QoS 0 delivery QoS %d DUP %v [MQTT-4.3.1-1]", p.QoS, p.Dup)
	}
}

// v5Unacked delivers n messages at qos to a subscriber that acknowledges
// none and returns them.
func v5Unacked(t *testing.T, tg *Target, qos byte, n int) []*packets.Publish {
	t.Helper()
	s, tp := v5Subscriber(t, tg, qos, nil)
	pub := v5Client(t, tg)
	var out []*packets.Publish
	for i := range n {
		pub.publish(tp, fmt.Appendf(nil, "%d", i), qos, false)
		out = append(out, s.expectPublish(wait))
	}
	return out
}

// QoS 1: each new message gets an unused identifier.
func TestMQTT5_4_3_2_1(t *testing.T) {
	t.Parallel()
	seen := map[uint16]bool{}
	for _, p := range v5Unacked(t, target(t), 1, 4) {
		if p.PacketID == 0 || seen[p.PacketID] {
			t.Errorf("QoS 1 packet id %d reused or zero [MQTT-4.3.2-1]", p.PacketID)
		}
		seen[p.PacketID] = true
	}
}

// QoS 1: the PUBLISH goes out with QoS 1 and DUP 0.
func TestMQTT5_4_3_2_2(t *testing.T) {
	t.Parallel()
	for _, p := range v5Unacked(t, target(t), 1, 2) {
		if p.QoS != 1 || p.Dup {
			t.Errorf("QoS 1 delivery QoS %d DUP %v [MQTT-4.3.2-2]", p.QoS, p.Dup)
		}
	}
}

// v5Resume subscribes id at qos with a session, delivers one message and
// lets f act on it before the connection drops; it then reconnects and
// returns the new client.
func v5Resume(t *testing.T, tg *Target, qos byte, f func(c *Client, p *packets.Publish)) (*Client, *packets.Publish) {
	t.Helper()
	id, tp := clientID(t), topic(t)
	c, _ := v5Connect(t, tg, id, v5Session(true, 60))
	v5MustSub(c, tp, qos)
	v5Client(t, tg).publish(tp, []byte("m"), qos, false)
	p := c.expectPublish(wait)
	f(c, p)
	c.close()
	c2, ack := v5Connect(t, tg, id, v5Session(false, 60))
	if !ack.SessionPresent {
		t.Fatalf("session lost")
	}
	return c2, p
}

// QoS 1: an unacknowledged PUBLISH is kept and resent; an acknowledged one
// is not.
func TestMQTT5_4_3_2_3(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c, p := v5Resume(t, tg, 1, func(*Client, *packets.Publish) {})
	again := c.expectPublish(wait)
	if again.PacketID != p.PacketID || string(again.Payload) != "m" {
		t.Errorf("resent %s, want id %d [MQTT-4.3.2-3]", describe([]packets.Packet{again}), p.PacketID)
	}
	c.ack(again)
	c2, _ := v5Resume(t, tg, 1, func(c *Client, p *packets.Publish) {
		c.ack(p)
		c.expectOpen() // the PUBACK is processed before the drop
	})
	c2.expectNone(short) // [MQTT-4.3.2-3] acknowledged: not resent
}

// QoS 1 receiver: the server answers PUBACK with the PUBLISH's identifier.
func TestMQTT5_4_3_2_4(t *testing.T) {
	t.Parallel()
	c := v5Client(t, target(t))
	for _, id := range []uint16{1, 300, 65535} {
		c.send(&packets.Publish{Topic: topic(t), QoS: 1, PacketID: id, Payload: []byte("x")})
		if a := expectType[*packets.Puback](c, wait); a.PacketID != id {
			t.Errorf("PUBACK id %d, want %d [MQTT-4.3.2-4]", a.PacketID, id)
		}
	}
}

// After PUBACK, a PUBLISH reusing the identifier is a new message even with
// DUP 1: it is delivered again.
func TestMQTT5_4_3_2_5(t *testing.T) {
	t.Parallel()
	tg := target(t)
	s, tp := v5Subscriber(t, tg, 1, nil)
	c := v5Client(t, tg)
	c.publishWith(&packets.Publish{Topic: tp, QoS: 1, PacketID: 9, Payload: []byte("first")})
	c.publishWith(&packets.Publish{Topic: tp, QoS: 1, PacketID: 9, Dup: true, Payload: []byte("second")})
	got := v5Collect(s, 2, short*3)
	if !slices.Equal(v5Payloads(got), []string{"first", "second"}) {
		t.Errorf("delivered %v, want [first second] [MQTT-4.3.2-5]", v5Payloads(got))
	}
}

// QoS 2: each new message gets an unused identifier.
func TestMQTT5_4_3_3_1(t *testing.T) {
	t.Parallel()
	seen := map[uint16]bool{}
	for _, p := range v5Unacked(t, target(t), 2, 4) {
		if p.PacketID == 0 || seen[p.PacketID] {
			t.Errorf("QoS 2 packet id %d reused or zero [MQTT-4.3.3-1]", p.PacketID)
		}
		seen[p.PacketID] = true
	}
}

// QoS 2: the PUBLISH goes out with QoS 2 and DUP 0.
func TestMQTT5_4_3_3_2(t *testing.T) {
	t.Parallel()
	for _, p := range v5Unacked(t, target(t), 2, 2) {
		if p.QoS != 2 || p.Dup {
			t.Errorf("QoS 2 delivery QoS %d DUP %v [MQTT-4.3.3-2]", p.QoS, p.Dup)
		}
	}
}

// QoS 2: a PUBLISH without PUBREC is kept and resent on session resumption.
func TestMQTT5_4_3_3_3(t *testing.T) {
	t.Parallel()
	c, p := v5Resume(t, target(t), 2, func(*Client, *packets.Publish) {})
	again := c.expectPublish(wait)
	if again.PacketID != p.PacketID || !again.Dup || again.QoS != 2 {
		t.Errorf("resent %s, want id %d DUP 1 [MQTT-4.3.3-3]", describe([]packets.Packet{again}), p.PacketID)
	}
	c.ack(again)
}

// QoS 2: after PUBREC (reason < 0x80) the server sends PUBREL with the same
// identifier.
func TestMQTT5_4_3_3_4(t *testing.T) {
	t.Parallel()
	tg := target(t)
	s, tp := v5Subscriber(t, tg, 2, nil)
	v5Client(t, tg).publish(tp, []byte("x"), 2, false)
	p := s.expectPublish(wait)
	s.send(&packets.Pubrec{PacketID: p.PacketID})
	if rel := expectType[*packets.Pubrel](s, wait); rel.PacketID != p.PacketID {
		t.Errorf("PUBREL id %d, want %d [MQTT-4.3.3-4]", rel.PacketID, p.PacketID)
	}
	s.send(&packets.Pubcomp{PacketID: p.PacketID})
}

// QoS 2: a PUBREL without PUBCOMP is kept and resent on resumption — and
// the PUBLISH is not resent once PUBREL was sent.
func TestMQTT5_4_3_3_5(t *testing.T) {
	t.Parallel()
	c, p := v5Resume(t, target(t), 2, func(c *Client, p *packets.Publish) {
		c.send(&packets.Pubrec{PacketID: p.PacketID})
		expectType[*packets.Pubrel](c, wait)
	})
	first := c.next(wait)
	rel, ok := first.(*packets.Pubrel)
	if !ok || rel.PacketID != p.PacketID {
		t.Fatalf("after resumption got %s, want PUBREL id %d [MQTT-4.3.3-5]", describe([]packets.Packet{first}), p.PacketID)
	}
	c.send(&packets.Pubcomp{PacketID: p.PacketID})
	c.expectNone(short)
}

// Once PUBREL is sent the PUBLISH is never resent.
func TestMQTT5_4_3_3_6(t *testing.T) {
	t.Parallel()
	c, _ := v5Resume(t, target(t), 2, func(c *Client, p *packets.Publish) {
		c.send(&packets.Pubrec{PacketID: p.PacketID})
		expectType[*packets.Pubrel](c, wait)
	})
	for _, got := range v5WithinWindow(c, short*2) {
		if got.Type() == packets.TypePublish {
			t.Errorf("PUBLISH resent after PUBREL [MQTT-4.3.3-6]")
		}
		if rel, ok := got.(*packets.Pubrel); ok {
			c.send(&packets.Pubcomp{PacketID: rel.PacketID})
		}
	}
}

// v5WithinWindow returns every packet arriving within d.
func v5WithinWindow(c *Client, d time.Duration) []packets.Packet {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 || !c.pull(left) {
			out := c.queue
			c.queue = nil
			return out
		}
	}
}

// A QoS 2 message whose PUBLISH was sent is not expired: it is resent on
// resumption even though its Message Expiry has passed.
func TestMQTT5_4_3_3_7(t *testing.T) {
	t.Parallel()
	tg := target(t)
	id, tp := clientID(t), topic(t)
	c, _ := v5Connect(t, tg, id, v5Session(true, 60))
	v5MustSub(c, tp, 2)
	v5Client(t, tg).publishWith(&packets.Publish{Topic: tp, QoS: 2, Payload: []byte("x"), Properties: packets.Properties{MessageExpiry: 1}})
	p := c.expectPublish(wait)
	c.close()
	letTimePass(2200 * time.Millisecond)
	c2, _ := v5Connect(t, tg, id, v5Session(false, 60))
	again := c2.expectPublish(wait) // [MQTT-4.3.3-7]
	if again.PacketID != p.PacketID {
		t.Errorf("resent with id %d, want %d", again.PacketID, p.PacketID)
	}
	c2.ack(again)
}

// QoS 2 receiver: PUBREC carries the PUBLISH's identifier.
func TestMQTT5_4_3_3_8(t *testing.T) {
	t.Parallel()
	c := v5Client(t, target(t))
	for _, id := range []uint16{1, 4242, 65535} {
		c.send(&packets.Publish{Topic: topic(t), QoS: 2, PacketID: id, Payload: []byte("x")})
		if r := expectType[*packets.Pubrec](c, wait); r.PacketID != id {
			t.Errorf("PUBREC id %d, want %d [MQTT-4.3.3-8]", r.PacketID, id)
		}
		c.send(&packets.Pubrel{PacketID: id})
		expectType[*packets.Pubcomp](c, wait)
	}
}

// After a PUBREC with reason >= 0x80 a PUBLISH reusing the identifier is a
// new message. The error PUBREC is provoked by publishing under $SYS/ or
// with Payload Format 1 and a non-UTF-8 payload.
func TestMQTT5_4_3_3_9(t *testing.T) {
	t.Parallel()
	tg := target(t)
	s, tp := v5Subscriber(t, tg, 2, nil)
	c := v5Client(t, tg)
	attempts := []*packets.Publish{
		{Topic: "$SYS/cf/" + uid(t), QoS: 2, PacketID: 11, Payload: []byte("x")},
		{Topic: tp, QoS: 2, PacketID: 11, Payload: []byte{0xff, 0xfe}, Properties: packets.Properties{PayloadFormat: 1}},
	}
	for _, a := range attempts {
		c.send(a)
		p := c.next(wait)
		r, ok := p.(*packets.Pubrec)
		if !ok {
			if d, ok := p.(*packets.Disconnect); ok {
				t.Skipf("server disconnected (%v) instead of an error PUBREC; cannot test id reuse", d.ReasonCode)
			}
			t.Fatalf("got %s, want PUBREC", describe([]packets.Packet{p}))
		}
		if !r.ReasonCode.IsError() {
			c.send(&packets.Pubrel{PacketID: 11})
			expectType[*packets.Pubcomp](c, wait)
			v5Collect(s, 1, short) // drain a delivered copy
			continue
		}
		c.publishWith(&packets.Publish{Topic: tp, QoS: 2, PacketID: 11, Payload: []byte("new")}) // [MQTT-4.3.3-9] full new flow
		if got := s.receive(wait); string(got.Payload) != "new" {
			t.Errorf("got %q, want new", got.Payload)
		}
		return
	}
	t.Skip("server accepted every attempt with a success PUBREC; no error PUBREC to observe")
}

// A repeated QoS 2 PUBLISH before PUBREL gets another PUBREC and is not
// delivered twice.
func TestMQTT5_4_3_3_10(t *testing.T) {
	t.Parallel()
	tg := target(t)
	s, tp := v5Subscriber(t, tg, 2, nil)
	c := v5Client(t, tg)
	c.send(&packets.Publish{Topic: tp, QoS: 2, PacketID: 21, Payload: []byte("once")})
	expectType[*packets.Pubrec](c, wait)
	c.send(&packets.Publish{Topic: tp, QoS: 2, PacketID: 21, Dup: true, Payload: []byte("once")})
	if r := expectType[*packets.Pubrec](c, wait); r.PacketID != 21 {
		t.Errorf("PUBREC id %d [MQTT-4.3.3-10]", r.PacketID)
	}
	c.send(&packets.Pubrel{PacketID: 21})
	expectType[*packets.Pubcomp](c, wait)
	if got := v5Collect(s, 1, short*3); len(got) != 1 {
		t.Errorf("delivered %d copies, want 1 [MQTT-4.3.3-10]", len(got))
	}
}

// PUBREL is answered by PUBCOMP with the same identifier.
func TestMQTT5_4_3_3_11(t *testing.T) {
	t.Parallel()
	c := v5Client(t, target(t))
	c.send(&packets.Publish{Topic: topic(t), QoS: 2, PacketID: 31, Payload: []byte("x")})
	expectType[*packets.Pubrec](c, wait)
	c.send(&packets.Pubrel{PacketID: 31})
	if pc := expectType[*packets.Pubcomp](c, wait); pc.PacketID != 31 || pc.ReasonCode != packets.Success {
		t.Errorf("PUBCOMP id %d code %v [MQTT-4.3.3-11]", pc.PacketID, pc.ReasonCode)
	}
}

// After PUBCOMP a PUBLISH reusing the identifier is a new message.
func TestMQTT5_4_3_3_12(t *testing.T) {
	t.Parallel()
	tg := target(t)
	s, tp := v5Subscriber(t, tg, 2, nil)
	c := v5Client(t, tg)
	c.publishWith(&packets.Publish{Topic: tp, QoS: 2, PacketID: 41, Payload: []byte("a")})
	c.publishWith(&packets.Publish{Topic: tp, QoS: 2, PacketID: 41, Payload: []byte("b")})
	if got := v5Payloads(v5Collect(s, 2, short*3)); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("delivered %v, want [a b] [MQTT-4.3.3-12]", got)
	}
}

// The receiver completes the QoS 2 exchange even if the message expired.
func TestMQTT5_4_3_3_13(t *testing.T) {
	t.Parallel()
	c := v5Client(t, target(t))
	c.send(&packets.Publish{Topic: topic(t), QoS: 2, PacketID: 51, Payload: []byte("x"), Properties: packets.Properties{MessageExpiry: 1}})
	expectType[*packets.Pubrec](c, wait)
	letTimePass(2 * time.Second)
	c.send(&packets.Pubrel{PacketID: 51})
	if pc := expectType[*packets.Pubcomp](c, wait); pc.PacketID != 51 || pc.ReasonCode != packets.Success {
		t.Errorf("PUBCOMP id %d code %v after expiry [MQTT-4.3.3-13]", pc.PacketID, pc.ReasonCode)
	}
}

// Unacknowledged PUBLISHes are resent only on session resumption: not on
// the same connection, and not after a Clean Start.
func TestMQTT5_4_4_0_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	id, tp := clientID(t), topic(t)
	c, _ := v5Connect(t, tg, id, v5Session(true, 60))
	v5MustSub(c, tp, 1)
	v5Client(t, tg).publish(tp, []byte("m"), 1, false)
	p := c.expectPublish(wait)
	c.expectNone(time.Second) // [MQTT-4.4.0-1] no retransmission on the same connection
	c.close()
	c2, _ := v5Connect(t, tg, id, v5Session(false, 60))
	again := c2.expectPublish(wait)
	if again.PacketID != p.PacketID || !again.Dup {
		t.Errorf("resent %s, want DUP with id %d [MQTT-4.4.0-1]", describe([]packets.Packet{again}), p.PacketID)
	}
	c2.close()
	c3, _ := v5Connect(t, tg, id, v5Session(true, 60))
	c3.expectNone(short) // [MQTT-4.4.0-1] clean start: nothing resent
}

// A PUBACK or PUBREC with reason >= 0x80 completes the delivery: it is not
// retransmitted on resumption, and an error PUBREC gets no PUBREL.
func TestMQTT5_4_4_0_2(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c, _ := v5Resume(t, tg, 1, func(c *Client, p *packets.Publish) {
		c.send(&packets.Puback{PacketID: p.PacketID, ReasonCode: packets.UnspecifiedError})
		c.expectOpen()
	})
	c.expectNone(short) // [MQTT-4.4.0-2]
	c2, _ := v5Resume(t, tg, 2, func(c *Client, p *packets.Publish) {
		c.send(&packets.Pubrec{PacketID: p.PacketID, ReasonCode: packets.UnspecifiedError})
		c.expectOpen() // and no PUBREL before the PINGRESP
		for _, q := range c.queue {
			if q.Type() == packets.TypePubrel {
				t.Errorf("PUBREL after an error PUBREC [MQTT-4.4.0-2]")
			}
		}
	})
	c2.expectNone(short) // [MQTT-4.4.0-2]
}

// A message the server accepted goes to every matching subscriber, online
// and offline.
func TestMQTT5_4_5_0_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	root := topic(t)
	a := v5Client(t, tg)
	v5MustSub(a, root+"/x", 1)
	b := v5Client(t, tg)
	v5MustSub(b, root+"/+", 1)
	offID := clientID(t)
	v5Persisted(t, tg, offID, root+"/#", 1)
	v5Client(t, tg).publish(root+"/x", []byte("all"), 1, false)
	for i, c := range []*Client{a, b} {
		if p := c.receive(wait); string(p.Payload) != "all" {
			t.Errorf("subscriber %d got %q [MQTT-4.5.0-1]", i, p.Payload)
		}
	}
	off, _ := v5Connect(t, tg, offID, v5Session(false, 60))
	if p := off.receive(wait); string(p.Payload) != "all" {
		t.Errorf("offline subscriber got %q [MQTT-4.5.0-1]", p.Payload)
	}
}

// Messages of one client on one topic and QoS are forwarded in order.
func TestMQTT5_4_6_0_5(t *testing.T) {
	t.Parallel()
	tg := target(t)
	for _, q := range []byte{0, 1, 2} {
		s, tp := v5Subscriber(t, tg, 2, nil)
		pub := v5Client(t, tg)
		var want []string
		for i := range 20 {
			msg := fmt.Sprintf("%d", i)
			pub.publish(tp, []byte(msg), q, false)
			want = append(want, msg)
		}
		got := v5Payloads(v5CollectN(s, 20))
		if !slices.Equal(got, want) {
			t.Errorf("QoS %d order %v, want %v [MQTT-4.6.0-5]", q, got, want)
		}
	}
}

// v5CollectN receives and acknowledges n PUBLISHes.
func v5CollectN(c *Client, n int) []*packets.Publish {
	c.t.Helper()
	var out []*packets.Publish
	for range n {
		out = append(out, c.receive(wait))
	}
	return out
}

// Every topic is Ordered on non-shared subscriptions: interleaved topics and
// QoS levels from one publisher keep their per-topic, per-QoS order through
// a wildcard subscription.
func TestMQTT5_4_6_0_6(t *testing.T) {
	t.Parallel()
	tg := target(t)
	root := topic(t)
	s := v5Client(t, tg)
	v5MustSub(s, root+"/#", 2)
	pub := v5Client(t, tg)
	for i := range 30 {
		pub.publish(fmt.Sprintf("%s/%d", root, i%2), fmt.Appendf(nil, "%d", i), byte(i%3), false)
	}
	last := map[string]int{}
	for _, p := range v5CollectN(s, 30) {
		var n int
		fmt.Sscanf(string(p.Payload), "%d", &n)
		key := fmt.Sprintf("%s|%d", p.Topic, n%3)
		if prev, ok := last[key]; ok && n < prev {
			t.Errorf("topic %s QoS %d: %d after %d [MQTT-4.6.0-6]", p.Topic, n%3, n, prev)
		}
		last[key] = n
	}
}

// The initial send quota is non-zero and at most the client's Receive
// Maximum: with Receive Maximum 1 exactly one PUBLISH is in flight.
func TestMQTT5_4_9_0_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	s, tp := v5Subscriber(t, tg, 1, func(c *packets.Connect) { c.Properties.ReceiveMaximum = 1 })
	pub := v5Client(t, tg)
	for i := range 3 {
		pub.publish(tp, fmt.Appendf(nil, "%d", i), 1, false)
	}
	got := v5Publishes(s, 1, short*2)
	if len(got) != 1 {
		t.Fatalf("%d PUBLISHes in flight with Receive Maximum 1 [MQTT-4.9.0-1]", len(got))
	}
}

// At send quota zero no further QoS>0 PUBLISH is sent; for QoS 2 the quota
// comes back only with PUBCOMP, not PUBREC.
func TestMQTT5_4_9_0_2(t *testing.T) {
	t.Parallel()
	tg := target(t)
	s, tp := v5Subscriber(t, tg, 2, func(c *packets.Connect) { c.Properties.ReceiveMaximum = 1 })
	pub := v5Client(t, tg)
	pub.publish(tp, []byte("a"), 2, false)
	pub.publish(tp, []byte("b"), 2, false)
	p := s.expectPublish(wait)
	s.send(&packets.Pubrec{PacketID: p.PacketID})
	expectType[*packets.Pubrel](s, wait)
	s.expectNone(short) // [MQTT-4.9.0-2] quota still zero
	s.send(&packets.Pubcomp{PacketID: p.PacketID})
	if q := s.receive(wait); string(q.Payload) != "b" {
		t.Errorf("got %q, want b", q.Payload)
	}
}

// With the server's send quota to this client at zero, the server still
// processes the client's packets: its QoS 1 and 2 PUBLISHes are answered.
func TestMQTT5_4_9_0_3(t *testing.T) {
	t.Parallel()
	tg := target(t)
	s, tp := v5Subscriber(t, tg, 1, func(c *packets.Connect) { c.Properties.ReceiveMaximum = 1 })
	pub := v5Client(t, tg)
	pub.publish(tp, []byte("a"), 1, false)
	pub.publish(tp, []byte("b"), 1, false)
	first := s.expectPublish(wait)
	s.publish(topic(t), []byte("x"), 1, false) // PUBACK arrives [MQTT-4.9.0-3]
	s.publish(topic(t), []byte("y"), 2, false) // PUBREC / PUBCOMP arrive
	s.ack(first)
	s.receive(wait)
}

// MQTT-3.3.4-7 is the client's duty; this checks the server's side of it
// (§3.3.4): a client with more unacknowledged QoS 2 PUBLISHes than the
// server's Receive Maximum gets DISCONNECT 0x93.
func TestMQTT5_3_3_4_7(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c, ack := v5Connect(t, tg, "", nil)
	rm := int(ack.Properties.ReceiveMaximum)
	if rm == 0 {
		rm = 65535
	}
	if rm > 5000 {
		t.Skipf("server Receive Maximum %d: too large to exceed in a test", rm)
	}
	tp := topic(t)
	var b []byte
	for i := range rm + 1 {
		b = append(b, v5Encode(t, &packets.Publish{Topic: tp, QoS: 2, PacketID: uint16(i + 1), Payload: []byte("x")})...)
	}
	c.sendRaw(b) // no PUBREL: every one stays unacknowledged (no PUBCOMP)
	// The server must close the connection; PUBRECs may come first.
	var d *packets.Disconnect
	recs := map[rc]int{}
	deadline := time.Now().Add(wait)
	for !c.ended && time.Now().Before(deadline) {
		c.pull(time.Until(deadline))
		for _, p := range c.queue {
			switch q := p.(type) {
			case *packets.Pubrec:
				recs[q.ReasonCode]++
			case *packets.Disconnect:
				d = q
			default:
				t.Errorf("unexpected %s", typeName(p.Type()))
			}
		}
		c.queue = nil
	}
	switch {
	case !c.ended:
		t.Errorf("exceeding Receive Maximum %d: connection still open (PUBREC codes %v), want DISCONNECT 0x93", rm, recs)
	case d == nil:
		t.Errorf("exceeding Receive Maximum %d: closed without DISCONNECT, want DISCONNECT 0x93", rm)
	case d.ReasonCode != packets.ReceiveMaximumExceeded:
		t.Errorf("exceeding Receive Maximum %d: DISCONNECT %v, want 0x93", rm, d.ReasonCode)
	}
}
