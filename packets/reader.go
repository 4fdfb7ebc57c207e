package packets

import (
	"io"
	"strconv"
)

// Reader reads one packet at a time from a byte stream. It owns no
// protocol state beyond the version: until a CONNECT has been read the
// version is unknown and any other packet is refused; once a CONNECT with a
// supported protocol level arrives, the Reader switches to that version.
// A client-side user calls SetVersion before reading the CONNACK.
//
// Each packet gets a freshly allocated body that is never reused, so the
// returned packet may keep its strings and slices (which alias the body)
// for as long as it likes. The packet value itself is new too, unless
// ReusePackets was called.
type Reader struct {
	r     ByteReader
	max   int
	v     Version
	reuse *reused // ReusePackets
}

// ByteReader is what a Reader reads from: a *bufio.Reader, or any
// buffered reader whose ReadByte is cheap (the fixed header is read a byte
// at a time).
type ByteReader interface {
	io.Reader
	io.ByteReader
}

// NewReader returns a Reader on r. maxSize bounds a whole packet, fixed
// header included; 0 means the protocol maximum.
func NewReader(r ByteReader, maxSize int) *Reader {
	rd := &Reader{r: r}
	rd.SetMaxSize(maxSize)
	return rd
}

// ReusePackets makes Read decode every PUBLISH, PUBACK, PUBREC, PUBREL
// and PUBCOMP into one value per type, owned by the Reader, instead of a
// new one: the packet Read returns is overwritten by the next packet of
// its type, so the caller must be done with the value before reading on.
// What it points to is still the packet's own fresh body, so its topic,
// payload and properties may be kept (copy the Properties struct, not the
// packet). A broker reads a PUBLISH or an acknowledgement for every
// message, and these values (~330 bytes for a PUBLISH, with its
// properties) were a fifth of its allocations.
func (r *Reader) ReusePackets() { r.reuse = new(reused) }

// SetVersion fixes the protocol version used to decode every packet but
// CONNECT.
func (r *Reader) SetVersion(v Version) { r.v = v }

// Version returns the version in use: 0 until a CONNECT was read or
// SetVersion called. After a CONNECT that failed to decode it is still set
// when the protocol name and level were readable and supported, so the
// caller can answer with a CONNACK of the right format.
func (r *Reader) Version() Version { return r.v }

// SetMaxSize changes the largest packet accepted (fixed header included);
// n <= 0 means the protocol maximum.
func (r *Reader) SetMaxSize(n int) {
	if n <= 0 || n > MaxRemainingLength+5 {
		n = MaxRemainingLength + 5
	}
	r.max = n
}

// Read reads and decodes the next packet. A clean end of stream before the
// first byte of a packet returns io.EOF; a stream ending inside a packet
// returns io.ErrUnexpectedEOF; other I/O errors are returned as they are.
// Everything wrong with the bytes themselves is an *Error. A packet larger
// than the maximum size is refused with PacketTooLarge as soon as its
// remaining length is known, before the body is read or allocated.
func (r *Reader) Read() (Packet, error) {
	b0, err := r.r.ReadByte()
	if err != nil {
		return nil, err
	}
	h := FixedHeader{Type: Type(b0 >> 4), Flags: b0 & 0x0f}
	if h.Type != TypeConnect {
		if err := checkFlags(h, r.v); err != nil {
			return nil, err
		}
	}
	n, mul := 0, 1
	for i := 0; ; i++ {
		if i == 4 {
			return nil, malformed(h.Type, "RemainingLength", "variable byte integer longer than 4 bytes")
		}
		c, err := r.r.ReadByte()
		if err != nil {
			return nil, unexpected(err)
		}
		n += int(c&0x7f) * mul
		if c&0x80 == 0 {
			if i > 0 && c == 0 { // [MQTT-1.5.5-1]
				return nil, malformed(h.Type, "RemainingLength", "variable byte integer not in its shortest form")
			}
			if total := 1 + i + 1 + n; total > r.max {
				return nil, &Error{Code: PacketTooLarge, Packet: h.Type, Field: "RemainingLength",
					Detail: "packet of " + strconv.Itoa(total) + " bytes exceeds the maximum of " + strconv.Itoa(r.max)}
			}
			break
		}
		mul <<= 7
	}
	h.RemainingLength = n
	var body []byte
	if n > 0 {
		body = make([]byte, n)
		if _, err := io.ReadFull(r.r, body); err != nil {
			return nil, unexpected(err)
		}
	}
	p, v, err := decodeBody(h, body, r.v, r.reuse)
	if h.Type == TypeConnect && v != 0 {
		r.v = v
	}
	return p, err
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
