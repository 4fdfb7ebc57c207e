package mqtt

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beaconmq/beacon/mqtt/topics"
	"github.com/beaconmq/beacon/session"
	"github.com/beaconmq/beacon/storage"
)

// publish makes m durable when it must be, updates the retained store, and
// routes it to every matching subscription. A QoS 1/2 message is appended
// to the log first (every one of them, so bridges can read it there and
// sessions can point at it); the caller acknowledges the PUBLISH only
// after publish returned without error. It returns the number of sessions
// the message was handed to.
func (s *Server) publish(m *storage.Message) (int, error) { return s.publishTo(m, nil) }

// publishTo is publish that notes in cg (if not nil) a receiving session
// that is congested (back pressure).
func (s *Server) publishTo(m *storage.Message, cg *congested) (int, error) {
	// Between append and routing the message is needed by nothing the log
	// collector can see: hold it off (loggc.go).
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	if m.QoS > 0 {
		if err := s.appendLog(m); err != nil {
			return 0, err
		}
	}
	return s.publishAppended(m, cg)
}

// appendLog appends msgs to the log in one call (one group commit) and
// returns once they are durable. The caller holds gcMu for reading until
// the messages are routed.
func (s *Server) appendLog(msgs ...*storage.Message) error {
	start := time.Now()
	err := s.store.Append(context.Background(), msgs...)
	s.stats.AppendLatency.Observe(time.Since(start))
	if err != nil {
		s.stats.StorageErrors.Add(1)
		return err
	}
	s.notifyLogAppended() // wake log readers (bridges): logwatch.go
	return nil
}

// publishAppended is publish after the append: retained store, then
// routing. The caller holds gcMu for reading.
func (s *Server) publishAppended(m *storage.Message, cg *congested) (int, error) {
	if m.Retain {
		if err := s.retain(m); err != nil {
			s.stats.StorageErrors.Add(1)
			return 0, err
		}
	}
	return s.routeTo(m, cg)
}

// congested collects a receiving session that asked for back pressure
// while a publisher's messages were routed (session/congestion.go).
type congested struct {
	sess *session.Session
}

func (cg *congested) note(sess *session.Session) {
	if cg != nil && cg.sess == nil && sess.Congested() {
		cg.sess = sess
	}
}

// retain stores m as the retained message of its topic, replacing the
// previous one [MQTT-3.3.1-5]; an empty payload deletes it instead
// [MQTT-3.3.1-6] [MQTT-3.3.1-7].
//
// $SYS topics are retained in memory only: they are rewritten every
// SysInterval and describe this process, so persisting them would only
// cost writes and show stale values after a restart.
func (s *Server) retain(m *storage.Message) error {
	if strings.HasPrefix(m.Topic, "$SYS/") {
		if len(m.Payload) == 0 {
			s.retained.Delete(m.Topic)
		} else {
			s.retained.Set(m.Topic, m)
		}
		return nil
	}
	if len(m.Payload) == 0 {
		s.retained.Delete(m.Topic)
		s.noteRetained(m.Topic, 0)
		if err := s.store.DeleteRetained(m.Topic); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		return nil
	}
	if err := s.store.SetRetained(m); err != nil {
		return err
	}
	s.retained.Set(m.Topic, m)
	s.noteRetained(m.Topic, m.Seq)
	s.stats.RetainedStored.Add(1)
	return nil
}

// target is one receiving session of a message, with the subscriptions
// that matched merged: one copy at the highest granted QoS carrying every
// matching subscription identifier [MQTT-3.3.4-2] [MQTT-3.3.4-3]
// [MQTT-3.3.4-4].
type target struct {
	key  string
	sess *session.Session
	qos  byte
	rap  bool // retain as published, if any matching subscription asks for it
	ids  []uint32
}

func (t *target) merge(sub *storage.Subscription) {
	t.qos = max(t.qos, sub.QoS)
	t.rap = t.rap || sub.RetainAsPublished
	if sub.SubscriptionID != 0 {
		t.ids = append(t.ids, sub.SubscriptionID)
	}
}

func subIDs(sub storage.Subscription) []uint32 {
	if sub.SubscriptionID == 0 {
		return nil
	}
	return []uint32{sub.SubscriptionID}
}

// mergeLinear is the number of recipients up to which duplicates are found
// by scanning the targets instead of through a map.
const mergeLinear = 16

// route hands m to every session with a matching subscription
// [MQTT-4.5.0-1]: topic matching by the tree (which keeps '$' topics away
// from leading wildcards [MQTT-4.7.2-1]), No Local [MQTT-3.8.3-3], one
// member per shared group (5.0 §4.8.2) at the QoS granted to that member
// [MQTT-4.8.2-3], delivered QoS = min(published, granted) [MQTT-3.8.4-8].
//
// The error is the first storage failure of a recipient's pending entry:
// the publisher must then not be acknowledged (the other recipients got
// the message; a resend makes a duplicate, never a loss).
func (s *Server) route(m *storage.Message) (int, error) { return s.routeTo(m, nil) }

// routeTo is route that notes in cg (if not nil) a receiving session that
// is congested.
func (s *Server) routeTo(m *storage.Message, cg *congested) (int, error) {
	res := s.tree.Match(m.Topic)
	n := len(res.Subscribers) + len(res.Groups)
	if n == 0 {
		return 0, nil
	}
	var small [4]target
	targets := small[:0]
	if n > len(small) {
		targets = make([]target, 0, n)
	}
	// Only a session with several subscriptions can match twice (overlapping
	// filters, or a shared and a non-shared subscription); only those are
	// looked up among the targets so far. Group members always are: a
	// session in a group has a shared subscription, so if it also matched
	// directly it has two.
	multi := 0
	for i := range res.Subscribers {
		if res.Subscribers[i].Value.sess.MultiSubscribed() {
			multi++
		}
	}
	multi += len(res.Groups)
	var index map[string]int
	if multi > mergeLinear {
		index = make(map[string]int, multi)
	}
	add := func(key string, v *subValue) {
		if !v.sess.MultiSubscribed() {
			t := target{key: key, sess: v.sess}
			t.merge(&v.sub)
			targets = append(targets, t)
			return
		}
		if index != nil {
			if i, ok := index[key]; ok {
				targets[i].merge(&v.sub)
				return
			}
			index[key] = len(targets)
		} else {
			for i := range targets {
				if targets[i].sess == v.sess {
					targets[i].merge(&v.sub)
					return
				}
			}
		}
		t := target{key: key, sess: v.sess}
		t.merge(&v.sub)
		targets = append(targets, t)
	}
	for i := range res.Subscribers {
		e := &res.Subscribers[i]
		if e.Value.sub.NoLocal && e.Key == m.Publisher {
			continue // [MQTT-3.8.3-3]
		}
		add(e.Key, &e.Value)
	}
	for i := range res.Groups {
		if e, ok := s.pickShared(&res.Groups[i], m, ""); ok {
			add(e.Key, &e.Value)
		}
	}
	var firstErr error
	var durable []target // copies, so that targets can stay on the stack
	for i := range targets {
		t := &targets[i]
		if m.QoS > 0 && t.qos > 0 && t.sess.Durable() {
			durable = append(durable, *t)
			continue
		}
		if err := s.deliver(t.sess, s.delivery(m, t)); err != nil && firstErr == nil {
			firstErr = err
		}
		cg.note(t.sess)
	}
	if err := s.deliverDurable(m, durable); err != nil && firstErr == nil {
		firstErr = err
	}
	for i := range durable {
		cg.note(durable[i].sess)
	}
	return len(targets), firstErr
}

// deliverDurable delivers to the durable targets. Each such delivery
// writes a pending entry before it returns (and waits for the store's
// durability); done one after the other, a fan-out to N persistent
// subscribers would wait for N commits. Up to durableFanout run at once
// instead, so the store can group-commit them. Per session the order is
// unchanged: the publisher's next message is routed only after this one.
func (s *Server) deliverDurable(m *storage.Message, targets []target) error {
	switch len(targets) {
	case 0:
		return nil
	case 1:
		return s.deliver(targets[0].sess, s.delivery(m, &targets[0]))
	}
	var next atomic.Int64
	var errMu sync.Mutex
	var firstErr error
	work := func() {
		for {
			i := int(next.Add(1) - 1)
			if i >= len(targets) {
				return
			}
			t := &targets[i]
			if err := s.deliver(t.sess, s.delivery(m, t)); err != nil {
				errMu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				errMu.Unlock()
			}
		}
	}
	var wg sync.WaitGroup
	for range min(len(targets), durableFanout) - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
	return firstErr
}

// durableFanout bounds the concurrent deliveries to durable sessions of
// one message.
const durableFanout = 16

// delivery builds the delivery of m to t.
func (s *Server) delivery(m *storage.Message, t *target) *session.Delivery {
	return &session.Delivery{
		Pending: storage.Pending{
			Seq: m.Seq,
			QoS: min(m.QoS, t.qos),
			// RETAIN is cleared on forwarded messages unless the
			// subscription asked for Retain As Published
			// [MQTT-3.3.1-12] [MQTT-3.3.1-13].
			Retain:          m.Retain && t.rap,
			SubscriptionIDs: t.ids,
		},
		Msg: m,
	}
}

// deliver hands d to sess: QoS 0 goes straight to the connection, QoS 1/2
// through the session's queue and inflight window.
// It returns storage failures; the policy refusals (full queue, a session
// fenced by another owner) are counted here instead.
func (s *Server) deliver(sess *session.Session, d *session.Delivery) error {
	if d.QoS == 0 {
		sess.PushQoS0(d)
		return nil
	}
	err := sess.Push(d)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, session.ErrQueueFull):
		s.stats.DroppedQueueFull.Add(1)
		return nil
	case errors.Is(err, session.ErrFenced):
		s.stats.DroppedNoRoute.Add(1)
		s.log.Debug("delivery refused", "client", sess.ClientID(), "err", err)
		return nil
	}
	s.stats.DroppedNoRoute.Add(1)
	s.log.Warn("storing delivery failed", "client", sess.ClientID(), "err", err)
	return err
}

// pickShared chooses the member of a shared subscription group that gets
// m, preferring connected members, never exclude (a client that left the
// group); ok is false when no member is left.
func (s *Server) pickShared(g *topics.Group[subValue], m *storage.Message, exclude string) (topics.Entry[subValue], bool) {
	var keysBuf [8]string
	var idxBuf [8]int
	keys, idx := keysBuf[:0], idxBuf[:0]
	for pass := 0; pass < 2 && len(keys) == 0; pass++ {
		for i := range g.Members {
			e := &g.Members[i]
			if e.Key == exclude {
				continue
			}
			if pass == 0 && !e.Value.sess.Connected() {
				continue
			}
			keys = append(keys, e.Key)
			idx = append(idx, i)
		}
	}
	if len(keys) == 0 {
		return topics.Entry[subValue]{}, false
	}
	i := s.picker.pick(g.Name, g.Filter, keys, m.Topic, m.Publisher, sharedKey(m.Properties.User, defaultSharedKeyProperty))
	if i < 0 {
		return topics.Entry[subValue]{}, false
	}
	return g.Members[idx[i]], true
}
