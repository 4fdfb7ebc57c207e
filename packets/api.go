package packets

// This file declares the codec's entry points. Their bodies live in
// decode.go, encode.go, reader.go and validate.go.

/*
Contract (implemented elsewhere in this package):

	// Error is a decode or validation failure. Code is MalformedPacket,
	// ProtocolError, PacketTooLarge, UnsupportedProtocolVersion,
	// TopicNameInvalid, TopicFilterInvalid, ... ; errors.Is(err, Code) works.
	type Error struct { Code ReasonCode; Packet Type; Field string; Detail string }

	func (c ReasonCode) Error() string
	func (c ReasonCode) String() string
	func (c ReasonCode) ConnackReturnCode() (byte, bool) // 5.0 code -> 3.1.1 return code
	func ReasonCodeFromConnack311(b byte) ReasonCode

	// Reader returns one packet at a time from a stream. maxSize bounds the
	// whole packet (fixed header included) and is checked before the body is
	// allocated; 0 means the protocol maximum.
	func NewReader(r *bufio.Reader, maxSize int) *Reader
	func (r *Reader) SetVersion(v Version)  // after CONNECT; CONNECT itself carries its version
	func (r *Reader) SetMaxSize(n int)
	func (r *Reader) Read() (Packet, error)

	// Decode decodes one complete packet held in b (fixed header included) and
	// returns the bytes consumed; ErrIncomplete if b is too short.
	func Decode(b []byte, v Version) (Packet, int, error)
	func DecodeBody(h FixedHeader, body []byte, v Version) (Packet, error)

	// Encode appends the encoded packet to dst, without allocating when dst
	// has room. Publish additionally has AppendHeader (all but the payload) so
	// a payload can go out through net.Buffers uncopied.
	func Encode(dst []byte, p Packet, v Version) ([]byte, error)
	func (p *Publish) AppendHeader(dst []byte, v Version) ([]byte, error)
	func Size(p Packet, v Version) int // encoded length, for Maximum Packet Size

	// Validation used by the codec and the broker.
	func ValidTopicName(s string) error          // non-empty, no + or #
	func ValidTopicFilter(s string) error        // wildcard placement rules
	func ParseShared(filter string) (group, sub string, shared bool, err error)
	func ValidUTF8String(s string) bool          // §1.5.4 rules
*/
