package storage

import (
	"context"
	"slices"
	"sort"
	"strings"
	"sync"
)

// scanChunk is how many records a scan copies under the read lock before
// releasing it to call the caller's function, so a callback may call back
// into the store (for example Append or RemovePending) without deadlocking.
const scanChunk = 256

// Memory is the in-memory Store: the twin of the badger store for unit tests
// and `--storage memory`. It keeps nothing across a restart. It is safe for
// concurrent use; one RWMutex (mu) guards every field, and no callback runs
// while it is held.
//
// Everything stored is copied on the way in and on the way out (see
// clone.go), so callers may reuse or mutate their buffers freely.
type Memory struct {
	mu       sync.RWMutex
	closed   bool
	head     uint64     // last sequence number assigned; survives deletion
	log      []memEntry // ascending Seq; deleted entries have m == nil
	dead     int        // number of deleted entries still in log
	rev      uint64     // last session revision handed out (store-wide)
	sessions map[string]*Session
	pending  map[string][]Pending // per client, ascending Seq
	inbound  map[string]map[uint16]struct{}
	retained map[string]*Message
	cursors  map[string]uint64
	delayed  map[uint64]memDelayed // delayed_memory.go
	did      uint64                // last delayed id handed out

	dlq map[uint64]DeadLetterEntry // dead-letter index (deadletter_memory.go), made on first use
}

type memEntry struct {
	seq uint64
	m   *Message
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{
		sessions: make(map[string]*Session),
		pending:  make(map[string][]Pending),
		inbound:  make(map[string]map[uint16]struct{}),
		retained: make(map[string]*Message),
		cursors:  make(map[string]uint64),
		delayed:  make(map[uint64]memDelayed),
	}
}

// Close marks the store closed; every later call returns ErrClosed. Closing
// twice is harmless.
func (s *Memory) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// Append assigns each message the next sequence number, in argument order,
// and keeps it: a message is immutable once appended (Log.Append), so no
// copy is made. The deep copy this saves was 14 % of the broker's CPU in a
// fan-in of 1 KiB messages (docs/performance.md). Readers still get
// copies. Memory has no durability to wait for.
func (s *Memory) Append(ctx context.Context, msgs ...*Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	for _, m := range msgs {
		s.head++
		m.Seq = s.head
		s.log = append(s.log, memEntry{seq: m.Seq, m: m})
	}
	return nil
}

// indexLocked is the position of the first entry with seq >= from.
func (s *Memory) indexLocked(from uint64) int {
	return sort.Search(len(s.log), func(i int) bool { return s.log[i].seq >= from })
}

// Get returns a copy of message seq, or ErrNotFound.
func (s *Memory) Get(seq uint64) (*Message, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	i := s.indexLocked(seq)
	if i == len(s.log) || s.log[i].seq != seq || s.log[i].m == nil {
		return nil, ErrNotFound
	}
	return cloneMessage(s.log[i].m), nil
}

// Scan calls fn with copies of the messages from seq onwards, in order.
func (s *Memory) Scan(from uint64, fn func(*Message) bool) error {
	buf := make([]*Message, 0, scanChunk)
	for {
		buf = buf[:0]
		s.mu.RLock()
		if s.closed {
			s.mu.RUnlock()
			return ErrClosed
		}
		for i := s.indexLocked(from); i < len(s.log) && len(buf) < scanChunk; i++ {
			if e := s.log[i]; e.m != nil {
				buf = append(buf, cloneMessage(e.m))
			}
		}
		s.mu.RUnlock()
		if len(buf) == 0 {
			return nil
		}
		for _, m := range buf {
			if !fn(m) {
				return nil
			}
		}
		from = buf[len(buf)-1].Seq + 1
	}
}

// ScanSeqs calls fn with the sequence numbers from seq onwards, in order.
func (s *Memory) ScanSeqs(from uint64, fn func(seq uint64) bool) error {
	buf := make([]uint64, 0, scanChunk)
	for {
		buf = buf[:0]
		s.mu.RLock()
		if s.closed {
			s.mu.RUnlock()
			return ErrClosed
		}
		for i := s.indexLocked(from); i < len(s.log) && len(buf) < scanChunk; i++ {
			if e := s.log[i]; e.m != nil {
				buf = append(buf, e.seq)
			}
		}
		s.mu.RUnlock()
		if len(buf) == 0 {
			return nil
		}
		for _, seq := range buf {
			if !fn(seq) {
				return nil
			}
		}
		from = buf[len(buf)-1] + 1
	}
}

// Head returns the last sequence number assigned, even if that message has
// since been deleted, so sequence numbers are never reused.
func (s *Memory) Head() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.head
}

// DeleteMessages removes the given log entries; unknown ones are ignored.
func (s *Memory) DeleteMessages(seqs ...uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	for _, seq := range seqs {
		i := s.indexLocked(seq)
		if i < len(s.log) && s.log[i].seq == seq && s.log[i].m != nil {
			s.log[i].m = nil
			s.dead++
		}
	}
	// Compact once at least half the slice is holes: amortised O(1) per delete.
	if s.dead > 0 && s.dead*2 >= len(s.log) {
		s.log = slices.DeleteFunc(s.log, func(e memEntry) bool { return e.m == nil })
		s.dead = 0
	}
	return nil
}

// LoadSession returns a copy of the session record or ErrNotFound.
func (s *Memory) LoadSession(clientID string) (*Session, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	sess, ok := s.sessions[clientID]
	if !ok {
		return nil, ErrNotFound
	}
	return cloneSession(sess), nil
}

// SaveSession is the compare-and-swap write that fences session takeover:
// it succeeds only if sess.Revision equals the stored revision (0 when no
// record exists). Revisions come from one store-wide counter, so a record
// deleted and created again never repeats a revision a stale owner holds.
func (s *Memory) SaveSession(sess *Session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	var stored uint64
	if cur, ok := s.sessions[sess.ClientID]; ok {
		stored = cur.Revision
	}
	if sess.Revision != stored {
		return ErrRevisionMismatch
	}
	s.rev++
	c := cloneSession(sess)
	c.Revision = s.rev
	s.sessions[sess.ClientID] = c
	sess.Revision = s.rev
	return nil
}

// DeleteSession removes the session record with its pending and inbound
// entries. With rev != 0 the stored revision must equal rev (a missing
// record is then a mismatch too); rev 0 deletes unconditionally.
func (s *Memory) DeleteSession(clientID string, rev uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if rev != 0 {
		cur, ok := s.sessions[clientID]
		if !ok || cur.Revision != rev {
			return ErrRevisionMismatch
		}
	}
	delete(s.sessions, clientID)
	delete(s.pending, clientID)
	delete(s.inbound, clientID)
	return nil
}

// Sessions calls fn with a copy of every session, in client ID order.
func (s *Memory) Sessions(fn func(*Session) bool) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	all := make([]*Session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		all = append(all, cloneSession(sess))
	}
	s.mu.RUnlock()
	slices.SortFunc(all, func(a, b *Session) int {
		return strings.Compare(a.ClientID, b.ClientID)
	})
	for _, sess := range all {
		if !fn(sess) {
			break
		}
	}
	return nil
}

func pendingIndex(q []Pending, seq uint64) int {
	return sort.Search(len(q), func(i int) bool { return q[i].Seq >= seq })
}

// Enqueue adds entries to clientID's queue in Seq order; an entry with a
// Seq already queued replaces it.
func (s *Memory) Enqueue(clientID string, entries ...Pending) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	q := s.pending[clientID]
	for _, p := range entries {
		p = clonePending(p)
		if n := len(q); n == 0 || q[n-1].Seq < p.Seq {
			q = append(q, p) // the usual case: newer than everything queued
			continue
		}
		i := pendingIndex(q, p.Seq)
		if i < len(q) && q[i].Seq == p.Seq {
			q[i] = p
			continue
		}
		q = slices.Insert(q, i, p)
	}
	s.pending[clientID] = q
	return nil
}

// UpdatePending replaces the entry with p.Seq, or returns ErrNotFound.
func (s *Memory) UpdatePending(clientID string, p Pending) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	q := s.pending[clientID]
	i := pendingIndex(q, p.Seq)
	if i == len(q) || q[i].Seq != p.Seq {
		return ErrNotFound
	}
	q[i] = clonePending(p)
	return nil
}

// RemovePending deletes the entries with these sequence numbers; unknown
// ones are ignored.
func (s *Memory) RemovePending(clientID string, seqs ...uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	q := s.pending[clientID]
	for _, seq := range seqs {
		i := pendingIndex(q, seq)
		switch {
		case i == len(q) || q[i].Seq != seq:
		case i == 0:
			// A draining queue removes its oldest entry: O(1), not a copy
			// of the whole queue (a 100k backlog drained at 4.7k msg/s).
			q[0] = Pending{}
			q = q[1:]
		default:
			q = slices.Delete(q, i, i+1)
		}
	}
	if len(q) == 0 {
		delete(s.pending, clientID)
	} else {
		s.pending[clientID] = q
	}
	return nil
}

// ScanPending calls fn with clientID's entries with Seq >= from, in order.
func (s *Memory) ScanPending(clientID string, from uint64, fn func(Pending) bool) error {
	buf := make([]Pending, 0, scanChunk)
	for {
		buf = buf[:0]
		s.mu.RLock()
		if s.closed {
			s.mu.RUnlock()
			return ErrClosed
		}
		q := s.pending[clientID]
		for i := pendingIndex(q, from); i < len(q) && len(buf) < scanChunk; i++ {
			buf = append(buf, clonePending(q[i]))
		}
		s.mu.RUnlock()
		if len(buf) == 0 {
			return nil
		}
		for _, p := range buf {
			if !fn(p) {
				return nil
			}
		}
		from = buf[len(buf)-1].Seq + 1
	}
}

// CountPending returns how many entries clientID has queued.
func (s *Memory) CountPending(clientID string) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, ErrClosed
	}
	return len(s.pending[clientID]), nil
}

// AddInbound records that a QoS 2 PUBLISH with packetID was received and
// answered with PUBREC; adding it again is harmless.
func (s *Memory) AddInbound(clientID string, packetID uint16) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	set := s.inbound[clientID]
	if set == nil {
		set = make(map[uint16]struct{})
		s.inbound[clientID] = set
	}
	set[packetID] = struct{}{}
	return nil
}

// RemoveInbound forgets packetID (PUBREL received); unknown ids are ignored.
func (s *Memory) RemoveInbound(clientID string, packetID uint16) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if set := s.inbound[clientID]; set != nil {
		delete(set, packetID)
		if len(set) == 0 {
			delete(s.inbound, clientID)
		}
	}
	return nil
}

// Inbound returns clientID's unreleased QoS 2 packet identifiers, ascending.
func (s *Memory) Inbound(clientID string) ([]uint16, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	set := s.inbound[clientID]
	ids := make([]uint16, 0, len(set))
	for id := range set {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// SetRetained stores a copy of m as the retained message of m.Topic,
// replacing any earlier one.
func (s *Memory) SetRetained(m *Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.retained[m.Topic] = cloneMessage(m)
	return nil
}

// DeleteRetained removes the retained message of topic, if any.
func (s *Memory) DeleteRetained(topic string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	delete(s.retained, topic)
	return nil
}

// Retained calls fn with a copy of every retained message, in topic order.
func (s *Memory) Retained(fn func(*Message) bool) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	all := make([]*Message, 0, len(s.retained))
	for _, m := range s.retained {
		all = append(all, cloneMessage(m))
	}
	s.mu.RUnlock()
	slices.SortFunc(all, func(a, b *Message) int {
		return strings.Compare(a.Topic, b.Topic)
	})
	for _, m := range all {
		if !fn(m) {
			break
		}
	}
	return nil
}

// Cursor returns the stored position of name, 0 when never set.
func (s *Memory) Cursor(name string) (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, ErrClosed
	}
	return s.cursors[name], nil
}

// SetCursor stores the position of name.
func (s *Memory) SetCursor(name string, seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.cursors[name] = seq
	return nil
}
