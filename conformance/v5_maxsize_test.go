package conformance

// MQTT 5.0 Maximum Packet Size declared by the client (§3.1.2.11.4): the
// server never sends a larger packet, drops oversized messages as if
// delivered, and leaves out Reason Strings and User Properties that would
// not fit.

import (
	"bytes"
	"testing"

	"github.com/beaconmq/beacon/packets"
)

// smallMax is a Maximum Packet Size that fits every mandatory field of the
// packets these tests provoke but leaves little room for a Reason String or
// User Properties.
const smallMax = 40

// v5Small connects a client declaring Maximum Packet Size max; its CONNACK
// must fit too.
func v5Small(t *testing.T, tg *Target, id string, max uint32, mod func(*packets.Connect)) *Client {
	t.Helper()
	c, ack := v5Connect(t, tg, id, func(c *packets.Connect) {
		if mod != nil {
			mod(c)
		}
		c.Properties.MaximumPacketSize = max
	})
	v5Fits(t, ack, int(max), "MQTT-3.1.2-24")
	return c
}

// The server never sends a packet larger than the client's Maximum Packet
// Size: an oversized message is not delivered, a small one is.
func TestMQTT5_3_1_2_24(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := topic(t)
	s := v5Small(t, tg, "", 128, nil)
	v5MustSub(s, tp, 1)
	pub := v5Client(t, tg)
	pub.publish(tp, bytes.Repeat([]byte("B"), 200), 1, false)
	pub.publish(tp, []byte("small"), 1, false)
	for _, p := range v5Collect(s, 1, short*3) {
		v5Fits(t, p, 128, "MQTT-3.1.2-24")
		if string(p.Payload) != "small" {
			t.Errorf("got %d-byte payload, want only small", len(p.Payload))
		}
	}
}

// An oversized message is discarded as if its delivery completed: it is not
// queued for later, even when the client returns with a larger maximum.
func TestMQTT5_3_1_2_25(t *testing.T) {
	t.Parallel()
	tg := target(t)
	id, tp := clientID(t), topic(t)
	s := v5Small(t, tg, id, 128, v5Session(true, 60))
	v5MustSub(s, tp, 1)
	pub := v5Client(t, tg)
	pub.publish(tp, bytes.Repeat([]byte("B"), 300), 1, false)
	pub.publish(tp, []byte("small"), 1, false)
	if p := s.receive(wait); string(p.Payload) != "small" {
		t.Errorf("got %d bytes, want small", len(p.Payload))
	}
	v5Leave(s)
	s2, _ := v5Connect(t, tg, id, v5Session(false, 60))
	s2.expectNone(short) // [MQTT-3.1.2-25] the big one is gone, not pending
}

// A refusing CONNACK leaves out a Reason String that would exceed the
// client's Maximum Packet Size.
func TestMQTT5_3_2_2_19(t *testing.T) {
	t.Parallel()
	v5SmallConnack(t, "MQTT-3.2.2-19")
}

// A refusing CONNACK leaves out User Properties that would exceed the
// client's Maximum Packet Size.
func TestMQTT5_3_2_2_20(t *testing.T) {
	t.Parallel()
	v5SmallConnack(t, "MQTT-3.2.2-20")
}

// v5SmallConnack provokes a refusal (unknown authentication method) from a
// client with Maximum Packet Size 8 and checks the CONNACK fits.
func v5SmallConnack(t *testing.T, id string) {
	t.Helper()
	tg := target(t)
	c := v5Dial(t, tg)
	c.send(&packets.Connect{ProtocolName: "MQTT", Version: packets.V5, ClientID: clientID(t), CleanStart: true,
		Properties: packets.Properties{MaximumPacketSize: 8, AuthMethod: "CF-UNKNOWN"}})
	for _, p := range c.waitClosed(wait) {
		v5Fits(t, p, 8, id)
	}
}

// v5SmallAcks runs the QoS 1 and QoS 2 sender flows (to a topic with no
// subscribers, and with an unknown PUBREL identifier) from a client with a
// small Maximum Packet Size, checking each acknowledgement of type typ fits.
func v5SmallAcks(t *testing.T, typ packets.Type, id string) {
	t.Helper()
	tg := target(t)
	c := v5Small(t, tg, "", smallMax, nil)
	tp := topic(t, "nobody")
	c.send(&packets.Publish{Topic: tp, QoS: 1, PacketID: 1, Payload: []byte("x")})
	c.send(&packets.Publish{Topic: tp, QoS: 2, PacketID: 2, Payload: []byte("x")})
	c.send(&packets.Pubrel{PacketID: 2})
	c.send(&packets.Pubrel{PacketID: 3000})
	c.send(&packets.Pingreq{})
	c.expect(packets.TypePingresp, wait)
	n := 0
	for _, p := range c.queue {
		v5Fits(t, p, smallMax, id)
		if p.Type() == typ {
			n++
		}
	}
	if n == 0 {
		t.Fatalf("no %s received", typeName(typ))
	}
}

// PUBACK Reason String omitted if too large.
func TestMQTT5_3_4_2_2(t *testing.T) {
	t.Parallel()
	v5SmallAcks(t, packets.TypePuback, "MQTT-3.4.2-2")
}

// PUBACK User Properties omitted if too large.
func TestMQTT5_3_4_2_3(t *testing.T) {
	t.Parallel()
	v5SmallAcks(t, packets.TypePuback, "MQTT-3.4.2-3")
}

// PUBREC Reason String omitted if too large.
func TestMQTT5_3_5_2_2(t *testing.T) {
	t.Parallel()
	v5SmallAcks(t, packets.TypePubrec, "MQTT-3.5.2-2")
}

// PUBREC User Properties omitted if too large.
func TestMQTT5_3_5_2_3(t *testing.T) {
	t.Parallel()
	v5SmallAcks(t, packets.TypePubrec, "MQTT-3.5.2-3")
}

// PUBCOMP Reason String omitted if too large (also for 0x92).
func TestMQTT5_3_7_2_2(t *testing.T) {
	t.Parallel()
	v5SmallAcks(t, packets.TypePubcomp, "MQTT-3.7.2-2")
}

// PUBCOMP User Properties omitted if too large.
func TestMQTT5_3_7_2_3(t *testing.T) {
	t.Parallel()
	v5SmallAcks(t, packets.TypePubcomp, "MQTT-3.7.2-3")
}

// v5SmallPubrel receives a QoS 2 message as a client with a small Maximum
// Packet Size and checks the server's PUBREL fits.
func v5SmallPubrel(t *testing.T, id string) {
	t.Helper()
	tg := target(t)
	tp := topic(t)
	s := v5Small(t, tg, "", smallMax, nil)
	v5MustSub(s, tp, 2)
	v5Client(t, tg).publish(tp, []byte("x"), 2, false)
	p := s.expectPublish(wait)
	v5Fits(t, p, smallMax, "MQTT-3.1.2-24")
	s.send(&packets.Pubrec{PacketID: p.PacketID})
	v5Fits(t, expectType[*packets.Pubrel](s, wait), smallMax, id)
	s.send(&packets.Pubcomp{PacketID: p.PacketID})
}

// PUBREL Reason String omitted if too large.
func TestMQTT5_3_6_2_2(t *testing.T) {
	t.Parallel()
	v5SmallPubrel(t, "MQTT-3.6.2-2")
}

// PUBREL User Properties omitted if too large.
func TestMQTT5_3_6_2_3(t *testing.T) {
	t.Parallel()
	v5SmallPubrel(t, "MQTT-3.6.2-3")
}

// v5SmallSubacks subscribes (valid, shared, wildcard) and unsubscribes
// (existing and unknown) as a small client, checking SUBACK/UNSUBACK fit.
func v5SmallSubacks(t *testing.T, id string) {
	t.Helper()
	tg := target(t)
	c := v5Small(t, tg, "", smallMax, nil)
	a := topic(t)
	for _, f := range []string{a, "$share/g/" + topic(t), topic(t, "#")} {
		c.send(&packets.Subscribe{PacketID: c.nextID(), Subscriptions: []packets.Subscription{{Filter: f, QoS: 2}}})
		v5Fits(t, expectType[*packets.Suback](c, wait), smallMax, id)
	}
	for _, f := range []string{a, topic(t)} {
		c.send(&packets.Unsubscribe{PacketID: c.nextID(), Filters: []string{f}})
		v5Fits(t, expectType[*packets.Unsuback](c, wait), smallMax, id)
	}
}

// SUBACK Reason String omitted if too large.
func TestMQTT5_3_9_2_1(t *testing.T) {
	t.Parallel()
	v5SmallSubacks(t, "MQTT-3.9.2-1")
}

// SUBACK User Properties omitted if too large.
func TestMQTT5_3_9_2_2(t *testing.T) {
	t.Parallel()
	v5SmallSubacks(t, "MQTT-3.9.2-2")
}

// UNSUBACK Reason String omitted if too large.
func TestMQTT5_3_11_2_1(t *testing.T) {
	t.Parallel()
	v5SmallSubacks(t, "MQTT-3.11.2-1")
}

// UNSUBACK User Properties omitted if too large.
func TestMQTT5_3_11_2_2(t *testing.T) {
	t.Parallel()
	v5SmallSubacks(t, "MQTT-3.11.2-2")
}

// v5SmallDisconnect provokes server DISCONNECTs (protocol error, takeover)
// towards clients declaring Maximum Packet Size 16 and checks they fit.
func v5SmallDisconnect(t *testing.T, id string) {
	t.Helper()
	tg := target(t)
	c := v5Small(t, tg, "", 16, nil)
	c.send(&packets.Connect{ProtocolName: "MQTT", Version: packets.V5, ClientID: clientID(t)})
	if d := c.expectClosed(wait); d != nil {
		v5Fits(t, d, 16, id)
	}
	cid := clientID(t)
	old := v5Small(t, tg, cid, 16, nil)
	v5Connect(t, tg, cid, nil)
	if d := old.expectClosed(wait); d != nil {
		v5Fits(t, d, 16, id)
	}
}

// DISCONNECT Reason String omitted if too large.
func TestMQTT5_3_14_2_3(t *testing.T) {
	t.Parallel()
	v5SmallDisconnect(t, "MQTT-3.14.2-3")
}

// DISCONNECT User Properties omitted if too large.
func TestMQTT5_3_14_2_4(t *testing.T) {
	t.Parallel()
	v5SmallDisconnect(t, "MQTT-3.14.2-4")
}

// MQTT-3.2.2-15 is the client's duty; this checks the server's side of it
// (§3.2.2.3.6): a packet above the Maximum Packet Size the server announced
// gets DISCONNECT 0x95 and is not processed.
func TestMQTT5_3_2_2_15(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c, ack := v5Connect(t, tg, "", nil)
	max := int(ack.Properties.MaximumPacketSize)
	if max == 0 || max > 16<<20 {
		t.Skipf("server announces Maximum Packet Size %d; nothing practical to exceed", max)
	}
	tp := topic(t)
	sub := v5Client(t, tg)
	v5MustSub(sub, tp, 0)
	c.send(&packets.Publish{Topic: tp, Payload: bytes.Repeat([]byte("x"), max)})
	v5ExpectDisconnect(c, tg, packets.PacketTooLarge)
	sub.expectNone(short)
}
