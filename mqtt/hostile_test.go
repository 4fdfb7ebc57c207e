package mqtt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/beaconmq/beacon/packets"
)

// Hostile input: clients that send nothing, dribble, lie about lengths or
// send garbage must cost the broker a bounded amount and must never hurt
// other clients or crash it.

// panicWatch is a slog handler that counts the records readLoop logs
// when it recovers from a panic, and passes everything on to next.
type panicWatch struct {
	next   slog.Handler
	panics *atomic.Int64
}

func (h panicWatch) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError || h.next.Enabled(ctx, l)
}

func (h panicWatch) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError && strings.Contains(r.Message, "panic") {
		h.panics.Add(1)
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h panicWatch) WithAttrs(as []slog.Attr) slog.Handler {
	return panicWatch{h.next.WithAttrs(as), h.panics}
}

func (h panicWatch) WithGroup(g string) slog.Handler {
	return panicWatch{h.next.WithGroup(g), h.panics}
}

// watchPanics wraps the server's logger (set by startServer) so that
// recovered panics are counted in n; quiet drops everything else.
func watchPanics(o *Options, n *atomic.Int64, quiet bool) {
	next := o.Logger.Handler()
	if quiet {
		next = slog.DiscardHandler
	}
	o.Logger = slog.New(panicWatch{next: next, panics: n})
}

// dialRaw opens a plain TCP connection to the MQTT listener.
func dialRaw(t testing.TB, s *Server) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", s.MQTTAddr(), testTimeout)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// readUntilClosed reads until the server closes conn and returns what it
// sent; it fails the test if conn is still open after d.
func readUntilClosed(t testing.TB, conn net.Conn, d time.Duration) []byte {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v (read %d bytes)", d, len(b))
	}
	return b
}

func openConnections(t testing.TB, s *Server, want int) {
	t.Helper()
	eventually(t, testTimeout, func() error {
		if n := s.OpenConnections(); n != want {
			return fmt.Errorf("%d connections open, want %d", n, want)
		}
		return nil
	})
}

func TestHostileSilentSocketClosedAfterConnectTimeout(t *testing.T) {
	s := startServer(t, func(o *Options) { o.ConnectTimeout = 300 * time.Millisecond })
	conn := dialRaw(t, s)
	start := time.Now()
	if b := readUntilClosed(t, conn, testTimeout); len(b) != 0 {
		t.Fatalf("server sent %x to a silent socket", b)
	}
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("closed after %v, before the 300ms connect timeout", el)
	}
	openConnections(t, s, 0)
}

// The connect timeout bounds the whole CONNECT, not each read: a client
// sending one byte every 20ms (each read succeeds) is still closed when
// the deadline passes, long before its CONNECT is complete.
func TestHostileDribbledConnectClosedAtDeadline(t *testing.T) {
	s := startServer(t, func(o *Options) { o.ConnectTimeout = 300 * time.Millisecond })
	b, err := packets.Encode(nil, &packets.Connect{Version: packets.V5, ClientID: strings.Repeat("d", 200), CleanStart: true}, packets.V5)
	if err != nil {
		t.Fatal(err)
	}
	conn := dialRaw(t, s)
	sent := make(chan int, 1)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond) // the client under test is slow on purpose
		defer tick.Stop()
		n := 0
		for ; n < len(b); n++ {
			if _, err := conn.Write(b[n : n+1]); err != nil {
				break
			}
			<-tick.C
		}
		sent <- n
	}()
	if got := readUntilClosed(t, conn, testTimeout); len(got) != 0 {
		t.Fatalf("server answered a dribbled, incomplete CONNECT: %x", got)
	}
	_ = conn.Close()
	if n := <-sent; n >= len(b) {
		t.Fatalf("the whole CONNECT (%d bytes) was accepted before the deadline", n)
	}
	openConnections(t, s, 0)
}

// A remaining length of 256 MB is refused from the fixed header, before
// anything is allocated for the body, both as the first packet and after
// CONNECT (5.0: DISCONNECT 0x95).
func TestHostileHugeRemainingLength(t *testing.T) {
	s := startServer(t, func(o *Options) { o.ConnectTimeout = time.Minute })
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)

	conn := dialRaw(t, s)
	if _, err := conn.Write([]byte{0x10, 0xFF, 0xFF, 0xFF, 0x7F}); err != nil {
		t.Fatal(err)
	}
	if got := readUntilClosed(t, conn, testTimeout); len(got) != 0 {
		t.Fatalf("got %x, want the connection closed without CONNACK", got)
	}

	c := dial(t, s, packets.V5)
	c.connect("big", true, nil)
	if _, err := c.conn.Write([]byte{0x30, 0xFF, 0xFF, 0xFF, 0x7F, 0x00}); err != nil {
		t.Fatal(err)
	}
	got := c.expectClosed()
	if len(got) != 1 {
		t.Fatalf("got %v, want one DISCONNECT", got)
	}
	if d, ok := got[0].(*packets.Disconnect); !ok || d.ReasonCode != packets.PacketTooLarge {
		t.Fatalf("got %+v, want DISCONNECT 0x95", got[0])
	}

	// A variable byte integer longer than 4 bytes is malformed.
	m := dial(t, s, packets.V5)
	m.connect("vbi", true, nil)
	if _, err := m.conn.Write([]byte{0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}); err != nil {
		t.Fatal(err)
	}
	got = m.expectClosed()
	if len(got) != 1 {
		t.Fatalf("got %v, want one DISCONNECT", got)
	}
	if d, ok := got[0].(*packets.Disconnect); !ok || d.ReasonCode != packets.MalformedPacket {
		t.Fatalf("got %+v, want DISCONNECT 0x81", got[0])
	}

	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Fatalf("%d MB allocated handling three small hostile packets: a body was allocated from the claimed length", grew>>20)
	}
}

// garbage returns a hostile byte stream: random bytes, a valid CONNECT
// followed by random bytes, or a valid stream with bytes flipped.
func garbage(rng *rand.Rand) []byte {
	rnd := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return b
	}
	v := packets.V311
	if rng.IntN(2) == 0 {
		v = packets.V5
	}
	valid, _ := packets.Encode(nil, &packets.Connect{Version: v, ClientID: fmt.Sprint("g", rng.IntN(1000)), CleanStart: true, KeepAlive: 30}, v)
	for _, p := range []packets.Packet{
		&packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: "good/#", QoS: 1}}},
		&packets.Publish{Topic: "good/x", Payload: []byte("garbage"), QoS: 1, PacketID: 2},
		&packets.Pingreq{},
	} {
		valid, _ = packets.Encode(valid, p, v)
	}
	switch rng.IntN(3) {
	case 0:
		return rnd(1 + rng.IntN(512))
	case 1:
		cut := len(valid) - 1 - rng.IntN(len(valid)/2)
		return append(valid[:cut:cut], rnd(rng.IntN(256))...)
	default:
		b := append([]byte(nil), valid...)
		for range 1 + rng.IntN(4) {
			b[rng.IntN(len(b))] ^= byte(1 + rng.UintN(255))
		}
		return b
	}
}

// Random and mutated byte streams thrown at a live listener while a
// well-behaved publisher and subscriber keep exchanging messages: the
// good clients lose nothing, no panic is logged, and the connections and
// goroutines of the garbage come back to baseline.
func TestHostileGarbageLeavesOthersServed(t *testing.T) {
	var panics atomic.Int64
	s := startServer(t, func(o *Options) {
		o.ConnectTimeout = 300 * time.Millisecond
		watchPanics(o, &panics, true)
	})
	sub := dial(t, s, packets.V5)
	sub.connect("good-sub", true, nil)
	sub.subscribe(1, packets.Subscription{Filter: "good/#", QoS: 1})
	pub := dial(t, s, packets.V311)
	pub.connect("good-pub", true, nil)
	next := 0
	exchange := func() {
		t.Helper()
		topic := fmt.Sprint("good/", next)
		pub.publish(topic, fmt.Sprint(next), 1, false, uint16(next%60000+1))
		for {
			p := sub.recvPublish(true)
			if p.Topic == topic { // garbage clients may publish to good/x too
				if string(p.Payload) != fmt.Sprint(next) {
					t.Fatalf("message %d arrived as %q", next, p.Payload)
				}
				break
			}
			if p.Topic != "good/x" {
				t.Fatalf("unexpected message on %s (waiting for %s): lost or reordered", p.Topic, topic)
			}
		}
		next++
	}
	exchange()
	openConnections(t, s, 2)
	baseline := runtime.NumGoroutine()

	const garbageConns = 120
	var wg sync.WaitGroup
	work := make(chan []byte)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				conn, err := net.DialTimeout("tcp", s.MQTTAddr(), testTimeout)
				if err != nil {
					t.Errorf("garbage dial %d: %v", w, err)
					return
				}
				_ = conn.SetDeadline(time.Now().Add(testTimeout))
				_, _ = conn.Write(b)
				if len(b)%2 == 0 {
					// Half of them read what the server answers, until it
					// closes or for a moment (a mutated stream may still be
					// a valid session); the others close at once.
					_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
					_, _ = io.Copy(io.Discard, conn)
				}
				_ = conn.Close()
			}
		}()
	}
	rng := rand.New(rand.NewPCG(7, 11))
	for i := range garbageConns {
		work <- garbage(rng)
		if i%10 == 0 {
			exchange()
		}
	}
	close(work)
	wg.Wait()
	exchange()

	if n := panics.Load(); n != 0 {
		t.Fatalf("%d panics logged while handling garbage", n)
	}
	openConnections(t, s, 2)
	// Two goroutines per garbage connection came and went; what is left
	// is the baseline (a little slack for runtime helpers such as timers).
	eventually(t, testTimeout, func() error {
		if n := runtime.NumGoroutine(); n > baseline+2 {
			return fmt.Errorf("%d goroutines, baseline %d", n, baseline)
		}
		return nil
	})
	if got := s.stats.ConnectionsTotal.Load(); got < garbageConns+2 {
		t.Fatalf("ConnectionsTotal %d: not every garbage connection reached the broker", got)
	}
	exchange()
}

// The WebSocket listener under the same garbage, sent as binary frames
// split at random points (and a text frame, which MQTT forbids): no
// panic, every connection torn down, and a well-behaved WebSocket client
// still served.
func TestHostileGarbageOverWebSocket(t *testing.T) {
	var panics atomic.Int64
	s := startServer(t, func(o *Options) {
		o.WSAddr = "127.0.0.1:0"
		o.ConnectTimeout = 300 * time.Millisecond
		watchPanics(o, &panics, true)
	})
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: testTimeout}
	rng := rand.New(rand.NewPCG(3, 5))
	for i := range 30 {
		ws, resp, err := d.Dial("ws://"+s.WSAddr()+"/mqtt", nil)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		_ = resp.Body.Close()
		b := garbage(rng)
		for len(b) > 0 {
			n := 1 + rng.IntN(len(b))
			typ := websocket.BinaryMessage
			if i%10 == 9 {
				typ = websocket.TextMessage
			}
			if ws.WriteMessage(typ, b[:n]) != nil {
				break
			}
			b = b[n:]
		}
		_ = ws.Close()
	}
	if n := panics.Load(); n != 0 {
		t.Fatalf("%d panics logged", n)
	}
	openConnections(t, s, 0)
	ws, resp, err := d.Dial("ws://"+s.WSAddr()+"/mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	c := wrapConn(t, &wsConn{ws: ws}, packets.V5)
	c.connect("after", true, nil)
	c.subscribe(1, packets.Subscription{Filter: "ws", QoS: 1})
	pub := dial(t, s, packets.V311)
	pub.connect("pub", true, nil)
	pub.publish("ws", "still served", 1, false, 1)
	if m := c.recvPublish(true); string(m.Payload) != "still served" {
		t.Fatalf("got %q", m.Payload)
	}
}
