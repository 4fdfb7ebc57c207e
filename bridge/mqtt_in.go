package bridge

// The mqtt source (direction in): a persistent session on the remote
// broker, subscribed to the configured filters, whose messages are
// published locally and only then acknowledged to the remote.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/storage"
)

// mqttSource receives from the remote broker (direction in).
type mqttSource struct {
	name string
	r    *remote
	pub  func(*storage.Message) error
	qos  byte
}

// startMQTTIn connects to the remote in the background with a persistent
// session (Clean Start 0, Session Expiry Interval session_expiry),
// subscribes to cfg.Subscribe on every connection and hands each message
// to pub (the local broker's Publish, which returns once the message is
// durable). A message is acknowledged to the remote only after pub
// returned nil, so it is delivered at least once across crashes of either
// side. When pub fails the message stays unacknowledged and the source
// reconnects after a backoff, which makes the remote send it again
// [MQTT-4.4.0-1]. Close (or ctx) disconnects; the remote keeps the session
// and queues for it until session_expiry.
func startMQTTIn(ctx context.Context, name string, cfg *MQTTConfig, pub func(*storage.Message) error, logger *slog.Logger) (io.Closer, error) {
	if len(cfg.Subscribe) == 0 {
		return nil, fmt.Errorf("bridge %s: mqtt.subscribe is empty: list the remote topic filters to bring in (direction in)", name)
	}
	r, err := newRemote(name, "in", cfg, logger)
	if err != nil {
		return nil, err
	}
	s := &mqttSource{name: name, r: r, pub: pub, qos: *r.cfg.QoS}
	r.cleanStart = false
	r.sessionExpiry = uint32(r.cfg.SessionExpiry / time.Second)
	r.onPublish = s.receive
	r.onUp = s.subscribe
	r.start(ctx)
	return s, nil
}

// Close disconnects from the remote; the session stays there.
func (s *mqttSource) Close() error { return s.r.close() }

// subscribe (re)subscribes on every connection: cheap when the session
// was present, and it picks up filters added to the configuration.
// Retain As Published keeps the remote's retain flag, so local retained
// messages mirror the remote's; Retain Handling 1 sends the retained
// messages only when a subscription is new, not on every reconnect (both
// 5.0 only).
func (s *mqttSource) subscribe(ctx context.Context, rs *remoteSession) error {
	subs := make([]packets.Subscription, 0, len(s.r.cfg.Subscribe))
	for _, f := range s.r.cfg.Subscribe {
		subs = append(subs, packets.Subscription{Filter: f, QoS: s.qos, RetainAsPublished: true, RetainHandling: 1})
	}
	if err := rs.conn.subscribe(ctx, subs); err != nil {
		return fmt.Errorf("subscribing to %v: %w", s.r.cfg.Subscribe, err)
	}
	return nil
}

// receive handles one PUBLISH from the remote. The client calls it from
// one goroutine per connection, in arrival order, so local publication
// keeps the remote's order, and so do the acknowledgements
// [MQTT-4.6.0-2].
func (s *mqttSource) receive(rs *remoteSession, p *packets.Publish, ack func()) {
	if rs.failed.Load() {
		return // see remoteSession.failed
	}
	m, loop, err := s.toLocal(p)
	if loop {
		s.r.log.Debug("mqtt bridge: not bringing back a message this bridge sent out", "topic", p.Topic)
		ack()
		return
	}
	if err != nil {
		s.r.log.Error("mqtt bridge: message cannot be brought in; acknowledged to the remote and dropped", "topic", p.Topic, "err", err)
		ack()
		return
	}
	if err := s.pub(m); err != nil {
		if IsPermanent(err) {
			// The local broker will refuse it every time: holding it
			// unacknowledged would stop the whole subscription.
			s.r.log.Error("mqtt bridge: the local broker refused a message for good; acknowledged to the remote and not brought in", "topic", p.Topic, "local_topic", m.Topic, "err", err)
			ack()
			return
		}
		rs.failed.Store(true)
		s.r.setErr(fmt.Errorf("publishing locally: %w", err))
		s.r.log.Warn("mqtt bridge: publishing locally failed; reconnecting to have the remote send it again", "topic", p.Topic, "err", err)
		select {
		case rs.drop <- struct{}{}:
		default:
		}
		return
	}
	ack()
}

// toLocal converts a remote PUBLISH into a local message. loop reports a
// message this bridge sent out itself (it carries the loop marker); err a
// topic the local broker can never take (invalid or reserved). Properties
// are kept; the Message Expiry Interval the remote forwards is what
// remains of it [MQTT-3.3.2-6], counted from now.
func (s *mqttSource) toLocal(p *packets.Publish) (m *storage.Message, loop bool, err error) {
	m = &storage.Message{
		Topic:     mapTopic(p.Topic, s.r.cfg.RemotePrefix, s.r.cfg.LocalPrefix),
		Payload:   p.Payload,
		QoS:       p.QoS,
		Retain:    p.Retain,
		Publisher: "bridge:" + s.name,
		Created:   time.Now(),
	}
	mp := &m.Properties
	mp.ContentType = p.Properties.ContentType
	mp.ResponseTopic = p.Properties.ResponseTopic
	mp.CorrelationData = p.Properties.CorrelationData
	if p.Properties.Has(packets.PropPayloadFormat) {
		mp.PayloadFormat = p.Properties.PayloadFormat
		mp.Mark(packets.PropPayloadFormat)
	}
	if p.Properties.Has(packets.PropMessageExpiry) {
		mp.MessageExpiry = p.Properties.MessageExpiry
		mp.Mark(packets.PropMessageExpiry)
	}
	mp.User = append(mp.User, p.Properties.User...)
	if hasMarker(m.Properties.User, s.r.cfg.ClientID) {
		return nil, true, nil
	}
	if err := packets.ValidTopicName(m.Topic); err != nil {
		return nil, false, fmt.Errorf("local topic %q: %w", m.Topic, err)
	}
	if strings.HasPrefix(m.Topic, "$SYS/") || strings.HasPrefix(m.Topic, "$dlq/") || m.Topic == "$SYS" || m.Topic == "$dlq" {
		return nil, false, fmt.Errorf("local topic %q is reserved for the broker", m.Topic)
	}
	m.Properties.User = append(m.Properties.User, packets.UserProperty{Key: MarkerKey, Value: s.r.cfg.ClientID})
	return m, false, nil
}
