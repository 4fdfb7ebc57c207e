package mqtt

import (
	"errors"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/session"
	"github.com/beaconmq/beacon/storage"
)

// client is one network connection. Its reader goroutine (readLoop) owns
// parsing and the protocol state of the connection; a writer goroutine
// (writeLoop) drains the outbound buffer into the socket. Any goroutine may
// queue a packet: it is encoded under outMu straight into the outbound
// buffer, and the writer takes the whole buffer at once, so a burst of
// packets leaves in one write (one syscall) and the buffer is flushed as
// soon as it is non-empty. The writer runs only while there is something
// to write (signal starts it), so an idle connection costs one goroutine,
// not two.
type client struct {
	srv  *Server
	conn net.Conn
	log  clientLog // remote address and client id added per record (clientlog.go)

	wdone chan struct{} // closed when the writer closed the socket for good
	done  chan struct{} // closed when the connection is completely torn down

	// Set by the reader while handling CONNECT, before the client is
	// attached to a session; read-only afterwards.
	id            string
	version       packets.Version
	sess          *session.Session
	gen           uint64
	keepAlive     time.Duration // 0 = no keep-alive timeout
	will          *storage.Message
	willDelay     uint32
	connectExpiry uint32 // Session Expiry Interval as sent in CONNECT (5.0)
	problemInfo   bool   // 5.0 Request Problem Information (default 1)
	maxOut        uint32
	aliasMax      uint16 // outbound aliases we may use: min(client's Topic Alias Maximum, OutboundTopicAliases)
	connected     bool   // CONNACK 0x00 sent (reader only)

	// Reader-only state.
	inAliases map[uint16]string // inbound topic aliases (5.0)
	noWill    bool              // normal DISCONNECT received: discard the will
	lim       clientLimits      // connection limits, publish rate, certificate identity (limits.go)
	auth      connAuth          // identity, enhanced authentication state (auth.go)

	in   connReader // buffered input (connreader.go); reader only
	pipe pipeline   // accepted PUBLISH packets waiting for the log (pipeline.go)

	outMu      sync.Mutex
	out        outQueue // encoded packets waiting for the writer
	spare      [][]byte // the chunk list the writer handed back, for reuse
	wbufs      net.Buffers
	closing    bool // no packet may be queued any more [MQTT-3.14.4-1]
	connacked  bool // a successful CONNACK was queued: DISCONNECT may be sent [MQTT-3.14.0-1]
	outAliases map[string]uint16
	aliasNext  uint16
	needPump   bool // a QoS > 0 delivery waited for buffer room
	outBusy    bool // out passed half of MaxOutboundBytes: the session is told (back pressure)
	writing    bool // a writer goroutine runs (or closed the socket for good)
	scratch    packets.Publish

	takenOver    atomic.Bool // another connection took the session over
	takeoverEnds atomic.Bool // ... and started a clean session (the old one ended)
	closeOnce    sync.Once
}

func newClient(s *Server, conn net.Conn) *client {
	c := &client{
		srv:         s,
		conn:        conn,
		wdone:       make(chan struct{}),
		done:        make(chan struct{}),
		problemInfo: true,
	}
	c.log.c = c
	return c
}

// signal makes sure a writer runs: the outbound buffer is non-empty or
// closing was set. outMu must be held.
func (c *client) signal() {
	if c.writing {
		return
	}
	c.writing = true
	c.srv.wg.Add(1) // the reader, tracked too, is alive: never Add from zero
	go func() {
		defer c.srv.wg.Done()
		c.writeLoop()
	}()
}

func (c *client) closeConn() {
	c.closeOnce.Do(func() { _ = c.conn.Close() })
}

// errClosing is returned when a packet is queued after the connection
// started closing.
var errClosing = errors.New("mqtt: connection closing")

// send encodes p into the outbound buffer.
func (c *client) send(p packets.Packet) error {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	return c.sendLocked(p)
}

// sendAck encodes a PUBACK, PUBREC, PUBREL or PUBCOMP (t) with packet
// identifier id and reason code rc into the outbound buffer, without a
// packet value (packets.AppendAck).
func (c *client) sendAck(t packets.Type, id uint16, rc packets.ReasonCode) error {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	if c.closing {
		return errClosing
	}
	if err := c.out.ack(t, id, rc, c.version); err != nil {
		return err
	}
	c.srv.stats.PacketsSent.Add(1)
	c.signal()
	return nil
}

func (c *client) sendLocked(p packets.Packet) error {
	if c.closing {
		return errClosing
	}
	if err := c.out.encode(p, packets.Size(p, c.version), c.version); err != nil {
		return err
	}
	c.srv.stats.PacketsSent.Add(1)
	c.signal()
	return nil
}

// kick closes the connection from another goroutine (takeover, shutdown):
// a 5.0 client that received a successful CONNACK first gets DISCONNECT
// with reason rc [MQTT-3.1.4-3]; the writer flushes and closes the socket
// [MQTT-3.14.4-2], which ends the reader.
func (c *client) kick(rc packets.ReasonCode) {
	c.outMu.Lock()
	if !c.closing {
		if c.connacked && c.version == packets.V5 {
			_ = c.sendLocked(&packets.Disconnect{ReasonCode: rc})
		}
		c.closing = true
	}
	c.signal()
	c.outMu.Unlock()
}

const reasonShutdown = packets.ServerShuttingDown

// writeLoop drains the outbound buffer into the socket and returns when
// it is empty; once closing is set it closes the socket (after flushing)
// and closes wdone. A write blocked longer than WriteTimeout marks the
// client as a slow consumer and closes the connection.
func (c *client) writeLoop() {
	for {
		c.outMu.Lock()
		if c.out.Len() == 0 {
			if c.closing {
				c.outMu.Unlock() // writing stays set: no writer after this one
				c.closeConn()
				close(c.wdone)
				return
			}
			c.writing = false
			// An idle connection keeps no chunk (they went back to the
			// pool after each write) and no chunk list: at 19,000 idle
			// connections every word counts, and a burst allocates two
			// small lists again.
			c.spare, c.wbufs = nil, nil
			c.outMu.Unlock()
			return
		}
		cs := c.out.take(c.spare)
		c.spare = nil
		c.outMu.Unlock()

		_ = c.conn.SetWriteDeadline(time.Now().Add(c.srv.opts.WriteTimeout))
		n, err := writeChunks(c.conn, cs, &c.wbufs)
		c.srv.stats.BytesSent.Add(uint64(n))
		recycle(cs)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.srv.stats.SlowConsumers.Add(1)
				c.log.Warn("slow consumer disconnected: write blocked", "timeout", c.srv.opts.WriteTimeout)
			}
			c.outMu.Lock()
			c.closing = true
			c.out.release()
			c.outMu.Unlock()
			c.closeConn()
			close(c.wdone)
			return
		}
		c.outMu.Lock()
		c.spare = cs[:0]
		pump := c.needPump
		c.needPump = false
		drained := c.outBusy && c.out.Len() < c.srv.opts.MaxOutboundBytes/4
		if drained {
			c.outBusy = false
		}
		c.outMu.Unlock()
		if drained && c.sess != nil {
			c.sess.WriterDrained()
		}
		if pump && c.sess != nil {
			// Deliveries held back while the buffer was full.
			c.sess.Pump()
		}
	}
}

// readLoop reads and handles packets until the connection ends, then tears
// the connection down and releases its place in the server's limits.
//
// It runs in two goroutines one after the other: the first reads and
// handles CONNECT (r nil), then starts the second for every packet after
// it and ends. Handling CONNECT (authentication, the session, logging)
// grows a goroutine's stack to 4 KiB or more, and a stack shrinks only
// when less than a quarter of it is used, so a connection read by one
// goroutine throughout kept that stack while idle: 4 KiB of the 8 KiB an
// idle connection cost. The second goroutine starts with the runtime's
// usual small stack and, blocked in a read, needs no more
// (docs/performance.md).
func (c *client) readLoop(r *packets.Reader) {
	moved := false
	defer func() {
		if !moved {
			c.teardown()
			c.srv.release(c)
		}
	}()
	defer func() {
		// A bug handling one client's packet must not take the broker down:
		// log it with the stack and close this connection.
		if v := recover(); v != nil {
			c.log.Error("panic handling connection", "panic", v, "stack", string(debug.Stack()))
			c.kick(packets.ImplementationSpecificError)
		}
	}()
	defer func() {
		if !moved {
			c.in.release()
		}
	}()
	if r == nil {
		next, ok := c.readConnect()
		if !ok {
			return
		}
		moved = true
		c.srv.goTracked(func() { c.readLoop(next) })
		return
	}
	// The read deadline is moved at most every slack, not for each packet
	// (a timer update per packet was 5 % of the CPU of a QoS 1 fan-in): set
	// at t to t + 1.5 x keep alive + slack, it is never earlier than
	// 1.5 x keep alive after any packet read before t + slack, and at most
	// slack later.
	slack := min(c.keepAlive/4, time.Second)
	var deadlineSet time.Time
	for {
		if c.keepAlive > 0 {
			if now := time.Now(); now.Sub(deadlineSet) >= slack {
				// [MQTT-3.1.2-22] 1.5 times the keep alive.
				_ = c.conn.SetReadDeadline(now.Add(c.keepAlive*3/2 + slack))
				deadlineSet = now
			}
		}
		p, err := r.Read()
		if err != nil {
			c.readError(err)
			return
		}
		c.srv.stats.PacketsReceived.Add(1)
		if err := c.handle(p); err != nil {
			c.handleError(err)
			return
		}
	}
}

// readConnect reads and handles the CONNECT packet and, if the connection
// goes on, returns the reader for the packets after it.
func (c *client) readConnect() (*packets.Reader, bool) {
	c.in.c = c
	r := packets.NewReader(&c.in, int(c.srv.opts.MaxPacketSize))
	// The first packet must be CONNECT, within ConnectTimeout [MQTT-3.1.0-1].
	_ = c.conn.SetReadDeadline(time.Now().Add(c.srv.opts.ConnectTimeout))
	p, err := r.Read()
	if err != nil {
		c.connectReadError(r, err)
		return nil, false
	}
	cp, ok := p.(*packets.Connect)
	if !ok {
		c.srv.stats.ProtocolErrors.Add(1)
		c.log.Debug("first packet is not CONNECT", "type", p.Type()) // [MQTT-3.1.0-1]
		return nil, false
	}
	if !c.handleConnect(cp) {
		return nil, false
	}
	r.SetVersion(c.version)
	r.ReusePackets() // handle keeps no PUBLISH or ack value past its return
	if c.keepAlive == 0 {
		_ = c.conn.SetReadDeadline(time.Time{})
	}
	return r, true
}

// errClientDisconnect ends the read loop after a DISCONNECT from the client.
var errClientDisconnect = errors.New("client disconnected")

// readError handles a failed Read after CONNECT: decode errors close the
// connection, with DISCONNECT carrying the reason code in 5.0.
func (c *client) readError(err error) {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		if !c.isClosing() {
			c.srv.stats.KeepAliveTimeouts.Add(1)
			c.log.Info("client disconnected", "reason", "keep alive timeout")
			c.kick(packets.KeepAliveTimeout)
		}
	default:
		var pe *packets.Error
		if errors.As(err, &pe) {
			c.handleError(pe)
			return
		}
		reason := "connection lost"
		switch {
		case c.takenOver.Load():
			reason = "session taken over"
		case c.isClosing():
			reason = "closed by the server"
		}
		c.log.Info("client disconnected", "reason", reason, "err", err)
	}
}

func (c *client) isClosing() bool {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	return c.closing
}

// handleError closes the connection because of err: a reason code (or a
// *packets.Error carrying one) is sent to 5.0 clients in DISCONNECT.
func (c *client) handleError(err error) {
	if errors.Is(err, errClientDisconnect) {
		c.log.Info("client disconnected", "reason", "DISCONNECT from client")
		return
	}
	var rc packets.ReasonCode
	var pe *packets.Error
	switch {
	case errors.As(err, &pe):
		rc = pe.Code
	case errors.As(err, &rc):
	default:
		rc = packets.UnspecifiedError
	}
	if rc == packets.MalformedPacket || rc == packets.ProtocolError {
		c.srv.stats.ProtocolErrors.Add(1)
	}
	c.srv.countLimitDisconnect(rc) // limits.go
	c.log.Info("client disconnected", "reason", rc.String(), "err", err)
	c.kick(rc)
}

// teardown runs when the reader ends: it stops the writer after it flushed
// what is queued, closes the socket and hands the session back to the
// server (will, expiry).
func (c *client) teardown() {
	c.pipeWait() // publish what was accepted before the will (pipeline.go)
	c.outMu.Lock()
	c.closing = true
	c.signal()
	c.outMu.Unlock()
	<-c.wdone
	c.closeConn()
	c.srv.clientGone(c)
	close(c.done)
}
