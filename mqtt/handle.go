package mqtt

import (
	"errors"
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/session"
	"github.com/beaconmq/beacon/storage"
)

// handle dispatches one packet received after CONNECT. A returned error
// closes the connection; a packets.ReasonCode is sent to 5.0 clients in
// DISCONNECT first.
func (c *client) handle(p packets.Packet) error {
	if c.auth.pending != nil {
		return c.handlePendingAuth(p) // enhanced authentication before CONNACK (auth.go)
	}
	var err error
	switch p := p.(type) {
	case *packets.Publish:
		err = c.handlePublish(p)
	case *packets.Puback:
		d, e := c.sess.Puback(p.PacketID)
		if e != nil {
			c.log.Debug("PUBACK for unknown packet id", "id", p.PacketID)
		} else if p.ReasonCode.IsError() {
			// Not retransmitted [MQTT-4.4.0-2], not given to another
			// subscriber [MQTT-4.8.2-6]: dead-lettered.
			c.srv.stats.NegativeAcks.Add(1)
			c.srv.deadLetter(c.id, d.Msg, "nack", p.ReasonCode.String())
		}
	case *packets.Pubrec:
		err = c.handlePubrec(p)
	case *packets.Pubrel:
		if _, queued := c.pipePending(p.PacketID); queued {
			c.pipeWait() // PUBREL before our PUBREC: release after it
		}
		known, e := c.sess.InboundRelease(p.PacketID)
		if e != nil {
			c.log.Warn("releasing inbound QoS 2 state failed", "err", e)
		}
		rc := packets.Success
		if !known && c.version == packets.V5 {
			rc = packets.PacketIdentifierNotFound
		}
		err = c.sendAck(packets.TypePubcomp, p.PacketID, rc) // [MQTT-4.3.3-11]
	case *packets.Pubcomp:
		if _, e := c.sess.Pubcomp(p.PacketID); e != nil {
			c.log.Debug("PUBCOMP for unknown packet id", "id", p.PacketID)
		}
	case *packets.Subscribe:
		c.pipeWait() // retained messages published before it are stored
		err = c.handleSubscribe(p)
	case *packets.Unsubscribe:
		c.pipeWait()
		err = c.handleUnsubscribe(p)
	case *packets.Pingreq:
		// After the acknowledgements of what came before, as a strictly
		// sequential broker answers; clients use it as a barrier.
		c.pipeWait()
		err = c.send(&packets.Pingresp{}) // [MQTT-3.12.4-1]
	case *packets.Disconnect:
		c.pipeWait() // acknowledge what came before it
		return c.handleDisconnect(p)
	case *packets.Connect:
		return packets.ProtocolError // [MQTT-3.1.0-2]
	case *packets.Auth:
		err = c.handleAuth(p) // re-authentication (auth.go)
	default:
		// Packets only a server sends.
		return packets.ProtocolError
	}
	if errors.Is(err, errClosing) {
		return nil // the connection is going away; the reader ends soon
	}
	return err
}

func (c *client) handlePubrec(p *packets.Pubrec) error {
	failed := p.ReasonCode.IsError()
	d, err := c.sess.Pubrec(p.PacketID, failed)
	if err == nil && failed {
		c.srv.stats.NegativeAcks.Add(1)
		c.srv.deadLetter(c.id, d.Msg, "nack", p.ReasonCode.String())
	}
	if err != nil {
		// Unknown identifier: answer so the client can finish its side.
		rc := packets.Success
		if c.version == packets.V5 {
			rc = packets.PacketIdentifierNotFound
		}
		return c.sendAck(packets.TypePubrel, p.PacketID, rc)
	}
	if failed {
		return nil // [MQTT-4.4.0-2] the exchange ends with the error
	}
	return c.sendAck(packets.TypePubrel, p.PacketID, packets.Success) // [MQTT-4.3.3-4]
}

// handlePublish takes an application message from the client: topic alias
// resolution, permission and limit checks, the inbound QoS 2 duplicate
// check, durable append, routing, and then the acknowledgement
// [MQTT-3.3.4-1].
func (c *client) handlePublish(p *packets.Publish) error {
	s := c.srv
	s.stats.MessagesReceived.Add(1)
	s.stats.PublishReceived[p.QoS].Add(1)
	s.stats.PayloadReceived[p.QoS].Add(uint64(len(p.Payload)))
	topic := p.Topic
	if c.version == packets.V5 && p.Properties.Has(packets.PropTopicAlias) {
		a := p.Properties.TopicAlias
		if a == 0 || a > s.opts.TopicAliasMaximum {
			return packets.TopicAliasInvalid // [MQTT-3.3.2-8] [MQTT-3.3.2-9]
		}
		if topic != "" {
			c.inAliases[a] = topic
		} else if t, ok := c.inAliases[a]; ok {
			topic = t
		} else {
			return packets.ProtocolError // alias never set on this connection
		}
	}
	if topic == "" {
		return packets.ProtocolError
	}
	if p.QoS > s.opts.MaxQoS {
		return packets.QoSNotSupported // [MQTT-3.2.2-11]
	}
	if p.Retain && !s.opts.RetainAvailable {
		return packets.RetainNotSupported // 5.0 §3.2.2.3.5: RETAIN without Retain Available
	}
	if p.QoS > 0 {
		pending, queued := c.pipePending(p.PacketID) // pipeline.go
		dup, err := c.sess.InboundCheckPending(p.PacketID, p.QoS, pending)
		if err != nil && c.version == packets.V5 {
			return packets.ReceiveMaximumExceeded
		}
		if dup || (queued && p.QoS == 2) {
			// Still awaiting PUBREL: acknowledge again, deliver nothing
			// [MQTT-4.3.3-10]; in order after what the pipeline holds.
			if c.pipeIdle() {
				return c.sendAck(packets.TypePubrec, p.PacketID, packets.Success)
			}
			c.pipeEnqueue(pipeItem{id: p.PacketID, qos: p.QoS, dup: true})
			return nil
		}
	}
	if err := s.topicOverLimit(topic); err != nil { // limits.go
		s.stats.DroppedTopicLimit.Add(1)
		c.log.Debug("PUBLISH dropped", "err", err)
		return c.ackPublish(p, packets.TopicNameInvalid)
	}
	if c.publishOverRate() { // limits.go
		return c.refusePublishRate(p)
	}
	if reservedTopic(topic) {
		s.stats.DroppedReserved.Add(1)
		c.log.Debug("PUBLISH to reserved topic dropped", "topic", topic)
		return c.ackPublish(p, packets.NotAuthorized)
	}
	if !c.mayPublish(topic) {
		return c.publishDenied(p, topic) // ACL (acl.go)
	}
	m := &storage.Message{
		Topic:      topic,
		Payload:    p.Payload, // the Reader allocates every packet body afresh
		QoS:        p.QoS,
		Retain:     p.Retain,
		Properties: forwardProperties(&p.Properties),
		Publisher:  c.id,
		Created:    time.Now(),
	}
	if isDelayedTopic(topic) {
		return c.publishDelayed(p, m) // delayed.go
	}
	if p.QoS > 0 || !c.pipeIdle() {
		// Appended, routed and acknowledged by the pipeline, in order.
		c.pipeEnqueue(pipeItem{m: m, id: p.PacketID, qos: p.QoS})
		return nil
	}
	// QoS 0 with nothing queued ahead of it: routed here, never
	// acknowledged; a failure (only its retained write can fail) is
	// counted in StorageErrors. QoS 1/2 failures are answered by the
	// pipeline (publishBatch).
	var cg congested
	if _, err := s.publishTo(m, &cg); err != nil {
		c.log.Warn("storing PUBLISH failed", "topic", topic, "err", err)
	}
	if cg.sess != nil {
		// Back pressure (session/congestion.go): stop reading this client
		// until the subscriber caught up.
		s.stats.BackPressureWaits.Add(1)
		cg.sess.WaitUncongested(maxBackPressureWait)
	}
	return nil
}

// ackPublish sends PUBACK (QoS 1) or PUBREC (QoS 2) with rc from the
// reader: after the acknowledgements of earlier PUBLISH packets still in
// the pipeline [MQTT-4.6.0-2].
func (c *client) ackPublish(p *packets.Publish, rc packets.ReasonCode) error {
	c.pipeWait()
	return c.sendPublishAck(p, rc)
}

// sendPublishAck sends PUBACK (QoS 1) or PUBREC (QoS 2) with rc; 3.1.1
// acks carry no reason code, so a refused message is acknowledged as
// received.
func (c *client) sendPublishAck(p *packets.Publish, rc packets.ReasonCode) error {
	return c.writePublishAck(p.QoS, p.PacketID, c.recordPublishAck(p.QoS, p.PacketID, rc))
}

// recordPublishAck is the state change of acknowledging a PUBLISH of QoS
// qos and packet identifier id with rc: a successful QoS 2 PUBLISH enters
// the session's inbound set. It returns the reason code to send (always
// Success for 3.1.1).
func (c *client) recordPublishAck(qos byte, id uint16, rc packets.ReasonCode) packets.ReasonCode {
	if c.version != packets.V5 {
		rc = packets.Success
	}
	if qos == 2 && !rc.IsError() {
		if err := c.sess.InboundAdd(id); err != nil {
			c.log.Warn("saving inbound QoS 2 state failed", "err", err)
		}
	}
	return rc
}

// writePublishAck sends the PUBACK or PUBREC of the PUBLISH with QoS qos
// and packet identifier id.
func (c *client) writePublishAck(qos byte, id uint16, rc packets.ReasonCode) error {
	switch qos {
	case 1:
		return c.sendAck(packets.TypePuback, id, rc) // [MQTT-4.3.2-4]
	case 2:
		return c.sendAck(packets.TypePubrec, id, rc) // [MQTT-4.3.3-8]
	}
	return nil
}

// forwardProperties copies the PUBLISH properties that travel with the
// message to subscribers: payload format [MQTT-3.3.2-4], message expiry,
// content type, response topic, correlation data and user properties in
// order [MQTT-3.3.2-17] [MQTT-3.3.2-18]. The topic alias and subscription
// identifiers are per connection and are not copied. The slices are
// copied so that a caller may append to them (dead letters add their dlq-*
// user properties) without writing into a message other sessions share.
func forwardProperties(in *packets.Properties) packets.Properties {
	var out packets.Properties
	out.PayloadFormat = in.PayloadFormat
	if in.Has(packets.PropMessageExpiry) {
		out.MessageExpiry = in.MessageExpiry
		out.Mark(packets.PropMessageExpiry)
	}
	out.ContentType = in.ContentType
	out.ResponseTopic = in.ResponseTopic
	if in.CorrelationData != nil {
		out.CorrelationData = append([]byte(nil), in.CorrelationData...)
	}
	if len(in.User) > 0 {
		out.User = append([]packets.UserProperty(nil), in.User...)
	}
	return out
}

// handleSubscribe adds the subscriptions, answers SUBACK with one code per
// filter in order [MQTT-3.8.4-1] [MQTT-3.8.4-5] [MQTT-3.9.3-1], then sends
// the matching retained messages (also when a subscription was replaced
// [MQTT-3.8.4-4]).
func (c *client) handleSubscribe(p *packets.Subscribe) error {
	s := c.srv
	var subID uint32
	if len(p.Properties.SubscriptionIDs) > 0 {
		subID = p.Properties.SubscriptionIDs[0]
	}
	codes := make([]packets.ReasonCode, len(p.Subscriptions))
	var retained []storage.Subscription
	quota := c.newSubQuota() // MaxSubscriptionsPerClient (limits.go)
	for i, req := range p.Subscriptions {
		if err := packets.ValidTopicFilter(req.Filter); err != nil {
			codes[i] = packets.TopicFilterInvalid // 0x8F; 3.1.1 has only 0x80
			if c.version != packets.V5 {
				codes[i] = packets.UnspecifiedError
			}
			continue
		}
		_, inner, shared, err := packets.ParseShared(req.Filter)
		if err != nil {
			codes[i] = packets.TopicFilterInvalid
			if c.version != packets.V5 {
				codes[i] = packets.UnspecifiedError
			}
			continue
		}
		if shared && req.NoLocal {
			return packets.ProtocolError // [MQTT-3.8.3-4]
		}
		if !c.maySubscribe(inner) { // ACL (acl.go)
			codes[i] = c.subscribeDenied(req.Filter)
			continue
		}
		if rc := c.subscribeLimit(quota, req.Filter); rc != 0 { // limits.go
			codes[i] = rc
			continue
		}
		sub := storage.Subscription{
			Filter:            req.Filter,
			QoS:               min(req.QoS, s.opts.MaxQoS),
			NoLocal:           req.NoLocal,
			RetainAsPublished: req.RetainAsPublished,
			RetainHandling:    req.RetainHandling,
			SubscriptionID:    subID,
		}
		existed, err := c.sess.Subscribe(sub)
		if err != nil {
			c.log.Warn("saving subscription failed", "filter", req.Filter, "err", err)
			codes[i] = packets.UnspecifiedError
			continue
		}
		s.tree.Subscribe(sub.Filter, c.id, subValue{sess: c.sess, sub: sub}) // replaces an existing one [MQTT-3.8.4-3]
		codes[i] = packets.ReasonCode(sub.QoS)
		quota.added(sub.Filter)
		// Retained messages: on every subscribe (0), only for a new
		// subscription (1), never (2) [MQTT-3.3.1-9] [MQTT-3.3.1-10]
		// [MQTT-3.3.1-11]; never for shared subscriptions (5.0 §4.8.2).
		if !shared && (sub.RetainHandling == 0 || sub.RetainHandling == 1 && !existed) {
			retained = append(retained, sub)
		}
	}
	if err := c.send(&packets.Suback{PacketID: p.PacketID, ReasonCodes: codes}); err != nil {
		return err
	}
	for _, sub := range retained {
		s.sendRetained(c.sess, sub)
	}
	return nil
}

// sendRetained delivers the retained messages matching sub, with RETAIN set
// [MQTT-3.3.1-8], at min(message QoS, granted QoS). Expired retained
// messages are dropped from the store instead.
func (s *Server) sendRetained(sess *session.Session, sub storage.Subscription) {
	s.gcMu.RLock() // the retained messages' log entries stay until pending
	defer s.gcMu.RUnlock()
	var msgs []*storage.Message
	s.retained.Match(sub.Filter, func(_ string, m *storage.Message) bool {
		msgs = append(msgs, m)
		return true
	})
	now := time.Now()
	for _, m := range msgs {
		if exp := m.ExpiresAt(); !exp.IsZero() && !now.Before(exp) {
			s.retained.Delete(m.Topic)
			s.noteRetained(m.Topic, 0)
			if err := s.store.DeleteRetained(m.Topic); err != nil && !errors.Is(err, storage.ErrNotFound) {
				s.stats.StorageErrors.Add(1)
				s.log.Warn("deleting expired retained message", "topic", m.Topic, "err", err)
			}
			s.stats.Session.Expired.Add(1)
			continue
		}
		_ = s.deliver(sess, &session.Delivery{
			Pending: storage.Pending{Seq: m.Seq, QoS: min(m.QoS, sub.QoS), Retain: true, SubscriptionIDs: subIDs(sub)},
			Msg:     m,
		})
	}
}

// handleUnsubscribe removes subscriptions and answers UNSUBACK, which is
// sent even when nothing was removed [MQTT-3.10.4-5].
func (c *client) handleUnsubscribe(p *packets.Unsubscribe) error {
	codes := make([]packets.ReasonCode, len(p.Filters))
	for i, f := range p.Filters {
		if err := packets.ValidTopicFilter(f); err != nil {
			codes[i] = packets.TopicFilterInvalid
			continue
		}
		existed, err := c.sess.Unsubscribe(f) // exact match [MQTT-3.10.4-1]
		switch {
		case err != nil:
			codes[i] = packets.UnspecifiedError
		case existed:
			c.srv.tree.Unsubscribe(f, c.id)
		default:
			codes[i] = packets.NoSubscriptionExisted
		}
	}
	return c.send(&packets.Unsuback{PacketID: p.PacketID, ReasonCodes: codes})
}

// handleDisconnect ends the connection at the client's request. Reason
// 0x04 keeps the will; every other reason discards it [MQTT-3.14.4-3]. A
// 5.0 client may change the session expiry, but not from zero (a Protocol
// Error, 5.0 §3.14.2.2.2).
func (c *client) handleDisconnect(p *packets.Disconnect) error {
	if c.version == packets.V5 {
		if p.Properties.Has(packets.PropSessionExpiry) {
			if c.connectExpiry == 0 && p.Properties.SessionExpiry != 0 {
				return packets.ProtocolError
			}
			if err := c.sess.SetExpiryInterval(p.Properties.SessionExpiry); err != nil {
				c.log.Warn("saving session failed", "err", err)
			}
		}
		if p.ReasonCode != packets.DisconnectWithWill {
			c.noWill = true
		}
	} else {
		c.noWill = true
	}
	return errClientDisconnect
}
