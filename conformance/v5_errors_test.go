package conformance

// MQTT 5.0 data representation errors (§1.5, §2.1.3), PINGREQ (§3.12),
// DISCONNECT (§3.14), AUTH and enhanced authentication (§3.15, §4.12), and
// error handling (§4.13).

import (
	"slices"
	"testing"

	"github.com/beaconmq/beacon/packets"
)

// A UTF-8 string encoding a surrogate (U+D800 as ED A0 80) is malformed:
// DISCONNECT 0x81 and close, nothing delivered.
func TestMQTT5_1_5_4_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	root := topic(t)
	sub := v5Client(t, tg)
	v5MustSub(sub, root+"/#", 0)
	c := v5Client(t, tg)
	c.sendRaw(rawPublish0(root+"/\xed\xa0\x80", []byte{0}, "surrogate"))
	v5ExpectDisconnect(c, tg, packets.MalformedPacket, packets.TopicNameInvalid) // [MQTT-1.5.4-1]
	sub.expectNone(short)
}

// A UTF-8 string containing U+0000 is malformed.
func TestMQTT5_1_5_4_2(t *testing.T) {
	t.Parallel()
	tg := target(t)
	root := topic(t)
	sub := v5Client(t, tg)
	v5MustSub(sub, root+"/#", 0)
	c := v5Client(t, tg)
	c.sendRaw(rawPublish0(root+"/a\x00b", []byte{0}, "nul"))
	v5ExpectDisconnect(c, tg, packets.MalformedPacket, packets.TopicNameInvalid) // [MQTT-1.5.4-2]
	sub.expectNone(short)
}

// Both halves of a UTF-8 String Pair obey the UTF-8 rules: a User Property
// whose key (then value) is ill-formed makes the packet malformed.
func TestMQTT5_1_5_7_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := topic(t)
	sub := v5Client(t, tg)
	v5MustSub(sub, tp, 0)
	pairs := [][]byte{
		append(append([]byte{0x26}, rawStr("k\xff")...), rawStr("v")...),
		append(append([]byte{0x26}, rawStr("k")...), rawStr("v\x00")...),
	}
	for _, pair := range pairs {
		c := v5Client(t, tg)
		c.sendRaw(rawPublish0(tp, rawProps(pair), "x"))
		v5ExpectDisconnect(c, tg, packets.MalformedPacket) // [MQTT-1.5.7-1]
	}
	sub.expectNone(short)
}

// Reserved fixed-header flag bits must have their defined values: PINGREQ
// with flags 0001 is malformed.
func TestMQTT5_2_1_3_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Client(t, tg)
	c.sendRaw([]byte{0xC1, 0x00})
	v5ExpectDisconnect(c, tg, packets.MalformedPacket) // [MQTT-2.1.3-1]
	c2 := v5Client(t, tg)
	c2.sendRaw([]byte{0x48, 0x02, 0x00, 0x01}) // PUBACK with flags 1000
	v5ExpectDisconnect(c2, tg, packets.MalformedPacket)
}

// Each PINGREQ is answered by a PINGRESP.
func TestMQTT5_3_12_4_1(t *testing.T) {
	t.Parallel()
	c := v5Client(t, target(t))
	for range 3 {
		c.send(&packets.Pingreq{})
	}
	for range 3 {
		c.expect(packets.TypePingresp, wait) // [MQTT-3.12.4-1]
	}
}

// The server sends DISCONNECT only after a CONNACK below 0x80: a bad CONNECT
// or a first packet that is not CONNECT gets no DISCONNECT.
func TestMQTT5_3_14_0_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	inputs := [][]byte{
		rawPkt(0x10, rawStr("MQTT"), []byte{5, 0x03, 0, 60, 0}, rawStr(clientID(t))), // reserved flag
		v5Encode(t, &packets.Publish{Topic: topic(t), Payload: []byte("early")}),     // not CONNECT
		{0xC0, 0x00}, // PINGREQ first
	}
	for i, b := range inputs {
		c := v5Dial(t, tg)
		c.sendRaw(b)
		for _, p := range c.waitClosed(wait) {
			if p.Type() == packets.TypeDisconnect {
				t.Errorf("input %d: DISCONNECT without a successful CONNACK [MQTT-3.14.0-1]", i)
			}
		}
	}
}

// A DISCONNECT with non-zero reserved flags is malformed; the server
// closes, and as the disconnection was not normal the Will is published.
func TestMQTT5_3_14_1_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	wt := topic(t, "will")
	sub := v5Client(t, tg)
	v5MustSub(sub, wt, 1)
	c, _ := v5Connect(t, tg, "", func(c *packets.Connect) {
		c.Will = &packets.Will{Topic: wt, Payload: []byte("malformed-disconnect"), QoS: 1}
	})
	c.sendRaw([]byte{0xE1, 0x00})
	v5ExpectDisconnect(c, tg, packets.MalformedPacket) // [MQTT-3.14.1-1]
	if p := sub.receive(wait); string(p.Payload) != "malformed-disconnect" {
		t.Errorf("will %q", p.Payload)
	}
}

// v5ServerDisconnects provokes three server DISCONNECTs (protocol error,
// session takeover, topic alias invalid) and returns them.
func v5ServerDisconnects(t *testing.T, tg *Target, mod func(*packets.Connect)) []*packets.Disconnect {
	t.Helper()
	var out []*packets.Disconnect
	c, _ := v5Connect(t, tg, "", mod)
	c.send(&packets.Connect{ProtocolName: "MQTT", Version: packets.V5, ClientID: clientID(t)})
	out = append(out, c.expectClosed(wait))
	id := clientID(t)
	old, _ := v5Connect(t, tg, id, mod)
	v5Connect(t, tg, id, nil)
	out = append(out, old.expectClosed(wait))
	c3, _ := v5Connect(t, tg, "", mod)
	c3.sendRaw(rawPublish0("", rawProps([]byte{0x23, 0xff, 0xff}), "x"))
	out = append(out, c3.expectClosed(wait))
	return slices.DeleteFunc(out, func(d *packets.Disconnect) bool { return d == nil })
}

// The server's DISCONNECT reason codes are from the DISCONNECT table.
func TestMQTT5_3_14_2_1(t *testing.T) {
	t.Parallel()
	for _, d := range v5ServerDisconnects(t, target(t), nil) {
		if !slices.Contains(v5DisconnectCodes, d.ReasonCode) {
			t.Errorf("DISCONNECT reason code %#x undefined [MQTT-3.14.2-1]", byte(d.ReasonCode))
		}
	}
}

// The server never puts a Session Expiry Interval in DISCONNECT.
func TestMQTT5_3_14_2_2(t *testing.T) {
	t.Parallel()
	for _, d := range v5ServerDisconnects(t, target(t), v5Session(false, 30)) {
		if d.Properties.Has(packets.PropSessionExpiry) {
			t.Errorf("DISCONNECT %v carries Session Expiry Interval %d [MQTT-3.14.2-2]", d.ReasonCode, d.Properties.SessionExpiry)
		}
	}
}

// After sending DISCONNECT the server sends nothing more on the connection,
// even with traffic for the taken-over client's subscription.
func TestMQTT5_3_14_4_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	id, tp := clientID(t), topic(t)
	old, _ := v5Connect(t, tg, id, v5Session(true, 60))
	v5MustSub(old, tp, 0)
	v5Connect(t, tg, id, v5Session(false, 60))
	v5Client(t, tg).publish(tp, []byte("after"), 1, false)
	got := old.waitClosed(wait)
	for i, p := range got {
		if p.Type() == packets.TypeDisconnect && i != len(got)-1 {
			t.Errorf("packets after DISCONNECT: %s [MQTT-3.14.4-1]", describe(got[i+1:]))
		}
	}
}

// After sending DISCONNECT the server closes the connection.
func TestMQTT5_3_14_4_2(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Client(t, tg)
	c.send(&packets.Connect{ProtocolName: "MQTT", Version: packets.V5, ClientID: clientID(t)}) // a second CONNECT provokes DISCONNECT 0x82
	v5ExpectDisconnect(c, tg, packets.ProtocolError)                                           // fails unless closed [MQTT-3.14.4-2]
}

// AUTH with non-zero fixed-header flags is malformed (and AUTH without an
// authentication exchange a protocol error): the connection is closed.
func TestMQTT5_3_15_1_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Client(t, tg)
	c.sendRaw([]byte{0xF1, 0x00})
	v5ExpectDisconnect(c, tg, packets.MalformedPacket, packets.ProtocolError) // [MQTT-3.15.1-1]
}

// An unsupported Authentication Method is refused with CONNACK 0x8C or
// 0x87, and the connection closed.
func TestMQTT5_4_12_0_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Dial(t, tg)
	c.send(&packets.Connect{ProtocolName: "MQTT", Version: packets.V5, ClientID: clientID(t), CleanStart: true,
		Properties: packets.Properties{AuthMethod: "CF-UNSUPPORTED-" + uid(t), AuthData: []byte{1, 2}}})
	if ack := v5ExpectConnackClose(c, packets.BadAuthenticationMethod, packets.NotAuthorized); ack == nil && !tg.External {
		t.Errorf("closed without CONNACK 0x8C")
	}
}

// A server continuing an authentication sends AUTH with reason 0x18 and the
// same method; a server that refuses sends no AUTH at all.
func TestMQTT5_4_12_0_2(t *testing.T) {
	t.Parallel()
	tg := target(t)
	method := "SCRAM-SHA-256"
	c := v5Dial(t, tg)
	c.send(&packets.Connect{ProtocolName: "MQTT", Version: packets.V5, ClientID: clientID(t), CleanStart: true,
		Properties: packets.Properties{AuthMethod: method, AuthData: []byte("n,,n=user,r=abc")}})
	switch p := c.waitClosedOrPacket().(type) {
	case nil, *packets.Connack:
	case *packets.Auth:
		if p.ReasonCode != packets.ContinueAuthentication || p.Properties.AuthMethod != method {
			t.Errorf("server AUTH reason %v method %q, want 0x18 and %q [MQTT-4.12.0-2]", p.ReasonCode, p.Properties.AuthMethod, method)
		}
	default:
		t.Errorf("got %s", describe([]packets.Packet{p}))
	}
}

// A server rejecting authentication may send CONNACK >= 0x80 and then
// closes the connection.
func TestMQTT5_4_12_0_4(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Dial(t, tg)
	c.send(&packets.Connect{ProtocolName: "MQTT", Version: packets.V5, ClientID: clientID(t), CleanStart: true,
		Properties: packets.Properties{AuthMethod: "CF-REJECT"}})
	for _, p := range c.waitClosed(wait) { // [MQTT-4.12.0-4] closed
		if a, ok := p.(*packets.Connack); !ok || !a.ReasonCode.IsError() {
			t.Errorf("rejected authentication answered with %s", describe([]packets.Packet{p}))
		}
	}
}

// A successful CONNACK to a CONNECT with an Authentication Method repeats
// that method (checked when the server accepts one).
func TestMQTT5_4_12_0_5(t *testing.T) {
	t.Parallel()
	tg := target(t)
	method := "CF-" + uid(t)
	c := v5Dial(t, tg)
	ack := c.connect(&packets.Connect{ClientID: clientID(t), CleanStart: true, Properties: packets.Properties{AuthMethod: method}})
	if ack.ReasonCode.IsError() {
		c.expectClosed(wait)
		return // refused: nothing to repeat
	}
	if ack.Properties.AuthMethod != method {
		t.Errorf("successful CONNACK Authentication Method %q, want %q [MQTT-4.12.0-5]", ack.Properties.AuthMethod, method)
	}
}

// Without an Authentication Method in CONNECT the server sends no AUTH and
// no Authentication Method in CONNACK.
func TestMQTT5_4_12_0_6(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c, ack := v5Connect(t, tg, "", nil)
	if ack.Properties.Has(packets.PropAuthMethod) || ack.Properties.Has(packets.PropAuthData) {
		t.Errorf("CONNACK carries authentication method %q [MQTT-4.12.0-6]", ack.Properties.AuthMethod)
	}
	c.expectOpen()
	for _, p := range c.queue {
		if p.Type() == packets.TypeAuth {
			t.Errorf("server sent AUTH [MQTT-4.12.0-6]")
		}
	}
}

// A failed re-authentication (AUTH 0x19 on a connection that never used an
// Authentication Method) ends with DISCONNECT and the close.
func TestMQTT5_4_12_1_2(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Client(t, tg)
	c.send(&packets.Auth{ReasonCode: packets.ReAuthenticate, Properties: packets.Properties{AuthMethod: "CF"}})
	v5ExpectDisconnect(c, tg, packets.ProtocolError, packets.BadAuthenticationMethod, packets.NotAuthorized) // [MQTT-4.12.1-2]
}

// A malformed packet closes the connection: a PUBLISH whose Property Length
// runs past the packet's end.
func TestMQTT5_4_13_1_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Client(t, tg)
	c.sendRaw(rawPkt(0x30, rawStr(topic(t)), []byte{0x40}, []byte("xy")))
	v5ExpectDisconnect(c, tg, packets.MalformedPacket) // [MQTT-4.13.1-1]
	// A protocol error too: SUBSCRIBE with Packet Identifier 0.
	c2 := v5Client(t, tg)
	c2.sendRaw(rawPkt(0x82, []byte{0, 0}, []byte{0}, rawStr(topic(t)), []byte{1}))
	v5ExpectDisconnect(c2, tg, packets.MalformedPacket, packets.ProtocolError)
}

// A CONNACK or DISCONNECT with a reason code >= 0x80 means the connection is
// closed.
func TestMQTT5_4_13_2_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Dial(t, tg)
	c.send(&packets.Connect{ProtocolName: "MQTT", Version: packets.V5, ClientID: clientID(t), CleanStart: true,
		Properties: packets.Properties{AuthMethod: "CF-NOPE"}})
	if ack := expectType[*packets.Connack](c, wait); ack.ReasonCode.IsError() {
		c.expectClosed(wait) // [MQTT-4.13.2-1]
	}
	c2 := v5Client(t, tg)
	c2.send(&packets.Connect{ProtocolName: "MQTT", Version: packets.V5, ClientID: clientID(t)})
	if d := c2.expectClosed(wait); d != nil && !d.ReasonCode.IsError() { // [MQTT-4.13.2-1]
		t.Errorf("protocol error DISCONNECT reason %v", d.ReasonCode)
	}
}

// TCP gives an ordered, lossless byte stream: a burst of messages arrives
// complete and in order.
func TestMQTT5_4_2_0_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	s, tp := v5Subscriber(t, tg, 1, nil)
	p := v5Client(t, tg)
	var batch []byte
	for i := range 50 {
		batch = append(batch, v5Encode(t, &packets.Publish{Topic: tp, QoS: 1, PacketID: uint16(i + 1), Payload: []byte{byte(i)}})...)
	}
	p.sendRaw(batch) // one write, many packets
	for i := range 50 {
		if g := s.receive(wait); len(g.Payload) != 1 || g.Payload[0] != byte(i) {
			t.Fatalf("message %d: payload %v [MQTT-4.2.0-1]", i, g.Payload)
		}
	}
}
