package storage

import (
	"cmp"
	"slices"
)

// AddDeadLetter stores a copy of e under e.Seq.
func (s *Memory) AddDeadLetter(e *DeadLetterEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.dlq == nil {
		s.dlq = make(map[uint64]DeadLetterEntry)
	}
	s.dlq[e.Seq] = *e
	return nil
}

// DeadLetters calls fn with copies of the entries with Seq >= from in Seq
// order. The entries are copied under the lock and fn runs without it.
func (s *Memory) DeadLetters(from uint64, fn func(*DeadLetterEntry) bool) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	all := make([]DeadLetterEntry, 0, len(s.dlq))
	for seq, e := range s.dlq {
		if seq >= from {
			all = append(all, e)
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(all, func(a, b DeadLetterEntry) int { return cmp.Compare(a.Seq, b.Seq) })
	for i := range all {
		if !fn(&all[i]) {
			return nil
		}
	}
	return nil
}

// RemoveDeadLetters deletes the entries seqs; unknown ones are ignored.
func (s *Memory) RemoveDeadLetters(seqs ...uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	for _, seq := range seqs {
		delete(s.dlq, seq)
	}
	return nil
}
