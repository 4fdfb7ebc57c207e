package packets

import (
	"bufio"
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// This file holds checks shared by the 3.1.1 and 5.0 statement tests in
// spec311_test.go and spec5_test.go, which name the statement IDs.

// stringFields builds, for a string s, packets that carry s in each
// UTF-8 string field the codec reads for version v.
func stringFields(v Version, s string) map[string][]byte {
	m := map[string][]byte{
		"PUBLISH Topic":           nil,
		"CONNECT ClientID":        nil,
		"CONNECT Will.Topic":      nil,
		"CONNECT Username":        nil,
		"SUBSCRIBE Filter":        nil,
		"UNSUBSCRIBE Filter":      nil,
		"CONNECT ProtocolName(*)": nil,
	}
	if v == V5 {
		m["PUBLISH Topic"] = pk(0x30, str(s), by(0))
		m["CONNECT ClientID"] = connect5(0x02, by(0), str(s))
		m["CONNECT Will.Topic"] = connect5(0x06, by(0), str("c"), by(0), str(s), str("m"))
		m["CONNECT Username"] = connect5(0x82, by(0), str("c"), str(s))
		m["SUBSCRIBE Filter"] = pk(0x82, u16(1), by(0), str(s), by(0))
		m["UNSUBSCRIBE Filter"] = pk(0xa2, u16(1), by(0), str(s))
		m["CONNECT ProtocolName(*)"] = pk(0x10, str("MQ"+s), by(5, 2, 0, 0, 0), str("c"))
		m["PUBLISH Properties.ContentType"] = pk(0x30, str("t"), props(by(0x03), str(s)))
		m["PUBLISH Properties.ResponseTopic"] = pk(0x30, str("t"), props(by(0x08), str(s)))
		m["PUBLISH Properties.User.Key"] = pk(0x30, str("t"), props(by(0x26), str(s), str("v")))
		m["PUBLISH Properties.User.Value"] = pk(0x30, str("t"), props(by(0x26), str("k"), str(s)))
		m["PUBACK Properties.ReasonString"] = pk(0x40, u16(1), by(0x80), props(by(0x1f), str(s)))
		m["CONNACK Properties.AssignedClientID"] = pk(0x20, by(0, 0), props(by(0x12), str(s)))
		m["AUTH Properties.AuthMethod"] = pk(0xf0, by(0x18), props(by(0x15), str(s)))
	} else {
		m["PUBLISH Topic"] = pk(0x30, str(s))
		m["CONNECT ClientID"] = connect311(0x02, str(s))
		m["CONNECT Will.Topic"] = connect311(0x06, str("c"), str(s), str("m"))
		m["CONNECT Username"] = connect311(0x82, str("c"), str(s))
		m["SUBSCRIBE Filter"] = pk(0x82, u16(1), str(s), by(0))
		m["UNSUBSCRIBE Filter"] = pk(0xa2, u16(1), str(s))
		m["CONNECT ProtocolName(*)"] = pk(0x10, str("MQ"+s), by(4, 2, 0, 0), str("c"))
	}
	return m
}

// checkBadStrings: every string field holding one of bad is a Malformed
// Packet, and ValidUTF8String refuses it.
func checkBadStrings(t *testing.T, v Version, bad []struct{ name, s string }) {
	for _, b := range bad {
		if ValidUTF8String(b.s) {
			t.Errorf("ValidUTF8String(%q) = true", b.s)
		}
		for field, raw := range stringFields(v, b.s) {
			t.Run(b.name+"/"+field, func(t *testing.T) {
				decodeErr(t, raw, v, MalformedPacket)
			})
		}
	}
}

func badUTF8Without(nul bool) []struct{ name, s string } {
	var out []struct{ name, s string }
	for _, b := range badUTF8 {
		if strings.Contains(b.name, "U+0000") == nul {
			out = append(out, b)
		}
	}
	return out
}

// checkBOMKept: U+FEFF at the start or inside a string is neither skipped
// nor removed, on decode and on encode.
func checkBOMKept(t *testing.T, v Version) {
	for _, s := range []string{"\uFEFF", "\uFEFFa/b", "a\uFEFFb"} {
		if !ValidUTF8String(s) {
			t.Fatalf("ValidUTF8String(%q) = false", s)
		}
		for field, raw := range stringFields(v, s) {
			if strings.HasSuffix(field, "(*)") {
				continue
			}
			p := decodeOK(t, raw, v)
			if !bytes.Contains(encodeOK(t, p, v), []byte(s)) {
				t.Errorf("%s: re-encoded packet lost the U+FEFF bytes", field)
			}
			if field == "PUBLISH Topic" && p.(*Publish).Topic != s {
				t.Errorf("topic %q, want %q", p.(*Publish).Topic, s)
			}
		}
	}
}

// vbiExamples are the variable byte integer boundaries of 5.0 Table 1-1 /
// 3.1.1 Table 2.4.
var vbiExamples = []struct {
	v   int
	enc []byte
}{
	{0, by(0x00)}, {127, by(0x7f)},
	{128, by(0x80, 0x01)}, {16383, by(0xff, 0x7f)},
	{16384, by(0x80, 0x80, 0x01)}, {2097151, by(0xff, 0xff, 0x7f)},
	{2097152, by(0x80, 0x80, 0x80, 0x01)}, {268435455, by(0xff, 0xff, 0xff, 0x7f)},
}

// checkVBI: the spec's examples encode and decode exactly; non-minimal and
// five-byte forms are malformed in the remaining length (Decode and
// Reader) and, for 5.0, in a Subscription Identifier.
func checkVBI(t *testing.T, v Version) {
	for _, x := range vbiExamples {
		if got := appendVBI(nil, x.v); !bytes.Equal(got, x.enc) {
			t.Errorf("appendVBI(%d) = % x, want % x", x.v, got, x.enc)
		}
		if vbiLen(x.v) != len(x.enc) {
			t.Errorf("vbiLen(%d) = %d", x.v, vbiLen(x.v))
		}
		got, n, st := decodeVBI(x.enc)
		if st != vbiOK || got != x.v || n != len(x.enc) {
			t.Errorf("decodeVBI(% x) = %d, %d, %v", x.enc, got, n, st)
		}
	}
	bad := [][]byte{
		by(0x80, 0x00),                   // 0 in two bytes
		by(0xff, 0x80, 0x00),             // 127 in three bytes
		by(0x80, 0x80, 0x80, 0x00),       // 0 in four bytes
		by(0xff, 0xff, 0xff, 0xff, 0x7f), // five bytes
		by(0x80, 0x80, 0x80, 0x80, 0x01), // five bytes
	}
	for _, enc := range bad {
		raw := append([]byte{0xc0}, enc...)
		raw = append(raw, make([]byte, 300)...)
		decodeErr(t, raw, v, MalformedPacket)
		r := NewReader(bufio.NewReader(bytes.NewReader(raw)), 0)
		r.SetVersion(v)
		if _, err := r.Read(); !errors.Is(err, MalformedPacket) {
			t.Errorf("Reader on remaining length % x: %v, want Malformed Packet", enc, err)
		}
	}
	// A three-byte remaining length that is minimal decodes.
	big := bytes.Repeat([]byte{'x'}, 16384-3-boolInt(v == V5))
	hdr := by(0x30, 0x80, 0x80, 0x01, 0x00, 0x01, 't')
	if v == V5 {
		hdr = append(hdr, 0)
	}
	p := decodeOK(t, append(hdr, big...), v)
	if len(p.(*Publish).Payload) != len(big) {
		t.Errorf("payload length %d", len(p.(*Publish).Payload))
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// flagCase is a first byte with reserved flags that must be refused.
var badFlagCases = []struct {
	name  string
	raw   []byte
	only5 bool
}{
	{"CONNECT 0001", connect311(0x02, str("c")), false}, // first byte patched below
	{"CONNACK 0001", pk(0x21, by(0, 0)), false},
	{"PUBACK 0010", pk(0x42, u16(1)), false},
	{"PUBREC 1000", pk(0x58, u16(1)), false},
	{"PUBREL 0000", pk(0x60, u16(1)), false},
	{"PUBREL 0011", pk(0x63, u16(1)), false},
	{"PUBCOMP 0100", pk(0x74, u16(1)), false},
	{"SUBSCRIBE 0000", pk(0x80, u16(1), str("a"), by(0)), false},
	{"SUBSCRIBE 0011", pk(0x83, u16(1), str("a"), by(0)), false},
	{"SUBACK 0010", pk(0x92, u16(1), by(0)), false},
	{"UNSUBSCRIBE 0000", pk(0xa0, u16(1), str("a")), false},
	{"UNSUBSCRIBE 1011", pk(0xab, u16(1), str("a")), false},
	{"UNSUBACK 0001", pk(0xb1, u16(1)), false},
	{"PINGREQ 0001", pk(0xc1), false},
	{"PINGRESP 1000", pk(0xd8), false},
	{"DISCONNECT 0001", pk(0xe1), false},
	{"DISCONNECT 1111", pk(0xef), false},
	{"AUTH 0001", pk(0xf1), true},
	{"AUTH 0010", pk(0xf2), true},
	{"reserved type 0", pk(0x00), false},
}

// checkFixedHeaderFlags: every reserved flag combination not in Table 2-2
// is a Malformed Packet, through Decode and through the Reader.
func checkFixedHeaderFlags(t *testing.T, v Version) {
	for _, c := range badFlagCases {
		if c.only5 && v != V5 {
			continue
		}
		raw := append([]byte(nil), c.raw...)
		if strings.HasPrefix(c.name, "CONNECT") {
			raw[0] = 0x11
		}
		t.Run(c.name, func(t *testing.T) {
			decodeErr(t, raw, v, MalformedPacket)
			r := NewReader(bufio.NewReader(bytes.NewReader(raw)), 0)
			r.SetVersion(v)
			if _, err := r.Read(); !errors.Is(err, MalformedPacket) {
				t.Errorf("Reader: %v, want Malformed Packet", err)
			}
		})
	}
	// The encoder writes exactly the Table 2-2 values.
	want := map[Type]byte{TypePubrel: 2, TypeSubscribe: 2, TypeUnsubscribe: 2}
	for _, g := range goldens {
		if g.v != v || g.decodeOnly || g.pkt.Type() == TypePublish {
			continue
		}
		b := encodeOK(t, g.pkt, v)
		if b[0]&0x0f != want[g.pkt.Type()] {
			t.Errorf("%s: encoded flags %04b", g.name, b[0]&0x0f)
		}
	}
	if v != V5 {
		decodeErr(t, pk(0xf0), v, MalformedPacket) // AUTH does not exist before 5.0
	}
}

// checkNonZeroPacketID: a zero Packet Identifier in SUBSCRIBE, UNSUBSCRIBE
// and QoS > 0 PUBLISH is refused by the decoder (Protocol Error) and the
// encoder.
func checkNonZeroPacketID(t *testing.T, v Version) {
	var pl []byte
	if v == V5 {
		pl = by(0)
	}
	for name, raw := range map[string][]byte{
		"PUBLISH QoS 1":     pk(0x32, str("t"), u16(0), pl),
		"PUBLISH QoS 2":     pk(0x34, str("t"), u16(0), pl),
		"SUBSCRIBE":         pk(0x82, u16(0), pl, str("a"), by(0)),
		"UNSUBSCRIBE":       pk(0xa2, u16(0), pl, str("a")),
		"PUBACK (answer)":   pk(0x40, u16(0)),
		"SUBACK (answer)":   pk(0x90, u16(0), pl, by(0)),
		"UNSUBACK (answer)": pk(0xb0, u16(0), pl, by(0)[:boolInt(v == V5)]),
	} {
		t.Run(name, func(t *testing.T) { decodeErr(t, raw, v, ProtocolError) })
	}
	encodeErr(t, &Publish{QoS: 1, Topic: "t"}, v, ProtocolError)
	encodeErr(t, &Publish{QoS: 2, Topic: "t"}, v, ProtocolError)
	encodeErr(t, &Subscribe{Subscriptions: []Subscription{{Filter: "a"}}}, v, ProtocolError)
	encodeErr(t, &Unsubscribe{Filters: []string{"a"}}, v, ProtocolError)
}

// checkQoS0NoPacketID: a QoS 0 PUBLISH is written without a Packet
// Identifier even if the field is set, and the bytes after the topic (and
// properties) are payload when decoding.
func checkQoS0NoPacketID(t *testing.T, v Version) {
	b := encodeOK(t, &Publish{Topic: "t", PacketID: 7, Payload: []byte("p")}, v)
	want := pk(0x30, str("t"), by(0)[:boolInt(v == V5)], by('p'))
	if !bytes.Equal(b, want) {
		t.Errorf("QoS 0 encoded % x, want % x", b, want)
	}
	p := decodeOK(t, pk(0x30, str("t"), by(0)[:boolInt(v == V5)], u16(7)), v).(*Publish)
	if p.PacketID != 0 || !bytes.Equal(p.Payload, u16(7)) {
		t.Errorf("QoS 0 decoded PacketID %d payload % x", p.PacketID, p.Payload)
	}
}

// checkAckPacketIDs: acknowledgements carry the Packet Identifier they
// were built with through encode and decode, unchanged.
func checkAckPacketIDs(t *testing.T, v Version, pkts ...Packet) {
	for _, p := range pkts {
		b := encodeOK(t, p, v)
		q := decodeOK(t, b, v)
		if !reflect.DeepEqual(p, q) {
			t.Errorf("%v: decoded %#v, want %#v", p.Type(), q, p)
		}
	}
}

// checkTopicNameNoWildcards: '+' and '#' anywhere in a PUBLISH topic name
// are refused (TopicNameInvalid) on decode, encode and by ValidTopicName.
func checkTopicNameNoWildcards(t *testing.T, v Version) {
	var pl []byte
	if v == V5 {
		pl = by(0)
	}
	for _, topic := range []string{"+", "#", "a/+", "a/#", "a+b", "a/b#", "+/a", "sport/tennis/#"} {
		if err := ValidTopicName(topic); !errors.Is(err, TopicNameInvalid) {
			t.Errorf("ValidTopicName(%q) = %v", topic, err)
		}
		decodeErr(t, pk(0x30, str(topic), pl), v, TopicNameInvalid)
		encodeErr(t, &Publish{Topic: topic}, v, TopicNameInvalid)
		decodeErr(t, pk(0x10, str(protocolName(v)), by(byte(v), 0x06, 0, 0), pl, str("c"), pl, str(topic), str("m")), v, TopicNameInvalid)
	}
	for _, topic := range []string{"a", "/", "a/b/c", "$SYS/x", " ", "sport/tennis/player1"} {
		if err := ValidTopicName(topic); err != nil {
			t.Errorf("ValidTopicName(%q) = %v", topic, err)
		}
	}
}

var validFilters = []string{"#", "+", "a/#", "a/+", "+/+", "+/a/#", "/", "//", "a//b", "/#", "+/", "sport/tennis/+/#", "$SYS/#", "a/+/b"}

// checkMultiLevelWildcard: '#' stands alone or after '/', and is last.
func checkMultiLevelWildcard(t *testing.T, v Version) {
	for _, f := range []string{"a#", "a/#/b", "#/", "##", "a/b#", "#a", "sport/tennis#"} {
		checkFilterRefused(t, v, f)
	}
	for _, f := range validFilters {
		checkFilterAccepted(t, v, f)
	}
}

// checkSingleLevelWildcard: '+' fills a whole level.
func checkSingleLevelWildcard(t *testing.T, v Version) {
	for _, f := range []string{"a+", "+a", "a/b+/c", "a/+b", "++", "sport+"} {
		checkFilterRefused(t, v, f)
	}
	for _, f := range validFilters {
		checkFilterAccepted(t, v, f)
	}
}

func checkFilterRefused(t *testing.T, v Version, f string) {
	t.Helper()
	var pl []byte
	if v == V5 {
		pl = by(0)
	}
	if err := ValidTopicFilter(f); !errors.Is(err, TopicFilterInvalid) {
		t.Errorf("ValidTopicFilter(%q) = %v", f, err)
	}
	decodeErr(t, pk(0x82, u16(1), pl, str(f), by(0)), v, TopicFilterInvalid)
	decodeErr(t, pk(0xa2, u16(1), pl, str(f)), v, TopicFilterInvalid)
	encodeErr(t, &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: f}}}, v, TopicFilterInvalid)
	encodeErr(t, &Unsubscribe{PacketID: 1, Filters: []string{f}}, v, TopicFilterInvalid)
}

func checkFilterAccepted(t *testing.T, v Version, f string) {
	t.Helper()
	if err := ValidTopicFilter(f); err != nil {
		t.Errorf("ValidTopicFilter(%q) = %v", f, err)
	}
	s := &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: f, QoS: 1}}}
	if q := decodeOK(t, encodeOK(t, s, v), v); !reflect.DeepEqual(q, s) {
		t.Errorf("filter %q: decoded %#v", f, q)
	}
}

// checkTopicLength: empty names and filters are refused; 65,535 bytes is
// the limit, which the two-byte length prefix enforces on decode and the
// encoder and validators check.
func checkTopicLength(t *testing.T, v Version) {
	if err := ValidTopicName(""); !errors.Is(err, TopicNameInvalid) {
		t.Errorf("ValidTopicName(\"\") = %v", err)
	}
	if err := ValidTopicFilter(""); !errors.Is(err, TopicFilterInvalid) {
		t.Errorf("ValidTopicFilter(\"\") = %v", err)
	}
	var pl []byte
	if v == V5 {
		pl = by(0)
	}
	decodeErr(t, pk(0x82, u16(1), pl, str(""), by(0)), v, TopicFilterInvalid)
	decodeErr(t, pk(0xa2, u16(1), pl, str("")), v, TopicFilterInvalid)
	encodeErr(t, &Subscribe{PacketID: 1, Subscriptions: []Subscription{{}}}, v, TopicFilterInvalid)
	if v != V5 {
		decodeErr(t, pk(0x30, str("")), v, TopicNameInvalid)
		encodeErr(t, &Publish{}, v, TopicNameInvalid)
	}
	max := strings.Repeat("a", 65535)
	if ValidTopicName(max) != nil || ValidTopicFilter(max) != nil {
		t.Error("65535-byte topic refused")
	}
	long := max + "a"
	if !errors.Is(ValidTopicName(long), TopicNameInvalid) || !errors.Is(ValidTopicFilter(long), TopicFilterInvalid) {
		t.Error("65536-byte topic accepted")
	}
	encodeErr(t, &Publish{Topic: long}, v, TopicNameInvalid)
	p := decodeOK(t, encodeOK(t, &Publish{Topic: max}, v), v).(*Publish)
	if p.Topic != max {
		t.Error("65535-byte topic did not round-trip")
	}
}

// checkTopicNoNull: U+0000 in topic names and filters is refused.
func checkTopicNoNull(t *testing.T, v Version) {
	var pl []byte
	if v == V5 {
		pl = by(0)
	}
	for _, s := range []string{"\x00", "a\x00", "a/\x00/b"} {
		if ValidTopicName(s) == nil || ValidTopicFilter(s) == nil {
			t.Errorf("%q accepted", s)
		}
		decodeErr(t, pk(0x30, str(s), pl), v, MalformedPacket)
		decodeErr(t, pk(0x82, u16(1), pl, str(s), by(0)), v, MalformedPacket)
		encodeErr(t, &Publish{Topic: s}, v, TopicNameInvalid)
	}
}

// checkConnectUTF8Field: field of CONNECT is read as a UTF-8 string.
func checkConnectUTF8Field(t *testing.T, v Version, field string) {
	for _, b := range badUTF8 {
		decodeErr(t, stringFields(v, b.s)["CONNECT "+field], v, MalformedPacket)
	}
	p := decodeOK(t, stringFields(v, "h\u00e9llo \u4e16\u754c")["CONNECT "+field], v).(*Connect)
	got := map[string]string{"ClientID": p.ClientID, "Username": p.Username}
	if p.Will != nil {
		got["Will.Topic"] = p.Will.Topic
	}
	if got[field] != "h\u00e9llo \u4e16\u754c" {
		t.Errorf("%s = %q", field, got[field])
	}
}

// checkPublishDupQoS0: DUP with QoS 0 is refused both ways.
func checkPublishDupQoS0(t *testing.T, v Version) {
	pl := by(0)[:boolInt(v == V5)]
	decodeErr(t, pk(0x38, str("t"), pl), v, ProtocolError)
	decodeErr(t, pk(0x39, str("t"), pl), v, ProtocolError)
	encodeErr(t, &Publish{Dup: true, Topic: "t"}, v, ProtocolError)
	if b := encodeOK(t, &Publish{Topic: "t"}, v); b[0]&0x08 != 0 {
		t.Errorf("QoS 0 written with DUP: % x", b)
	}
}

// checkPublishQoS3: both QoS bits set is a Malformed Packet.
func checkPublishQoS3(t *testing.T, v Version) {
	pl := by(0)[:boolInt(v == V5)]
	decodeErr(t, pk(0x36, str("t"), u16(1), pl), v, MalformedPacket)
	decodeErr(t, pk(0x3f, str("t"), u16(1), pl), v, MalformedPacket)
	encodeErr(t, &Publish{QoS: 3, Topic: "t", PacketID: 1}, v, MalformedPacket)
}

// checkWillFlagZero: with the Will Flag 0, Will QoS and Will Retain are 0
// and no Will fields are read (the bytes that follow are the next fields).
func checkWillFlagZero(t *testing.T, v Version, what string) {
	pl := by(0)[:boolInt(v == V5)]
	build := func(flags byte) []byte {
		return pk(0x10, str(protocolName(v)), by(byte(v), flags, 0, 0), pl, str("c"))
	}
	switch what {
	case "qos":
		decodeErr(t, build(0x0a), v, MalformedPacket) // will QoS 1
		decodeErr(t, build(0x12), v, MalformedPacket) // will QoS 2
	case "retain":
		decodeErr(t, build(0x22), v, MalformedPacket)
	case "fields":
		p := decodeOK(t, build(0x02), v).(*Connect)
		if p.Will != nil {
			t.Errorf("Will = %#v with Will Flag 0", p.Will)
		}
		// Bytes a will would have used are trailing garbage without the flag.
		decodeErr(t, pk(0x10, str(protocolName(v)), by(byte(v), 0x02, 0, 0), pl, str("c"), pl, str("w"), str("m")), v, MalformedPacket)
		b := encodeOK(t, &Connect{ClientID: "c", CleanStart: true}, v)
		if connectFlags(b, v)&0x3c != 0 {
			t.Errorf("will bits set in % x", b)
		}
	}
}

// connectFlags returns the Connect Flags byte of an encoded CONNECT whose
// remaining length fits one byte.
func connectFlags(b []byte, v Version) byte { return b[2+2+len(protocolName(v))+1] }

// checkWillFlagOne: with the Will Flag set the Will Topic and Will Payload
// (and 5.0 Will Properties) must be present.
func checkWillFlagOne(t *testing.T, v Version) {
	pl := by(0)[:boolInt(v == V5)]
	hdr := func(flags byte) []byte { return append(str(protocolName(v)), byte(v), flags, 0, 0) }
	decodeErr(t, pk(0x10, hdr(0x06), pl, str("c")), v, MalformedPacket)                    // nothing after client id
	decodeErr(t, pk(0x10, hdr(0x06), pl, str("c"), pl, str("w")), v, MalformedPacket)      // no payload
	decodeErr(t, pk(0x10, hdr(0x06), pl, str("c"), pl, by(0, 5, 'w')), v, MalformedPacket) // short topic
	p := decodeOK(t, pk(0x10, hdr(0x0e), pl, str("c"), pl, str("w"), str("m")), v).(*Connect)
	if p.Will == nil || p.Will.Topic != "w" || string(p.Will.Payload) != "m" || p.Will.QoS != 1 {
		t.Errorf("Will = %#v", p.Will)
	}
}

// checkWillQoS3: Will QoS 3 is a Malformed Packet; 0-2 are fine.
func checkWillQoS3(t *testing.T, v Version) {
	pl := by(0)[:boolInt(v == V5)]
	raw := func(flags byte) []byte {
		return pk(0x10, str(protocolName(v)), by(byte(v), flags, 0, 0), pl, str("c"), pl, str("w"), str("m"))
	}
	decodeErr(t, raw(0x1e), v, MalformedPacket)
	for q := byte(0); q < 3; q++ {
		if p := decodeOK(t, raw(0x06|q<<3), v).(*Connect); p.Will.QoS != q {
			t.Errorf("will QoS %d decoded as %d", q, p.Will.QoS)
		}
	}
	encodeErr(t, &Connect{ClientID: "c", Will: &Will{Topic: "w", QoS: 3}}, v, MalformedPacket)
}

// checkUserPass: the User Name and Password flags decide whether the
// fields are present, both ways.
func checkUserPass(t *testing.T, v Version, field string, set bool) {
	pl := by(0)[:boolInt(v == V5)]
	hdr := func(flags byte) []byte { return append(str(protocolName(v)), byte(v), flags, 0, 0) }
	switch {
	case field == "user" && !set:
		p := decodeOK(t, pk(0x10, hdr(0x02), pl, str("c")), v).(*Connect)
		if p.UsernameFlag || p.Username != "" {
			t.Errorf("user name %q without the flag", p.Username)
		}
		decodeErr(t, pk(0x10, hdr(0x02), pl, str("c"), str("u")), v, MalformedPacket)
	case field == "user" && set:
		p := decodeOK(t, pk(0x10, hdr(0x82), pl, str("c"), str("u")), v).(*Connect)
		if !p.UsernameFlag || p.Username != "u" {
			t.Errorf("user name %q flag %v", p.Username, p.UsernameFlag)
		}
		decodeErr(t, pk(0x10, hdr(0x82), pl, str("c")), v, MalformedPacket)
		b := encodeOK(t, &Connect{ClientID: "c", Username: "u"}, v)
		if !bytes.HasSuffix(b, str("u")) || connectFlags(b, v)&0x80 == 0 {
			t.Errorf("encoded % x", b)
		}
	case field == "pass" && !set:
		p := decodeOK(t, pk(0x10, hdr(0x82), pl, str("c"), str("u")), v).(*Connect)
		if p.PasswordFlag || p.Password != nil {
			t.Errorf("password %q without the flag", p.Password)
		}
		decodeErr(t, pk(0x10, hdr(0x82), pl, str("c"), str("u"), str("p")), v, MalformedPacket)
	case field == "pass" && set:
		p := decodeOK(t, pk(0x10, hdr(0xc2), pl, str("c"), str("u"), str("p")), v).(*Connect)
		if !p.PasswordFlag || string(p.Password) != "p" {
			t.Errorf("password %q flag %v", p.Password, p.PasswordFlag)
		}
		decodeErr(t, pk(0x10, hdr(0xc2), pl, str("c"), str("u")), v, MalformedPacket)
		// An empty password is still a password when the flag is set.
		p = decodeOK(t, pk(0x10, hdr(0xc2), pl, str("c"), str("u"), str("")), v).(*Connect)
		if !p.PasswordFlag || len(p.Password) != 0 {
			t.Errorf("empty password decoded as %q flag %v", p.Password, p.PasswordFlag)
		}
		b := encodeOK(t, p, v)
		if !bytes.HasSuffix(b, str("")) || !reflect.DeepEqual(decodeOK(t, b, v), p) {
			t.Errorf("empty password re-encoded as % x", b)
		}
	}
}

// checkConnectOrder: the payload is read in the order Client Identifier,
// (Will Properties), Will Topic, Will Payload, User Name, Password.
func checkConnectOrder(t *testing.T, v Version) {
	pl := by(0)[:boolInt(v == V5)]
	raw := pk(0x10, str(protocolName(v)), by(byte(v), 0xc6, 0, 0), pl, str("1"), pl, str("2"), str("3"), str("4"), str("5"))
	p := decodeOK(t, raw, v).(*Connect)
	got := []string{p.ClientID, p.Will.Topic, string(p.Will.Payload), p.Username, string(p.Password)}
	if !reflect.DeepEqual(got, []string{"1", "2", "3", "4", "5"}) {
		t.Errorf("fields in order %q", got)
	}
	if b := encodeOK(t, p, v); !bytes.Equal(b, raw) {
		t.Errorf("encoded % x, want % x", b, raw)
	}
}

// checkClientIDFirst: the Client Identifier is always present, even empty.
func checkClientIDFirst(t *testing.T, v Version) {
	pl := by(0)[:boolInt(v == V5)]
	decodeErr(t, pk(0x10, str(protocolName(v)), by(byte(v), 0x02, 0, 0), pl), v, MalformedPacket)
	decodeErr(t, pk(0x10, str(protocolName(v)), by(byte(v), 0x02, 0, 0), pl, by(0)), v, MalformedPacket)
	p := decodeOK(t, pk(0x10, str(protocolName(v)), by(byte(v), 0x02, 0, 0), pl, str("")), v).(*Connect)
	if p.ClientID != "" {
		t.Errorf("ClientID %q", p.ClientID)
	}
	b := encodeOK(t, &Connect{CleanStart: true}, v)
	if !bytes.HasSuffix(b, by(0, 0)) {
		t.Errorf("empty client id not written: % x", b)
	}
}

// checkConnectReserved: CONNECT flag bit 0 is reserved and must be 0.
func checkConnectReserved(t *testing.T, v Version) {
	pl := by(0)[:boolInt(v == V5)]
	e := decodeErr(t, pk(0x10, str(protocolName(v)), by(byte(v), 0x03, 0, 0), pl, str("c")), v, MalformedPacket)
	if e.Field != "ConnectFlags" || e.Packet != TypeConnect {
		t.Errorf("error names %v %q", e.Packet, e.Field)
	}
	if b := encodeOK(t, &Connect{ClientID: "c", CleanStart: true, Username: "u", Password: []byte("p"), Will: &Will{Topic: "w", QoS: 2, Retain: true}}, v); connectFlags(b, v) != 0xf6 {
		t.Errorf("reserved bit written: % x", b)
	}
}

// checkProtocolNameLevel: unknown protocol names and levels are
// UnsupportedProtocolVersion, the Reader keeps no version for them, and
// each supported pair is accepted.
func checkProtocolNameLevel(t *testing.T, cases map[string][]byte) {
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			decodeErr(t, raw, 0, UnsupportedProtocolVersion)
			r := NewReader(bufio.NewReader(bytes.NewReader(raw)), 0)
			if _, err := r.Read(); !errors.Is(err, UnsupportedProtocolVersion) {
				t.Errorf("Reader: %v", err)
			}
			if r.Version() != 0 {
				t.Errorf("Reader version %v after an unsupported CONNECT", r.Version())
			}
		})
	}
	for _, ok := range []struct {
		name string
		v    Version
	}{{"MQIsdp", V31}, {"MQTT", V311}, {"MQTT", V5}} {
		pl := by(0)[:boolInt(ok.v == V5)]
		p := decodeOK(t, pk(0x10, str(ok.name), by(byte(ok.v), 2, 0, 0), pl, str("c")), 0).(*Connect)
		if p.Version != ok.v || p.ProtocolName != ok.name {
			t.Errorf("decoded %q/%v", p.ProtocolName, p.Version)
		}
	}
}

// checkSubscribeNotEmpty and checkUnsubscribeNotEmpty: at least one filter.
func checkSubscribeNotEmpty(t *testing.T, v Version) {
	pl := by(0)[:boolInt(v == V5)]
	decodeErr(t, pk(0x82, u16(1), pl), v, ProtocolError)
	encodeErr(t, &Subscribe{PacketID: 1}, v, ProtocolError)
	decodeErr(t, pk(0x82, u16(1), pl, str("a")), v, MalformedPacket) // filter without options
}

func checkUnsubscribeNotEmpty(t *testing.T, v Version) {
	pl := by(0)[:boolInt(v == V5)]
	decodeErr(t, pk(0xa2, u16(1), pl), v, ProtocolError)
	encodeErr(t, &Unsubscribe{PacketID: 1}, v, ProtocolError)
	decodeErr(t, pk(0xa2, u16(1), pl, str("a"), by(0)), v, MalformedPacket) // half a length prefix
}

// checkFilterUTF8: SUBSCRIBE/UNSUBSCRIBE filters are UTF-8 strings.
func checkFilterUTF8(t *testing.T, v Version, typ string) {
	for _, b := range badUTF8 {
		decodeErr(t, stringFields(v, b.s)[typ+" Filter"], v, MalformedPacket)
	}
	p := decodeOK(t, stringFields(v, "capteur/temp\u00e9rature/\u6e29\u5ea6")[typ+" Filter"], v)
	var f string
	switch x := p.(type) {
	case *Subscribe:
		f = x.Subscriptions[0].Filter
	case *Unsubscribe:
		f = x.Filters[0]
	}
	if f != "capteur/temp\u00e9rature/\u6e29\u5ea6" {
		t.Errorf("filter %q", f)
	}
}
