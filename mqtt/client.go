package mqtt

import (
	"bufio"
	"errors"
	"log/slog"
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
// parsing and the protocol state of the connection; its writer goroutine
// (writeLoop) drains the outbound buffer into the socket. Any goroutine may
// queue a packet: it is encoded under outMu straight into the outbound
// buffer, and the writer takes the whole buffer at once, so a burst of
// packets leaves in one write (one syscall) and the buffer is flushed as
// soon as it is non-empty.
type client struct {
	srv  *Server
	conn net.Conn
	log  *slog.Logger

	wake  chan struct{} // cap 1: the outbound buffer is non-empty or closing was set
	wdone chan struct{} // closed when writeLoop returns
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

	outMu      sync.Mutex
	out        []byte // encoded packets waiting for the writer
	spare      []byte
	closing    bool // no packet may be queued any more [MQTT-3.14.4-1]
	connacked  bool // a successful CONNACK was queued: DISCONNECT may be sent [MQTT-3.14.0-1]
	outAliases map[string]uint16
	aliasNext  uint16
	needPump   bool // a QoS > 0 delivery waited for buffer room
	scratch    packets.Publish

	takenOver    atomic.Bool // another connection took the session over
	takeoverEnds atomic.Bool // ... and started a clean session (the old one ended)
	closeOnce    sync.Once
}

func newClient(s *Server, conn net.Conn) *client {
	return &client{
		srv:         s,
		conn:        conn,
		log:         s.log.With("remote", conn.RemoteAddr().String()),
		wake:        make(chan struct{}, 1),
		wdone:       make(chan struct{}),
		done:        make(chan struct{}),
		problemInfo: true,
	}
}

func (c *client) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
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

func (c *client) sendLocked(p packets.Packet) error {
	if c.closing {
		return errClosing
	}
	var err error
	c.out, err = packets.Encode(c.out, p, c.version)
	if err != nil {
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
	c.outMu.Unlock()
	c.signal()
}

const reasonShutdown = packets.ServerShuttingDown

// writeLoop drains the outbound buffer into the socket until the
// connection closes. A write blocked longer than WriteTimeout marks the
// client as a slow consumer and closes the connection.
func (c *client) writeLoop() {
	defer close(c.wdone)
	defer c.closeConn()
	for range c.wake {
		for {
			c.outMu.Lock()
			buf := c.out
			c.out, c.spare = c.spare[:0], nil
			c.outMu.Unlock()
			if len(buf) > 0 {
				_ = c.conn.SetWriteDeadline(time.Now().Add(c.srv.opts.WriteTimeout))
				n, err := c.conn.Write(buf)
				c.srv.stats.BytesSent.Add(uint64(n))
				if err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						c.srv.stats.SlowConsumers.Add(1)
						c.log.Warn("slow consumer disconnected: write blocked", "timeout", c.srv.opts.WriteTimeout)
					}
					c.outMu.Lock()
					c.closing = true
					c.out = nil
					c.outMu.Unlock()
					return
				}
			}
			c.outMu.Lock()
			if cap(buf) <= 256<<10 {
				c.spare = buf[:0]
			}
			empty, closing, pump := len(c.out) == 0, c.closing, c.needPump
			c.needPump = false
			c.outMu.Unlock()
			if pump && c.sess != nil {
				// Deliveries held back while the buffer was full.
				c.sess.Pump()
				continue
			}
			if empty {
				if closing {
					return
				}
				break
			}
		}
	}
}

// countingReader counts bytes received.
type countingReader struct {
	c *client
}

func (r countingReader) Read(p []byte) (int, error) {
	n, err := r.c.conn.Read(p)
	r.c.srv.stats.BytesReceived.Add(uint64(n))
	return n, err
}

// readLoop reads and handles packets until the connection ends, then tears
// the connection down.
func (c *client) readLoop() {
	defer c.teardown()
	defer func() {
		// A bug handling one client's packet must not take the broker down:
		// log it with the stack and close this connection.
		if r := recover(); r != nil {
			c.log.Error("panic handling connection", "panic", r, "stack", string(debug.Stack()))
			c.kick(packets.ImplementationSpecificError)
		}
	}()
	r := packets.NewReader(bufio.NewReaderSize(countingReader{c}, 4096), int(c.srv.opts.MaxPacketSize))
	// The first packet must be CONNECT, within ConnectTimeout [MQTT-3.1.0-1].
	_ = c.conn.SetReadDeadline(time.Now().Add(c.srv.opts.ConnectTimeout))
	p, err := r.Read()
	if err != nil {
		c.connectReadError(r, err)
		return
	}
	cp, ok := p.(*packets.Connect)
	if !ok {
		c.srv.stats.ProtocolErrors.Add(1)
		c.log.Debug("first packet is not CONNECT", "type", p.Type()) // [MQTT-3.1.0-1]
		return
	}
	if !c.handleConnect(cp) {
		return
	}
	r.SetVersion(c.version)
	for {
		if c.keepAlive > 0 {
			// [MQTT-3.1.2-22] 1.5 times the keep alive.
			_ = c.conn.SetReadDeadline(time.Now().Add(c.keepAlive * 3 / 2))
		} else {
			_ = c.conn.SetReadDeadline(time.Time{})
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
			c.log.Debug("keep alive timeout")
			c.kick(packets.KeepAliveTimeout)
		}
	default:
		var pe *packets.Error
		if errors.As(err, &pe) {
			c.handleError(pe)
			return
		}
		c.log.Debug("connection closed", "err", err)
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
	c.log.Debug("closing connection", "reason", rc, "err", err)
	c.kick(rc)
}

// teardown runs when the reader ends: it stops the writer after it flushed
// what is queued, closes the socket and hands the session back to the
// server (will, expiry).
func (c *client) teardown() {
	c.outMu.Lock()
	c.closing = true
	c.outMu.Unlock()
	c.signal()
	<-c.wdone
	c.closeConn()
	c.srv.clientGone(c)
	close(c.done)
}
