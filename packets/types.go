package packets

// Type is the MQTT control packet type carried in the high nibble of the
// first fixed-header byte.
type Type byte

// The 15 control packet types (MQTT 5.0 §2.1.2; AUTH is 5.0 only).
const (
	TypeConnect     Type = 1
	TypeConnack     Type = 2
	TypePublish     Type = 3
	TypePuback      Type = 4
	TypePubrec      Type = 5
	TypePubrel      Type = 6
	TypePubcomp     Type = 7
	TypeSubscribe   Type = 8
	TypeSuback      Type = 9
	TypeUnsubscribe Type = 10
	TypeUnsuback    Type = 11
	TypePingreq     Type = 12
	TypePingresp    Type = 13
	TypeDisconnect  Type = 14
	TypeAuth        Type = 15
)

// Version is the protocol level byte of CONNECT: it selects the wire format
// of every later packet on the connection.
type Version byte

// Supported protocol levels.
const (
	V31  Version = 3 // MQTT 3.1, protocol name "MQIsdp"
	V311 Version = 4 // MQTT 3.1.1, protocol name "MQTT"
	V5   Version = 5 // MQTT 5.0, protocol name "MQTT"
)

// MaxRemainingLength is the largest value a four-byte variable byte integer
// can carry (268,435,455).
const MaxRemainingLength = 268435455

// Packet is one decoded MQTT control packet. The concrete types are the
// pointer types *Connect, *Connack, *Publish, ... defined in this package.
type Packet interface {
	Type() Type
}

// FixedHeader is the first part of every packet: type, the four flag bits
// and the remaining length.
type FixedHeader struct {
	Type            Type
	Flags           byte
	RemainingLength int
}
