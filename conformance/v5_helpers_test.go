package conformance

// Helpers for the MQTT 5.0 tests (v5_*_test.go), built on the raw client of
// harness_test.go. Everything here is prefixed v5 so it cannot collide with
// the shared harness.

import (
	"bufio"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
)

// rc is a shorthand for a reason code in tables.
type rc = packets.ReasonCode

// Reason codes each 5.0 packet may carry (MQTT 5.0 §3.x.2.1 tables). A code
// outside its packet's table violates the "uses only defined reason codes"
// statements.
var (
	v5ConnackCodes    = []rc{0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F}
	v5PubackCodes     = []rc{0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99}
	v5PubrecCodes     = v5PubackCodes
	v5PubrelCodes     = []rc{0x00, 0x92}
	v5PubcompCodes    = []rc{0x00, 0x92}
	v5SubackCodes     = []rc{0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2}
	v5UnsubackCodes   = []rc{0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91}
	v5DisconnectCodes = []rc{0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2}
)

// v5Dial opens a TCP connection that speaks 5.0, without connecting.
func v5Dial(t *testing.T, tg *Target) *Client {
	t.Helper()
	return dial(t, tg, packets.V5)
}

// v5Connect dials and connects a 5.0 client with Clean Start, Keep Alive 60
// and client identifier id ("" picks a fresh one), after mod has adjusted the
// CONNECT. The connection must be accepted; the CONNACK is returned.
func v5Connect(t *testing.T, tg *Target, id string, mod func(*packets.Connect)) (*Client, *packets.Connack) {
	t.Helper()
	if id == "" {
		id = clientID(t)
	}
	c := v5Dial(t, tg)
	cp := &packets.Connect{ClientID: id, CleanStart: true, KeepAlive: 60}
	if mod != nil {
		mod(cp)
	}
	ack := c.connect(cp)
	if ack.ReasonCode != packets.Success {
		t.Fatalf("CONNECT %q refused: %v (reason string %q)", cp.ClientID, ack.ReasonCode, ack.Properties.ReasonString)
	}
	return c, ack
}

// v5Client connects a fresh 5.0 client with default settings.
func v5Client(t *testing.T, tg *Target) *Client {
	t.Helper()
	c, _ := v5Connect(t, tg, "", nil)
	return c
}

// v5Session returns a CONNECT modifier for a session that outlives the
// connection: Clean Start = clean and Session Expiry Interval = expiry
// seconds.
func v5Session(clean bool, expiry uint32) func(*packets.Connect) {
	return func(c *packets.Connect) {
		c.CleanStart = clean
		c.Properties.SessionExpiry = expiry
	}
}

// v5Sub subscribes to one filter with the given options and returns the
// SUBACK's single reason code.
func v5Sub(c *Client, s packets.Subscription, props packets.Properties) packets.ReasonCode {
	c.t.Helper()
	sa := c.subscribeWith(&packets.Subscribe{Subscriptions: []packets.Subscription{s}, Properties: props})
	if len(sa.ReasonCodes) != 1 {
		c.t.Fatalf("SUBACK for one filter has %d reason codes", len(sa.ReasonCodes))
	}
	return sa.ReasonCodes[0]
}

// v5MustSub subscribes and requires the grant of exactly qos.
func v5MustSub(c *Client, filter string, qos byte) {
	c.t.Helper()
	if got := c.subscribe(filter, qos); got != packets.ReasonCode(qos) {
		c.t.Fatalf("SUBSCRIBE %q QoS %d: SUBACK %v", filter, qos, got)
	}
}

// v5SubID subscribes with a Subscription Identifier and requires success.
func v5SubID(c *Client, filter string, qos byte, id uint32) {
	c.t.Helper()
	got := v5Sub(c, packets.Subscription{Filter: filter, QoS: qos}, packets.Properties{SubscriptionIDs: []uint32{id}})
	if got != packets.ReasonCode(qos) {
		c.t.Fatalf("SUBSCRIBE %q QoS %d id %d: SUBACK %v", filter, qos, id, got)
	}
}

// v5Leave ends a connection with DISCONNECT (reason 0x00 unless props or
// code say otherwise) and waits until the server has closed its side, so the
// server has processed the DISCONNECT before the test goes on. A server
// that keeps the connection open (it SHOULD close it) is closed by us.
func v5Leave(c *Client) {
	c.t.Helper()
	c.send(&packets.Disconnect{})
	v5WaitEOF(c)
}

// v5WaitEOF waits briefly for the server to close the connection, then
// closes our side. Packets arriving meanwhile are discarded.
func v5WaitEOF(c *Client) {
	deadline := time.Now().Add(wait)
	for !c.ended && time.Now().Before(deadline) {
		c.pull(time.Until(deadline))
	}
	c.queue = nil
	c.close()
}

// v5ExpectDisconnect requires the server to close the connection [MQTT-4.13.1-1].
// If it sends a DISCONNECT first, its reason code must be one of codes.
// The reason code itself is a SHOULD in the spec (§4.13.1); Beacon's design
// promises it, so its absence fails against the in-process broker and is
// only logged against an external one.
func v5ExpectDisconnect(c *Client, tg *Target, codes ...rc) *packets.Disconnect {
	c.t.Helper()
	d := c.expectClosed(wait)
	if d == nil {
		if tg.External {
			c.t.Logf("note: the server closed without a DISCONNECT (SHOULD send reason code %v)", codes)
		} else {
			c.t.Errorf("the server closed without a DISCONNECT; want reason code %v", codes)
		}
		return nil
	}
	if !slices.Contains(codes, d.ReasonCode) {
		c.t.Errorf("DISCONNECT reason code %#x (%v), want one of %v", byte(d.ReasonCode), d.ReasonCode, codes)
	}
	if d.Properties.Has(packets.PropSessionExpiry) {
		c.t.Errorf("server DISCONNECT carries a Session Expiry Interval [MQTT-3.14.2-2]")
	}
	return d
}

// v5ExpectConnackClose is for a CONNECT the server must refuse: either a
// CONNACK with one of codes (Session Present 0) and then the close, or just
// the close. It returns the CONNACK, nil if none.
func v5ExpectConnackClose(c *Client, codes ...rc) *packets.Connack {
	c.t.Helper()
	var ack *packets.Connack
	for _, p := range c.waitClosed(wait) {
		a, ok := p.(*packets.Connack)
		if !ok || ack != nil {
			c.t.Fatalf("refused CONNECT: expected at most one CONNACK and then the close; got %s [MQTT-3.14.0-1]", describe([]packets.Packet{p}))
		}
		ack = a
	}
	if ack == nil {
		return nil
	}
	if !slices.Contains(codes, ack.ReasonCode) {
		c.t.Errorf("CONNACK reason code %#x (%v), want one of %v", byte(ack.ReasonCode), ack.ReasonCode, codes)
	}
	if ack.SessionPresent {
		c.t.Errorf("refusing CONNACK has Session Present 1 [MQTT-3.2.2-6]")
	}
	return ack
}

// v5Publishes collects PUBLISH packets without acknowledging any: first
// until min have arrived (each within wait, so a slow machine does not
// fail the test), then any more that arrive within the window d. Any other
// packet fails the test.
func v5Publishes(c *Client, min int, d time.Duration) []*packets.Publish {
	c.t.Helper()
	return v5Gather(c, min, d, false)
}

// v5Collect is v5Publishes with every PUBLISH acknowledged as it arrives,
// so QoS 1 and 2 flows complete and flow control does not hold messages.
func v5Collect(c *Client, min int, d time.Duration) []*packets.Publish {
	c.t.Helper()
	return v5Gather(c, min, d, true)
}

func v5Gather(c *Client, min int, d time.Duration, ack bool) []*packets.Publish {
	c.t.Helper()
	var out []*packets.Publish
	var window time.Time // zero until min PUBLISHes are in
	deadline := time.Now().Add(wait)
	for {
		for len(c.queue) > 0 {
			p := c.queue[0]
			c.queue = c.queue[1:]
			pub, ok := p.(*packets.Publish)
			if !ok {
				c.t.Fatalf("expected only PUBLISH packets; got %s", describe([]packets.Packet{p}))
			}
			if ack {
				c.ack(pub)
			}
			out = append(out, pub)
		}
		if len(out) >= min && window.IsZero() {
			window = time.Now().Add(d)
			deadline = window
		}
		left := time.Until(deadline)
		if left <= 0 || !c.pull(left) {
			if len(out) < min {
				c.t.Fatalf("received %d PUBLISH packets within %v, want at least %d (payloads %v)", len(out), wait, min, v5Payloads(out))
			}
			return out
		}
	}
}

// v5Fits fails the test when p encodes to more than max bytes, the Maximum
// Packet Size the client declared [MQTT-3.1.2-24].
func v5Fits(t *testing.T, p packets.Packet, max int, id string) {
	t.Helper()
	if n := packets.Size(p, packets.V5); n > max {
		t.Errorf("[%s] server sent a %d-byte %s to a client whose Maximum Packet Size is %d", id, n, typeName(p.Type()), max)
	}
}

// letTimePass waits d. It is used only where the rule under test is about
// elapsed time itself (expiry intervals, will delay, keep alive), never to
// wait for the broker to finish something.
func letTimePass(d time.Duration) {
	<-time.After(d)
}

// Raw packet building, for input the codec would refuse to encode.

// rawPkt builds a packet from its first byte and body parts, computing the
// remaining length.
func rawPkt(first byte, body ...[]byte) []byte {
	var b []byte
	for _, part := range body {
		b = append(b, part...)
	}
	out := []byte{first}
	out = append(out, rawVBI(len(b))...)
	return append(out, b...)
}

// rawVBI encodes n as a minimal Variable Byte Integer.
func rawVBI(n int) []byte {
	var out []byte
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		out = append(out, d)
		if n == 0 {
			return out
		}
	}
}

// rawStr encodes s (any bytes) with its two-byte length prefix.
func rawStr(s string) []byte {
	return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...)
}

// rawProps prefixes encoded properties with their length.
func rawProps(props ...[]byte) []byte {
	var b []byte
	for _, p := range props {
		b = append(b, p...)
	}
	return append(rawVBI(len(b)), b...)
}

// rawPublish0 builds a QoS 0 PUBLISH with the given raw topic bytes, raw
// properties (already length-prefixed) and payload.
func rawPublish0(topic string, props []byte, payload string) []byte {
	return rawPkt(0x30, rawStr(topic), props, []byte(payload))
}

// v5Raw is a plain TCP connection read packet by packet as raw bytes, for
// statements about encodings the decoder hides (flag bits, Variable Byte
// Integer lengths, Property Length presence).
type v5Raw struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

// v5DialRaw opens a raw connection to the target.
func v5DialRaw(t *testing.T, tg *Target) *v5Raw {
	t.Helper()
	conn, err := net.DialTimeout("tcp", tg.Addr, wait)
	if err != nil {
		t.Fatalf("dial %s: %v", tg.Addr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &v5Raw{t: t, conn: conn, r: bufio.NewReader(conn)}
}

// write sends b.
func (c *v5Raw) write(b []byte) {
	c.t.Helper()
	_ = c.conn.SetWriteDeadline(time.Now().Add(wait))
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read returns the next packet's raw bytes and the length of its fixed
// header (first byte plus Remaining Length bytes).
func (c *v5Raw) read() (raw []byte, hdr int) {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(wait))
	first, err := c.r.ReadByte()
	if err != nil {
		c.t.Fatalf("read first byte: %v", err)
	}
	out := []byte{first}
	n, mul := 0, 1
	for i := 0; ; i++ {
		d, err := c.r.ReadByte()
		if err != nil || i == 4 {
			c.t.Fatalf("read remaining length: %v (% x)", err, out)
		}
		out = append(out, d)
		n += int(d&0x7f) * mul
		mul *= 128
		if d&0x80 == 0 {
			break
		}
	}
	hdr = len(out)
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		c.t.Fatalf("read body: %v", err)
	}
	return append(out, body...), hdr
}

// v5RawFirstPacket dials a raw connection, sends b and returns the raw
// bytes of the first packet the server sends back.
func v5RawFirstPacket(t *testing.T, tg *Target, b []byte) []byte {
	t.Helper()
	c := v5DialRaw(t, tg)
	c.write(b)
	raw, _ := c.read()
	return raw
}

// rawVBIAt decodes the Variable Byte Integer at b[i:], returning its value
// and length in bytes (0 if it does not end within 4 bytes).
func rawVBIAt(b []byte, i int) (v, n int) {
	mul := 1
	for n < 4 && i+n < len(b) {
		d := b[i+n]
		v += int(d&0x7f) * mul
		mul *= 128
		n++
		if d&0x80 == 0 {
			return v, n
		}
	}
	return 0, 0
}

// v5Encode encodes p as 5.0 or fails.
func v5Encode(t *testing.T, p packets.Packet) []byte {
	t.Helper()
	return encode(t, p, packets.V5)
}

// v5Payloads lists the payloads of pubs as strings, for messages.
func v5Payloads(pubs []*packets.Publish) []string {
	out := make([]string, len(pubs))
	for i, p := range pubs {
		out[i] = string(p.Payload)
	}
	return out
}

// v5RawRefused sends b (a CONNECT the server must refuse, possibly followed
// by more packets) on a plain TCP connection and requires: at most one
// CONNACK, refusing with one of codes, then the close. A server that cannot
// parse the protocol level may answer in the 3.1.1 format (return code 0x01,
// unacceptable protocol version); that is accepted for
// UnsupportedProtocolVersion.
func v5RawRefused(t *testing.T, tg *Target, b []byte, codes ...rc) {
	t.Helper()
	c := v5DialRaw(t, tg)
	_ = c.conn.SetDeadline(time.Now().Add(wait))
	if _, err := c.conn.Write(b); err != nil {
		t.Logf("write: %v", err)
	}
	got, err := io.ReadAll(c.r)
	if err != nil && !isClosedErr(err) {
		t.Fatalf("the server did not close the connection within %v: %v (received % x)", wait, err, got)
	}
	if len(got) == 0 {
		return // closed without CONNACK: allowed
	}
	if got[0] != 0x20 || len(got) < 4 || int(got[1])+2 != len(got) {
		t.Fatalf("refused CONNECT: expected one CONNACK and the close; received % x [MQTT-3.14.0-1]", got)
	}
	if got[2] != 0 {
		t.Errorf("refusing CONNACK with Session Present/flags %#x [MQTT-3.2.2-6]", got[2])
	}
	code := rc(got[3])
	if got[1] == 2 && code == 0x01 && slices.Contains(codes, packets.UnsupportedProtocolVersion) {
		t.Logf("note: refused in the 3.1.1 format (return code 0x01)")
		return
	}
	if !slices.Contains(codes, code) {
		t.Errorf("CONNACK reason code %#x, want one of %v", byte(code), codes)
	}
}

// waitClosedOrPacket returns the first packet within wait, or nil when the
// connection closes first.
func (c *Client) waitClosedOrPacket() packets.Packet {
	if len(c.queue) == 0 && !c.pull(wait) {
		if c.ended {
			return nil
		}
		c.t.Fatalf("neither a packet nor a close within %v", wait)
	}
	p := c.queue[0]
	c.queue = c.queue[1:]
	return p
}
