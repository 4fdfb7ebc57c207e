package conformance

// MQTT 5.0 over WebSocket (§6): binary frames only, packets independent of
// frame boundaries, the "mqtt" subprotocol.

import (
	"testing"

	"github.com/beaconmq/beacon/packets"
	"github.com/gorilla/websocket"
)

// A text frame is not MQTT data: the server closes the connection.
func TestMQTT5_6_0_0_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	requireWS(t, tg)
	c := dialWS(t, tg, packets.V5)
	if ack := c.connect(&packets.Connect{ClientID: clientID(t), CleanStart: true, KeepAlive: 60}); ack.ReasonCode != packets.Success {
		t.Fatalf("CONNACK %v", ack.ReasonCode)
	}
	c.sendWSMessage(websocket.TextMessage, v5Encode(t, &packets.Pingreq{}))
	for _, p := range c.waitClosed(wait) { // [MQTT-6.0.0-1]
		if p.Type() != packets.TypeDisconnect {
			t.Errorf("text frame answered with %s", describe([]packets.Packet{p}))
		}
	}
}

// Packets need not align with frames: a CONNECT split over three frames and
// SUBSCRIBE + PUBLISH + PINGREQ in a single frame all work.
func TestMQTT5_6_0_0_2(t *testing.T) {
	t.Parallel()
	tg := target(t)
	requireWS(t, tg)
	c := dialWS(t, tg, packets.V5)
	b := v5Encode(t, &packets.Connect{ProtocolName: "MQTT", Version: packets.V5, ClientID: clientID(t), CleanStart: true, KeepAlive: 60})
	c.sendRaw(b[:1])
	c.sendRaw(b[1:5])
	c.sendRaw(b[5:])
	if ack := expectType[*packets.Connack](c, wait); ack.ReasonCode != packets.Success {
		t.Fatalf("split CONNECT: CONNACK %v [MQTT-6.0.0-2]", ack.ReasonCode)
	}
	tp := topic(t)
	var batch []byte
	batch = append(batch, v5Encode(t, &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: tp, QoS: 1}}})...)
	batch = append(batch, v5Encode(t, &packets.Publish{Topic: tp, QoS: 1, PacketID: 2, Payload: []byte("ws")})...)
	batch = append(batch, v5Encode(t, &packets.Pingreq{})...)
	c.sendRaw(batch)
	expectType[*packets.Suback](c, wait)
	expectType[*packets.Puback](c, wait)
	c.expect(packets.TypePingresp, wait)
	if p := c.expectPublish(wait); string(p.Payload) != "ws" {
		t.Errorf("got %q", p.Payload)
	}
}

// The server selects and returns the "mqtt" subprotocol.
func TestMQTT5_6_0_0_4(t *testing.T) {
	t.Parallel()
	tg := target(t)
	ws, resp := dialWSRaw(t, tg, "mqtt")
	if got := ws.Subprotocol(); got != "mqtt" {
		t.Errorf("subprotocol %q, want mqtt [MQTT-6.0.0-4]", got)
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "mqtt" {
		t.Errorf("Sec-WebSocket-Protocol header %q, want mqtt", got)
	}
}
