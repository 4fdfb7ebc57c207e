package topics

import (
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// Small alphabets so random filters and topics collide often.
var (
	topicTokens  = []string{"a", "b", "c", "", "$x", "A", "a b"}
	filterTokens = []string{"a", "b", "c", "", "$x", "A", "+", "+", "+", "#"}
)

func randTopic(r *rand.Rand) string {
	n := 1 + r.IntN(4)
	parts := make([]string, n)
	for i := range parts {
		parts[i] = topicTokens[r.IntN(len(topicTokens))]
	}
	return strings.Join(parts, "/")
}

// randFilter returns a valid filter: '#' only as the last level.
func randFilter(r *rand.Rand) string {
	n := 1 + r.IntN(4)
	parts := make([]string, n)
	for i := range parts {
		tok := filterTokens[r.IntN(len(filterTokens))]
		for tok == "#" && i != n-1 {
			tok = filterTokens[r.IntN(len(filterTokens))]
		}
		parts[i] = tok
	}
	f := strings.Join(parts, "/")
	if r.IntN(5) == 0 {
		f = "$share/" + []string{"g1", "g2"}[r.IntN(2)] + "/" + f
	}
	return f
}

// refTree is the naive model: a list of subscriptions matched one by one.
type refSub struct {
	filter, key string
	value       int
	seq         int // subscription order, for group member order
}

type refTree struct {
	subs []refSub
	seq  int
}

func (m *refTree) find(filter, key string) int {
	for i, s := range m.subs {
		if s.filter == filter && s.key == key {
			return i
		}
	}
	return -1
}

func (m *refTree) subscribe(filter, key string, v int) bool {
	if i := m.find(filter, key); i >= 0 {
		m.subs[i].value = v
		return false
	}
	m.seq++
	m.subs = append(m.subs, refSub{filter, key, v, m.seq})
	return true
}

func (m *refTree) unsubscribe(filter, key string) bool {
	i := m.find(filter, key)
	if i < 0 {
		return false
	}
	m.subs = append(m.subs[:i], m.subs[i+1:]...)
	return true
}

func (m *refTree) match(topic string) []string {
	var out []string
	groups := map[string][]refSub{}
	for _, s := range m.subs {
		if g, inner, ok := ParseShared(s.filter); ok {
			if refMatch(inner, topic) {
				groups[g+" "+s.filter] = append(groups[g+" "+s.filter], s)
			}
			continue
		}
		if refMatch(s.filter, topic) {
			out = append(out, s.key+"@"+s.filter+"="+strconv.Itoa(s.value))
		}
	}
	for name, ms := range groups {
		sort.Slice(ms, func(i, j int) bool { return ms[i].seq < ms[j].seq })
		var keys []string
		for _, s := range ms {
			keys = append(keys, s.key+"="+strconv.Itoa(s.value))
		}
		out = append(out, "share "+name+" ["+strings.Join(keys, " ")+"]")
	}
	sort.Strings(out)
	return out
}

func TestMatchFilterRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		f, tp := randFilter(r), randTopic(r)
		if _, inner, ok := ParseShared(f); ok {
			f = inner
		}
		if MatchFilter(f, tp) != refMatch(f, tp) {
			t.Fatalf("MatchFilter(%q, %q) = %v, reference says %v", f, tp, !refMatch(f, tp), refMatch(f, tp))
		}
	}
}

// TestTreeRandomAgainstReference drives a Tree and the naive model with the
// same random subscribe/unsubscribe/replace operations and compares every
// Match, cache on and off.
func TestTreeRandomAgainstReference(t *testing.T) {
	seeds, steps := uint64(10), 600
	if raceEnabled {
		seeds, steps = 4, 300
	}
	eachCache(t, func(t *testing.T, size int) {
		for seed := uint64(0); seed < seeds; seed++ {
			r := rand.New(rand.NewPCG(seed, 42))
			tr := New[int](size)
			ref := &refTree{}
			var live [][2]string
			for step := 0; step < steps; step++ {
				switch op := r.IntN(10); {
				case op < 5:
					f, k := randFilter(r), "c"+strconv.Itoa(r.IntN(6))
					v := r.IntN(100)
					if got, want := tr.Subscribe(f, k, v), ref.subscribe(f, k, v); got != want {
						t.Fatalf("seed %d step %d: Subscribe(%q,%q) = %v, want %v", seed, step, f, k, got, want)
					}
					live = append(live, [2]string{f, k})
				case op < 8 && len(live) > 0:
					i := r.IntN(len(live))
					f, k := live[i][0], live[i][1]
					if got, want := tr.Unsubscribe(f, k), ref.unsubscribe(f, k); got != want {
						t.Fatalf("seed %d step %d: Unsubscribe(%q,%q) = %v, want %v", seed, step, f, k, got, want)
					}
				default:
					f, k := randFilter(r), "c"+strconv.Itoa(r.IntN(6))
					if got, want := tr.Unsubscribe(f, k), ref.unsubscribe(f, k); got != want {
						t.Fatalf("seed %d step %d: Unsubscribe(%q,%q) = %v, want %v", seed, step, f, k, got, want)
					}
				}
				if tr.Count() != len(ref.subs) {
					t.Fatalf("seed %d step %d: Count %d, want %d", seed, step, tr.Count(), len(ref.subs))
				}
				for j := 0; j < 8; j++ {
					tp := randTopic(r)
					got, want := render(tr.Match(tp)), ref.match(tp)
					if !equalStrings(got, want) {
						t.Fatalf("seed %d step %d topic %q:\n got %v\nwant %v", seed, step, tp, got, want)
					}
				}
				if step%50 == 0 {
					checkCache(t, tr)
				}
			}
			// Remove everything: the tree must be pruned back to nothing.
			for _, s := range append([]refSub(nil), ref.subs...) {
				if !tr.Unsubscribe(s.filter, s.key) {
					t.Fatalf("seed %d: final Unsubscribe(%q,%q) failed", seed, s.filter, s.key)
				}
			}
			if tr.Count() != 0 || !tr.root.isEmpty() {
				t.Fatalf("seed %d: Count=%d, root empty=%v", seed, tr.Count(), tr.root.isEmpty())
			}
		}
	})
}

func TestIndexRandomAgainstReference(t *testing.T) {
	for seed := uint64(0); seed < 20; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		x := NewIndex[int]()
		ref := map[string]int{}
		for step := 0; step < 400; step++ {
			tp := randTopic(r)
			if r.IntN(3) == 0 {
				_, had := ref[tp]
				delete(ref, tp)
				if got := x.Delete(tp); got != had {
					t.Fatalf("seed %d: Delete(%q) = %v, want %v", seed, tp, got, had)
				}
			} else {
				v := r.IntN(1000)
				ref[tp] = v
				x.Set(tp, v)
			}
			if x.Len() != len(ref) {
				t.Fatalf("seed %d step %d: Len %d, want %d", seed, step, x.Len(), len(ref))
			}
			f := randFilter(r)
			if _, inner, ok := ParseShared(f); ok {
				f = inner
			}
			var want, got []string
			for k, v := range ref {
				if refMatch(f, k) {
					want = append(want, k+"="+strconv.Itoa(v))
				}
			}
			x.Match(f, func(topic string, v int) bool {
				got = append(got, topic+"="+strconv.Itoa(v))
				return true
			})
			sort.Strings(want)
			sort.Strings(got)
			if !equalStrings(got, want) {
				t.Fatalf("seed %d step %d filter %q:\n got %v\nwant %v", seed, step, f, got, want)
			}
		}
		for k := range ref {
			if !x.Delete(k) {
				t.Fatalf("seed %d: final Delete(%q) failed", seed, k)
			}
		}
		if x.Len() != 0 || x.root.kids.kids != nil || x.root.kids.idx != nil {
			t.Fatalf("seed %d: index not empty after deleting all: len %d", seed, x.Len())
		}
	}
}
