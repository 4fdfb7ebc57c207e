package mqtt

import (
	"errors"
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
// Retention by age or size (and dead-lettering what it removes) is not
// implemented.

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

// CollectLog deletes the log entries nothing needs any more (see above)
// and returns how many it deleted.
func (s *Server) CollectLog() (int, error) {
	s.gcRun.Lock() // one collection at a time
	defer s.gcRun.Unlock()

	// The bound: computed while no publish is between append and route.
	s.gcMu.Lock()
	bound := s.store.Head() + 1
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
	for _, low := range s.gc.holds {
		if l := low(); l < bound {
			bound = l
		}
	}
	from := s.gc.next
	kept := s.gc.kept
	s.gc.kept = nil
	s.gc.mu.Unlock()
	retained := s.retainedSeqs()

	var dead []uint64
	newKept := make(map[uint64]struct{})
	for seq := range kept {
		if seq >= bound {
			newKept[seq] = struct{}{}
			continue
		}
		if _, ok := retained[seq]; ok {
			newKept[seq] = struct{}{}
		} else {
			dead = append(dead, seq)
		}
	}
	next := from
	if from < bound {
		err := s.store.Scan(from, func(m *storage.Message) bool {
			if m.Seq >= bound {
				return false
			}
			if _, ok := retained[m.Seq]; ok {
				newKept[m.Seq] = struct{}{}
			} else {
				dead = append(dead, m.Seq)
			}
			return true
		})
		if err != nil {
			s.gc.mu.Lock()
			s.gc.kept = mergeKept(kept, newKept)
			s.gc.mu.Unlock()
			return 0, err
		}
		next = bound
	}
	deleted := 0
	var err error
	for len(dead) > 0 {
		n := min(len(dead), 1024)
		if err = s.store.DeleteMessages(dead[:n]...); err != nil {
			break
		}
		deleted += n
		dead = dead[n:]
	}
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
