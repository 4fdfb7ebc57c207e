package session

import (
	"slices"

	"github.com/beaconmq/beacon/storage"
)

// DropQueued takes out of the session every queued delivery (in memory or
// spilled to the store) whose log sequence number is below below and for
// which gone reports true, removes their pending entries, and returns them
// with their messages loaded (a message already gone from the log comes
// back with Msg nil). The broker's log retention calls it for the entries
// it is about to delete while still needed, and dead-letters what it gets,
// so that no delivery is lost silently and none is both dead-lettered and
// delivered.
//
// Deliveries in flight (PUBLISH sent, or PUBREL sent for QoS 2) are left
// alone: the client has the message already, and the session keeps the
// message in memory to resend it on reconnection [MQTT-4.4.0-1].
func (s *Session) DropQueued(below uint64, gone func(seq uint64) bool) []*Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Delivery
	var rm []uint64
	keep := s.queue[:s.qhead]
	for _, d := range s.queue[s.qhead:] {
		if d.Seq != 0 && d.Seq < below && d.State == storage.PendingQueued && gone(d.Seq) {
			delete(s.bySeq, d.Seq)
			if d.Msg == nil {
				if m, err := s.cfg.Store.Get(d.Seq); err == nil {
					d.Msg = m
				}
			}
			s.unchargeLocked(d) // queued bytes (queue.go)
			if d.stored {
				rm = append(rm, d.Seq)
			}
			out = append(out, d)
			continue
		}
		keep = append(keep, d)
	}
	clear(s.queue[len(keep):])
	s.queue = keep

	if s.spill.on && s.durableLocked() && !s.fenced && s.spill.from < below {
		// Completed deliveries must not be taken for spilled ones, and an
		// entry being written must be in the store before it is looked for.
		s.flushRemovalsLocked()
		s.waitSpillWritesLocked()
		var spilled []storage.Pending
		_ = s.storeErr(s.cfg.Store.ScanPending(s.id, s.spill.from, func(p storage.Pending) bool {
			if p.Seq >= below {
				return false
			}
			if _, inMemory := s.bySeq[p.Seq]; !inMemory && gone(p.Seq) {
				spilled = append(spilled, p)
			}
			return true
		}))
		for _, p := range spilled {
			d := &Delivery{Pending: p, stored: true}
			d.State, d.PacketID = storage.PendingQueued, 0
			if m, err := s.cfg.Store.Get(p.Seq); err == nil {
				d.Msg = m
			}
			s.unchargeLocked(d)
			rm = append(rm, p.Seq)
			out = append(out, d)
		}
		s.spill.count = max(s.spill.count-len(spilled), 0)
		if s.spill.count == 0 {
			// The next refill finds out whether anything is left.
			s.spill.count = 1
		}
	}
	if len(rm) > 0 && s.durableLocked() && !s.fenced {
		slices.Sort(rm)
		_ = s.storeErr(s.cfg.Store.RemovePending(s.id, rm...))
	}
	return out
}
