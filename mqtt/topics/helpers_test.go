package topics

import (
	"fmt"
	"sort"
	"strings"
	"testing"
)

// cacheModes are the cache sizes every Tree test runs with: disabled, tiny
// (constant eviction) and roomy.
var cacheModes = []int{0, 2, 4096}

// eachCache runs f once per cache mode as a subtest.
func eachCache(t *testing.T, f func(t *testing.T, cacheSize int)) {
	t.Helper()
	for _, size := range cacheModes {
		t.Run(fmt.Sprintf("cache=%d", size), func(t *testing.T) { f(t, size) })
	}
}

// render turns a Result into a canonical, sorted list of strings so results
// can be compared regardless of the (unspecified) order of Subscribers.
// Group members keep their order: it is part of the contract.
func render[V any](r *Result[V]) []string {
	var out []string
	for _, e := range r.Subscribers {
		out = append(out, fmt.Sprintf("%s@%s=%v", e.Key, e.Filter, e.Value))
	}
	for _, g := range r.Groups {
		var ms []string
		for _, m := range g.Members {
			if m.Filter != g.Filter {
				ms = append(ms, "BAD-FILTER:"+m.Filter)
			}
			ms = append(ms, fmt.Sprintf("%s=%v", m.Key, m.Value))
		}
		out = append(out, fmt.Sprintf("share %s %s [%s]", g.Name, g.Filter, strings.Join(ms, " ")))
	}
	sort.Strings(out)
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// refMatch is the reference matcher the tests trust: a direct reading of MQTT
// section 4.7 with strings.Split, written independently of MatchFilter.
func refMatch(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	f := strings.Split(filter, "/")
	tp := strings.Split(topic, "/")
	for i, ft := range f {
		if ft == "#" {
			// '#' must be last; it matches the parent and all children,
			// i.e. whatever remains of the topic, including nothing.
			return i == len(f)-1
		}
		if i >= len(tp) {
			return false
		}
		if ft != "+" && ft != tp[i] {
			return false
		}
	}
	return len(f) == len(tp)
}

// checkCache verifies the cache's three views of its contents agree: the
// count, the sync.Map and the trie of names, and that it respects its bound.
func checkCache[V any](t *testing.T, tr *Tree[V]) {
	t.Helper()
	c := tr.cache
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	inMap := 0
	c.m.Range(func(k, _ any) bool {
		inMap++
		if n := c.names.lookup(k.(string)); n == nil || !n.set {
			t.Errorf("cached topic %q missing from the names trie", k)
		}
		return true
	})
	inTrie := 0
	c.names.match("#", false, func(string, struct{}) bool { inTrie++; return true })
	if inMap != c.count || inTrie != c.count || c.count > c.size {
		t.Errorf("cache count %d, map %d, trie %d, bound %d", c.count, inMap, inTrie, c.size)
	}
}
