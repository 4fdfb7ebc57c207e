package packets

import "strconv"

var reasonNames = map[ReasonCode]string{
	0x00: "Success",
	0x01: "Granted QoS 1",
	0x02: "Granted QoS 2",
	0x04: "Disconnect with Will Message",
	0x10: "No matching subscribers",
	0x11: "No subscription existed",
	0x18: "Continue authentication",
	0x19: "Re-authenticate",
	0x80: "Unspecified error",
	0x81: "Malformed Packet",
	0x82: "Protocol Error",
	0x83: "Implementation specific error",
	0x84: "Unsupported Protocol Version",
	0x85: "Client Identifier not valid",
	0x86: "Bad User Name or Password",
	0x87: "Not authorized",
	0x88: "Server unavailable",
	0x89: "Server busy",
	0x8A: "Banned",
	0x8B: "Server shutting down",
	0x8C: "Bad authentication method",
	0x8D: "Keep Alive timeout",
	0x8E: "Session taken over",
	0x8F: "Topic Filter invalid",
	0x90: "Topic Name invalid",
	0x91: "Packet Identifier in use",
	0x92: "Packet Identifier not found",
	0x93: "Receive Maximum exceeded",
	0x94: "Topic Alias invalid",
	0x95: "Packet too large",
	0x96: "Message rate too high",
	0x97: "Quota exceeded",
	0x98: "Administrative action",
	0x99: "Payload format invalid",
	0x9A: "Retain not supported",
	0x9B: "QoS not supported",
	0x9C: "Use another server",
	0x9D: "Server moved",
	0x9E: "Shared Subscriptions not supported",
	0x9F: "Connection rate exceeded",
	0xA0: "Maximum connect time",
	0xA1: "Subscription Identifiers not supported",
	0xA2: "Wildcard Subscriptions not supported",
}

// String returns the reason code's name from the 5.0 table (§2.4). Values
// shared by several names (0x00) print the most general one.
func (c ReasonCode) String() string {
	if s, ok := reasonNames[c]; ok {
		return s
	}
	return "Reason code 0x" + strconv.FormatUint(uint64(c), 16)
}

// Error makes a ReasonCode usable as an error value, so a handler can return
// the code it wants sent back to the client.
func (c ReasonCode) Error() string { return "mqtt: " + c.String() }

// ConnackReturnCode maps a 5.0 CONNACK reason code to the MQTT 3.1.1 CONNACK
// return code (3.1.1 §3.2.2.3). ok is false when 3.1.1 has no equivalent, in
// which case a 3.1.1 server closes the connection without a CONNACK
// [MQTT-3.2.2-6].
func (c ReasonCode) ConnackReturnCode() (code byte, ok bool) {
	switch c {
	case Success:
		return ConnAccepted311, true
	case UnsupportedProtocolVersion:
		return ConnRefusedProtocolVersion311, true
	case ClientIdentifierNotValid:
		return ConnRefusedIdentifier311, true
	case ServerUnavailable, ServerBusy:
		return ConnRefusedServerUnavailable, true
	case BadUsernameOrPassword:
		return ConnRefusedBadCredentials311, true
	case NotAuthorized:
		return ConnRefusedNotAuthorized311, true
	}
	return 0, false
}

// ReasonCodeFromConnack311 maps a 3.1.1 CONNACK return code to the 5.0
// reason code used in Connack.ReasonCode. Reserved return codes (6-255) map
// to UnspecifiedError.
func ReasonCodeFromConnack311(b byte) ReasonCode {
	switch b {
	case ConnAccepted311:
		return Success
	case ConnRefusedProtocolVersion311:
		return UnsupportedProtocolVersion
	case ConnRefusedIdentifier311:
		return ClientIdentifierNotValid
	case ConnRefusedServerUnavailable:
		return ServerUnavailable
	case ConnRefusedBadCredentials311:
		return BadUsernameOrPassword
	case ConnRefusedNotAuthorized311:
		return NotAuthorized
	}
	return UnspecifiedError
}

// codeSet is a 256-bit set of reason codes.
type codeSet [4]uint64

func (s *codeSet) has(c ReasonCode) bool { return s[c>>6]&(1<<(c&63)) != 0 }

func newCodeSet(codes ...ReasonCode) codeSet {
	var s codeSet
	for _, c := range codes {
		s[c>>6] |= 1 << (c & 63)
	}
	return s
}

// The reason codes each 5.0 packet may carry (5.0 §3.x.2.1 tables). A sender
// uses only these [MQTT-3.2.2-8] [MQTT-3.4.2-1] [MQTT-3.5.2-1]
// [MQTT-3.6.2-1] [MQTT-3.7.2-1] [MQTT-3.9.3-2] [MQTT-3.11.3-2]
// [MQTT-3.14.2-1] [MQTT-3.15.2-1]; the decoder refuses the others as a
// Protocol Error.
var (
	connackCodes = newCodeSet(0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88,
		0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F)
	pubackCodes   = newCodeSet(0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99)
	pubrelCodes   = newCodeSet(0x00, 0x92)
	subackCodes   = newCodeSet(0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2)
	unsubackCodes = newCodeSet(0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91)
	disconnCodes  = newCodeSet(0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E,
		0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F,
		0xA0, 0xA1, 0xA2)
	authCodes     = newCodeSet(0x00, 0x18, 0x19)
	suback311Code = newCodeSet(0x00, 0x01, 0x02, 0x80) // [MQTT-3.9.3-2] (3.1.1)
)

// ValidReasonCode reports whether code may appear in a 5.0 packet of type
// t (for SUBACK/UNSUBACK: as one of the per-filter codes).
func ValidReasonCode(t Type, code ReasonCode) bool {
	var s *codeSet
	switch t {
	case TypeConnack:
		s = &connackCodes
	case TypePuback, TypePubrec:
		s = &pubackCodes
	case TypePubrel, TypePubcomp:
		s = &pubrelCodes
	case TypeSuback:
		s = &subackCodes
	case TypeUnsuback:
		s = &unsubackCodes
	case TypeDisconnect:
		s = &disconnCodes
	case TypeAuth:
		s = &authCodes
	default:
		return false
	}
	return s.has(code)
}
