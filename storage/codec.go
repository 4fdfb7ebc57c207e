package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/beaconmq/beacon/packets"
)

// The on-disk value encoding of the badger store. Every value starts with a
// format byte so a later release can change the layout and still read old
// records. Integers are unsigned varints, strings and byte slices are a
// varint length followed by the bytes, times are a byte 0 (the zero time)
// or 1 followed by a signed varint of Unix nanoseconds.
//
// Message (format 1):
//
//	format=1 | flags (bits 0-1 QoS, bit 2 Retain) | seq | created
//	| topic | publisher | properties | payload
//
// properties is a varint count followed by (property id, value) pairs in
// the wire types of MQTT 5.0 §2.2.2.2, for every property Has reports.
// Session (format 1) starts with its revision so a compare-and-swap can
// read it without decoding the rest.

const codecVersion = 1

var errCorruptValue = errors.New("storage: corrupt record")

type encoder struct{ b []byte }

func (e *encoder) byte(v byte)      { e.b = append(e.b, v) }
func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) bytes(v []byte) {
	e.uvarint(uint64(len(v)))
	e.b = append(e.b, v...)
}
func (e *encoder) string(v string) {
	e.uvarint(uint64(len(v)))
	e.b = append(e.b, v...)
}
func (e *encoder) time(t time.Time) {
	if t.IsZero() {
		e.byte(0)
		return
	}
	e.byte(1)
	e.b = binary.AppendVarint(e.b, t.UnixNano())
}

// decoder reads what encoder wrote; the first failure sticks in err and
// every later read returns a zero value, so callers check err once.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated %s", errCorruptValue, what)
	}
}

func (d *decoder) byte(what string) byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail(what)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) raw(what string) []byte {
	n := d.uvarint(what)
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail(what)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// bytes returns a copy (badger's value buffers are reused after the read).
func (d *decoder) bytes(what string) []byte {
	v := d.raw(what)
	if len(v) == 0 {
		return nil
	}
	return append([]byte(nil), v...)
}

func (d *decoder) string(what string) string { return string(d.raw(what)) }

func (d *decoder) time(what string) time.Time {
	switch d.byte(what) {
	case 0:
		return time.Time{}
	case 1:
	default:
		if d.err == nil {
			d.err = fmt.Errorf("%w: bad %s", errCorruptValue, what)
		}
		return time.Time{}
	}
	if d.err != nil {
		return time.Time{}
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(what)
		return time.Time{}
	}
	d.b = d.b[n:]
	return time.Unix(0, v).UTC()
}

// propKind is the wire type of a property value.
type propKind byte

const (
	kByte propKind = iota
	kU16
	kU32
	kString
	kBytes
	kSubIDs
	kUser
)

// propKinds lists every property id the codec stores, in encoding order.
var propKinds = []struct {
	id   packets.PropID
	kind propKind
}{
	{packets.PropPayloadFormat, kByte},
	{packets.PropMessageExpiry, kU32},
	{packets.PropContentType, kString},
	{packets.PropResponseTopic, kString},
	{packets.PropCorrelationData, kBytes},
	{packets.PropSubscriptionID, kSubIDs},
	{packets.PropSessionExpiry, kU32},
	{packets.PropAssignedClientID, kString},
	{packets.PropServerKeepAlive, kU16},
	{packets.PropAuthMethod, kString},
	{packets.PropAuthData, kBytes},
	{packets.PropRequestProblemInfo, kByte},
	{packets.PropWillDelay, kU32},
	{packets.PropRequestResponseInfo, kByte},
	{packets.PropResponseInfo, kString},
	{packets.PropServerReference, kString},
	{packets.PropReasonString, kString},
	{packets.PropReceiveMaximum, kU16},
	{packets.PropTopicAliasMaximum, kU16},
	{packets.PropTopicAlias, kU16},
	{packets.PropMaximumQoS, kByte},
	{packets.PropRetainAvailable, kByte},
	{packets.PropUser, kUser},
	{packets.PropMaximumPacketSize, kU32},
	{packets.PropWildcardSubAvailable, kByte},
	{packets.PropSubIDAvailable, kByte},
	{packets.PropSharedSubAvailable, kByte},
}

// propFields returns pointers to the field(s) of property id in p.
func propField(p *packets.Properties, id packets.PropID) any {
	switch id {
	case packets.PropPayloadFormat:
		return &p.PayloadFormat
	case packets.PropMessageExpiry:
		return &p.MessageExpiry
	case packets.PropContentType:
		return &p.ContentType
	case packets.PropResponseTopic:
		return &p.ResponseTopic
	case packets.PropCorrelationData:
		return &p.CorrelationData
	case packets.PropSubscriptionID:
		return &p.SubscriptionIDs
	case packets.PropSessionExpiry:
		return &p.SessionExpiry
	case packets.PropAssignedClientID:
		return &p.AssignedClientID
	case packets.PropServerKeepAlive:
		return &p.ServerKeepAlive
	case packets.PropAuthMethod:
		return &p.AuthMethod
	case packets.PropAuthData:
		return &p.AuthData
	case packets.PropRequestProblemInfo:
		return &p.RequestProblemInfo
	case packets.PropWillDelay:
		return &p.WillDelay
	case packets.PropRequestResponseInfo:
		return &p.RequestResponseInfo
	case packets.PropResponseInfo:
		return &p.ResponseInfo
	case packets.PropServerReference:
		return &p.ServerReference
	case packets.PropReasonString:
		return &p.ReasonString
	case packets.PropReceiveMaximum:
		return &p.ReceiveMaximum
	case packets.PropTopicAliasMaximum:
		return &p.TopicAliasMaximum
	case packets.PropTopicAlias:
		return &p.TopicAlias
	case packets.PropMaximumQoS:
		return &p.MaximumQoS
	case packets.PropRetainAvailable:
		return &p.RetainAvailable
	case packets.PropUser:
		return &p.User
	case packets.PropMaximumPacketSize:
		return &p.MaximumPacketSize
	case packets.PropWildcardSubAvailable:
		return &p.WildcardSubAvailable
	case packets.PropSubIDAvailable:
		return &p.SubIDAvailable
	case packets.PropSharedSubAvailable:
		return &p.SharedSubAvailable
	}
	return nil
}

func (e *encoder) properties(p *packets.Properties) {
	n := 0
	for _, pk := range propKinds {
		if p.Has(pk.id) {
			n++
		}
	}
	e.uvarint(uint64(n))
	if n == 0 {
		return
	}
	for _, pk := range propKinds {
		if !p.Has(pk.id) {
			continue
		}
		e.byte(byte(pk.id))
		switch f := propField(p, pk.id).(type) {
		case *byte:
			e.byte(*f)
		case *uint16:
			e.uvarint(uint64(*f))
		case *uint32:
			e.uvarint(uint64(*f))
		case *string:
			e.string(*f)
		case *[]byte:
			e.bytes(*f)
		case *[]uint32:
			e.uvarint(uint64(len(*f)))
			for _, v := range *f {
				e.uvarint(uint64(v))
			}
		case *[]packets.UserProperty:
			e.uvarint(uint64(len(*f)))
			for _, u := range *f {
				e.string(u.Key)
				e.string(u.Value)
			}
		}
	}
}

// properties decodes what encoder.properties wrote. A property whose value
// is zero is marked present so Has still reports it after the round trip.
func (d *decoder) properties(p *packets.Properties) {
	n := d.uvarint("property count")
	if n > uint64(len(propKinds)) {
		d.fail("property count")
		return
	}
	var seen uint64 // property ids so far: the encoder writes each once
	for i := uint64(0); i < n && d.err == nil; i++ {
		id := packets.PropID(d.byte("property id"))
		if id < 64 {
			if seen&(1<<id) != 0 {
				d.err = fmt.Errorf("%w: property id 0x%02x repeated", errCorruptValue, byte(id))
				return
			}
			seen |= 1 << id
		}
		zero := false
		switch f := propField(p, id).(type) {
		case *byte:
			*f = d.byte("property")
			zero = *f == 0
		case *uint16:
			*f = uint16(d.uvarint("property"))
			zero = *f == 0
		case *uint32:
			*f = uint32(d.uvarint("property"))
			zero = *f == 0
		case *string:
			*f = d.string("property")
			zero = *f == ""
		case *[]byte:
			*f = d.bytes("property")
			zero = len(*f) == 0
		case *[]uint32:
			c := d.uvarint("subscription id count")
			if c > uint64(len(d.b)) {
				d.fail("subscription ids")
				return
			}
			s := make([]uint32, 0, c)
			for j := uint64(0); j < c; j++ {
				s = append(s, uint32(d.uvarint("subscription id")))
			}
			*f = s
			zero = len(s) == 0
		case *[]packets.UserProperty:
			c := d.uvarint("user property count")
			if c > uint64(len(d.b)) {
				d.fail("user properties")
				return
			}
			s := make([]packets.UserProperty, 0, c)
			for j := uint64(0); j < c; j++ {
				s = append(s, packets.UserProperty{Key: d.string("user property"), Value: d.string("user property")})
			}
			*f = s
			zero = len(s) == 0
		default:
			d.err = fmt.Errorf("%w: unknown property id 0x%02x", errCorruptValue, byte(id))
			return
		}
		if zero {
			p.Mark(id)
		}
	}
}

func (e *encoder) message(m *Message) {
	e.byte(codecVersion)
	flags := m.QoS & 0x03
	if m.Retain {
		flags |= 0x04
	}
	e.byte(flags)
	e.uvarint(m.Seq)
	e.time(m.Created)
	e.string(m.Topic)
	e.string(m.Publisher)
	e.properties(&m.Properties)
	e.bytes(m.Payload)
}

// appendMessage appends the encoding of m to dst.
func appendMessage(dst []byte, m *Message) []byte {
	e := encoder{b: dst}
	e.message(m)
	return e.b
}

func (d *decoder) message(m *Message) {
	if v := d.byte("message format"); d.err == nil && v != codecVersion {
		d.err = fmt.Errorf("%w: unknown message format %d", errCorruptValue, v)
		return
	}
	flags := d.byte("message flags")
	m.QoS = flags & 0x03
	m.Retain = flags&0x04 != 0
	m.Seq = d.uvarint("seq")
	m.Created = d.time("created")
	m.Topic = d.string("topic")
	m.Publisher = d.string("publisher")
	d.properties(&m.Properties)
	m.Payload = d.bytes("payload")
}

// decodeMessage decodes a message record; the result shares no memory with b.
func decodeMessage(b []byte) (*Message, error) {
	d := decoder{b: b}
	m := new(Message)
	d.message(m)
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes after message", errCorruptValue, len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return m, nil
}

func appendSession(dst []byte, s *Session) []byte {
	e := encoder{b: dst}
	e.byte(codecVersion)
	e.uvarint(s.Revision)
	e.string(s.ClientID)
	e.byte(byte(s.Version))
	e.uvarint(uint64(s.ExpiryInterval))
	e.time(s.DisconnectedAt)
	e.uvarint(uint64(len(s.Subscriptions)))
	for _, sub := range s.Subscriptions {
		e.string(sub.Filter)
		var flags byte
		if sub.NoLocal {
			flags |= 0x01
		}
		if sub.RetainAsPublished {
			flags |= 0x02
		}
		e.byte(flags)
		e.byte(sub.QoS)
		e.byte(sub.RetainHandling)
		e.uvarint(uint64(sub.SubscriptionID))
	}
	if s.Will == nil {
		e.byte(0)
	} else {
		e.byte(1)
		e.message(s.Will)
	}
	e.time(s.WillAt)
	return e.b
}

// sessionRevision reads only the revision of an encoded session.
func sessionRevision(b []byte) (uint64, error) {
	d := decoder{b: b}
	if v := d.byte("session format"); d.err == nil && v != codecVersion {
		return 0, fmt.Errorf("%w: unknown session format %d", errCorruptValue, v)
	}
	rev := d.uvarint("revision")
	return rev, d.err
}

func decodeSession(b []byte) (*Session, error) {
	d := decoder{b: b}
	if v := d.byte("session format"); d.err == nil && v != codecVersion {
		return nil, fmt.Errorf("%w: unknown session format %d", errCorruptValue, v)
	}
	s := new(Session)
	s.Revision = d.uvarint("revision")
	s.ClientID = d.string("client id")
	s.Version = packets.Version(d.byte("version"))
	s.ExpiryInterval = uint32(d.uvarint("expiry interval"))
	s.DisconnectedAt = d.time("disconnected at")
	n := d.uvarint("subscription count")
	if n > uint64(len(d.b)) {
		d.fail("subscriptions")
	}
	if d.err == nil && n > 0 {
		s.Subscriptions = make([]Subscription, 0, n)
		for i := uint64(0); i < n && d.err == nil; i++ {
			var sub Subscription
			sub.Filter = d.string("filter")
			flags := d.byte("subscription flags")
			sub.NoLocal = flags&0x01 != 0
			sub.RetainAsPublished = flags&0x02 != 0
			sub.QoS = d.byte("subscription qos")
			sub.RetainHandling = d.byte("retain handling")
			sub.SubscriptionID = uint32(d.uvarint("subscription id"))
			s.Subscriptions = append(s.Subscriptions, sub)
		}
	}
	if d.byte("will flag") == 1 {
		s.Will = new(Message)
		d.message(s.Will)
	}
	s.WillAt = d.time("will at")
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes after session", errCorruptValue, len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return s, nil
}

func appendPending(dst []byte, p Pending) []byte {
	e := encoder{b: dst}
	e.byte(codecVersion)
	e.byte(p.QoS)
	var flags byte
	if p.Retain {
		flags |= 0x01
	}
	e.byte(flags)
	e.byte(p.State)
	e.uvarint(uint64(p.PacketID))
	e.uvarint(uint64(len(p.SubscriptionIDs)))
	for _, id := range p.SubscriptionIDs {
		e.uvarint(uint64(id))
	}
	return e.b
}

// decodePending decodes a pending entry; seq comes from its key.
func decodePending(seq uint64, b []byte) (Pending, error) {
	d := decoder{b: b}
	if v := d.byte("pending format"); d.err == nil && v != codecVersion {
		return Pending{}, fmt.Errorf("%w: unknown pending format %d", errCorruptValue, v)
	}
	p := Pending{Seq: seq}
	p.QoS = d.byte("qos")
	p.Retain = d.byte("pending flags")&0x01 != 0
	p.State = d.byte("state")
	p.PacketID = uint16(d.uvarint("packet id"))
	n := d.uvarint("subscription id count")
	if n > uint64(len(d.b)) {
		d.fail("subscription ids")
	}
	if d.err == nil && n > 0 {
		p.SubscriptionIDs = make([]uint32, 0, n)
		for i := uint64(0); i < n; i++ {
			p.SubscriptionIDs = append(p.SubscriptionIDs, uint32(d.uvarint("subscription id")))
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes after pending entry", errCorruptValue, len(d.b))
	}
	return p, d.err
}
