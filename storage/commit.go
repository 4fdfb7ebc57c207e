package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"

	"github.com/dgraph-io/badger/v4"
)

// The write path of the badger store. Every write is a writeReq handed to
// the committer goroutine (commitLoop), the one owner of the sequence
// counter, the session revision counter and the pending counts. It takes
// every request waiting at that moment (up to MaxGroup), applies them in
// arrival order to one badger transaction, commits it, fsyncs once in sync
// mode and only then answers each caller. That is group commit: while one
// fsync runs, the next group queues up, so the cost of an fsync is shared
// by everyone who arrived during the previous one.
//
// Because one goroutine writes, in order, log entries become visible in
// sequence order: a reader never sees seq n+1 before seq n, so a bridge
// cursor that moves past what it has read never skips a message.

type writeKind uint8

const (
	wAppend writeKind = iota
	wDeleteMessages
	wSaveSession
	wDeleteSession
	wEnqueue
	wUpdatePending
	wRemovePending
	wAddInbound
	wRemoveInbound
	wSetRetained
	wDeleteRetained
	wSetCursor
	wAddDelayed     // delayed_badger.go
	wRemoveDelayed  // delayed_badger.go
	wFlushMemtables // maintain.go
)

type writeReq struct {
	kind   writeKind
	msgs   []*Message // wAppend: the caller's messages; Seq set on success
	msg    *Message   // wSetRetained
	sess   *Session   // wSaveSession; Revision set on success
	id     string     // client ID, topic or cursor name
	rev    uint64     // wDeleteSession
	pend   []Pending  // wEnqueue, wUpdatePending
	seqs   []uint64   // wDeleteMessages, wRemovePending; wSetCursor: seqs[0]
	pid    uint16     // inbound packet id
	newRev uint64     // wSaveSession: revision written
	due    int64      // wAddDelayed: due time, Unix nanoseconds
	did    uint64     // wAddDelayed: id assigned; wRemoveDelayed: id to remove
	err    error
	done   chan struct{}
}

var reqPool = sync.Pool{New: func() any { return &writeReq{done: make(chan struct{}, 1)} }}

// submit hands r to the committer and waits for its answer. The context
// bounds only the wait to enter the queue: once the committer has the
// request the caller waits for the outcome, because a write that went to
// disk after its caller gave up would be a write nobody knows about.
func (b *Badger) submit(ctx context.Context, r *writeReq) error {
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return ErrClosed
	}
	select {
	case b.reqs <- r:
	case <-ctx.Done():
		b.mu.RUnlock()
		return ctx.Err()
	}
	b.mu.RUnlock()
	<-r.done
	return r.err
}

func (b *Badger) do(r *writeReq) error {
	err := b.submit(context.Background(), r)
	*r = writeReq{done: r.done}
	reqPool.Put(r)
	return err
}

func newReq(kind writeKind) *writeReq {
	r := reqPool.Get().(*writeReq)
	r.kind = kind
	return r
}

// Append stores msgs in order and assigns their Seq; it returns once they
// are durable in the configured mode. One call's messages get consecutive
// sequence numbers.
func (b *Badger) Append(ctx context.Context, msgs ...*Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	r := newReq(wAppend)
	r.msgs = msgs
	err := b.submit(ctx, r)
	*r = writeReq{done: r.done}
	reqPool.Put(r)
	return err
}

// DeleteMessages removes the given log entries; unknown ones are ignored.
func (b *Badger) DeleteMessages(seqs ...uint64) error {
	r := newReq(wDeleteMessages)
	r.seqs = seqs
	return b.do(r)
}

// SaveSession is the compare-and-swap write that fences takeover: it
// succeeds only if s.Revision equals the stored revision (0 = no record).
// Revisions come from one store-wide counter persisted with the record, so
// a record deleted and created again never repeats a revision.
func (b *Badger) SaveSession(s *Session) error {
	r := newReq(wSaveSession)
	r.sess = s
	return b.do(r)
}

// DeleteSession removes the record with its pending and inbound entries;
// with rev != 0 only if the stored revision equals rev.
func (b *Badger) DeleteSession(clientID string, rev uint64) error {
	r := newReq(wDeleteSession)
	r.id, r.rev = clientID, rev
	return b.do(r)
}

// Enqueue adds pending entries for clientID; an existing Seq is replaced.
func (b *Badger) Enqueue(clientID string, entries ...Pending) error {
	if len(entries) == 0 {
		return nil
	}
	r := newReq(wEnqueue)
	r.id, r.pend = clientID, entries
	return b.do(r)
}

// UpdatePending replaces the entry with p.Seq, or returns ErrNotFound.
func (b *Badger) UpdatePending(clientID string, p Pending) error {
	r := newReq(wUpdatePending)
	r.id, r.pend = clientID, []Pending{p}
	return b.do(r)
}

// RemovePending deletes entries of clientID; unknown ones are ignored.
func (b *Badger) RemovePending(clientID string, seqs ...uint64) error {
	r := newReq(wRemovePending)
	r.id, r.seqs = clientID, seqs
	return b.do(r)
}

// AddInbound records an unreleased inbound QoS 2 packet id.
func (b *Badger) AddInbound(clientID string, packetID uint16) error {
	r := newReq(wAddInbound)
	r.id, r.pid = clientID, packetID
	return b.do(r)
}

// RemoveInbound forgets an inbound QoS 2 packet id (PUBREL received).
func (b *Badger) RemoveInbound(clientID string, packetID uint16) error {
	r := newReq(wRemoveInbound)
	r.id, r.pid = clientID, packetID
	return b.do(r)
}

// SetRetained stores m as the retained message of m.Topic.
func (b *Badger) SetRetained(m *Message) error {
	r := newReq(wSetRetained)
	r.msg = m
	return b.do(r)
}

// DeleteRetained removes the retained message of topic, if any.
func (b *Badger) DeleteRetained(topic string) error {
	r := newReq(wDeleteRetained)
	r.id = topic
	return b.do(r)
}

// SetCursor stores the position of name.
func (b *Badger) SetCursor(name string, seq uint64) error {
	r := newReq(wSetCursor)
	r.id, r.seqs = name, []uint64{seq}
	return b.do(r)
}

// commitLoop is the committer goroutine.
func (b *Badger) commitLoop() {
	defer b.wg.Done()
	group := make([]*writeReq, 0, b.opts.MaxGroup)
	for {
		group = group[:0]
		select {
		case r := <-b.reqs:
			group = append(group, r)
		case <-b.stop:
			// Close set closed under mu before closing stop, so no sender
			// is left: finish what is queued and exit.
			for {
				select {
				case r := <-b.reqs:
					group = append(group, r)
					continue
				default:
				}
				break
			}
			if len(group) > 0 {
				b.commitGroup(group)
			}
			return
		}
		if b.opts.groupHook != nil {
			b.opts.groupHook()
		}
	gather:
		for len(group) < cap(group) {
			select {
			case r := <-b.reqs:
				group = append(group, r)
			default:
				break gather
			}
		}
		b.commitGroup(group)
	}
}

// txnState is one open transaction of a group with what it will change in
// the committer's counters once it commits.
type txnState struct {
	txn    *badger.Txn
	reqs   []*writeReq // applied to txn, not yet committed
	size   int64       // estimated bytes written (big values as pointers)
	vlog   int64       // bytes of values that go to the value log
	count  int64       // entries written
	dels   int64       // entries deleted
	head   uint64      // staged head
	rev    uint64      // staged revision counter
	deltas map[string]int
}

func (b *Badger) newTxn(st *txnState) {
	st.txn = b.db.NewTransaction(true)
	st.reqs = st.reqs[:0]
	st.size, st.vlog, st.count, st.dels = 0, 0, 0, 0
	st.head, st.rev = b.head.Load(), b.rev
	clear(st.deltas)
}

// flush commits the open transaction and publishes its counters; on failure
// every request in it gets the error.
func (b *Badger) flush(st *txnState) {
	if len(st.reqs) == 0 {
		st.txn.Discard()
		b.newTxn(st)
		return
	}
	var err error
	if st.head != b.head.Load() {
		err = st.txn.Set(keyHead, u64(st.head))
	}
	if err == nil && st.rev != b.rev {
		err = st.txn.Set(keyRev, u64(st.rev))
	}
	if err == nil {
		b.commits.Add(1)
		if b.opts.Durability == DurabilitySync && !b.opts.explicitSync {
			b.syncs.Add(1) // badger's SyncWrites: the commit msyncs the WAL
		}
		err = st.txn.Commit()
	} else {
		st.txn.Discard()
	}
	if err != nil {
		err = wrapWriteError(fmt.Errorf("storage: commit: %w", err))
		for _, r := range st.reqs {
			if r.err == nil {
				r.err = err
			}
		}
	} else {
		b.head.Store(st.head)
		b.rev = st.rev
		b.written.Add(uint64(st.count))
		b.deleted.Add(uint64(st.dels))
		b.bytesWritten += st.size + st.vlog
		if len(st.deltas) > 0 {
			b.countMu.Lock()
			for id, d := range st.deltas {
				if n := b.counts[id] + d; n > 0 {
					b.counts[id] = n
				} else {
					delete(b.counts, id)
				}
			}
			b.countMu.Unlock()
		}
	}
	b.newTxn(st)
}

// commitGroup applies, commits and (sync mode) fsyncs one group, then
// answers every request in it.
func (b *Badger) commitGroup(group []*writeReq) {
	if p := b.syncErr.Load(); p != nil {
		for _, r := range group {
			r.err = *p
			r.done <- struct{}{}
		}
		return
	}
	b.groups.Add(1)
	st := &txnState{deltas: make(map[string]int)}
	b.newTxn(st)
	limitSize, limitCount := b.db.MaxBatchSize()/2, b.db.MaxBatchCount()/2
	for _, r := range group {
		switch r.kind {
		case wDeleteSession:
			b.flush(st)
			r.err = b.deleteSession(r.id, r.rev)
			continue
		case wFlushMemtables:
			b.flush(st)
			r.err = b.flushMemtables()
			continue
		}
		// Every write that adds a message is checked against the reserve
		// with what the group has written so far and its own size, so
		// that no group, however big, takes the disk past the reserve.
		size, count := b.estimate(r)
		if growing(r) && b.diskFull(st.size+st.vlog+b.diskSize(r, size)) {
			b.fullRefused.Add(1)
			r.err = b.errBelowReserve()
			continue
		}
		if (size > limitSize || count > limitCount) && b.applyInParts(st, r, size, count, limitSize, limitCount) {
			continue
		}
		if len(st.reqs) > 0 && (st.size+size > limitSize || st.count+count > limitCount) {
			b.flush(st)
		}
		if err := b.apply(st, r); err != nil {
			// The transaction is unusable (typically too big); nothing of
			// it is committed. Fail what it held and start afresh.
			st.txn.Discard()
			if errors.Is(err, badger.ErrTxnTooBig) {
				err = fmt.Errorf("storage: one write of about %d bytes in %d entries is too big for a transaction (limit %d bytes, %d entries): %w", size, count, limitSize, limitCount, err)
			}
			err = wrapWriteError(fmt.Errorf("storage: write: %w", err))
			r.err = err
			for _, q := range st.reqs {
				if q.err == nil {
					q.err = err
				}
			}
			b.newTxn(st)
			continue
		}
		st.reqs = append(st.reqs, r)
		st.size += size
		st.count += count
	}
	b.flush(st)
	st.txn.Discard()

	switch b.opts.Durability {
	case DurabilitySync:
		if b.opts.explicitSync {
			b.syncs.Add(1)
			if err := b.db.Sync(); err != nil {
				err = wrapWriteError(fmt.Errorf("storage: fsync: %w", err))
				for _, r := range group {
					if r.err == nil {
						r.err = err
					}
				}
			}
		}
	case DurabilityBatch:
		b.dirty.Store(true)
	}
	for _, r := range group {
		switch {
		case r.err != nil && r.kind == wAppend:
			for _, m := range r.msgs {
				m.Seq = 0
			}
		case r.err == nil && r.kind == wSaveSession:
			r.sess.Revision = r.newRev
		}
		r.done <- struct{}{}
	}
}

// applyInParts writes a request too big for one badger transaction (a
// publisher's batch of thousands of messages, a session's whole queue) as
// several transactions committed one after the other, so that no write a
// client makes fails only for its size. It reports false for kinds that
// cannot be split; those go through apply and fail there. The parts are
// committed in order by this one committer, so an append's messages still
// get consecutive sequence numbers. If a part fails, the parts before it
// stay written and the request fails: for an append that makes the
// publisher's retry a duplicate, never a loss (Log.Append).
func (b *Badger) applyInParts(st *txnState, r *writeReq, size, count, limitSize, limitCount int64) bool {
	msgs, pend, seqs := r.msgs, r.pend, r.seqs
	var n int
	var narrow func(lo, hi int)
	switch r.kind {
	case wAppend:
		n, narrow = len(msgs), func(lo, hi int) { r.msgs = msgs[lo:hi] }
	case wEnqueue:
		n, narrow = len(pend), func(lo, hi int) { r.pend = pend[lo:hi] }
	case wRemovePending, wDeleteMessages:
		n, narrow = len(seqs), func(lo, hi int) { r.seqs = seqs[lo:hi] }
	default:
		return false
	}
	if n < 2 {
		return false
	}
	defer func() { r.msgs, r.pend, r.seqs = msgs, pend, seqs }()
	per := n
	if size > limitSize {
		per = min(per, int(int64(n)*limitSize/size))
	}
	if count > limitCount {
		per = min(per, int(int64(n)*limitCount/count))
	}
	per = max(per, 1)
	b.flush(st)
	for lo := 0; lo < n && r.err == nil; lo += per {
		narrow(lo, min(lo+per, n))
		psize, pcount := b.estimate(r)
		if err := b.apply(st, r); err != nil {
			st.txn.Discard()
			r.err = wrapWriteError(fmt.Errorf("storage: write: %w", err))
			b.newTxn(st)
			return true
		}
		if r.err != nil { // the request's own check failed: nothing written
			break
		}
		st.reqs = append(st.reqs, r)
		st.size += psize
		st.count += pcount
		b.flush(st)
	}
	return true
}

// estimate is a generous guess of the bytes and entries r writes, to keep a
// transaction under badger's size limit. Values at or above ValueThreshold
// live in the value log and count only as a pointer.
func (b *Badger) estimate(r *writeReq) (size, count int64) {
	val := func(n int) int64 {
		if int64(n) >= b.opts.ValueThreshold {
			return 64
		}
		return int64(n) + 64
	}
	switch r.kind {
	case wAppend:
		for _, m := range r.msgs {
			size += val(len(m.Topic)+len(m.Payload)+len(m.Publisher)+propsSizeGuess(m)) + 32
		}
		return size + 32, int64(len(r.msgs)) + 1
	case wSetRetained:
		return val(len(r.msg.Topic)*2+len(r.msg.Payload)+len(r.msg.Publisher)+propsSizeGuess(r.msg)) + 32, 1
	case wAddDelayed:
		return val(len(r.msg.Topic)+len(r.msg.Payload)+len(r.msg.Publisher)+propsSizeGuess(r.msg)) + 128, 3
	case wRemoveDelayed:
		return 128, 2
	case wSaveSession:
		n := 256
		for _, s := range r.sess.Subscriptions {
			n += len(s.Filter) + 16
		}
		if r.sess.Will != nil {
			n += len(r.sess.Will.Topic) + len(r.sess.Will.Payload) + propsSizeGuess(r.sess.Will)
		}
		return val(n) + int64(len(r.sess.ClientID)), 2
	case wEnqueue:
		return int64(len(r.pend)) * (int64(len(r.id)) + 96), int64(len(r.pend))
	case wUpdatePending:
		return int64(len(r.id)) + 96, 1
	case wRemovePending, wDeleteMessages:
		return int64(len(r.seqs)) * (int64(len(r.id)) + 48), int64(len(r.seqs))
	}
	return int64(len(r.id)) + 64, 1
}

// msgSizeGuess is about the bytes of m's encoded value.
func msgSizeGuess(m *Message) int64 {
	return int64(len(m.Topic)+len(m.Payload)+len(m.Publisher)+propsSizeGuess(m)) + 48
}

// diskSize estimates the bytes a write that adds messages puts on disk:
// estimate's figure (size), plus the values that go to the value log,
// which estimate counts only as pointers.
func (b *Badger) diskSize(r *writeReq, size int64) int64 {
	switch r.kind {
	case wAppend:
		for _, m := range r.msgs {
			if n := msgSizeGuess(m); n >= b.opts.ValueThreshold {
				size += n
			}
		}
	case wSetRetained, wAddDelayed:
		if n := msgSizeGuess(r.msg); n >= b.opts.ValueThreshold {
			size += n
		}
	}
	return size
}

// bigValue reports whether v goes to the value log, and counts it in the
// transaction's value-log bytes if so.
func (b *Badger) bigValue(st *txnState, v []byte) bool {
	if int64(len(v)) < b.opts.ValueThreshold {
		return false
	}
	st.vlog += int64(len(v))
	return true
}

func propsSizeGuess(m *Message) int {
	p := &m.Properties
	n := 64 + len(p.ContentType) + len(p.ResponseTopic) + len(p.CorrelationData) + 5*len(p.SubscriptionIDs)
	for _, u := range p.User {
		n += len(u.Key) + len(u.Value) + 4
	}
	return n
}

// apply adds r's writes to the open transaction. A request that fails its
// own checks (stale revision, unknown entry) gets r.err and writes nothing;
// the returned error means the transaction itself failed.
func (b *Badger) apply(st *txnState, r *writeReq) error {
	txn := st.txn
	switch r.kind {
	case wAppend:
		for _, m := range r.msgs {
			st.head++
			m.Seq = st.head
			v := appendMessage(make([]byte, 0, 48+len(m.Topic)+len(m.Publisher)+len(m.Payload)+propsSizeGuess(m)), m)
			if b.bigValue(st, v) {
				b.vlogWritten.Add(uint64(len(v)))
			}
			if err := txn.Set(msgKey(m.Seq), v); err != nil {
				return err
			}
		}
	case wDeleteMessages:
		for _, seq := range r.seqs {
			if err := txn.Delete(msgKey(seq)); err != nil {
				return err
			}
		}
		st.dels += int64(len(r.seqs))
	case wSaveSession:
		k := sessionKey(r.sess.ClientID)
		var stored uint64
		it, err := txn.Get(k)
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			if err := it.Value(func(v []byte) (err error) { stored, err = sessionRevision(v); return err }); err != nil {
				r.err = fmt.Errorf("storage: session %q: %w", r.sess.ClientID, err)
				return nil
			}
		}
		if r.sess.Revision != stored {
			r.err = ErrRevisionMismatch
			return nil
		}
		st.rev++
		r.newRev = st.rev
		c := *r.sess
		c.Revision = r.newRev
		return txn.Set(k, appendSession(nil, &c))
	case wEnqueue:
		keys := make([][]byte, len(r.pend))
		for i, p := range r.pend {
			k, err := pendingKey(r.id, p.Seq)
			if err != nil {
				r.err = err
				return nil
			}
			keys[i] = k
		}
		for i, p := range r.pend {
			exists, err := has(txn, keys[i])
			if err != nil {
				return err
			}
			if !exists {
				st.deltas[r.id]++
			}
			if err := txn.Set(keys[i], appendPending(nil, p)); err != nil {
				return err
			}
		}
	case wUpdatePending:
		k, err := pendingKey(r.id, r.pend[0].Seq)
		if err != nil {
			r.err = err
			return nil
		}
		exists, err := has(txn, k)
		if err != nil {
			return err
		}
		if !exists {
			r.err = ErrNotFound
			return nil
		}
		return txn.Set(k, appendPending(nil, r.pend[0]))
	case wRemovePending:
		return b.applyRemovePending(st, r)
	case wAddInbound, wRemoveInbound:
		k, err := inboundKey(r.id, r.pid)
		if err != nil {
			r.err = err
			return nil
		}
		if r.kind == wAddInbound {
			return txn.Set(k, nil)
		}
		return txn.Delete(k)
	case wSetRetained:
		v := appendMessage(nil, r.msg)
		b.bigValue(st, v)
		return txn.Set(retainedKey(r.msg.Topic), v)
	case wDeleteRetained:
		return txn.Delete(retainedKey(r.id))
	case wSetCursor:
		return txn.Set(cursorKey(r.id), u64(r.seqs[0]))
	case wAddDelayed, wRemoveDelayed:
		return b.applyDelayed(st, r)
	}
	return nil
}

// applyRemovePending deletes the pending entries r.seqs of client r.id
// that exist (CountPending stays exact, so unknown ones must not count).
// A session removes completed deliveries in batches of hundreds of close
// sequence numbers; one key-only iterator over their range finds which
// exist far cheaper than a point lookup each, which searches every level.
func (b *Badger) applyRemovePending(st *txnState, r *writeReq) error {
	prefix, err := clientPrefix(prefixPending, r.id, 8)
	if err != nil {
		r.err = err
		return nil
	}
	seqs := r.seqs
	if !slices.IsSorted(seqs) {
		seqs = slices.Clone(seqs)
		slices.Sort(seqs)
	}
	keyOf := func(seq uint64) []byte { return binary.BigEndian.AppendUint64(slices.Clip(prefix), seq) }
	del := func(k []byte) error {
		st.deltas[r.id]--
		st.dels++
		return st.txn.Delete(k)
	}
	if len(seqs) < 16 {
		for _, seq := range seqs {
			k := keyOf(seq)
			exists, err := has(st.txn, k)
			if err != nil {
				return err
			}
			if exists {
				if err := del(k); err != nil {
					return err
				}
			}
		}
		return nil
	}
	opt := badger.DefaultIteratorOptions
	opt.Prefix, opt.PrefetchValues = prefix, false
	it := st.txn.NewIterator(opt)
	var found []uint64
	i := 0
	for it.Seek(keyOf(seqs[0])); it.ValidForPrefix(prefix) && i < len(seqs); it.Next() {
		rest := it.Item().Key()[len(prefix):]
		if len(rest) != 8 {
			continue
		}
		seq := binary.BigEndian.Uint64(rest)
		for i < len(seqs) && seqs[i] < seq {
			i++
		}
		if i == len(seqs) {
			break
		}
		if seqs[i] == seq {
			found = append(found, seq)
			i++
		}
	}
	it.Close()
	for j, seq := range found {
		if j > 0 && found[j-1] == seq {
			continue // a sequence number given twice
		}
		if err := del(keyOf(seq)); err != nil {
			return err
		}
	}
	return nil
}

func has(txn *badger.Txn, k []byte) (bool, error) {
	_, err := txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// deleteSession removes a session's pending and inbound entries, then the
// record, in as many transactions as the entries need. Entries go first: a
// crash half-way leaves the record with fewer entries, never entries
// without a record that a new session of the same client ID would inherit.
func (b *Badger) deleteSession(clientID string, rev uint64) error {
	if rev != 0 {
		var stored uint64
		err := b.db.View(func(txn *badger.Txn) error {
			it, err := txn.Get(sessionKey(clientID))
			if err != nil {
				return err
			}
			return it.Value(func(v []byte) (err error) { stored, err = sessionRevision(v); return err })
		})
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrRevisionMismatch
		}
		if err != nil {
			return fmt.Errorf("storage: session %q: %w", clientID, err)
		}
		if stored != rev {
			return ErrRevisionMismatch
		}
	}
	const chunk = 10000
	for _, base := range [][]byte{prefixPending, prefixInbound} {
		prefix, err := clientPrefix(base, clientID, 0)
		if err != nil {
			return err
		}
		for {
			var keys [][]byte
			err := b.db.View(func(txn *badger.Txn) error {
				opt := badger.DefaultIteratorOptions
				opt.Prefix, opt.PrefetchValues = prefix, false
				it := txn.NewIterator(opt)
				defer it.Close()
				for it.Rewind(); it.Valid() && len(keys) < chunk; it.Next() {
					keys = append(keys, it.Item().KeyCopy(nil))
				}
				return nil
			})
			if err != nil {
				return wrapWriteError(fmt.Errorf("storage: delete session %q: %w", clientID, err))
			}
			if len(keys) == 0 {
				break
			}
			wb := b.db.NewWriteBatch()
			for _, k := range keys {
				if err = wb.Delete(k); err != nil {
					break
				}
			}
			if err == nil {
				err = wb.Flush()
			} else {
				wb.Cancel()
			}
			if err != nil {
				return wrapWriteError(fmt.Errorf("storage: delete session %q: %w", clientID, err))
			}
			b.deleted.Add(uint64(len(keys)))
			b.written.Add(uint64(len(keys)))
			if base[0] == prefixPending[0] {
				b.countMu.Lock()
				if n := b.counts[clientID] - len(keys); n > 0 {
					b.counts[clientID] = n
				} else {
					delete(b.counts, clientID)
				}
				b.countMu.Unlock()
			}
		}
	}
	if err := b.db.Update(func(txn *badger.Txn) error { return txn.Delete(sessionKey(clientID)) }); err != nil {
		return wrapWriteError(fmt.Errorf("storage: delete session %q: %w", clientID, err))
	}
	return nil
}

func errIsENOSPC(err error) bool { return errors.Is(err, syscall.ENOSPC) }
