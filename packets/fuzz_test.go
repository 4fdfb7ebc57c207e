package packets

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// fuzzSeeds adds every golden packet, and every golden packet cut at every
// byte boundary, as a seed.
func fuzzSeeds(f *testing.F) {
	for _, g := range goldens {
		for i := 0; i <= len(g.raw); i++ {
			f.Add(g.raw[:i], byte(g.v))
		}
	}
}

func fuzzVersion(b byte) Version { return Version(3 + b%3) }

// FuzzDecode feeds arbitrary bytes to Decode and to the Reader: neither may
// panic, and every failure about the bytes must be an *Error (or
// ErrIncomplete / an I/O error for a stream that ends early).
func FuzzDecode(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte, vb byte) {
		v := fuzzVersion(vb)
		p, n, err := Decode(data, v)
		switch {
		case err == nil:
			if p == nil || n < 2 || n > len(data) {
				t.Fatalf("Decode ok but p=%v n=%d len=%d", p, n, len(data))
			}
		case errors.Is(err, ErrIncomplete):
		default:
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Decode error %T %v is not *Error", err, err)
			}
		}
		r := NewReader(bufio.NewReaderSize(bytes.NewReader(data), 16), 1024)
		r.SetVersion(v)
		for i := 0; i < 64; i++ {
			_, err := r.Read()
			if err == nil {
				continue
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Reader error %T %v is not *Error", err, err)
			}
			break
		}
	})
}

// FuzzRoundTrip checks that whatever decodes also encodes, and that
// decode(encode(p)) == p, with Size agreeing with the encoded length.
func FuzzRoundTrip(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte, vb byte) {
		v := fuzzVersion(vb)
		p, _, err := Decode(data, v)
		if err != nil {
			return
		}
		if c, ok := p.(*Connect); ok {
			v = c.Version
		}
		b, err := Encode(nil, p, v)
		if err != nil {
			t.Fatalf("decoded packet %#v does not encode: %v", p, err)
		}
		if s := Size(p, v); s != len(b) {
			t.Fatalf("Size = %d, encoded %d bytes", s, len(b))
		}
		p2, n, err := Decode(b, v)
		if err != nil {
			t.Fatalf("re-decode of % x: %v", b, err)
		}
		if n != len(b) {
			t.Fatalf("re-decode consumed %d of %d", n, len(b))
		}
		if !reflect.DeepEqual(p, p2) {
			t.Fatalf("round trip differs\n%#v\n%#v", p, p2)
		}
	})
}
