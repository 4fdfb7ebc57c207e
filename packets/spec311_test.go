package packets

import (
	"bytes"
	"testing"
)

// Tests named after the MQTT 3.1.1 normative statements the codec
// enforces (see SPEC.md). Most also run for MQTT 3.1 (level 3), which
// shares the 3.1.1 wire format apart from the protocol name.

func TestMQTT311_1_5_3_1(t *testing.T) {
	checkBadStrings(t, V311, badUTF8Without(false))
	checkBadStrings(t, V31, badUTF8Without(false))
}

func TestMQTT311_1_5_3_2(t *testing.T) { checkBadStrings(t, V311, badUTF8Without(true)) }

func TestMQTT311_1_5_3_3(t *testing.T) {
	checkBOMKept(t, V311)
	checkBOMKept(t, V31)
}

// Table 2.4 examples and the four-byte limit of 3.1.1 §2.2.3 (no ID).
func TestMQTT311_VariableByteInteger(t *testing.T) {
	checkVBI(t, V311)
	checkVBI(t, V31)
}

func TestMQTT311_2_2_2_1(t *testing.T) { checkFixedHeaderFlags(t, V311) }

func TestMQTT311_2_2_2_2(t *testing.T) {
	checkFixedHeaderFlags(t, V31)
	// 3.1 retransmissions set DUP on PUBREL/SUBSCRIBE/UNSUBSCRIBE; 3.1.1 must not.
	decodeErr(t, pk(0x6a, u16(1)), V311, MalformedPacket)
	decodeOK(t, pk(0x6a, u16(1)), V31)
	decodeOK(t, pk(0x8a, u16(1), str("a"), by(0)), V31)
}

func TestMQTT311_2_3_1_1(t *testing.T) {
	checkNonZeroPacketID(t, V311)
	checkNonZeroPacketID(t, V31)
}

func TestMQTT311_2_3_1_5(t *testing.T) { checkQoS0NoPacketID(t, V311) }

func TestMQTT311_2_3_1_6(t *testing.T) {
	checkAckPacketIDs(t, V311, &Puback{PacketID: 1}, &Pubrec{PacketID: 0x8001}, &Pubrel{PacketID: 65535}, &Pubcomp{PacketID: 42})
	encodeErr(t, &Puback{}, V311, ProtocolError)
	encodeErr(t, &Pubrel{}, V311, ProtocolError)
}

func TestMQTT311_2_3_1_7(t *testing.T) {
	checkAckPacketIDs(t, V311, &Suback{PacketID: 513, ReasonCodes: []ReasonCode{GrantedQoS1}}, &Unsuback{PacketID: 65535})
	encodeErr(t, &Suback{ReasonCodes: []ReasonCode{0}}, V311, ProtocolError)
	encodeErr(t, &Unsuback{}, V311, ProtocolError)
}

func TestMQTT311_3_1_2_1(t *testing.T) {
	checkProtocolNameLevel(t, map[string][]byte{
		"name mqtt":          pk(0x10, str("mqtt"), by(4, 2, 0, 0), str("c")),
		"name MQIsdp level4": pk(0x10, str("MQIsdp"), by(4, 2, 0, 0), str("c")),
		"name MQTT level 3":  pk(0x10, str("MQTT"), by(3, 2, 0, 0), str("c")),
		"name empty":         pk(0x10, str(""), by(4, 2, 0, 0), str("c")),
	})
}

func TestMQTT311_3_1_2_2(t *testing.T) {
	checkProtocolNameLevel(t, map[string][]byte{
		"level 0":   pk(0x10, str("MQTT"), by(0, 2, 0, 0), str("c")),
		"level 6":   pk(0x10, str("MQTT"), by(6, 2, 0, 0), str("c")),
		"level 255": pk(0x10, str("MQTT"), by(255, 2, 0, 0), str("c")),
	})
	// The broker answers with return code 1, which the codec maps from 0x84.
	b := encodeOK(t, &Connack{ReasonCode: UnsupportedProtocolVersion}, V311)
	if !bytes.Equal(b, by(0x20, 2, 0, 1)) {
		t.Errorf("CONNACK % x", b)
	}
}

func TestMQTT311_3_1_2_3(t *testing.T) {
	checkConnectReserved(t, V311)
	checkConnectReserved(t, V31)
}

func TestMQTT311_3_1_2_9(t *testing.T)  { checkWillFlagOne(t, V311) }
func TestMQTT311_3_1_2_11(t *testing.T) { checkWillFlagZero(t, V311, "fields") }
func TestMQTT311_3_1_2_13(t *testing.T) { checkWillFlagZero(t, V311, "qos") }
func TestMQTT311_3_1_2_14(t *testing.T) { checkWillQoS3(t, V311) }
func TestMQTT311_3_1_2_15(t *testing.T) { checkWillFlagZero(t, V311, "retain") }
func TestMQTT311_3_1_2_18(t *testing.T) { checkUserPass(t, V311, "user", false) }
func TestMQTT311_3_1_2_19(t *testing.T) { checkUserPass(t, V311, "user", true) }
func TestMQTT311_3_1_2_20(t *testing.T) { checkUserPass(t, V311, "pass", false) }
func TestMQTT311_3_1_2_21(t *testing.T) { checkUserPass(t, V311, "pass", true) }

func TestMQTT311_3_1_2_22(t *testing.T) {
	for _, v := range []Version{V31, V311} {
		decodeErr(t, pk(0x10, str(protocolName(v)), by(byte(v), 0x42, 0, 0), str("c"), str("p")), v, MalformedPacket)
		encodeErr(t, &Connect{ClientID: "c", Password: []byte("p")}, v, ProtocolError)
		encodeErr(t, &Connect{ClientID: "c", PasswordFlag: true}, v, ProtocolError)
	}
}

func TestMQTT311_3_1_3_1(t *testing.T)  { checkConnectOrder(t, V311); checkConnectOrder(t, V31) }
func TestMQTT311_3_1_3_3(t *testing.T)  { checkClientIDFirst(t, V311) }
func TestMQTT311_3_1_3_4(t *testing.T)  { checkConnectUTF8Field(t, V311, "ClientID") }
func TestMQTT311_3_1_3_10(t *testing.T) { checkConnectUTF8Field(t, V311, "Will.Topic") }
func TestMQTT311_3_1_3_11(t *testing.T) { checkConnectUTF8Field(t, V311, "Username") }

func TestMQTT311_3_2_2_4(t *testing.T) {
	decodeErr(t, pk(0x20, by(1, 5)), V311, ProtocolError)
	encodeErr(t, &Connack{SessionPresent: true, ReasonCode: NotAuthorized}, V311, ProtocolError)
	// Reserved acknowledge-flag bits must be zero too.
	decodeErr(t, pk(0x20, by(2, 0)), V311, MalformedPacket)
}

// When no 3.1.1 return code fits, the server closes without a CONNACK:
// the encoder refuses a reason code without a 3.1.1 equivalent, and the
// mapping of ConnackReturnCode is the one of 3.1.1 §3.2.2.3.
func TestMQTT311_3_2_2_6(t *testing.T) {
	for code, want := range map[ReasonCode]byte{Success: 0, UnsupportedProtocolVersion: 1, ClientIdentifierNotValid: 2,
		ServerUnavailable: 3, ServerBusy: 3, BadUsernameOrPassword: 4, NotAuthorized: 5} {
		got, ok := code.ConnackReturnCode()
		if !ok || got != want {
			t.Errorf("%v.ConnackReturnCode() = %d, %v; want %d", code, got, ok, want)
		}
		b := encodeOK(t, &Connack{ReasonCode: code}, V311)
		if b[3] != want {
			t.Errorf("%v encoded as % x", code, b)
		}
	}
	for _, code := range []ReasonCode{UnspecifiedError, Banned, BadAuthenticationMethod, QuotaExceeded, ProtocolError} {
		if _, ok := code.ConnackReturnCode(); ok {
			t.Errorf("%v maps to a 3.1.1 return code", code)
		}
		encodeErr(t, &Connack{ReasonCode: code}, V311, ProtocolError)
	}
	for rc := 0; rc < 256; rc++ {
		raw := pk(0x20, by(0, byte(rc)))
		if rc <= 5 {
			p := decodeOK(t, raw, V311).(*Connack)
			if back, _ := p.ReasonCode.ConnackReturnCode(); back != byte(rc) || ReasonCodeFromConnack311(byte(rc)) != p.ReasonCode {
				t.Errorf("return code %d decoded as %v", rc, p.ReasonCode)
			}
		} else {
			decodeErr(t, raw, V311, ProtocolError)
		}
	}
}

func TestMQTT311_3_3_1_2(t *testing.T) { checkPublishDupQoS0(t, V311) }
func TestMQTT311_3_3_1_4(t *testing.T) { checkPublishQoS3(t, V311); checkPublishQoS3(t, V31) }

func TestMQTT311_3_3_2_1(t *testing.T) {
	checkBadStrings(t, V311, badUTF8[:2])
	decodeErr(t, pk(0x30, by(0)), V311, MalformedPacket)         // no topic at all
	decodeErr(t, pk(0x30, by(0, 9, 'a')), V311, MalformedPacket) // topic runs past the end
}

func TestMQTT311_3_3_2_2(t *testing.T) { checkTopicNameNoWildcards(t, V311) }

func TestMQTT311_3_6_1_1(t *testing.T) {
	for _, f := range []byte{0x60, 0x61, 0x63, 0x64, 0x68, 0x6f} {
		decodeErr(t, pk(f, u16(1)), V311, MalformedPacket)
	}
	if b := encodeOK(t, &Pubrel{PacketID: 1}, V311); b[0] != 0x62 {
		t.Errorf("PUBREL first byte %#x", b[0])
	}
}

func TestMQTT311_3_8_1_1(t *testing.T) {
	for _, f := range []byte{0x80, 0x81, 0x83, 0x84, 0x88, 0x8f} {
		decodeErr(t, pk(f, u16(1), str("a"), by(0)), V311, MalformedPacket)
	}
	if b := encodeOK(t, &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a"}}}, V311); b[0] != 0x82 {
		t.Errorf("SUBSCRIBE first byte %#x", b[0])
	}
}

func TestMQTT311_3_8_3_1(t *testing.T) { checkFilterUTF8(t, V311, "SUBSCRIBE") }
func TestMQTT311_3_8_3_3(t *testing.T) { checkSubscribeNotEmpty(t, V311) }

func TestMQTT311_3_8_3_4(t *testing.T) {
	for _, o := range []byte{0x03, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xfc, 0x05} {
		decodeErr(t, pk(0x82, u16(1), str("a"), by(o)), V311, MalformedPacket)
	}
	// The 5.0-only options are not written for 3.1.1.
	b := encodeOK(t, &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a", QoS: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 2}}}, V311)
	if b[len(b)-1] != 0x02 {
		t.Errorf("options byte %#x", b[len(b)-1])
	}
	encodeErr(t, &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a", QoS: 3}}}, V311, MalformedPacket)
}

func TestMQTT311_3_9_3_2(t *testing.T) {
	for c := 0; c < 256; c++ {
		raw := pk(0x90, u16(1), by(byte(c)))
		if c <= 2 || c == 0x80 {
			decodeOK(t, raw, V311)
		} else {
			decodeErr(t, raw, V311, ProtocolError)
		}
	}
	// Every 5.0 failure code goes out as 0x80; codes 3-0x7f cannot be sent.
	b := encodeOK(t, &Suback{PacketID: 1, ReasonCodes: []ReasonCode{GrantedQoS1, TopicFilterInvalid, NotAuthorized, 0x80, GrantedQoS2}}, V311)
	if !bytes.Equal(b, by(0x90, 7, 0, 1, 1, 0x80, 0x80, 0x80, 2)) {
		t.Errorf("encoded % x", b)
	}
	encodeErr(t, &Suback{PacketID: 1, ReasonCodes: []ReasonCode{0x11}}, V311, ProtocolError)
	decodeErr(t, pk(0x90, u16(1)), V311, ProtocolError) // no return code at all
}

func TestMQTT311_3_10_1_1(t *testing.T) {
	for _, f := range []byte{0xa0, 0xa1, 0xa3, 0xa4, 0xa8, 0xaf} {
		decodeErr(t, pk(f, u16(1), str("a")), V311, MalformedPacket)
	}
	if b := encodeOK(t, &Unsubscribe{PacketID: 1, Filters: []string{"a"}}, V311); b[0] != 0xa2 {
		t.Errorf("UNSUBSCRIBE first byte %#x", b[0])
	}
}

func TestMQTT311_3_10_3_1(t *testing.T) { checkFilterUTF8(t, V311, "UNSUBSCRIBE") }
func TestMQTT311_3_10_3_2(t *testing.T) { checkUnsubscribeNotEmpty(t, V311) }

func TestMQTT311_3_14_1_1(t *testing.T) {
	for f := byte(1); f < 16; f++ {
		decodeErr(t, pk(0xe0|f), V311, MalformedPacket)
	}
	decodeErr(t, pk(0xe0, by(0)), V311, MalformedPacket) // 3.1.1 DISCONNECT has no body
	decodeOK(t, pk(0xe0), V311)
}

func TestMQTT311_4_3_1_1(t *testing.T) { checkPublishDupQoS0(t, V311) }

func TestMQTT311_4_7_1_1(t *testing.T) { checkTopicNameNoWildcards(t, V31) }
func TestMQTT311_4_7_1_2(t *testing.T) { checkMultiLevelWildcard(t, V311) }
func TestMQTT311_4_7_1_3(t *testing.T) { checkSingleLevelWildcard(t, V311) }
func TestMQTT311_4_7_3_1(t *testing.T) { checkTopicLength(t, V311) }
func TestMQTT311_4_7_3_2(t *testing.T) { checkTopicNoNull(t, V311) }
func TestMQTT311_4_7_3_3(t *testing.T) { checkTopicLength(t, V31) }
