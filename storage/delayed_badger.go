package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Delayed messages in the badger store. Each one is two keys written in the
// same transaction: d/<due:8><id:8> holds the message, so a prefix
// iteration visits them in due order, and t/<id:8> holds the due time, so
// RemoveDelayed can find the first key from the id alone without an index
// in memory. The id counter (x/delayed) is owned by the committer like the
// sequence and revision counters; a failed transaction only leaves a gap.

func delayedKey(due int64, id uint64) []byte {
	k := make([]byte, 0, len(prefixDelayed)+16)
	k = append(k, prefixDelayed...)
	k = binary.BigEndian.AppendUint64(k, uint64(max(due, 0)))
	return binary.BigEndian.AppendUint64(k, id)
}

func dueOfKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, len(prefixDueOf)+8), prefixDueOf...), id)
}

// AddDelayed stores m due at due and returns its id once durable.
func (b *Badger) AddDelayed(due time.Time, m *Message) (uint64, error) {
	r := newReq(wAddDelayed)
	r.msg, r.due = m, due.UnixNano()
	err := b.submit(context.Background(), r)
	id := r.did
	*r = writeReq{done: r.done}
	reqPool.Put(r)
	if err != nil {
		return 0, err
	}
	return id, nil
}

// RemoveDelayed deletes delayed message id; unknown ids are ignored.
func (b *Badger) RemoveDelayed(id uint64) error {
	r := newReq(wRemoveDelayed)
	r.did = id
	return b.do(r)
}

// applyDelayed is the committer's part of AddDelayed and RemoveDelayed.
func (b *Badger) applyDelayed(st *txnState, r *writeReq) error {
	txn := st.txn
	if r.kind == wAddDelayed {
		b.did++
		r.did = b.did
		v := appendMessage(nil, r.msg)
		b.bigValue(st, v)
		if err := txn.Set(delayedKey(r.due, r.did), v); err != nil {
			return err
		}
		if err := txn.Set(dueOfKey(r.did), u64(uint64(max(r.due, 0)))); err != nil {
			return err
		}
		return txn.Set(keyDelayedID, u64(b.did))
	}
	it, err := txn.Get(dueOfKey(r.did))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var due uint64
	if err := it.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("%w: due time of delayed message %d holds %d bytes", errCorruptValue, r.did, len(v))
		}
		due = binary.BigEndian.Uint64(v)
		return nil
	}); err != nil {
		r.err = err
		return nil
	}
	if err := txn.Delete(delayedKey(int64(due), r.did)); err != nil {
		return err
	}
	return txn.Delete(dueOfKey(r.did))
}

// Delayed calls fn for every delayed message in due order (ties by id),
// reading in chunks so that no transaction is open while fn runs.
func (b *Badger) Delayed(fn func(id uint64, due time.Time, m *Message) bool) error {
	type entry struct {
		id  uint64
		due time.Time
		m   *Message
	}
	return scanPrefix(b, prefixDelayed, slices.Clone(prefixDelayed), func(k, v []byte) (entry, error) {
		rest := k[len(prefixDelayed):]
		if len(rest) != 16 {
			return entry{}, fmt.Errorf("%w: malformed delayed key %q", errCorruptValue, k)
		}
		due := int64(binary.BigEndian.Uint64(rest[:8]))
		id := binary.BigEndian.Uint64(rest[8:])
		m, err := decodeMessage(v)
		if err != nil {
			return entry{}, fmt.Errorf("delayed message %d: %w", id, err)
		}
		return entry{id, time.Unix(0, due), m}, nil
	}, func(e entry) bool { return fn(e.id, e.due, e.m) })
}
