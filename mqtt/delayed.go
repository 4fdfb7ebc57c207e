package mqtt

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/storage"
)

// Delayed publish: a PUBLISH to $delayed/{seconds}/{topic} is stored
// (storage.DelayedStore) and published to {topic} through the normal
// publish path once {seconds} have passed, also across a restart, since
// the due time is stored as an absolute time. It is not part of either
// MQTT spec; docs/architecture.md ("Delayed publish") has the rules.
//
// The schedule is kept in the store, not in memory: one goroutine
// (delayedLoop) reads the store's entries in due order, publishes those
// that are due, and then sleeps until the first entry that is not, or
// until a new entry comes in earlier than that. Memory therefore does not
// grow with the number of pending delayed messages.

const (
	delayedPrefix = "$delayed/"
	// maxDelaySeconds is the longest delay accepted: 4,294,967 s, just
	// under 49.7 days (the number of whole seconds in 2^32 milliseconds).
	maxDelaySeconds = 4294967
	// delayedRetry is how long the loop waits after a store or publish
	// failure before it tries the due entries again.
	delayedRetry = time.Second
)

// delayedState is the delayed loop's schedule. Adders and the loop share
// it under mu; see addedDelayed for why dirty exists.
type delayedState struct {
	mu    sync.Mutex
	next  time.Time // due time the loop sleeps until; zero = no entry
	dirty bool      // an entry was added since the loop's current scan began
	wake  chan struct{}
	// fired holds ids published whose removal from the store failed; they
	// are not published again, only removed again (owned by the loop).
	fired map[uint64]struct{}
}

// isDelayedTopic reports whether a PUBLISH topic asks for delayed publish.
func isDelayedTopic(topic string) bool { return strings.HasPrefix(topic, delayedPrefix) }

// parseDelayed splits $delayed/{seconds}/{topic}. seconds is a decimal
// integer 0..maxDelaySeconds (digits only); topic must be a valid topic
// name that a client may publish to (not under $SYS/, $dlq/ or again under
// $delayed/).
func parseDelayed(topic string) (delay time.Duration, target string, ok bool) {
	rest, found := strings.CutPrefix(topic, delayedPrefix)
	if !found {
		return 0, "", false
	}
	secs, target, found := strings.Cut(rest, "/")
	if !found || secs == "" || len(secs) > 7 {
		return 0, "", false
	}
	for i := 0; i < len(secs); i++ {
		if secs[i] < '0' || secs[i] > '9' {
			return 0, "", false
		}
	}
	n, err := strconv.ParseUint(secs, 10, 32)
	if err != nil || n > maxDelaySeconds {
		return 0, "", false
	}
	if packets.ValidTopicName(target) != nil || reservedTopic(target) || isDelayedTopic(target) {
		return 0, "", false
	}
	return time.Duration(n) * time.Second, target, true
}

// publishDelayed takes a PUBLISH to a $delayed/ topic: m is the message as
// it would be published, with the $delayed topic. The message is stored
// with its target topic and acknowledged once the store write returned,
// the same rule as for other QoS >= 1 messages; QoS 0 is stored too so it
// survives a restart. It is not routed now: nobody sees $delayed/ topics.
func (c *client) publishDelayed(p *packets.Publish, m *storage.Message) error {
	s := c.srv
	delay, target, ok := parseDelayed(m.Topic)
	if !ok {
		s.stats.DroppedDelayedInvalid.Add(1)
		c.log.Debug("PUBLISH to malformed $delayed topic dropped", "topic", m.Topic)
		return c.ackPublish(p, packets.TopicNameInvalid) // 3.1.1: acknowledged and dropped
	}
	m.Topic = target
	due := m.Created.Add(delay)
	if _, err := s.store.AddDelayed(due, m); err != nil {
		s.stats.StorageErrors.Add(1)
		c.log.Warn("storing delayed PUBLISH failed", "topic", target, "err", err)
		if p.QoS == 0 {
			return nil // counted in StorageErrors
		}
		if c.version != packets.V5 {
			return packets.UnspecifiedError // 3.1.1: close unacknowledged; the client resends
		}
		rc := packets.UnspecifiedError
		if errors.Is(err, storage.ErrFull) {
			rc = packets.QuotaExceeded
		}
		return c.ackPublish(p, rc)
	}
	s.stats.DelayedStored.Add(1)
	s.addedDelayed(due)
	return c.ackPublish(p, packets.Success)
}

// addedDelayed tells the loop about an entry due at due that is already
// in the store. The loop's scan may have read the store just before the
// entry was written; dirty makes it scan again before it goes to sleep.
func (s *Server) addedDelayed(due time.Time) {
	d := &s.delayed
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dirty = true
	if d.next.IsZero() || due.Before(d.next) {
		d.next = due
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// startDelayed starts the delayed loop; its first scan publishes what fell
// due while the broker was down. Called by Start before the listeners
// accept connections.
func (s *Server) startDelayed() {
	s.delayed.wake = make(chan struct{}, 1)
	s.delayed.fired = make(map[uint64]struct{})
	s.goTracked(s.delayedLoop)
}

// delayedLoop publishes delayed messages at their due time until the
// server quits. A publish under way when Shutdown starts is finished and
// removed from the store, so a clean restart never publishes it twice.
func (s *Server) delayedLoop() {
	d := &s.delayed
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		d.mu.Lock()
		d.dirty = false
		d.mu.Unlock()
		next := s.publishDueDelayed()
		d.mu.Lock()
		if d.dirty {
			d.mu.Unlock()
			continue
		}
		d.next = next
		d.mu.Unlock()
		wait := time.Duration(-1)
		if !next.IsZero() {
			wait = max(time.Until(next), 0)
		}
		if wait >= 0 {
			timer.Reset(wait)
		}
		select {
		case <-s.quit:
			return
		case <-d.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select { // drain a fire that raced with the wake-up
			case <-timer.C:
			default:
			}
		}
	}
}

// publishDueDelayed publishes every stored entry that is due, in due
// order, and returns the due time of the first one that is not (zero when
// there is none). After a failure it returns a retry time instead.
func (s *Server) publishDueDelayed() time.Time {
	d := &s.delayed
	type entry struct {
		id uint64
		m  *storage.Message
	}
	for {
		select {
		case <-s.quit:
			return time.Time{}
		default:
		}
		now := time.Now()
		var due []entry
		var next time.Time
		err := s.store.Delayed(func(id uint64, at time.Time, m *storage.Message) bool {
			if at.After(now) {
				next = at
				return false
			}
			due = append(due, entry{id, m})
			return len(due) < 256 // a batch; the outer loop reads on
		})
		if err != nil {
			if !errors.Is(err, storage.ErrClosed) {
				s.stats.StorageErrors.Add(1)
				s.log.Warn("reading delayed messages failed", "err", err)
			}
			return now.Add(delayedRetry)
		}
		if len(due) == 0 {
			return next
		}
		for _, e := range due {
			if _, done := d.fired[e.id]; !done {
				if !s.fireDelayed(e.m, now) {
					return now.Add(delayedRetry)
				}
				d.fired[e.id] = struct{}{}
			}
			if err := s.store.RemoveDelayed(e.id); err != nil {
				s.stats.StorageErrors.Add(1)
				s.log.Warn("removing published delayed message failed", "id", e.id, "err", err)
				return now.Add(delayedRetry)
			}
			delete(d.fired, e.id)
		}
	}
}

// fireDelayed publishes m at its due time through the normal path
// (retained handling, routing, log append for QoS >= 1). A message whose
// Message Expiry (counted from the original PUBLISH) passed before its due
// time is dead-lettered instead. false means the publish failed and the
// entry must stay in the store for a retry.
func (s *Server) fireDelayed(m *storage.Message, now time.Time) bool {
	if exp := m.ExpiresAt(); !exp.IsZero() && !now.Before(exp) {
		s.stats.DelayedExpired.Add(1)
		s.deadLetter(m.Publisher, m, "expired", "message expired before its delayed publish time")
		return true
	}
	if _, err := s.publish(m); err != nil {
		// publish counted it in StorageErrors. Recipients that got it
		// keep it; the retry may give them a duplicate, never a loss.
		s.log.Warn("publishing delayed message failed; will retry", "topic", m.Topic, "err", err)
		return false
	}
	s.stats.DelayedPublished.Add(1)
	return true
}
