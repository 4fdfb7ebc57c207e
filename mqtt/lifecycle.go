package mqtt

import (
	"time"

	"github.com/beaconmq/beacon/mqtt/topics"
	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/session"
	"github.com/beaconmq/beacon/storage"
)

// Session lifecycle: which session a CONNECT gets, what happens to the old
// connection of a client identifier that connects again (takeover), and
// what happens when a connection ends (will message, session expiry).

// attachSession binds c to the session of its client identifier and makes
// c the owner of the entry. With clean start the old session, if any, ends
// [MQTT-3.1.2-4]; without it an existing session is resumed
// [MQTT-3.1.2-5] or a new one created [MQTT-3.1.2-6]; a session with
// expiry 0 is never resumed from a live connection. A live connection
// with the same identifier is taken over: it gets DISCONNECT 0x8E (5.0) and
// is closed [MQTT-3.1.4-3], and c waits (bounded) for it to finish so the
// session is handed over whole. It returns the CONNACK Session Present
// flag [MQTT-3.2.2-2] [MQTT-3.2.2-3]; ok is false when the server is
// shutting down.
func (s *Server) attachSession(c *client, clean bool, expiry uint32) (present, ok bool) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return false, false
	}
	e := s.sessions[c.id]
	if e == nil {
		e = &sessEntry{}
		s.sessions[c.id] = e
	}
	old := e.cl
	// A session with expiry 0 ends with its connection [MQTT-3.1.2-23],
	// also when that connection is being taken over (or has sent DISCONNECT
	// and is still closing): the new connection gets a fresh session.
	resume := e.sess != nil && !clean && (old == nil || e.sess.ExpiryInterval() > 0)
	if old != nil {
		old.takenOver.Store(true)
		if !resume {
			old.takeoverEnds.Store(true)
		}
	}
	var ended *session.Session
	var endedSubs []storage.Subscription
	if resume {
		present = true
	} else {
		if e.sess != nil {
			ended = e.sess
			endedSubs = s.unsubscribeAllLocked(c.id, ended)
		}
		e.sess = session.New(s.sessionConfig(c.id, c.version, expiry))
	}
	e.cl = c
	e.gen++
	c.sess, c.gen = e.sess, e.gen
	s.mu.Unlock()

	if old != nil {
		s.stats.Takeovers.Add(1)
		old.kick(packets.SessionTakenOver)
		t := time.NewTimer(s.opts.WriteTimeout + time.Second)
		select {
		case <-old.done:
		case <-t.C:
			c.log.Warn("taken-over connection did not close in time", "client", c.id)
			old.closeConn()
		}
		t.Stop()
	}
	if ended != nil {
		// A will pending from the ended session's last connection is due now:
		// its session ended.
		if w, _ := ended.TakePendingWill(); w != nil {
			s.publishWill(w)
		}
		s.finishSession(c.id, ended, endedSubs)
	} else if present {
		// Reconnected before the will delay elapsed: no will [MQTT-3.1.3-9].
		_, _ = c.sess.TakePendingWill()
	}
	if present {
		if err := c.sess.SetExpiryInterval(expiry); err != nil {
			c.log.Warn("saving session failed", "err", err)
		}
	} else if err := c.sess.Save(); err != nil {
		c.log.Warn("saving session failed", "err", err)
	}
	return present, true
}

// unsubscribeAllLocked removes every subscription of sess from the topic
// tree and returns them. Called with s.mu held, so that a new session of
// the same client identifier cannot subscribe in between.
func (s *Server) unsubscribeAllLocked(clientID string, sess *session.Session) []storage.Subscription {
	subs := sess.Subscriptions()
	for _, sub := range subs {
		s.tree.Unsubscribe(sub.Filter, clientID)
	}
	return subs
}

// finishSession deletes an ended session from the store and hands its
// unacknowledged deliveries of shared subscriptions to other members of
// the group (5.0 §4.8.2).
func (s *Server) finishSession(clientID string, sess *session.Session, subs []storage.Subscription) {
	s.gcMu.RLock() // drained deliveries are pending nowhere until re-routed
	s.rerouteShared(clientID, subs, sess.Drain())
	s.gcMu.RUnlock()
	if err := sess.Delete(); err != nil {
		s.log.Warn("deleting session failed", "client", clientID, "err", err)
	}
}

// endSessionIf ends the session of clientID if it is still sess, offline,
// and no connection came since generation gen.
func (s *Server) endSessionIf(clientID string, gen uint64, sess *session.Session) bool {
	s.mu.Lock()
	e := s.sessions[clientID]
	if e == nil || e.sess != sess || e.cl != nil || e.gen != gen {
		s.mu.Unlock()
		return false
	}
	delete(s.sessions, clientID)
	subs := s.unsubscribeAllLocked(clientID, sess)
	s.mu.Unlock()
	s.finishSession(clientID, sess, subs)
	return true
}

// clientGone runs when a connection has ended: it detaches the session and
// decides about the will and the session's life.
func (s *Server) clientGone(c *client) {
	s.mu.Lock()
	delete(s.clients, c)
	var owner bool
	var gen uint64
	if e := s.sessions[c.id]; c.sess != nil && e != nil && e.cl == c {
		owner = true
		e.cl = nil
		gen = e.gen
	}
	s.mu.Unlock()
	if c.sess == nil {
		return // never got past CONNECT
	}
	c.sess.Detach(c)
	if c.connected {
		s.stats.ClientsConnected.Add(-1)
	}
	will := c.will
	if c.noWill {
		will = nil // normal DISCONNECT [MQTT-3.14.4-3]
	}
	if c.takenOver.Load() {
		// The session continues on the new connection, which counts as a
		// reconnection before the will delay elapsed [MQTT-3.1.3-9]; with no
		// delay, or when the new connection started a clean session (the old
		// one ended), the will is due now.
		if will != nil && (c.willDelay == 0 || c.takeoverEnds.Load()) {
			s.publishWill(will)
		}
		return
	}
	if !owner {
		return
	}
	expiry := c.sess.ExpiryInterval()
	if expiry == 0 {
		if will != nil {
			s.publishWill(will)
		}
		s.endSessionIf(c.id, gen, c.sess)
		return
	}
	now := time.Now()
	if will != nil {
		if c.willDelay == 0 {
			s.publishWill(will)
		} else {
			// Due after the will delay or when the session ends, whichever
			// comes first (5.0 §3.1.3.2.2).
			delay := c.willDelay
			if expiry != session.NeverExpire {
				delay = min(delay, expiry)
			}
			at := now.Add(time.Duration(delay) * time.Second)
			if err := c.sess.SetPendingWill(will, at); err != nil {
				c.log.Warn("saving pending will failed", "err", err)
			}
			s.scheduleWill(c.id, gen, c.sess, at)
		}
	}
	if err := c.sess.Save(); err != nil {
		c.log.Warn("saving session failed", "err", err)
	}
	if expiry != session.NeverExpire {
		s.scheduleExpiry(c.id, gen, c.sess, now.Add(time.Duration(expiry)*time.Second))
	}
}

// stillOffline reports whether clientID's entry is still sess, offline,
// at generation gen.
func (s *Server) stillOffline(clientID string, gen uint64, sess *session.Session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.sessions[clientID]
	return e != nil && e.sess == sess && e.cl == nil && e.gen == gen
}

// scheduleWill publishes the pending will of sess at at unless the client
// reconnected in the meantime.
func (s *Server) scheduleWill(clientID string, gen uint64, sess *session.Session, at time.Time) {
	s.sched.at(at, func() {
		if !s.stillOffline(clientID, gen, sess) {
			return
		}
		if w, _ := sess.TakePendingWill(); w != nil {
			s.publishWill(w)
		}
	})
}

// scheduleExpiry ends sess at at unless the client reconnected
// [MQTT-3.1.2-23]; a will still pending is published first.
func (s *Server) scheduleExpiry(clientID string, gen uint64, sess *session.Session, at time.Time) {
	s.sched.at(at, func() {
		if !s.stillOffline(clientID, gen, sess) {
			return
		}
		if w, _ := sess.TakePendingWill(); w != nil {
			s.publishWill(w)
		}
		if s.endSessionIf(clientID, gen, sess) {
			s.stats.SessionsExpired.Add(1)
		}
	})
}

// publishWill publishes a will message as an ordinary application message.
func (s *Server) publishWill(w *storage.Message) {
	m := *w
	m.Seq = 0
	m.Created = time.Now()
	s.stats.WillsPublished.Add(1)
	if _, err := s.publish(&m); err != nil {
		s.log.Warn("publishing will failed", "topic", m.Topic, "err", err)
	}
}

// rerouteShared hands deliveries of an ended session that came through its
// shared subscriptions to another member of the same group (5.0 §4.8.2
// allows this for QoS 0/1 and for QoS 2 messages not sent yet). A
// delivery matching several shared subscriptions of the session is
// re-routed once.
func (s *Server) rerouteShared(clientID string, subs []storage.Subscription, ds []*session.Delivery) {
	if len(ds) == 0 {
		return
	}
	type shared struct{ full, inner string }
	var groups []shared
	for _, sub := range subs {
		if _, inner, ok := topics.ParseShared(sub.Filter); ok {
			groups = append(groups, shared{sub.Filter, inner})
		}
	}
	if len(groups) == 0 {
		return
	}
	for _, d := range ds {
		if d.QoS == 2 && d.State != storage.PendingQueued {
			// A QoS 2 delivery already under way is never given to another
			// member [MQTT-4.8.2-5].
			s.stats.DroppedNoRoute.Add(1)
			continue
		}
		for _, g := range groups {
			if !topics.MatchFilter(g.inner, d.Msg.Topic) {
				continue
			}
			res := s.tree.Match(d.Msg.Topic)
			for i := range res.Groups {
				if res.Groups[i].Filter != g.full {
					continue
				}
				if e, ok := s.pickShared(&res.Groups[i], d.Msg, clientID); ok {
					nd := &session.Delivery{Pending: storage.Pending{
						Seq: d.Seq, QoS: min(d.Msg.QoS, e.Value.sub.QoS), Retain: d.Retain,
						SubscriptionIDs: subIDs(e.Value.sub),
					}, Msg: d.Msg}
					_ = s.deliver(e.Value.sess, nd) // counted
					s.stats.SharedRerouted.Add(1)
				}
			}
			break
		}
	}
}
