package packets

import (
	"bufio"
	"bytes"
	"fmt"
	"testing"
)

var benchCases = []struct {
	qos  byte
	size int
}{{0, 64}, {1, 64}, {0, 4096}, {1, 4096}}

func benchPublish(qos byte, size int) *Publish {
	p := &Publish{QoS: qos, Topic: "devices/sensor-0042/telemetry", Payload: bytes.Repeat([]byte{'x'}, size)}
	if qos > 0 {
		p.PacketID = 4242
	}
	return p
}

func benchName(v Version, qos byte, size int) string {
	s := fmt.Sprintf("%dB", size)
	if size >= 1024 {
		s = fmt.Sprintf("%dKiB", size/1024)
	}
	return fmt.Sprintf("v%s/QoS%d/%s", v, qos, s)
}

// BenchmarkDecodePublish decodes a PUBLISH held in memory. The only
// allocation is the *Publish itself: the topic and payload alias the input.
func BenchmarkDecodePublish(b *testing.B) {
	for _, v := range []Version{V311, V5} {
		for _, c := range benchCases {
			raw, err := Encode(nil, benchPublish(c.qos, c.size), v)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(benchName(v, c.qos, c.size), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(raw)))
				for b.Loop() {
					if _, _, err := Decode(raw, v); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkEncodePublish encodes into a reused buffer: no allocation.
func BenchmarkEncodePublish(b *testing.B) {
	for _, v := range []Version{V311, V5} {
		for _, c := range benchCases {
			p := benchPublish(c.qos, c.size)
			buf := make([]byte, 0, 8192)
			b.Run(benchName(v, c.qos, c.size), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(Size(p, v)))
				for b.Loop() {
					var err error
					if buf, err = Encode(buf[:0], p, v); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkPublishAppendHeader writes everything but the payload, as a
// writer using net.Buffers does.
func BenchmarkPublishAppendHeader(b *testing.B) {
	p := benchPublish(1, 4096)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = p.AppendHeader(buf[:0], V5); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReaderPublish reads PUBLISH packets from a stream: a fresh body
// buffer plus the *Publish per packet.
func BenchmarkReaderPublish(b *testing.B) {
	for _, reuse := range []bool{false, true} {
		b.Run(fmt.Sprintf("reuse=%v", reuse), func(b *testing.B) {
			raw, _ := Encode(nil, benchPublish(1, 64), V5)
			stream := bytes.Repeat(raw, 1024)
			src := bytes.NewReader(stream)
			br := bufio.NewReaderSize(src, 64*1024)
			r := NewReader(br, 0)
			r.SetVersion(V5)
			if reuse {
				r.ReusePackets()
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			i := 0
			for b.Loop() {
				if i%1024 == 0 {
					src.Reset(stream)
					br.Reset(src)
				}
				i++
				if _, err := r.Read(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncodeAck writes a PUBACK through Encode (a packet value) and
// through AppendAck (none), as a broker does for every QoS 1 message.
func BenchmarkEncodeAck(b *testing.B) {
	buf := make([]byte, 0, 64)
	b.Run("Encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if buf, err = Encode(buf[:0], &Puback{PacketID: 7}, V5); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendAck", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if buf, err = AppendAck(buf[:0], TypePuback, 7, Success, V5); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDecodeConnect decodes a typical 5.0 CONNECT: client id, user
// name, password, session expiry and receive maximum.
func BenchmarkDecodeConnect(b *testing.B) {
	c := &Connect{CleanStart: true, KeepAlive: 60, ClientID: "sensor-0042", Username: "device", Password: []byte("s3cret-token"),
		Properties: Properties{SessionExpiry: 3600, ReceiveMaximum: 32}}
	raw, err := Encode(nil, c, V5)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Decode(raw, V5); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeConnack encodes a 5.0 CONNACK with a few properties.
func BenchmarkEncodeConnack(b *testing.B) {
	c := &Connack{Properties: Properties{TopicAliasMaximum: 10, ReceiveMaximum: 100, MaximumPacketSize: 1 << 20}}
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = Encode(buf[:0], c, V5); err != nil {
			b.Fatal(err)
		}
	}
}
