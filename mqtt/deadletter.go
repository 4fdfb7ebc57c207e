package mqtt

import (
	"fmt"
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

// DeadLetter says why a message is dead-lettered; its fields become the
// dlq-* user properties of the dead letter.
type DeadLetter struct {
	Source       string    // "broker" or a bridge name: the topic is $dlq/{Source}/{original topic}
	Reason       string    // dlq-reason, e.g. "expired", "queue-full", "sink-failed"
	Attempts     int       // dlq-attempts; 0 is written as 1
	FirstFailure time.Time // dlq-first-failure; zero means now
	LastError    string    // dlq-last-error
	Client       string    // dlq-client: the subscriber that failed, if any
}

type deadLetterItem struct {
	msg *storage.Message
	dl  DeadLetter
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
	case s.dlq <- deadLetterItem{msg: m, dl: DeadLetter{Source: dlqSource, Reason: reason, LastError: lastErr, Client: clientID, FirstFailure: time.Now()}}:
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
	if err := s.DeadLetter(it.msg, it.dl); err != nil {
		s.stats.DeadLetterDropped.Add(1)
		s.log.Warn("publishing dead letter failed", "topic", it.msg.Topic, "err", err)
	}
}

// DeadLetter publishes m on $dlq/{dl.Source}/{m.Topic} as a QoS 1 message
// with its payload and properties (not its expiry) and the dlq-* user
// properties, and returns once it is durable. Bridges call it when a sink
// gives up on a message; an error means the dead letter was not stored and
// the caller must keep the message.
func (s *Server) DeadLetter(m *storage.Message, dl DeadLetter) error {
	if dl.Source == "" || strings.Contains(dl.Source, "/") {
		return fmt.Errorf("mqtt: dead letter source %q must be one topic level", dl.Source)
	}
	topic := dlqPrefix + dl.Source + "/" + m.Topic
	if len(topic) > 65535 {
		return fmt.Errorf("mqtt: dead letter topic for %q is longer than 65535 bytes", m.Topic)
	}
	props := forwardProperties(&m.Properties)
	props = packets.Properties{
		PayloadFormat:   props.PayloadFormat,
		ContentType:     props.ContentType,
		ResponseTopic:   props.ResponseTopic,
		CorrelationData: props.CorrelationData,
		User:            props.User,
	}
	first := dl.FirstFailure
	if first.IsZero() {
		first = time.Now()
	}
	attempts := max(dl.Attempts, 1)
	props.User = append(props.User,
		packets.UserProperty{Key: "dlq-reason", Value: dl.Reason},
		packets.UserProperty{Key: "dlq-source", Value: dl.Source},
		packets.UserProperty{Key: "dlq-original-topic", Value: m.Topic},
		packets.UserProperty{Key: "dlq-attempts", Value: strconv.Itoa(attempts)},
		packets.UserProperty{Key: "dlq-first-failure", Value: first.UTC().Format(time.RFC3339Nano)},
		packets.UserProperty{Key: "dlq-last-error", Value: dl.LastError},
	)
	if dl.Client != "" {
		props.User = append(props.User, packets.UserProperty{Key: "dlq-client", Value: dl.Client})
	}
	d := &storage.Message{
		Topic:      topic,
		Payload:    m.Payload,
		QoS:        1,
		Properties: props,
		Created:    time.Now(),
	}
	if _, err := s.publish(d); err != nil {
		return err
	}
	s.stats.DeadLettered.Add(1)
	s.stats.DeadLetters.Inc(dl.Source, dl.Reason)
	return nil
}

// Publish publishes m as if a client had sent it: stored when it must be,
// retained if m.Retain, routed to every matching subscription. It returns
// once m is durable in the configured mode (QoS 1/2), so a caller may then
// acknowledge it upstream. Bridges (direction in) and dead-letter replay
// use it. Topics under the reserved $SYS/ and $dlq/ prefixes are refused.
func (s *Server) Publish(m *storage.Message) error {
	if err := packets.ValidTopicName(m.Topic); err != nil {
		return fmt.Errorf("mqtt: publish: %w", err)
	}
	if reservedTopic(m.Topic) {
		return fmt.Errorf("mqtt: publish: topic %q is reserved for the broker", m.Topic)
	}
	if m.QoS > 2 {
		return fmt.Errorf("mqtt: publish: QoS %d", m.QoS)
	}
	if m.Created.IsZero() {
		m.Created = time.Now()
	}
	_, err := s.publish(m)
	return err
}

// SetDeadLetterReplayer registers fn as the destination of dead letters
// whose source is source (a bridge name): replaying such a dead letter
// hands the original message (topic and properties as before it was
// dead-lettered) and its dlq-* record to fn instead of republishing it on
// its original topic. fn returning an error puts it back on the dead
// letter topic with Attempts counted up. A nil fn removes the replayer.
func (s *Server) SetDeadLetterReplayer(source string, fn func(m *storage.Message, dl DeadLetter) error) {
	// Stub: implemented by the dead-letter work.
}

// ReplayDeadLetters replays every stored dead letter of source (see
// SetDeadLetterReplayer) and returns how many were replayed. Bridges call
// it when their sink is healthy again.
func (s *Server) ReplayDeadLetters(source string) (int, error) {
	return 0, nil // Stub: implemented by the dead-letter work.
}
