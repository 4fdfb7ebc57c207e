package packets

import (
	"bytes"
	"reflect"
	"testing"
)

// golden is one packet in its exact wire form. Every entry drives the
// decode, encode and round-trip tests below, the Reader tests and the fuzz
// seeds. decodeOnly marks a legal but non-canonical form that the encoder
// writes differently (for example a 5.0 PUBACK carrying an explicit
// Success code and an empty property list).
type golden struct {
	name       string
	v          Version
	raw        []byte
	pkt        Packet
	decodeOnly bool
}

// mark returns props with every property that Has reports marked present,
// which is what the decoder records for the properties it reads.
func mark(p Properties, zeroes ...PropID) Properties {
	for _, id := range zeroes {
		p.Mark(id)
	}
	for _, id := range propIDs {
		if p.Has(id) {
			p.Mark(id)
		}
	}
	return p
}

var payload200 = bytes.Repeat([]byte{'z'}, 200)

var goldens = []golden{
	// ---------------------------------------------------------------- CONNECT
	{name: "CONNECT 3.1.1 spec variable header example (3.1.1 Figure 3.6, flags 0xCE)", v: V311,
		raw: []byte{
			0x10, 0x1d, // CONNECT, remaining length 29
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name
			0x04,       // protocol level 4
			0xce,       // user name, password, will QoS 1, will flag, clean session
			0x00, 0x0a, // keep alive 10
			0x00, 0x02, 'c', '1', // client identifier
			0x00, 0x01, 'w', // will topic
			0x00, 0x03, 'b', 'y', 'e', // will message
			0x00, 0x01, 'u', // user name
			0x00, 0x02, 'p', 'w', // password
		},
		pkt: &Connect{ProtocolName: "MQTT", Version: V311, CleanStart: true, KeepAlive: 10, ClientID: "c1",
			UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte("pw"),
			Will: &Will{Topic: "w", Payload: []byte("bye"), QoS: 1}}},
	{name: "CONNECT 3.1 MQIsdp", v: V31,
		raw: []byte{
			0x10, 0x10, // CONNECT, remaining length 16
			0x00, 0x06, 'M', 'Q', 'I', 's', 'd', 'p', // protocol name
			0x03,       // protocol level 3
			0x02,       // clean session
			0x00, 0x3c, // keep alive 60
			0x00, 0x02, 'i', 'd', // client identifier
		},
		pkt: &Connect{ProtocolName: "MQIsdp", Version: V31, CleanStart: true, KeepAlive: 60, ClientID: "id"}},
	{name: "CONNECT 3.1.1 will retain QoS 2, empty client id", v: V311,
		raw: []byte{
			0x10, 0x11, // CONNECT, remaining length 17
			0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04,
			0x36,       // will retain, will QoS 2, will flag, clean session
			0x00, 0x00, // keep alive 0
			0x00, 0x00, // client identifier ""
			0x00, 0x01, 't', // will topic
			0x00, 0x00, // empty will message
		},
		pkt: &Connect{ProtocolName: "MQTT", Version: V311, CleanStart: true,
			Will: &Will{Topic: "t", QoS: 2, Retain: true}}},
	{name: "CONNECT 5.0 spec variable header example (Session Expiry 10) with all Will Properties", v: V5,
		raw: []byte{
			0x10, 0x47, // CONNECT, remaining length 71
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name
			0x05,       // protocol version 5
			0xce,       // user name, password, will QoS 1, will flag, clean start
			0x00, 0x0a, // keep alive 10
			0x05,                         // property length 5
			0x11, 0x00, 0x00, 0x00, 0x0a, // session expiry interval 10
			0x00, 0x02, 'c', '1', // client identifier
			0x23,       // will property length 35
			0x01, 0x01, // payload format indicator 1
			0x02, 0x00, 0x00, 0x00, 0x3c, // message expiry 60
			0x03, 0x00, 0x04, 't', 'e', 'x', 't', // content type
			0x08, 0x00, 0x01, 'r', // response topic
			0x09, 0x00, 0x02, 0x01, 0x02, // correlation data
			0x18, 0x00, 0x00, 0x00, 0x05, // will delay interval 5
			0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v', // user property k=v
			0x00, 0x01, 'w', // will topic
			0x00, 0x03, 'b', 'y', 'e', // will payload
			0x00, 0x01, 'u', // user name
			0x00, 0x02, 'p', 'w', // password
		},
		pkt: &Connect{ProtocolName: "MQTT", Version: V5, CleanStart: true, KeepAlive: 10, ClientID: "c1",
			UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte("pw"),
			Properties: mark(Properties{SessionExpiry: 10}),
			Will: &Will{Topic: "w", Payload: []byte("bye"), QoS: 1, Properties: mark(Properties{
				PayloadFormat: 1, MessageExpiry: 60, ContentType: "text", ResponseTopic: "r",
				CorrelationData: []byte{1, 2}, WillDelay: 5, User: []UserProperty{{"k", "v"}}})}}},
	{name: "CONNECT 5.0 every CONNECT property", v: V5,
		raw: []byte{
			0x10, 0x3a, // CONNECT, remaining length 58
			0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05,
			0x02,       // clean start
			0x00, 0x00, // keep alive 0
			0x2d,                         // property length 45
			0x11, 0x00, 0x00, 0x00, 0x78, // session expiry 120
			0x15, 0x00, 0x03, 'S', 'C', 'R', // authentication method
			0x16, 0x00, 0x02, 0xaa, 0xbb, // authentication data
			0x17, 0x00, // request problem information 0
			0x19, 0x01, // request response information 1
			0x21, 0x00, 0x0a, // receive maximum 10
			0x22, 0x00, 0x05, // topic alias maximum 5
			0x26, 0x00, 0x01, 'a', 0x00, 0x01, 'b', // user property a=b
			0x26, 0x00, 0x01, 'a', 0x00, 0x01, 'c', // user property a=c (same key, order kept)
			0x27, 0x00, 0x00, 0x10, 0x00, // maximum packet size 4096
			0x00, 0x00, // client identifier ""
		},
		pkt: &Connect{ProtocolName: "MQTT", Version: V5, CleanStart: true,
			Properties: mark(Properties{SessionExpiry: 120, AuthMethod: "SCR", AuthData: []byte{0xaa, 0xbb},
				RequestResponseInfo: 1, ReceiveMaximum: 10, TopicAliasMaximum: 5,
				User: []UserProperty{{"a", "b"}, {"a", "c"}}, MaximumPacketSize: 4096}, PropRequestProblemInfo)}},
	{name: "CONNECT 5.0 password without user name", v: V5,
		raw: []byte{
			0x10, 0x11, // CONNECT, remaining length 17
			0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05,
			0x42,       // password flag, clean start
			0x00, 0x1e, // keep alive 30
			0x00,            // no properties
			0x00, 0x01, 'x', // client identifier
			0x00, 0x01, 'p', // password
		},
		pkt: &Connect{ProtocolName: "MQTT", Version: V5, CleanStart: true, KeepAlive: 30, ClientID: "x",
			PasswordFlag: true, Password: []byte("p")}},

	// ---------------------------------------------------------------- CONNACK
	{name: "CONNACK 3.1.1 accepted", v: V311, raw: []byte{0x20, 0x02, 0x00, 0x00},
		pkt: &Connack{ReasonCode: Success}},
	{name: "CONNACK 3.1.1 session present", v: V311, raw: []byte{0x20, 0x02, 0x01, 0x00},
		pkt: &Connack{SessionPresent: true}},
	{name: "CONNACK 3.1.1 return code 5 not authorized", v: V311, raw: []byte{0x20, 0x02, 0x00, 0x05},
		pkt: &Connack{ReasonCode: NotAuthorized}},
	{name: "CONNACK 3.1.1 return code 1 unacceptable protocol version", v: V311, raw: []byte{0x20, 0x02, 0x00, 0x01},
		pkt: &Connack{ReasonCode: UnsupportedProtocolVersion}},
	{name: "CONNACK 3.1 return code 4 bad credentials", v: V31, raw: []byte{0x20, 0x02, 0x00, 0x04},
		pkt: &Connack{ReasonCode: BadUsernameOrPassword}},
	{name: "CONNACK 5.0 success, no properties", v: V5, raw: []byte{0x20, 0x03, 0x00, 0x00, 0x00},
		pkt: &Connack{}},
	{name: "CONNACK 5.0 not authorized", v: V5, raw: []byte{0x20, 0x03, 0x00, 0x87, 0x00},
		pkt: &Connack{ReasonCode: NotAuthorized}},
	{name: "CONNACK 5.0 every CONNACK property", v: V5,
		raw: []byte{
			0x20, 0x46, // CONNACK, remaining length 70
			0x01,                         // session present
			0x00,                         // success
			0x43,                         // property length 67
			0x11, 0x00, 0x00, 0x00, 0x3c, // session expiry 60
			0x12, 0x00, 0x03, 'c', 'i', 'd', // assigned client identifier
			0x13, 0x00, 0x1e, // server keep alive 30
			0x15, 0x00, 0x03, 'S', 'C', 'R', // authentication method
			0x16, 0x00, 0x01, 0x01, // authentication data
			0x1a, 0x00, 0x02, 'r', 'i', // response information
			0x1c, 0x00, 0x02, 's', 'r', // server reference
			0x1f, 0x00, 0x02, 'o', 'k', // reason string
			0x21, 0x00, 0x14, // receive maximum 20
			0x22, 0x00, 0x0a, // topic alias maximum 10
			0x24, 0x01, // maximum QoS 1
			0x25, 0x00, // retain available 0
			0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v', // user property
			0x27, 0x00, 0x00, 0xff, 0xff, // maximum packet size 65535
			0x28, 0x00, // wildcard subscription available 0
			0x29, 0x00, // subscription identifiers available 0
			0x2a, 0x01, // shared subscription available 1
		},
		pkt: &Connack{SessionPresent: true, Properties: mark(Properties{
			SessionExpiry: 60, AssignedClientID: "cid", ServerKeepAlive: 30, AuthMethod: "SCR", AuthData: []byte{1},
			ResponseInfo: "ri", ServerReference: "sr", ReasonString: "ok", ReceiveMaximum: 20, TopicAliasMaximum: 10,
			MaximumQoS: 1, User: []UserProperty{{"k", "v"}}, MaximumPacketSize: 65535, SharedSubAvailable: 1,
		}, PropRetainAvailable, PropWildcardSubAvailable, PropSubIDAvailable)}},

	// ---------------------------------------------------------------- PUBLISH
	{name: "PUBLISH 3.1.1 spec variable header example (topic a/b, id 10)", v: V311,
		raw: []byte{
			0x32, 0x09, // PUBLISH QoS 1, remaining length 9
			0x00, 0x03, 'a', '/', 'b', // topic name
			0x00, 0x0a, // packet identifier 10
			'h', 'i', // payload
		},
		pkt: &Publish{QoS: 1, Topic: "a/b", PacketID: 10, Payload: []byte("hi")}},
	{name: "PUBLISH 3.1.1 QoS 0 retained, empty payload", v: V311,
		raw: []byte{0x31, 0x05, 0x00, 0x03, 'a', '/', 'b'},
		pkt: &Publish{Retain: true, Topic: "a/b"}},
	{name: "PUBLISH 3.1.1 QoS 2 DUP", v: V311,
		raw: []byte{0x3c, 0x06, 0x00, 0x01, 't', 0x00, 0x01, 'x'},
		pkt: &Publish{Dup: true, QoS: 2, Topic: "t", PacketID: 1, Payload: []byte("x")}},
	{name: "PUBLISH 3.1.1 UTF-8 spec example A U+2A6D4 (3.1.1 Figure 1.1)", v: V311,
		raw: []byte{0x30, 0x07, 0x00, 0x05, 0x41, 0xf0, 0xaa, 0x9b, 0x94},
		pkt: &Publish{Topic: "A\U0002A6D4"}},
	{name: "PUBLISH 3.1.1 topic with U+FEFF kept intact", v: V311,
		raw: []byte{0x30, 0x06, 0x00, 0x04, 0xef, 0xbb, 0xbf, 'a'},
		pkt: &Publish{Topic: "\uFEFFa"}},
	{name: "PUBLISH 3.1.1 two-byte remaining length (203)", v: V311,
		raw: append([]byte{0x30, 0xcb, 0x01, 0x00, 0x01, 't'}, payload200...),
		pkt: &Publish{Topic: "t", Payload: payload200}},
	{name: "PUBLISH 3.1 QoS 1", v: V31,
		raw: []byte{0x32, 0x06, 0x00, 0x01, 't', 0xff, 0xff, 'x'},
		pkt: &Publish{QoS: 1, Topic: "t", PacketID: 65535, Payload: []byte("x")}},
	{name: "PUBLISH 5.0 spec variable header example (topic a/b, id 10, no properties)", v: V5,
		raw: []byte{
			0x32, 0x0a, // PUBLISH QoS 1, remaining length 10
			0x00, 0x03, 'a', '/', 'b', // topic name
			0x00, 0x0a, // packet identifier 10
			0x00,     // property length 0
			'h', 'i', // payload
		},
		pkt: &Publish{QoS: 1, Topic: "a/b", PacketID: 10, Payload: []byte("hi")}},
	{name: "PUBLISH 5.0 every PUBLISH property, two subscription identifiers", v: V5,
		raw: []byte{
			0x30, 0x2f, // PUBLISH QoS 0, remaining length 47
			0x00, 0x01, 'a', // topic
			0x29,       // property length 41
			0x01, 0x01, // payload format indicator 1 (UTF-8)
			0x02, 0x00, 0x00, 0x00, 0x0a, // message expiry 10
			0x03, 0x00, 0x01, 'j', // content type
			0x08, 0x00, 0x01, 'r', // response topic
			0x09, 0x00, 0x01, 0x07, // correlation data
			0x0b, 0x05, // subscription identifier 5
			0x0b, 0x80, 0x01, // subscription identifier 128
			0x23, 0x00, 0x03, // topic alias 3
			0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v', // user property k=v
			0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'w', // user property k=w
			'{', '}', // payload
		},
		pkt: &Publish{Topic: "a", Payload: []byte("{}"), Properties: mark(Properties{
			PayloadFormat: 1, MessageExpiry: 10, ContentType: "j", ResponseTopic: "r", CorrelationData: []byte{7},
			SubscriptionIDs: []uint32{5, 128}, TopicAlias: 3, User: []UserProperty{{"k", "v"}, {"k", "w"}}})}},
	{name: "PUBLISH 5.0 empty topic with Topic Alias", v: V5,
		raw: []byte{
			0x30, 0x08, // PUBLISH QoS 0, remaining length 8
			0x00, 0x00, // empty topic name
			0x03, 0x23, 0x00, 0x01, // properties: topic alias 1
			'p', 'q', // payload
		},
		pkt: &Publish{Payload: []byte("pq"), Properties: mark(Properties{TopicAlias: 1})}},

	// ------------------------------------------------- PUBACK PUBREC PUBREL PUBCOMP
	{name: "PUBACK 3.1.1", v: V311, raw: []byte{0x40, 0x02, 0x00, 0x0a}, pkt: &Puback{PacketID: 10}},
	{name: "PUBREC 3.1.1", v: V311, raw: []byte{0x50, 0x02, 0x00, 0x0a}, pkt: &Pubrec{PacketID: 10}},
	{name: "PUBREL 3.1.1", v: V311, raw: []byte{0x62, 0x02, 0x00, 0x0a}, pkt: &Pubrel{PacketID: 10}},
	{name: "PUBCOMP 3.1.1", v: V311, raw: []byte{0x70, 0x02, 0x00, 0x0a}, pkt: &Pubcomp{PacketID: 10}},
	{name: "PUBACK 3.1", v: V31, raw: []byte{0x40, 0x02, 0x12, 0x34}, pkt: &Puback{PacketID: 0x1234}},
	{name: "PUBREC 3.1", v: V31, raw: []byte{0x50, 0x02, 0x12, 0x34}, pkt: &Pubrec{PacketID: 0x1234}},
	{name: "PUBREL 3.1", v: V31, raw: []byte{0x62, 0x02, 0x12, 0x34}, pkt: &Pubrel{PacketID: 0x1234}},
	{name: "PUBCOMP 3.1", v: V31, raw: []byte{0x70, 0x02, 0x12, 0x34}, pkt: &Pubcomp{PacketID: 0x1234}},
	{name: "PUBREL 3.1 with DUP (3.1 retransmission)", v: V31, raw: []byte{0x6a, 0x02, 0x00, 0x01},
		pkt: &Pubrel{PacketID: 1}, decodeOnly: true},
	{name: "PUBACK 5.0 success, reason code omitted", v: V5, raw: []byte{0x40, 0x02, 0x00, 0x0a},
		pkt: &Puback{PacketID: 10}},
	{name: "PUBACK 5.0 explicit success and empty properties", v: V5, raw: []byte{0x40, 0x04, 0x00, 0x0a, 0x00, 0x00},
		pkt: &Puback{PacketID: 10}, decodeOnly: true},
	{name: "PUBACK 5.0 no matching subscribers, no properties", v: V5, raw: []byte{0x40, 0x03, 0x00, 0x0a, 0x10},
		pkt: &Puback{PacketID: 10, ReasonCode: NoMatchingSubscribers}},
	{name: "PUBREC 5.0 unspecified error with reason string", v: V5,
		raw: []byte{
			0x50, 0x09, // PUBREC, remaining length 9
			0x00, 0x0a, // packet identifier
			0x80,                       // unspecified error
			0x05,                       // property length 5
			0x1f, 0x00, 0x02, 'n', 'o', // reason string
		},
		pkt: &Pubrec{PacketID: 10, ReasonCode: UnspecifiedError, Properties: mark(Properties{ReasonString: "no"})}},
	{name: "PUBREL 5.0 packet identifier not found", v: V5, raw: []byte{0x62, 0x03, 0x00, 0x0a, 0x92},
		pkt: &Pubrel{PacketID: 10, ReasonCode: PacketIdentifierNotFound}},
	{name: "PUBCOMP 5.0 success with user property", v: V5,
		raw: []byte{0x70, 0x0b, 0x00, 0x0a, 0x00, 0x07, 0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v'},
		pkt: &Pubcomp{PacketID: 10, Properties: mark(Properties{User: []UserProperty{{"k", "v"}}})}},

	// -------------------------------------------------------------- SUBSCRIBE
	{name: "SUBSCRIBE 3.1.1 spec payload example (a/b QoS 1, c/d QoS 2)", v: V311,
		raw: []byte{
			0x82, 0x0e, // SUBSCRIBE, remaining length 14
			0x00, 0x0a, // packet identifier 10
			0x00, 0x03, 'a', '/', 'b', 0x01, // a/b, QoS 1
			0x00, 0x03, 'c', '/', 'd', 0x02, // c/d, QoS 2
		},
		pkt: &Subscribe{PacketID: 10, Subscriptions: []Subscription{{Filter: "a/b", QoS: 1}, {Filter: "c/d", QoS: 2}}}},
	{name: "SUBSCRIBE 3.1 single filter", v: V31,
		raw: []byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x01, '#', 0x00},
		pkt: &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "#"}}}},
	{name: "SUBSCRIBE 5.0 spec payload example", v: V5,
		raw: []byte{
			0x82, 0x0f, // SUBSCRIBE, remaining length 15
			0x00, 0x0a, // packet identifier 10
			0x00,                            // property length 0
			0x00, 0x03, 'a', '/', 'b', 0x01, // a/b, QoS 1
			0x00, 0x03, 'c', '/', 'd', 0x02, // c/d, QoS 2
		},
		pkt: &Subscribe{PacketID: 10, Subscriptions: []Subscription{{Filter: "a/b", QoS: 1}, {Filter: "c/d", QoS: 2}}}},
	{name: "SUBSCRIBE 5.0 options, subscription identifier, shared filter", v: V5,
		raw: []byte{
			0x82, 0x21, // SUBSCRIBE, remaining length 33
			0x00, 0x01, // packet identifier 1
			0x09,       // property length 9
			0x0b, 0x07, // subscription identifier 7
			0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v', // user property
			0x00, 0x03, 'a', '/', '#', 0x2e, // retain handling 2, RAP, no local, QoS 2
			0x00, 0x0c, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', '+', '/', 'x', 0x11, // RH 1, QoS 1
		},
		pkt: &Subscribe{PacketID: 1, Properties: mark(Properties{SubscriptionIDs: []uint32{7}, User: []UserProperty{{"k", "v"}}}),
			Subscriptions: []Subscription{
				{Filter: "a/#", QoS: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 2},
				{Filter: "$share/g/+/x", QoS: 1, RetainHandling: 1}}}},

	// ----------------------------------------------------------------- SUBACK
	{name: "SUBACK 3.1.1 spec payload example (0x00, 0x02, 0x80)", v: V311,
		raw: []byte{0x90, 0x05, 0x00, 0x0a, 0x00, 0x02, 0x80},
		pkt: &Suback{PacketID: 10, ReasonCodes: []ReasonCode{GrantedQoS0, GrantedQoS2, UnspecifiedError}}},
	{name: "SUBACK 3.1 granted QoS 1", v: V31, raw: []byte{0x90, 0x03, 0x00, 0x01, 0x01},
		pkt: &Suback{PacketID: 1, ReasonCodes: []ReasonCode{GrantedQoS1}}},
	{name: "SUBACK 5.0 reason string, granted 0 and wildcards not supported", v: V5,
		raw: []byte{
			0x90, 0x0a, // SUBACK, remaining length 10
			0x00, 0x0a, // packet identifier 10
			0x05, 0x1f, 0x00, 0x02, 'n', 'o', // properties: reason string
			0x00, 0xa2, // reason codes
		},
		pkt: &Suback{PacketID: 10, Properties: mark(Properties{ReasonString: "no"}),
			ReasonCodes: []ReasonCode{GrantedQoS0, WildcardSubsNotSupported}}},

	// ------------------------------------------------------------ UNSUBSCRIBE
	{name: "UNSUBSCRIBE 3.1.1 spec payload example (a/b, c/d)", v: V311,
		raw: []byte{
			0xa2, 0x0c, // UNSUBSCRIBE, remaining length 12
			0x00, 0x0a, // packet identifier 10
			0x00, 0x03, 'a', '/', 'b',
			0x00, 0x03, 'c', '/', 'd',
		},
		pkt: &Unsubscribe{PacketID: 10, Filters: []string{"a/b", "c/d"}}},
	{name: "UNSUBSCRIBE 3.1", v: V31, raw: []byte{0xa2, 0x05, 0x00, 0x02, 0x00, 0x01, 'x'},
		pkt: &Unsubscribe{PacketID: 2, Filters: []string{"x"}}},
	{name: "UNSUBSCRIBE 5.0 with user property", v: V5,
		raw: []byte{
			0xa2, 0x0d, // UNSUBSCRIBE, remaining length 13
			0x00, 0x0b, // packet identifier 11
			0x07, 0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v', // properties
			0x00, 0x01, 'x', // filter
		},
		pkt: &Unsubscribe{PacketID: 11, Filters: []string{"x"}, Properties: mark(Properties{User: []UserProperty{{"k", "v"}}})}},

	// --------------------------------------------------------------- UNSUBACK
	{name: "UNSUBACK 3.1.1", v: V311, raw: []byte{0xb0, 0x02, 0x00, 0x0a}, pkt: &Unsuback{PacketID: 10}},
	{name: "UNSUBACK 3.1", v: V31, raw: []byte{0xb0, 0x02, 0x00, 0x0b}, pkt: &Unsuback{PacketID: 11}},
	{name: "UNSUBACK 5.0 two reason codes", v: V5, raw: []byte{0xb0, 0x05, 0x00, 0x0a, 0x00, 0x00, 0x11},
		pkt: &Unsuback{PacketID: 10, ReasonCodes: []ReasonCode{Success, NoSubscriptionExisted}}},
	{name: "UNSUBACK 5.0 reason string, not authorized", v: V5,
		raw: []byte{0xb0, 0x09, 0x00, 0x0a, 0x05, 0x1f, 0x00, 0x02, 'n', 'o', 0x87},
		pkt: &Unsuback{PacketID: 10, ReasonCodes: []ReasonCode{NotAuthorized}, Properties: mark(Properties{ReasonString: "no"})}},

	// ------------------------------------------------------- PINGREQ PINGRESP
	{name: "PINGREQ 3.1", v: V31, raw: []byte{0xc0, 0x00}, pkt: &Pingreq{}},
	{name: "PINGREQ 3.1.1", v: V311, raw: []byte{0xc0, 0x00}, pkt: &Pingreq{}},
	{name: "PINGREQ 5.0", v: V5, raw: []byte{0xc0, 0x00}, pkt: &Pingreq{}},
	{name: "PINGRESP 3.1", v: V31, raw: []byte{0xd0, 0x00}, pkt: &Pingresp{}},
	{name: "PINGRESP 3.1.1", v: V311, raw: []byte{0xd0, 0x00}, pkt: &Pingresp{}},
	{name: "PINGRESP 5.0", v: V5, raw: []byte{0xd0, 0x00}, pkt: &Pingresp{}},

	// ------------------------------------------------------------- DISCONNECT
	{name: "DISCONNECT 3.1", v: V31, raw: []byte{0xe0, 0x00}, pkt: &Disconnect{}},
	{name: "DISCONNECT 3.1.1", v: V311, raw: []byte{0xe0, 0x00}, pkt: &Disconnect{}},
	{name: "DISCONNECT 5.0 normal, everything omitted", v: V5, raw: []byte{0xe0, 0x00}, pkt: &Disconnect{}},
	{name: "DISCONNECT 5.0 with will message, no properties", v: V5, raw: []byte{0xe0, 0x01, 0x04},
		pkt: &Disconnect{ReasonCode: DisconnectWithWill}},
	{name: "DISCONNECT 5.0 explicit normal and empty properties", v: V5, raw: []byte{0xe0, 0x02, 0x00, 0x00},
		pkt: &Disconnect{}, decodeOnly: true},
	{name: "DISCONNECT 5.0 use another server, every DISCONNECT property", v: V5,
		raw: []byte{
			0xe0, 0x18, // DISCONNECT, remaining length 24
			0x9c,                         // use another server
			0x16,                         // property length 22
			0x11, 0x00, 0x00, 0x00, 0x00, // session expiry 0
			0x1c, 0x00, 0x02, 's', 'r', // server reference
			0x1f, 0x00, 0x02, 'n', 'o', // reason string
			0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v', // user property
		},
		pkt: &Disconnect{ReasonCode: UseAnotherServer, Properties: mark(Properties{ServerReference: "sr", ReasonString: "no",
			User: []UserProperty{{"k", "v"}}}, PropSessionExpiry)}},

	// ------------------------------------------------------------------- AUTH
	{name: "AUTH 5.0 success, everything omitted", v: V5, raw: []byte{0xf0, 0x00}, pkt: &Auth{}},
	{name: "AUTH 5.0 continue authentication, every AUTH property", v: V5,
		raw: []byte{
			0xf0, 0x19, // AUTH, remaining length 25
			0x18,                            // continue authentication
			0x17,                            // property length 23
			0x15, 0x00, 0x03, 'S', 'C', 'R', // authentication method
			0x16, 0x00, 0x02, 0x01, 0x02, // authentication data
			0x1f, 0x00, 0x02, 'n', 'o', // reason string
			0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v', // user property
		},
		pkt: &Auth{ReasonCode: ContinueAuthentication, Properties: mark(Properties{AuthMethod: "SCR", AuthData: []byte{1, 2},
			ReasonString: "no", User: []UserProperty{{"k", "v"}}})}},
}

func TestGoldenDecode(t *testing.T) {
	for _, g := range goldens {
		t.Run(g.name, func(t *testing.T) {
			p, n, err := Decode(g.raw, g.v)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if n != len(g.raw) {
				t.Errorf("consumed %d of %d bytes", n, len(g.raw))
			}
			if !reflect.DeepEqual(p, g.pkt) {
				t.Errorf("decoded\n%#v\nwant\n%#v", p, g.pkt)
			}
		})
	}
}

func TestGoldenEncode(t *testing.T) {
	for _, g := range goldens {
		if g.decodeOnly {
			continue
		}
		t.Run(g.name, func(t *testing.T) {
			b, err := Encode(nil, g.pkt, g.v)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if !bytes.Equal(b, g.raw) {
				t.Errorf("encoded\n% x\nwant\n% x", b, g.raw)
			}
			if s := Size(g.pkt, g.v); s != len(g.raw) {
				t.Errorf("Size = %d, want %d", s, len(g.raw))
			}
			// Appending to a non-empty buffer keeps its prefix.
			b2, err := Encode([]byte("xy"), g.pkt, g.v)
			if err != nil || string(b2[:2]) != "xy" || !bytes.Equal(b2[2:], g.raw) {
				t.Errorf("Encode onto a prefix: % x, %v", b2, err)
			}
		})
	}
}

func TestGoldenRoundTrip(t *testing.T) {
	for _, g := range goldens {
		t.Run(g.name, func(t *testing.T) {
			p, _, err := Decode(g.raw, g.v)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			b, err := Encode(nil, p, g.v)
			if err != nil {
				t.Fatalf("Encode(decoded): %v", err)
			}
			if !g.decodeOnly && !bytes.Equal(b, g.raw) {
				t.Errorf("re-encoded\n% x\nwant\n% x", b, g.raw)
			}
			p2, _, err := Decode(b, g.v)
			if err != nil {
				t.Fatalf("Decode(re-encoded): %v", err)
			}
			if !reflect.DeepEqual(p2, p) {
				t.Errorf("round trip\n%#v\nwant\n%#v", p2, p)
			}
		})
	}
}

// TestGoldenCoverage checks the table itself: every packet type in every
// protocol level it exists in, and every property, appears at least once.
func TestGoldenCoverage(t *testing.T) {
	seen := map[Version]map[Type]bool{V31: {}, V311: {}, V5: {}}
	var props uint64
	for _, g := range goldens {
		seen[g.v][g.pkt.Type()] = true
		forEachProps(g.pkt, func(p *Properties) { props |= p.presentMask() })
	}
	for v, types := range seen {
		for typ := TypeConnect; typ <= TypeAuth; typ++ {
			if typ == TypeAuth && v != V5 {
				continue
			}
			if !types[typ] {
				t.Errorf("no golden %v packet for %v", typ, v)
			}
		}
	}
	for _, id := range propIDs {
		if props&(1<<id) == 0 {
			t.Errorf("no golden packet carries property %v", id)
		}
	}
}

// forEachProps calls f for every Properties value inside p.
func forEachProps(p Packet, f func(*Properties)) {
	switch x := p.(type) {
	case *Connect:
		f(&x.Properties)
		if x.Will != nil {
			f(&x.Will.Properties)
		}
	case *Connack:
		f(&x.Properties)
	case *Publish:
		f(&x.Properties)
	case *Puback:
		f(&x.Properties)
	case *Pubrec:
		f(&x.Properties)
	case *Pubrel:
		f(&x.Properties)
	case *Pubcomp:
		f(&x.Properties)
	case *Subscribe:
		f(&x.Properties)
	case *Suback:
		f(&x.Properties)
	case *Unsubscribe:
		f(&x.Properties)
	case *Unsuback:
		f(&x.Properties)
	case *Disconnect:
		f(&x.Properties)
	case *Auth:
		f(&x.Properties)
	}
}
