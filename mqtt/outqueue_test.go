package mqtt

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/beaconmq/beacon/packets"
)

// The outbound queue keeps every packet whole inside one chunk (a packet
// larger than a chunk gets its own), counts its bytes, and writes exactly
// the concatenation of what was queued, in order.
func TestOutQueueChunks(t *testing.T) {
	var q outQueue
	var want []byte
	sizes := []int{10, 1000, outChunk - 100, 50, 3 * outChunk, 20, outChunk, 7}
	for i, n := range sizes {
		p := &packets.Publish{QoS: 1, PacketID: uint16(i + 1), Topic: "q/t", Payload: bytes.Repeat([]byte{byte('a' + i)}, n)}
		size := packets.Size(p, packets.V5)
		if err := q.encode(p, size, packets.V5); err != nil {
			t.Fatal(err)
		}
		enc, err := packets.Encode(nil, p, packets.V5)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, enc...)
	}
	if q.Len() != len(want) {
		t.Fatalf("Len %d, queued %d bytes", q.Len(), len(want))
	}
	// Every chunk decodes into whole packets.
	total := 0
	for i, c := range q.chunks {
		if len(c) > outChunk && cap(c) != len(c) {
			t.Fatalf("chunk %d: %d bytes in a chunk of capacity %d", i, len(c), cap(c))
		}
		r := packets.NewReader(bytes.NewReader(c), 0)
		r.SetVersion(packets.V5)
		for {
			_, err := r.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("chunk %d does not hold whole packets: %v", i, err)
			}
			total++
		}
	}
	if total != len(sizes) {
		t.Fatalf("%d packets in the chunks, queued %d", total, len(sizes))
	}

	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	got := make(chan []byte, 1)
	go func() {
		buf, _ := io.ReadAll(io.LimitReader(b, int64(len(want))))
		got <- buf
	}()
	cs := q.take(nil)
	if q.Len() != 0 || len(q.chunks) != 0 {
		t.Fatalf("after take: Len %d, %d chunks", q.Len(), len(q.chunks))
	}
	var w net.Buffers
	n, err := writeChunks(a, cs, &w)
	if err != nil || n != int64(len(want)) {
		t.Fatalf("writeChunks: %d bytes, %v; want %d", n, err, len(want))
	}
	if !bytes.Equal(<-got, want) {
		t.Fatal("bytes written differ from the packets queued")
	}
	for i, c := range cs {
		if c == nil {
			t.Fatalf("writeChunks cleared chunk %d of the caller's list", i)
		}
	}
	recycle(cs)
}

// A packet that fails to encode leaves the queue as it was.
func TestOutQueueEncodeError(t *testing.T) {
	var q outQueue
	bad := &packets.Publish{QoS: 1, PacketID: 0, Topic: "t"} // QoS 1 needs a packet identifier
	if err := q.encode(bad, 16, packets.V5); err == nil {
		t.Fatal("encoding a QoS 1 PUBLISH without packet identifier succeeded")
	}
	if q.Len() != 0 || len(q.chunks) != 0 {
		t.Fatalf("failed encode left Len %d, %d chunks", q.Len(), len(q.chunks))
	}
}

// BenchmarkOutQueueFlush queues a burst of 64 PUBLISH packets the way a
// subscriber's connection does (encode into chunks, the writer takes them
// and writes them with one writev) over a loopback TCP connection whose
// other end discards what it reads.
func BenchmarkOutQueueFlush(b *testing.B) {
	for _, size := range []int{64, 1024} {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err == nil {
					_, _ = io.Copy(io.Discard, c)
					c.Close()
				}
			}()
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			p := &packets.Publish{QoS: 1, PacketID: 1, Topic: "bench/device-0042/data", Payload: make([]byte, size)}
			psize := packets.Size(p, packets.V5)
			var q outQueue
			var spare [][]byte
			var w net.Buffers
			const burst = 64
			b.ReportAllocs()
			b.SetBytes(int64(burst * psize))
			for b.Loop() {
				for i := range burst {
					p.PacketID = uint16(i + 1)
					if err := q.encode(p, psize, packets.V5); err != nil {
						b.Fatal(err)
					}
				}
				cs := q.take(spare)
				if _, err := writeChunks(conn, cs, &w); err != nil {
					b.Fatal(err)
				}
				recycle(cs)
				spare = cs[:0]
			}
		})
	}
}
