package mqtt

import (
	"io"
	"net"
	"testing"
)

// scriptConn returns its reads one by one: (0, nil) for an empty entry.
type scriptConn struct {
	net.Conn
	reads [][]byte
}

func (c *scriptConn) Read(p []byte) (int, error) {
	if len(c.reads) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.reads[0])
	if n == len(c.reads[0]) {
		c.reads = c.reads[1:]
	} else {
		c.reads[0] = c.reads[0][n:]
	}
	return n, nil
}

// The connection's reader holds a buffer only while input is arriving: it
// gives it back once a read came back short (the client sent everything it
// had), and takes one again for the next packet. Reads that return no
// bytes and no error are skipped, not mistaken for data.
func TestConnReaderBuffersOnlyWhileReading(t *testing.T) {
	s := startServer(t, nil)
	sc := &scriptConn{reads: [][]byte{{}, []byte("a"), []byte("bc"), {}, []byte("de")}}
	c := &client{srv: s, conn: sc}
	cr := &connReader{c: c}
	var got []byte
	for range 5 {
		b, err := cr.ReadByte()
		if err != nil {
			t.Fatalf("ReadByte after %q: %v", got, err)
		}
		got = append(got, b)
		if len(got) == 3 && cr.r == cr.w && cr.full {
			t.Fatal("buffer drained after a short read, still marked full")
		}
	}
	if string(got) != "abcde" {
		t.Fatalf("read %q, want abcde", got)
	}
	if _, err := cr.ReadByte(); err != io.EOF {
		t.Fatalf("at the end: %v, want EOF", err)
	}
	if cr.buf != nil {
		t.Fatal("an idle reader (blocked for the next packet) still holds its buffer")
	}
}
