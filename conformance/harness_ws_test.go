package conformance

import (
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/gorilla/websocket"
)

// errWSClosed reports that the WebSocket peer closed the connection (a
// close frame or the underlying stream ending).
var errWSClosed = errors.New("websocket closed")

// wsConn presents a WebSocket connection as a byte stream: each Write is one
// binary message, Read concatenates the payloads of incoming messages, so a
// packet may span messages and a message may hold several packets
// [MQTT-6.0.0-2].
type wsConn struct {
	ws  *websocket.Conn
	cur io.Reader
}

func (w *wsConn) Read(p []byte) (int, error) {
	for {
		if w.cur == nil {
			typ, r, err := w.ws.NextReader()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) || isClosedErr(err) {
					return 0, errWSClosed
				}
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, errors.New("server sent a non-binary WebSocket message [MQTT-6.0.0-1]")
			}
			w.cur = r
		}
		n, err := w.cur.Read(p)
		if errors.Is(err, io.EOF) {
			w.cur = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (w *wsConn) Write(p []byte) (int, error) {
	_ = w.ws.SetWriteDeadline(time.Now().Add(wait))
	if err := w.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *wsConn) Close() error { return w.ws.Close() }

// dialWSRaw opens a WebSocket to the target offering the given subprotocols
// and returns the connection and the handshake response. It fails the test
// if the handshake fails.
func dialWSRaw(t *testing.T, tg *Target, subprotocols ...string) (*websocket.Conn, *http.Response) {
	t.Helper()
	requireWS(t, tg)
	d := websocket.Dialer{Subprotocols: subprotocols, HandshakeTimeout: wait}
	ws, resp, err := d.Dial(tg.WSAddr, nil)
	if err != nil {
		t.Fatalf("websocket dial %s: %v", tg.WSAddr, err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	return ws, resp
}

// dialWS opens an MQTT-over-WebSocket connection (subprotocol "mqtt") and
// wraps it in a Client.
func dialWS(t *testing.T, tg *Target, v packets.Version) *Client {
	t.Helper()
	ws, _ := dialWSRaw(t, tg, "mqtt")
	return newClient(t, &wsConn{ws: ws}, v)
}

// sendWSMessage writes one WebSocket message of the given type (e.g.
// websocket.TextMessage) on a client made by dialWS.
func (c *Client) sendWSMessage(msgType int, b []byte) {
	c.t.Helper()
	w, ok := c.conn.(*wsConn)
	if !ok {
		c.t.Fatalf("sendWSMessage on a non-WebSocket client")
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = w.ws.SetWriteDeadline(time.Now().Add(wait))
	if err := w.ws.WriteMessage(msgType, b); err != nil {
		c.t.Logf("websocket write: %v", err)
	}
}
