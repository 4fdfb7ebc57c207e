package packets

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
	"testing/iotest"
)

// goldenStream returns every canonical golden packet of version v, with a
// CONNECT of that version first, and the packets expected back.
func goldenStream(t *testing.T, v Version) ([]byte, []Packet) {
	conn := &Connect{ProtocolName: protocolName(v), Version: v, CleanStart: true, ClientID: "r"}
	stream := encodeOK(t, conn, v)
	want := []Packet{conn}
	for _, g := range goldens {
		if g.v == v {
			stream = append(stream, g.raw...)
			want = append(want, g.pkt)
		}
	}
	return stream, want
}

// The Reader returns each packet of a stream, whatever the chunking of the
// bytes (one byte per Read here), and switches to the CONNECT's version.
func TestReaderPieces(t *testing.T) {
	for _, v := range []Version{V31, V311, V5} {
		stream, want := goldenStream(t, v)
		for name, src := range map[string]io.Reader{
			"whole":      bytes.NewReader(stream),
			"one byte":   iotest.OneByteReader(bytes.NewReader(stream)),
			"half bytes": iotest.HalfReader(bytes.NewReader(stream)),
		} {
			r := NewReader(bufio.NewReaderSize(src, 16), 0)
			for i, w := range want {
				p, err := r.Read()
				if err != nil {
					t.Fatalf("%v %s: packet %d: %v", v, name, i, err)
				}
				if !reflect.DeepEqual(p, w) {
					t.Fatalf("%v %s: packet %d = %#v, want %#v", v, name, i, p, w)
				}
				if i == 0 && r.Version() != v {
					t.Fatalf("version after CONNECT = %v", r.Version())
				}
			}
			if _, err := r.Read(); err != io.EOF {
				t.Errorf("%v %s: after the last packet: %v, want io.EOF", v, name, err)
			}
		}
	}
}

// countingReader counts the bytes handed out.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// The maximum size counts the whole packet and is checked once the
// remaining length is known, before the body is read.
func TestReaderMaxSize(t *testing.T) {
	pub := encodeOK(t, &Publish{Topic: "t", Payload: make([]byte, 100)}, V311) // 2 + 103 bytes
	for _, c := range []struct {
		max int
		ok  bool
	}{{len(pub), true}, {len(pub) - 1, false}, {0, true}, {10, false}} {
		src := &countingReader{r: bytes.NewReader(pub)}
		r := NewReader(bufio.NewReaderSize(iotest.OneByteReader(src), 16), c.max)
		r.SetVersion(V311)
		_, err := r.Read()
		if c.ok {
			if err != nil {
				t.Errorf("max %d: %v", c.max, err)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.Code != PacketTooLarge {
			t.Errorf("max %d: %v, want PacketTooLarge", c.max, err)
		}
		if src.n > 2 {
			t.Errorf("max %d: read %d bytes before refusing", c.max, src.n)
		}
	}
	// A huge remaining length is refused without allocating 256 MB.
	r := NewReader(bufio.NewReader(bytes.NewReader(by(0x30, 0xff, 0xff, 0xff, 0x7f))), 1<<20)
	r.SetVersion(V5)
	allocs := testing.AllocsPerRun(1, func() { _, _ = r.Read() })
	if allocs > 2 {
		t.Errorf("%v allocations refusing a huge packet", allocs)
	}
	r.SetMaxSize(0)
	if r.max != MaxRemainingLength+5 {
		t.Errorf("SetMaxSize(0) -> %d", r.max)
	}
}

// Every packet gets its own body: reading more packets never changes the
// strings and slices of a packet already returned.
func TestReaderFreshBuffers(t *testing.T) {
	var stream []byte
	for i := 0; i < 50; i++ {
		stream = append(stream, encodeOK(t, &Publish{QoS: 1, PacketID: uint16(i + 1), Topic: "t/" + string(rune('a'+i%26)), Payload: []byte{byte(i), byte(i)}}, V5)...)
	}
	r := NewReader(bufio.NewReaderSize(bytes.NewReader(stream), 16), 0)
	r.SetVersion(V5)
	var got []*Publish
	for i := 0; i < 50; i++ {
		p, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p.(*Publish))
	}
	for i, p := range got {
		if p.Topic != "t/"+string(rune('a'+i%26)) || !bytes.Equal(p.Payload, []byte{byte(i), byte(i)}) {
			t.Fatalf("packet %d changed: %q % x", i, p.Topic, p.Payload)
		}
	}
}

// With ReusePackets, PUBLISH and each acknowledgement type are decoded
// into one value per type, reset for every packet (no field of the
// previous one survives), while what the value points to (topic, payload)
// stays valid; a Reader without it gets a new value each time.
func TestReaderReusePackets(t *testing.T) {
	stream := encodeOK(t, &Puback{PacketID: 1, ReasonCode: NoMatchingSubscribers, Properties: Properties{ReasonString: "none"}}, V5)
	stream = append(stream, encodeOK(t, &Puback{PacketID: 2}, V5)...)
	stream = append(stream, encodeOK(t, &Pubrec{PacketID: 3}, V5)...)
	stream = append(stream, encodeOK(t, &Pubrec{PacketID: 4}, V5)...)
	stream = append(stream, encodeOK(t, &Pubrel{PacketID: 5}, V5)...)
	stream = append(stream, encodeOK(t, &Pubrel{PacketID: 6}, V5)...)
	stream = append(stream, encodeOK(t, &Pubcomp{PacketID: 7}, V5)...)
	stream = append(stream, encodeOK(t, &Pubcomp{PacketID: 8}, V5)...)
	stream = append(stream, encodeOK(t, &Publish{QoS: 1, PacketID: 9, Topic: "a/first", Payload: []byte("one"), Properties: Properties{ContentType: "text/plain"}}, V5)...)
	stream = append(stream, encodeOK(t, &Publish{QoS: 2, PacketID: 10, Topic: "a/second", Payload: []byte("two")}, V5)...)
	for _, reuse := range []bool{false, true} {
		r := NewReader(bufio.NewReader(bytes.NewReader(stream)), 0)
		r.SetVersion(V5)
		if reuse {
			r.ReusePackets()
		}
		var got []Packet
		var topic string
		var payload []byte
		for i := range 10 {
			p, err := r.Read()
			if err != nil {
				t.Fatal(err)
			}
			if id := reflect.ValueOf(p).Elem().FieldByName("PacketID").Uint(); id != uint64(i+1) {
				t.Fatalf("reuse %v: packet %d has id %d", reuse, i, id)
			}
			if i == 1 {
				if pa := p.(*Puback); pa.ReasonCode != Success || pa.Properties.ReasonString != "" {
					t.Fatalf("reuse %v: second PUBACK kept the first one's fields: %+v", reuse, pa)
				}
			}
			if i == 8 {
				topic, payload = p.(*Publish).Topic, p.(*Publish).Payload
			}
			if i == 9 {
				if pub := p.(*Publish); pub.QoS != 2 || pub.Properties.ContentType != "" {
					t.Fatalf("reuse %v: second PUBLISH kept the first one's fields: %+v", reuse, pub)
				}
				if topic != "a/first" || string(payload) != "one" {
					t.Fatalf("reuse %v: the first PUBLISH's topic and payload changed: %q %q", reuse, topic, payload)
				}
			}
			got = append(got, p)
		}
		for i := 0; i < 10; i += 2 {
			if same := got[i] == got[i+1]; same != reuse {
				t.Fatalf("reuse %v: packets %d and %d are the same value: %v", reuse, i, i+1, same)
			}
		}
	}
}

func TestReaderVersion(t *testing.T) {
	// Before CONNECT (and without SetVersion) other packets are refused.
	r := NewReader(bufio.NewReader(bytes.NewReader(by(0xc0, 0))), 0)
	if _, err := r.Read(); !errors.Is(err, ProtocolError) {
		t.Errorf("PINGREQ before CONNECT: %v", err)
	}
	// A CONNECT that fails after its version still sets the version, so
	// the broker can answer in the right format.
	raw := connect5(0x03, by(0), str("c")) // reserved flag set
	r = NewReader(bufio.NewReader(bytes.NewReader(raw)), 0)
	if _, err := r.Read(); !errors.Is(err, MalformedPacket) {
		t.Errorf("bad CONNECT: %v", err)
	}
	if r.Version() != V5 {
		t.Errorf("version after a failed 5.0 CONNECT = %v", r.Version())
	}
	// A 3.1.1 CONNECT after SetVersion(V5) switches the version back.
	r = NewReader(bufio.NewReader(bytes.NewReader(append(connect311(2, str("c")), 0xe0, 0))), 0)
	r.SetVersion(V5)
	if _, err := r.Read(); err != nil || r.Version() != V311 {
		t.Errorf("CONNECT 3.1.1: %v, version %v", err, r.Version())
	}
}

func TestReaderTruncated(t *testing.T) {
	raw := encodeOK(t, &Publish{QoS: 1, PacketID: 1, Topic: "t", Payload: []byte("abc")}, V5)
	for i := 1; i < len(raw); i++ {
		r := NewReader(bufio.NewReader(bytes.NewReader(raw[:i])), 0)
		r.SetVersion(V5)
		if _, err := r.Read(); err != io.ErrUnexpectedEOF {
			t.Errorf("cut at %d: %v, want io.ErrUnexpectedEOF", i, err)
		}
		if _, _, err := Decode(raw[:i], V5); err != ErrIncomplete {
			t.Errorf("Decode cut at %d: %v, want ErrIncomplete", i, err)
		}
	}
	r := NewReader(bufio.NewReader(iotest.ErrReader(errors.New("boom"))), 0)
	if _, err := r.Read(); err == nil || err.Error() != "boom" {
		t.Errorf("I/O error: %v", err)
	}
}

// Decode reports the bytes of one packet when several are in the buffer,
// and trailing bytes inside a packet are malformed.
func TestDecodeConsumed(t *testing.T) {
	two := append(encodeOK(t, &Pingreq{}, V5), encodeOK(t, &Puback{PacketID: 3}, V5)...)
	p, n, err := Decode(two, V5)
	if err != nil || n != 2 || p.Type() != TypePingreq {
		t.Fatalf("first: %v %d %v", p, n, err)
	}
	p, n, err = Decode(two[n:], V5)
	if err != nil || n != 4 || p.(*Puback).PacketID != 3 {
		t.Fatalf("second: %v %d %v", p, n, err)
	}
	for _, raw := range [][]byte{
		pk(0x40, u16(1), by(0, 0, 0)),  // 3.1.1 PUBACK with 3 extra bytes
		pk(0xc0, by(0)),                // PINGREQ with a body
		pk(0x20, by(0, 0, 0)),          // 3.1.1 CONNACK with an extra byte
		pk(0xb0, u16(1), by(0)),        // 3.1.1 UNSUBACK with a payload
		connect311(2, str("c"), by(1)), // CONNECT with a trailing byte
	} {
		decodeErr(t, raw, V311, MalformedPacket)
	}
	if _, err := DecodeBody(FixedHeader{Type: TypePingreq, RemainingLength: 1}, nil, V5); !errors.Is(err, MalformedPacket) {
		t.Errorf("DecodeBody with a wrong remaining length: %v", err)
	}
}

// AppendAck writes the bytes Encode writes for the same acknowledgement
// without properties, and refuses what Encode refuses.
func TestAppendAck(t *testing.T) {
	for _, v := range []Version{V311, V5} {
		for _, rc := range []ReasonCode{Success, PacketIdentifierNotFound, UnspecifiedError} {
			for _, p := range []Packet{
				&Puback{PacketID: 7, ReasonCode: rc}, &Pubrec{PacketID: 7, ReasonCode: rc},
				&Pubrel{PacketID: 7, ReasonCode: rc}, &Pubcomp{PacketID: 7, ReasonCode: rc},
			} {
				want, werr := Encode([]byte{0xee}, p, v)
				got, gerr := AppendAck([]byte{0xee}, p.Type(), 7, rc, v)
				if (werr == nil) != (gerr == nil) || !bytes.Equal(got, want) {
					t.Errorf("%v %v %v: AppendAck % x (%v), Encode % x (%v)", v, p.Type(), rc, got, gerr, want, werr)
				}
			}
		}
	}
	if _, err := AppendAck(nil, TypePuback, 0, Success, V5); err == nil {
		t.Error("AppendAck with packet identifier 0 succeeded")
	}
	if _, err := AppendAck(nil, TypePublish, 1, Success, V5); err == nil {
		t.Error("AppendAck of a PUBLISH succeeded")
	}
}
