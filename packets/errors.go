package packets

import (
	"errors"
	"strconv"
)

// Error is a decode or validation failure. Code tells the receiver how to
// react: MalformedPacket and ProtocolError close the connection (5.0 sends
// DISCONNECT with that code first), PacketTooLarge comes from the Reader's
// size limit, UnsupportedProtocolVersion from a CONNECT the codec does not
// speak, TopicNameInvalid/TopicFilterInvalid/TopicAliasInvalid from topic
// checks. Packet and Field name the place of the fault so logs are useful.
//
// errors.Is(err, MalformedPacket) works because Unwrap returns Code.
type Error struct {
	Code   ReasonCode
	Packet Type   // 0 when the packet type was not known yet
	Field  string // e.g. "Topic", "Properties.TopicAlias", "Subscriptions[2].Options"
	Detail string
}

// Error formats the failure as "packets: PUBLISH Topic: topic name invalid (0x90): contains '+'".
func (e *Error) Error() string {
	s := "packets: "
	if e.Packet != 0 {
		s += e.Packet.String()
		if e.Field != "" {
			s += " "
		}
	}
	s += e.Field
	if e.Packet != 0 || e.Field != "" {
		s += ": "
	}
	s += e.Code.String() + " (0x" + strconv.FormatUint(uint64(e.Code), 16) + ")"
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Unwrap returns the reason code, so errors.Is(err, packets.ProtocolError)
// and errors.As(err, &code) work.
func (e *Error) Unwrap() error { return e.Code }

// ErrIncomplete is returned by Decode when b holds less than one whole
// packet; the caller should read more bytes and try again. It is not an
// *Error because nothing is wrong with the bytes seen so far.
var ErrIncomplete = errors.New("packets: incomplete packet")

func malformed(t Type, field, detail string) *Error {
	return &Error{Code: MalformedPacket, Packet: t, Field: field, Detail: detail}
}

func protoErr(t Type, field, detail string) *Error {
	return &Error{Code: ProtocolError, Packet: t, Field: field, Detail: detail}
}

var typeNames = [16]string{
	"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
	"SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH",
}

// String returns the packet type's name as the specs spell it ("PUBLISH").
func (t Type) String() string {
	if t < 16 {
		return typeNames[t]
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// String returns "3.1", "3.1.1" or "5.0".
func (v Version) String() string {
	switch v {
	case V31:
		return "3.1"
	case V311:
		return "3.1.1"
	case V5:
		return "5.0"
	}
	return "Version(" + strconv.Itoa(int(v)) + ")"
}

// valid reports whether v is one of the supported protocol levels.
func (v Version) valid() bool { return v == V31 || v == V311 || v == V5 }
