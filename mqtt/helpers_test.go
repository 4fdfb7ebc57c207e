package mqtt

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
)

// Test helpers: an in-process server on 127.0.0.1:0 and a raw MQTT client
// built on the codec, so tests can send exactly the bytes a rule is about
// and see exactly what the server answers.

const testTimeout = 5 * time.Second

// tlogWriter routes slog output to t.Log.
type tlogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *tlogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// startServer runs a server with test defaults, changed by mod, and shuts
// it down at the end of the test.
func startServer(t testing.TB, mod func(*Options)) *Server {
	t.Helper()
	o := DefaultOptions()
	o.MQTTAddr = "127.0.0.1:0"
	o.WSAddr = ""
	o.HTTPAddr = ""
	o.SysInterval = 0
	lw := &tlogWriter{t: t}
	o.Logger = slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if _, ok := t.(*testing.B); ok {
		o.Logger = nil
	}
	if mod != nil {
		mod(&o)
	}
	s, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil && !errors.Is(err, ErrServerClosed) {
			t.Errorf("Shutdown: %v", err)
		}
		lw.mu.Lock()
		lw.done = true
		lw.mu.Unlock()
	})
	return s
}

// eventually polls fn until it returns nil or timeout passes.
func eventually(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", timeout, err)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

// tclient is a raw MQTT client for tests.
type tclient struct {
	t    testing.TB
	conn net.Conn
	r    *packets.Reader
	v    packets.Version
	wmu  sync.Mutex
}

func dial(t testing.TB, s *Server, v packets.Version) *tclient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", s.MQTTAddr(), testTimeout)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	r := packets.NewReader(bufio.NewReader(conn), 0)
	r.SetVersion(v)
	return &tclient{t: t, conn: conn, r: r, v: v}
}

func (c *tclient) send(p packets.Packet) {
	c.t.Helper()
	b, err := packets.Encode(nil, p, c.v)
	if err != nil {
		c.t.Fatalf("encode %T: %v", p, err)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("write %T: %v", p, err)
	}
}

// raw writes a packet given as its first byte and body; the remaining
// length (< 128) is filled in.
func (c *tclient) raw(first byte, body ...byte) {
	c.t.Helper()
	if len(body) > 127 {
		c.t.Fatal("raw: body too long")
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.conn.Write(append([]byte{first, byte(len(body))}, body...)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// recv returns the next packet, failing the test after testTimeout.
func (c *tclient) recv() packets.Packet {
	c.t.Helper()
	p, err := c.tryRecv(testTimeout)
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	return p
}

func (c *tclient) tryRecv(d time.Duration) (packets.Packet, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	return c.r.Read()
}

// expectClosed asserts the server closes the connection (after any packets,
// which are returned).
func (c *tclient) expectClosed() []packets.Packet {
	c.t.Helper()
	var got []packets.Packet
	for {
		p, err := c.tryRecv(testTimeout)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.t.Fatalf("connection not closed; got %v", got)
			}
			return got
		}
		got = append(got, p)
	}
}

// expectNothing asserts no packet arrives within d.
func (c *tclient) expectNothing(d time.Duration) {
	c.t.Helper()
	p, err := c.tryRecv(d)
	if err == nil {
		c.t.Fatalf("unexpected packet %T %+v", p, p)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		c.t.Fatalf("expected silence, got error %v", err)
	}
	// A timed-out read leaves the bufio.Reader usable for later reads.
}

func recvAs[T packets.Packet](c *tclient) T {
	c.t.Helper()
	p := c.recv()
	v, ok := p.(T)
	if !ok {
		var zero T
		c.t.Fatalf("got %T %+v, want %T", p, p, zero)
	}
	return v
}

// connect sends CONNECT and returns the CONNACK, failing unless it is a
// success.
func (c *tclient) connect(id string, clean bool, mod func(*packets.Connect)) *packets.Connack {
	c.t.Helper()
	ca := c.tryConnect(id, clean, mod)
	if ca.ReasonCode != packets.Success {
		c.t.Fatalf("CONNACK %v", ca.ReasonCode)
	}
	return ca
}

func (c *tclient) tryConnect(id string, clean bool, mod func(*packets.Connect)) *packets.Connack {
	c.t.Helper()
	p := &packets.Connect{Version: c.v, ClientID: id, CleanStart: clean, KeepAlive: 30}
	if mod != nil {
		mod(p)
	}
	c.send(p)
	return recvAs[*packets.Connack](c)
}

func (c *tclient) subscribe(id uint16, subs ...packets.Subscription) *packets.Suback {
	c.t.Helper()
	c.send(&packets.Subscribe{PacketID: id, Subscriptions: subs})
	return recvAs[*packets.Suback](c)
}

func (c *tclient) disconnect() {
	c.t.Helper()
	c.send(&packets.Disconnect{})
	_ = c.conn.Close()
}

// publish sends a PUBLISH and completes its QoS flow.
func (c *tclient) publish(topic, payload string, qos byte, retain bool, id uint16) {
	c.t.Helper()
	c.send(&packets.Publish{Topic: topic, Payload: []byte(payload), QoS: qos, Retain: retain, PacketID: id})
	switch qos {
	case 1:
		if a := recvAs[*packets.Puback](c); a.PacketID != id {
			c.t.Fatalf("PUBACK id %d, want %d", a.PacketID, id)
		}
	case 2:
		if a := recvAs[*packets.Pubrec](c); a.PacketID != id {
			c.t.Fatalf("PUBREC id %d, want %d", a.PacketID, id)
		}
		c.send(&packets.Pubrel{PacketID: id})
		if a := recvAs[*packets.Pubcomp](c); a.PacketID != id {
			c.t.Fatalf("PUBCOMP id %d, want %d", a.PacketID, id)
		}
	}
}

// recvPublish returns the next PUBLISH, acknowledging it (QoS 1/2) when ack.
func (c *tclient) recvPublish(ack bool) *packets.Publish {
	c.t.Helper()
	p := recvAs[*packets.Publish](c)
	if ack {
		c.ack(p)
	}
	return p
}

func (c *tclient) ack(p *packets.Publish) {
	c.t.Helper()
	switch p.QoS {
	case 1:
		c.send(&packets.Puback{PacketID: p.PacketID})
	case 2:
		c.send(&packets.Pubrec{PacketID: p.PacketID})
		if r := recvAs[*packets.Pubrel](c); r.PacketID != p.PacketID {
			c.t.Fatalf("PUBREL id %d, want %d", r.PacketID, p.PacketID)
		}
		c.send(&packets.Pubcomp{PacketID: p.PacketID})
	}
}

func payloads(ps []*packets.Publish) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(p.Payload)
	}
	return b.String()
}

func httpGet(t testing.TB, url string) string {
	t.Helper()
	cl := &http.Client{Timeout: testTimeout}
	resp, err := cl.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return string(b)
}
