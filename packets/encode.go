package packets

import "strconv"

// encoder is implemented by every packet type of this package.
type encoder interface {
	Packet
	headerByte(v Version) byte
	// bodyLen validates the packet for version v and returns its remaining length.
	bodyLen(v Version) (int, error)
	// appendBody appends the variable header and payload; bodyLen must have succeeded.
	appendBody(dst []byte, v Version) []byte
}

// Encode appends p, encoded for protocol version v, to dst and returns the
// extended slice. It allocates only when dst lacks capacity. The packet is
// checked first, so Encode never writes bytes a receiver must refuse: a
// failure is an *Error naming the field, and dst is returned unchanged.
// Fields a version does not have (properties and reason codes in 3.1.1,
// 5.0-only subscription options) are left out. A CONNECT is written with
// the protocol name and level of v; its ProtocolName and Version fields
// are not consulted.
func Encode(dst []byte, p Packet, v Version) ([]byte, error) {
	if pub, ok := p.(*Publish); ok {
		out, err := pub.AppendHeader(dst, v)
		if err != nil {
			return dst, err
		}
		return append(out, pub.Payload...), nil
	}
	e, ok := p.(encoder)
	if !ok || e == nil {
		return dst, &Error{Code: ImplementationSpecificError, Detail: "unknown packet value"}
	}
	if !v.valid() {
		return dst, &Error{Code: UnsupportedProtocolVersion, Packet: p.Type(), Detail: "cannot encode for " + v.String()}
	}
	n, err := e.bodyLen(v)
	if err != nil {
		return dst, err
	}
	if n > MaxRemainingLength {
		return dst, &Error{Code: PacketTooLarge, Packet: p.Type(), Detail: "remaining length " + strconv.Itoa(n) + " exceeds 268435455"}
	}
	dst = append(dst, e.headerByte(v))
	dst = appendVBI(dst, n)
	return e.appendBody(dst, v), nil
}

// AppendHeader appends everything of the PUBLISH except the payload: the
// fixed header (whose remaining length counts the payload), topic, packet
// identifier and properties. Writing the result and then p.Payload (for
// example through net.Buffers) sends the packet without copying the payload.
func (p *Publish) AppendHeader(dst []byte, v Version) ([]byte, error) {
	if !v.valid() {
		return dst, &Error{Code: UnsupportedProtocolVersion, Packet: TypePublish, Detail: "cannot encode for " + v.String()}
	}
	n, err := p.bodyLen(v)
	if err != nil {
		return dst, err
	}
	if n > MaxRemainingLength {
		return dst, &Error{Code: PacketTooLarge, Packet: TypePublish, Detail: "remaining length " + strconv.Itoa(n) + " exceeds 268435455"}
	}
	dst = append(dst, p.headerByte(v))
	dst = appendVBI(dst, n)
	dst = appendString(dst, p.Topic)
	if p.QoS > 0 {
		dst = appendU16(dst, p.PacketID)
	}
	if v == V5 {
		dst = appendProps(dst, &p.Properties, propsLen(&p.Properties))
	}
	return dst, nil
}

// Size returns the number of bytes Encode would produce for p (fixed
// header included), for comparing against a Maximum Packet Size. It
// returns 0 when p cannot be encoded for v.
func Size(p Packet, v Version) int {
	e, ok := p.(encoder)
	if !ok || e == nil || !v.valid() {
		return 0
	}
	n, err := e.bodyLen(v)
	if err != nil || n > MaxRemainingLength {
		return 0
	}
	return 1 + vbiLen(n) + n
}

func encErr(t Type, field, detail string) error {
	return &Error{Code: ProtocolError, Packet: t, Field: field, Detail: detail}
}

func strLen(t Type, field, s string) (int, error) {
	if len(s) > 65535 {
		return 0, encErr(t, field, "longer than 65535 bytes")
	}
	if !ValidUTF8String(s) {
		return 0, &Error{Code: MalformedPacket, Packet: t, Field: field, Detail: "not a valid UTF-8 encoded string"}
	}
	return 2 + len(s), nil
}

func binLen(t Type, field string, b []byte) (int, error) {
	if len(b) > 65535 {
		return 0, encErr(t, field, "longer than 65535 bytes")
	}
	return 2 + len(b), nil
}

// propsEncLen checks p for context t and returns its encoded size with the
// Property Length prefix.
func propsEncLen(p *Properties, t Type) (int, error) {
	m := p.presentMask()
	if m == 0 {
		return 1, nil // just the zero Property Length
	}
	if err := checkProps(p, t, m); err != nil {
		return 0, err
	}
	for _, s := range [...]string{p.ContentType, p.ResponseTopic, p.AssignedClientID, p.AuthMethod, p.ResponseInfo, p.ServerReference, p.ReasonString} {
		if !ValidUTF8String(s) {
			return 0, &Error{Code: MalformedPacket, Packet: t, Field: "Properties", Detail: "string property is not valid UTF-8"}
		}
	}
	for _, u := range p.User {
		if !ValidUTF8String(u.Key) || !ValidUTF8String(u.Value) { // [MQTT-1.5.7-1]
			return 0, &Error{Code: MalformedPacket, Packet: t, Field: "Properties.User", Detail: "user property is not valid UTF-8"}
		}
	}
	if p.ResponseTopic != "" {
		if err := ValidTopicName(p.ResponseTopic); err != nil { // [MQTT-3.3.2-14]
			return 0, encErr(t, "Properties.ResponseTopic", err.(*Error).Detail)
		}
	}
	n := propsLenMask(p, m)
	return vbiLen(n) + n, nil
}

func protocolName(v Version) string {
	if v == V31 {
		return "MQIsdp"
	}
	return "MQTT"
}

func (*Connect) headerByte(Version) byte { return byte(TypeConnect) << 4 }

func (c *Connect) flags(v Version) byte {
	var f byte
	if c.CleanStart {
		f |= 0x02
	}
	if c.Will != nil {
		f |= 0x04 | c.Will.QoS<<3
		if c.Will.Retain {
			f |= 0x20
		}
	}
	if c.PasswordFlag || len(c.Password) > 0 {
		f |= 0x40
	}
	if c.UsernameFlag || c.Username != "" {
		f |= 0x80
	}
	return f
}

func (c *Connect) bodyLen(v Version) (int, error) {
	t := TypeConnect
	n := 2 + len(protocolName(v)) + 1 + 1 + 2
	f := c.flags(v)
	if v != V5 && f&0x40 != 0 && f&0x80 == 0 { // [MQTT-3.1.2-22] (3.1.1)
		return 0, encErr(t, "PasswordFlag", "password without user name")
	}
	if v == V5 {
		k, err := propsEncLen(&c.Properties, TypeConnect)
		if err != nil {
			return 0, err
		}
		n += k
	}
	k, err := strLen(t, "ClientID", c.ClientID)
	if err != nil {
		return 0, err
	}
	n += k
	if w := c.Will; w != nil {
		if w.QoS > 2 { // [MQTT-3.1.2-12] (5.0) [MQTT-3.1.2-14] (3.1.1)
			return 0, &Error{Code: MalformedPacket, Packet: t, Field: "Will.QoS", Detail: "QoS above 2"}
		}
		if err := ValidTopicName(w.Topic); err != nil {
			return 0, &Error{Code: TopicNameInvalid, Packet: t, Field: "Will.Topic", Detail: err.(*Error).Detail}
		}
		if v == V5 {
			k, err := propsEncLen(&w.Properties, WillProperties)
			if err != nil {
				return 0, err
			}
			n += k
		}
		n += 2 + len(w.Topic)
		if k, err = binLen(t, "Will.Payload", w.Payload); err != nil {
			return 0, err
		}
		n += k
	}
	if f&0x80 != 0 {
		if k, err = strLen(t, "Username", c.Username); err != nil {
			return 0, err
		}
		n += k
	}
	if f&0x40 != 0 {
		if k, err = binLen(t, "Password", c.Password); err != nil {
			return 0, err
		}
		n += k
	}
	return n, nil
}

func (c *Connect) appendBody(dst []byte, v Version) []byte {
	dst = appendString(dst, protocolName(v))
	f := c.flags(v)
	dst = append(dst, byte(v), f)
	dst = appendU16(dst, c.KeepAlive)
	if v == V5 {
		dst = appendProps(dst, &c.Properties, propsLen(&c.Properties))
	}
	dst = appendString(dst, c.ClientID)
	if w := c.Will; w != nil {
		if v == V5 {
			dst = appendProps(dst, &w.Properties, propsLen(&w.Properties))
		}
		dst = appendString(dst, w.Topic)
		dst = appendBinary(dst, w.Payload)
	}
	if f&0x80 != 0 {
		dst = appendString(dst, c.Username)
	}
	if f&0x40 != 0 {
		dst = appendBinary(dst, c.Password)
	}
	return dst
}

func (*Connack) headerByte(Version) byte { return byte(TypeConnack) << 4 }

func (c *Connack) bodyLen(v Version) (int, error) {
	if c.SessionPresent && c.ReasonCode != Success { // [MQTT-3.2.2-6] (5.0) [MQTT-3.2.2-4] (3.1.1)
		return 0, encErr(TypeConnack, "SessionPresent", "Session Present with a non-zero reason code")
	}
	if v != V5 {
		if _, ok := c.ReasonCode.ConnackReturnCode(); !ok { // [MQTT-3.2.2-6] (3.1.1): close without CONNACK instead
			return 0, encErr(TypeConnack, "ReasonCode", c.ReasonCode.String()+" has no 3.1.1 return code")
		}
		return 2, nil
	}
	if !connackCodes.has(c.ReasonCode) { // [MQTT-3.2.2-8]
		return 0, encErr(TypeConnack, "ReasonCode", c.ReasonCode.String()+" is not a CONNACK reason code")
	}
	k, err := propsEncLen(&c.Properties, TypeConnack)
	return 2 + k, err
}

func (c *Connack) appendBody(dst []byte, v Version) []byte {
	var f byte
	if c.SessionPresent {
		f = 1
	}
	code := byte(c.ReasonCode)
	if v != V5 {
		code, _ = c.ReasonCode.ConnackReturnCode()
		return append(dst, f, code)
	}
	dst = append(dst, f, code)
	return appendProps(dst, &c.Properties, propsLen(&c.Properties))
}

func (p *Publish) headerByte(Version) byte {
	h := byte(TypePublish)<<4 | p.QoS<<1
	if p.Dup {
		h |= 0x08
	}
	if p.Retain {
		h |= 0x01
	}
	return h
}

func (p *Publish) bodyLen(v Version) (int, error) {
	t := TypePublish
	if p.QoS > 2 { // [MQTT-3.3.1-4]
		return 0, &Error{Code: MalformedPacket, Packet: t, Field: "QoS", Detail: "QoS above 2"}
	}
	if p.QoS == 0 && p.Dup { // [MQTT-3.3.1-2]
		return 0, encErr(t, "Dup", "DUP set on a QoS 0 message")
	}
	if p.QoS > 0 && p.PacketID == 0 { // [MQTT-2.2.1-3] [MQTT-2.2.1-4] [MQTT-2.3.1-1]
		return 0, encErr(t, "PacketID", "packet identifier 0 on a QoS > 0 message")
	}
	if !(v == V5 && p.Topic == "" && p.Properties.TopicAlias != 0) {
		if err := ValidTopicName(p.Topic); err != nil { // [MQTT-3.3.2-2]
			return 0, &Error{Code: TopicNameInvalid, Packet: t, Field: "Topic", Detail: err.(*Error).Detail}
		}
	}
	n := 2 + len(p.Topic) + len(p.Payload)
	if p.QoS > 0 {
		n += 2
	}
	if v == V5 {
		k, err := propsEncLen(&p.Properties, t)
		if err != nil {
			return 0, err
		}
		n += k
	}
	return n, nil
}

// appendBody is used by Size only; Encode goes through AppendHeader.
func (p *Publish) appendBody(dst []byte, v Version) []byte {
	dst = appendString(dst, p.Topic)
	if p.QoS > 0 {
		dst = appendU16(dst, p.PacketID)
	}
	if v == V5 {
		dst = appendProps(dst, &p.Properties, propsLen(&p.Properties))
	}
	return append(dst, p.Payload...)
}

// ackLen is the remaining length of PUBACK, PUBREC, PUBREL and PUBCOMP. In
// 5.0 the reason code is left out when it is Success without properties,
// and the property length when there are no properties (§3.4.2.1).
func ackLen(t Type, id uint16, code ReasonCode, props *Properties, v Version) (int, error) {
	if id == 0 { // [MQTT-2.2.1-5] [MQTT-2.3.1-6]: the identifier of a PUBLISH, never 0
		return 0, encErr(t, "PacketID", "packet identifier 0")
	}
	if v != V5 {
		return 2, nil
	}
	if !ValidReasonCode(t, code) { // [MQTT-3.4.2-1] [MQTT-3.5.2-1] [MQTT-3.6.2-1] [MQTT-3.7.2-1]
		return 0, encErr(t, "ReasonCode", code.String()+" is not a "+t.String()+" reason code")
	}
	k, err := propsEncLen(props, t)
	if err != nil {
		return 0, err
	}
	if k > 1 {
		return 3 + k, nil
	}
	if code != Success {
		return 3, nil
	}
	return 2, nil
}

func appendAck(dst []byte, id uint16, code ReasonCode, props *Properties, v Version) []byte {
	dst = appendU16(dst, id)
	if v != V5 {
		return dst
	}
	n := propsLen(props)
	if n > 0 {
		return appendProps(append(dst, byte(code)), props, n)
	}
	if code != Success {
		return append(dst, byte(code))
	}
	return dst
}

// noProps is the empty property set of AppendAck (read only).
var noProps Properties

// AppendAck appends a PUBACK, PUBREC, PUBREL or PUBCOMP (t) without
// properties: the bytes Encode writes for that packet, without a packet
// value. A broker sends one for every message, and a packet value with its
// Properties is ~280 bytes to allocate, or to keep per connection. It
// checks what Encode checks (identifier, reason code, version).
func AppendAck(dst []byte, t Type, id uint16, code ReasonCode, v Version) ([]byte, error) {
	var hb byte
	switch t {
	case TypePuback, TypePubrec, TypePubcomp:
		hb = byte(t) << 4
	case TypePubrel:
		hb = byte(t)<<4 | 0x02 // [MQTT-3.6.1-1]
	default:
		return dst, &Error{Code: ImplementationSpecificError, Packet: t, Detail: "not an acknowledgement"}
	}
	if !v.valid() {
		return dst, &Error{Code: UnsupportedProtocolVersion, Packet: t, Detail: "cannot encode for " + v.String()}
	}
	n, err := ackLen(t, id, code, &noProps, v)
	if err != nil {
		return dst, err
	}
	dst = append(dst, hb, byte(n)) // n <= 3: one length byte
	return appendAck(dst, id, code, &noProps, v), nil
}

func (*Puback) headerByte(Version) byte  { return byte(TypePuback) << 4 }
func (*Pubrec) headerByte(Version) byte  { return byte(TypePubrec) << 4 }
func (*Pubrel) headerByte(Version) byte  { return byte(TypePubrel)<<4 | 0x02 } // [MQTT-3.6.1-1]
func (*Pubcomp) headerByte(Version) byte { return byte(TypePubcomp) << 4 }

func (p *Puback) bodyLen(v Version) (int, error) {
	return ackLen(TypePuback, p.PacketID, p.ReasonCode, &p.Properties, v)
}
func (p *Pubrec) bodyLen(v Version) (int, error) {
	return ackLen(TypePubrec, p.PacketID, p.ReasonCode, &p.Properties, v)
}
func (p *Pubrel) bodyLen(v Version) (int, error) {
	return ackLen(TypePubrel, p.PacketID, p.ReasonCode, &p.Properties, v)
}
func (p *Pubcomp) bodyLen(v Version) (int, error) {
	return ackLen(TypePubcomp, p.PacketID, p.ReasonCode, &p.Properties, v)
}
func (p *Puback) appendBody(dst []byte, v Version) []byte {
	return appendAck(dst, p.PacketID, p.ReasonCode, &p.Properties, v)
}
func (p *Pubrec) appendBody(dst []byte, v Version) []byte {
	return appendAck(dst, p.PacketID, p.ReasonCode, &p.Properties, v)
}
func (p *Pubrel) appendBody(dst []byte, v Version) []byte {
	return appendAck(dst, p.PacketID, p.ReasonCode, &p.Properties, v)
}
func (p *Pubcomp) appendBody(dst []byte, v Version) []byte {
	return appendAck(dst, p.PacketID, p.ReasonCode, &p.Properties, v)
}

func (*Subscribe) headerByte(Version) byte { return byte(TypeSubscribe)<<4 | 0x02 } // [MQTT-3.8.1-1]

func (s *Subscribe) bodyLen(v Version) (int, error) {
	t := TypeSubscribe
	if s.PacketID == 0 { // [MQTT-2.2.1-3] [MQTT-2.3.1-1]
		return 0, encErr(t, "PacketID", "packet identifier 0")
	}
	if len(s.Subscriptions) == 0 { // [MQTT-3.8.3-2] (5.0) [MQTT-3.8.3-3] (3.1.1)
		return 0, encErr(t, "Subscriptions", "no topic filter")
	}
	n := 2
	if v == V5 {
		k, err := propsEncLen(&s.Properties, t)
		if err != nil {
			return 0, err
		}
		n += k
	}
	for i := range s.Subscriptions {
		sub := &s.Subscriptions[i]
		if err := ValidTopicFilter(sub.Filter); err != nil {
			return 0, &Error{Code: TopicFilterInvalid, Packet: t, Field: "Subscriptions.Filter", Detail: err.(*Error).Detail}
		}
		if sub.QoS > 2 {
			return 0, &Error{Code: MalformedPacket, Packet: t, Field: "Subscriptions.QoS", Detail: "QoS above 2"}
		}
		if v == V5 {
			if sub.RetainHandling > 2 {
				return 0, encErr(t, "Subscriptions.RetainHandling", "Retain Handling above 2")
			}
			if sub.NoLocal && len(sub.Filter) > len(SharePrefix) && sub.Filter[:len(SharePrefix)] == SharePrefix { // [MQTT-3.8.3-4] (5.0)
				return 0, encErr(t, "Subscriptions.NoLocal", "No Local on a shared subscription")
			}
		}
		n += 2 + len(sub.Filter) + 1
	}
	return n, nil
}

func (s *Subscribe) appendBody(dst []byte, v Version) []byte {
	dst = appendU16(dst, s.PacketID)
	if v == V5 {
		dst = appendProps(dst, &s.Properties, propsLen(&s.Properties))
	}
	for i := range s.Subscriptions {
		sub := &s.Subscriptions[i]
		o := sub.QoS
		if v == V5 {
			if sub.NoLocal {
				o |= 0x04
			}
			if sub.RetainAsPublished {
				o |= 0x08
			}
			o |= sub.RetainHandling << 4
		}
		dst = append(appendString(dst, sub.Filter), o)
	}
	return dst
}

func (*Suback) headerByte(Version) byte { return byte(TypeSuback) << 4 }

func (s *Suback) bodyLen(v Version) (int, error) {
	t := TypeSuback
	if s.PacketID == 0 { // [MQTT-2.2.1-6] [MQTT-2.3.1-7]
		return 0, encErr(t, "PacketID", "packet identifier 0")
	}
	if len(s.ReasonCodes) == 0 {
		return 0, encErr(t, "ReasonCodes", "no reason code")
	}
	n := 2 + len(s.ReasonCodes)
	for _, c := range s.ReasonCodes {
		if v == V5 && !subackCodes.has(c) || v != V5 && c < 0x80 && c > GrantedQoS2 { // [MQTT-3.9.3-2]
			return 0, encErr(t, "ReasonCodes", c.String()+" is not a SUBACK reason code")
		}
	}
	if v == V5 {
		k, err := propsEncLen(&s.Properties, t)
		if err != nil {
			return 0, err
		}
		n += k
	}
	return n, nil
}

func (s *Suback) appendBody(dst []byte, v Version) []byte {
	dst = appendU16(dst, s.PacketID)
	if v == V5 {
		dst = appendProps(dst, &s.Properties, propsLen(&s.Properties))
		for _, c := range s.ReasonCodes {
			dst = append(dst, byte(c))
		}
		return dst
	}
	for _, c := range s.ReasonCodes {
		if c >= 0x80 { // 3.1.1 has a single failure code [MQTT-3.9.3-2]
			c = 0x80
		}
		dst = append(dst, byte(c))
	}
	return dst
}

func (*Unsubscribe) headerByte(Version) byte { return byte(TypeUnsubscribe)<<4 | 0x02 } // [MQTT-3.10.1-1]

func (u *Unsubscribe) bodyLen(v Version) (int, error) {
	t := TypeUnsubscribe
	if u.PacketID == 0 { // [MQTT-2.2.1-3] [MQTT-2.3.1-1]
		return 0, encErr(t, "PacketID", "packet identifier 0")
	}
	if len(u.Filters) == 0 { // [MQTT-3.10.3-2]
		return 0, encErr(t, "Filters", "no topic filter")
	}
	n := 2
	if v == V5 {
		k, err := propsEncLen(&u.Properties, t)
		if err != nil {
			return 0, err
		}
		n += k
	}
	for _, f := range u.Filters {
		if err := ValidTopicFilter(f); err != nil {
			return 0, &Error{Code: TopicFilterInvalid, Packet: t, Field: "Filters", Detail: err.(*Error).Detail}
		}
		n += 2 + len(f)
	}
	return n, nil
}

func (u *Unsubscribe) appendBody(dst []byte, v Version) []byte {
	dst = appendU16(dst, u.PacketID)
	if v == V5 {
		dst = appendProps(dst, &u.Properties, propsLen(&u.Properties))
	}
	for _, f := range u.Filters {
		dst = appendString(dst, f)
	}
	return dst
}

func (*Unsuback) headerByte(Version) byte { return byte(TypeUnsuback) << 4 }

func (u *Unsuback) bodyLen(v Version) (int, error) {
	t := TypeUnsuback
	if u.PacketID == 0 { // [MQTT-2.2.1-6] [MQTT-2.3.1-7]
		return 0, encErr(t, "PacketID", "packet identifier 0")
	}
	if v != V5 {
		return 2, nil
	}
	if len(u.ReasonCodes) == 0 {
		return 0, encErr(t, "ReasonCodes", "no reason code")
	}
	for _, c := range u.ReasonCodes {
		if !unsubackCodes.has(c) { // [MQTT-3.11.3-2]
			return 0, encErr(t, "ReasonCodes", c.String()+" is not an UNSUBACK reason code")
		}
	}
	k, err := propsEncLen(&u.Properties, t)
	return 2 + k + len(u.ReasonCodes), err
}

func (u *Unsuback) appendBody(dst []byte, v Version) []byte {
	dst = appendU16(dst, u.PacketID)
	if v != V5 {
		return dst
	}
	dst = appendProps(dst, &u.Properties, propsLen(&u.Properties))
	for _, c := range u.ReasonCodes {
		dst = append(dst, byte(c))
	}
	return dst
}

func (*Pingreq) headerByte(Version) byte                 { return byte(TypePingreq) << 4 }
func (*Pingreq) bodyLen(Version) (int, error)            { return 0, nil }
func (*Pingreq) appendBody(dst []byte, _ Version) []byte { return dst }

func (*Pingresp) headerByte(Version) byte                 { return byte(TypePingresp) << 4 }
func (*Pingresp) bodyLen(Version) (int, error)            { return 0, nil }
func (*Pingresp) appendBody(dst []byte, _ Version) []byte { return dst }

// reasonLen is the remaining length of a 5.0 DISCONNECT or AUTH: empty for
// Success without properties, the reason code alone without properties.
func reasonLen(t Type, code ReasonCode, props *Properties) (int, error) {
	if !ValidReasonCode(t, code) { // [MQTT-3.14.2-1] [MQTT-3.15.2-1]
		return 0, encErr(t, "ReasonCode", code.String()+" is not a "+t.String()+" reason code")
	}
	k, err := propsEncLen(props, t)
	if err != nil {
		return 0, err
	}
	switch {
	case k > 1:
		return 1 + k, nil
	case code != Success:
		return 1, nil
	}
	return 0, nil
}

func appendReason(dst []byte, code ReasonCode, props *Properties) []byte {
	n := propsLen(props)
	if n > 0 {
		return appendProps(append(dst, byte(code)), props, n)
	}
	if code != Success {
		return append(dst, byte(code))
	}
	return dst
}

func (*Disconnect) headerByte(Version) byte { return byte(TypeDisconnect) << 4 }

func (d *Disconnect) bodyLen(v Version) (int, error) {
	if v != V5 {
		return 0, nil
	}
	return reasonLen(TypeDisconnect, d.ReasonCode, &d.Properties)
}

func (d *Disconnect) appendBody(dst []byte, v Version) []byte {
	if v != V5 {
		return dst
	}
	return appendReason(dst, d.ReasonCode, &d.Properties)
}

func (*Auth) headerByte(Version) byte { return byte(TypeAuth) << 4 }

func (a *Auth) bodyLen(v Version) (int, error) {
	if v != V5 {
		return 0, &Error{Code: ProtocolError, Packet: TypeAuth, Detail: "AUTH exists only in MQTT 5.0"}
	}
	return reasonLen(TypeAuth, a.ReasonCode, &a.Properties)
}

func (a *Auth) appendBody(dst []byte, _ Version) []byte {
	return appendReason(dst, a.ReasonCode, &a.Properties)
}
