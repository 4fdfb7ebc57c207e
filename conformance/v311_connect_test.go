package conformance

// MQTT 3.1.1 §3.1 CONNECT and §3.2 CONNACK, as seen from the client side of
// the wire.

import (
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
)

const v4 = packets.V311

// TestMQTT311_3_1_0_2: a second CONNECT on one connection is a protocol
// violation and the server disconnects.
func TestMQTT311_3_1_0_2(t *testing.T) {
	tg := target(t)
	c := connectNew(t, tg, v4, clientID(t), true)
	c.send(&packets.Connect{ProtocolName: "MQTT", Version: v4, ClientID: clientID(t), CleanStart: true})
	c.expectClosed(wait)
}

// TestMQTT311_3_1_2_1: a wrong protocol name never yields an accepted 3.1.1
// session; the server closes the connection.
func TestMQTT311_3_1_2_1(t *testing.T) {
	tg := target(t)
	c := dial(t, tg, v4)
	c.sendRaw(rawConnect311("MQTX", 4, 0x02, 60, clientID(t)))
	for _, p := range c.waitClosed(wait) {
		if ca, ok := p.(*packets.Connack); ok && ca.ReasonCode == packets.Success {
			t.Fatalf("server accepted a CONNECT with protocol name %q", "MQTX")
		}
	}
}

// TestMQTT311_3_1_2_2: an unsupported protocol level gets CONNACK 0x01 and
// then the connection is closed.
func TestMQTT311_3_1_2_2(t *testing.T) {
	tg := target(t)
	c := dial(t, tg, v4)
	c.sendRaw(rawConnect311("MQTT", 9, 0x02, 60, clientID(t)))
	ca := expectType[*packets.Connack](c, wait)
	if code, _ := ca.ReasonCode.ConnackReturnCode(); code != packets.ConnRefusedProtocolVersion311 {
		t.Fatalf("CONNACK return code %#x (%v), want 0x01", code, ca.ReasonCode)
	}
	c.expectClosed(wait)
}

// TestMQTT311_3_1_2_3: the reserved CONNECT flag (bit 0) must be zero; the
// server disconnects without accepting otherwise.
func TestMQTT311_3_1_2_3(t *testing.T) {
	tg := target(t)
	c := dial(t, tg, v4)
	c.sendRaw(rawConnect311("MQTT", 4, 0x03, 60, clientID(t)))
	c.expectClosed(wait)
}

// TestMQTT311_3_1_2_4: with CleanSession=0 the server keeps the session
// after the disconnect and resumes it: the subscription still delivers.
func TestMQTT311_3_1_2_4(t *testing.T) {
	tg := target(t)
	id, tp := clientID(t), topic(t, "s")
	c := connectNew(t, tg, v4, id, false)
	c.subscribe(tp, 1)
	c.disconnect()

	c = dial(t, tg, v4)
	ca := c.connect(&packets.Connect{ClientID: id, KeepAlive: 60})
	if ca.ReasonCode != packets.Success || !ca.SessionPresent {
		t.Fatalf("resuming CONNECT: code %v session present %v, want success and true", ca.ReasonCode, ca.SessionPresent)
	}
	pub := connectNew(t, tg, v4, clientID(t), true)
	pub.publish(tp, []byte("resumed"), 1, false)
	if p := c.receive(wait); p.Topic != tp || string(p.Payload) != "resumed" {
		t.Fatalf("got %s", describe([]packets.Packet{p}))
	}
	cleanup(t, tg, id)
}

// TestMQTT311_3_1_2_5: QoS 1 and QoS 2 messages matching a disconnected
// CleanSession=0 session are stored and delivered on reconnect.
func TestMQTT311_3_1_2_5(t *testing.T) {
	tg := target(t)
	id, tp := clientID(t), topic(t, "q")
	c := connectNew(t, tg, v4, id, false)
	c.subscribe(tp, 2)
	c.disconnect()

	pub := connectNew(t, tg, v4, clientID(t), true)
	pub.publish(tp, []byte("one"), 1, false)
	pub.publish(tp, []byte("two"), 2, false)

	c = connectNew(t, tg, v4, id, false)
	got := map[string]byte{}
	for range 2 {
		p := c.receive(wait)
		got[string(p.Payload)] = p.QoS
	}
	if got["one"] != 1 || got["two"] != 2 {
		t.Fatalf("stored messages delivered as %v, want one at QoS 1 and two at QoS 2", got)
	}
	cleanup(t, tg, id)
}

// TestMQTT311_3_1_2_6: CleanSession=1 discards the previous session, and a
// later CleanSession=0 connection does not get the discarded state back.
func TestMQTT311_3_1_2_6(t *testing.T) {
	tg := target(t)
	id, tp := clientID(t), topic(t, "c")
	c := connectNew(t, tg, v4, id, false)
	c.subscribe(tp, 1)
	c.disconnect()

	c = dial(t, tg, v4)
	ca := c.connect(&packets.Connect{ClientID: id, CleanStart: true, KeepAlive: 60})
	if ca.ReasonCode != packets.Success || ca.SessionPresent {
		t.Fatalf("clean CONNECT: code %v session present %v, want success and false", ca.ReasonCode, ca.SessionPresent)
	}
	pub := connectNew(t, tg, v4, clientID(t), true)
	pub.publish(tp, []byte("x"), 1, false)
	c.expectNone(short)
	c.disconnect()

	c = dial(t, tg, v4)
	ca = c.connect(&packets.Connect{ClientID: id, KeepAlive: 60})
	if ca.SessionPresent {
		t.Fatalf("the session discarded by CleanSession=1 came back (session present)")
	}
	pub.publish(tp, []byte("y"), 1, false)
	c.expectNone(short)
	cleanup(t, tg, id)
}

// TestMQTT311_3_1_2_7: retained messages outlive the session of the client
// that published them.
func TestMQTT311_3_1_2_7(t *testing.T) {
	tg := target(t)
	tp := topic(t, "r")
	pub := connectNew(t, tg, v4, clientID(t), true)
	pub.publish(tp, []byte("kept"), 1, true)
	pub.disconnect()

	sub := connectNew(t, tg, v4, clientID(t), true)
	sub.subscribe(tp, 1)
	if p := sub.receive(wait); string(p.Payload) != "kept" || !p.Retain {
		t.Fatalf("got %s, want the retained message", describe([]packets.Packet{p}))
	}
	clearRetained(t, tg, tp)
}

// TestMQTT311_3_1_2_8: a Will is published when the connection closes
// without DISCONNECT: dropped by the client, or closed by the server
// because the Keep Alive expired.
func TestMQTT311_3_1_2_8(t *testing.T) {
	for _, how := range []string{"dropped", "keep alive"} {
		t.Run(how, func(t *testing.T) {
			tg := target(t)
			wt := topic(t, "will")
			watcher := connectNew(t, tg, v4, clientID(t), true)
			watcher.subscribe(wt, 1)
			c := dial(t, tg, v4)
			ka := uint16(60)
			if how == "keep alive" {
				ka = 1
			}
			w := &packets.Will{Topic: wt, Payload: []byte("gone"), QoS: 1}
			if ca := c.connect(&packets.Connect{ClientID: clientID(t), CleanStart: true, KeepAlive: ka, Will: w}); ca.ReasonCode != packets.Success {
				t.Fatalf("CONNECT refused: %v", ca.ReasonCode)
			}
			if how == "dropped" {
				c.close()
			}
			if p := watcher.receive(1500*time.Millisecond + wait); p.Topic != wt || string(p.Payload) != "gone" {
				t.Fatalf("got %s, want the will", describe([]packets.Packet{p}))
			}
		})
	}
}

// TestMQTT311_3_1_2_10: the Will is deleted when the client sends
// DISCONNECT, so it is not published afterwards.
func TestMQTT311_3_1_2_10(t *testing.T) {
	tg := target(t)
	wt := topic(t, "will")
	watcher := connectNew(t, tg, v4, clientID(t), true)
	watcher.subscribe(wt, 1)
	c := connectWill(t, tg, v4, &packets.Will{Topic: wt, Payload: []byte("gone"), QoS: 1})
	c.disconnect()
	watcher.expectNone(short)
}

// TestMQTT311_3_1_2_12: with Will Flag 0 nothing is published when the
// connection ends abruptly.
func TestMQTT311_3_1_2_12(t *testing.T) {
	tg := target(t)
	root := topic(t)
	watcher := connectNew(t, tg, v4, clientID(t), true)
	watcher.subscribe(root+"/#", 1)
	c := connectNew(t, tg, v4, clientID(t), true)
	c.subscribe(root+"/x", 1) // the client had business under root
	c.close()
	watcher.expectNone(short)
}

// TestMQTT311_3_1_2_16: Will Retain 0: the will goes out non-retained and
// is not kept for later subscribers.
func TestMQTT311_3_1_2_16(t *testing.T) {
	tg := target(t)
	wt := topic(t, "will")
	watcher := connectNew(t, tg, v4, clientID(t), true)
	watcher.subscribe(wt, 1)
	c := connectWill(t, tg, v4, &packets.Will{Topic: wt, Payload: []byte("w"), QoS: 1})
	c.close()
	if p := watcher.receive(wait); p.Retain {
		t.Fatalf("will with Will Retain 0 delivered with RETAIN=1")
	}
	late := connectNew(t, tg, v4, clientID(t), true)
	late.subscribe(wt, 1)
	late.expectNone(short)
}

// TestMQTT311_3_1_2_17: Will Retain 1: the will is published as a retained
// message, so a later subscriber receives it.
func TestMQTT311_3_1_2_17(t *testing.T) {
	tg := target(t)
	wt := topic(t, "will")
	watcher := connectNew(t, tg, v4, clientID(t), true)
	watcher.subscribe(wt, 1)
	c := connectWill(t, tg, v4, &packets.Will{Topic: wt, Payload: []byte("w"), QoS: 1, Retain: true})
	c.close()
	watcher.receive(wait) // published; now it must be retained
	late := connectNew(t, tg, v4, clientID(t), true)
	late.subscribe(wt, 1)
	if p := late.receive(wait); !p.Retain || string(p.Payload) != "w" {
		t.Fatalf("got %s, want the retained will", describe([]packets.Packet{p}))
	}
	clearRetained(t, tg, wt)
}

// TestMQTT311_3_1_2_24: a client silent for 1.5 × its Keep Alive is
// disconnected (here Keep Alive 1 s: closed within 1.5 s plus slack).
func TestMQTT311_3_1_2_24(t *testing.T) {
	tg := target(t)
	c := dial(t, tg, v4)
	if ca := c.connect(&packets.Connect{ClientID: clientID(t), CleanStart: true, KeepAlive: 1}); ca.ReasonCode != packets.Success {
		t.Fatalf("CONNECT refused: %v", ca.ReasonCode)
	}
	start := time.Now()
	c.expectClosed(1500*time.Millisecond + wait)
	// Closing before the Keep Alive itself has passed would cut off a
	// client that is within its rights.
	if d := time.Since(start); d < time.Second {
		t.Fatalf("closed after %v, before the 1 s Keep Alive elapsed", d)
	}
}

// TestMQTT311_3_1_3_2: session state is keyed by ClientId: a message for one
// client's stored session is not delivered to another client's session.
func TestMQTT311_3_1_3_2(t *testing.T) {
	tg := target(t)
	idA, idB, tp := clientID(t), clientID(t), topic(t, "k")
	a := connectNew(t, tg, v4, idA, false)
	a.subscribe(tp, 1)
	a.disconnect()
	b := connectNew(t, tg, v4, idB, false)
	b.disconnect()

	pub := connectNew(t, tg, v4, clientID(t), true)
	pub.publish(tp, []byte("for-a"), 1, false)

	b = connectNew(t, tg, v4, idB, false)
	b.expectNone(short)
	a = connectNew(t, tg, v4, idA, false)
	if p := a.receive(wait); string(p.Payload) != "for-a" {
		t.Fatalf("A got %q", p.Payload)
	}
	cleanup(t, tg, idA)
	cleanup(t, tg, idB)
}

// TestMQTT311_3_1_3_5: ClientIds of 1 to 23 bytes of [0-9a-zA-Z] are
// accepted.
func TestMQTT311_3_1_3_5(t *testing.T) {
	tg := target(t)
	long := ("Zz" + uid(t) + uid(t) + "0123456789")[:23]
	for _, id := range []string{"Q", long} {
		c := dial(t, tg, v4)
		if ca := c.connect(&packets.Connect{ClientID: id, CleanStart: true}); ca.ReasonCode != packets.Success {
			t.Fatalf("ClientId %q refused: %v", id, ca.ReasonCode)
		}
		c.disconnect()
	}
}

// TestMQTT311_3_1_3_6: a server that allows an empty ClientId (with
// CleanSession=1) processes the CONNECT as if an identifier had been
// given: the connection is accepted and works.
func TestMQTT311_3_1_3_6(t *testing.T) {
	tg := target(t)
	c := dial(t, tg, v4)
	ca := c.connect(&packets.Connect{ClientID: "", CleanStart: true, KeepAlive: 60})
	if code, _ := ca.ReasonCode.ConnackReturnCode(); code == packets.ConnRefusedIdentifier311 {
		t.Skip("server does not allow an empty ClientId (permitted: the statement is conditional)")
	}
	if ca.ReasonCode != packets.Success {
		t.Fatalf("empty ClientId: CONNACK %v", ca.ReasonCode)
	}
	tp := topic(t, "anon")
	c.subscribe(tp, 1)
	c.publish(tp, []byte("me"), 1, false)
	if p := c.receive(wait); string(p.Payload) != "me" {
		t.Fatalf("got %q", p.Payload)
	}
}

// TestMQTT311_3_1_3_8: an empty ClientId with CleanSession=0 is refused with
// CONNACK 0x02 and the connection is closed.
func TestMQTT311_3_1_3_8(t *testing.T) {
	tg := target(t)
	c := dial(t, tg, v4)
	ca := c.connect(&packets.Connect{ClientID: "", CleanStart: false, KeepAlive: 60})
	if code, _ := ca.ReasonCode.ConnackReturnCode(); code != packets.ConnRefusedIdentifier311 {
		t.Fatalf("CONNACK %#x (%v), want 0x02 identifier rejected", code, ca.ReasonCode)
	}
	c.expectClosed(wait)
}

// TestMQTT311_3_1_4_1: a CONNECT that breaks §3.1 is not answered; the
// connection is closed without CONNACK.
func TestMQTT311_3_1_4_1(t *testing.T) {
	cases := map[string][]byte{
		// Will Flag set with Will QoS 3.
		"will QoS 3": rawConnect311("MQTT", 4, 0x1E, 60, "cfwillqos", str("w/t"), str("x")),
		// Will Flag 0 but Will QoS 1 [MQTT-3.1.2-13].
		"will QoS without flag": rawConnect311("MQTT", 4, 0x0A, 60, "cfwillnoflag"),
		// Password flag without user name flag [MQTT-3.1.2-22].
		"password without user name": rawConnect311("MQTT", 4, 0x42, 60, "cfpwnouser", str("pw")),
		// User name flag set, user name missing from the payload.
		"user name missing": rawConnect311("MQTT", 4, 0x82, 60, "cfnouser"),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			tg := target(t)
			c := dial(t, tg, v4)
			c.sendRaw(b)
			c.expectClosed(wait)
		})
	}
}

// TestMQTT311_3_1_4_2: a second connection with the same ClientId
// disconnects the first.
func TestMQTT311_3_1_4_2(t *testing.T) {
	tg := target(t)
	id := clientID(t)
	first := connectNew(t, tg, v4, id, true)
	second := connectNew(t, tg, v4, id, true)
	first.expectClosed(wait)
	second.expectOpen()
}

// TestMQTT311_3_1_4_4: an accepted CONNECT is confirmed with return code 0.
func TestMQTT311_3_1_4_4(t *testing.T) {
	tg := target(t)
	c := dial(t, tg, v4)
	ca := c.connect(&packets.Connect{ClientID: clientID(t), CleanStart: true, KeepAlive: 30})
	if code, ok := ca.ReasonCode.ConnackReturnCode(); !ok || code != packets.ConnAccepted311 {
		t.Fatalf("CONNACK return code %#x, want 0", code)
	}
}

// TestMQTT311_3_1_4_5: after refusing a CONNECT the server ignores what
// follows it: a retained PUBLISH and a SUBSCRIBE pipelined behind the
// refused CONNECT have no effect.
func TestMQTT311_3_1_4_5(t *testing.T) {
	tg := target(t)
	tp := topic(t, "ignored")
	c := dial(t, tg, v4)
	b := rawConnect311("MQTT", 9, 0x02, 60, clientID(t))
	b = append(b, encode(t, &packets.Publish{Topic: tp, Payload: []byte("x"), Retain: true}, v4)...)
	b = append(b, encode(t, &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: tp}}}, v4)...)
	c.sendRaw(b)
	for _, p := range c.waitClosed(wait) {
		if p.Type() != packets.TypeConnack {
			t.Fatalf("after a refused CONNECT the server sent %s", describe([]packets.Packet{p}))
		}
	}
	probe := connectNew(t, tg, v4, clientID(t), true)
	probe.subscribe(tp, 0)
	probe.expectNone(short)
}

// TestMQTT311_3_2_0_1: the first packet from the server is CONNACK, even
// when stored messages are waiting for the session.
func TestMQTT311_3_2_0_1(t *testing.T) {
	tg := target(t)
	id, tp := clientID(t), topic(t, "first")
	c := connectNew(t, tg, v4, id, false)
	c.subscribe(tp, 1)
	c.close()
	pub := connectNew(t, tg, v4, clientID(t), true)
	pub.publish(tp, []byte("queued"), 1, false)

	c = dial(t, tg, v4)
	c.send(&packets.Connect{ProtocolName: "MQTT", Version: v4, ClientID: id, KeepAlive: 60})
	if p := c.next(wait); p.Type() != packets.TypeConnack {
		t.Fatalf("first packet %s, want CONNACK", describe([]packets.Packet{p}))
	}
	c.receive(wait)
	cleanup(t, tg, id)
}

// TestMQTT311_3_2_2_1: CleanSession=1 is accepted with Session Present 0,
// even when a session for the ClientId existed.
func TestMQTT311_3_2_2_1(t *testing.T) {
	tg := target(t)
	id := clientID(t)
	c := connectNew(t, tg, v4, id, false)
	c.subscribe(topic(t), 1)
	c.disconnect()
	c = dial(t, tg, v4)
	ca := c.connect(&packets.Connect{ClientID: id, CleanStart: true, KeepAlive: 60})
	if ca.ReasonCode != packets.Success || ca.SessionPresent {
		t.Fatalf("CONNACK code %v session present %v, want 0 and false", ca.ReasonCode, ca.SessionPresent)
	}
}

// TestMQTT311_3_2_2_2: CleanSession=0 with a stored session gives Session
// Present 1.
func TestMQTT311_3_2_2_2(t *testing.T) {
	tg := target(t)
	id := clientID(t)
	c := connectNew(t, tg, v4, id, false)
	c.subscribe(topic(t), 1)
	c.disconnect()
	c = dial(t, tg, v4)
	ca := c.connect(&packets.Connect{ClientID: id, KeepAlive: 60})
	if ca.ReasonCode != packets.Success || !ca.SessionPresent {
		t.Fatalf("CONNACK code %v session present %v, want 0 and true", ca.ReasonCode, ca.SessionPresent)
	}
	cleanup(t, tg, id)
}

// TestMQTT311_3_2_2_3: CleanSession=0 without stored state gives Session
// Present 0 and return code 0.
func TestMQTT311_3_2_2_3(t *testing.T) {
	tg := target(t)
	id := clientID(t)
	c := dial(t, tg, v4)
	ca := c.connect(&packets.Connect{ClientID: id, KeepAlive: 60})
	if ca.ReasonCode != packets.Success || ca.SessionPresent {
		t.Fatalf("CONNACK code %v session present %v, want 0 and false", ca.ReasonCode, ca.SessionPresent)
	}
	cleanup(t, tg, id)
}

// TestMQTT311_3_2_2_4: a CONNACK with a non-zero return code has Session
// Present 0, even when a session for the ClientId is stored.
func TestMQTT311_3_2_2_4(t *testing.T) {
	tg := target(t)
	id := clientID(t)
	c := connectNew(t, tg, v4, id, false)
	c.subscribe(topic(t), 1)
	c.disconnect()
	c = dial(t, tg, v4)
	c.sendRaw(rawConnect311("MQTT", 9, 0x00, 60, id))
	ca := expectType[*packets.Connack](c, wait)
	if ca.ReasonCode == packets.Success {
		t.Fatalf("protocol level 9 accepted")
	}
	if ca.SessionPresent {
		t.Fatalf("refusing CONNACK has Session Present 1")
	}
	cleanup(t, tg, id)
}

// TestMQTT311_3_2_2_5: after a CONNACK with a non-zero return code the
// server closes the connection.
func TestMQTT311_3_2_2_5(t *testing.T) {
	tg := target(t)
	c := dial(t, tg, v4)
	ca := c.connect(&packets.Connect{ClientID: "", CleanStart: false})
	if ca.ReasonCode == packets.Success {
		t.Fatalf("empty ClientId with CleanSession=0 accepted")
	}
	c.expectClosed(wait)
}

// connectWill connects a fresh client with the given will (CleanSession=1).
func connectWill(t *testing.T, tg *Target, v packets.Version, w *packets.Will) *Client {
	t.Helper()
	c := dial(t, tg, v)
	ca := c.connect(&packets.Connect{ClientID: clientID(t), CleanStart: true, KeepAlive: 60, Will: w})
	if ca.ReasonCode != packets.Success {
		t.Fatalf("CONNECT with will refused: %v", ca.ReasonCode)
	}
	return c
}

// cleanup removes the stored session of id on the target (connect with
// CleanSession=1, then DISCONNECT), so an external broker is left tidy.
func cleanup(t *testing.T, tg *Target, id string) {
	t.Helper()
	c := dial(t, tg, v4)
	c.connect(&packets.Connect{ClientID: id, CleanStart: true})
	c.disconnect()
}

// clearRetained removes the retained message on tp (empty retained
// payload), so an external broker is left tidy.
func clearRetained(t *testing.T, tg *Target, tp string) {
	t.Helper()
	c := connectNew(t, tg, v4, clientID(t), true)
	c.publish(tp, nil, 0, true)
	c.disconnect()
}
