package packets

// Connect is the first packet a client sends (MQTT 5.0 §3.1, 3.1.1 §3.1).
// ProtocolName and Version come from the variable header: "MQIsdp"/3,
// "MQTT"/4 or "MQTT"/5. Properties are 5.0 only.
type Connect struct {
	ProtocolName string
	Version      Version
	CleanStart   bool // Clean Session in 3.1/3.1.1
	KeepAlive    uint16
	ClientID     string
	UsernameFlag bool
	Username     string
	PasswordFlag bool
	Password     []byte
	Will         *Will // nil when the Will Flag is 0
	Properties   Properties
}

// Will is the Will Message carried by CONNECT when the Will Flag is set.
// Properties holds the 5.0 Will Properties (Will Delay Interval, Payload
// Format, Message Expiry, Content Type, Response Topic, Correlation Data,
// User Properties).
type Will struct {
	Topic      string
	Payload    []byte
	QoS        byte
	Retain     bool
	Properties Properties
}

// Connack answers CONNECT. ReasonCode uses the 5.0 scheme for every
// version; for 3.1/3.1.1 the codec maps it to and from the 3.1.1 return codes
// (see ReasonCode.ConnackReturnCode).
type Connack struct {
	SessionPresent bool
	ReasonCode     ReasonCode
	Properties     Properties
}

// Publish carries an application message. Payload is not copied by the
// encoder; after Decode it aliases the decoded body buffer.
type Publish struct {
	Dup        bool
	QoS        byte
	Retain     bool
	Topic      string
	PacketID   uint16 // present only when QoS > 0
	Properties Properties
	Payload    []byte
}

// Puback acknowledges a QoS 1 PUBLISH.
type Puback struct {
	PacketID   uint16
	ReasonCode ReasonCode
	Properties Properties
}

// Pubrec is the first acknowledgement of a QoS 2 PUBLISH.
type Pubrec struct {
	PacketID   uint16
	ReasonCode ReasonCode
	Properties Properties
}

// Pubrel answers PUBREC; its fixed-header flags must be 0010.
type Pubrel struct {
	PacketID   uint16
	ReasonCode ReasonCode
	Properties Properties
}

// Pubcomp completes a QoS 2 exchange.
type Pubcomp struct {
	PacketID   uint16
	ReasonCode ReasonCode
	Properties Properties
}

// Subscription is one topic filter of a SUBSCRIBE with its options. The
// NoLocal, RetainAsPublished and RetainHandling options are 5.0 only.
type Subscription struct {
	Filter            string
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
}

// Subscribe asks for one or more subscriptions; fixed-header flags 0010.
type Subscribe struct {
	PacketID      uint16
	Subscriptions []Subscription
	Properties    Properties
}

// Suback answers SUBSCRIBE with one reason code per filter, in order.
// For 3.1.1 only 0x00, 0x01, 0x02 and 0x80 exist.
type Suback struct {
	PacketID    uint16
	ReasonCodes []ReasonCode
	Properties  Properties
}

// Unsubscribe removes subscriptions; fixed-header flags 0010.
type Unsubscribe struct {
	PacketID   uint16
	Filters    []string
	Properties Properties
}

// Unsuback answers UNSUBSCRIBE. ReasonCodes is 5.0 only (3.1.1 UNSUBACK has
// no payload).
type Unsuback struct {
	PacketID    uint16
	ReasonCodes []ReasonCode
	Properties  Properties
}

// Pingreq is a keep-alive probe from the client.
type Pingreq struct{}

// Pingresp answers PINGREQ.
type Pingresp struct{}

// Disconnect closes the connection gracefully. ReasonCode and Properties are
// 5.0 only.
type Disconnect struct {
	ReasonCode ReasonCode
	Properties Properties
}

// Auth carries 5.0 enhanced authentication exchanges.
type Auth struct {
	ReasonCode ReasonCode
	Properties Properties
}

func (*Connect) Type() Type     { return TypeConnect }
func (*Connack) Type() Type     { return TypeConnack }
func (*Publish) Type() Type     { return TypePublish }
func (*Puback) Type() Type      { return TypePuback }
func (*Pubrec) Type() Type      { return TypePubrec }
func (*Pubrel) Type() Type      { return TypePubrel }
func (*Pubcomp) Type() Type     { return TypePubcomp }
func (*Subscribe) Type() Type   { return TypeSubscribe }
func (*Suback) Type() Type      { return TypeSuback }
func (*Unsubscribe) Type() Type { return TypeUnsubscribe }
func (*Unsuback) Type() Type    { return TypeUnsuback }
func (*Pingreq) Type() Type     { return TypePingreq }
func (*Pingresp) Type() Type    { return TypePingresp }
func (*Disconnect) Type() Type  { return TypeDisconnect }
func (*Auth) Type() Type        { return TypeAuth }
