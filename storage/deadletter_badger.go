package storage

import (
	"encoding/binary"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// The dead-letter index in the badger store: q/<seq:8> holds one
// DeadLetterEntry, so a prefix iteration visits them in log order.
//
// Index writes do not go through the committer: they are rare (one per
// dead letter, replay or purge), touch only q/ keys no other write
// touches, and are made by one badger transaction each with the store's
// durability: committed with SyncWrites in sync mode (or followed by an
// fsync when the store syncs explicitly), picked up by the next periodic
// fsync in batch mode. Like the committer, they refuse to write while a
// periodic fsync is failing.

func dlqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, len(prefixDLQ)+8), prefixDLQ...), seq)
}

// AddDeadLetter stores e under e.Seq once durable in the configured mode.
func (b *Badger) AddDeadLetter(e *DeadLetterEntry) error {
	v := appendDeadLetter(nil, e)
	return b.writeDLQ(func(txn *badger.Txn) error { return txn.Set(dlqKey(e.Seq), v) })
}

// RemoveDeadLetters deletes the entries seqs; unknown ones are ignored.
func (b *Badger) RemoveDeadLetters(seqs ...uint64) error {
	for len(seqs) > 0 {
		n := min(len(seqs), 1000) // far below badger's transaction limits
		chunk := seqs[:n]
		seqs = seqs[n:]
		if err := b.writeDLQ(func(txn *badger.Txn) error {
			for _, seq := range chunk {
				if err := txn.Delete(dlqKey(seq)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// writeDLQ runs fn in one write transaction with the store's durability.
func (b *Badger) writeDLQ(fn func(txn *badger.Txn) error) error {
	b.mu.RLock()
	defer b.mu.RUnlock() // Close waits: the db stays open until we are done
	if b.closed {
		return ErrClosed
	}
	if p := b.syncErr.Load(); p != nil {
		return *p
	}
	if err := b.db.Update(fn); err != nil {
		return wrapWriteError(fmt.Errorf("storage: dead-letter index: %w", err))
	}
	switch b.opts.Durability {
	case DurabilitySync:
		if b.opts.explicitSync {
			b.syncs.Add(1)
			if err := b.db.Sync(); err != nil {
				return wrapWriteError(fmt.Errorf("storage: dead-letter index: fsync: %w", err))
			}
		}
	case DurabilityBatch:
		b.dirty.Store(true)
	}
	return nil
}

// DeadLetters calls fn for the entries with Seq >= from in Seq order,
// reading in chunks so that no transaction is open while fn runs.
func (b *Badger) DeadLetters(from uint64, fn func(*DeadLetterEntry) bool) error {
	return scanPrefix(b, prefixDLQ, dlqKey(from), func(k, v []byte) (*DeadLetterEntry, error) {
		rest := k[len(prefixDLQ):]
		if len(rest) != 8 {
			return nil, fmt.Errorf("%w: malformed dead letter key %q", errCorruptValue, k)
		}
		seq := binary.BigEndian.Uint64(rest)
		e, err := decodeDeadLetter(seq, v)
		if err != nil {
			return nil, fmt.Errorf("dead letter %d: %w", seq, err)
		}
		return e, nil
	}, fn)
}
