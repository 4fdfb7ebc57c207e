package conformance

// MQTT 5.0 statements about encodings the decoder hides, checked on the raw
// bytes the server sends (§1.5.5, §2.2.2).

import (
	"bytes"
	"testing"

	"github.com/beaconmq/beacon/packets"
)

// v5RawSubscriber connects a raw client, subscribes it to a fresh topic at
// QoS 0 and returns it with the topic and the raw SUBACK.
func v5RawSubscriber(t *testing.T, tg *Target) (*v5Raw, string, []byte, int) {
	t.Helper()
	tp := topic(t)
	c := v5DialRaw(t, tg)
	c.write(v5Encode(t, &packets.Connect{ProtocolName: "MQTT", Version: packets.V5, ClientID: clientID(t), CleanStart: true, KeepAlive: 60}))
	if raw, _ := c.read(); raw[0] != 0x20 || len(raw) < 4 || raw[3] != 0 {
		t.Fatalf("CONNACK expected, got % x", raw)
	}
	c.write(v5Encode(t, &packets.Subscribe{PacketID: 7, Subscriptions: []packets.Subscription{{Filter: tp}}}))
	raw, hdr := c.read()
	if raw[0] != 0x90 {
		t.Fatalf("SUBACK expected, got % x", raw)
	}
	return c, tp, raw, hdr
}

// Variable Byte Integers the server writes use the fewest bytes: the
// Remaining Length and Property Length of PUBLISHes of 10 bytes to 20 kB.
func TestMQTT5_1_5_5_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c, tp, _, _ := v5RawSubscriber(t, tg)
	pub := v5Client(t, tg)
	sizes := []int{10, 121, 200, 16380, 20000}
	for _, n := range sizes {
		pub.publish(tp, bytes.Repeat([]byte{'p'}, n), 0, false)
	}
	for _, n := range sizes {
		raw, hdr := c.read()
		if raw[0]&0xf0 != 0x30 {
			t.Fatalf("PUBLISH expected, got % x", raw[:min(len(raw), 8)])
		}
		rem := len(raw) - hdr
		if hdr-1 != len(rawVBI(rem)) {
			t.Errorf("payload %d: Remaining Length %d written in %d bytes, minimum %d [MQTT-1.5.5-1]", n, rem, hdr-1, len(rawVBI(rem)))
		}
		at := hdr + 2 + len(tp) // QoS 0: no packet identifier
		pl, pn := rawVBIAt(raw, at)
		if pn == 0 || pn != len(rawVBI(pl)) {
			t.Errorf("payload %d: Property Length %d written in %d bytes [MQTT-1.5.5-1]", n, pl, pn)
		}
	}
}

// A packet without properties still carries a Property Length of zero: the
// SUBACK and a property-less QoS 0 PUBLISH as sent by the server.
func TestMQTT5_2_2_2_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c, tp, suback, hdr := v5RawSubscriber(t, tg)
	// SUBACK: packet id, Property Length, properties, one reason code.
	pl, pn := rawVBIAt(suback, hdr+2)
	if pn == 0 || hdr+2+pn+pl+1 != len(suback) {
		t.Errorf("SUBACK % x has no well-placed Property Length [MQTT-2.2.2-1]", suback)
	}
	v5Client(t, tg).publish(tp, []byte("payload"), 0, false)
	raw, hdr := c.read()
	at := hdr + 2 + len(tp)
	pl, pn = rawVBIAt(raw, at)
	if pn == 0 || !bytes.Equal(raw[at+pn+pl:], []byte("payload")) {
		t.Errorf("PUBLISH % x: no Property Length between topic and payload [MQTT-2.2.2-1]", raw)
	}
}
