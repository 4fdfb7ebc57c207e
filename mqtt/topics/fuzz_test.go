package topics

import (
	"testing"

	"github.com/beaconmq/beacon/packets"
)

// FuzzMatch checks Tree, Index and MatchFilter against the reference matcher
// for arbitrary valid filter/topic pairs, and that invalid input never
// panics. Seeded from the spec examples.
func FuzzMatch(f *testing.F) {
	for _, c := range matchCases {
		f.Add(c.filter, c.topic)
	}
	f.Add("$share/g/a/+", "a/b")
	f.Add("a/#/b", "a/x/b")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, filter, topic string) {
		tr := New[int](16)
		tr.Subscribe(filter, "k", 1)
		x := NewIndex[int]()
		x.Set(topic, 1)
		for i := 0; i < 3; i++ { // past admission into the cache
			tr.Match(topic)
		}
		if packets.ValidTopicFilter(filter) != nil || packets.ValidTopicName(topic) != nil {
			tr.Unsubscribe(filter, "k")
			x.Match(filter, func(string, int) bool { return true })
			return
		}
		inner := filter
		if _, in, ok := ParseShared(filter); ok {
			inner = in
		}
		want := refMatch(inner, topic)
		r := tr.Match(topic)
		if got := len(r.Subscribers)+len(r.Groups) == 1; got != want {
			t.Fatalf("Tree: filter %q topic %q: %v, want %v", filter, topic, render(r), want)
		}
		if got := MatchFilter(inner, topic); got != want {
			t.Fatalf("MatchFilter(%q, %q) = %v, want %v", inner, topic, got, want)
		}
		n := 0
		x.Match(inner, func(string, int) bool { n++; return true })
		if got := n == 1; got != want {
			t.Fatalf("Index: filter %q topic %q: %d matches, want %v", inner, topic, n, want)
		}
		if !tr.Unsubscribe(filter, "k") || tr.Count() != 0 {
			t.Fatalf("Unsubscribe(%q) failed", filter)
		}
		if r := tr.Match(topic); len(r.Subscribers)+len(r.Groups) != 0 {
			t.Fatalf("matched %v after Unsubscribe", render(r))
		}
	})
}
