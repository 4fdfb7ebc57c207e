package interop

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"
)

// TestInteropPahoGolang runs the matrix with Eclipse paho.golang, in process,
// over TCP and WebSocket. paho.golang implements MQTT 5.0 only, so it has no
// 3.1.1 cells.
func TestInteropPahoGolang(t *testing.T) {
	runMatrix(t, clientSpec{
		name:        "paho.golang",
		versions:    []string{"5"},
		transports:  []string{"tcp", "ws"},
		unsupported: "MQTT 3.1.1: paho.golang is an MQTT 5.0-only client",
		setup:       func(t *testing.T) interopClient { return pahoGolang{} },
	})
}

type pahoGolang struct{}

// dial opens the transport: plain TCP, or a WebSocket to /mqtt offering the
// "mqtt" subprotocol [MQTT-6.0.0-3] wrapped as a net.Conn of binary frames.
func (pahoGolang) dial(t *testing.T, c cell) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if c.transport == "tcp" {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", c.broker.mqttAddr)
		if err != nil {
			t.Fatalf("dial %s: %v", c.broker.mqttAddr, err)
		}
		// paho.golang writes a packet in several Writes and holds the
		// conn's lock (if it has one) around them, so that concurrent
		// senders cannot interleave packets.
		return packets.NewThreadSafeConn(conn)
	}
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: setupTimeout}
	ws, resp, err := d.DialContext(ctx, "ws://"+c.broker.wsAddr+"/mqtt", nil)
	if err != nil {
		t.Fatalf("websocket dial %s: %v", c.broker.wsAddr, err)
	}
	if got := ws.Subprotocol(); got != "mqtt" {
		ws.Close()
		// The server returns the "mqtt" subprotocol [MQTT-6.0.0-4].
		t.Fatalf("websocket subprotocol %q, want %q (response %v)", got, "mqtt", resp.Status)
	}
	return &wsConn{ws: ws}
}

// connect dials and sends CONNECT (clean start), failing the test unless the
// CONNACK accepts it. The connection is closed on cleanup.
func (g pahoGolang) connect(t *testing.T, c cell, id string, will *paho.WillMessage, onPublish func(paho.PublishReceived)) (*paho.Client, net.Conn) {
	t.Helper()
	conn := g.dial(t, c)
	cfg := paho.ClientConfig{
		ClientID:      id,
		Conn:          conn,
		OnClientError: func(error) {}, // expected after the will test's kill
	}
	if onPublish != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { onPublish(pr); return true, nil },
		}
	}
	client := paho.NewClient(cfg)
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	ack, err := client.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30, WillMessage: will})
	if err != nil {
		t.Fatalf("CONNECT %s: %v (connack %+v)", id, err, ack)
	}
	if ack.ReasonCode != 0 {
		t.Fatalf("CONNACK reason 0x%02x", ack.ReasonCode)
	}
	return client, conn
}

func (g pahoGolang) subscribe(t *testing.T, c cell, topic string, n int) subscription {
	s := &pahoSubscription{msgs: make(chan message, 64)}
	client, _ := g.connect(t, c, clientID(c.name, "sub"), nil, func(pr paho.PublishReceived) {
		select {
		case s.msgs <- message{Topic: pr.Packet.Topic, Payload: string(pr.Packet.Payload), QoS: int(pr.Packet.QoS), Retain: pr.Packet.Retain}:
		default: // more than any cell sends; await reports the shortfall
		}
	})
	t.Cleanup(func() { _ = client.Disconnect(&paho.Disconnect{ReasonCode: 0}) })
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	ack, err := client.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: byte(c.qos)}}})
	if err != nil {
		t.Fatalf("SUBSCRIBE: %v", err)
	}
	if len(ack.Reasons) != 1 || int(ack.Reasons[0]) != c.qos {
		t.Fatalf("SUBACK reasons %v, want [%d]", ack.Reasons, c.qos)
	}
	return s
}

func (g pahoGolang) publish(t *testing.T, c cell, topic string, payloads []string, retain bool) {
	client, _ := g.connect(t, c, clientID(c.name, "pub"), nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	for _, pl := range payloads {
		// For QoS 1 and 2 Publish returns after PUBACK / PUBCOMP.
		resp, err := client.Publish(ctx, &paho.Publish{Topic: topic, QoS: byte(c.qos), Retain: retain, Payload: []byte(pl)})
		if err != nil {
			t.Fatalf("PUBLISH %q: %v", pl, err)
		}
		if resp != nil && resp.ReasonCode >= 0x80 {
			t.Fatalf("PUBLISH %q: reason 0x%02x", pl, resp.ReasonCode)
		}
	}
	if err := client.Disconnect(&paho.Disconnect{ReasonCode: 0}); err != nil {
		t.Fatalf("DISCONNECT: %v", err)
	}
}

func (g pahoGolang) connectWithWill(t *testing.T, c cell, willTopic, willPayload string) willClient {
	will := &paho.WillMessage{Topic: willTopic, Payload: []byte(willPayload), QoS: byte(c.qos)}
	client, conn := g.connect(t, c, clientID(c.name, "will"), will, nil)
	return willClient{
		// Closing the socket under the client sends no DISCONNECT (for a
		// WebSocket, not even a close frame): the broker sees a dead client.
		kill: func() { conn.Close() },
		// Disconnect writes DISCONNECT (reason 0x00), then closes.
		disconnect: func() {
			if err := client.Disconnect(&paho.Disconnect{ReasonCode: 0}); err != nil {
				t.Fatalf("DISCONNECT: %v", err)
			}
		},
	}
}

// pahoSubscription collects messages delivered to a paho.golang client.
type pahoSubscription struct{ msgs chan message }

func (s *pahoSubscription) await(t *testing.T, n int, timeout time.Duration) []message {
	t.Helper()
	var got []message
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for len(got) < n {
		select {
		case m := <-s.msgs:
			got = append(got, m)
		case <-timer.C:
			t.Fatalf("got %d of %d messages within %v: %v", len(got), n, timeout, got)
		}
	}
	return got
}

// wsConn presents a WebSocket as the byte stream paho.golang reads and
// writes: each Write is one binary frame [MQTT-6.0.0-1]; Read concatenates
// frames, so a packet may span frames and a frame may hold several packets
// [MQTT-6.0.0-2]. paho.golang writes each packet as several Writes (fixed
// header, then body), so the broker sees packets split across frames.
//
// wsConn is a sync.Locker: paho.golang holds that lock for all the Writes of
// one packet, so packets from concurrent senders (an acknowledgement and a
// PUBLISH, say) never interleave.
type wsConn struct {
	ws       *websocket.Conn
	readMu   sync.Mutex
	reader   io.Reader
	packetMu sync.Mutex // held by paho.golang across one packet's Writes
	writeMu  sync.Mutex // one frame at a time on the socket
}

func (c *wsConn) Lock()   { c.packetMu.Lock() }
func (c *wsConn) Unlock() { c.packetMu.Unlock() }

func (c *wsConn) Read(p []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	for {
		if c.reader == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, fmt.Errorf("websocket: unexpected frame type %d", typ)
			}
			c.reader = r
		}
		n, err := c.reader.Read(p)
		if err == io.EOF {
			c.reader = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close drops the TCP connection without a close frame.
func (c *wsConn) Close() error                       { return c.ws.Close() }
func (c *wsConn) LocalAddr() net.Addr                { return c.ws.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr               { return c.ws.RemoteAddr() }
func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }
func (c *wsConn) SetDeadline(t time.Time) error {
	if err := c.ws.SetReadDeadline(t); err != nil {
		return err
	}
	return c.ws.SetWriteDeadline(t)
}

// waitRetained polls, with fresh paho.golang subscribers over TCP, until the
// broker hands out payload as topic's retained message.
func waitRetained(t *testing.T, c cell, topic, payload string) {
	t.Helper()
	probe := cell{broker: c.broker, name: c.name, version: "5", transport: "tcp", qos: 0}
	attempt := 0
	eventually(t, setupTimeout, func() error {
		attempt++
		msgs := make(chan message, 8)
		client, conn := pahoGolang{}.connect(t, probe, clientID(c.name, fmt.Sprintf("probe%d", attempt)), nil, func(pr paho.PublishReceived) {
			select {
			case msgs <- message{Topic: pr.Packet.Topic, Payload: string(pr.Packet.Payload), QoS: int(pr.Packet.QoS), Retain: pr.Packet.Retain}:
			default:
			}
		})
		defer conn.Close()
		defer client.Disconnect(&paho.Disconnect{ReasonCode: 0})
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		if _, err := client.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic}}}); err != nil {
			return fmt.Errorf("probe SUBSCRIBE: %w", err)
		}
		// A stored retained message follows the SUBACK at once; this bounds
		// one attempt, it is not what the test waits on.
		select {
		case m := <-msgs:
			if m.Retain && m.Payload == payload {
				return nil
			}
			return fmt.Errorf("probe got %v, not the retained %q", m, payload)
		case <-time.After(200 * time.Millisecond):
			return fmt.Errorf("no retained message on %q yet", topic)
		}
	})
}
