package packets

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// Tests named after the MQTT 5.0 normative statements the codec enforces
// (see SPEC.md).

func TestMQTT5_1_5_4_1(t *testing.T) { checkBadStrings(t, V5, badUTF8Without(false)) }
func TestMQTT5_1_5_4_2(t *testing.T) { checkBadStrings(t, V5, badUTF8Without(true)) }
func TestMQTT5_1_5_4_3(t *testing.T) { checkBOMKept(t, V5) }

func TestMQTT5_1_5_5_1(t *testing.T) {
	checkVBI(t, V5)
	// Variable byte integers inside properties: Subscription Identifier and
	// the Property Length itself.
	decodeErr(t, pk(0x30, str("t"), by(3, 0x0b, 0x85, 0x00)), V5, MalformedPacket)
	decodeErr(t, pk(0x30, str("t"), by(0x82, 0x00)), V5, MalformedPacket)
	decodeErr(t, pk(0x30, str("t"), by(6, 0x0b, 0xff, 0xff, 0xff, 0xff, 0x01)), V5, MalformedPacket)
	p := decodeOK(t, pk(0x30, str("t"), by(5, 0x0b, 0xff, 0xff, 0xff, 0x7f)), V5).(*Publish)
	if !reflect.DeepEqual(p.Properties.SubscriptionIDs, []uint32{268435455}) {
		t.Errorf("SubscriptionIDs %v", p.Properties.SubscriptionIDs)
	}
	b := encodeOK(t, &Publish{Topic: "t", Properties: Properties{SubscriptionIDs: []uint32{128}}}, V5)
	if !bytes.Equal(b, pk(0x30, str("t"), by(3, 0x0b, 0x80, 0x01))) {
		t.Errorf("encoded % x", b)
	}
}

func TestMQTT5_1_5_7_1(t *testing.T) {
	for _, bad := range badUTF8 {
		decodeErr(t, pk(0x30, str("t"), props(by(0x26), str(bad.s), str("v"))), V5, MalformedPacket)
		decodeErr(t, pk(0x30, str("t"), props(by(0x26), str("k"), str(bad.s))), V5, MalformedPacket)
		encodeErr(t, &Publish{Topic: "t", Properties: Properties{User: []UserProperty{{bad.s, "v"}}}}, V5, MalformedPacket)
		encodeErr(t, &Publish{Topic: "t", Properties: Properties{User: []UserProperty{{"k", bad.s}}}}, V5, MalformedPacket)
	}
	decodeErr(t, pk(0x30, str("t"), props(by(0x26), str("k"))), V5, MalformedPacket) // value missing
	p := decodeOK(t, pk(0x30, str("t"), props(by(0x26), str(""), str(""))), V5).(*Publish)
	if !reflect.DeepEqual(p.Properties.User, []UserProperty{{"", ""}}) {
		t.Errorf("empty pair decoded as %#v", p.Properties.User)
	}
}

func TestMQTT5_2_1_3_1(t *testing.T) { checkFixedHeaderFlags(t, V5) }

func TestMQTT5_2_2_1_2(t *testing.T) { checkQoS0NoPacketID(t, V5) }
func TestMQTT5_2_2_1_3(t *testing.T) { checkNonZeroPacketID(t, V5) }

func TestMQTT5_2_2_1_4(t *testing.T) {
	encodeErr(t, &Publish{QoS: 1, Topic: "t"}, V5, ProtocolError)
	b := encodeOK(t, &Publish{QoS: 2, Topic: "t", PacketID: 0xbeef}, V5)
	if !bytes.Equal(b, pk(0x34, str("t"), u16(0xbeef), by(0))) {
		t.Errorf("encoded % x", b)
	}
}

func TestMQTT5_2_2_1_5(t *testing.T) {
	checkAckPacketIDs(t, V5, &Puback{PacketID: 1}, &Pubrec{PacketID: 0x8001, ReasonCode: QuotaExceeded},
		&Pubrel{PacketID: 65535}, &Pubcomp{PacketID: 42, ReasonCode: PacketIdentifierNotFound})
	encodeErr(t, &Pubcomp{}, V5, ProtocolError)
	decodeErr(t, pk(0x62, u16(0)), V5, ProtocolError)
}

func TestMQTT5_2_2_1_6(t *testing.T) {
	checkAckPacketIDs(t, V5, &Suback{PacketID: 513, ReasonCodes: []ReasonCode{GrantedQoS1}},
		&Unsuback{PacketID: 65535, ReasonCodes: []ReasonCode{Success}})
	encodeErr(t, &Suback{ReasonCodes: []ReasonCode{0}}, V5, ProtocolError)
	encodeErr(t, &Unsuback{ReasonCodes: []ReasonCode{0}}, V5, ProtocolError)
}

// Packets whose variable header always has properties write a zero
// Property Length when there are none, and the decoder requires it.
func TestMQTT5_2_2_2_1(t *testing.T) {
	for _, c := range []struct {
		p    Packet
		want []byte
	}{
		{&Connect{ClientID: "c"}, pk(0x10, str("MQTT"), by(5, 0, 0, 0), by(0), str("c"))},
		{&Connack{}, by(0x20, 3, 0, 0, 0)},
		{&Publish{Topic: "t"}, pk(0x30, str("t"), by(0))},
		{&Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a"}}}, pk(0x82, u16(1), by(0), str("a"), by(0))},
		{&Suback{PacketID: 1, ReasonCodes: []ReasonCode{0}}, pk(0x90, u16(1), by(0), by(0))},
		{&Unsubscribe{PacketID: 1, Filters: []string{"a"}}, pk(0xa2, u16(1), by(0), str("a"))},
		{&Unsuback{PacketID: 1, ReasonCodes: []ReasonCode{0}}, pk(0xb0, u16(1), by(0), by(0))},
		{&Connect{ClientID: "c", Will: &Will{Topic: "w"}}, pk(0x10, str("MQTT"), by(5, 4, 0, 0), by(0), str("c"), by(0), str("w"), str(""))},
	} {
		if b := encodeOK(t, c.p, V5); !bytes.Equal(b, c.want) {
			t.Errorf("%v: encoded % x, want % x", c.p.Type(), b, c.want)
		}
	}
	decodeErr(t, by(0x20, 2, 0, 0), V5, MalformedPacket) // CONNACK without property length
	decodeErr(t, pk(0x10, str("MQTT"), by(5, 2, 0, 0)), V5, MalformedPacket)
}

func TestMQTT5_3_1_2_1(t *testing.T) {
	checkProtocolNameLevel(t, map[string][]byte{
		"name mqtt":        pk(0x10, str("mqtt"), by(5, 2, 0, 0, 0), str("c")),
		"name MQIsdp lvl5": pk(0x10, str("MQIsdp"), by(5, 2, 0, 0, 0), str("c")),
		"name MQTT5":       pk(0x10, str("MQTT5"), by(5, 2, 0, 0, 0), str("c")),
	})
}

func TestMQTT5_3_1_2_2(t *testing.T) {
	checkProtocolNameLevel(t, map[string][]byte{
		"level 6":   pk(0x10, str("MQTT"), by(6, 2, 0, 0, 0), str("c")),
		"level 1":   pk(0x10, str("MQTT"), by(1, 2, 0, 0), str("c")),
		"level 133": pk(0x10, str("MQTT"), by(133, 2, 0, 0, 0), str("c")),
	})
	if b := encodeOK(t, &Connack{ReasonCode: UnsupportedProtocolVersion}, V5); !bytes.Equal(b, by(0x20, 3, 0, 0x84, 0)) {
		t.Errorf("CONNACK % x", b)
	}
}

func TestMQTT5_3_1_2_3(t *testing.T) { checkConnectReserved(t, V5) }
func TestMQTT5_3_1_2_9(t *testing.T) { checkWillFlagOne(t, V5) }
func TestMQTT5_3_1_2_11(t *testing.T) {
	checkWillFlagZero(t, V5, "qos")
	checkWillFlagZero(t, V5, "fields")
}
func TestMQTT5_3_1_2_12(t *testing.T) { checkWillQoS3(t, V5) }
func TestMQTT5_3_1_2_13(t *testing.T) { checkWillFlagZero(t, V5, "retain") }
func TestMQTT5_3_1_2_16(t *testing.T) { checkUserPass(t, V5, "user", false) }
func TestMQTT5_3_1_2_17(t *testing.T) { checkUserPass(t, V5, "user", true) }

func TestMQTT5_3_1_2_18(t *testing.T) {
	checkUserPass(t, V5, "pass", false)
	// Unlike 3.1.1, a password without a user name is allowed in 5.0.
	p := decodeOK(t, connect5(0x42, by(0), str("c"), str("p")), V5).(*Connect)
	if p.UsernameFlag || !p.PasswordFlag || string(p.Password) != "p" {
		t.Errorf("decoded %#v", p)
	}
}

func TestMQTT5_3_1_2_19(t *testing.T) { checkUserPass(t, V5, "pass", true) }
func TestMQTT5_3_1_3_1(t *testing.T)  { checkConnectOrder(t, V5) }
func TestMQTT5_3_1_3_3(t *testing.T)  { checkClientIDFirst(t, V5) }
func TestMQTT5_3_1_3_4(t *testing.T)  { checkConnectUTF8Field(t, V5, "ClientID") }
func TestMQTT5_3_1_3_11(t *testing.T) { checkConnectUTF8Field(t, V5, "Will.Topic") }
func TestMQTT5_3_1_3_12(t *testing.T) { checkConnectUTF8Field(t, V5, "Username") }

func TestMQTT5_3_2_2_1(t *testing.T) {
	for _, f := range []byte{0x02, 0x03, 0x80, 0xfe} {
		decodeErr(t, pk(0x20, by(f, 0, 0)), V5, MalformedPacket)
	}
	if b := encodeOK(t, &Connack{SessionPresent: true}, V5); b[2] != 1 {
		t.Errorf("acknowledge flags %#x", b[2])
	}
}

func TestMQTT5_3_2_2_6(t *testing.T) {
	decodeErr(t, pk(0x20, by(1, 0x80, 0)), V5, ProtocolError)
	encodeErr(t, &Connack{SessionPresent: true, ReasonCode: Banned}, V5, ProtocolError)
}

func TestMQTT5_3_2_2_8(t *testing.T) {
	checkReasonCodes(t, TypeConnack, func(c byte) []byte { return pk(0x20, by(0, c, 0)) },
		func(c ReasonCode) Packet { return &Connack{ReasonCode: c} },
		0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F)
}

// checkReasonCodes: exactly the listed codes decode and encode for the
// packet type; all other byte values are a Protocol Error both ways.
func checkReasonCodes(t *testing.T, typ Type, raw func(byte) []byte, pkt func(ReasonCode) Packet, allowed ...byte) {
	t.Helper()
	ok := map[byte]bool{}
	for _, c := range allowed {
		ok[c] = true
	}
	for c := 0; c < 256; c++ {
		if ValidReasonCode(typ, ReasonCode(c)) != ok[byte(c)] {
			t.Errorf("ValidReasonCode(%v, %#x) = %v", typ, c, !ok[byte(c)])
		}
		if ok[byte(c)] {
			p := decodeOK(t, raw(byte(c)), V5)
			if q := decodeOK(t, encodeOK(t, pkt(ReasonCode(c)), V5), V5); !reflect.DeepEqual(p, q) {
				t.Errorf("%#x: %#v vs %#v", c, p, q)
			}
		} else {
			decodeErr(t, raw(byte(c)), V5, ProtocolError)
			encodeErr(t, pkt(ReasonCode(c)), V5, ProtocolError)
		}
	}
}

func TestMQTT5_3_3_1_2(t *testing.T) { checkPublishDupQoS0(t, V5) }
func TestMQTT5_3_3_1_4(t *testing.T) { checkPublishQoS3(t, V5) }

func TestMQTT5_3_3_2_1(t *testing.T) {
	checkBadStrings(t, V5, badUTF8[:2])
	decodeErr(t, pk(0x30, by(0)), V5, MalformedPacket)
	// The empty topic name is allowed only with a Topic Alias (5.0 §3.3.2.1).
	decodeErr(t, pk(0x30, str(""), by(0)), V5, ProtocolError)
	p := decodeOK(t, pk(0x30, str(""), props(by(0x23, 0, 9))), V5).(*Publish)
	if p.Topic != "" || p.Properties.TopicAlias != 9 {
		t.Errorf("decoded %#v", p)
	}
	encodeErr(t, &Publish{}, V5, TopicNameInvalid)
	encodeOK(t, &Publish{Properties: Properties{TopicAlias: 9}}, V5)
}

func TestMQTT5_3_3_2_2(t *testing.T) { checkTopicNameNoWildcards(t, V5) }

func TestMQTT5_3_3_2_8(t *testing.T) {
	e := decodeErr(t, pk(0x30, str("t"), props(by(0x23, 0, 0))), V5, TopicAliasInvalid)
	if e.Field != "Properties.TopicAlias" {
		t.Errorf("field %q", e.Field)
	}
	// A Topic Alias of 0 is "absent" for the encoder unless marked.
	var pr Properties
	pr.Mark(PropTopicAlias)
	b := encodeOK(t, &Publish{Topic: "t", Properties: pr}, V5)
	decodeErr(t, b, V5, TopicAliasInvalid)
}

func TestMQTT5_3_3_2_13(t *testing.T) {
	for _, bad := range badUTF8 {
		decodeErr(t, pk(0x30, str("t"), props(by(0x08), str(bad.s))), V5, MalformedPacket)
		decodeErr(t, connect5(0x06, by(0), str("c"), props(by(0x08), str(bad.s)), str("w"), str("m")), V5, MalformedPacket)
	}
}

func TestMQTT5_3_3_2_14(t *testing.T) {
	for _, rt := range []string{"a/+", "#", "a/#", "+"} {
		decodeErr(t, pk(0x30, str("t"), props(by(0x08), str(rt))), V5, ProtocolError)
		decodeErr(t, connect5(0x06, by(0), str("c"), props(by(0x08), str(rt)), str("w"), str("m")), V5, ProtocolError)
		encodeErr(t, &Publish{Topic: "t", Properties: Properties{ResponseTopic: rt}}, V5, ProtocolError)
	}
	p := decodeOK(t, pk(0x30, str("t"), props(by(0x08), str("reply/to/me"))), V5).(*Publish)
	if p.Properties.ResponseTopic != "reply/to/me" {
		t.Errorf("ResponseTopic %q", p.Properties.ResponseTopic)
	}
}

// User Properties keep their order and duplicates through decode and
// encode, so the broker can forward them unchanged.
func TestMQTT5_3_3_2_18(t *testing.T) {
	users := []UserProperty{{"z", "1"}, {"a", "2"}, {"z", "3"}, {"a", "2"}, {"", ""}}
	p := &Publish{Topic: "t", Properties: Properties{User: users}}
	q := decodeOK(t, encodeOK(t, p, V5), V5).(*Publish)
	if !reflect.DeepEqual(q.Properties.User, users) {
		t.Errorf("user properties %#v", q.Properties.User)
	}
	w := decodeOK(t, encodeOK(t, &Connect{ClientID: "c", Will: &Will{Topic: "w", Properties: Properties{User: users}}}, V5), V5).(*Connect)
	if !reflect.DeepEqual(w.Will.Properties.User, users) {
		t.Errorf("will user properties %#v", w.Will.Properties.User)
	}
}

func TestMQTT5_3_3_2_19(t *testing.T) {
	for _, bad := range badUTF8 {
		decodeErr(t, pk(0x30, str("t"), props(by(0x03), str(bad.s))), V5, MalformedPacket)
		encodeErr(t, &Publish{Topic: "t", Properties: Properties{ContentType: bad.s}}, V5, MalformedPacket)
	}
	p := decodeOK(t, pk(0x30, str("t"), props(by(0x03), str("application/json; charset=utf-8"))), V5).(*Publish)
	if p.Properties.ContentType != "application/json; charset=utf-8" {
		t.Errorf("ContentType %q", p.Properties.ContentType)
	}
}

var pubackCodeList = []byte{0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99}

func TestMQTT5_3_4_2_1(t *testing.T) {
	checkReasonCodes(t, TypePuback, func(c byte) []byte { return pk(0x40, u16(1), by(c)) },
		func(c ReasonCode) Packet { return &Puback{PacketID: 1, ReasonCode: c} }, pubackCodeList...)
}

func TestMQTT5_3_5_2_1(t *testing.T) {
	checkReasonCodes(t, TypePubrec, func(c byte) []byte { return pk(0x50, u16(1), by(c), by(0)) },
		func(c ReasonCode) Packet { return &Pubrec{PacketID: 1, ReasonCode: c} }, pubackCodeList...)
}

func TestMQTT5_3_6_1_1(t *testing.T) {
	for _, f := range []byte{0x60, 0x61, 0x63, 0x6a} {
		decodeErr(t, pk(f, u16(1)), V5, MalformedPacket)
	}
	if b := encodeOK(t, &Pubrel{PacketID: 1, ReasonCode: PacketIdentifierNotFound}, V5); b[0] != 0x62 {
		t.Errorf("PUBREL first byte %#x", b[0])
	}
}

func TestMQTT5_3_6_2_1(t *testing.T) {
	checkReasonCodes(t, TypePubrel, func(c byte) []byte { return pk(0x62, u16(1), by(c)) },
		func(c ReasonCode) Packet { return &Pubrel{PacketID: 1, ReasonCode: c} }, 0x00, 0x92)
}

func TestMQTT5_3_7_2_1(t *testing.T) {
	checkReasonCodes(t, TypePubcomp, func(c byte) []byte { return pk(0x70, u16(1), by(c), by(0)) },
		func(c ReasonCode) Packet { return &Pubcomp{PacketID: 1, ReasonCode: c} }, 0x00, 0x92)
}

func TestMQTT5_3_8_1_1(t *testing.T) {
	for _, f := range []byte{0x80, 0x81, 0x83, 0x8a, 0x8f} {
		decodeErr(t, pk(f, u16(1), by(0), str("a"), by(0)), V5, MalformedPacket)
	}
	if b := encodeOK(t, &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a"}}}, V5); b[0] != 0x82 {
		t.Errorf("SUBSCRIBE first byte %#x", b[0])
	}
}

func TestMQTT5_3_8_3_1(t *testing.T) { checkFilterUTF8(t, V5, "SUBSCRIBE") }
func TestMQTT5_3_8_3_2(t *testing.T) { checkSubscribeNotEmpty(t, V5) }

func TestMQTT5_3_8_3_4(t *testing.T) {
	decodeErr(t, pk(0x82, u16(1), by(0), str("$share/g/a"), by(0x04)), V5, ProtocolError)
	encodeErr(t, &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "$share/g/a", NoLocal: true}}}, V5, ProtocolError)
	// No Local on an ordinary filter, and a shared one without it, are fine.
	decodeOK(t, pk(0x82, u16(1), by(0), str("a"), by(0x04), str("$share/g/a"), by(0)), V5)
}

func TestMQTT5_3_8_3_5(t *testing.T) {
	for _, o := range []byte{0x40, 0x80, 0xc0, 0x41} {
		decodeErr(t, pk(0x82, u16(1), by(0), str("a"), by(o)), V5, MalformedPacket)
	}
	decodeErr(t, pk(0x82, u16(1), by(0), str("a"), by(0x03)), V5, MalformedPacket) // QoS 3
	decodeErr(t, pk(0x82, u16(1), by(0), str("a"), by(0x30)), V5, ProtocolError)   // Retain Handling 3
	encodeErr(t, &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a", RetainHandling: 3}}}, V5, ProtocolError)
	for o := 0; o < 0x40; o++ {
		if o&3 == 3 || o>>4 == 3 {
			continue
		}
		s := decodeOK(t, pk(0x82, u16(1), by(0), str("a"), by(byte(o))), V5).(*Subscribe)
		if b := encodeOK(t, s, V5); b[len(b)-1] != byte(o) {
			t.Errorf("options %#x re-encoded as %#x", o, b[len(b)-1])
		}
	}
}

func TestMQTT5_3_9_3_2(t *testing.T) {
	checkReasonCodes(t, TypeSuback, func(c byte) []byte { return pk(0x90, u16(1), by(0), by(0, c)) },
		func(c ReasonCode) Packet { return &Suback{PacketID: 1, ReasonCodes: []ReasonCode{0, c}} },
		0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2)
	decodeErr(t, pk(0x90, u16(1), by(0)), V5, ProtocolError)
}

func TestMQTT5_3_10_1_1(t *testing.T) {
	for _, f := range []byte{0xa0, 0xa1, 0xa3, 0xaa, 0xaf} {
		decodeErr(t, pk(f, u16(1), by(0), str("a")), V5, MalformedPacket)
	}
	if b := encodeOK(t, &Unsubscribe{PacketID: 1, Filters: []string{"a"}}, V5); b[0] != 0xa2 {
		t.Errorf("UNSUBSCRIBE first byte %#x", b[0])
	}
}

func TestMQTT5_3_10_3_1(t *testing.T) { checkFilterUTF8(t, V5, "UNSUBSCRIBE") }
func TestMQTT5_3_10_3_2(t *testing.T) { checkUnsubscribeNotEmpty(t, V5) }

func TestMQTT5_3_11_3_2(t *testing.T) {
	checkReasonCodes(t, TypeUnsuback, func(c byte) []byte { return pk(0xb0, u16(1), by(0), by(c)) },
		func(c ReasonCode) Packet { return &Unsuback{PacketID: 1, ReasonCodes: []ReasonCode{c}} },
		0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91)
	decodeErr(t, pk(0xb0, u16(1), by(0)), V5, ProtocolError)
}

func TestMQTT5_3_14_1_1(t *testing.T) {
	for f := byte(1); f < 16; f++ {
		e := decodeErr(t, pk(0xe0|f, by(0x00)), V5, MalformedPacket)
		if e.Packet != TypeDisconnect || e.Field != "Flags" {
			t.Errorf("error names %v %q", e.Packet, e.Field)
		}
	}
}

func TestMQTT5_3_14_2_1(t *testing.T) {
	checkReasonCodes(t, TypeDisconnect, func(c byte) []byte { return pk(0xe0, by(c)) },
		func(c ReasonCode) Packet { return &Disconnect{ReasonCode: c} },
		0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97,
		0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2)
}

func TestMQTT5_3_15_1_1(t *testing.T) {
	for f := byte(1); f < 16; f++ {
		decodeErr(t, pk(0xf0|f), V5, MalformedPacket)
	}
	if b := encodeOK(t, &Auth{ReasonCode: ReAuthenticate}, V5); b[0] != 0xf0 {
		t.Errorf("AUTH first byte %#x", b[0])
	}
}

func TestMQTT5_3_15_2_1(t *testing.T) {
	checkReasonCodes(t, TypeAuth, func(c byte) []byte { return pk(0xf0, by(c, 0)) },
		func(c ReasonCode) Packet { return &Auth{ReasonCode: c} }, 0x00, 0x18, 0x19)
}

func TestMQTT5_4_3_1_1(t *testing.T) { checkPublishDupQoS0(t, V5) }

func TestMQTT5_4_7_0_1(t *testing.T) {
	checkTopicNameNoWildcards(t, V5)
	for _, f := range validFilters {
		checkFilterAccepted(t, V5, f)
	}
}

func TestMQTT5_4_7_1_1(t *testing.T) { checkMultiLevelWildcard(t, V5) }
func TestMQTT5_4_7_1_2(t *testing.T) { checkSingleLevelWildcard(t, V5) }
func TestMQTT5_4_7_3_1(t *testing.T) { checkTopicLength(t, V5) }
func TestMQTT5_4_7_3_2(t *testing.T) { checkTopicNoNull(t, V5) }

func TestMQTT5_4_7_3_3(t *testing.T) {
	checkTopicLength(t, V5)
	// A length prefix larger than the rest of the packet is malformed.
	decodeErr(t, pk(0x30, by(0xff, 0xff), []byte("abc")), V5, MalformedPacket)
}

func TestMQTT5_4_8_2_1(t *testing.T) {
	for _, f := range []string{"$share//a", "$share/", "$share//"} {
		_, _, shared, err := ParseShared(f)
		if !shared || !errors.Is(err, TopicFilterInvalid) {
			t.Errorf("ParseShared(%q) = %v, %v", f, shared, err)
		}
		checkFilterRefused(t, V5, f)
	}
	g, sub, shared, err := ParseShared("$share/x/a/b")
	if g != "x" || sub != "a/b" || !shared || err != nil {
		t.Errorf("ParseShared = %q %q %v %v", g, sub, shared, err)
	}
}

func TestMQTT5_4_8_2_2(t *testing.T) {
	for _, f := range []string{"$share/g+/a", "$share/+/a", "$share/#/a", "$share/g#", "$share/g", "$share/g/", "$share/g/a#", "$share/g/a+/b"} {
		_, _, shared, err := ParseShared(f)
		if !shared || !errors.Is(err, TopicFilterInvalid) {
			t.Errorf("ParseShared(%q) = %v, %v", f, shared, err)
		}
		checkFilterRefused(t, V5, f)
	}
	for f, want := range map[string][2]string{
		"$share/g/#":         {"g", "#"},
		"$share/group-1/+/x": {"group-1", "+/x"},
		"$share/g/$SYS/a":    {"g", "$SYS/a"},
		"$share/g//":         {"g", "/"},
		"$share/\u00e9/a":    {"\u00e9", "a"},
	} {
		g, sub, shared, err := ParseShared(f)
		if err != nil || !shared || g != want[0] || sub != want[1] {
			t.Errorf("ParseShared(%q) = %q %q %v %v", f, g, sub, shared, err)
		}
		checkFilterAccepted(t, V5, f)
	}
	for _, f := range []string{"$share", "$sharex/a/b", "a/$share/g/b", "$SHARE/g/a"} {
		if _, sub, shared, err := ParseShared(f); shared || err != nil || sub != f {
			t.Errorf("ParseShared(%q) treated as shared: %v %v", f, shared, err)
		}
	}
}
