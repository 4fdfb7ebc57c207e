package packets

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// contexts builds, for each property context, a packet carrying the given
// property bytes (without the Property Length, which it adds).
var contexts = map[Type]func(p []byte) []byte{
	TypeConnect:     func(p []byte) []byte { return connect5(0x02, props(p), str("c")) },
	WillProperties:  func(p []byte) []byte { return connect5(0x06, by(0), str("c"), props(p), str("w"), str("m")) },
	TypeConnack:     func(p []byte) []byte { return pk(0x20, by(0, 0), props(p)) },
	TypePublish:     func(p []byte) []byte { return pk(0x30, str("t"), props(p)) },
	TypePuback:      func(p []byte) []byte { return pk(0x40, u16(1), by(0), props(p)) },
	TypePubrec:      func(p []byte) []byte { return pk(0x50, u16(1), by(0), props(p)) },
	TypePubrel:      func(p []byte) []byte { return pk(0x62, u16(1), by(0), props(p)) },
	TypePubcomp:     func(p []byte) []byte { return pk(0x70, u16(1), by(0), props(p)) },
	TypeSubscribe:   func(p []byte) []byte { return pk(0x82, u16(1), props(p), str("a"), by(0)) },
	TypeSuback:      func(p []byte) []byte { return pk(0x90, u16(1), props(p), by(0)) },
	TypeUnsubscribe: func(p []byte) []byte { return pk(0xa2, u16(1), props(p), str("a")) },
	TypeUnsuback:    func(p []byte) []byte { return pk(0xb0, u16(1), props(p), by(0)) },
	TypeDisconnect:  func(p []byte) []byte { return pk(0xe0, by(0), props(p)) },
	TypeAuth:        func(p []byte) []byte { return pk(0xf0, by(0), props(p)) },
}

// sampleProp returns the bytes of one property with a valid value.
func sampleProp(id PropID) []byte {
	b := []byte{byte(id)}
	switch propTable[id].kind {
	case kByte:
		return append(b, 1)
	case kU16:
		return append(b, 0, 1)
	case kU32:
		return append(b, 0, 0, 0, 1)
	case kVBI:
		return append(b, 1)
	case kString:
		return append(b, str("x")...)
	case kBinary:
		return append(b, 0, 1, 0xaa)
	case kPair:
		return append(b, append(str("k"), str("v")...)...)
	}
	panic("unknown property kind")
}

// Each property is accepted exactly in the packets Table 2-4 lists; in any
// other packet it is a Malformed Packet (5.0 §2.2.2.2).
func TestMQTT5_PropertyPlacement(t *testing.T) {
	allowed := map[PropID][]Type{
		PropPayloadFormat:        {TypePublish, WillProperties},
		PropMessageExpiry:        {TypePublish, WillProperties},
		PropContentType:          {TypePublish, WillProperties},
		PropResponseTopic:        {TypePublish, WillProperties},
		PropCorrelationData:      {TypePublish, WillProperties},
		PropSubscriptionID:       {TypePublish, TypeSubscribe},
		PropSessionExpiry:        {TypeConnect, TypeConnack, TypeDisconnect},
		PropAssignedClientID:     {TypeConnack},
		PropServerKeepAlive:      {TypeConnack},
		PropAuthMethod:           {TypeConnect, TypeConnack, TypeAuth},
		PropAuthData:             {TypeConnect, TypeConnack, TypeAuth},
		PropRequestProblemInfo:   {TypeConnect},
		PropWillDelay:            {WillProperties},
		PropRequestResponseInfo:  {TypeConnect},
		PropResponseInfo:         {TypeConnack},
		PropServerReference:      {TypeConnack, TypeDisconnect},
		PropReasonString:         {TypeConnack, TypePuback, TypePubrec, TypePubrel, TypePubcomp, TypeSuback, TypeUnsuback, TypeDisconnect, TypeAuth},
		PropReceiveMaximum:       {TypeConnect, TypeConnack},
		PropTopicAliasMaximum:    {TypeConnect, TypeConnack},
		PropTopicAlias:           {TypePublish},
		PropMaximumQoS:           {TypeConnack},
		PropRetainAvailable:      {TypeConnack},
		PropUser:                 {TypeConnect, WillProperties, TypeConnack, TypePublish, TypePuback, TypePubrec, TypePubrel, TypePubcomp, TypeSubscribe, TypeSuback, TypeUnsubscribe, TypeUnsuback, TypeDisconnect, TypeAuth},
		PropMaximumPacketSize:    {TypeConnect, TypeConnack},
		PropWildcardSubAvailable: {TypeConnack},
		PropSubIDAvailable:       {TypeConnack},
		PropSharedSubAvailable:   {TypeConnack},
	}
	if len(allowed) != len(propIDs) {
		t.Fatalf("%d properties in the table, %d known", len(allowed), len(propIDs))
	}
	for _, id := range propIDs {
		ok := map[Type]bool{}
		for _, c := range allowed[id] {
			ok[c] = true
		}
		for ctx, build := range contexts {
			if id.AllowedIn(ctx) != ok[ctx] {
				t.Errorf("%v.AllowedIn(%v) = %v", id, ctx, !ok[ctx])
			}
			raw := build(sampleProp(id))
			if ok[ctx] {
				p := decodeOK(t, raw, V5)
				found := false
				forEachProps(p, func(pr *Properties) { found = found || pr.Has(id) })
				if !found {
					t.Errorf("%v in %v: decoded without the property", id, ctxName(ctx))
				}
				if b := encodeOK(t, p, V5); !bytes.Equal(b, raw) {
					t.Errorf("%v in %v: re-encoded % x, want % x", id, ctxName(ctx), b, raw)
				}
			} else {
				e := decodeErr(t, raw, V5, MalformedPacket)
				want := "Properties." + id.String()
				if ctx == WillProperties {
					want = "Will." + want
				}
				if e.Field != want {
					t.Errorf("%v in %v: error field %q", id, ctxName(ctx), e.Field)
				}
			}
		}
	}
	// The encoder refuses a property the packet may not carry.
	encodeErr(t, &Puback{PacketID: 1, Properties: Properties{SessionExpiry: 5}}, V5, ProtocolError)
	encodeErr(t, &Publish{Topic: "t", Properties: Properties{WillDelay: 5}}, V5, ProtocolError)
	encodeErr(t, &Connect{ClientID: "c", Will: &Will{Topic: "w", Properties: Properties{TopicAlias: 1}}}, V5, ProtocolError)
	var pr Properties
	pr.Mark(PropMaximumQoS)
	encodeErr(t, &Disconnect{Properties: pr}, V5, ProtocolError)
}

// A property other than User Property, and Subscription Identifier in
// PUBLISH, appearing twice is a Protocol Error (5.0 §3.1.2.11 ff.).
func TestMQTT5_PropertyDuplicates(t *testing.T) {
	for _, id := range propIDs {
		for ctx, build := range contexts {
			if !id.AllowedIn(ctx) {
				continue
			}
			raw := build(append(sampleProp(id), sampleProp(id)...))
			if id == PropUser || (id == PropSubscriptionID && ctx == TypePublish) {
				p := decodeOK(t, raw, V5)
				forEachProps(p, func(pr *Properties) {
					if pr.Has(id) && len(pr.User) != 2 && len(pr.SubscriptionIDs) != 2 {
						t.Errorf("%v twice in %v: %#v", id, ctxName(ctx), pr)
					}
				})
				continue
			}
			decodeErr(t, raw, V5, ProtocolError)
		}
	}
	encodeErr(t, &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a"}}, Properties: Properties{SubscriptionIDs: []uint32{1, 2}}}, V5, ProtocolError)
}

// Values outside a property's range are refused with the right code.
func TestMQTT5_PropertyValues(t *testing.T) {
	cases := []struct {
		name string
		ctx  Type
		prop []byte
		code ReasonCode
	}{
		{"payload format 2", TypePublish, by(0x01, 2), ProtocolError},
		{"request problem info 2", TypeConnect, by(0x17, 2), ProtocolError},
		{"request response info 2", TypeConnect, by(0x19, 2), ProtocolError},
		{"maximum QoS 2", TypeConnack, by(0x24, 2), ProtocolError},
		{"retain available 2", TypeConnack, by(0x25, 2), ProtocolError},
		{"wildcard available 2", TypeConnack, by(0x28, 2), ProtocolError},
		{"sub id available 2", TypeConnack, by(0x29, 2), ProtocolError},
		{"shared available 2", TypeConnack, by(0x2a, 2), ProtocolError},
		{"receive maximum 0", TypeConnect, by(0x21, 0, 0), ProtocolError},
		{"maximum packet size 0", TypeConnack, by(0x27, 0, 0, 0, 0), ProtocolError},
		{"subscription identifier 0", TypeSubscribe, by(0x0b, 0), ProtocolError},
		{"topic alias 0", TypePublish, by(0x23, 0, 0), TopicAliasInvalid},
		{"unknown id 0x00", TypePublish, by(0x00, 1), MalformedPacket},
		{"unknown id 0x04", TypePublish, by(0x04, 1), MalformedPacket},
		{"unknown id 0x2b", TypeConnack, by(0x2b, 1), MalformedPacket},
		{"unknown two-byte id", TypeConnack, by(0x81, 0x01, 1), MalformedPacket},
		{"truncated u32", TypePublish, by(0x02, 0, 0), MalformedPacket},
		{"truncated string", TypePublish, by(0x03, 0, 5, 'a'), MalformedPacket},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { decodeErr(t, contexts[c.ctx](c.prop), V5, c.code) })
	}
	// Property Length larger than what follows.
	decodeErr(t, pk(0x30, str("t"), by(9, 0x01, 1)), V5, MalformedPacket)
	decodeErr(t, pk(0x40, u16(1), by(0, 9)), V5, MalformedPacket)
	// A property running past the Property Length but inside the packet.
	decodeErr(t, pk(0x30, str("t"), by(2, 0x02, 0, 0, 0, 1)), V5, MalformedPacket)
	// Zero values marked present are encoded and decoded as present.
	var pr Properties
	pr.Mark(PropRequestProblemInfo)
	pr.Mark(PropSessionExpiry)
	c := decodeOK(t, encodeOK(t, &Connect{ClientID: "c", Properties: pr}, V5), V5).(*Connect)
	if !c.Properties.Has(PropRequestProblemInfo) || !c.Properties.Has(PropSessionExpiry) || c.Properties.Has(PropReceiveMaximum) {
		t.Errorf("presence lost: %#v", c.Properties)
	}
}

// AppendProperties and DecodeProperties serialise properties on their own
// (for storage), and agree with what Encode writes.
func TestAppendDecodeProperties(t *testing.T) {
	for _, g := range goldens {
		if g.v != V5 {
			continue
		}
		forEachProps(g.pkt, func(p *Properties) {
			b := AppendProperties([]byte("x"), p)
			if b[0] != 'x' {
				t.Fatal("prefix lost")
			}
			ctx := g.pkt.Type()
			if c, ok := g.pkt.(*Connect); ok && c.Will != nil && p == &c.Will.Properties {
				ctx = WillProperties
			}
			q, n, err := DecodeProperties(b[1:], ctx)
			if err != nil || n != len(b)-1 {
				t.Fatalf("%s: DecodeProperties: n=%d err=%v", g.name, n, err)
			}
			if !reflect.DeepEqual(&q, p) {
				t.Errorf("%s: %#v, want %#v", g.name, q, *p)
			}
		})
	}
	_, _, err := DecodeProperties(by(2, 0x12, 0), TypePublish)
	if !errors.Is(err, MalformedPacket) {
		t.Errorf("DecodeProperties of a CONNACK-only property in PUBLISH context: %v", err)
	}
	if b := AppendProperties(nil, &Properties{}); !bytes.Equal(b, by(0)) {
		t.Errorf("empty properties % x", b)
	}
}
