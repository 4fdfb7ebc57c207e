package mqtt

import (
	"net"
	"sync"

	"github.com/beaconmq/beacon/packets"
)

// outChunk is the size of the pooled chunks a connection's outbound queue
// is made of. A packet never straddles two chunks, so each chunk handed to
// the socket holds whole packets (one WebSocket message never ends inside
// a packet); a packet larger than a chunk gets a chunk of its own size.
// The first chunk of a burst is a small one: most bursts are one PUBLISH
// or acknowledgement, and with thousands of connections writing at once
// (1,000 publisher/subscriber pairs) 16 KiB chunks for them were a tenth
// of the broker's allocations, the pool being emptied by every GC.
const (
	outChunk   = 16 << 10
	firstChunk = 1 << 10
)

var (
	outChunks   = sync.Pool{New: func() any { return make([]byte, 0, outChunk) }}
	firstChunks = sync.Pool{New: func() any { return make([]byte, 0, firstChunk) }}
)

// putChunk pools a standard chunk; a packet-sized one is left to the GC.
func putChunk(b []byte) {
	switch cap(b) {
	case outChunk:
		outChunks.Put(b[:0])
	case firstChunk:
		firstChunks.Put(b[:0])
	}
}

// outQueue holds a connection's encoded packets until the writer takes
// them. It is a list of chunks rather than one growing buffer: a
// subscriber with megabytes queued (a fan-in to one consumer) would
// otherwise have its buffer reallocated and copied at every doubling,
// which the profiles showed costing a fifth of the broker's CPU with
// 1 KiB payloads; chunks are appended to and recycled, never copied.
type outQueue struct {
	chunks [][]byte
	n      int // bytes queued
}

// Len returns the bytes queued.
func (q *outQueue) Len() int { return q.n }

// room returns the chunk to encode a packet of size bytes into: the last
// one if the packet fits, otherwise a new one.
func (q *outQueue) room(size int) []byte {
	if k := len(q.chunks); k > 0 {
		if last := q.chunks[k-1]; cap(last)-len(last) >= size {
			return last
		}
	}
	var c []byte
	switch {
	case len(q.chunks) == 0 && size <= firstChunk:
		c = firstChunks.Get().([]byte)[:0]
	case size <= outChunk:
		c = outChunks.Get().([]byte)[:0]
	default:
		c = make([]byte, 0, size)
	}
	q.chunks = append(q.chunks, c)
	return c
}

// encode appends p, whose encoded size is size (packets.Size), to the
// queue.
func (q *outQueue) encode(p packets.Packet, size int, v packets.Version) error {
	c := q.room(size)
	out, err := packets.Encode(c, p, v)
	return q.appended(c, out, err)
}

// ack appends an acknowledgement without properties (packets.AppendAck).
func (q *outQueue) ack(t packets.Type, id uint16, rc packets.ReasonCode, v packets.Version) error {
	const maxAck = 5 // header, length, identifier, reason code
	c := q.room(maxAck)
	out, err := packets.AppendAck(c, t, id, rc, v)
	return q.appended(c, out, err)
}

// appended records the append of a packet to the last chunk, c before and
// out after it; a failed append leaves the queue as it was.
func (q *outQueue) appended(c, out []byte, err error) error {
	if err != nil {
		if len(c) == 0 {
			putChunk(c)
			q.chunks = q.chunks[:len(q.chunks)-1]
		}
		return err
	}
	q.chunks[len(q.chunks)-1] = out
	q.n += len(out) - len(c)
	return nil
}

// take hands every queued chunk to the caller (the writer) and leaves the
// queue empty, reusing spare (a previous take's slice) for what comes next.
func (q *outQueue) take(spare [][]byte) [][]byte {
	cs := q.chunks
	q.chunks = spare[:0]
	q.n = 0
	return cs
}

// release gives back the chunks still queued (a connection that closed).
func (q *outQueue) release() {
	recycle(q.chunks)
	q.chunks = nil
	q.n = 0
}

// recycle returns written chunks to the pool and clears cs.
func recycle(cs [][]byte) {
	for i, c := range cs {
		putChunk(c)
		cs[i] = nil
	}
}

// writeChunks writes cs to conn (one writev on a TCP connection). w is
// scratch space: net.Buffers consumes the slice it writes from.
func writeChunks(conn net.Conn, cs [][]byte, w *net.Buffers) (int64, error) {
	buf := append((*w)[:0], cs...)
	v := buf
	n, err := v.WriteTo(conn)
	clear(buf)
	*w = buf[:0]
	return n, err
}
