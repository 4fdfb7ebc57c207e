package mqtt

import (
	"io"
	"sync"
)

// connReader is the buffered input of a connection. Its 4 KiB buffer comes
// from a pool and goes back whenever the connection has nothing more to
// read, so an idle connection, blocked in a read, holds a single byte
// instead of a buffer: most of a broker's connections are idle devices.
//
// After the buffer drains, the next read waits for one byte without a
// buffer, then takes a buffer for the rest. A connection that keeps
// sending (the last read filled the whole buffer) keeps its buffer.
type connReader struct {
	c    *client
	buf  *[]byte // nil while idle
	r, w int     // unread bytes are buf[r:w]
	full bool    // the last read filled the buffer: more is likely waiting
	one  [1]byte
}

const readBufferSize = 4096

var readBuffers = sync.Pool{New: func() any {
	b := make([]byte, readBufferSize)
	return &b
}}

// read reads at least one byte into p, or fails. Like bufio, it retries
// a read that returns nothing and no error (net.Pipe does that for an
// empty write) a bounded number of times.
func (cr *connReader) read(p []byte) (int, error) {
	for range 100 {
		n, err := cr.c.conn.Read(p)
		cr.c.srv.stats.BytesReceived.Add(uint64(n))
		if n > 0 || err != nil {
			return n, err
		}
	}
	return 0, io.ErrNoProgress
}

// fill reads more input into the buffer; r == w on entry. On success at
// least one byte is buffered.
func (cr *connReader) fill() error {
	if cr.buf != nil && cr.full {
		n, err := cr.read(*cr.buf)
		cr.r, cr.w, cr.full = 0, n, n == len(*cr.buf)
		if n > 0 {
			return nil
		}
		return err
	}
	cr.release()
	n, err := cr.read(cr.one[:])
	if n == 0 {
		return err
	}
	cr.buf = readBuffers.Get().(*[]byte)
	(*cr.buf)[0] = cr.one[0]
	cr.r, cr.w = 0, 1
	cr.full = true // the rest of the packet is probably there: read it next
	return nil
}

// release returns the buffer to the pool; nothing may be unread.
func (cr *connReader) release() {
	if cr.buf != nil {
		readBuffers.Put(cr.buf)
		cr.buf = nil
	}
}

func (cr *connReader) ReadByte() (byte, error) {
	if cr.r == cr.w {
		if err := cr.fill(); err != nil {
			return 0, err
		}
	}
	b := (*cr.buf)[cr.r]
	cr.r++
	return b, nil
}

func (cr *connReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if cr.r == cr.w {
		if len(p) >= readBufferSize {
			// A large body: straight into it, no copy.
			return cr.read(p)
		}
		if err := cr.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, (*cr.buf)[cr.r:cr.w])
	cr.r += n
	return n, nil
}
