package storage

import (
	"reflect"
	"unsafe"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/ristretto/v2/z"
)

// Badger builds every table (a memtable flush, each compaction output) in
// the buffers of a z.Allocator, and Builder.Close hands the allocator back
// to the DB's z.AllocatorPool, which keeps up to 8 of them with every
// buffer they grew (it trims only beyond 400 MiB, and frees one only
// after 2 s without any table being built — never, on a busy store). A
// flush of a 4 MiB memtable with Snappy grows its allocator to ~15 MiB, so
// the pool alone held 36–60 MiB of the live heap in a 1M backlog's drain
// and in 1,000 publisher/subscriber pairs, where it made the garbage
// collector work against the soft memory limit (docs/storage.md). Badger
// has no option for the pool, so the store empties it itself from time
// to time (drainAllocPool); builders then allocate afresh, which costs
// far less than the collector's work.
//
// The pool is an unexported field of badger.DB, set once in Open and
// never written again: allocPoolOf reads it through reflection. If a
// badger version renames it, allocPoolOf returns nil and nothing is
// drained (TestAllocPoolFound fails, so an upgrade notices).

// allocPoolOf returns db's table-builder allocator pool, or nil.
func allocPoolOf(db *badger.DB) *z.AllocatorPool {
	if db == nil {
		return nil
	}
	f := reflect.ValueOf(db).Elem().FieldByName("allocPool")
	if !f.IsValid() || f.Type() != reflect.TypeFor[*z.AllocatorPool]() {
		return nil
	}
	return *(**z.AllocatorPool)(unsafe.Pointer(f.UnsafeAddr()))
}

// allocPoolSize is the capacity badger gives its pool (db.go: NewAllocatorPool(8)).
const allocPoolSize = 8

// drainAllocPool releases the allocators waiting in pool. Get returns a
// pooled allocator if there is one and otherwise a new one of the given
// (tiny) size; either is released at once, so taking allocPoolSize of them
// empties the pool. Allocators in use by a builder are not touched.
func drainAllocPool(pool *z.AllocatorPool) {
	if pool == nil {
		return
	}
	for range allocPoolSize {
		pool.Get(64, "beacon-drain").Release()
	}
}
