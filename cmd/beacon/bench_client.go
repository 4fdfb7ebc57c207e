package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beaconmq/beacon/packets"
)

// The bench client is deliberately lean so that the load generator, not the
// broker, is never what limits a run: one reader goroutine per connection
// that parses with the shared codec and answers acknowledgements, one
// writer goroutine that writes whatever has accumulated since its last
// write in a single syscall (so a burst of PUBLISH packets or acks becomes
// one write), and an in-flight window per publisher so QoS 1/2 traffic is
// pipelined instead of waiting for each acknowledgement.

// clientOpts says how to open one MQTT connection.
type clientOpts struct {
	addr          string
	version       packets.Version
	clientID      string
	cleanStart    bool   // Clean Session in 3.1.1
	sessionExpiry uint32 // 5.0 only
	keepAlive     uint16 // seconds
	receiveMax    uint16 // 5.0 only: how many QoS 1/2 messages the broker may have in flight to us
	timeout       time.Duration
	readBuf       int // bufio size of the reader
}

// maxOutbound bounds the bytes a publisher may have waiting for the writer
// at QoS 0, where no window holds it back; TCP then pushes back on it.
const maxOutbound = 64 << 10

// benchConn is one MQTT connection of the load generator.
type benchConn struct {
	nc             net.Conn
	v              packets.Version
	br             *bufio.Reader
	rd             *packets.Reader
	sessionPresent bool
	serverRecvMax  int // the broker's Receive Maximum (65535 when not given)

	mu     sync.Mutex
	wcond  sync.Cond // the writer waits here for bytes
	scond  sync.Cond // publishers wait here for room in out
	out    []byte    // encoded packets not yet handed to the writer
	closed bool      // no more writes will be accepted
	err    error     // first failure of this connection
	ids    []uint64  // bitset of packet identifiers in use (publishers)
	nextID uint16

	slots     chan struct{} // in-flight window of outbound QoS 1/2 PUBLISH
	suback    chan *packets.Suback
	dead      chan struct{} // closed when the reader stops
	writerEnd chan struct{}

	// onMessage is called by the reader goroutine for every PUBLISH
	// received, before it is acknowledged.
	onMessage func(p *packets.Publish)

	pingsOut int // PINGREQs not yet answered (connections without goroutines)

	completed atomic.Uint64 // outbound QoS 1/2 exchanges completed
	rejected  atomic.Uint64 // outbound PUBLISH refused with a reason code >= 0x80
}

// dialMQTT connects and completes the CONNECT/CONNACK exchange. It starts
// no goroutines: call start for that (the conns scenario never does).
func dialMQTT(ctx context.Context, o clientOpts) (*benchConn, error) {
	if o.timeout <= 0 {
		o.timeout = 10 * time.Second
	}
	d := net.Dialer{Timeout: o.timeout}
	nc, err := d.DialContext(ctx, "tcp", o.addr)
	if err != nil {
		return nil, err
	}
	c := &benchConn{nc: nc, v: o.version}
	c.wcond.L = &c.mu
	c.scond.L = &c.mu
	connect := &packets.Connect{ClientID: o.clientID, CleanStart: o.cleanStart, KeepAlive: o.keepAlive}
	if o.version == packets.V5 {
		connect.Properties.SessionExpiry = o.sessionExpiry
		connect.Properties.ReceiveMaximum = o.receiveMax
	}
	buf, err := packets.Encode(nil, connect, o.version)
	if err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(o.timeout))
	if _, err := nc.Write(buf); err != nil {
		nc.Close()
		return nil, err
	}
	if o.readBuf < 16 {
		o.readBuf = 16
	}
	c.br = bufio.NewReaderSize(nc, o.readBuf)
	c.rd = packets.NewReader(c.br, 0)
	c.rd.SetVersion(o.version)
	p, err := c.rd.Read()
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("reading CONNACK: %w", err)
	}
	ca, ok := p.(*packets.Connack)
	if !ok {
		nc.Close()
		return nil, fmt.Errorf("expected CONNACK, got %v", p.Type())
	}
	if ca.ReasonCode != 0 {
		nc.Close()
		return nil, fmt.Errorf("connection refused: %v", ca.ReasonCode)
	}
	nc.SetDeadline(time.Time{})
	c.sessionPresent = ca.SessionPresent
	c.serverRecvMax = 65535
	if o.version == packets.V5 && ca.Properties.ReceiveMaximum > 0 {
		c.serverRecvMax = int(ca.Properties.ReceiveMaximum)
	}
	return c, nil
}

// start launches the reader and writer goroutines. window is the in-flight
// window for outbound QoS 1/2 messages, capped by the broker's Receive
// Maximum; 0 for a connection that does not publish at QoS > 0.
func (c *benchConn) start(window int) {
	if window > c.serverRecvMax {
		window = c.serverRecvMax
	}
	if window > 0 {
		c.slots = make(chan struct{}, window)
		c.ids = make([]uint64, 65536/64)
		c.nextID = 1
	}
	c.suback = make(chan *packets.Suback, 1)
	c.dead = make(chan struct{})
	c.writerEnd = make(chan struct{})
	go c.writeLoop()
	go c.readLoop()
}

// fail records the first error and stops accepting writes.
func (c *benchConn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.closed = true
	c.wcond.Broadcast()
	c.scond.Broadcast()
	c.mu.Unlock()
}

// Err returns the first failure of the connection, nil if none.
func (c *benchConn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *benchConn) writeLoop() {
	defer close(c.writerEnd)
	var buf []byte
	for {
		c.mu.Lock()
		for len(c.out) == 0 && !c.closed {
			c.wcond.Wait()
		}
		if len(c.out) == 0 || c.err != nil {
			c.mu.Unlock()
			return
		}
		buf, c.out = c.out, buf[:0]
		c.scond.Broadcast()
		c.mu.Unlock()
		if _, err := c.nc.Write(buf); err != nil {
			c.fail(fmt.Errorf("write: %w", err))
			return
		}
	}
}

// enqueue appends p for the writer. Acknowledgements go through here
// from the reader goroutine and never wait for room.
func (c *benchConn) enqueue(p packets.Packet) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.closedErr()
	}
	var err error
	c.out, err = packets.Encode(c.out, p, c.v)
	c.wcond.Signal()
	return err
}

func (c *benchConn) closedErr() error {
	if c.err != nil {
		return c.err
	}
	return errors.New("connection closed")
}

// publish sends one PUBLISH. At QoS 1/2 it first takes a slot of the
// in-flight window (waiting for an acknowledgement to free one) and a
// packet identifier not in use [MQTT-2.2.1-3]; at QoS 0 it waits while
// more than maxOutbound bytes are still unwritten.
func (c *benchConn) publish(ctx context.Context, p *packets.Publish) error {
	if p.QoS > 0 {
		select {
		case c.slots <- struct{}{}:
		case <-c.dead:
			return c.closedErr()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for p.QoS == 0 && len(c.out) > maxOutbound && !c.closed {
		c.scond.Wait()
	}
	if c.closed {
		return c.closedErr()
	}
	if p.QoS > 0 {
		id := c.nextID
		for c.ids[id/64]&(1<<(id%64)) != 0 || id == 0 {
			id++
		}
		c.ids[id/64] |= 1 << (id % 64)
		c.nextID = id + 1
		p.PacketID = id
	}
	var err error
	c.out, err = packets.Encode(c.out, p, c.v)
	c.wcond.Signal()
	return err
}

// release ends the outbound exchange of packet identifier id.
func (c *benchConn) release(id uint16) {
	c.mu.Lock()
	inUse := c.ids != nil && c.ids[id/64]&(1<<(id%64)) != 0
	if inUse {
		c.ids[id/64] &^= 1 << (id % 64)
	}
	c.mu.Unlock()
	if inUse {
		c.completed.Add(1)
		<-c.slots
	}
}

// waitIdle waits until every outbound QoS 1/2 exchange has completed, by
// taking every slot of the window, then gives the slots back.
func (c *benchConn) waitIdle(ctx context.Context, timeout time.Duration) error {
	if c.slots == nil {
		return nil
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	n := 0
	defer func() {
		for ; n > 0; n-- {
			<-c.slots
		}
	}()
	for n < cap(c.slots) {
		select {
		case c.slots <- struct{}{}:
			n++
		case <-c.dead:
			return c.closedErr()
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return fmt.Errorf("%d QoS >= 1 messages still unacknowledged after %v", cap(c.slots)-n, timeout)
		}
	}
	return nil
}

// inflight is how many outbound QoS 1/2 exchanges are open.
func (c *benchConn) inflight() int {
	if c.slots == nil {
		return 0
	}
	return len(c.slots)
}

func (c *benchConn) readLoop() {
	defer close(c.dead)
	for {
		p, err := c.rd.Read()
		if err != nil {
			c.mu.Lock()
			closing := c.closed
			c.mu.Unlock()
			if !closing || !isClosedErr(err) {
				c.fail(fmt.Errorf("read: %w", err))
			}
			return
		}
		switch p := p.(type) {
		case *packets.Publish:
			if c.onMessage != nil {
				c.onMessage(p)
			}
			switch p.QoS {
			case 1:
				c.enqueue(&packets.Puback{PacketID: p.PacketID})
			case 2:
				c.enqueue(&packets.Pubrec{PacketID: p.PacketID})
			}
		case *packets.Pubrel:
			c.enqueue(&packets.Pubcomp{PacketID: p.PacketID})
		case *packets.Puback:
			if p.ReasonCode >= 0x80 {
				c.rejected.Add(1)
			}
			c.release(p.PacketID)
		case *packets.Pubrec:
			if p.ReasonCode >= 0x80 {
				// The exchange ends here [MQTT-4.3.3-4]: no PUBREL.
				c.rejected.Add(1)
				c.release(p.PacketID)
				continue
			}
			c.enqueue(&packets.Pubrel{PacketID: p.PacketID})
		case *packets.Pubcomp:
			c.release(p.PacketID)
		case *packets.Suback:
			select {
			case c.suback <- p:
			default:
			}
		case *packets.Pingresp:
		case *packets.Disconnect:
			c.fail(fmt.Errorf("broker sent DISCONNECT: %v", p.ReasonCode))
			return
		default:
			c.fail(fmt.Errorf("unexpected %v from broker", p.Type()))
			return
		}
	}
}

func isClosedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// subscribe subscribes to filter at qos and waits for the SUBACK.
func (c *benchConn) subscribe(ctx context.Context, filter string, qos byte, timeout time.Duration) error {
	err := c.enqueue(&packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: filter, QoS: qos}}})
	if err != nil {
		return err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case sa := <-c.suback:
		if len(sa.ReasonCodes) != 1 || sa.ReasonCodes[0] >= 0x80 {
			return fmt.Errorf("subscription to %q refused: %v", filter, sa.ReasonCodes)
		}
		return nil
	case <-c.dead:
		return c.closedErr()
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("no SUBACK for %q within %v", filter, timeout)
	}
}

// close sends DISCONNECT (normal disconnection: a 5.0 session keeps its
// expiry), lets the writer flush, and closes the socket.
func (c *benchConn) close() {
	if c.writerEnd == nil {
		c.nc.Close()
		return
	}
	c.enqueue(&packets.Disconnect{})
	c.mu.Lock()
	c.closed = true
	c.wcond.Broadcast()
	c.scond.Broadcast()
	c.mu.Unlock()
	select {
	case <-c.writerEnd:
	case <-time.After(5 * time.Second):
	}
	if tc, ok := c.nc.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	// Give the broker a moment to act on the DISCONNECT and close its side;
	// the reader sees EOF then.
	select {
	case <-c.dead:
	case <-time.After(5 * time.Second):
	}
	c.nc.Close()
	<-c.dead
}

// ping writes a PINGREQ directly on a connection without goroutines (the
// conns scenario); the PINGRESP is read later by checkAlive. Not safe for
// concurrent use on one connection.
func (c *benchConn) ping(timeout time.Duration) error {
	c.nc.SetWriteDeadline(time.Now().Add(timeout))
	_, err := c.nc.Write([]byte{byte(packets.TypePingreq) << 4, 0})
	if err == nil {
		c.pingsOut++
	}
	return err
}

// checkAlive sends PINGREQ on a connection without goroutines and reads
// until every ping sent so far has been answered.
func (c *benchConn) checkAlive(timeout time.Duration) error {
	if err := c.ping(timeout); err != nil {
		return err
	}
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	defer c.nc.SetReadDeadline(time.Time{})
	for c.pingsOut > 0 {
		p, err := c.rd.Read()
		if err != nil {
			return err
		}
		if _, ok := p.(*packets.Pingresp); ok {
			c.pingsOut--
		}
	}
	return nil
}
