package mqtt

import (
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/beaconmq/beacon/session"
	"github.com/beaconmq/beacon/storage"
)

// Log garbage collection. Every QoS 1/2 message goes on the store's log;
// an entry is needed while
//
//   - a session has a pending delivery pointing at it (durable sessions
//     restore their pending deliveries from the log after a restart),
//   - it is the current retained message of its topic (a retained delivery
//     to a durable session points at it),
//   - a registered log reader (a bridge cursor, see HoldLog) has not read
//     it yet, or
//   - it is being published right now (appended, not yet routed).
//
// CollectLog deletes every entry below the lowest sequence any of those
// still needs. The publish path holds gcMu for reading from before the
// append until routing is done, so a collection, which computes its bound
// under the write lock, never sees a message appended but not yet pending.
//
// Retention (Options.LogRetention, Options.LogRetentionBytes) bounds the
// log by age and size even when entries are still needed: each collection
// also removes the entries older than LogRetention and, oldest first, those
// beyond LogRetentionBytes of message bytes (topic, payload, properties).
// Nothing still needed goes silently (retention.go):
//
//   - a session's queued delivery of a removed entry is taken out of the
//     session and its message dead-lettered on $dlq/broker/{topic} with
//     dlq-reason "retention" and dlq-client;
//   - for a log reader (HoldLog) that had not read a removed entry yet, the
//     message is dead-lettered on $dlq/{reader name}/{topic}; the reader
//     then finds a gap where it was, and its dead letters say what it was.
//
// The current retained message of a topic is the topic's state, not
// backlog, and a stored dead letter is kept until it is replayed or purged:
// retention neither counts nor removes either (both are in the kept set
// CollectLog builds before it applies retention).

// logHolds are the registered log readers.
type logHolds struct {
	mu    sync.Mutex
	holds map[string]func() uint64
	// kept holds sequence numbers collection skipped because they
	// were retained; they are looked at again on every collection.
	kept map[uint64]struct{}
	// next is the lowest sequence number not examined yet.
	next uint64
}

// HoldLog registers a reader of the log under name: CollectLog never
// deletes an entry with a sequence number >= low(). Bridges register their
// cursor this way (low returns the cursor + 1). Register before Start or
// before enabling collection, so nothing the reader needs is collected
// first. Registering a name again replaces it; a nil low removes it.
func (s *Server) HoldLog(name string, low func() uint64) {
	s.gc.mu.Lock()
	defer s.gc.mu.Unlock()
	if s.gc.holds == nil {
		s.gc.holds = make(map[string]func() uint64)
	}
	if low == nil {
		delete(s.gc.holds, name)
		return
	}
	s.gc.holds[name] = low
}

// EnableLogGC makes the server run CollectLog every interval once started,
// overriding Options.LogGCInterval. Call it before Start. Log readers
// outside the broker (bridges) must register with HoldLog before Start.
func (s *Server) EnableLogGC(interval time.Duration) {
	s.gcInterval = interval
}

// gcDeleteBatch is how many log entries one delete of the collector removes.
const gcDeleteBatch = 1024

// CollectLog deletes the log entries nothing needs any more (see above)
// and returns how many it deleted.
func (s *Server) CollectLog() (int, error) {
	s.gcRun.Lock() // one collection at a time
	defer s.gcRun.Unlock()

	// The bound: computed while no publish is between append and route.
	s.gcMu.Lock()
	head := s.store.Head()
	bound := head + 1
	s.mu.Lock()
	sessions := make([]*session.Session, 0, len(s.sessions))
	for _, e := range s.sessions {
		sessions = append(sessions, e.sess)
	}
	s.mu.Unlock()
	for _, sess := range sessions {
		if low := sess.LowestPendingSeq(); low != 0 && low < bound {
			bound = low
		}
	}
	s.gcMu.Unlock()
	s.gc.mu.Lock()
	holds := make(map[string]uint64, len(s.gc.holds))
	for name, low := range s.gc.holds {
		l := low()
		holds[name] = l
		if l < bound {
			bound = l
		}
	}
	from := s.gc.next
	kept := s.gc.kept
	s.gc.kept = nil
	s.gc.mu.Unlock()
	retained := s.retainedSeqs()
	s.dlqKeep(retained) // dead letters in the index stay until replayed or purged (deadletter.go)

	// Retention: entries below cut go even when needed; what needs them
	// is dead-lettered first (enforceRetention). cut never passes head, so
	// every entry below it is routed: no pending entry for one can appear
	// after the sessions were cleared of them.
	limit := bound
	if s.opts.LogRetention > 0 || s.opts.LogRetentionBytes > 0 {
		cut, err := s.retentionCut(from, head, retained)
		if err != nil {
			s.gc.mu.Lock()
			s.gc.kept = kept
			s.gc.mu.Unlock()
			return 0, err
		}
		if cut > bound {
			s.enforceRetention(bound, cut, retained, sessions, holds)
			limit = cut
		}
	}
	needed := func(seq uint64) bool { return seq >= bound }

	var dead []uint64
	newKept := make(map[uint64]struct{})
	var forced uint64 // removed by retention although needed
	for seq := range kept {
		if seq >= limit {
			newKept[seq] = struct{}{}
			continue
		}
		if _, ok := retained[seq]; ok {
			newKept[seq] = struct{}{}
		} else {
			dead = append(dead, seq)
			if needed(seq) {
				forced++
			}
		}
	}
	// Dead entries are deleted a batch at a time as the scan finds them,
	// so collecting after a large backlog drained holds no list of a
	// million sequence numbers.
	deleted := 0
	var err error
	deleteDead := func(all bool) {
		for err == nil && (len(dead) >= gcDeleteBatch || all && len(dead) > 0) {
			n := min(len(dead), gcDeleteBatch)
			if err = s.store.DeleteMessages(dead[:n]...); err != nil {
				return
			}
			deleted += n
			dead = append(dead[:0], dead[n:]...)
		}
	}
	next := from
	if from < limit {
		scanErr := s.store.ScanSeqs(from, func(seq uint64) bool {
			if seq >= limit {
				return false
			}
			if _, ok := retained[seq]; ok {
				newKept[seq] = struct{}{}
			} else {
				dead = append(dead, seq)
				if needed(seq) {
					forced++
				}
				if len(dead) >= gcDeleteBatch {
					deleteDead(false)
				}
			}
			return err == nil // a failed delete ends the scan; next stays
		})
		if scanErr != nil {
			s.gc.mu.Lock()
			s.gc.kept = mergeKept(kept, newKept)
			s.gc.mu.Unlock()
			s.stats.LogCollected.Add(uint64(deleted))
			return deleted, scanErr
		}
		next = limit
	}
	deleteDead(true)
	s.gc.mu.Lock()
	for _, seq := range dead { // not deleted because of an error: retry later
		newKept[seq] = struct{}{}
	}
	s.gc.kept = newKept
	if err == nil {
		s.gc.next = next
	}
	s.gc.mu.Unlock()
	s.stats.LogCollected.Add(uint64(deleted))
	if err == nil {
		s.stats.RetentionRemoved.Add(forced)
	}
	return deleted, err
}

func mergeKept(a, b map[uint64]struct{}) map[uint64]struct{} {
	for k := range a {
		b[k] = struct{}{}
	}
	return b
}

// retainedSeqs returns the log sequence numbers of the current retained
// messages.
func (s *Server) retainedSeqs() map[uint64]struct{} {
	s.retMu.Lock()
	defer s.retMu.Unlock()
	out := make(map[uint64]struct{}, len(s.retSeq))
	for _, seq := range s.retSeq {
		out[seq] = struct{}{}
	}
	return out
}

// noteRetained records (seq != 0) or forgets (seq == 0) the log sequence of
// topic's retained message.
func (s *Server) noteRetained(topic string, seq uint64) {
	s.retMu.Lock()
	defer s.retMu.Unlock()
	if seq == 0 {
		delete(s.retSeq, topic)
		return
	}
	s.retSeq[topic] = seq
}

// gcLoop runs CollectLog every gcInterval until the server quits.
func (s *Server) gcLoop() {
	t := time.NewTicker(s.gcInterval)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			n, err := s.CollectLog()
			if err != nil && !errors.Is(err, storage.ErrClosed) {
				s.log.Warn("log collection failed", "err", err)
			} else if n > 0 {
				s.log.Debug("log collected", "deleted", n)
			}
		}
	}
}

// retentionCut returns the sequence number below which retention removes
// entries: those created before now - LogRetention and, oldest first, those
// beyond LogRetentionBytes of message bytes. Entries in retained (current
// retained messages, stored dead letters) neither count nor go. The result is at most head + 1 (0: nothing to remove). With only
// an age limit the scan stops at the first entry young enough; a size limit
// reads the whole log from from, once to add it up and, when it is over
// the limit, again up to the cut.
func (s *Server) retentionCut(from, head uint64, retained map[uint64]struct{}) (uint64, error) {
	var cut uint64
	var total int64
	ageLimit, sizeLimit := s.opts.LogRetention, s.opts.LogRetentionBytes
	cutoff := time.Now().Add(-ageLimit)
	young := ageLimit <= 0
	err := s.store.Scan(from, func(m *storage.Message) bool {
		if m.Seq > head {
			return false
		}
		if _, ok := retained[m.Seq]; ok {
			return true
		}
		if !young {
			if m.Created.Before(cutoff) {
				cut = m.Seq + 1
			} else {
				young = true
			}
		}
		if sizeLimit <= 0 {
			return !young
		}
		total += logEntrySize(m)
		return true
	})
	if err != nil || sizeLimit <= 0 || total <= sizeLimit {
		return cut, err
	}
	err = s.store.Scan(from, func(m *storage.Message) bool {
		if m.Seq > head || total <= sizeLimit {
			return false
		}
		if _, ok := retained[m.Seq]; !ok {
			total -= logEntrySize(m)
			cut = max(cut, m.Seq+1)
		}
		return true
	})
	return cut, err
}

// logEntrySize is what one message counts against LogRetentionBytes: its
// topic, payload and properties, not the store's overhead.
func logEntrySize(m *storage.Message) int64 {
	p := &m.Properties
	n := len(m.Topic) + len(m.Payload) + len(p.ContentType) + len(p.ResponseTopic) + len(p.CorrelationData)
	for _, u := range p.User {
		n += len(u.Key) + len(u.Value)
	}
	return int64(n)
}

// enforceRetention dead-letters what still needs the entries in
// [bound, cut) that retention is about to remove (retained messages stay):
// each session's queued deliveries of them, taken out of the session, on
// $dlq/broker/{topic}; and for each log reader whose position is at or
// below such an entry, the message on $dlq/{reader}/{topic}. Dead letters
// are published synchronously, so a large removal is not cut short by the
// dead-letter queue's bound; one that fails is counted in
// DeadLetterDropped.
func (s *Server) enforceRetention(bound, cut uint64, retained map[uint64]struct{}, sessions []*session.Session, holds map[string]uint64) {
	gone := func(seq uint64) bool {
		_, ok := retained[seq]
		return seq >= bound && seq < cut && !ok
	}
	now := time.Now()
	for _, sess := range sessions {
		for _, d := range sess.DropQueued(cut, gone) {
			if d.Msg == nil {
				continue // already gone from the log: counted by the session as missing
			}
			if s.retentionDeadLetter(d.Msg, DeadLetter{Source: dlqSource, Reason: "retention", Client: sess.ClientID(), FirstFailure: now,
				LastError: "removed from the log by retention before it was delivered"}) {
				s.stats.RetentionDeadLettered.Add(1)
			}
		}
	}
	for name, low := range holds {
		if low >= cut {
			continue
		}
		err := s.store.Scan(max(low, bound), func(m *storage.Message) bool {
			if m.Seq >= cut {
				return false
			}
			if gone(m.Seq) && s.retentionDeadLetter(m, DeadLetter{Source: name, Reason: "retention", FirstFailure: now,
				LastError: "removed from the log by retention before this reader read it"}) {
				s.stats.RetentionReaderGaps.Add(1)
			}
			return true
		})
		if err != nil {
			s.log.Warn("retention: reading the log for a reader's dead letters failed", "reader", name, "err", err)
		}
	}
}

// retentionDeadLetter publishes one dead letter of retention and reports
// whether it did. Dead letters and $SYS messages are not dead-lettered
// again (their removal counts in RetentionRemoved only); a failed publish
// counts in DeadLetterDropped.
func (s *Server) retentionDeadLetter(m *storage.Message, dl DeadLetter) bool {
	if strings.HasPrefix(m.Topic, dlqPrefix) || strings.HasPrefix(m.Topic, "$SYS/") {
		return false
	}
	if err := s.DeadLetter(m, dl); err != nil {
		s.stats.DeadLetterDropped.Add(1)
		s.log.Warn("retention: publishing a dead letter failed", "topic", m.Topic, "source", dl.Source, "err", err)
		return false
	}
	return true
}
