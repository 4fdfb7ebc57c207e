package packets

import "strconv"

// Decode decodes one complete packet from the front of b (fixed header
// included) and returns it with the number of bytes it occupied. When b
// holds less than a whole packet it returns ErrIncomplete and 0. v is the
// connection's protocol version; a CONNECT is always decoded with the
// version it carries.
//
// The returned packet aliases b: its strings, payload and binary fields
// point into b, so b must not be modified while the packet is in use (the
// Reader hands every packet a fresh buffer for this reason).
func Decode(b []byte, v Version) (Packet, int, error) {
	if len(b) == 0 {
		return nil, 0, ErrIncomplete
	}
	h := FixedHeader{Type: Type(b[0] >> 4), Flags: b[0] & 0x0f}
	if err := checkFlags(h, v); err != nil {
		return nil, 0, err
	}
	rl, n, st := decodeVBI(b[1:])
	switch st {
	case vbiIncomplete:
		return nil, 0, ErrIncomplete
	case vbiTooLong:
		return nil, 0, malformed(h.Type, "RemainingLength", "variable byte integer longer than 4 bytes")
	case vbiNotMinimal:
		return nil, 0, malformed(h.Type, "RemainingLength", "variable byte integer not in its shortest form") // [MQTT-1.5.5-1]
	}
	h.RemainingLength = rl
	end := 1 + n + rl
	if len(b) < end {
		return nil, 0, ErrIncomplete
	}
	p, err := DecodeBody(h, b[1+n:end:end], v)
	if err != nil {
		return nil, end, err
	}
	return p, end, nil
}

// checkFlags enforces the fixed-header flags of Table 2-2 (5.0 §2.1.3,
// 3.1.1 §2.2.2): reserved bits carry exactly the listed values
// [MQTT-2.1.3-1] [MQTT-2.2.2-1], else the packet is malformed
// [MQTT-2.2.2-2]. PUBLISH flags are checked by the PUBLISH decoder. Type 0
// is reserved, and type 15 (AUTH) exists only in 5.0.
func checkFlags(h FixedHeader, v Version) error {
	want := byte(0)
	switch h.Type {
	case 0:
		return malformed(0, "Type", "reserved packet type 0")
	case TypePublish:
		return nil
	case TypePubrel, TypeSubscribe, TypeUnsubscribe:
		want = 0x02 // [MQTT-3.6.1-1] [MQTT-3.8.1-1] [MQTT-3.10.1-1]
		if v == V31 && h.Flags == 0x0a {
			return nil // MQTT 3.1 set DUP on retransmitted PUBREL/SUBSCRIBE/UNSUBSCRIBE
		}
	case TypeAuth:
		if v != V5 && v != 0 {
			return malformed(h.Type, "Type", "AUTH exists only in MQTT 5.0")
		}
	}
	if h.Flags != want {
		return malformed(h.Type, "Flags", "reserved fixed-header flags 0x"+strconv.FormatUint(uint64(h.Flags), 16)+
			", want 0x"+strconv.FormatUint(uint64(want), 16))
	}
	return nil
}

// DecodeBody decodes a packet whose fixed header has already been read.
// body must hold exactly h.RemainingLength bytes; the packet aliases it.
// A CONNECT is decoded with the version inside it; every other packet
// needs v to be a supported version.
func DecodeBody(h FixedHeader, body []byte, v Version) (Packet, error) {
	p, _, err := decodeBody(h, body, v, nil)
	return p, err
}

// decodeBody is DecodeBody that also reports the version a CONNECT asked
// for, once its protocol name and level were read and are supported, even
// when a later field fails, so the Reader can answer in the right format.
// PUBLISH and acknowledgements are decoded into a's values when a is not
// nil.
func decodeBody(h FixedHeader, body []byte, v Version, a *reused) (Packet, Version, error) {
	if h.RemainingLength != len(body) {
		return nil, 0, malformed(h.Type, "RemainingLength", "remaining length does not match the body")
	}
	if h.Type == TypeConnect {
		if err := checkFlags(h, V5); err != nil {
			return nil, 0, err
		}
		return decodeConnect(body)
	}
	if !v.valid() {
		return nil, 0, protoErr(h.Type, "", "protocol version not known: the first packet must be CONNECT")
	}
	if err := checkFlags(h, v); err != nil {
		return nil, 0, err
	}
	d := decoder{b: body, t: h.Type}
	var (
		p   Packet
		err error
	)
	switch h.Type {
	case TypeConnack:
		p, err = d.connack(v)
	case TypePublish:
		p, err = d.publish(h.Flags, v, a.publish())
	case TypePuback:
		x := a.puback()
		x.PacketID, x.ReasonCode, err = d.ack(v, &x.Properties)
		p = x
	case TypePubrec:
		x := a.pubrec()
		x.PacketID, x.ReasonCode, err = d.ack(v, &x.Properties)
		p = x
	case TypePubrel:
		x := a.pubrel()
		x.PacketID, x.ReasonCode, err = d.ack(v, &x.Properties)
		p = x
	case TypePubcomp:
		x := a.pubcomp()
		x.PacketID, x.ReasonCode, err = d.ack(v, &x.Properties)
		p = x
	case TypeSubscribe:
		p, err = d.subscribe(v)
	case TypeSuback:
		p, err = d.suback(v)
	case TypeUnsubscribe:
		p, err = d.unsubscribe(v)
	case TypeUnsuback:
		p, err = d.unsuback(v)
	case TypePingreq:
		p, err = &Pingreq{}, d.end()
	case TypePingresp:
		p, err = &Pingresp{}, d.end()
	case TypeDisconnect:
		x := &Disconnect{}
		x.ReasonCode, err = d.reasonAndProps(v, &x.Properties)
		p = x
	case TypeAuth:
		x := &Auth{}
		x.ReasonCode, err = d.reasonAndProps(v, &x.Properties)
		p = x
	default:
		err = malformed(h.Type, "Type", "unknown packet type")
	}
	if err != nil {
		return nil, 0, err
	}
	return p, 0, nil
}

// end checks that the whole body was consumed: bytes left over mean the
// remaining length disagrees with the content, a Malformed Packet.
func (d *decoder) end() error {
	if d.i != len(d.b) {
		return malformed(d.t, "RemainingLength", strconv.Itoa(len(d.b)-d.i)+" unexpected bytes after the last field")
	}
	return nil
}

// packetID reads a Packet Identifier, which is non-zero wherever one is
// present [MQTT-2.3.1-1] [MQTT-2.2.1-3] [MQTT-2.2.1-4].
func (d *decoder) packetID() (uint16, error) {
	id, err := d.u16("PacketID")
	if err == nil && id == 0 {
		return 0, protoErr(d.t, "PacketID", "packet identifier 0")
	}
	return id, err
}

func decodeConnect(body []byte) (*Connect, Version, error) {
	d := decoder{b: body, t: TypeConnect}
	c := &Connect{}
	var err error
	if c.ProtocolName, err = d.str("ProtocolName"); err != nil {
		return nil, 0, err
	}
	lvl, err := d.u8("ProtocolLevel")
	if err != nil {
		return nil, 0, err
	}
	v := Version(lvl)
	switch {
	case c.ProtocolName == "MQTT" && (v == V311 || v == V5):
	case c.ProtocolName == "MQIsdp" && v == V31:
	default: // [MQTT-3.1.2-1] [MQTT-3.1.2-2]
		return nil, 0, &Error{Code: UnsupportedProtocolVersion, Packet: TypeConnect, Field: "ProtocolLevel",
			Detail: "unsupported protocol " + strconv.Quote(c.ProtocolName) + " level " + strconv.Itoa(int(lvl))}
	}
	c.Version = v
	if err := d.connectRest(c, v); err != nil {
		return nil, v, err
	}
	return c, v, nil
}

func (d *decoder) connectRest(c *Connect, v Version) error {
	flags, err := d.u8("ConnectFlags")
	if err != nil {
		return err
	}
	if flags&0x01 != 0 { // [MQTT-3.1.2-3]
		return malformed(d.t, "ConnectFlags", "reserved flag bit 0 is set")
	}
	c.CleanStart = flags&0x02 != 0
	willFlag := flags&0x04 != 0
	willQoS := (flags >> 3) & 0x03
	willRetain := flags&0x20 != 0
	c.PasswordFlag = flags&0x40 != 0
	c.UsernameFlag = flags&0x80 != 0
	if !willFlag && (willQoS != 0 || willRetain) {
		// 5.0 [MQTT-3.1.2-11] [MQTT-3.1.2-13]; 3.1.1 [MQTT-3.1.2-13] [MQTT-3.1.2-15]
		return malformed(d.t, "ConnectFlags", "Will QoS or Will Retain set without the Will Flag")
	}
	if willQoS == 3 { // 5.0 [MQTT-3.1.2-12]; 3.1.1 [MQTT-3.1.2-14]
		return malformed(d.t, "ConnectFlags", "Will QoS 3")
	}
	if v != V5 && c.PasswordFlag && !c.UsernameFlag { // 3.1.1 [MQTT-3.1.2-22]
		return malformed(d.t, "ConnectFlags", "Password Flag set without the User Name Flag")
	}
	if c.KeepAlive, err = d.u16("KeepAlive"); err != nil {
		return err
	}
	if v == V5 {
		if err := d.props(&c.Properties, TypeConnect); err != nil {
			return err
		}
	}
	if c.ClientID, err = d.str("ClientID"); err != nil { // [MQTT-3.1.3-3] [MQTT-3.1.3-4]
		return err
	}
	if willFlag { // 5.0 [MQTT-3.1.2-9]; 3.1.1 [MQTT-3.1.2-9]
		w := &Will{QoS: willQoS, Retain: willRetain}
		if v == V5 {
			if err := d.props(&w.Properties, WillProperties); err != nil {
				if e, ok := err.(*Error); ok {
					e.Field = "Will." + e.Field
				}
				return err
			}
		}
		if w.Topic, err = d.str("Will.Topic"); err != nil { // 5.0 [MQTT-3.1.3-11]; 3.1.1 [MQTT-3.1.3-10]
			return err
		}
		if e := ValidTopicName(w.Topic); e != nil {
			return &Error{Code: TopicNameInvalid, Packet: d.t, Field: "Will.Topic", Detail: e.(*Error).Detail}
		}
		if w.Payload, err = d.binary("Will.Payload"); err != nil {
			return err
		}
		c.Will = w
	}
	if c.UsernameFlag { // [MQTT-3.1.2-17] (5.0) [MQTT-3.1.2-19] (3.1.1)
		if c.Username, err = d.str("Username"); err != nil { // 5.0 [MQTT-3.1.3-12]; 3.1.1 [MQTT-3.1.3-11]
			return err
		}
	}
	if c.PasswordFlag {
		if c.Password, err = d.binary("Password"); err != nil {
			return err
		}
	}
	return d.end()
}

func (d *decoder) connack(v Version) (*Connack, error) {
	c := &Connack{}
	flags, err := d.u8("AcknowledgeFlags")
	if err != nil {
		return nil, err
	}
	if flags&0xfe != 0 { // [MQTT-3.2.2-1]
		return nil, malformed(d.t, "AcknowledgeFlags", "reserved bits 7-1 are set")
	}
	c.SessionPresent = flags&0x01 != 0
	code, err := d.u8("ReasonCode")
	if err != nil {
		return nil, err
	}
	if v == V5 {
		c.ReasonCode = ReasonCode(code)
		if !connackCodes.has(c.ReasonCode) { // [MQTT-3.2.2-8]
			return nil, protoErr(d.t, "ReasonCode", "reason code 0x"+strconv.FormatUint(uint64(code), 16)+" not defined for CONNACK")
		}
		if err := d.props(&c.Properties, TypeConnack); err != nil {
			return nil, err
		}
	} else {
		if code > ConnRefusedNotAuthorized311 {
			return nil, protoErr(d.t, "ReasonCode", "reserved CONNACK return code "+strconv.Itoa(int(code)))
		}
		c.ReasonCode = ReasonCodeFromConnack311(code)
	}
	if c.SessionPresent && c.ReasonCode != Success { // 5.0 [MQTT-3.2.2-6]; 3.1.1 [MQTT-3.2.2-4]
		return nil, protoErr(d.t, "AcknowledgeFlags", "Session Present with a non-zero reason code")
	}
	return c, d.end()
}

func (d *decoder) publish(flags byte, v Version, p *Publish) (*Publish, error) {
	p.Dup = flags&0x08 != 0
	p.QoS = (flags >> 1) & 0x03
	p.Retain = flags&0x01 != 0
	if p.QoS == 3 { // [MQTT-3.3.1-4]
		return nil, malformed(d.t, "Flags", "QoS 3")
	}
	if p.Dup && p.QoS == 0 { // [MQTT-3.3.1-2]
		return nil, protoErr(d.t, "Flags", "DUP set on a QoS 0 message")
	}
	var err error
	if p.Topic, err = d.str("Topic"); err != nil { // [MQTT-3.3.2-1]
		return nil, err
	}
	for i := 0; i < len(p.Topic); i++ {
		if c := p.Topic[i]; c == '+' || c == '#' { // [MQTT-3.3.2-2] [MQTT-4.7.0-1] (5.0) [MQTT-4.7.1-1] (3.1.1)
			return nil, &Error{Code: TopicNameInvalid, Packet: d.t, Field: "Topic", Detail: "wildcard character in topic name"}
		}
	}
	if p.QoS > 0 {
		if p.PacketID, err = d.packetID(); err != nil {
			return nil, err
		}
	} // a QoS 0 PUBLISH has no Packet Identifier [MQTT-2.2.1-2] [MQTT-2.3.1-5]
	if v == V5 {
		if err := d.props(&p.Properties, TypePublish); err != nil {
			return nil, err
		}
		// An empty topic name needs a Topic Alias (5.0 §3.3.2.1); whether
		// the alias is known is the receiver's business.
		if p.Topic == "" && p.Properties.TopicAlias == 0 {
			return nil, protoErr(d.t, "Topic", "empty topic name without a Topic Alias")
		}
	} else if p.Topic == "" { // [MQTT-4.7.3-1]
		return nil, &Error{Code: TopicNameInvalid, Packet: d.t, Field: "Topic", Detail: "empty topic name"}
	}
	if d.i < len(d.b) {
		p.Payload = d.b[d.i:len(d.b):len(d.b)]
		d.i = len(d.b)
	}
	return p, nil
}

// ack decodes PUBACK, PUBREC, PUBREL and PUBCOMP. In 5.0 the reason code
// and properties may be left out (remaining length 2 means Success, 3 means
// no properties; 5.0 §3.4.2.1).
func (d *decoder) ack(v Version, props *Properties) (uint16, ReasonCode, error) {
	id, err := d.packetID()
	if err != nil {
		return 0, 0, err
	}
	code := Success
	if v == V5 && d.rest() > 0 {
		c, _ := d.u8("ReasonCode")
		code = ReasonCode(c)
		if !ValidReasonCode(d.t, code) { // [MQTT-3.4.2-1] [MQTT-3.5.2-1] [MQTT-3.6.2-1] [MQTT-3.7.2-1]
			return 0, 0, protoErr(d.t, "ReasonCode", "reason code 0x"+strconv.FormatUint(uint64(c), 16)+" not defined for "+d.t.String())
		}
		if d.rest() > 0 {
			if err := d.props(props, d.t); err != nil {
				return 0, 0, err
			}
		}
	}
	return id, code, d.end()
}

// reasonAndProps decodes DISCONNECT and AUTH: nothing in 3.1.1; in 5.0 an
// optional reason code followed by optional properties (§3.14.2, §3.15.2).
func (d *decoder) reasonAndProps(v Version, props *Properties) (ReasonCode, error) {
	code := Success
	if v == V5 && d.rest() > 0 {
		c, _ := d.u8("ReasonCode")
		code = ReasonCode(c)
		if !ValidReasonCode(d.t, code) { // [MQTT-3.14.2-1] [MQTT-3.15.2-1]
			return 0, protoErr(d.t, "ReasonCode", "reason code 0x"+strconv.FormatUint(uint64(c), 16)+" not defined for "+d.t.String())
		}
		if d.rest() > 0 {
			if err := d.props(props, d.t); err != nil {
				return 0, err
			}
		}
	}
	return code, d.end()
}

func (d *decoder) filter(field string) (string, error) {
	f, err := d.str(field) // [MQTT-3.8.3-1] [MQTT-3.10.3-1]
	if err != nil {
		return "", err
	}
	if e := ValidTopicFilter(f); e != nil {
		return "", &Error{Code: TopicFilterInvalid, Packet: d.t, Field: field, Detail: e.(*Error).Detail}
	}
	return f, nil
}

func (d *decoder) subscribe(v Version) (*Subscribe, error) {
	s := &Subscribe{}
	var err error
	if s.PacketID, err = d.packetID(); err != nil {
		return nil, err
	}
	if v == V5 {
		if err := d.props(&s.Properties, TypeSubscribe); err != nil {
			return nil, err
		}
	}
	if d.rest() == 0 { // 5.0 [MQTT-3.8.3-2]; 3.1.1 [MQTT-3.8.3-3]
		return nil, protoErr(d.t, "Subscriptions", "SUBSCRIBE without any topic filter")
	}
	s.Subscriptions = make([]Subscription, 0, 1)
	for d.rest() > 0 {
		sub, err := d.subscription(v)
		if err != nil {
			return nil, indexed(err, "Subscriptions", len(s.Subscriptions))
		}
		s.Subscriptions = append(s.Subscriptions, sub)
	}
	return s, nil
}

// indexed rewrites the Field of a per-entry error from "List.X" to
// "List[i].X", so the message names the entry at fault. It runs only on the
// error path.
func indexed(err error, list string, i int) error {
	if e, ok := err.(*Error); ok && len(e.Field) >= len(list) && e.Field[:len(list)] == list {
		e.Field = list + "[" + strconv.Itoa(i) + "]" + e.Field[len(list):]
	}
	return err
}

// subscription decodes one Topic Filter and its Subscription Options.
func (d *decoder) subscription(v Version) (Subscription, error) {
	var sub Subscription
	var err error
	if sub.Filter, err = d.filter("Subscriptions.Filter"); err != nil {
		return sub, err
	}
	o, err := d.u8("Subscriptions.Options")
	if err != nil {
		return sub, err
	}
	sub.QoS = o & 0x03
	if sub.QoS == 3 { // [MQTT-3.8.3-4] (3.1.1)
		return sub, malformed(d.t, "Subscriptions.Options", "QoS 3")
	}
	if v != V5 {
		if o&0xfc != 0 { // [MQTT-3.8.3-4] (3.1.1)
			return sub, malformed(d.t, "Subscriptions.Options", "reserved bits 7-2 are set")
		}
		return sub, nil
	}
	if o&0xc0 != 0 { // [MQTT-3.8.3-5]
		return sub, malformed(d.t, "Subscriptions.Options", "reserved bits 7-6 are set")
	}
	sub.NoLocal = o&0x04 != 0
	sub.RetainAsPublished = o&0x08 != 0
	sub.RetainHandling = (o >> 4) & 0x03
	if sub.RetainHandling == 3 { // 5.0 §3.8.3.1
		return sub, protoErr(d.t, "Subscriptions.Options", "Retain Handling 3")
	}
	if sub.NoLocal && len(sub.Filter) > len(SharePrefix) && sub.Filter[:len(SharePrefix)] == SharePrefix {
		return sub, protoErr(d.t, "Subscriptions.Options", "No Local on a shared subscription") // [MQTT-3.8.3-4] (5.0)
	}
	return sub, nil
}

func (d *decoder) suback(v Version) (*Suback, error) {
	s := &Suback{}
	var err error
	if s.PacketID, err = d.packetID(); err != nil {
		return nil, err
	}
	if v == V5 {
		if err := d.props(&s.Properties, TypeSuback); err != nil {
			return nil, err
		}
	}
	if d.rest() == 0 {
		return nil, protoErr(d.t, "ReasonCodes", "SUBACK without any reason code")
	}
	s.ReasonCodes = make([]ReasonCode, d.rest())
	for i, c := range d.b[d.i:] {
		rc := ReasonCode(c)
		if (v == V5 && !subackCodes.has(rc)) || (v != V5 && !suback311Code.has(rc)) { // [MQTT-3.9.3-2]
			return nil, indexed(protoErr(d.t, "ReasonCodes", "reason code 0x"+strconv.FormatUint(uint64(c), 16)+" not defined for SUBACK"), "ReasonCodes", i)
		}
		s.ReasonCodes[i] = rc
	}
	d.i = len(d.b)
	return s, nil
}

func (d *decoder) unsubscribe(v Version) (*Unsubscribe, error) {
	u := &Unsubscribe{}
	var err error
	if u.PacketID, err = d.packetID(); err != nil {
		return nil, err
	}
	if v == V5 {
		if err := d.props(&u.Properties, TypeUnsubscribe); err != nil {
			return nil, err
		}
	}
	if d.rest() == 0 { // [MQTT-3.10.3-2]
		return nil, protoErr(d.t, "Filters", "UNSUBSCRIBE without any topic filter")
	}
	u.Filters = make([]string, 0, 1)
	for d.rest() > 0 {
		f, err := d.filter("Filters")
		if err != nil {
			return nil, indexed(err, "Filters", len(u.Filters))
		}
		u.Filters = append(u.Filters, f)
	}
	return u, nil
}

func (d *decoder) unsuback(v Version) (*Unsuback, error) {
	u := &Unsuback{}
	var err error
	if u.PacketID, err = d.packetID(); err != nil {
		return nil, err
	}
	if v != V5 {
		return u, d.end() // 3.1.1 UNSUBACK has no payload
	}
	if err := d.props(&u.Properties, TypeUnsuback); err != nil {
		return nil, err
	}
	if d.rest() == 0 {
		return nil, protoErr(d.t, "ReasonCodes", "UNSUBACK without any reason code")
	}
	u.ReasonCodes = make([]ReasonCode, d.rest())
	for i, c := range d.b[d.i:] {
		if !unsubackCodes.has(ReasonCode(c)) { // [MQTT-3.11.3-2]
			return nil, indexed(protoErr(d.t, "ReasonCodes", "reason code 0x"+strconv.FormatUint(uint64(c), 16)+" not defined for UNSUBACK"), "ReasonCodes", i)
		}
		u.ReasonCodes[i] = ReasonCode(c)
	}
	d.i = len(d.b)
	return u, nil
}

// reused holds the PUBLISH and acknowledgement packets a Reader with
// ReusePackets decodes into, each allocated on first use (a connection
// that only ever sends PINGREQ costs one small struct); a nil *reused
// allocates a new packet each time.
type reused struct {
	pub  *Publish
	pa   *Puback
	prec *Pubrec
	prel *Pubrel
	pc   *Pubcomp
}

// reuse returns *slot, allocated on first use and reset to the zero value.
func reuse[T any](slot **T) *T {
	if *slot == nil {
		*slot = new(T)
	} else {
		var zero T
		**slot = zero
	}
	return *slot
}

func (a *reused) publish() *Publish {
	if a == nil {
		return &Publish{}
	}
	return reuse(&a.pub)
}

func (a *reused) puback() *Puback {
	if a == nil {
		return &Puback{}
	}
	return reuse(&a.pa)
}

func (a *reused) pubrec() *Pubrec {
	if a == nil {
		return &Pubrec{}
	}
	return reuse(&a.prec)
}

func (a *reused) pubrel() *Pubrel {
	if a == nil {
		return &Pubrel{}
	}
	return reuse(&a.prel)
}

func (a *reused) pubcomp() *Pubcomp {
	if a == nil {
		return &Pubcomp{}
	}
	return reuse(&a.pc)
}
