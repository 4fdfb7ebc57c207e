package packets

import (
	"errors"
	"testing"
)

// pk builds a packet: the first fixed-header byte, a remaining length
// computed from the parts, and the parts concatenated.
func pk(first byte, parts ...[]byte) []byte {
	var body []byte
	for _, p := range parts {
		body = append(body, p...)
	}
	return append(appendVBI([]byte{first}, len(body)), body...)
}

// str encodes s as a length-prefixed string (any bytes, valid or not).
func str(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

func by(b ...byte) []byte { return b }

func u16(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }

// props prefixes the concatenated property bytes with their length.
func props(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return append(appendVBI(nil, len(b)), b...)
}

// connect5 builds a 5.0 CONNECT with the given flags, CONNECT properties
// and payload fields.
func connect5(flags byte, cprops []byte, payload ...[]byte) []byte {
	parts := append([][]byte{str("MQTT"), by(5, flags, 0, 30), cprops}, payload...)
	return pk(0x10, parts...)
}

// connect311 builds a 3.1.1 CONNECT with the given flags and payload fields.
func connect311(flags byte, payload ...[]byte) []byte {
	parts := append([][]byte{str("MQTT"), by(4, flags, 0, 30)}, payload...)
	return pk(0x10, parts...)
}

// decodeErr decodes raw, expects an *Error with the given code and
// returns it.
func decodeErr(t *testing.T, raw []byte, v Version, code ReasonCode) *Error {
	t.Helper()
	p, _, err := Decode(raw, v)
	if err == nil {
		t.Fatalf("Decode(% x) = %#v, want error %v", short(raw), p, code)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Decode(% x): error %T %v is not *Error", short(raw), err, err)
	}
	if e.Code != code {
		t.Fatalf("Decode(% x): code %v (%v), want %v", short(raw), e.Code, err, code)
	}
	if !errors.Is(err, code) {
		t.Fatalf("errors.Is(%v, %v) = false", err, code)
	}
	return e
}

// decodeOK decodes raw and fails the test on error.
func decodeOK(t *testing.T, raw []byte, v Version) Packet {
	t.Helper()
	p, n, err := Decode(raw, v)
	if err != nil {
		t.Fatalf("Decode(% x): %v", short(raw), err)
	}
	if n != len(raw) {
		t.Fatalf("Decode consumed %d of %d bytes", n, len(raw))
	}
	return p
}

// encodeErr expects Encode to refuse p with the given code and leave dst alone.
func encodeErr(t *testing.T, p Packet, v Version, code ReasonCode) {
	t.Helper()
	dst := []byte("prefix")
	out, err := Encode(dst, p, v)
	if err == nil {
		t.Fatalf("Encode(%#v, %v) = % x, want error %v", p, v, out, code)
	}
	var e *Error
	if !errors.As(err, &e) || e.Code != code {
		t.Fatalf("Encode(%#v, %v): %v, want code %v", p, v, err, code)
	}
	if string(out) != "prefix" {
		t.Fatalf("Encode changed dst on error: %q", out)
	}
	if Size(p, v) != 0 {
		t.Fatalf("Size of an unencodable packet = %d, want 0", Size(p, v))
	}
}

// encodeOK encodes p and fails the test on error.
func encodeOK(t *testing.T, p Packet, v Version) []byte {
	t.Helper()
	b, err := Encode(nil, p, v)
	if err != nil {
		t.Fatalf("Encode(%#v, %v): %v", p, v, err)
	}
	return b
}

// badUTF8 are strings that break the UTF-8 Encoded String rules.
var badUTF8 = []struct{ name, s string }{
	{"invalid byte 0xFF", "a\xffb"},
	{"truncated sequence", "a\xc3"},
	{"overlong slash", "\xc0\xaf"},
	{"surrogate U+D800", "\xed\xa0\x80"},
	{"surrogate U+DFFF", "\xed\xbf\xbf"},
	{"U+0000", "a\x00b"},
	{"overlong U+0000", "\xc0\x80"},
	{"above U+10FFFF", "\xf4\x90\x80\x80"},
}

// short cuts b for error messages.
func short(b []byte) []byte {
	if len(b) > 48 {
		return b[:48]
	}
	return b
}

// propIDs lists every property identifier in ascending order.
var propIDs = [...]PropID{
	PropPayloadFormat, PropMessageExpiry, PropContentType, PropResponseTopic,
	PropCorrelationData, PropSubscriptionID, PropSessionExpiry, PropAssignedClientID,
	PropServerKeepAlive, PropAuthMethod, PropAuthData, PropRequestProblemInfo,
	PropWillDelay, PropRequestResponseInfo, PropResponseInfo, PropServerReference,
	PropReasonString, PropReceiveMaximum, PropTopicAliasMaximum, PropTopicAlias,
	PropMaximumQoS, PropRetainAvailable, PropUser, PropMaximumPacketSize,
	PropWildcardSubAvailable, PropSubIDAvailable, PropSharedSubAvailable,
}
