// Package packets is Beacon's MQTT codec: it decodes and encodes the 15
// control packets of MQTT 3.1 (protocol level 3, "MQIsdp"), 3.1.1 (4) and
// 5.0 (5), and validates them. It does no I/O policy and imports nothing
// else from Beacon.
//
// Reading: a Reader wraps a ByteReader (e.g. a *bufio.Reader) and returns
// one Packet at a time (*Connect, *Publish, ...). The first packet of a connection is a CONNECT;
// the Reader decodes it with the version inside and then uses that version
// for every later packet (SetVersion sets it by hand on a client). The
// maximum packet size is checked before the body is allocated. Decode and
// DecodeBody decode from bytes already in memory (ErrIncomplete asks for
// more). Decoded strings and byte slices alias the packet's body buffer;
// the Reader allocates a fresh body per packet and never reuses it.
//
// Writing: Encode appends a packet to a caller's buffer without allocating
// when the buffer has room; (*Publish).AppendHeader writes all of a PUBLISH
// but its payload so the payload can be sent uncopied; Size gives the
// encoded length (for Maximum Packet Size). AppendProperties and
// DecodeProperties serialise 5.0 properties on their own, e.g. for storage.
//
// Errors: every failure is an *Error whose Code is a ReasonCode telling a
// Malformed Packet from a Protocol Error (and PacketTooLarge,
// UnsupportedProtocolVersion, TopicNameInvalid, TopicFilterInvalid,
// TopicAliasInvalid), with the packet type and field name.
// errors.Is(err, packets.MalformedPacket) works. ReasonCode implements error
// and Stringer; ConnackReturnCode and ReasonCodeFromConnack311 map 3.1.1
// CONNACK return codes, which the codec does on its own when encoding or
// decoding a 3.1/3.1.1 CONNACK.
//
// Validation helpers shared with the broker: ValidTopicName,
// ValidTopicFilter, ParseShared ($share/{group}/{filter}), ValidUTF8String
// and ValidReasonCode.
//
// Lines enforcing a normative statement of the specs carry its ID, e.g.
// [MQTT-3.3.1-4]; SPEC.md lists the tests named after those IDs.
package packets
