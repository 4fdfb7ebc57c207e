package conformance

// MQTT 3.1.1 §1.5 strings, §2 fixed header and packet identifiers, §3.12
// PINGREQ, §3.14 DISCONNECT, §4.1 sessions, §4.8 error handling and §6
// WebSocket transport.

import (
	"testing"

	"github.com/beaconmq/beacon/packets"
	"github.com/gorilla/websocket"
)

// TestMQTT311_1_5_3_1: a UTF-8 string holding ill-formed UTF-8 (here an
// encoded surrogate, ED A0 80) makes the server close the connection.
func TestMQTT311_1_5_3_1(t *testing.T) {
	cases := map[string]func(root string) []byte{
		"publish topic": func(root string) []byte {
			return raw(0x30, str(root+"/\xed\xa0\x80"), []byte("x"))
		},
		"subscribe filter": func(root string) []byte {
			return raw(0x82, u16(1), str(root+"/\xed\xa0\x80"), []byte{0})
		},
		"invalid byte": func(root string) []byte {
			return raw(0x30, str(root+"/\xff"), []byte("x"))
		},
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			tg := target(t)
			c := connectNew(t, tg, v4, clientID(t), true)
			c.sendRaw(build(topic(t)))
			c.expectClosed(wait)
		})
	}
}

// TestMQTT311_1_5_3_2: a UTF-8 string holding U+0000 makes the server close
// the connection (here in the client identifier and in a topic name).
func TestMQTT311_1_5_3_2(t *testing.T) {
	t.Run("client id", func(t *testing.T) {
		tg := target(t)
		c := dial(t, tg, v4)
		c.sendRaw(rawConnect311("MQTT", 4, 0x02, 60, "cf\x00"+uid(t)))
		c.expectClosed(wait)
	})
	t.Run("topic", func(t *testing.T) {
		tg := target(t)
		c := connectNew(t, tg, v4, clientID(t), true)
		c.sendRaw(raw(0x30, str(topic(t)+"\x00"), []byte("x")))
		c.expectClosed(wait)
	})
}

// TestMQTT311_1_5_3_3: the sequence EF BB BF (U+FEFF) is kept intact in a
// topic: it is matched as a character and delivered unchanged.
func TestMQTT311_1_5_3_3(t *testing.T) {
	tg := target(t)
	root := topic(t)
	withBOM := root + "/\ufeffa"
	sub, pub := pair(t, tg, withBOM, 0)
	pub.publish(root+"/a", []byte("plain"), 0, false) // must not match: the BOM is not skipped
	pub.publish(withBOM, []byte("bom"), 0, false)
	p := sub.expectPublish(wait)
	if p.Topic != withBOM || string(p.Payload) != "bom" {
		t.Fatalf("got %s, want topic %q", describe([]packets.Packet{p}), withBOM)
	}
	sub.expectNone(short)
}

// table22 holds the fixed-header flags every server-sent packet must carry
// (3.1.1 Table 2.2); PUBLISH is free-form and left out.
var table22 = map[packets.Type]byte{
	packets.TypeConnack: 0, packets.TypePuback: 0, packets.TypePubrec: 0, packets.TypePubrel: 2,
	packets.TypePubcomp: 0, packets.TypeSuback: 0, packets.TypeUnsuback: 0, packets.TypePingresp: 0,
}

// TestMQTT311_2_2_2_1: every packet the server sends carries the reserved
// flag values of Table 2.2 (checked on the raw bytes of a session that
// makes the server send each packet type).
func TestMQTT311_2_2_2_1(t *testing.T) {
	tg := target(t)
	tp := topic(t, "flags")
	c := connectNew(t, tg, v4, clientID(t), true)
	c.subscribe(tp, 2)
	c.publish(tp, []byte("1"), 1, false)
	c.publish(tp, []byte("2"), 2, false)
	for range 2 {
		c.receive(wait) // our PUBREC makes the server send PUBREL
	}
	c.unsubscribe(tp)
	c.expectOpen()
	seen := map[packets.Type]bool{}
	for _, f := range c.rawFrames() {
		typ := packets.Type(f[0] >> 4)
		seen[typ] = true
		if want, ok := table22[typ]; ok && f[0]&0x0f != want {
			t.Errorf("%s sent with flags %04b, want %04b", typeName(typ), f[0]&0x0f, want)
		}
	}
	for typ := range table22 {
		if !seen[typ] {
			t.Errorf("the exchange did not make the server send %s", typeName(typ))
		}
	}
}

// TestMQTT311_2_2_2_2: a packet with invalid fixed-header flags makes the
// server close the connection.
func TestMQTT311_2_2_2_2(t *testing.T) {
	cases := map[string][]byte{
		"PINGREQ 0001":    {0xC1, 0x00},
		"PUBACK 1000":     raw(0x48, u16(1)),
		"PUBCOMP 0010":    raw(0x72, u16(1)),
		"DISCONNECT 0100": {0xE4, 0x00},
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			tg := target(t)
			c := connectNew(t, tg, v4, clientID(t), true)
			c.sendRaw(b)
			c.expectClosed(wait)
		})
	}
}

// TestMQTT311_2_3_1_1: QoS>0 PUBLISH packets from the server carry a
// non-zero packet identifier (checked on the raw bytes).
func TestMQTT311_2_3_1_1(t *testing.T) {
	tg := target(t)
	tp := topic(t, "pid")
	sub, pub := pair(t, tg, tp, 2)
	pub.publish(tp, []byte("1"), 1, false)
	pub.publish(tp, []byte("2"), 2, false)
	sub.receive(wait)
	sub.receive(wait)
	checked := 0
	for _, f := range sub.rawFrames() {
		if f[0]>>4 == byte(packets.TypePublish) && f[0]&0x06 != 0 {
			body := frameBody(f)
			tl := int(body[0])<<8 | int(body[1])
			if id := int(body[2+tl])<<8 | int(body[3+tl]); id == 0 {
				t.Fatalf("QoS %d PUBLISH with packet id 0", f[0]>>1&3)
			}
			checked++
		}
	}
	if checked != 2 {
		t.Fatalf("checked %d QoS>0 PUBLISH packets, want 2", checked)
	}
}

// TestMQTT311_2_3_1_4: the server gives each of its unacknowledged QoS>0
// PUBLISH packets to a client its own identifier.
func TestMQTT311_2_3_1_4(t *testing.T) {
	tg := target(t)
	tp := topic(t, "ids")
	sub, pub := pair(t, tg, tp, 2)
	for i := range 6 {
		pub.publish(tp, []byte{byte('a' + i)}, byte(1+i%2), false)
	}
	ids := map[uint16]bool{}
	var got []*packets.Publish
	for range 6 {
		p := sub.expectPublish(wait)
		if ids[p.PacketID] {
			t.Fatalf("packet id %d reused while still unacknowledged", p.PacketID)
		}
		ids[p.PacketID] = true
		got = append(got, p)
	}
	for _, p := range got {
		sub.ack(p)
	}
}

// TestMQTT311_2_3_1_5: a QoS 0 PUBLISH from the server has no packet
// identifier: its remaining length is exactly topic plus payload.
func TestMQTT311_2_3_1_5(t *testing.T) {
	tg := target(t)
	tp := topic(t, "noid")
	sub, pub := pair(t, tg, tp, 0)
	pub.publish(tp, []byte("payload"), 1, false)
	sub.expectPublish(wait)
	for _, f := range sub.rawFrames() {
		if f[0]>>4 == byte(packets.TypePublish) {
			if want := 2 + len(tp) + len("payload"); len(frameBody(f)) != want {
				t.Fatalf("QoS 0 PUBLISH remaining length %d, want %d (no packet id)", len(frameBody(f)), want)
			}
			return
		}
	}
	t.Fatalf("no PUBLISH frame recorded")
}

// TestMQTT311_2_3_1_6: PUBACK, PUBREC and PUBREL carry the identifier of the
// PUBLISH they belong to, both when the server receives and when it sends.
func TestMQTT311_2_3_1_6(t *testing.T) {
	tg := target(t)
	tp := topic(t, "acks")
	sub, pub := pair(t, tg, tp, 2)
	pub.publishWith(&packets.Publish{Topic: tp, Payload: []byte("1"), QoS: 1, PacketID: 0x0102})
	pub.publishWith(&packets.Publish{Topic: tp, Payload: []byte("2"), QoS: 2, PacketID: 0xFEDC})
	for range 2 {
		sub.receive(wait) // ack() checks the PUBREL id
	}
}

// TestMQTT311_2_3_1_7: SUBACK and UNSUBACK carry the identifier of the
// packet they answer.
func TestMQTT311_2_3_1_7(t *testing.T) {
	tg := target(t)
	c := connectNew(t, tg, v4, clientID(t), true)
	tp := topic(t)
	c.subscribeWith(&packets.Subscribe{PacketID: 0x7F01, Subscriptions: []packets.Subscription{{Filter: tp}}})
	c.send(&packets.Unsubscribe{PacketID: 0x7F02, Filters: []string{tp}})
	if ua := expectType[*packets.Unsuback](c, wait); ua.PacketID != 0x7F02 {
		t.Fatalf("UNSUBACK id %#x", ua.PacketID)
	}
}

// TestMQTT311_3_12_4_1: each PINGREQ is answered with a PINGRESP.
func TestMQTT311_3_12_4_1(t *testing.T) {
	tg := target(t)
	c := connectNew(t, tg, v4, clientID(t), true)
	for range 3 {
		c.send(&packets.Pingreq{})
	}
	for range 3 {
		expectType[*packets.Pingresp](c, wait)
	}
}

// TestMQTT311_3_14_1_1: a DISCONNECT with non-zero reserved flags is
// malformed: the server closes the connection as for a protocol error, so
// the will is published (a valid DISCONNECT would have discarded it).
func TestMQTT311_3_14_1_1(t *testing.T) {
	tg := target(t)
	wt := topic(t, "will")
	watcher := connectNew(t, tg, v4, clientID(t), true)
	watcher.subscribe(wt, 1)
	c := connectWill(t, tg, v4, &packets.Will{Topic: wt, Payload: []byte("bad-disconnect"), QoS: 1})
	c.sendRaw([]byte{0xE1, 0x00})
	c.expectClosed(wait)
	if p := watcher.receive(wait); string(p.Payload) != "bad-disconnect" {
		t.Fatalf("got %q, want the will", p.Payload)
	}
}

// TestMQTT311_3_14_4_3: after DISCONNECT the will is discarded, not
// published, and the server closes the connection.
func TestMQTT311_3_14_4_3(t *testing.T) {
	tg := target(t)
	wt := topic(t, "will")
	watcher := connectNew(t, tg, v4, clientID(t), true)
	watcher.subscribe(wt, 1)
	c := connectWill(t, tg, v4, &packets.Will{Topic: wt, Payload: []byte("w"), QoS: 1, Retain: true})
	c.send(&packets.Disconnect{})
	c.expectClosed(wait)
	watcher.expectNone(short)
	late := connectNew(t, tg, v4, clientID(t), true)
	late.subscribe(wt, 1)
	late.expectNone(short)
}

// TestMQTT311_4_1_0_2: a session lasts at least as long as its network
// connection: a CleanSession=1 subscription keeps delivering while the
// connection stays up, across other clients coming and going.
func TestMQTT311_4_1_0_2(t *testing.T) {
	tg := target(t)
	tp := topic(t, "life")
	sub, pub := pair(t, tg, tp, 1)
	for i := range 3 {
		other := connectNew(t, tg, v4, clientID(t), true)
		other.disconnect()
		sub.expectOpen()
		pub.publish(tp, []byte{byte('0' + i)}, 1, false)
		if p := sub.receive(wait); p.Payload[0] != byte('0'+i) {
			t.Fatalf("got %q", p.Payload)
		}
	}
}

// TestMQTT311_4_8_0_1: a protocol violation makes the server close the
// connection; here a client sends a CONNACK, which only servers send.
func TestMQTT311_4_8_0_1(t *testing.T) {
	tg := target(t)
	c := connectNew(t, tg, v4, clientID(t), true)
	c.sendRaw([]byte{0x20, 0x02, 0x00, 0x00})
	c.expectClosed(wait)
}

// TestMQTT311_6_0_0_1: over WebSocket, a data frame other than binary makes
// the server close the connection.
func TestMQTT311_6_0_0_1(t *testing.T) {
	tg := target(t)
	requireWS(t, tg)
	c := dialWS(t, tg, v4)
	if ca := c.connect(&packets.Connect{ClientID: clientID(t), CleanStart: true}); ca.ReasonCode != packets.Success {
		t.Fatalf("CONNECT over WebSocket refused: %v", ca.ReasonCode)
	}
	c.sendWSMessage(websocket.TextMessage, encode(t, &packets.Pingreq{}, v4))
	c.expectClosed(wait)
}

// TestMQTT311_6_0_0_2: the server does not assume packets align with
// WebSocket frames: a CONNECT split over three frames and three packets in
// one frame are all understood.
func TestMQTT311_6_0_0_2(t *testing.T) {
	tg := target(t)
	requireWS(t, tg)
	c := dialWS(t, tg, v4)
	b := encode(t, &packets.Connect{ProtocolName: "MQTT", Version: v4, ClientID: clientID(t), CleanStart: true}, v4)
	c.sendWSMessage(websocket.BinaryMessage, b[:1])
	c.sendWSMessage(websocket.BinaryMessage, b[1:5])
	c.sendWSMessage(websocket.BinaryMessage, b[5:])
	if ca := expectType[*packets.Connack](c, wait); ca.ReasonCode != packets.Success {
		t.Fatalf("CONNACK %v", ca.ReasonCode)
	}
	tp := topic(t, "ws")
	var many []byte
	many = append(many, encode(t, &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: tp, QoS: 1}}}, v4)...)
	many = append(many, encode(t, &packets.Publish{Topic: tp, Payload: []byte("x"), QoS: 1, PacketID: 2}, v4)...)
	many = append(many, encode(t, &packets.Pingreq{}, v4)...)
	c.sendWSMessage(websocket.BinaryMessage, many)
	expectType[*packets.Suback](c, wait)
	expectType[*packets.Puback](c, wait)
	expectType[*packets.Pingresp](c, wait)
	if p := c.receive(wait); p.Topic != tp {
		t.Fatalf("got %q", p.Topic)
	}
}

// TestMQTT311_6_0_0_4: the server selects and returns the "mqtt" WebSocket
// subprotocol.
func TestMQTT311_6_0_0_4(t *testing.T) {
	tg := target(t)
	ws, resp := dialWSRaw(t, tg, "mqtt")
	if got := ws.Subprotocol(); got != "mqtt" {
		t.Fatalf("subprotocol %q (header %q), want mqtt", got, resp.Header.Get("Sec-WebSocket-Protocol"))
	}
}
