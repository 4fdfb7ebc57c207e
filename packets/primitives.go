package packets

import "unsafe"

// This file holds the wire primitives of MQTT §1.5: two- and four-byte
// integers, variable byte integers, length-prefixed strings and binary data.
// Every read is bounds-checked and a failure names the field it was reading.

type vbiStatus int8

const (
	vbiOK vbiStatus = iota
	vbiIncomplete
	vbiTooLong    // a fourth byte with the continuation bit set
	vbiNotMinimal // encoded with more bytes than needed [MQTT-1.5.5-1]
)

// decodeVBI reads a variable byte integer from the front of b and returns
// its value and length in bytes. At most four bytes are read (5.0 §1.5.5,
// 3.1.1 §2.2.3), and the encoding must be the shortest one [MQTT-1.5.5-1]:
// a last byte of 0 after a continuation byte means a longer form was used.
func decodeVBI(b []byte) (v, n int, st vbiStatus) {
	mul := 1
	for n < 4 {
		if n >= len(b) {
			return 0, 0, vbiIncomplete
		}
		c := b[n]
		n++
		v += int(c&0x7f) * mul
		if c&0x80 == 0 {
			if n > 1 && c == 0 {
				return 0, 0, vbiNotMinimal
			}
			return v, n, vbiOK
		}
		mul <<= 7
	}
	return 0, 0, vbiTooLong
}

// vbiLen returns how many bytes appendVBI writes for v.
func vbiLen(v int) int {
	switch {
	case v < 128:
		return 1
	case v < 16384:
		return 2
	case v < 2097152:
		return 3
	}
	return 4
}

// appendVBI appends v (0..MaxRemainingLength) as a variable byte integer in
// its shortest form [MQTT-1.5.5-1].
func appendVBI(dst []byte, v int) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(dst, c)
		}
		dst = append(dst, c|0x80)
	}
}

func appendU16(dst []byte, v uint16) []byte { return append(dst, byte(v>>8), byte(v)) }

func appendU32(dst []byte, v uint32) []byte {
	return append(dst, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func appendString(dst []byte, s string) []byte {
	dst = appendU16(dst, uint16(len(s)))
	return append(dst, s...)
}

func appendBinary(dst []byte, b []byte) []byte {
	dst = appendU16(dst, uint16(len(b)))
	return append(dst, b...)
}

// decoder is a cursor over one packet body. Strings and byte slices it
// returns alias b; b must therefore be owned by the decoded packet (the
// Reader allocates a fresh body for every packet).
type decoder struct {
	b []byte
	i int
	t Type
}

func (d *decoder) rest() int { return len(d.b) - d.i }

func (d *decoder) short(field string) error {
	return malformed(d.t, field, "packet ends before the field")
}

func (d *decoder) u8(field string) (byte, error) {
	if d.i >= len(d.b) {
		return 0, d.short(field)
	}
	c := d.b[d.i]
	d.i++
	return c, nil
}

func (d *decoder) u16(field string) (uint16, error) {
	if len(d.b)-d.i < 2 {
		return 0, d.short(field)
	}
	v := uint16(d.b[d.i])<<8 | uint16(d.b[d.i+1])
	d.i += 2
	return v, nil
}

func (d *decoder) u32(field string) (uint32, error) {
	if len(d.b)-d.i < 4 {
		return 0, d.short(field)
	}
	b := d.b[d.i : d.i+4]
	d.i += 4
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]), nil
}

func (d *decoder) vbi(field string) (int, error) {
	v, n, st := decodeVBI(d.b[d.i:])
	switch st {
	case vbiIncomplete:
		return 0, d.short(field)
	case vbiTooLong:
		return 0, malformed(d.t, field, "variable byte integer longer than 4 bytes")
	case vbiNotMinimal:
		return 0, malformed(d.t, field, "variable byte integer not in its shortest form") // [MQTT-1.5.5-1]
	}
	d.i += n
	return v, nil
}

// binary reads two-byte-length-prefixed binary data. The result aliases the
// body with its capacity cut to its length, so an append by the user never
// overwrites the bytes that follow. Empty data is returned as nil.
func (d *decoder) binary(field string) ([]byte, error) {
	n, err := d.u16(field)
	if err != nil {
		return nil, err
	}
	if int(n) > len(d.b)-d.i {
		d.i -= 2
		return nil, malformed(d.t, field, "length prefix runs past the end of the packet")
	}
	if n == 0 {
		return nil, nil
	}
	b := d.b[d.i : d.i+int(n) : d.i+int(n)]
	d.i += int(n)
	return b, nil
}

// str reads a UTF-8 encoded string and checks the §1.5.4 rules: well-formed,
// no surrogates [MQTT-1.5.4-1] [MQTT-1.5.3-1], no U+0000 [MQTT-1.5.4-2]
// [MQTT-1.5.3-2]. U+FEFF is kept as it is [MQTT-1.5.4-3] [MQTT-1.5.3-3].
// The string aliases the body without copying (the body is never modified
// after decoding).
func (d *decoder) str(field string) (string, error) {
	b, err := d.binary(field)
	if err != nil || len(b) == 0 {
		return "", err
	}
	s := unsafe.String(&b[0], len(b))
	if !ValidUTF8String(s) {
		return "", malformed(d.t, field, "not a valid UTF-8 encoded string")
	}
	return s, nil
}
