package mqtt

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// wsTestLogger routes listener logs to t.Log.
func wsTestLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(wsLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type wsLogWriter struct{ t *testing.T }

func (w wsLogWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func startWS(t *testing.T) net.Listener {
	t.Helper()
	ln, err := listenWS("127.0.0.1:0", wsTestLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// dialWS connects a gorilla client offering protos and returns it with the
// server side of the connection.
func dialWS(t *testing.T, ln net.Listener, protos ...string) (*websocket.Conn, *wsConn) {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	accepted := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		accepted <- res{c, err}
	}()
	d := websocket.Dialer{Subprotocols: protos, HandshakeTimeout: 5 * time.Second}
	cl, resp, err := d.Dial("ws://"+ln.Addr().String()+"/mqtt", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	resp.Body.Close()
	t.Cleanup(func() { cl.Close() })
	select {
	case r := <-accepted:
		if r.err != nil {
			t.Fatalf("accept: %v", r.err)
		}
		t.Cleanup(func() { r.c.Close() })
		return cl, r.c.(*wsConn)
	case <-time.After(5 * time.Second):
		t.Fatal("accept did not return")
	}
	return nil, nil
}

// wsWithin runs fn in a goroutine and fails the test if it has not
// returned within d (a bound against hangs, not a timing assertion).
func wsWithin(t *testing.T, d time.Duration, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatal("operation did not return in time")
	}
}

func TestWSFramesSplitAndMerged(t *testing.T) {
	ln := startWS(t)
	cl, sc := dialWS(t, ln, "mqtt")
	// One CONNECT-sized stream split over frames, an empty frame between,
	// then two "packets" merged in one frame.
	frames := [][]byte{[]byte("abc"), []byte("defgh"), {}, []byte("ij"), []byte("KLMNOPQRSTUVWXYZ")}
	for _, f := range frames {
		if err := cl.WriteMessage(websocket.BinaryMessage, f); err != nil {
			t.Fatal(err)
		}
	}
	want := "abcdefghijKLMNOPQRSTUVWXYZ"
	got := make([]byte, 0, len(want))
	buf := make([]byte, 4) // smaller than some frames: frames are read in parts
	wsWithin(t, 5*time.Second, func() {
		for len(got) < len(want) {
			n, err := sc.Read(buf)
			if err != nil {
				t.Errorf("read: %v", err)
				return
			}
			if n == 0 {
				t.Error("Read returned 0 bytes without error")
				return
			}
			got = append(got, buf[:n]...)
		}
	})
	if string(got) != want {
		t.Fatalf("stream = %q, want %q", got, want)
	}
}

func TestWSWriteIsOneBinaryFrame(t *testing.T) {
	ln := startWS(t)
	cl, sc := dialWS(t, ln, "mqtt")
	for _, p := range []string{"\x20\x02\x00\x00", "\x30\x03\x00\x01a\x30\x03\x00\x01b"} {
		if n, err := sc.Write([]byte(p)); err != nil || n != len(p) {
			t.Fatalf("Write = %d, %v", n, err)
		}
		cl.SetReadDeadline(time.Now().Add(5 * time.Second))
		mt, data, err := cl.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if mt != websocket.BinaryMessage || string(data) != p {
			t.Fatalf("frame type %d data %q, want binary %q", mt, data, p)
		}
	}
}

func TestWSTextFrameClosesConnection(t *testing.T) {
	ln := startWS(t)
	cl, sc := dialWS(t, ln, "mqtt")
	if err := cl.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	wsWithin(t, 5*time.Second, func() {
		_, err := sc.Read(make([]byte, 10))
		if !errors.Is(err, errWSTextFrame) {
			t.Errorf("Read after text frame: %v, want errWSTextFrame", err)
		}
		// Sticky: later reads fail too, without touching the socket.
		if _, err := sc.Read(make([]byte, 10)); err == nil {
			t.Error("second Read succeeded")
		}
	})
	cl.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err := cl.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseUnsupportedData {
		t.Fatalf("client got %v, want close frame 1003", err)
	}
	if _, err := sc.Write([]byte("x")); err == nil {
		t.Error("Write after close succeeded")
	}
}

func TestWSWrongPath404(t *testing.T) {
	ln := startWS(t)
	for _, path := range []string{"/", "/mqtt/", "/mqttx", "/other"} {
		resp, err := http.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, resp.StatusCode)
		}
	}
	// A websocket dial on a wrong path fails too.
	_, resp, err := websocket.DefaultDialer.Dial("ws://"+ln.Addr().String()+"/ws", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("dial /ws: err %v resp %v, want 404", err, resp)
	}
	// /mqtt without an upgrade is a bad request, not a crash.
	resp, err = http.Get("http://" + ln.Addr().String() + "/mqtt")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("plain GET /mqtt = %d, want 400", resp.StatusCode)
	}
}

func TestWSSubprotocolNegotiation(t *testing.T) {
	cases := []struct {
		offer []string
		want  string
	}{
		{[]string{"mqtt"}, "mqtt"},
		{[]string{"mqttv3.1"}, "mqttv3.1"},
		{[]string{"foo", "mqttv3.1", "mqtt"}, "mqtt"}, // server preference
		{nil, ""},             // none offered: accepted without one
		{[]string{"foo"}, ""}, // none of ours: accepted without one
	}
	ln := startWS(t)
	for _, c := range cases {
		cl, sc := dialWS(t, ln, c.offer...)
		if got := cl.Subprotocol(); got != c.want {
			t.Errorf("offer %v: client sees %q, want %q", c.offer, got, c.want)
		}
		if got := sc.subprotocol(); got != c.want {
			t.Errorf("offer %v: server sees %q, want %q", c.offer, got, c.want)
		}
		// The connection works either way.
		if err := cl.WriteMessage(websocket.BinaryMessage, []byte{0xC0, 0x00}); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2)
		wsWithin(t, 5*time.Second, func() {
			if _, err := io.ReadFull(sc, buf); err != nil {
				t.Errorf("read: %v", err)
			}
		})
	}
}

func TestWSReadDeadline(t *testing.T) {
	ln := startWS(t)
	_, sc := dialWS(t, ln, "mqtt")
	// A deadline in the near future: Read returns a timeout error.
	if err := sc.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	wsWithin(t, 5*time.Second, func() {
		_, err := sc.Read(make([]byte, 10))
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("Read after deadline: %v, want a timeout net.Error", err)
		}
	})
}

func TestWSDeadlineUnblocksRead(t *testing.T) {
	ln := startWS(t)
	_, sc := dialWS(t, ln, "mqtt")
	errc := make(chan error, 1)
	go func() {
		_, err := sc.Read(make([]byte, 10))
		errc <- err
	}()
	// However the read goroutine is scheduled, a deadline in the past makes
	// its Read return.
	if err := sc.SetDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("blocked Read returned %v, want timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SetDeadline did not unblock Read")
	}
	// The write deadline is in the past as well.
	if _, err := sc.Write([]byte("x")); err == nil {
		t.Error("Write with past deadline succeeded")
	}
}

func TestWSCloseSendsCloseFrame(t *testing.T) {
	ln := startWS(t)
	cl, sc := dialWS(t, ln, "mqtt")
	if err := sc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sc.Close(); err != nil { // idempotent
		t.Errorf("second Close: %v", err)
	}
	cl.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err := cl.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure {
		t.Fatalf("client got %v, want close frame 1000", err)
	}
}

func TestWSPeerCloseReadsEOF(t *testing.T) {
	ln := startWS(t)
	cl, sc := dialWS(t, ln, "mqtt")
	if err := cl.WriteMessage(websocket.BinaryMessage, []byte("ab")); err != nil {
		t.Fatal(err)
	}
	if err := cl.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")); err != nil {
		t.Fatal(err)
	}
	wsWithin(t, 5*time.Second, func() {
		buf := make([]byte, 2)
		if _, err := io.ReadFull(sc, buf); err != nil || string(buf) != "ab" {
			t.Errorf("data before close: %q, %v", buf, err)
		}
		if _, err := sc.Read(buf); err != io.EOF {
			t.Errorf("Read after peer close: %v, want io.EOF", err)
		}
	})
}

func TestWSAddrs(t *testing.T) {
	ln := startWS(t)
	cl, sc := dialWS(t, ln, "mqtt")
	if sc.RemoteAddr().String() != cl.LocalAddr().String() {
		t.Errorf("server RemoteAddr %s, client LocalAddr %s", sc.RemoteAddr(), cl.LocalAddr())
	}
	if sc.LocalAddr().String() != ln.Addr().String() {
		t.Errorf("server LocalAddr %s, listener %s", sc.LocalAddr(), ln.Addr())
	}
}

func TestWSListenerClose(t *testing.T) {
	ln, err := listenWS("127.0.0.1:0", wsTestLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	cl, sc := dialWS(t, ln, "mqtt")
	errc := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		errc <- err
	}()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Accept")
	}
	if err := ln.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// New connections are refused.
	d := websocket.Dialer{HandshakeTimeout: 2 * time.Second}
	if c, _, err := d.Dial("ws://"+ln.Addr().String()+"/mqtt", nil); err == nil {
		c.Close()
		t.Error("dial after listener Close succeeded")
	}
	// The accepted connection still works.
	if err := cl.WriteMessage(websocket.BinaryMessage, []byte("z")); err != nil {
		t.Fatal(err)
	}
	wsWithin(t, 5*time.Second, func() {
		buf := make([]byte, 1)
		if _, err := io.ReadFull(sc, buf); err != nil || buf[0] != 'z' {
			t.Errorf("accepted conn after listener close: %q, %v", buf, err)
		}
	})
}

func TestWSListenBadAddr(t *testing.T) {
	if _, err := listenWS("127.0.0.1:notaport", nil); err == nil {
		t.Error("listenWS accepted a bad address")
	}
}

func TestWSCloseUnblocksRead(t *testing.T) {
	ln := startWS(t)
	cl, sc := dialWS(t, ln, "mqtt")
	errc := make(chan error, 1)
	go func() {
		_, err := sc.Read(make([]byte, 10))
		errc <- err
	}()
	// A writer running at the same time as Close (race detector).
	go func() {
		for range 100 {
			if _, err := sc.Write([]byte{0xD0, 0}); err != nil {
				return
			}
		}
	}()
	if err := sc.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Error("Read returned nil error after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
	// The client sees the close frame after any frames written before it.
	cl.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		mt, _, err := cl.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure {
				t.Fatalf("client got %v, want close frame 1000", err)
			}
			break
		}
		if mt != websocket.BinaryMessage {
			t.Fatalf("frame type %d before close", mt)
		}
	}
}
