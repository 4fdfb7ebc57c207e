package session

import (
	"math"
	"sync"
	"time"

	"github.com/beaconmq/beacon/storage"
)

// Paging of a durable session's queue. The rule: memory stays bounded
// however large an offline backlog grows. A durable session keeps at most
// MaxInMemory queued deliveries in memory (plus its inflight window); every
// delivery beyond that exists only as its pending entry in the store, and
// the session is "spilled". While spilled, every new delivery goes to the
// store too, never to memory, and when the in-memory queue has run down to
// half the bound it is refilled from the store in log sequence order
// (ScanPending from the lowest sequence that may still be spilled), with
// the messages read in one log scan when they are close together. Spilled
// entries are thus delivered after everything queued before them and in
// log order among themselves, and a publisher's messages, which reach the
// log in the order they were published, keep that order [MQTT-4.6.0-5]
// [MQTT-4.6.0-6]. The spill ends when a refill finds nothing more in the
// store.
//
// Removal of completed deliveries is batched: PUBACK and PUBCOMP only note
// the sequence number, and the pending entries are removed together once
// removeEvery has passed since the first of the batch completed (or
// removeBatch have gathered), when the session has nothing left in flight
// or queued, before a refill scans entries the batch holds, and on detach.
// A batch removed for its age or size, or a large one when the session
// goes idle, is removed in the background (startRemovalsLocked), so a
// drain is not slowed by it. A removal lost in
// a crash costs no message and no duplicate QoS 2 delivery:
//
//   - QoS 1: the delivery is made again after the restart, a duplicate QoS 1
//     allows (the receiver treats a PUBLISH after its PUBACK as a new
//     message [MQTT-4.3.2-5]; delivery is "at least once").
//   - QoS 2: a delivery completes normally by PUBCOMP from the released
//     state, which Pubrec stores synchronously before PUBREL is sent. A
//     lost removal therefore restores it as released, and the server only
//     sends PUBREL again (never the PUBLISH [MQTT-4.3.3-6]); the client
//     answers with PUBCOMP. A QoS 2 delivery completed from the sent state
//     (a PUBREC with an error code) is removed synchronously, since its
//     stored entry would otherwise resend the PUBLISH.
//
// The entry of a completed delivery may thus outlive it for up to about
// removeEvery (a crash makes those deliveries again, at QoS 1); the
// refill flushes the batch first when it could page such an entry in again,
// Push flushes it before storing a sequence number the batch holds (a
// retained message delivered again), and LowestPendingSeq counts the batch
// so the log collector keeps the messages those entries point at.

// DefaultMaxInMemory is the default of Config.MaxInMemory.
const DefaultMaxInMemory = 1024

// removeEvery and removeBatch bound a batch of removals by age and size.
// Removing pending entries is a quarter of the broker's work while a
// backlog drains (a badger delete each, and with durability sync an fsync
// per store call): with batches of 512 removed in the acknowledgement, a
// 100,000-message drain with sync ran at 190k msg/s; removed a second
// later in the background, at 300–320k (docs/performance.md). The
// batches of all sessions together hold about a second of the broker's
// completed deliveries, 8 bytes each (and up to 255 more per session: the
// age is looked at every 256 completions).
//
// idleRemoveInBackground: a session that goes idle removes its batch at
// once, in the background when it holds this many entries or more; the
// 100,000 of a drain took 220 ms, during which the session's lock would
// be held, and publishers routing to it would wait.
const (
	removeEvery            = time.Second
	removeBatch            = 1 << 18
	idleRemoveInBackground = 4096
)

// spillState is the part of a durable session's queue that lives only in
// the store, and the completed deliveries whose pending entries are still
// to be removed. Guarded by Session.mu.
type spillState struct {
	on    bool   // pending entries exist in the store that are not in memory
	count int    // how many (for MaxQueued and Counts)
	from  uint64 // no spilled entry has a lower sequence number

	rm      []uint64  // completed deliveries whose entries are not removed yet
	rmMax   uint64    // the highest sequence number in rm
	rmSince time.Time // when the first of rm completed

	// removing counts the batches of rm being removed without the session
	// lock (startRemovalsLocked); removingLow and removingHigh bound the
	// sequence numbers they hold (0 when none is under way).
	removing                  int
	removingLow, removingHigh uint64

	// writing holds the sequence numbers of spilled entries being written
	// right now (without the session lock, see spillLocked); done is
	// signalled each time one finishes.
	writing map[uint64]int
	done    *sync.Cond
}

// endSpillLocked forgets the spill (nothing is left in the store that is
// not in memory, or the caller removes it); removals still to be written
// and entries being written are kept track of.
func (s *Session) endSpillLocked() {
	s.spill.on, s.spill.count, s.spill.from = false, 0, 0
}

// waitSpillWritesLocked waits until no spilled entry is being written and
// no batch of removals is under way, so that the caller can delete or take
// over the store's entries.
func (s *Session) waitSpillWritesLocked() {
	for len(s.spill.writing) > 0 {
		s.spill.done.Wait()
	}
	s.waitRemovalsLocked()
}

// memLimitLocked is the number of queued deliveries kept in memory.
func (s *Session) memLimitLocked() int {
	switch {
	case !s.durableLocked() || s.cfg.MaxInMemory < 0:
		return math.MaxInt
	case s.cfg.MaxInMemory == 0:
		return DefaultMaxInMemory
	}
	return s.cfg.MaxInMemory
}

// queuedLocked is the number of queued deliveries, in memory and spilled.
func (s *Session) queuedLocked() int {
	return len(s.queue) - s.qhead + s.spill.count
}

// spillingLocked reports whether a new delivery must go to the store only:
// the session is spilled already (order: it queues behind the spilled
// ones), or its in-memory queue is at the bound.
func (s *Session) spillingLocked() bool {
	return s.durableLocked() && (s.spill.on || len(s.queue)-s.qhead >= s.memLimitLocked())
}

// spillLocked stores d's pending entry without keeping d in memory. The
// store write happens without the session lock: many publishers routing to
// one session (the backlog case) then wait for the store together, and its
// group commit covers them all with one fsync, instead of one fsync each
// in turn. The entry counts as spilled from the start; a refill does not
// move past an entry still being written (pageInLocked), and deleting the
// session's entries waits for the writes (waitSpillWritesLocked). The
// order of one publisher's messages is unaffected: its next message is
// routed only after this call returned. It returns with s.mu held.
func (s *Session) spillLocked(d *Delivery) error {
	seq := d.Seq
	if !s.spill.on || seq < s.spill.from {
		// A concurrent publisher's message may be routed after one with a
		// higher sequence number: the next refill starts from the lowest.
		s.spill.from = seq
	}
	s.spill.on = true
	s.spill.count++
	if s.spill.writing == nil {
		s.spill.writing = make(map[uint64]int)
	}
	s.spillCondLocked()
	s.spill.writing[seq]++
	p := d.Pending
	s.mu.Unlock()
	err := s.cfg.Store.Enqueue(s.id, p)
	s.mu.Lock()
	if s.spill.writing[seq]--; s.spill.writing[seq] <= 0 {
		delete(s.spill.writing, seq)
	}
	s.spill.done.Broadcast()
	if err != nil {
		if s.spill.count > 0 {
			s.spill.count--
		}
		return s.storeErr(err)
	}
	return nil
}

// writingLowLocked returns the lowest sequence number being written to
// the store by spillLocked, and whether there is one.
func (s *Session) writingLowLocked() (uint64, bool) {
	var low uint64
	found := false
	for seq := range s.spill.writing {
		if !found || seq < low {
			low, found = seq, true
		}
	}
	return low, found
}

// refillLocked pages spilled deliveries into the in-memory queue once it
// has run down to half the bound.
func (s *Session) refillLocked() {
	if !s.spill.on {
		return
	}
	limit := s.memLimitLocked()
	have := len(s.queue) - s.qhead
	if have > limit/2 {
		return
	}
	s.pageInLocked(limit - have)
}

// pageInLocked moves up to want spilled entries, in sequence order, into
// the in-memory queue with their messages loaded, and ends the spill when
// the store holds no more.
func (s *Session) pageInLocked(want int) {
	if s.fenced {
		return
	}
	// Completed deliveries must not come back from the store: removals the
	// scan could see are made first. Those of a drain are below where it
	// reads (they were paged in before), so it does not wait for them.
	if s.spill.rmMax >= s.spill.from || s.spill.removingHigh >= s.spill.from {
		s.flushRemovalsLocked()
	}
	var ps []storage.Pending
	next, more := s.spill.from, false
	// An entry still being written may be committed after entries with
	// higher sequence numbers: stop before it, it is paged in next time.
	wlow, writing := s.writingLowLocked()
	err := s.cfg.Store.ScanPending(s.id, s.spill.from, func(p storage.Pending) bool {
		if len(ps) == want || writing && p.Seq >= wlow {
			more = true
			return false
		}
		next = p.Seq + 1
		if _, ok := s.bySeq[p.Seq]; !ok { // not queued or in flight already
			ps = append(ps, p)
		}
		return true
	})
	if err != nil {
		_ = s.storeErr(err)
		return
	}
	ds := make([]*Delivery, len(ps))
	for i, p := range ps {
		d := &Delivery{Pending: p, stored: true}
		// A spilled entry was never sent: spilled deliveries enter the
		// inflight window only from memory.
		d.State, d.PacketID = storage.PendingQueued, 0
		ds[i] = d
		s.bySeq[d.Seq] = d
		s.queue = append(s.queue, d)
	}
	s.loadBatchLocked(ds)
	if writing {
		more = true
		next = min(next, wlow)
	}
	s.spill.from = next
	if more {
		s.spill.count = max(s.spill.count-len(ps), 1)
	} else {
		s.endSpillLocked()
	}
}

// unspillAllLocked pages every spilled delivery into memory (a session
// ceasing to be durable keeps its whole queue in memory).
func (s *Session) unspillAllLocked() {
	s.waitSpillWritesLocked()
	for s.spill.on && !s.fenced {
		before := s.spill.from
		s.pageInLocked(4096)
		if s.spill.on && s.spill.from == before {
			return // a failing store: give up rather than spin
		}
	}
}

// loadBatchLocked reads the messages of ds (in sequence order, Msg nil).
// When their sequence numbers are close together one log scan reads them
// all, much cheaper than a lookup each; the others are left for
// loadLocked when they are about to be sent.
func (s *Session) loadBatchLocked(ds []*Delivery) {
	if len(ds) == 0 {
		return
	}
	first, last := ds[0].Seq, ds[len(ds)-1].Seq
	if last-first >= 4*uint64(len(ds)) {
		return // sparse: other sessions' messages in between
	}
	i := 0
	_ = s.cfg.Store.Scan(first, func(m *storage.Message) bool {
		for i < len(ds) && ds[i].Seq < m.Seq {
			i++ // gone from the log: loadLocked counts it
		}
		if i < len(ds) && ds[i].Seq == m.Seq {
			ds[i].Msg = m
			i++
		}
		return i < len(ds) && m.Seq < last
	})
}

// removeLocked removes the pending entry of the completed delivery d,
// batched as the comment at the top of this file explains.
func (s *Session) removeLocked(d *Delivery) {
	if !s.durableLocked() || s.fenced || !d.stored {
		return
	}
	if d.QoS == 2 && d.State != storage.PendingReleased {
		// Its entry says "sent": were it to survive a crash, the PUBLISH
		// would be sent again after the client completed the exchange.
		_ = s.storeErr(s.cfg.Store.RemovePending(s.id, d.Seq))
		return
	}
	if len(s.spill.rm) == 0 {
		s.spill.rmSince = s.now()
	}
	s.spill.rm = append(s.spill.rm, d.Seq)
	s.spill.rmMax = max(s.spill.rmMax, d.Seq)
	// The clock is read every 256 completions, not for each.
	if n := len(s.spill.rm); n >= removeBatch || n%256 == 0 && s.now().Sub(s.spill.rmSince) >= removeEvery {
		s.startRemovalsLocked()
	}
}

// startRemovalsLocked removes the batch in a goroutine, without the
// session lock, so that neither the acknowledgement that completed it nor
// the deliveries after it wait for the store. Nothing a reader of the
// store can tell changes:
//
//   - Every place that needs the removals done calls flushRemovalsLocked,
//     which first waits for the batches under way: the detach, an idle
//     session making the store exact, a Push of a sequence number at or
//     below removingHigh (the entry stored again must not be removed by
//     the batch), retention, and the session's delete (through
//     waitSpillWritesLocked).
//   - A refill waits only when a batch under way holds a sequence number
//     its scan could see (pageInLocked).
//   - LowestPendingSeq counts the batches under way, so the log collector
//     keeps the messages their entries point at until they are gone.
//
// A batch that fails is counted like any store error; its entries stay,
// which costs what a removal lost in a crash costs (above).
func (s *Session) startRemovalsLocked() {
	rm := s.spill.rm
	s.spill.rm, s.spill.rmMax = nil, 0
	if len(rm) == 0 || !s.durableLocked() || s.fenced {
		return
	}
	low := rm[0]
	for _, seq := range rm {
		low = min(low, seq)
		s.spill.removingHigh = max(s.spill.removingHigh, seq)
	}
	if s.spill.removing == 0 || low < s.spill.removingLow {
		s.spill.removingLow = low
	}
	s.spill.removing++
	s.spillCondLocked()
	go func() {
		err := s.cfg.Store.RemovePending(s.id, rm...)
		s.mu.Lock()
		defer s.mu.Unlock()
		_ = s.storeErr(err)
		if s.spill.removing--; s.spill.removing == 0 {
			s.spill.removingLow, s.spill.removingHigh = 0, 0
		}
		s.spill.done.Broadcast()
	}()
}

// waitRemovalsLocked waits until no batch of removals is under way.
func (s *Session) waitRemovalsLocked() {
	for s.spill.removing > 0 {
		s.spill.done.Wait()
	}
}

// spillCondLocked makes s.spill.done, on which the store calls made
// without the session lock signal their end.
func (s *Session) spillCondLocked() {
	if s.spill.done == nil {
		s.spill.done = sync.NewCond(&s.mu)
	}
}

// flushRemovalsLocked removes the pending entries of the completed
// deliveries noted by removeLocked, after the batches under way.
func (s *Session) flushRemovalsLocked() {
	s.waitRemovalsLocked()
	if len(s.spill.rm) == 0 {
		return
	}
	rm := s.spill.rm
	s.spill.rm, s.spill.rmMax = s.spill.rm[:0], 0
	if s.durableLocked() && !s.fenced {
		_ = s.storeErr(s.cfg.Store.RemovePending(s.id, rm...))
	}
}

// FlushRemovals removes the pending entries of completed deliveries now
// (tests, and a broker that wants the store exact before it stops).
func (s *Session) FlushRemovals() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushRemovalsLocked()
}

// Spilled returns how many queued deliveries are only in the store.
func (s *Session) Spilled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.spill.count
}

// Queued bytes (Config.MaxQueuedBytes). A delivery is charged its topic
// and payload length when Push queues it (in memory or spilled) and
// uncharged when it leaves the queue for the inflight window or is
// dropped there (by then its message is loaded again, and messages are
// immutable, so the same size comes off). A delivery is refused when the
// queue is not empty and it would take the total past the bound, so one
// message larger than the bound can still be delivered, alone. Deliveries
// restored from the store after a restart were never charged (reading
// every message to size it would defeat paging); uncharging them stops at
// zero, and the total is reset whenever the queue is empty, so the count
// can run low after a restart but never stays high.

// deliveryBytes is what d is charged (0 while its message is not loaded).
func deliveryBytes(d *Delivery) int {
	if d.Msg == nil {
		return 0
	}
	return len(d.Msg.Topic) + len(d.Msg.Payload)
}

// bytesFullLocked reports whether queuing d would exceed MaxQueuedBytes,
// counting it in Stats.OverflowBytes.
func (s *Session) bytesFullLocked(d *Delivery) bool {
	if s.cfg.MaxQueuedBytes <= 0 || s.qbytes == 0 || s.qbytes+deliveryBytes(d) <= s.cfg.MaxQueuedBytes {
		return false
	}
	s.stats.OverflowBytes.Add(1)
	return true
}

// chargeLocked adds d to the queued bytes.
func (s *Session) chargeLocked(d *Delivery) { s.qbytes += deliveryBytes(d) }

// unchargeLocked removes d from the queued bytes.
func (s *Session) unchargeLocked(d *Delivery) { s.qbytes = max(0, s.qbytes-deliveryBytes(d)) }

// QueuedBytes returns the bytes charged to the queue (see above).
func (s *Session) QueuedBytes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.qbytes
}
