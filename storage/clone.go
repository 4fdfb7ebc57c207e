package storage

import "github.com/beaconmq/beacon/packets"

// Copy-on-store: a store never keeps a slice or pointer its caller still
// holds, and never hands out one it keeps, so a caller that reuses a buffer
// (a decoder's payload, a session's subscription list) cannot change what
// was stored behind the store's back.

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}

func cloneUint32s(s []uint32) []uint32 {
	if s == nil {
		return nil
	}
	return append(make([]uint32, 0, len(s)), s...)
}

// cloneProperties deep-copies p; the struct copy carries the unexported
// "present" marks with it.
func cloneProperties(p packets.Properties) packets.Properties {
	c := p
	c.CorrelationData = cloneBytes(p.CorrelationData)
	c.AuthData = cloneBytes(p.AuthData)
	c.SubscriptionIDs = cloneUint32s(p.SubscriptionIDs)
	if p.User != nil {
		c.User = append(make([]packets.UserProperty, 0, len(p.User)), p.User...)
	}
	return c
}

// cloneMessage returns a deep copy of m (nil for nil).
func cloneMessage(m *Message) *Message {
	if m == nil {
		return nil
	}
	c := *m
	c.Payload = cloneBytes(m.Payload)
	c.Properties = cloneProperties(m.Properties)
	return &c
}

// cloneSession returns a deep copy of s (nil for nil).
func cloneSession(s *Session) *Session {
	if s == nil {
		return nil
	}
	c := *s
	if s.Subscriptions != nil {
		c.Subscriptions = append(make([]Subscription, 0, len(s.Subscriptions)), s.Subscriptions...)
	}
	c.Will = cloneMessage(s.Will)
	return &c
}

// clonePending returns p with its own SubscriptionIDs slice.
func clonePending(p Pending) Pending {
	p.SubscriptionIDs = cloneUint32s(p.SubscriptionIDs)
	return p
}
