package packets

// PropID is a 5.0 property identifier (MQTT 5.0 §2.2.2.2).
type PropID byte

// Property identifiers.
const (
	PropPayloadFormat        PropID = 0x01
	PropMessageExpiry        PropID = 0x02
	PropContentType          PropID = 0x03
	PropResponseTopic        PropID = 0x08
	PropCorrelationData      PropID = 0x09
	PropSubscriptionID       PropID = 0x0B
	PropSessionExpiry        PropID = 0x11
	PropAssignedClientID     PropID = 0x12
	PropServerKeepAlive      PropID = 0x13
	PropAuthMethod           PropID = 0x15
	PropAuthData             PropID = 0x16
	PropRequestProblemInfo   PropID = 0x17
	PropWillDelay            PropID = 0x18
	PropRequestResponseInfo  PropID = 0x19
	PropResponseInfo         PropID = 0x1A
	PropServerReference      PropID = 0x1C
	PropReasonString         PropID = 0x1F
	PropReceiveMaximum       PropID = 0x21
	PropTopicAliasMaximum    PropID = 0x22
	PropTopicAlias           PropID = 0x23
	PropMaximumQoS           PropID = 0x24
	PropRetainAvailable      PropID = 0x25
	PropUser                 PropID = 0x26
	PropMaximumPacketSize    PropID = 0x27
	PropWildcardSubAvailable PropID = 0x28
	PropSubIDAvailable       PropID = 0x29
	PropSharedSubAvailable   PropID = 0x2A
)

// UserProperty is one name/value pair; order and duplicates are kept as
// sent [MQTT-3.3.2-17] [MQTT-3.3.2-18].
type UserProperty struct {
	Key   string
	Value string
}

// Properties holds every 5.0 property. A property is encoded when its field
// is non-zero or when it has been marked present (Mark); the decoder marks
// every property it reads, so a property sent with a zero value (for example
// Request Problem Information = 0, whose default is 1) is told apart from an
// absent one with Has.
type Properties struct {
	PayloadFormat        byte
	MessageExpiry        uint32
	ContentType          string
	ResponseTopic        string
	CorrelationData      []byte
	SubscriptionIDs      []uint32 // several in PUBLISH, at most one in SUBSCRIBE
	SessionExpiry        uint32
	AssignedClientID     string
	ServerKeepAlive      uint16
	AuthMethod           string
	AuthData             []byte
	RequestProblemInfo   byte
	WillDelay            uint32
	RequestResponseInfo  byte
	ResponseInfo         string
	ServerReference      string
	ReasonString         string
	ReceiveMaximum       uint16
	TopicAliasMaximum    uint16
	TopicAlias           uint16
	MaximumQoS           byte
	RetainAvailable      byte
	User                 []UserProperty
	MaximumPacketSize    uint32
	WildcardSubAvailable byte
	SubIDAvailable       byte
	SharedSubAvailable   byte

	present uint64 // bit (1 << PropID) set when marked present
}

// Mark records that property id is present even if its value is zero.
func (p *Properties) Mark(id PropID) { p.present |= 1 << uint(id) }

// Has reports whether property id is present: marked, or non-zero.
func (p *Properties) Has(id PropID) bool {
	if p.present&(1<<uint(id)) != 0 {
		return true
	}
	switch id {
	case PropPayloadFormat:
		return p.PayloadFormat != 0
	case PropMessageExpiry:
		return p.MessageExpiry != 0
	case PropContentType:
		return p.ContentType != ""
	case PropResponseTopic:
		return p.ResponseTopic != ""
	case PropCorrelationData:
		return len(p.CorrelationData) != 0
	case PropSubscriptionID:
		return len(p.SubscriptionIDs) != 0
	case PropSessionExpiry:
		return p.SessionExpiry != 0
	case PropAssignedClientID:
		return p.AssignedClientID != ""
	case PropServerKeepAlive:
		return p.ServerKeepAlive != 0
	case PropAuthMethod:
		return p.AuthMethod != ""
	case PropAuthData:
		return len(p.AuthData) != 0
	case PropRequestProblemInfo:
		return p.RequestProblemInfo != 0
	case PropWillDelay:
		return p.WillDelay != 0
	case PropRequestResponseInfo:
		return p.RequestResponseInfo != 0
	case PropResponseInfo:
		return p.ResponseInfo != ""
	case PropServerReference:
		return p.ServerReference != ""
	case PropReasonString:
		return p.ReasonString != ""
	case PropReceiveMaximum:
		return p.ReceiveMaximum != 0
	case PropTopicAliasMaximum:
		return p.TopicAliasMaximum != 0
	case PropTopicAlias:
		return p.TopicAlias != 0
	case PropMaximumQoS:
		return p.MaximumQoS != 0
	case PropRetainAvailable:
		return p.RetainAvailable != 0
	case PropUser:
		return len(p.User) != 0
	case PropMaximumPacketSize:
		return p.MaximumPacketSize != 0
	case PropWildcardSubAvailable:
		return p.WildcardSubAvailable != 0
	case PropSubIDAvailable:
		return p.SubIDAvailable != 0
	case PropSharedSubAvailable:
		return p.SharedSubAvailable != 0
	}
	return false
}
