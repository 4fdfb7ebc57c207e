package packets

import (
	"math/bits"
	"strconv"
)

// WillProperties is the property context of the Will Properties inside
// CONNECT (5.0 §3.1.3.2). It is not a packet type (type 0 is reserved); it
// is passed to DecodeProperties where a Type names the context.
const WillProperties Type = 0

type propKind uint8

const (
	kByte propKind = iota + 1
	kU16
	kU32
	kVBI
	kString
	kBinary
	kPair
)

type propInfo struct {
	kind    propKind
	allowed uint16 // bit (1 << Type) per packet type, bit 0 = Will Properties
	name    string
}

func in(ts ...Type) uint16 {
	var m uint16
	for _, t := range ts {
		m |= 1 << t
	}
	return m
}

// propTable lists every 5.0 property with its data type and the packets it
// may appear in (5.0 §2.2.2.2, Table 2-4). A property outside its packets is
// a Malformed Packet (§2.2.2.2).
var propTable = [0x2B]propInfo{
	PropPayloadFormat:        {kByte, in(TypePublish, WillProperties), "PayloadFormat"},
	PropMessageExpiry:        {kU32, in(TypePublish, WillProperties), "MessageExpiry"},
	PropContentType:          {kString, in(TypePublish, WillProperties), "ContentType"},
	PropResponseTopic:        {kString, in(TypePublish, WillProperties), "ResponseTopic"},
	PropCorrelationData:      {kBinary, in(TypePublish, WillProperties), "CorrelationData"},
	PropSubscriptionID:       {kVBI, in(TypePublish, TypeSubscribe), "SubscriptionID"},
	PropSessionExpiry:        {kU32, in(TypeConnect, TypeConnack, TypeDisconnect), "SessionExpiry"},
	PropAssignedClientID:     {kString, in(TypeConnack), "AssignedClientID"},
	PropServerKeepAlive:      {kU16, in(TypeConnack), "ServerKeepAlive"},
	PropAuthMethod:           {kString, in(TypeConnect, TypeConnack, TypeAuth), "AuthMethod"},
	PropAuthData:             {kBinary, in(TypeConnect, TypeConnack, TypeAuth), "AuthData"},
	PropRequestProblemInfo:   {kByte, in(TypeConnect), "RequestProblemInfo"},
	PropWillDelay:            {kU32, in(WillProperties), "WillDelay"},
	PropRequestResponseInfo:  {kByte, in(TypeConnect), "RequestResponseInfo"},
	PropResponseInfo:         {kString, in(TypeConnack), "ResponseInfo"},
	PropServerReference:      {kString, in(TypeConnack, TypeDisconnect), "ServerReference"},
	PropReasonString:         {kString, in(TypeConnack, TypePuback, TypePubrec, TypePubrel, TypePubcomp, TypeSuback, TypeUnsuback, TypeDisconnect, TypeAuth), "ReasonString"},
	PropReceiveMaximum:       {kU16, in(TypeConnect, TypeConnack), "ReceiveMaximum"},
	PropTopicAliasMaximum:    {kU16, in(TypeConnect, TypeConnack), "TopicAliasMaximum"},
	PropTopicAlias:           {kU16, in(TypePublish), "TopicAlias"},
	PropMaximumQoS:           {kByte, in(TypeConnack), "MaximumQoS"},
	PropRetainAvailable:      {kByte, in(TypeConnack), "RetainAvailable"},
	PropUser:                 {kPair, in(TypeConnect, TypeConnack, TypePublish, WillProperties, TypePuback, TypePubrec, TypePubrel, TypePubcomp, TypeSubscribe, TypeSuback, TypeUnsubscribe, TypeUnsuback, TypeDisconnect, TypeAuth), "User"},
	PropMaximumPacketSize:    {kU32, in(TypeConnect, TypeConnack), "MaximumPacketSize"},
	PropWildcardSubAvailable: {kByte, in(TypeConnack), "WildcardSubAvailable"},
	PropSubIDAvailable:       {kByte, in(TypeConnack), "SubIDAvailable"},
	PropSharedSubAvailable:   {kByte, in(TypeConnack), "SharedSubAvailable"},
}

// propFields holds "Properties.<name>" per identifier, so naming the field
// of an error costs no allocation on the success path.
var propFields = func() (f [len(propTable)]string) {
	for i := range propTable {
		f[i] = "Properties." + propTable[i].name
	}
	return f
}()

// allowedMask holds, per context (packet type, 0 = Will Properties), a bit
// (1 << id) for every property allowed there.
var allowedMask = func() (m [16]uint64) {
	for id := range propTable {
		for t := range m {
			if propTable[id].allowed&(1<<t) != 0 {
				m[t] |= 1 << id
			}
		}
	}
	return m
}()

// String returns the property's name ("TopicAlias").
func (id PropID) String() string {
	if int(id) < len(propTable) && propTable[id].kind != 0 {
		return propTable[id].name
	}
	return "PropID(0x" + strconv.FormatUint(uint64(id), 16) + ")"
}

// AllowedIn reports whether property id may appear in packets of type t
// (WillProperties for the Will Properties of CONNECT).
func (id PropID) AllowedIn(t Type) bool {
	return int(id) < len(propTable) && propTable[id].allowed&(1<<t) != 0
}

// presentMask returns a bit (1 << id) for every property Has reports.
func (p *Properties) presentMask() uint64 {
	m := p.present
	if p.PayloadFormat != 0 {
		m |= 1 << PropPayloadFormat
	}
	if p.MessageExpiry != 0 {
		m |= 1 << PropMessageExpiry
	}
	if p.ContentType != "" {
		m |= 1 << PropContentType
	}
	if p.ResponseTopic != "" {
		m |= 1 << PropResponseTopic
	}
	if len(p.CorrelationData) != 0 {
		m |= 1 << PropCorrelationData
	}
	if len(p.SubscriptionIDs) != 0 {
		m |= 1 << PropSubscriptionID
	}
	if p.SessionExpiry != 0 {
		m |= 1 << PropSessionExpiry
	}
	if p.AssignedClientID != "" {
		m |= 1 << PropAssignedClientID
	}
	if p.ServerKeepAlive != 0 {
		m |= 1 << PropServerKeepAlive
	}
	if p.AuthMethod != "" {
		m |= 1 << PropAuthMethod
	}
	if len(p.AuthData) != 0 {
		m |= 1 << PropAuthData
	}
	if p.RequestProblemInfo != 0 {
		m |= 1 << PropRequestProblemInfo
	}
	if p.WillDelay != 0 {
		m |= 1 << PropWillDelay
	}
	if p.RequestResponseInfo != 0 {
		m |= 1 << PropRequestResponseInfo
	}
	if p.ResponseInfo != "" {
		m |= 1 << PropResponseInfo
	}
	if p.ServerReference != "" {
		m |= 1 << PropServerReference
	}
	if p.ReasonString != "" {
		m |= 1 << PropReasonString
	}
	if p.ReceiveMaximum != 0 {
		m |= 1 << PropReceiveMaximum
	}
	if p.TopicAliasMaximum != 0 {
		m |= 1 << PropTopicAliasMaximum
	}
	if p.TopicAlias != 0 {
		m |= 1 << PropTopicAlias
	}
	if p.MaximumQoS != 0 {
		m |= 1 << PropMaximumQoS
	}
	if p.RetainAvailable != 0 {
		m |= 1 << PropRetainAvailable
	}
	if len(p.User) != 0 {
		m |= 1 << PropUser
	}
	if p.MaximumPacketSize != 0 {
		m |= 1 << PropMaximumPacketSize
	}
	if p.WildcardSubAvailable != 0 {
		m |= 1 << PropWildcardSubAvailable
	}
	if p.SubIDAvailable != 0 {
		m |= 1 << PropSubIDAvailable
	}
	if p.SharedSubAvailable != 0 {
		m |= 1 << PropSharedSubAvailable
	}
	return m
}

// checkProps refuses, before encoding, properties that may not appear in
// context t and values no receiver would accept.
func checkProps(p *Properties, t Type, m uint64) error {
	if m == 0 {
		return nil
	}
	if bad := m &^ allowedMask[t&15]; bad != 0 || t > 15 {
		id := PropID(bits.TrailingZeros64(bad | m))
		return &Error{Code: ProtocolError, Packet: t, Field: "Properties." + id.String(), Detail: "property not allowed in " + ctxName(t)}
	}
	if len(p.SubscriptionIDs) > 1 && t != TypePublish {
		return &Error{Code: ProtocolError, Packet: t, Field: "Properties.SubscriptionID", Detail: "more than one Subscription Identifier"}
	}
	for _, id := range p.SubscriptionIDs {
		if id == 0 || id > MaxRemainingLength {
			return &Error{Code: ProtocolError, Packet: t, Field: "Properties.SubscriptionID", Detail: "Subscription Identifier out of range 1..268435455"}
		}
	}
	if len(p.ContentType) > 65535 || len(p.ResponseTopic) > 65535 || len(p.CorrelationData) > 65535 ||
		len(p.AssignedClientID) > 65535 || len(p.AuthMethod) > 65535 || len(p.AuthData) > 65535 ||
		len(p.ResponseInfo) > 65535 || len(p.ServerReference) > 65535 || len(p.ReasonString) > 65535 {
		return &Error{Code: ProtocolError, Packet: t, Field: "Properties", Detail: "string or binary property longer than 65535 bytes"}
	}
	for _, u := range p.User {
		if len(u.Key) > 65535 || len(u.Value) > 65535 {
			return &Error{Code: ProtocolError, Packet: t, Field: "Properties.User", Detail: "user property longer than 65535 bytes"}
		}
	}
	return nil
}

// kindMask holds, per data type, a bit (1 << id) for every property of
// that type, so the fixed-size part of the properties is sized with a few
// population counts.
var kindMask = func() (m [kPair + 1]uint64) {
	for id := range propTable {
		m[propTable[id].kind] |= 1 << id
	}
	return m
}()

// propsLen returns the length of the encoded properties without the
// Property Length prefix.
func propsLen(p *Properties) int { return propsLenMask(p, p.presentMask()) }

// propsLenMask is propsLen for the presence mask m of p.
func propsLenMask(p *Properties, m uint64) int {
	if m == 0 {
		return 0
	}
	n := 2*bits.OnesCount64(m&kindMask[kByte]) + 3*bits.OnesCount64(m&kindMask[kU16]) + 5*bits.OnesCount64(m&kindMask[kU32])
	if m&(kindMask[kString]|kindMask[kBinary]) != 0 {
		for _, v := range [...]struct {
			id PropID
			n  int
		}{
			{PropContentType, len(p.ContentType)}, {PropResponseTopic, len(p.ResponseTopic)},
			{PropCorrelationData, len(p.CorrelationData)}, {PropAssignedClientID, len(p.AssignedClientID)},
			{PropAuthMethod, len(p.AuthMethod)}, {PropAuthData, len(p.AuthData)},
			{PropResponseInfo, len(p.ResponseInfo)}, {PropServerReference, len(p.ServerReference)},
			{PropReasonString, len(p.ReasonString)},
		} {
			if m&(1<<v.id) != 0 {
				n += 3 + v.n
			}
		}
	}
	for _, s := range p.SubscriptionIDs {
		n += 1 + vbiLen(int(s))
	}
	for _, u := range p.User {
		n += 5 + len(u.Key) + len(u.Value)
	}
	return n
}

// AppendProperties appends p as a Property Length followed by the
// properties, in ascending identifier order, to dst. It does not check
// which packet the properties belong to (Encode does); it is meant for
// storing a message's properties, to be read back with DecodeProperties.
func AppendProperties(dst []byte, p *Properties) []byte {
	return appendProps(dst, p, propsLen(p))
}

func appendProps(dst []byte, p *Properties, n int) []byte {
	dst = appendVBI(dst, n)
	if n == 0 {
		return dst
	}
	m := p.presentMask()
	for ; m != 0; m &= m - 1 { // set bits in ascending identifier order
		switch id := PropID(bits.TrailingZeros64(m)); id {
		case PropPayloadFormat:
			dst = append(dst, byte(id), p.PayloadFormat)
		case PropMessageExpiry:
			dst = appendU32(append(dst, byte(id)), p.MessageExpiry)
		case PropContentType:
			dst = appendString(append(dst, byte(id)), p.ContentType)
		case PropResponseTopic:
			dst = appendString(append(dst, byte(id)), p.ResponseTopic)
		case PropCorrelationData:
			dst = appendBinary(append(dst, byte(id)), p.CorrelationData)
		case PropSubscriptionID:
			for _, s := range p.SubscriptionIDs {
				dst = appendVBI(append(dst, byte(id)), int(s))
			}
		case PropSessionExpiry:
			dst = appendU32(append(dst, byte(id)), p.SessionExpiry)
		case PropAssignedClientID:
			dst = appendString(append(dst, byte(id)), p.AssignedClientID)
		case PropServerKeepAlive:
			dst = appendU16(append(dst, byte(id)), p.ServerKeepAlive)
		case PropAuthMethod:
			dst = appendString(append(dst, byte(id)), p.AuthMethod)
		case PropAuthData:
			dst = appendBinary(append(dst, byte(id)), p.AuthData)
		case PropRequestProblemInfo:
			dst = append(dst, byte(id), p.RequestProblemInfo)
		case PropWillDelay:
			dst = appendU32(append(dst, byte(id)), p.WillDelay)
		case PropRequestResponseInfo:
			dst = append(dst, byte(id), p.RequestResponseInfo)
		case PropResponseInfo:
			dst = appendString(append(dst, byte(id)), p.ResponseInfo)
		case PropServerReference:
			dst = appendString(append(dst, byte(id)), p.ServerReference)
		case PropReasonString:
			dst = appendString(append(dst, byte(id)), p.ReasonString)
		case PropReceiveMaximum:
			dst = appendU16(append(dst, byte(id)), p.ReceiveMaximum)
		case PropTopicAliasMaximum:
			dst = appendU16(append(dst, byte(id)), p.TopicAliasMaximum)
		case PropTopicAlias:
			dst = appendU16(append(dst, byte(id)), p.TopicAlias)
		case PropMaximumQoS:
			dst = append(dst, byte(id), p.MaximumQoS)
		case PropRetainAvailable:
			dst = append(dst, byte(id), p.RetainAvailable)
		case PropUser:
			for _, u := range p.User {
				dst = appendString(appendString(append(dst, byte(id)), u.Key), u.Value)
			}
		case PropMaximumPacketSize:
			dst = appendU32(append(dst, byte(id)), p.MaximumPacketSize)
		case PropWildcardSubAvailable:
			dst = append(dst, byte(id), p.WildcardSubAvailable)
		case PropSubIDAvailable:
			dst = append(dst, byte(id), p.SubIDAvailable)
		case PropSharedSubAvailable:
			dst = append(dst, byte(id), p.SharedSubAvailable)
		}
	}
	return dst
}

// DecodeProperties decodes a Property Length and the properties after it
// from the front of b, as found in a packet of type ctx (WillProperties for
// Will Properties), and returns them with the number of bytes consumed.
// Strings and binary values alias b.
func DecodeProperties(b []byte, ctx Type) (Properties, int, error) {
	var p Properties
	d := decoder{b: b, t: ctx}
	err := d.props(&p, ctx)
	return p, d.i, err
}

// props decodes a Property Length and the properties into p. Every property
// read is marked present. The rules enforced:
//   - an identifier unknown or not allowed in this packet is a Malformed
//     Packet (5.0 §2.2.2.2);
//   - a property other than User Property (and Subscription Identifier in
//     PUBLISH) appearing twice is a Protocol Error (5.0 §3.x.2.x);
//   - values outside their defined range are a Protocol Error; a Topic Alias
//     of 0 is TopicAliasInvalid [MQTT-3.3.2-8].
func (d *decoder) props(p *Properties, ctx Type) error {
	n, err := d.vbi("PropertyLength")
	if err != nil {
		return err
	}
	if n > d.rest() {
		return malformed(d.t, "PropertyLength", "property length runs past the end of the packet")
	}
	end := d.i + n
	sub := decoder{b: d.b[:end], i: d.i, t: d.t}
	var seen uint64
	for sub.i < end {
		idv, err := sub.vbi("Properties")
		if err != nil {
			return err
		}
		if idv >= len(propTable) || propTable[idv].kind == 0 {
			return malformed(d.t, "Properties", "unknown property identifier 0x"+strconv.FormatUint(uint64(idv), 16))
		}
		id := PropID(idv)
		field := propFields[id]
		if !id.AllowedIn(ctx) {
			return malformed(d.t, field, "property not allowed in "+ctxName(ctx))
		}
		if seen&(1<<id) != 0 && id != PropUser && !(id == PropSubscriptionID && ctx == TypePublish) {
			return protoErr(d.t, field, "property included more than once")
		}
		seen |= 1 << id
		if err := sub.prop(p, id, field); err != nil {
			return err
		}
		p.Mark(id)
	}
	d.i = end
	return nil
}

func ctxName(t Type) string {
	if t == WillProperties {
		return "Will Properties"
	}
	return t.String()
}

func (d *decoder) bool01(field string) (byte, error) {
	b, err := d.u8(field)
	if err == nil && b > 1 {
		return 0, protoErr(d.t, field, "value other than 0 or 1")
	}
	return b, err
}

func (d *decoder) prop(p *Properties, id PropID, field string) (err error) {
	switch id {
	case PropPayloadFormat:
		p.PayloadFormat, err = d.bool01(field)
	case PropMessageExpiry:
		p.MessageExpiry, err = d.u32(field)
	case PropContentType:
		p.ContentType, err = d.str(field) // [MQTT-3.3.2-19]
	case PropResponseTopic:
		p.ResponseTopic, err = d.str(field) // [MQTT-3.3.2-13]
		if err == nil {
			if e := ValidTopicName(p.ResponseTopic); e != nil { // [MQTT-3.3.2-14]
				return protoErr(d.t, field, "Response Topic is not a valid topic name: "+e.(*Error).Detail)
			}
		}
	case PropCorrelationData:
		p.CorrelationData, err = d.binary(field)
	case PropSubscriptionID:
		var v int
		v, err = d.vbi(field)
		if err == nil && v == 0 {
			return protoErr(d.t, field, "Subscription Identifier 0")
		}
		p.SubscriptionIDs = append(p.SubscriptionIDs, uint32(v))
	case PropSessionExpiry:
		p.SessionExpiry, err = d.u32(field)
	case PropAssignedClientID:
		p.AssignedClientID, err = d.str(field)
	case PropServerKeepAlive:
		p.ServerKeepAlive, err = d.u16(field)
	case PropAuthMethod:
		p.AuthMethod, err = d.str(field)
	case PropAuthData:
		p.AuthData, err = d.binary(field)
	case PropRequestProblemInfo:
		p.RequestProblemInfo, err = d.bool01(field)
	case PropWillDelay:
		p.WillDelay, err = d.u32(field)
	case PropRequestResponseInfo:
		p.RequestResponseInfo, err = d.bool01(field)
	case PropResponseInfo:
		p.ResponseInfo, err = d.str(field)
	case PropServerReference:
		p.ServerReference, err = d.str(field)
	case PropReasonString:
		p.ReasonString, err = d.str(field)
	case PropReceiveMaximum:
		p.ReceiveMaximum, err = d.u16(field)
		if err == nil && p.ReceiveMaximum == 0 {
			return protoErr(d.t, field, "Receive Maximum 0")
		}
	case PropTopicAliasMaximum:
		p.TopicAliasMaximum, err = d.u16(field)
	case PropTopicAlias:
		p.TopicAlias, err = d.u16(field)
		if err == nil && p.TopicAlias == 0 { // [MQTT-3.3.2-8]
			return &Error{Code: TopicAliasInvalid, Packet: d.t, Field: field, Detail: "Topic Alias 0"}
		}
	case PropMaximumQoS:
		p.MaximumQoS, err = d.bool01(field)
	case PropRetainAvailable:
		p.RetainAvailable, err = d.bool01(field)
	case PropUser:
		var u UserProperty
		if u.Key, err = d.str("Properties.User.Key"); err != nil { // [MQTT-1.5.7-1]
			return err
		}
		if u.Value, err = d.str("Properties.User.Value"); err != nil {
			return err
		}
		p.User = append(p.User, u) // order kept [MQTT-3.3.2-18]
	case PropMaximumPacketSize:
		p.MaximumPacketSize, err = d.u32(field)
		if err == nil && p.MaximumPacketSize == 0 {
			return protoErr(d.t, field, "Maximum Packet Size 0")
		}
	case PropWildcardSubAvailable:
		p.WildcardSubAvailable, err = d.bool01(field)
	case PropSubIDAvailable:
		p.SubIDAvailable, err = d.bool01(field)
	case PropSharedSubAvailable:
		p.SharedSubAvailable, err = d.bool01(field)
	}
	return err
}
