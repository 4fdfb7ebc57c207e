package topics

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
)

// matchCache maps topic names to their Result.
//
// Lookups read a sync.Map, whose reads take no lock and write no shared
// memory, so parallel publishers do not contend and a Subscribe that must
// delete entries never waits for readers to drain.
//
// To keep the cache correct, a Subscribe or Unsubscribe must drop exactly the
// cached topics that its filter matches. Scanning every cached topic would
// cost O(cache size) per subscription change, too much for a connect storm,
// so the cached names are also kept in a topic trie (the structure behind
// Index) and invalidation walks the trie along the filter: a device's
// "devices/d42/cmd/#" touches only cached topics under devices/d42/cmd.
//
// A topic enters the cache only on its second miss within a short while
// (admit): when publishers use far more distinct topics than the cache holds,
// as a fleet of devices each publishing on its own topic does, caching every
// miss would only churn the cache, paying an insert and an eviction on every
// Match for no hits. The admission filter is a fixed array of topic hashes,
// so a first miss costs a hash and one atomic store.
//
// Lock order: Tree.mu, then matchCache.mu. get and admit take no lock. A nil
// *matchCache is a disabled cache.
type matchCache[V any] struct {
	m sync.Map // topic string -> *Result[V]

	seed maphash.Seed
	// seen holds the hashes of recently missed topics, one per slot, for
	// admit. Zero is an empty slot.
	seen     []atomic.Uint64
	seenMask uint64

	mu    sync.Mutex      // guards names and count, and serialises writes to m
	names inode[struct{}] // the cached topic names
	count int
	size  int // bound on count
}

func newMatchCache[V any](size int) *matchCache[V] {
	seen := 64
	for seen < size {
		seen *= 2
	}
	return &matchCache[V]{
		seed:     maphash.MakeSeed(),
		seen:     make([]atomic.Uint64, seen),
		seenMask: uint64(seen - 1),
		size:     size,
	}
}

// get returns the cached Result for topic, or nil.
func (c *matchCache[V]) get(topic string) *Result[V] {
	if r, ok := c.m.Load(topic); ok {
		return r.(*Result[V])
	}
	return nil
}

// admit reports whether a topic that missed the cache should be stored: yes
// if its hash was recorded by an earlier miss (the second miss within a
// short while); otherwise it records the hash and says no. Collisions only
// make it admit or refuse a topic early or late, never affect correctness.
func (c *matchCache[V]) admit(topic string) bool {
	h := maphash.String(c.seed, topic) | 1 // zero marks an empty slot
	slot := &c.seen[(h>>1)&c.seenMask]
	if slot.Load() == h {
		return true
	}
	slot.Store(h)
	return false
}

// put caches r for topic, evicting an arbitrary entry when the cache is full.
// The caller holds Tree.mu for reading.
func (c *matchCache[V]) put(topic string, r *Result[V]) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m.Load(topic); ok {
		return // another Match stored the same answer meanwhile
	}
	if c.count >= c.size {
		c.m.Range(func(k, _ any) bool {
			c.dropLocked(k.(string))
			return false
		})
	}
	// Clone the key: the caller's topic may be a view into a larger buffer
	// that the cache must not keep alive.
	key := strings.Clone(topic)
	c.names.insert(key)
	c.m.Store(key, r)
	c.count++
}

// dropLocked removes a cached topic. The caller holds c.mu.
func (c *matchCache[V]) dropLocked(topic string) {
	c.m.Delete(topic)
	c.names.remove(topic)
	c.count--
}

// invalidate drops every cached topic that filter matches, so the next Match
// recomputes it. The caller holds Tree.mu for writing.
func (c *matchCache[V]) invalidate(filter string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var stale []string
	c.names.match(filter, true, func(topic string, _ struct{}) bool {
		stale = append(stale, topic)
		return true
	})
	for _, topic := range stale {
		c.dropLocked(topic)
	}
}

// len returns the number of cached topics.
func (c *matchCache[V]) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count
}
