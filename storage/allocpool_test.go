package storage

import "testing"

// The store finds badger's allocator pool (allocpool.go); a badger upgrade
// that renames or retypes the field fails here instead of silently
// keeping the pool's memory.
func TestAllocPoolFound(t *testing.T) {
	s := openBadgerT(t, t.TempDir(), DurabilityNone)
	closeStore(t, s)
	pool := allocPoolOf(s.db)
	if pool == nil {
		t.Fatal("badger.DB has no allocPool field of type *z.AllocatorPool any more: see storage/allocpool.go")
	}
	drainAllocPool(pool) // must not panic on a live pool
	appendN(t, s, 100, "after-drain")
}
