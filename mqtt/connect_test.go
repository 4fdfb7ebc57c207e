package mqtt

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/gorilla/websocket"
)

func TestOptionsValidate(t *testing.T) {
	o := DefaultOptions()
	if err := o.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	o.MQTTAddr, o.WSAddr = "", ""
	o.MaxQoS = 3
	o.SharedStrategy = "bogus"
	err := o.Validate()
	if err == nil {
		t.Fatal("invalid options accepted")
	}
	for _, want := range []string{"enable at least one listener", "MaxQoS 3", "SharedStrategy"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := New(o); err == nil {
		t.Error("New accepted invalid options")
	}
}

func TestConnectV311And5(t *testing.T) {
	s := startServer(t, nil)
	for _, v := range []packets.Version{packets.V31, packets.V311, packets.V5} {
		c := dial(t, s, v)
		ca := c.connect("c-"+v.String(), true, nil)
		if ca.SessionPresent {
			t.Errorf("%v: session present on a clean connect", v)
		}
		c.send(&packets.Pingreq{})
		recvAs[*packets.Pingresp](c)
		c.disconnect()
	}
}

// [MQTT-3.1.3-8] 3.1.1: empty client id with clean session 0 is refused
// with return code 0x02.
func TestConnectEmptyIDNeedsCleanSession311(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s, packets.V311)
	ca := c.tryConnect("", false, nil)
	if ca.ReasonCode != packets.ClientIdentifierNotValid {
		t.Fatalf("CONNACK %v, want identifier rejected", ca.ReasonCode)
	}
	c.expectClosed()

	c = dial(t, s, packets.V311)
	c.connect("", true, nil)
}

// [MQTT-3.2.2-16] 5.0 assigns a client identifier and returns it.
func TestConnectAssignedClientID5(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s, packets.V5)
	ca := c.connect("", true, nil)
	if !strings.HasPrefix(ca.Properties.AssignedClientID, "beacon-") {
		t.Fatalf("assigned client id %q", ca.Properties.AssignedClientID)
	}
	if ca.Properties.MaximumPacketSize != s.opts.MaxPacketSize {
		t.Errorf("Maximum Packet Size %d not advertised", ca.Properties.MaximumPacketSize)
	}
	if ca.Properties.TopicAliasMaximum != s.opts.TopicAliasMaximum {
		t.Errorf("Topic Alias Maximum %d not advertised", ca.Properties.TopicAliasMaximum)
	}
	if ca.Properties.ReceiveMaximum != s.opts.ReceiveMaximum {
		t.Errorf("Receive Maximum %d not advertised", ca.Properties.ReceiveMaximum)
	}
}

// [MQTT-3.2.2-21] a server keep alive caps the client's.
func TestServerKeepAlive5(t *testing.T) {
	s := startServer(t, func(o *Options) { o.MaxKeepAlive = 10 })
	c := dial(t, s, packets.V5)
	ca := c.connect("ka", true, func(p *packets.Connect) { p.KeepAlive = 100 })
	if ca.Properties.ServerKeepAlive != 10 {
		t.Fatalf("Server Keep Alive %d, want 10", ca.Properties.ServerKeepAlive)
	}
}

// [MQTT-3.1.2-22] no packet within 1.5 x keep alive closes the connection
// (5.0: DISCONNECT 0x8D first).
func TestKeepAliveTimeout(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s, packets.V5)
	c.connect("idle", true, func(p *packets.Connect) { p.KeepAlive = 1 })
	start := time.Now()
	got := c.expectClosed()
	if len(got) != 1 {
		t.Fatalf("got %v, want one DISCONNECT", got)
	}
	if d, ok := got[0].(*packets.Disconnect); !ok || d.ReasonCode != packets.KeepAliveTimeout {
		t.Fatalf("got %+v, want DISCONNECT 0x8D", got[0])
	}
	if el := time.Since(start); el < time.Second {
		t.Errorf("closed after %v, before 1.5 x keep alive", el)
	}
}

// [MQTT-3.1.0-2] a second CONNECT is a protocol error.
func TestSecondConnect(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s, packets.V5)
	c.connect("twice", true, nil)
	c.send(&packets.Connect{Version: packets.V5, ClientID: "twice", CleanStart: true})
	got := c.expectClosed()
	if len(got) != 1 || got[0].(*packets.Disconnect).ReasonCode != packets.ProtocolError {
		t.Fatalf("got %v, want DISCONNECT 0x82", got)
	}
}

// [MQTT-3.1.0-1] the first packet must be CONNECT.
func TestFirstPacketNotConnect(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s, packets.V311)
	c.send(&packets.Pingreq{})
	if got := c.expectClosed(); len(got) != 0 {
		t.Fatalf("got %v, want the connection closed without answer", got)
	}
}

// [MQTT-3.1.4-3] takeover: the old 5.0 connection gets DISCONNECT 0x8E and
// is closed; the session moves to the new connection.
func TestTakeover(t *testing.T) {
	s := startServer(t, nil)
	old := dial(t, s, packets.V5)
	old.connect("dup", false, func(p *packets.Connect) { p.Properties.SessionExpiry = 60 })
	old.subscribe(1, packets.Subscription{Filter: "t/#", QoS: 1})

	nc := dial(t, s, packets.V5)
	ca := nc.connect("dup", false, func(p *packets.Connect) { p.Properties.SessionExpiry = 60 })
	if !ca.SessionPresent {
		t.Error("session not present after takeover")
	}
	got := old.expectClosed()
	if len(got) != 1 || got[0].(*packets.Disconnect).ReasonCode != packets.SessionTakenOver {
		t.Fatalf("old connection got %v, want DISCONNECT 0x8E", got)
	}
	pub := dial(t, s, packets.V311)
	pub.connect("pub", true, nil)
	pub.publish("t/x", "after", 1, false, 1)
	if p := nc.recvPublish(true); string(p.Payload) != "after" {
		t.Fatalf("new connection got %q", p.Payload)
	}
	if s.stats.Takeovers.Load() != 1 {
		t.Errorf("takeovers %d", s.stats.Takeovers.Load())
	}
}

// Shutdown sends 5.0 clients DISCONNECT 0x8B and closes 3.1.1 clients.
func TestShutdownDisconnects(t *testing.T) {
	s := startServer(t, nil)
	c5 := dial(t, s, packets.V5)
	c5.connect("five", true, nil)
	c3 := dial(t, s, packets.V311)
	c3.connect("three", true, nil)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	got := c5.expectClosed()
	if len(got) != 1 || got[0].(*packets.Disconnect).ReasonCode != packets.ServerShuttingDown {
		t.Fatalf("5.0 client got %v, want DISCONNECT 0x8B", got)
	}
	if got := c3.expectClosed(); len(got) != 0 {
		t.Fatalf("3.1.1 client got %v", got)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := s.Shutdown(context.Background()); err == nil {
		t.Error("second Shutdown returned nil")
	}
}

func TestHealthz(t *testing.T) {
	s := startServer(t, func(o *Options) { o.HTTPAddr = "127.0.0.1:0" })
	if s.HTTPAddr() == "" {
		t.Fatal("no HTTP address")
	}
	body := httpGet(t, "http://"+s.HTTPAddr()+"/healthz")
	if strings.TrimSpace(body) != "ok" {
		t.Fatalf("healthz said %q", body)
	}
}

// The broker serves MQTT over its WebSocket listener: CONNECT, SUBSCRIBE
// and a PUBLISH from a TCP client arrive through binary frames.
func TestWebSocketEndToEnd(t *testing.T) {
	s := startServer(t, func(o *Options) { o.WSAddr = "127.0.0.1:0" })
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: testTimeout}
	ws, _, err := d.Dial("ws://"+s.WSAddr()+"/mqtt", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	write := func(p packets.Packet) {
		b, err := packets.Encode(nil, p, packets.V311)
		if err != nil {
			t.Fatal(err)
		}
		if err := ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
			t.Fatal(err)
		}
	}
	read := func() packets.Packet {
		_ = ws.SetReadDeadline(time.Now().Add(testTimeout))
		_, b, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		p, _, err := packets.Decode(b, packets.V311)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		return p
	}
	write(&packets.Connect{Version: packets.V311, ClientID: "ws", CleanStart: true})
	if ca, ok := read().(*packets.Connack); !ok || ca.ReasonCode != packets.Success {
		t.Fatal("no CONNACK over WebSocket")
	}
	write(&packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: "ws/t"}}})
	if _, ok := read().(*packets.Suback); !ok {
		t.Fatal("no SUBACK")
	}
	pub := dial(t, s, packets.V311)
	pub.connect("tcp", true, nil)
	pub.publish("ws/t", "hello", 0, false, 0)
	if p, ok := read().(*packets.Publish); !ok || string(p.Payload) != "hello" {
		t.Fatalf("got %+v", p)
	}
}

// Every goroutine the server starts is joined by Shutdown: after it the
// goroutine count is back where it was (clients closed from our side too).
func TestShutdownJoinsGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	o := DefaultOptions()
	o.MQTTAddr, o.WSAddr, o.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	o.SysInterval = 10 * time.Millisecond
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	s.EnableLogGC(10 * time.Millisecond)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	var conns []*tclient
	for i, v := range []packets.Version{packets.V311, packets.V5, packets.V5} {
		c := dial(t, s, v)
		c.connect(fmt.Sprint("g", i), i%2 == 0, func(p *packets.Connect) {
			p.Will = &packets.Will{Topic: "w", Payload: []byte("x"), QoS: 1}
			p.Properties.SessionExpiry = 60
		})
		c.subscribe(1, packets.Subscription{Filter: "#", QoS: 1})
		conns = append(conns, c)
	}
	conns[0].send(&packets.Publish{Topic: "x", Payload: []byte("y"), QoS: 1, PacketID: 9})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		_ = c.conn.Close()
	}
	eventually(t, testTimeout, func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines, %d before", n, before)
		}
		return nil
	})
}

// [MQTT-3.1.2-2] an unsupported protocol level gets CONNACK 0x01 (3.1.1
// format) and the connection is closed.
func TestUnsupportedProtocolVersion(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s, packets.V311)
	// CONNECT "MQTT" level 6, clean session, keep alive 30, client id "x".
	c.raw(0x10, 0, 4, 'M', 'Q', 'T', 'T', 6, 0x02, 0, 30, 0, 1, 'x')
	got := c.expectClosed()
	if len(got) != 1 {
		t.Fatalf("got %v, want one CONNACK", got)
	}
	if ca, ok := got[0].(*packets.Connack); !ok || ca.ReasonCode != packets.UnsupportedProtocolVersion {
		t.Fatalf("got %+v, want CONNACK 0x01", got[0])
	}
}

// Takeover and the old connection's will: 3.1.1 publishes it (the old
// connection ended without DISCONNECT); 5.0 with a will delay and the
// session continuing does not [MQTT-3.1.3-9].
func TestTakeoverWill(t *testing.T) {
	s := startServer(t, nil)
	w := dial(t, s, packets.V5)
	w.connect("watch", true, nil)
	w.subscribe(1, packets.Subscription{Filter: "tw/#"})
	will := func(topic string, delay uint32) func(*packets.Connect) {
		return func(p *packets.Connect) {
			p.Properties.SessionExpiry = 60
			p.Will = &packets.Will{Topic: topic, Payload: []byte("x"), Properties: packets.Properties{WillDelay: delay}}
		}
	}
	old5 := dial(t, s, packets.V5)
	old5.connect("t5", false, will("tw/five", 30))
	new5 := dial(t, s, packets.V5)
	new5.connect("t5", false, nil)
	old5.expectClosed()

	old3 := dial(t, s, packets.V311)
	old3.connect("t3", false, will("tw/three", 0))
	new3 := dial(t, s, packets.V311)
	new3.connect("t3", false, nil)
	old3.expectClosed()
	if p := w.recvPublish(true); p.Topic != "tw/three" {
		t.Fatalf("will %q, want tw/three only", p.Topic)
	}
	w.expectNothing(100 * time.Millisecond)
}
