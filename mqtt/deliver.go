package mqtt

import (
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/session"
)

// The client is the session.Writer of the session it owns: the session
// calls WritePublish and WritePubrel with its lock held, in delivery order,
// and they encode straight into the outbound buffer without blocking.

var _ session.Writer = (*client)(nil)

// WritePublish encodes the PUBLISH of d into the outbound buffer. It
// applies, in this order: the remaining Message Expiry Interval (5.0
// §3.3.2.3.3; a QoS 0 message that expired is dropped and counted), the
// outbound topic alias, the client's Maximum Packet Size (a packet that
// does not fit is never sent [MQTT-3.1.2-24] and counts as delivered
// [MQTT-3.1.2-25]), and the slow-consumer policy: a QoS 0 message that
// does not fit in MaxOutboundBytes is dropped and counted; a new QoS 1/2
// delivery waits in the session queue (session.ErrBusy) until the writer
// drained the buffer. Redeliveries (dup) always go out.
func (c *client) WritePublish(d *session.Delivery, dup bool) error {
	m := d.Msg
	var expiry uint32
	if c.version == packets.V5 {
		if exp := m.ExpiresAt(); !exp.IsZero() {
			left := time.Until(exp)
			if left <= 0 && d.QoS == 0 {
				c.srv.stats.Session.Expired.Add(1) // [MQTT-3.3.2-5]
				c.srv.deadLetter(c.id, m, string(session.DropExpired), "")
				return nil
			}
			expiry = max(uint32((left+time.Second-1)/time.Second), 1) // [MQTT-3.3.2-6]
		}
	}
	c.outMu.Lock()
	defer c.outMu.Unlock()
	if c.closing {
		// QoS 0 is lost with the connection, like for an offline session. A
		// new QoS 1/2 delivery stays queued in the session (ErrBusy, and no
		// pump request: the next connection's Attach drains the queue), so
		// its expiry still applies until delivery really starts
		// [MQTT-3.3.2-5]; a redelivery stays in flight for the next one.
		switch {
		case d.QoS == 0:
			c.srv.stats.Session.Offline0.Add(1)
		case !dup:
			return session.ErrBusy
		}
		return nil
	}
	// The packet is built in a per-connection scratch value so that
	// encoding it does not allocate.
	p := &c.scratch
	*p = packets.Publish{
		Dup:      dup && d.QoS > 0, // [MQTT-3.3.1-1] [MQTT-3.3.1-2] [MQTT-3.3.1-3]
		QoS:      d.QoS,
		Retain:   d.Retain,
		Topic:    m.Topic,
		PacketID: d.PacketID,
		Payload:  m.Payload,
	}
	if c.version == packets.V5 {
		p.Properties = m.Properties // payload format, content type, response topic, correlation data, user properties unchanged [MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17] [MQTT-3.3.2-20]
		p.Properties.SubscriptionIDs = d.SubscriptionIDs
		if expiry > 0 {
			p.Properties.MessageExpiry = expiry
		}
	}
	defer func() { *p = packets.Publish{} }() // keep no payload alive
	newAlias := uint16(0)
	if c.aliasMax > 0 {
		if a, ok := c.outAliases[m.Topic]; ok {
			p.Topic = "" // the alias stands for the topic
			p.Properties.TopicAlias = a
		} else if c.aliasNext < c.aliasMax {
			if c.outAliases == nil {
				c.outAliases = make(map[string]uint16)
			}
			newAlias = c.aliasNext + 1 // [MQTT-3.1.2-26]
			p.Properties.TopicAlias = newAlias
		}
	}
	size := packets.Size(p, c.version)
	if c.maxOut > 0 && size > int(c.maxOut) {
		return session.ErrTooLarge // [MQTT-3.1.2-24]
	}
	if c.out.Len()+size > c.srv.opts.MaxOutboundBytes/2 && !c.outBusy && c.sess != nil {
		// Back pressure (session/congestion.go): publishers feeding this
		// connection slow down before QoS 0 has to be dropped.
		c.outBusy = true
		c.sess.WriterBusy()
	}
	if c.out.Len()+size > c.srv.opts.MaxOutboundBytes && c.out.Len() > 0 && !dup {
		if d.QoS == 0 {
			c.srv.stats.DroppedSlowQoS0.Add(1)
			return nil
		}
		c.needPump = true
		return session.ErrBusy
	}
	if err := c.out.encode(p, size, c.version); err != nil {
		c.log.Error("encoding PUBLISH failed", "topic", m.Topic, "err", err)
		return session.ErrTooLarge
	}
	if newAlias != 0 {
		c.outAliases[m.Topic] = newAlias
		c.aliasNext = newAlias
	}
	c.srv.stats.MessagesSent.Add(1)
	c.srv.stats.PacketsSent.Add(1)
	c.srv.stats.PublishSent[d.QoS].Add(1)
	c.srv.stats.PayloadSent[d.QoS].Add(uint64(len(m.Payload)))
	c.signal()
	return nil
}

// WritePubrel queues a PUBREL (QoS 2 resend on session resume).
func (c *client) WritePubrel(packetID uint16) {
	_ = c.sendAck(packets.TypePubrel, packetID, packets.Success)
}
