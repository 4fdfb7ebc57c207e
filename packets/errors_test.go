package packets

import (
	"errors"
	"strings"
	"testing"
)

func TestErrorMessages(t *testing.T) {
	_, _, err := Decode(pk(0x30, str("a/+")), V311)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"PUBLISH", "Topic", "Topic Name invalid", "0x90", "wildcard"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not mention %q", err.Error(), want)
		}
	}
	var code ReasonCode
	if !errors.As(err, &code) || code != TopicNameInvalid {
		t.Errorf("errors.As code = %v", code)
	}
	if errors.Is(err, MalformedPacket) {
		t.Error("a topic error matches MalformedPacket")
	}
	e := &Error{Code: ProtocolError}
	if e.Error() != "packets: Protocol Error (0x82)" {
		t.Errorf("bare error %q", e.Error())
	}
}

func TestReasonCodeStrings(t *testing.T) {
	for c, want := range map[ReasonCode]string{
		Success: "Success", GrantedQoS2: "Granted QoS 2", MalformedPacket: "Malformed Packet",
		WildcardSubsNotSupported: "Wildcard Subscriptions not supported", 0x7f: "Reason code 0x7f",
	} {
		if c.String() != want {
			t.Errorf("%#x.String() = %q", byte(c), c.String())
		}
	}
	var err error = NotAuthorized
	if err.Error() != "mqtt: Not authorized" {
		t.Errorf("Error() = %q", err.Error())
	}
	if !UnspecifiedError.IsError() || GrantedQoS2.IsError() {
		t.Error("IsError")
	}
	if TypeUnsuback.String() != "UNSUBACK" || Type(16).String() != "Type(16)" || V311.String() != "3.1.1" || Version(9).String() != "Version(9)" {
		t.Error("Type/Version names")
	}
	if PropTopicAlias.String() != "TopicAlias" || PropID(0x7f).String() != "PropID(0x7f)" {
		t.Error("PropID names")
	}
	for b := 0; b < 256; b++ {
		rc := ReasonCodeFromConnack311(byte(b))
		if back, ok := rc.ConnackReturnCode(); b <= 5 && (!ok || back != byte(b)) {
			t.Errorf("return code %d -> %v -> %d", b, rc, back)
		} else if b > 5 && rc != UnspecifiedError {
			t.Errorf("reserved return code %d -> %v", b, rc)
		}
	}
}

func TestEncodeRejects(t *testing.T) {
	encodeErr(t, &Auth{}, V311, ProtocolError)
	if _, err := Encode(nil, &Pingreq{}, 7); !errors.Is(err, UnsupportedProtocolVersion) {
		t.Errorf("version 7: %v", err)
	}
	if _, err := Encode(nil, nil, V5); err == nil {
		t.Error("nil packet encoded")
	}
	encodeErr(t, &Connect{ClientID: string(make([]byte, 65536))}, V5, ProtocolError)
	encodeErr(t, &Connect{ClientID: "\xff"}, V5, MalformedPacket)
	encodeErr(t, &Publish{Topic: "t", Properties: Properties{CorrelationData: make([]byte, 65536)}}, V5, ProtocolError)
	encodeErr(t, &Publish{Topic: "t", Properties: Properties{SubscriptionIDs: []uint32{0}}}, V5, ProtocolError)
	// A payload one byte too large for the remaining length. The bytes are
	// never touched (the length check comes first), so the pages of this
	// 256 MB slice are never written.
	huge := make([]byte, MaxRemainingLength-2)
	encodeErr(t, &Publish{Topic: "t", Payload: huge}, V311, PacketTooLarge)
	if Size(&Publish{Topic: "t", Payload: huge[:len(huge)-1]}, V311) != MaxRemainingLength+5 {
		t.Error("largest PUBLISH not sized")
	}
	encodeErr(t, &Suback{PacketID: 1}, V5, ProtocolError)
	encodeErr(t, &Unsuback{PacketID: 1}, V5, ProtocolError)
	// 3.1.1 has no reason codes on acks and DISCONNECT: they are left out.
	if b := encodeOK(t, &Puback{PacketID: 1, ReasonCode: NotAuthorized}, V311); len(b) != 4 {
		t.Errorf("3.1.1 PUBACK % x", b)
	}
	if b := encodeOK(t, &Disconnect{ReasonCode: ServerShuttingDown}, V311); len(b) != 2 {
		t.Errorf("3.1.1 DISCONNECT % x", b)
	}
}

// Encoding into a buffer with room allocates nothing, for every golden
// packet; AppendHeader leaves the payload out.
func TestEncodeNoAllocs(t *testing.T) {
	buf := make([]byte, 0, 4096)
	for _, g := range goldens {
		if g.decodeOnly {
			continue
		}
		allocs := testing.AllocsPerRun(20, func() { buf, _ = Encode(buf[:0], g.pkt, g.v) })
		if allocs != 0 {
			t.Errorf("%s: %v allocations", g.name, allocs)
		}
	}
	p := &Publish{QoS: 1, PacketID: 9, Topic: "a/b", Payload: []byte("payload")}
	h, err := p.AppendHeader(nil, V5)
	if err != nil {
		t.Fatal(err)
	}
	full := encodeOK(t, p, V5)
	if string(append(h, p.Payload...)) != string(full) {
		t.Errorf("header+payload % x != % x", h, full)
	}
	if _, err := (&Publish{Topic: "#"}).AppendHeader(nil, V5); !errors.Is(err, TopicNameInvalid) {
		t.Errorf("AppendHeader with a wildcard topic: %v", err)
	}
}

// Decoding a PUBLISH costs one allocation (the *Publish): topic and
// payload alias the input.
func TestDecodePublishAllocs(t *testing.T) {
	for _, v := range []Version{V311, V5} {
		raw := encodeOK(t, &Publish{QoS: 1, PacketID: 1, Topic: "a/b/c", Payload: make([]byte, 512)}, v)
		if a := testing.AllocsPerRun(50, func() { _, _, _ = Decode(raw, v) }); a > 1 {
			t.Errorf("%v: %v allocations", v, a)
		}
	}
}

// Errors in list entries and Will Properties name the entry.
func TestErrorFieldNames(t *testing.T) {
	for raw, field := range map[string]string{
		string(pk(0x82, u16(1), by(0), str("a"), by(0), str("b"), by(0x40))):               "Subscriptions[1].Options",
		string(pk(0x82, u16(1), by(0), str("a/#/b"), by(0))):                               "Subscriptions[0].Filter",
		string(pk(0xa2, u16(1), by(0), str("a"), str("b"), str("+x"))):                     "Filters[2]",
		string(pk(0x90, u16(1), by(0), by(0, 1, 0x03))):                                    "ReasonCodes[2]",
		string(pk(0xb0, u16(1), by(0), by(0x05))):                                          "ReasonCodes[0]",
		string(connect5(0x06, by(0), str("c"), props(by(0x23, 0, 1)), str("w"), str("m"))): "Will.Properties.TopicAlias",
	} {
		_, _, err := Decode([]byte(raw), V5)
		var e *Error
		if !errors.As(err, &e) || e.Field != field {
			t.Errorf("% x: %v, want field %q", raw, err, field)
		}
	}
}
