package session

import (
	"time"

	"github.com/beaconmq/beacon/storage"
)

// Inbound QoS 2 (MQTT 5.0 §4.3.3, receiver side): the packet identifier of
// a QoS 2 PUBLISH is remembered from the PUBREC the server sends until the
// client's PUBREL, so a resent PUBLISH with the same identifier is
// acknowledged again but not delivered twice [MQTT-4.3.3-10]. The set also
// is the inbound send quota: the QoS > 0 PUBLISH packets the client has
// unacknowledged at any moment are these plus those the connection has
// accepted and not yet acknowledged (InboundCheckPending); a client that
// exceeds the server's Receive Maximum is disconnected with 0x93 (5.0
// §3.3.4, [MQTT-3.3.4-7] is the client's duty).

// InboundCheck decides what to do with a QoS > 0 PUBLISH carrying
// packetID: dup is true when a QoS 2 PUBLISH with that identifier is still
// awaiting PUBREL (answer PUBREC again, do not deliver). It returns
// ErrReceiveMaximum when accepting a new one would exceed the server's
// Receive Maximum.
func (s *Session) InboundCheck(packetID uint16, qos byte) (dup bool, err error) {
	return s.InboundCheckPending(packetID, qos, 0)
}

// InboundCheckPending is InboundCheck for a connection that has pending
// more QoS > 0 PUBLISH packets accepted but not acknowledged yet (they
// wait for the log append): they count against the Receive Maximum too.
func (s *Session) InboundCheckPending(packetID uint16, qos byte, pending int) (dup bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.inbound[packetID]; ok {
		if qos == 2 {
			return true, nil
		}
		// A QoS 1 PUBLISH reusing an identifier still awaiting PUBREL is a
		// new message; the QoS 2 state for it stays.
	}
	if len(s.inbound)+pending+1 > int(s.cfg.ReceiveMaximum) {
		return false, ErrReceiveMaximum
	}
	return false, nil
}

// InboundAdd records that a QoS 2 PUBLISH with packetID was accepted and
// PUBREC is being sent [MQTT-4.3.3-8]. Durable sessions persist it.
func (s *Session) InboundAdd(packetID uint16) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inbound[packetID] = struct{}{}
	if s.durableLocked() && !s.fenced {
		return s.storeErr(s.cfg.Store.AddInbound(s.id, packetID))
	}
	return nil
}

// InboundRelease handles PUBREL: it forgets packetID, after which a PUBLISH
// with it is a new message [MQTT-4.3.3-12]. It reports whether the
// identifier was known (5.0 answers an unknown one with PUBCOMP 0x92).
func (s *Session) InboundRelease(packetID uint16) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.inbound[packetID]; !ok {
		return false, nil
	}
	delete(s.inbound, packetID)
	if s.durableLocked() && !s.fenced {
		return true, s.storeErr(s.cfg.Store.RemoveInbound(s.id, packetID))
	}
	return true, nil
}

// Subscriptions (MQTT 5.0 §3.8.4): a SUBSCRIBE whose filter equals an
// existing subscription's replaces it [MQTT-3.8.4-3]; the subscriptions are
// part of the session state and saved with the session record.

// Subscribe adds or replaces sub and reports whether a subscription with the
// same filter existed (retain handling 1 needs to know [MQTT-3.3.1-10]).
// Durable sessions save the record.
func (s *Session) Subscribe(sub storage.Subscription) (existed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, existed = s.subs[sub.Filter]
	s.subs[sub.Filter] = sub
	if len(s.subs) > 1 {
		s.multi.Store(true)
	}
	return existed, s.saveLocked()
}

// Unsubscribe removes the subscription with exactly this filter
// [MQTT-3.10.4-1] and reports whether it existed.
func (s *Session) Unsubscribe(filter string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.subs[filter]; !ok {
		return false, nil
	}
	delete(s.subs, filter)
	return true, s.saveLocked()
}

// MultiSubscribed reports, without taking the session lock, whether the
// session has ever had more than one subscription. Routing uses it: a
// session that never had two subscriptions cannot match a topic twice, so
// its entry needs no merging. The flag never resets, so a match result
// computed before an UNSUBSCRIBE cannot fool it.
func (s *Session) MultiSubscribed() bool { return s.multi.Load() }

// Subscriptions returns a copy of the session's subscriptions.
func (s *Session) Subscriptions() []storage.Subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]storage.Subscription, 0, len(s.subs))
	for _, sub := range s.subs {
		out = append(out, sub)
	}
	return out
}

// Will messages (MQTT 5.0 §3.1.3.2): a will whose Will Delay Interval has
// not elapsed when the connection closes is kept in the session record
// with the moment it is due (the earlier of the delay and the session's
// end), so it survives a broker restart; a reconnection before then
// cancels it [MQTT-3.1.3-9].

// SetPendingWill records will as due at at and saves the record.
func (s *Session) SetPendingWill(will *storage.Message, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rec.Will = will
	s.rec.WillAt = at
	return s.saveLocked()
}

// TakePendingWill removes and returns the pending will and when it is due
// (nil if none). The caller publishes it or, on reconnection, drops it.
func (s *Session) TakePendingWill() (*storage.Message, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, at := s.rec.Will, s.rec.WillAt
	if w == nil {
		return nil, time.Time{}
	}
	s.rec.Will = nil
	s.rec.WillAt = time.Time{}
	_ = s.saveLocked()
	return w, at
}

// DisconnectedAt returns when the session lost its connection (zero while
// connected).
func (s *Session) DisconnectedAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rec.DisconnectedAt
}

// ExpiresAt returns when a disconnected session expires (zero when it is
// connected or never expires) [MQTT-3.1.2-23].
func (s *Session) ExpiresAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w != nil || s.rec.DisconnectedAt.IsZero() || s.rec.ExpiryInterval == NeverExpire {
		return time.Time{}
	}
	return s.rec.DisconnectedAt.Add(time.Duration(s.rec.ExpiryInterval) * time.Second)
}

// PeekWill returns the pending will and when it is due without removing it.
func (s *Session) PeekWill() (*storage.Message, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rec.Will, s.rec.WillAt
}
