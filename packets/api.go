package packets

// The codec's entry points, as agreed with the broker (see doc.go for the
// overview). Where each one lives:
//
//	errors.go    type Error; var ErrIncomplete; Type.String; Version.String
//	reasons.go   ReasonCode.Error/String/ConnackReturnCode;
//	             ReasonCodeFromConnack311; ValidReasonCode
//	reader.go    NewReader(r ByteReader, maxSize int) *Reader; (a *bufio.Reader will do)
//	             (*Reader).SetVersion/Version/SetMaxSize/Read/ReusePackets
//	decode.go    Decode(b []byte, v Version) (Packet, int, error);
//	             DecodeBody(h FixedHeader, body []byte, v Version) (Packet, error)
//	encode.go    Encode(dst []byte, p Packet, v Version) ([]byte, error);
//	             (*Publish).AppendHeader(dst []byte, v Version) ([]byte, error);
//	             Size(p Packet, v Version) int;
//	             AppendAck(dst []byte, t Type, id uint16, code ReasonCode, v Version) ([]byte, error)
//	props_codec.go  AppendProperties(dst []byte, p *Properties) []byte;
//	             DecodeProperties(b []byte, ctx Type) (Properties, int, error);
//	             WillProperties (the ctx of CONNECT's Will Properties);
//	             PropID.String/AllowedIn
//	validate.go  ValidTopicName(s string) error; ValidTopicFilter(s string) error;
//	             ParseShared(filter string) (group, sub string, shared bool, err error);
//	             ValidUTF8String(s string) bool; SharePrefix
