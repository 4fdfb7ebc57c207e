package conformance

// MQTT 5.0 §3.1 CONNECT and §3.2 CONNACK: what the server checks in a
// CONNECT and what its CONNACK must say.

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
)

// A second CONNECT on a connection is a Protocol Error: the server closes
// the connection (DISCONNECT 0x82) and sends no second CONNACK.
func TestMQTT5_3_1_0_2(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Client(t, tg)
	c.send(&packets.Connect{ProtocolName: "MQTT", Version: packets.V5, ClientID: clientID(t), CleanStart: true})
	v5ExpectDisconnect(c, tg, packets.ProtocolError) // [MQTT-3.1.0-2]
}

// A Protocol Name other than "MQTT" is refused: optionally CONNACK 0x84,
// then the connection is closed.
func TestMQTT5_3_1_2_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	v5RawRefused(t, tg, rawPkt(0x10, rawStr("MQTX"), []byte{5, 0x02, 0, 60, 0}, rawStr(clientID(t))),
		packets.UnsupportedProtocolVersion, packets.MalformedPacket, packets.ProtocolError) // [MQTT-3.1.2-1]
}

// A Protocol Version the server does not support (6) is refused: optionally
// CONNACK 0x84, then the connection is closed.
func TestMQTT5_3_1_2_2(t *testing.T) {
	t.Parallel()
	tg := target(t)
	// CONNECT "MQTT" level 6, flags clean start, keep alive 60, no properties, client id.
	v5RawRefused(t, tg, rawPkt(0x10, rawStr("MQTT"), []byte{6, 0x02, 0, 60, 0}, rawStr(clientID(t))), packets.UnsupportedProtocolVersion) // [MQTT-3.1.2-2]
}

// The reserved bit 0 of the Connect Flags must be zero; otherwise the
// CONNECT is malformed and the connection is closed.
func TestMQTT5_3_1_2_3(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Dial(t, tg)
	c.sendRaw(rawPkt(0x10, rawStr("MQTT"), []byte{5, 0x03, 0, 60, 0}, rawStr(clientID(t))))
	v5ExpectConnackClose(c, packets.MalformedPacket, packets.ProtocolError) // [MQTT-3.1.2-3]
}

// A client identifier of 1-23 digits and ASCII letters is accepted.
func TestMQTT5_3_1_3_5(t *testing.T) {
	t.Parallel()
	tg := target(t)
	for _, id := range []string{"a", "0123456789abcdefghijKLM", "Z9"} {
		c := v5Dial(t, tg)
		ack := c.connect(&packets.Connect{ClientID: id, CleanStart: true, KeepAlive: 60})
		if ack.ReasonCode != packets.Success {
			t.Errorf("client id %q refused with %v [MQTT-3.1.3-5]", id, ack.ReasonCode)
		}
		v5Leave(c)
	}
}

// An empty client identifier, if accepted, gets a unique identifier
// assigned by the server.
func TestMQTT5_3_1_3_6(t *testing.T) {
	t.Parallel()
	tg := target(t)
	seen := map[string]bool{}
	for range 3 {
		c := v5Dial(t, tg)
		ack := c.connect(&packets.Connect{CleanStart: true, KeepAlive: 60})
		if ack.ReasonCode != packets.Success {
			if ack.ReasonCode != packets.ClientIdentifierNotValid {
				t.Fatalf("empty client id refused with %v; a refusal must be 0x85", ack.ReasonCode)
			}
			c.expectClosed(wait)
			t.Skip("server does not accept empty client identifiers (allowed); nothing to assign")
		}
		id := ack.Properties.AssignedClientID
		if id == "" {
			t.Fatalf("empty client id accepted without an Assigned Client Identifier [MQTT-3.1.3-6]")
		}
		if seen[id] {
			t.Fatalf("assigned client id %q handed out twice [MQTT-3.1.3-6]", id)
		}
		seen[id] = true
	}
}

// The CONNACK of an accepted empty client identifier returns the assigned
// identifier, and the session is keyed by it: reconnecting with it and Clean
// Start 0 finds the session.
func TestMQTT5_3_1_3_7(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Dial(t, tg)
	ack := c.connect(&packets.Connect{CleanStart: true, KeepAlive: 60, Properties: packets.Properties{SessionExpiry: 60}})
	if ack.ReasonCode == packets.ClientIdentifierNotValid {
		c.expectClosed(wait)
		t.Skip("server does not accept empty client identifiers (allowed)")
	}
	if ack.ReasonCode != packets.Success {
		t.Fatalf("CONNACK %v", ack.ReasonCode)
	}
	id := ack.Properties.AssignedClientID
	if id == "" {
		t.Fatalf("no Assigned Client Identifier in CONNACK [MQTT-3.1.3-7]")
	}
	v5MustSub(c, topic(t), 1)
	v5Leave(c)
	c2, ack2 := v5Connect(t, tg, id, v5Session(false, 60))
	if !ack2.SessionPresent {
		t.Errorf("reconnecting with the assigned id %q found no session [MQTT-3.1.3-7]", id)
	}
	v5Leave(c2)
}

// A client identifier the server rejects gets CONNACK 0x85 (if any CONNACK)
// and the connection is closed. Identifiers outside the guaranteed set are
// tried; each must be either accepted or refused that way.
func TestMQTT5_3_1_3_8(t *testing.T) {
	t.Parallel()
	tg := target(t)
	for _, id := range []string{strings.Repeat("x", 200) + uid(t), "cf/" + uid(t) + "/#+ é"} {
		c := v5Dial(t, tg)
		c.send(&packets.Connect{ProtocolName: "MQTT", Version: packets.V5, ClientID: id, CleanStart: true, KeepAlive: 60})
		p := c.next(wait)
		ack, ok := p.(*packets.Connack)
		if !ok {
			t.Fatalf("expected CONNACK, got %s", describe([]packets.Packet{p}))
		}
		if ack.ReasonCode == packets.Success {
			v5Leave(c)
			continue
		}
		if ack.ReasonCode != packets.ClientIdentifierNotValid && ack.ReasonCode < 0x80 {
			t.Errorf("client id %q: CONNACK %v", id, ack.ReasonCode)
		}
		c.expectClosed(wait) // [MQTT-3.1.3-8]
	}
}

// The server checks that CONNECT matches §3.1 and closes the connection when
// it does not: here the Property Length runs past the end of the packet.
func TestMQTT5_3_1_4_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Dial(t, tg)
	c.sendRaw(rawPkt(0x10, rawStr("MQTT"), []byte{5, 0x02, 0, 60, 0x20}, rawStr("ab")))
	v5ExpectConnackClose(c, packets.MalformedPacket, packets.ProtocolError) // [MQTT-3.1.4-1]
}

// Any failed check of the CONNECT closes the connection: Will QoS 1 with
// the Will Flag 0 is malformed.
func TestMQTT5_3_1_4_2(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Dial(t, tg)
	c.sendRaw(rawPkt(0x10, rawStr("MQTT"), []byte{5, 0x02 | 0x08, 0, 60, 0}, rawStr(clientID(t))))
	v5ExpectConnackClose(c, packets.MalformedPacket, packets.ProtocolError) // [MQTT-3.1.4-2]
}

// A CONNECT with the client identifier of a connected client takes over: the
// old connection gets DISCONNECT 0x8E and is closed.
func TestMQTT5_3_1_4_3(t *testing.T) {
	t.Parallel()
	tg := target(t)
	id := clientID(t)
	old, _ := v5Connect(t, tg, id, nil)
	newer, _ := v5Connect(t, tg, id, nil)
	v5ExpectDisconnect(old, tg, packets.SessionTakenOver) // [MQTT-3.1.4-3]
	newer.expectOpen()
}

// An accepted CONNECT is confirmed with CONNACK reason code 0x00.
func TestMQTT5_3_1_4_5(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Dial(t, tg)
	ack := c.connect(&packets.Connect{ClientID: clientID(t), CleanStart: true, KeepAlive: 30})
	if ack.ReasonCode != packets.Success {
		t.Fatalf("CONNACK %v, want Success [MQTT-3.1.4-5]", ack.ReasonCode)
	}
}

// After refusing a CONNECT the server processes nothing else the client
// sent: a retained PUBLISH pipelined behind a refused CONNECT is not stored.
func TestMQTT5_3_1_4_6(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := topic(t, "r")
	bad := rawPkt(0x10, rawStr("MQTT"), []byte{6, 0x02, 0, 60, 0}, rawStr(clientID(t))) // version 6: refused
	pub := v5Encode(t, &packets.Publish{Topic: tp, Payload: []byte("must-not-be-kept"), Retain: true})
	v5RawRefused(t, tg, append(bad, pub...), packets.UnsupportedProtocolVersion) // nothing but a refusing CONNACK [MQTT-3.1.4-6]
	sub := v5Client(t, tg)
	v5MustSub(sub, tp, 0)
	sub.expectNone(short) // [MQTT-3.1.4-6] the PUBLISH was not processed
}

// The server sends a successful CONNACK before any other packet, even when
// the client pipelines SUBSCRIBE and PINGREQ behind its CONNECT.
func TestMQTT5_3_2_0_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	tp := topic(t)
	pub := v5Client(t, tg)
	pub.publish(tp, []byte("kept"), 1, true)

	c := v5Dial(t, tg)
	b := v5Encode(t, &packets.Connect{ProtocolName: "MQTT", Version: packets.V5, ClientID: clientID(t), CleanStart: true, KeepAlive: 60})
	b = append(b, v5Encode(t, &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: tp, QoS: 1}}})...)
	b = append(b, v5Encode(t, &packets.Pingreq{})...)
	c.sendRaw(b)
	first := c.next(wait)
	if ack, ok := first.(*packets.Connack); !ok || ack.ReasonCode != packets.Success {
		t.Fatalf("first packet %s, want a successful CONNACK [MQTT-3.2.0-1]", describe([]packets.Packet{first}))
	}
	expectType[*packets.Suback](c, wait)
	c.expect(packets.TypePingresp, wait)
	c.expectPublish(wait)
}

// At most one CONNACK per connection: a second CONNECT gets no CONNACK.
func TestMQTT5_3_2_0_2(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Client(t, tg)
	c.send(&packets.Connect{ProtocolName: "MQTT", Version: packets.V5, ClientID: clientID(t), CleanStart: true})
	for _, p := range c.waitClosed(wait) {
		if p.Type() == packets.TypeConnack {
			t.Fatalf("second CONNACK on one connection [MQTT-3.2.0-2]")
		}
	}
}

// CONNACK Acknowledge Flags bits 7-1 are zero; checked on the raw bytes.
func TestMQTT5_3_2_2_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	id := clientID(t)
	// Once with a fresh session, once with Session Present 1.
	for _, clean := range []bool{true, false} {
		b := v5RawFirstPacket(t, tg, v5Encode(t, &packets.Connect{ProtocolName: "MQTT", Version: packets.V5, ClientID: id, CleanStart: clean, KeepAlive: 60,
			Properties: packets.Properties{SessionExpiry: 60}}))
		if b[0] != 0x20 {
			t.Fatalf("first packet byte %#x, want CONNACK 0x20", b[0])
		}
		hdr := 1 + len(rawVBI(int(b[1]&0x7f)))
		if b[hdr]&0xFE != 0 {
			t.Errorf("CONNACK acknowledge flags %08b: bits 7-1 must be 0 [MQTT-3.2.2-1]", b[hdr])
		}
	}
}

// Clean Start 1: Session Present 0 and reason code 0x00, even when a session
// existed.
func TestMQTT5_3_2_2_2(t *testing.T) {
	t.Parallel()
	tg := target(t)
	id := clientID(t)
	c, _ := v5Connect(t, tg, id, v5Session(true, 60))
	v5MustSub(c, topic(t), 1)
	v5Leave(c)
	c2, ack := v5Connect(t, tg, id, v5Session(true, 60))
	if ack.SessionPresent || ack.ReasonCode != packets.Success {
		t.Errorf("Clean Start 1: CONNACK session present %v code %v, want false/0x00 [MQTT-3.2.2-2]", ack.SessionPresent, ack.ReasonCode)
	}
	v5Leave(c2)
}

// Clean Start 0: Session Present says whether state existed; code 0x00.
func TestMQTT5_3_2_2_3(t *testing.T) {
	t.Parallel()
	tg := target(t)
	id := clientID(t)
	c, ack := v5Connect(t, tg, id, v5Session(false, 60))
	if ack.SessionPresent {
		t.Errorf("no session existed, yet Session Present 1 [MQTT-3.2.2-3]")
	}
	v5MustSub(c, topic(t), 1)
	v5Leave(c)
	c2, ack2 := v5Connect(t, tg, id, v5Session(false, 60))
	if !ack2.SessionPresent {
		t.Errorf("session existed, yet Session Present 0 [MQTT-3.2.2-3]")
	}
	v5Leave(c2)
	c3, _ := v5Connect(t, tg, id, v5Session(true, 0)) // clean up the session
	v5Leave(c3)
}

// A CONNACK with a non-zero reason code has Session Present 0, even when a
// session exists for the client identifier.
func TestMQTT5_3_2_2_6(t *testing.T) {
	t.Parallel()
	tg := target(t)
	id := clientID(t)
	c, _ := v5Connect(t, tg, id, v5Session(false, 60))
	v5MustSub(c, topic(t), 1)
	v5Leave(c)
	c2 := v5Dial(t, tg)
	ack := c2.connect(&packets.Connect{ClientID: id, KeepAlive: 60, Properties: packets.Properties{SessionExpiry: 60, AuthMethod: "cf-unknown-method-" + uid(t)}})
	if ack.ReasonCode == packets.Success {
		t.Skip("server accepted an unknown authentication method; cannot provoke a refusing CONNACK")
	}
	if ack.SessionPresent {
		t.Errorf("CONNACK %v with Session Present 1 [MQTT-3.2.2-6]", ack.ReasonCode)
	}
}

// After a CONNACK with reason code 0x80 or more the server closes the
// connection.
func TestMQTT5_3_2_2_7(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Dial(t, tg)
	c.send(&packets.Connect{ProtocolName: "MQTT", Version: packets.V5, ClientID: clientID(t), CleanStart: true,
		Properties: packets.Properties{AuthMethod: "cf-unknown-method"}})
	ack := expectType[*packets.Connack](c, wait)
	if !ack.ReasonCode.IsError() {
		t.Skipf("server accepted an unknown authentication method (%v); no refusal to observe", ack.ReasonCode)
	}
	c.expectClosed(wait) // [MQTT-3.2.2-7]
}

// Every CONNACK reason code the server sends is in the Connect Reason Code
// table: accepted, bad version, bad authentication method, malformed.
func TestMQTT5_3_2_2_8(t *testing.T) {
	t.Parallel()
	tg := target(t)
	attempts := [][]byte{
		v5Encode(t, &packets.Connect{ProtocolName: "MQTT", Version: packets.V5, ClientID: clientID(t), CleanStart: true}),
		v5Encode(t, &packets.Connect{ProtocolName: "MQTT", Version: packets.V5, ClientID: clientID(t), CleanStart: true, Properties: packets.Properties{AuthMethod: "cf-x"}}),
		rawPkt(0x10, rawStr("MQTT"), []byte{5, 0x03, 0, 60, 0}, rawStr(clientID(t))),
	}
	for i, b := range attempts {
		c := v5Dial(t, tg)
		c.sendRaw(b)
		got := c.waitClosedOrPacket()
		if ack, ok := got.(*packets.Connack); ok && !slices.Contains(v5ConnackCodes, ack.ReasonCode) {
			t.Errorf("attempt %d: CONNACK reason code %#x is not a Connect Reason Code [MQTT-3.2.2-8]", i, byte(ack.ReasonCode))
		}
		c.close()
	}
}

// A server lacking QoS 1 or 2 says so with Maximum QoS (0 or 1); without the
// property it supports QoS 2, so a QoS 2 PUBLISH is answered with PUBREC.
func TestMQTT5_3_2_2_9(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c, ack := v5Connect(t, tg, "", nil)
	if ack.Properties.Has(packets.PropMaximumQoS) {
		if m := ack.Properties.MaximumQoS; m > 1 {
			t.Fatalf("Maximum QoS %d: only 0 or 1 may be sent [MQTT-3.2.2-9]", m)
		}
		return
	}
	c.publish(topic(t), []byte("q2"), 2, false) // [MQTT-3.2.2-9] full QoS 2 flow when no Maximum QoS
}

// Whatever its Maximum QoS, the server accepts SUBSCRIBE at QoS 0, 1 and 2.
func TestMQTT5_3_2_2_10(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Client(t, tg)
	for q := byte(0); q <= 2; q++ {
		got := c.subscribe(topic(t), q)
		if got.IsError() || byte(got) > q {
			t.Errorf("SUBSCRIBE QoS %d answered %v [MQTT-3.2.2-10]", q, got)
		}
	}
}

// A Will QoS above the server's Maximum QoS is refused (CONNACK 0x9B) and
// the connection closed; a server that accepts Will QoS 2 must not have
// announced a lower Maximum QoS.
func TestMQTT5_3_2_2_12(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Dial(t, tg)
	ack := c.connect(&packets.Connect{ClientID: clientID(t), CleanStart: true, KeepAlive: 60,
		Will: &packets.Will{Topic: topic(t, "will"), Payload: []byte("w"), QoS: 2}})
	if ack.ReasonCode == packets.Success {
		if ack.Properties.Has(packets.PropMaximumQoS) && ack.Properties.MaximumQoS < 2 {
			t.Errorf("Will QoS 2 accepted by a server with Maximum QoS %d [MQTT-3.2.2-12]", ack.Properties.MaximumQoS)
		}
		v5Leave(c)
		return
	}
	if ack.ReasonCode != packets.QoSNotSupported {
		t.Errorf("Will QoS 2 refused with %v; expected 0x9B", ack.ReasonCode)
	}
	c.expectClosed(wait) // [MQTT-3.2.2-12]
}

// A retained Will is refused (CONNACK 0x9A) when retain is unsupported; a
// server that accepts it must not have said Retain Available 0.
func TestMQTT5_3_2_2_13(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c := v5Dial(t, tg)
	ack := c.connect(&packets.Connect{ClientID: clientID(t), CleanStart: true, KeepAlive: 60,
		Will: &packets.Will{Topic: topic(t, "will"), Payload: []byte("w"), Retain: true}})
	if ack.ReasonCode == packets.Success {
		if ack.Properties.Has(packets.PropRetainAvailable) && ack.Properties.RetainAvailable == 0 {
			t.Errorf("retained Will accepted by a server with Retain Available 0 [MQTT-3.2.2-13]")
		}
		v5Leave(c)
		return
	}
	if ack.ReasonCode != packets.RetainNotSupported {
		t.Errorf("retained Will refused with %v; expected 0x9A", ack.ReasonCode)
	}
	c.expectClosed(wait) // [MQTT-3.2.2-13]
}

// An assigned client identifier is not used by any current session: it
// differs from connected clients' identifiers and from other assignments.
func TestMQTT5_3_2_2_16(t *testing.T) {
	t.Parallel()
	tg := target(t)
	existing := clientID(t)
	v5Connect(t, tg, existing, nil)
	ids := map[string]bool{existing: true}
	for range 3 {
		c := v5Dial(t, tg)
		ack := c.connect(&packets.Connect{CleanStart: true, KeepAlive: 60})
		if ack.ReasonCode != packets.Success {
			t.Skipf("server refuses empty client identifiers (%v), which is allowed", ack.ReasonCode)
		}
		id := ack.Properties.AssignedClientID
		if id == "" || ids[id] {
			t.Fatalf("assigned client identifier %q is empty or already in use [MQTT-3.2.2-16]", id)
		}
		ids[id] = true
	}
}

// Request Response Information 0 (and absent): no Response Information in
// the CONNACK.
func TestMQTT5_3_1_2_28(t *testing.T) {
	t.Parallel()
	tg := target(t)
	_, ack := v5Connect(t, tg, "", func(c *packets.Connect) {
		c.Properties.RequestResponseInfo = 0
		c.Properties.Mark(packets.PropRequestResponseInfo)
	})
	if ack.Properties.Has(packets.PropResponseInfo) {
		t.Errorf("Response Information %q sent although Request Response Information is 0 [MQTT-3.1.2-28]", ack.Properties.ResponseInfo)
	}
	_, ack = v5Connect(t, tg, "", nil)
	if ack.Properties.Has(packets.PropResponseInfo) {
		t.Errorf("Response Information %q sent although not requested [MQTT-3.1.2-28]", ack.Properties.ResponseInfo)
	}
}

// Request Problem Information 0: no Reason String or User Properties on any
// packet but PUBLISH, CONNACK and DISCONNECT. Error-bearing acks are
// provoked: PUBACK/PUBREC with no subscribers, SUBACK for an invalid filter,
// UNSUBACK for an unknown subscription, PUBCOMP for an unknown identifier.
func TestMQTT5_3_1_2_29(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c, _ := v5Connect(t, tg, "", func(c *packets.Connect) {
		c.Properties.RequestProblemInfo = 0
		c.Properties.Mark(packets.PropRequestProblemInfo)
	})
	check := func(p packets.Packet, props packets.Properties) {
		t.Helper()
		if props.Has(packets.PropReasonString) || props.Has(packets.PropUser) {
			t.Errorf("%s carries Reason String %q / User Properties %v although Request Problem Information is 0 [MQTT-3.1.2-29]",
				typeName(p.Type()), props.ReasonString, props.User)
		}
	}
	tp := topic(t, "nobody")
	c.send(&packets.Publish{Topic: tp, QoS: 1, PacketID: 1, Payload: []byte("x")})
	pa := expectType[*packets.Puback](c, wait)
	check(pa, pa.Properties)
	c.send(&packets.Publish{Topic: tp, QoS: 2, PacketID: 2, Payload: []byte("x")})
	pr := expectType[*packets.Pubrec](c, wait)
	check(pr, pr.Properties)
	c.send(&packets.Pubrel{PacketID: 2})
	pc := expectType[*packets.Pubcomp](c, wait)
	check(pc, pc.Properties)
	c.send(&packets.Pubrel{PacketID: 77})
	pc = expectType[*packets.Pubcomp](c, wait)
	check(pc, pc.Properties)
	sa := c.subscribeWith(&packets.Subscribe{Subscriptions: []packets.Subscription{{Filter: topic(t), QoS: 1}}})
	check(sa, sa.Properties)
	ua := c.unsubscribe(topic(t, "never"))
	check(ua, ua.Properties)
}

// Without a Server Keep Alive the server applies the client's Keep Alive: a
// silent client with Keep Alive 1 is disconnected, one that pings is not.
func TestMQTT5_3_2_2_22(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c, ack := v5Connect(t, tg, "", func(c *packets.Connect) { c.KeepAlive = 1 })
	if ack.Properties.Has(packets.PropServerKeepAlive) {
		t.Skipf("server sent Server Keep Alive %d; the statement covers only its absence", ack.Properties.ServerKeepAlive)
	}
	// A client that pings every half second stays connected for 3 s.
	for range 6 {
		letTimePass(500 * time.Millisecond)
		c.expectOpen()
	}
	// Silent: closed after 1.5 x 1 s (bounded generously).
	if d := c.expectClosed(1500*time.Millisecond + wait); d != nil && d.ReasonCode != packets.KeepAliveTimeout {
		t.Errorf("keep-alive DISCONNECT reason %v, want 0x8D", d.ReasonCode)
	}
}
