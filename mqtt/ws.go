package mqtt

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// MQTT over WebSocket (MQTT 3.1.1 §6, MQTT 5.0 §6): the WebSocket listener
// turns every upgraded connection into a net.Conn carrying the MQTT byte
// stream, so the broker's read and write loops serve it exactly like TCP.

// wsPath is the one HTTP path the WebSocket listener upgrades.
const wsPath = "/mqtt"

// wsSubprotocols are the subprotocols offered, in order of preference:
// "mqtt" for 3.1.1 and 5.0, "mqttv3.1" for MQTT 3.1 clients.
var wsSubprotocols = []string{"mqtt", "mqttv3.1"}

// wsCloseTimeout bounds the write of a close frame so Close never blocks on
// a peer that does not read.
const wsCloseTimeout = time.Second

// wsListener is a net.Listener whose connections arrive over WebSocket.
type wsListener struct {
	ln     net.Listener
	srv    *http.Server
	logger *slog.Logger
	conns  chan net.Conn
	done   chan struct{}
	once   sync.Once
	served chan struct{} // closed when http.Server.Serve returns
}

// listenWS listens on addr for HTTP and upgrades requests for /mqtt to
// WebSocket connections, which Accept returns as net.Conn. Other paths get
// 404. Closing the listener shuts the HTTP server down and unblocks Accept;
// connections already accepted stay open until their own Close.
//
// Subprotocol: the server selects "mqtt" (or "mqttv3.1") when the client
// offers it [MQTT-6.0.0-4]. A client that offers neither is still accepted,
// without a subprotocol (the lenient behaviour the team took Mosquitto as
// the model for): some embedded WebSocket clients send no
// Sec-WebSocket-Protocol header at all, and the MQTT CONNECT that follows
// says which protocol it speaks anyway.
//
// Origin: any Origin is accepted. MQTT authenticates in CONNECT, not with
// cookies, so a cross-site page gains nothing a direct client would not
// have, and dashboards are often served from another origin.
func listenWS(addr string, logger *slog.Logger) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return serveWS(ln, wsHandshakeTimeout, logger), nil
}

// wsHandshakeTimeout bounds the HTTP upgrade request of a WebSocket
// connection.
const wsHandshakeTimeout = 10 * time.Second

// listenWSS is listenWS over TLS (WSSAddr): the HTTP server performs each
// TLS handshake in its per-connection goroutine, with the configuration
// cfg hands out (tls.go); timeout bounds the handshake and, separately,
// the upgrade request.
func listenWSS(addr string, cfg *tls.Config, timeout time.Duration, logger *slog.Logger) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return serveWS(tls.NewListener(ln, cfg), timeout, logger), nil
}

// serveWS serves WebSocket upgrades on ln, each request bounded by
// timeout; see listenWS.
func serveWS(ln net.Listener, timeout time.Duration, logger *slog.Logger) *wsListener {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &wsListener{
		ln:     ln,
		logger: logger,
		conns:  make(chan net.Conn),
		done:   make(chan struct{}),
		served: make(chan struct{}),
	}
	up := &websocket.Upgrader{
		HandshakeTimeout: timeout,
		Subprotocols:     wsSubprotocols,
		CheckOrigin:      func(*http.Request) bool { return true },
	}
	mux := http.NewServeMux()
	mux.HandleFunc(wsPath, func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil) // answers the client itself on failure
		if err != nil {
			logger.Debug("websocket upgrade failed", "remote", r.RemoteAddr, "err", err)
			return
		}
		c := &wsConn{ws: ws}
		select {
		case l.conns <- c:
		case <-l.done:
			c.Close()
		}
	})
	l.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: timeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(l.served)
		if err := l.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("websocket listener stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return l
}

// Accept waits for the next upgraded connection.
func (l *wsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops the HTTP server (new upgrades are refused, handshakes in
// progress are cut) and unblocks Accept. It does not close connections
// already returned by Accept.
func (l *wsListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		// Close, not Shutdown: upgraded connections are hijacked and not
		// tracked by the server, and plain HTTP requests have nothing to
		// finish.
		err = l.srv.Close()
		<-l.served
	})
	return err
}

// Addr is the bound TCP address.
func (l *wsListener) Addr() net.Addr { return l.ln.Addr() }

// wsConn adapts a WebSocket connection to net.Conn. Read yields the payload
// of binary frames as one byte stream, so an MQTT packet may span frames
// and a frame may hold several packets [MQTT-6.0.0-2] (the MQTT reader
// needs no knowledge of frame boundaries [MQTT-6.0.0-3]). Each Write is sent
// as one binary frame [MQTT-6.0.0-1]; the broker's writer batches packets.
//
// Read is for one goroutine and Write for one other goroutine at a time;
// Close and the deadline setters may be called from anywhere.
//
// Deadlines map to the underlying connection. Unlike TCP, a read or write
// that times out leaves the WebSocket unusable (the framing state is lost);
// the broker only uses read deadlines for keep alive, after which it closes
// the connection anyway.
type wsConn struct {
	ws *websocket.Conn

	r       io.Reader // current frame's reader; nil between frames
	readErr error     // sticky: gorilla panics on reads after a failure

	wmu sync.Mutex // serialises Write

	closeOnce sync.Once
	closeErr  error
}

var _ net.Conn = (*wsConn)(nil)

// errWSTextFrame is returned by Read when the peer sent a text frame.
var errWSTextFrame = errors.New("websocket: text frame received; MQTT allows binary frames only")

// Read reads the next bytes of the MQTT stream, crossing frame boundaries
// as needed.
func (c *wsConn) Read(p []byte) (int, error) {
	if c.readErr != nil {
		return 0, c.readErr
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if c.r == nil {
			mt, r, err := c.ws.NextReader()
			if err != nil {
				return 0, c.failRead(err)
			}
			if mt != websocket.BinaryMessage {
				// Any data frame other than binary closes the network
				// connection [MQTT-6.0.0-1].
				c.closeWith(websocket.CloseUnsupportedData, "binary frames only")
				c.readErr = errWSTextFrame
				return 0, c.readErr
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil // frame done; an empty frame loops to the next one
			if n > 0 {
				return n, nil
			}
			continue
		}
		if err != nil {
			c.r = nil
			return n, c.failRead(err)
		}
		if n > 0 {
			return n, nil
		}
	}
}

// failRead records a read error. A close frame from the peer reads as
// io.EOF, like a TCP connection closed by the peer.
func (c *wsConn) failRead(err error) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	c.readErr = err
	return err
}

// Write sends p as one binary frame.
func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		if errors.Is(err, websocket.ErrCloseSent) {
			err = net.ErrClosed
		}
		return 0, err
	}
	return len(p), nil
}

// Close sends a normal-closure close frame (best effort, bounded by
// wsCloseTimeout) and closes the connection. It is idempotent.
func (c *wsConn) Close() error {
	c.closeWith(websocket.CloseNormalClosure, "")
	return c.closeErr
}

func (c *wsConn) closeWith(code int, text string) {
	c.closeOnce.Do(func() {
		_ = c.ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(code, text), time.Now().Add(wsCloseTimeout))
		c.closeErr = c.ws.Close()
	})
}

// LocalAddr is the server side of the TCP connection.
func (c *wsConn) LocalAddr() net.Addr { return c.ws.LocalAddr() }

// RemoteAddr is the client side of the TCP connection.
func (c *wsConn) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }

// SetDeadline sets both the read and the write deadline.
func (c *wsConn) SetDeadline(t time.Time) error {
	if err := c.ws.SetReadDeadline(t); err != nil {
		return err
	}
	return c.ws.SetWriteDeadline(t)
}

// SetReadDeadline bounds Read (keep alive); see the type comment.
func (c *wsConn) SetReadDeadline(t time.Time) error { return c.ws.SetReadDeadline(t) }

// SetWriteDeadline bounds Write.
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }

// subprotocol is the negotiated WebSocket subprotocol ("" if none).
func (c *wsConn) subprotocol() string { return c.ws.Subprotocol() }
