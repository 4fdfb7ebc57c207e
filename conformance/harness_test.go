// Package conformance holds black-box tests named after the normative
// statements of MQTT 3.1.1 and 5.0. They speak raw MQTT through the Beacon
// codec and only look at bytes on the wire, so they run unchanged against the
// in-process Beacon broker or against any broker at an address.
//
// # Harness API (harness_test.go, harness_ws_test.go, harness_inproc_test.go)
//
// Target selection:
//
//	tg := target(t)          // *Target: Addr (TCP host:port), WSAddr ("" if none), External
//	requireWS(t, tg)         // skips loudly when no WebSocket address is known
//	skipBeacon(t, tg, "feature") // t.Skip only against the in-process broker, never external
//
// BEACON_CONFORMANCE_ADDR=host:port selects an external broker;
// BEACON_CONFORMANCE_WS_ADDR=host:port (or ws://host:port/path) adds its
// WebSocket listener. Without them, every target(t) call starts a fresh
// in-process Beacon (memory store, MQTT and WS on 127.0.0.1:0) shut down by
// t.Cleanup, so tests are isolated from each other. BEACON_CONFORMANCE_LOG=1
// routes the in-process broker's logs to t.Log. BEACON_CONFORMANCE_TRANSPORT=ws
// makes dial use WebSocket, so the whole suite runs over that transport.
//
// Names: uid(t) returns a short random [0-9a-z] string; clientID(t) a valid
// 3.1.1 client identifier (≤23 alphanumerics); topic(t, levels...) a topic
// under a fresh random root, so tests never see each other's traffic even on
// a shared external broker.
//
// Raw client (one per connection, closed by t.Cleanup):
//
//	c := dial(t, tg, packets.V311)     // TCP; dialWS(t, tg, v) for WebSocket
//	ack := c.connect(&packets.Connect{ClientID: id, CleanStart: true}) // fills ProtocolName/Version; fails without CONNACK
//	c := connectNew(t, tg, v, id, clean) // dial + connect + require Success
//	c.send(p)                  // encode with c.version and write
//	c.sendRaw(b)               // write bytes as they are (malformed input)
//	p := c.expect(packets.TypePuback, d)  // first packet of that type within d; other packets stay queued
//	pa := expectType[*packets.Puback](c, d) // typed form of expect
//	p := c.next(d)             // the very next packet, whatever its type
//	c.expectNone(d)            // nothing at all arrives within d (absence statements only; keep d small, e.g. short)
//	d := c.expectClosed(d)     // server closes (EOF/reset); only a DISCONNECT may precede it (returned, nil if none)
//	c.expectOpen()             // the connection is still usable: PINGREQ answered by PINGRESP
//	p := c.waitOrClose(d)      // next packet, or nil if the server closed the connection
//	code := c.subscribe(filter, qos)          // SUBSCRIBE + SUBACK, returns the granted code
//	sa := c.subscribeWith(&packets.Subscribe{...}) // packet id filled in when 0
//	c.unsubscribe(filters...)                // UNSUBSCRIBE + UNSUBACK
//	c.publish(topic, payload, qos, retain)   // full QoS 0/1/2 sender flow
//	c.publishWith(&packets.Publish{...})     // same with a prepared packet (id filled in when 0)
//	pub := c.expectPublish(d)  // next PUBLISH (not acknowledged)
//	c.ack(pub)                 // receiver side: PUBACK, or PUBREC→PUBREL→PUBCOMP
//	pub := c.receive(d)        // expectPublish + ack
//	c.disconnect()             // DISCONNECT then close
//	c.close()                  // drop the TCP connection without DISCONNECT
//	id := c.nextID()           // fresh non-zero packet identifier
//	pubs := c.collect(d)       // every PUBLISH arriving within d (acknowledged); other packets stay queued
//	frames := c.rawFrames()    // every packet received so far as raw bytes (fixed header included)
//	body := frameBody(frames[0]) // a raw packet without its fixed header
//
// Raw packet building for malformed input (independent of the codec):
//
//	raw(0x82, u16(1), str("a/b"), []byte{0x01}) // fixed header byte, body parts; remaining length computed
//	str(s) / u16(v) / vbi(n)                     // length-prefixed string, big-endian uint16, variable byte integer
//
// Time: every wait is bounded; use the constants wait (something should
// arrive), short (absence window) and eventually(t, d, func() error) for
// polling. Never time.Sleep as synchronisation.
package conformance

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
)

// Wait bounds. wait is how long a packet that must arrive may take; short is
// the window in which a packet that must not arrive is looked for.
const (
	wait  = 5 * time.Second
	short = 300 * time.Millisecond
)

// Target is the broker under test.
type Target struct {
	Addr     string // MQTT over TCP, host:port
	WSAddr   string // WebSocket URL (ws://host:port/mqtt), "" when unknown
	External bool   // true when selected by BEACON_CONFORMANCE_ADDR
}

// startInProcess starts an in-process broker for one test; it is set by
// harness_inproc_test.go. When nil the in-process broker is unavailable.
var startInProcess func(t *testing.T) *Target

// target returns the broker the test talks to: the external one named by
// BEACON_CONFORMANCE_ADDR, or a fresh in-process Beacon.
func target(t *testing.T) *Target {
	t.Helper()
	if addr := os.Getenv("BEACON_CONFORMANCE_ADDR"); addr != "" {
		return &Target{Addr: addr, WSAddr: wsURL(os.Getenv("BEACON_CONFORMANCE_WS_ADDR")), External: true}
	}
	if startInProcess == nil {
		t.Skip("in-process broker not available in this build and BEACON_CONFORMANCE_ADDR is not set")
	}
	return startInProcess(t)
}

// wsURL turns host:port into ws://host:port/mqtt; a full URL is kept.
func wsURL(s string) string {
	if s == "" || strings.Contains(s, "://") {
		return s
	}
	return "ws://" + s + "/mqtt"
}

// requireWS skips a WebSocket-only test when the target has no WebSocket
// listener address.
func requireWS(t *testing.T, tg *Target) {
	t.Helper()
	if tg.WSAddr == "" {
		t.Skip("SKIPPED: WebSocket test needs BEACON_CONFORMANCE_WS_ADDR when BEACON_CONFORMANCE_ADDR is set")
	}
}

// skipBeacon skips a test whose feature the in-process Beacon does not
// implement yet. Against an external broker it does nothing: the suite
// never hides another broker's deviation.
func skipBeacon(t *testing.T, tg *Target, feature string) {
	t.Helper()
	if !tg.External {
		t.Skipf("beacon: %s not implemented yet — see COVERAGE.md", feature)
	}
}

// uid returns 10 random characters from [0-9a-z].
func uid(t *testing.T) string {
	t.Helper()
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random: %v", err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}

// clientID returns a fresh client identifier that every 3.1.1 server must
// accept: 1-23 characters from [0-9a-zA-Z] [MQTT-3.1.3-5].
func clientID(t *testing.T) string { return "cf" + uid(t) }

// topic returns a topic under a fresh random root, e.g. "cf/k3j2.../a/b".
func topic(t *testing.T, levels ...string) string {
	return strings.Join(append([]string{"cf", uid(t)}, levels...), "/")
}

// eventually polls f until it returns nil or d has passed.
func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %v: %v", d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readResult is one outcome of the client's reader goroutine: a packet, or
// the error that ended the stream.
type readResult struct {
	p   packets.Packet
	err error
}

// Client is a raw MQTT client: it writes exactly what a test asks for and
// reports every packet the server sends, in order.
type Client struct {
	t       *testing.T
	conn    io.ReadWriteCloser
	version packets.Version

	in      chan readResult // filled by the reader goroutine, closed at EOF
	rec     *recorder       // every byte received, for checks on raw encoding
	queue   []packets.Packet
	readErr error // set once in has been drained to its end
	ended   bool

	wmu    sync.Mutex
	lastID uint16
	closed sync.Once
	done   chan struct{} // closed by close()
}

// dial opens a TCP connection to the target (a WebSocket one when
// BEACON_CONFORMANCE_TRANSPORT=ws); v selects how packets are
// encoded and decoded (set it to the version the test will CONNECT with).
func dial(t *testing.T, tg *Target, v packets.Version) *Client {
	t.Helper()
	if os.Getenv("BEACON_CONFORMANCE_TRANSPORT") == "ws" {
		return dialWS(t, tg, v)
	}
	conn, err := net.DialTimeout("tcp", tg.Addr, wait)
	if err != nil {
		t.Fatalf("dial %s: %v", tg.Addr, err)
	}
	return newClient(t, conn, v)
}

// newClient wraps an open connection and starts its reader goroutine.
func newClient(t *testing.T, conn io.ReadWriteCloser, v packets.Version) *Client {
	c := &Client{t: t, conn: conn, version: v, in: make(chan readResult, 1024), rec: &recorder{r: conn}, done: make(chan struct{})}
	rd := packets.NewReader(bufio.NewReader(c.rec), 0)
	rd.SetVersion(v)
	go func() {
		defer close(c.in)
		for {
			p, err := rd.Read()
			select {
			case c.in <- readResult{p: p, err: err}:
			case <-c.done: // closed and nobody reading: do not block forever
				return
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(c.close)
	return c
}

// close drops the connection without sending DISCONNECT.
func (c *Client) close() {
	c.closed.Do(func() {
		close(c.done)
		_ = c.conn.Close()
	})
}

// disconnect sends DISCONNECT (normal disconnection) and closes.
func (c *Client) disconnect() {
	c.t.Helper()
	c.send(&packets.Disconnect{})
	c.close()
}

// nextID returns a fresh non-zero packet identifier.
func (c *Client) nextID() uint16 {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.lastID++
	if c.lastID == 0 {
		c.lastID = 1
	}
	return c.lastID
}

// encode encodes p for version v or fails the test.
func encode(t *testing.T, p packets.Packet, v packets.Version) []byte {
	t.Helper()
	b, err := packets.Encode(nil, p, v)
	if err != nil {
		t.Fatalf("encode %T: %v", p, err)
	}
	return b
}

// send encodes p with the client's version and writes it.
func (c *Client) send(p packets.Packet) {
	c.t.Helper()
	c.sendRaw(encode(c.t, p, c.version))
}

// sendRaw writes b unchanged. A write error is not fatal: the server may
// legitimately have closed the connection already; expectClosed tells.
func (c *Client) sendRaw(b []byte) {
	c.t.Helper()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := writeAll(c.conn, b); err != nil {
		c.t.Logf("write %d bytes: %v", len(b), err)
	}
}

func writeAll(w io.Writer, b []byte) error {
	if d, ok := w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		_ = d.SetWriteDeadline(time.Now().Add(wait))
	}
	_, err := w.Write(b)
	return err
}

// pull waits up to d for one more packet from the wire. It returns false on
// timeout; at end of stream it records readErr and returns false.
func (c *Client) pull(d time.Duration) bool {
	if c.ended {
		return false
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case r, ok := <-c.in:
		if !ok {
			c.ended = true
			return false
		}
		if r.err != nil {
			c.ended = true
			c.readErr = r.err
			return false
		}
		c.queue = append(c.queue, r.p)
		return true
	case <-timer.C:
		return false
	}
}

// next returns the very next packet from the server within d.
func (c *Client) next(d time.Duration) packets.Packet {
	c.t.Helper()
	if len(c.queue) == 0 && !c.pull(d) {
		c.failEnded(fmt.Sprintf("any packet within %v", d))
	}
	p := c.queue[0]
	c.queue = c.queue[1:]
	return p
}

// expect returns the first packet of type typ that arrives within d. Packets
// of other types stay queued, in order, for later calls.
func (c *Client) expect(typ packets.Type, d time.Duration) packets.Packet {
	c.t.Helper()
	deadline := time.Now().Add(d)
	scanned := 0
	for {
		for ; scanned < len(c.queue); scanned++ {
			if p := c.queue[scanned]; p.Type() == typ {
				c.queue = append(c.queue[:scanned:scanned], c.queue[scanned+1:]...)
				return p
			}
		}
		left := time.Until(deadline)
		if left <= 0 || !c.pull(left) {
			c.failEnded(fmt.Sprintf("%s within %v", typeName(typ), d))
		}
	}
}

// failEnded fails the test because what was awaited did not come.
func (c *Client) failEnded(what string) {
	c.t.Helper()
	queued := describe(c.queue)
	switch {
	case c.ended && c.readErr != nil && !isClosedErr(c.readErr):
		c.t.Fatalf("expected %s; the server's bytes failed to decode: %v (queued: %s)", what, c.readErr, queued)
	case c.ended:
		c.t.Fatalf("expected %s; the server closed the connection (%v) (queued: %s)", what, c.readErr, queued)
	default:
		c.t.Fatalf("expected %s; nothing matching arrived (queued: %s)", what, queued)
	}
}

// expectType is expect with the concrete packet type as type parameter:
// expectType[*packets.Suback](c, wait).
func expectType[P packets.Packet](c *Client, d time.Duration) P {
	c.t.Helper()
	var zero P
	return c.expect(zero.Type(), d).(P)
}

// expectNone fails if any packet arrives, or the connection closes, within
// d. Use it only where a statement is about the absence of something.
func (c *Client) expectNone(d time.Duration) {
	c.t.Helper()
	if len(c.queue) > 0 {
		c.t.Fatalf("expected no packet; already received %s", describe(c.queue))
	}
	if c.pull(d) {
		c.t.Fatalf("expected no packet within %v; received %s", d, describe(c.queue))
	}
	if c.ended {
		c.t.Fatalf("expected no packet within %v; the connection ended: %v", d, c.readErr)
	}
}

// waitClosed waits up to d for the server to close the connection and
// returns every packet received before the close. It fails on timeout.
func (c *Client) waitClosed(d time.Duration) []packets.Packet {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for !c.ended {
		left := time.Until(deadline)
		if left <= 0 || (!c.pull(left) && !c.ended) {
			c.t.Fatalf("expected the server to close the connection within %v; still open (received %s)", d, describe(c.queue))
		}
	}
	if c.readErr != nil && !isClosedErr(c.readErr) {
		// Undecodable bytes are not a close: the server sent garbage.
		c.t.Fatalf("expected the server to close the connection; it sent bytes that do not decode: %v", c.readErr)
	}
	got := c.queue
	c.queue = nil
	return got
}

// expectClosed waits for the server to close the connection. Nothing but a
// DISCONNECT (5.0) may come first; that DISCONNECT is returned (nil if none).
func (c *Client) expectClosed(d time.Duration) *packets.Disconnect {
	c.t.Helper()
	var disc *packets.Disconnect
	for _, p := range c.waitClosed(d) {
		if dp, ok := p.(*packets.Disconnect); ok && c.version >= packets.V5 {
			disc = dp
			continue
		}
		c.t.Fatalf("expected the connection to be closed; the server sent %s first", describe([]packets.Packet{p}))
	}
	return disc
}

// waitOrClose returns the next packet within d, or nil when the server
// closes the connection first. It fails on timeout.
func (c *Client) waitOrClose(d time.Duration) packets.Packet {
	c.t.Helper()
	if len(c.queue) == 0 && !c.pull(d) {
		if c.ended && isClosedErr(c.readErr) {
			return nil
		}
		c.failEnded(fmt.Sprintf("a packet or a close within %v", d))
	}
	p := c.queue[0]
	c.queue = c.queue[1:]
	return p
}

// expectOpen checks that the connection still works: a PINGREQ is answered
// by a PINGRESP.
func (c *Client) expectOpen() {
	c.t.Helper()
	c.send(&packets.Pingreq{})
	c.expect(packets.TypePingresp, wait)
}

// isClosedErr reports whether err means the peer closed the stream (EOF,
// reset, closed pipe) rather than sent undecodable bytes.
func isClosedErr(err error) bool {
	if err == nil {
		return true
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, errWSClosed)
}

// connect sends CONNECT (ProtocolName and Version filled in from the
// client's version when empty) and returns the CONNACK. It fails when no
// CONNACK arrives; the return code is the caller's to check.
func (c *Client) connect(p *packets.Connect) *packets.Connack {
	c.t.Helper()
	if p.Version == 0 {
		p.Version = c.version
	}
	if p.ProtocolName == "" {
		p.ProtocolName = "MQTT"
		if p.Version == packets.V31 {
			p.ProtocolName = "MQIsdp"
		}
	}
	c.send(p)
	return expectType[*packets.Connack](c, wait)
}

// connectNew dials and connects with the given client identifier and clean
// flag, requiring the connection to be accepted.
func connectNew(t *testing.T, tg *Target, v packets.Version, id string, clean bool) *Client {
	t.Helper()
	c := dial(t, tg, v)
	ack := c.connect(&packets.Connect{ClientID: id, CleanStart: clean, KeepAlive: 60})
	if ack.ReasonCode != packets.Success {
		t.Fatalf("CONNECT %q refused: %v", id, ack.ReasonCode)
	}
	return c
}

// subscribe subscribes to one filter and returns the granted code from the
// SUBACK.
func (c *Client) subscribe(filter string, qos byte) packets.ReasonCode {
	c.t.Helper()
	sa := c.subscribeWith(&packets.Subscribe{Subscriptions: []packets.Subscription{{Filter: filter, QoS: qos}}})
	if len(sa.ReasonCodes) != 1 {
		c.t.Fatalf("SUBACK for one filter has %d codes", len(sa.ReasonCodes))
	}
	return sa.ReasonCodes[0]
}

// subscribeWith sends SUBSCRIBE (packet id filled in when 0) and returns the
// SUBACK, checking it carries the same packet identifier.
func (c *Client) subscribeWith(s *packets.Subscribe) *packets.Suback {
	c.t.Helper()
	if s.PacketID == 0 {
		s.PacketID = c.nextID()
	}
	c.send(s)
	sa := expectType[*packets.Suback](c, wait)
	if sa.PacketID != s.PacketID {
		c.t.Fatalf("SUBACK packet id %d, want %d", sa.PacketID, s.PacketID)
	}
	return sa
}

// unsubscribe sends UNSUBSCRIBE and waits for the matching UNSUBACK.
func (c *Client) unsubscribe(filters ...string) *packets.Unsuback {
	c.t.Helper()
	u := &packets.Unsubscribe{PacketID: c.nextID(), Filters: filters}
	c.send(u)
	ua := expectType[*packets.Unsuback](c, wait)
	if ua.PacketID != u.PacketID {
		c.t.Fatalf("UNSUBACK packet id %d, want %d", ua.PacketID, u.PacketID)
	}
	return ua
}

// publish sends an application message and completes the sender side of its
// QoS flow.
func (c *Client) publish(topic string, payload []byte, qos byte, retain bool) {
	c.t.Helper()
	c.publishWith(&packets.Publish{Topic: topic, Payload: payload, QoS: qos, Retain: retain})
}

// publishWith sends p (packet id filled in for QoS>0 when 0) and completes
// the sender side: QoS 1 waits for PUBACK, QoS 2 for PUBREC, sends PUBREL
// and waits for PUBCOMP. Acks must carry p's packet id [MQTT-2.3.1-6].
func (c *Client) publishWith(p *packets.Publish) {
	c.t.Helper()
	if p.QoS > 0 && p.PacketID == 0 {
		p.PacketID = c.nextID()
	}
	c.send(p)
	switch p.QoS {
	case 1:
		if a := expectType[*packets.Puback](c, wait); a.PacketID != p.PacketID {
			c.t.Fatalf("PUBACK packet id %d, want %d", a.PacketID, p.PacketID)
		}
	case 2:
		if r := expectType[*packets.Pubrec](c, wait); r.PacketID != p.PacketID {
			c.t.Fatalf("PUBREC packet id %d, want %d", r.PacketID, p.PacketID)
		}
		c.send(&packets.Pubrel{PacketID: p.PacketID})
		if r := expectType[*packets.Pubcomp](c, wait); r.PacketID != p.PacketID {
			c.t.Fatalf("PUBCOMP packet id %d, want %d", r.PacketID, p.PacketID)
		}
	}
}

// expectPublish returns the next PUBLISH within d without acknowledging it.
func (c *Client) expectPublish(d time.Duration) *packets.Publish {
	c.t.Helper()
	return expectType[*packets.Publish](c, d)
}

// ack completes the receiver side of p's QoS flow: PUBACK for QoS 1;
// PUBREC, wait for PUBREL, PUBCOMP for QoS 2.
func (c *Client) ack(p *packets.Publish) {
	c.t.Helper()
	switch p.QoS {
	case 1:
		c.send(&packets.Puback{PacketID: p.PacketID})
	case 2:
		c.send(&packets.Pubrec{PacketID: p.PacketID})
		if r := expectType[*packets.Pubrel](c, wait); r.PacketID != p.PacketID {
			c.t.Fatalf("PUBREL packet id %d, want %d", r.PacketID, p.PacketID)
		}
		c.send(&packets.Pubcomp{PacketID: p.PacketID})
	}
}

// receive waits for a PUBLISH and acknowledges it.
func (c *Client) receive(d time.Duration) *packets.Publish {
	c.t.Helper()
	p := c.expectPublish(d)
	c.ack(p)
	return p
}

// typeName names a packet type for messages.
func typeName(t packets.Type) string {
	names := [...]string{"RESERVED0", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
		"SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH"}
	if int(t) < len(names) {
		return names[t]
	}
	return fmt.Sprintf("type %d", t)
}

// describe renders packets for failure messages.
func describe(ps []packets.Packet) string {
	if len(ps) == 0 {
		return "nothing"
	}
	parts := make([]string, len(ps))
	for i, p := range ps {
		switch q := p.(type) {
		case *packets.Publish:
			parts[i] = fmt.Sprintf("PUBLISH{topic=%q qos=%d retain=%v dup=%v id=%d payload=%q}", q.Topic, q.QoS, q.Retain, q.Dup, q.PacketID, q.Payload)
		case *packets.Connack:
			parts[i] = fmt.Sprintf("CONNACK{sp=%v code=%#x}", q.SessionPresent, byte(q.ReasonCode))
		case *packets.Disconnect:
			parts[i] = fmt.Sprintf("DISCONNECT{code=%#x reason=%q}", byte(q.ReasonCode), q.Properties.ReasonString)
		default:
			parts[i] = fmt.Sprintf("%s%+v", typeName(p.Type()), p)
		}
	}
	return strings.Join(parts, ", ")
}

// recorder keeps a copy of every byte read through it.
type recorder struct {
	r   io.Reader
	mu  sync.Mutex
	buf []byte
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.mu.Lock()
	r.buf = append(r.buf, p[:n]...)
	r.mu.Unlock()
	return n, err
}

// rawFrames returns every packet received so far as raw bytes, split by the
// fixed header's remaining length. A trailing partial packet is left out.
func (c *Client) rawFrames() [][]byte {
	c.rec.mu.Lock()
	b := append([]byte(nil), c.rec.buf...)
	c.rec.mu.Unlock()
	var frames [][]byte
	for len(b) >= 2 {
		n, mult, i := 0, 1, 1
		for ; i < len(b) && i <= 4; i++ {
			n += int(b[i]&0x7f) * mult
			mult *= 128
			if b[i]&0x80 == 0 {
				break
			}
		}
		end := i + 1 + n
		if i >= len(b) || end > len(b) {
			break
		}
		frames = append(frames, b[:end])
		b = b[end:]
	}
	return frames
}

// frameBody returns the part of a raw packet after its fixed header.
func frameBody(f []byte) []byte {
	i := 1
	for i < len(f) && i < 5 && f[i]&0x80 != 0 {
		i++
	}
	return f[i+1:]
}

// collect gathers every PUBLISH that arrives within d, acknowledging QoS 1
// and 2 ones; other packets stay queued.
func (c *Client) collect(d time.Duration) []*packets.Publish {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 || !c.pull(left) {
			break
		}
	}
	var pubs []*packets.Publish
	rest := c.queue[:0:0]
	for _, p := range c.queue {
		if pp, ok := p.(*packets.Publish); ok {
			pubs = append(pubs, pp)
		} else {
			rest = append(rest, p)
		}
	}
	c.queue = rest
	for _, p := range pubs {
		if p.QoS == 1 {
			c.send(&packets.Puback{PacketID: p.PacketID})
		}
	}
	for _, p := range pubs {
		if p.QoS == 2 {
			c.ack(p)
		}
	}
	return pubs
}

// raw builds a packet byte by byte: the first fixed-header byte, the
// remaining length computed from parts, then parts.
func raw(first byte, parts ...[]byte) []byte {
	var body []byte
	for _, p := range parts {
		body = append(body, p...)
	}
	out := append([]byte{first}, vbi(len(body))...)
	return append(out, body...)
}

// str encodes a length-prefixed string (or arbitrary bytes) as MQTT does.
func str(s string) []byte { return append(u16(uint16(len(s))), s...) }

// u16 encodes v big-endian.
func u16(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }

// vbi encodes n as a variable byte integer.
func vbi(n int) []byte {
	var out []byte
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			return out
		}
	}
}

// rawConnect311 builds a 3.1.1 CONNECT with the given flags byte and
// payload fields after the client identifier (will topic, will message,
// user name, password as the flags require).
func rawConnect311(name string, level, flags byte, keepAlive uint16, id string, rest ...[]byte) []byte {
	parts := [][]byte{str(name), {level, flags}, u16(keepAlive), str(id)}
	return raw(0x10, append(parts, rest...)...)
}
