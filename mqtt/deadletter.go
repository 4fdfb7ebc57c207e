package mqtt

import (
	"strconv"
	"strings"
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/session"
	"github.com/beaconmq/beacon/storage"
)

// Dead letters: a message the broker fails to deliver to a subscriber (it
// expired while queued, the session's queue was full, it was larger than
// the client's Maximum Packet Size, or the client answered PUBACK/PUBREC
// with an error code) is republished on $dlq/broker/{original topic}, as a
// QoS 1 message (so it is on the log) with its payload and properties,
// without its expiry, and with user properties saying why. Dead letters
// are published by one goroutine fed through a bounded channel, because
// the places that discover a failure hold a session lock; a dead letter
// that does not fit in the channel is counted in DeadLetterDropped.
// A message already on a $dlq/ topic is never dead-lettered again.

const (
	dlqPrefix    = "$dlq/"
	dlqSource    = "broker"
	dlqQueueSize = 4096
)

type deadLetterItem struct {
	msg     *storage.Message
	client  string
	reason  string
	lastErr string
	at      time.Time
}

// onSessionDrop is the session.Config.OnDrop of every session.
func (s *Server) onSessionDrop(clientID string, d *session.Delivery, why session.DropReason) {
	s.deadLetter(clientID, d.Msg, string(why), "")
}

// deadLetter queues m for the dead-letter topic. It never blocks.
func (s *Server) deadLetter(clientID string, m *storage.Message, reason, lastErr string) {
	if m == nil || strings.HasPrefix(m.Topic, dlqPrefix) || strings.HasPrefix(m.Topic, "$SYS/") {
		return
	}
	select {
	case s.dlq <- deadLetterItem{msg: m, client: clientID, reason: reason, lastErr: lastErr, at: time.Now()}:
	default:
		s.stats.DeadLetterDropped.Add(1)
	}
}

// dlqLoop publishes dead letters until the server quits, then publishes
// what is still queued.
func (s *Server) dlqLoop() {
	for {
		select {
		case it := <-s.dlq:
			s.publishDeadLetter(it)
		case <-s.quit:
			for {
				select {
				case it := <-s.dlq:
					s.publishDeadLetter(it)
				default:
					return
				}
			}
		}
	}
}

func (s *Server) publishDeadLetter(it deadLetterItem) {
	topic := dlqPrefix + dlqSource + "/" + it.msg.Topic
	if len(topic) > 65535 {
		s.stats.DeadLetterDropped.Add(1)
		return
	}
	props := forwardProperties(&it.msg.Properties)
	props = packets.Properties{
		PayloadFormat:   props.PayloadFormat,
		ContentType:     props.ContentType,
		ResponseTopic:   props.ResponseTopic,
		CorrelationData: props.CorrelationData,
		User:            props.User,
	}
	when := it.at.UTC().Format(time.RFC3339Nano)
	props.User = append(props.User,
		packets.UserProperty{Key: "dlq-reason", Value: it.reason},
		packets.UserProperty{Key: "dlq-source", Value: dlqSource},
		packets.UserProperty{Key: "dlq-original-topic", Value: it.msg.Topic},
		packets.UserProperty{Key: "dlq-attempts", Value: strconv.Itoa(1)},
		packets.UserProperty{Key: "dlq-first-failure", Value: when},
		packets.UserProperty{Key: "dlq-last-error", Value: it.lastErr},
		packets.UserProperty{Key: "dlq-client", Value: it.client},
	)
	m := &storage.Message{
		Topic:      topic,
		Payload:    it.msg.Payload,
		QoS:        1,
		Properties: props,
		Created:    time.Now(),
	}
	if _, err := s.publish(m); err != nil {
		s.stats.DeadLetterDropped.Add(1)
		s.log.Warn("publishing dead letter failed", "topic", topic, "err", err)
		return
	}
	s.stats.DeadLettered.Add(1)
}
