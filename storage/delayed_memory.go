package storage

import (
	"cmp"
	"slices"
	"time"
)

// memDelayed is one delayed message of the memory store.
type memDelayed struct {
	due time.Time
	m   *Message
}

// AddDelayed stores a copy of m due at due and returns its id.
func (s *Memory) AddDelayed(due time.Time, m *Message) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	s.did++
	s.delayed[s.did] = memDelayed{due: due, m: cloneMessage(m)}
	return s.did, nil
}

// RemoveDelayed deletes the entry id; unknown ids are ignored.
func (s *Memory) RemoveDelayed(id uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	delete(s.delayed, id)
	return nil
}

// Delayed calls fn with copies of the entries in due order (ties by id).
// The entries are copied under the lock and fn runs without it.
func (s *Memory) Delayed(fn func(id uint64, due time.Time, m *Message) bool) error {
	type entry struct {
		id  uint64
		due time.Time
		m   *Message
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	all := make([]entry, 0, len(s.delayed))
	for id, d := range s.delayed {
		all = append(all, entry{id, d.due, cloneMessage(d.m)})
	}
	s.mu.RUnlock()
	slices.SortFunc(all, func(a, b entry) int {
		if c := a.due.Compare(b.due); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	for _, e := range all {
		if !fn(e.id, e.due, e.m) {
			return nil
		}
	}
	return nil
}
