package mqtt

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/session"
	"github.com/beaconmq/beacon/storage"
)

// connectReadError handles a failure to read the first packet. A CONNECT
// with an unsupported protocol level is answered with CONNACK 0x01 in the
// 3.1.1 format (the only one such a client can be expected to parse)
// [MQTT-3.1.2-2]; a malformed 5.0 CONNECT gets CONNACK with the reason code
// when the version was readable; then the connection closes
// [MQTT-3.1.4-1].
func (c *client) connectReadError(r *packets.Reader, err error) {
	if c.tlsHandshakeFailed(err) { // tls.go
		return
	}
	c.srv.stats.ConnectsRefused.Add(1)
	c.srv.stats.Refused.Inc("bad-connect")
	var pe *packets.Error
	if errors.As(err, &pe) {
		c.log.Info("connection refused: bad CONNECT", "err", err)
		switch {
		case pe.Code == packets.UnsupportedProtocolVersion:
			c.version = packets.V311
			_ = c.send(&packets.Connack{ReasonCode: packets.UnsupportedProtocolVersion})
		case r.Version() == packets.V5 && pe.Packet == packets.TypeConnect:
			c.version = packets.V5
			_ = c.send(&packets.Connack{ReasonCode: pe.Code})
		}
		return
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.log.Debug("no CONNECT within connect timeout", "timeout", c.srv.opts.ConnectTimeout)
		return
	}
	c.log.Debug("bad first packet", "err", err)
}

// refuse answers CONNECT with an error reason code and ends the connection
// [MQTT-3.2.2-7]. 3.1.1 clients get the matching return code, or no CONNACK
// when 3.1.1 has none [MQTT-3.2.2-6].
func (c *client) refuse(rc packets.ReasonCode, why string) bool {
	c.srv.stats.ConnectsRefused.Add(1)
	c.srv.stats.Refused.Inc(rc.String())
	c.log.Info("connection refused", "client", c.id, "reason", rc.String(), "why", why)
	if c.version != packets.V5 {
		if _, ok := rc.ConnackReturnCode(); !ok {
			return false
		}
	}
	ack := &packets.Connack{ReasonCode: rc}
	if c.version == packets.V5 && c.problemInfo && why != "" {
		ack.Properties.ReasonString = why
	}
	c.fitConnack(ack)
	_ = c.send(ack)
	return false
}

// fitConnack removes what may be left out of a 5.0 CONNACK until it fits
// the client's Maximum Packet Size [MQTT-3.1.2-24]: first the Reason String
// and User Properties [MQTT-3.2.2-19] [MQTT-3.2.2-20], then the
// capabilities whose absence means the protocol default. What the client
// must be told (assigned client identifier, server keep alive, session
// expiry) stays.
func (c *client) fitConnack(ack *packets.Connack) {
	if c.version != packets.V5 || c.maxOut == 0 {
		return
	}
	fits := func() bool { return packets.Size(ack, c.version) <= int(c.maxOut) }
	if fits() {
		return
	}
	ack.Properties.ReasonString = ""
	ack.Properties.User = nil
	if fits() {
		return
	}
	keep := ack.Properties
	ack.Properties = packets.Properties{AssignedClientID: keep.AssignedClientID, AuthMethod: keep.AuthMethod, AuthData: keep.AuthData}
	if keep.Has(packets.PropServerKeepAlive) {
		ack.Properties.ServerKeepAlive = keep.ServerKeepAlive
		ack.Properties.Mark(packets.PropServerKeepAlive)
	}
	if keep.Has(packets.PropSessionExpiry) {
		ack.Properties.SessionExpiry = keep.SessionExpiry
		ack.Properties.Mark(packets.PropSessionExpiry)
	}
	if keep.Has(packets.PropMaximumQoS) {
		ack.Properties.MaximumQoS = keep.MaximumQoS
		ack.Properties.Mark(packets.PropMaximumQoS)
	}
	if keep.Has(packets.PropRetainAvailable) {
		ack.Properties.RetainAvailable = keep.RetainAvailable
		ack.Properties.Mark(packets.PropRetainAvailable)
	}
	// Receive Maximum and Maximum Packet Size are enforced by the server
	// whether or not they were advertised.
}

// reservedTopic reports whether clients may not publish to topic: the
// broker's own $SYS/ and $dlq/ trees are read-only for clients.
func reservedTopic(topic string) bool {
	return strings.HasPrefix(topic, "$SYS/") || topic == "$SYS" ||
		strings.HasPrefix(topic, "$dlq/") || topic == "$dlq"
}

// newClientID returns a server-assigned client identifier (5.0
// §3.1.3.1, 3.1.1 §3.1.3.1 with clean session): 'beacon-' and 16 hex
// digits, unique in practice and valid for any server [MQTT-3.1.3-6].
func newClientID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "beacon-" + hex.EncodeToString(b[:])
}

// handleConnect validates CONNECT, settles the session (new, resumed or
// taken over), sends CONNACK and attaches the session. It reports whether
// the connection continues.
func (c *client) handleConnect(p *packets.Connect) bool {
	s := c.srv
	o := &s.opts
	s.stats.Connects.Add(1)
	s.stats.PacketsReceived.Add(1)
	c.version = p.Version
	c.id = p.ClientID
	if c.version == packets.V5 {
		c.maxOut = p.Properties.MaximumPacketSize // also bounds a refusing CONNACK
		if p.Properties.Has(packets.PropRequestProblemInfo) && p.Properties.RequestProblemInfo == 0 {
			c.problemInfo = false // [MQTT-3.1.2-29]
		}
	}
	if c.lim.refuse != 0 {
		return c.refuseByLimit() // over a connection limit since accept (limits.go)
	}
	c.certIdentity(p) // TLSUseCNAsUsername, before authentication (tls.go)
	if c.id == "" {
		switch {
		case c.version == packets.V31:
			return c.refuse(packets.ClientIdentifierNotValid, "MQTT 3.1 requires a client identifier")
		case c.version == packets.V311 && !p.CleanStart:
			// [MQTT-3.1.3-8] an empty client id needs clean session 1.
			return c.refuse(packets.ClientIdentifierNotValid, "empty client identifier requires clean session")
		}
		c.id = newClientID() // [MQTT-3.1.3-6]
	}

	if w := p.Will; w != nil {
		if err := packets.ValidTopicName(w.Topic); err != nil {
			return c.refuse(packets.TopicNameInvalid, "will topic: "+err.Error())
		}
		if err := s.topicOverLimit(w.Topic); err != nil { // limits.go
			return c.refuse(packets.TopicNameInvalid, "will topic: "+err.Error())
		}
		if reservedTopic(w.Topic) {
			return c.refuse(packets.NotAuthorized, "will topic is reserved")
		}
		if w.QoS > o.MaxQoS {
			return c.refuse(packets.QoSNotSupported, "will QoS above the server maximum") // [MQTT-3.2.2-12]
		}
		if w.Retain && !o.RetainAvailable {
			return c.refuse(packets.RetainNotSupported, "retained messages are not supported") // [MQTT-3.2.2-13]
		}
		c.willDelay = w.Properties.WillDelay
		props := forwardProperties(&w.Properties) // without Will Delay
		c.will = &storage.Message{
			Topic:      w.Topic,
			Payload:    append([]byte(nil), w.Payload...),
			QoS:        w.QoS,
			Retain:     w.Retain,
			Properties: props, // user properties keep their order [MQTT-3.1.3-10]
			Publisher:  c.id,
		}
	}

	// Authentication (auth.go); an enhanced authentication exchange makes
	// the CONNACK wait for the client's AUTH packets.
	switch c.authenticate(p) {
	case authRefused:
		return false
	case authPending:
		return true
	}
	return c.completeConnect(p)
}

// completeConnect finishes a CONNECT whose client is authenticated: the
// will topic is authorized, the session settled and CONNACK sent. It
// reports whether the connection continues.
func (c *client) completeConnect(p *packets.Connect) bool {
	s := c.srv
	o := &s.opts
	assigned := p.ClientID == ""
	if c.will != nil && !c.mayPublish(c.will.Topic) {
		return c.refuse(packets.NotAuthorized, "will topic not authorized") // publish permission, acl.go
	}

	// Session expiry: 5.0 from the property [MQTT-3.1.2-23]; 3.1.1 clean
	// session 0 keeps the session for ever, clean session 1 ends it with the
	// connection.
	var expiry uint32
	expiryCapped := false
	if c.version == packets.V5 {
		expiry = p.Properties.SessionExpiry
		c.connectExpiry = expiry
		if o.MaxSessionExpiry > 0 && expiry > o.MaxSessionExpiry {
			expiry = o.MaxSessionExpiry
			expiryCapped = true
		}
	} else if !p.CleanStart {
		expiry = session.NeverExpire
	}

	// Keep alive [MQTT-3.1.2-22]; 5.0 servers may impose their own
	// [MQTT-3.2.2-21].
	ka := p.KeepAlive
	serverKA := false
	if c.version == packets.V5 && o.MaxKeepAlive > 0 && (ka == 0 || ka > o.MaxKeepAlive) {
		ka = o.MaxKeepAlive
		serverKA = true
	}
	c.keepAlive = time.Duration(ka) * time.Second

	// Outbound limits the client asked for.
	var receiveMax uint16
	if c.version == packets.V5 {
		receiveMax = p.Properties.ReceiveMaximum
		c.aliasMax = min(p.Properties.TopicAliasMaximum, o.OutboundTopicAliases) // [MQTT-3.1.2-26] [MQTT-3.1.2-27]
		c.inAliases = make(map[uint16]string)
	}

	present, ok := s.attachSession(c, p.CleanStart, expiry)
	if !ok {
		return c.refuse(packets.ServerUnavailable, "server shutting down")
	}
	if present {
		c.recheckSubscriptions() // the ACL may deny what the resumed session had (acl.go)
	}

	ack := &packets.Connack{SessionPresent: present}
	if c.version == packets.V5 {
		pr := &ack.Properties
		if assigned {
			pr.AssignedClientID = c.id // [MQTT-3.2.2-16]
		}
		if serverKA {
			pr.ServerKeepAlive = ka
			pr.Mark(packets.PropServerKeepAlive)
		}
		if expiryCapped {
			pr.SessionExpiry = expiry
			pr.Mark(packets.PropSessionExpiry)
		}
		if o.ReceiveMaximum < 65535 {
			pr.ReceiveMaximum = o.ReceiveMaximum
		}
		if o.MaxQoS < 2 {
			pr.MaximumQoS = o.MaxQoS
			pr.Mark(packets.PropMaximumQoS)
		}
		if !o.RetainAvailable {
			pr.RetainAvailable = 0
			pr.Mark(packets.PropRetainAvailable)
		}
		pr.MaximumPacketSize = o.MaxPacketSize
		pr.TopicAliasMaximum = o.TopicAliasMaximum
		pr.AuthMethod, pr.AuthData = c.auth.method, c.auth.final // [MQTT-4.12.0-5]
		// Wildcard, subscription identifier and shared subscriptions are all
		// available, which is the default when the properties are absent.
	}
	c.fitConnack(ack)
	c.outMu.Lock()
	err := c.sendLocked(ack)
	if err == nil {
		c.connacked = true
	}
	c.outMu.Unlock()
	if err != nil {
		return false
	}
	c.connected = true
	s.stats.ClientsConnected.Add(1)
	// Resend unacknowledged PUBLISH and PUBREL, then queued deliveries
	// [MQTT-4.4.0-1]; only when the session was resumed is there anything.
	c.sess.Attach(c, receiveMax)
	c.log.Info("client connected", "version", c.version.String(), "clean", p.CleanStart, "present", present, "keepalive", ka, "expiry", expiry)
	return true
}
