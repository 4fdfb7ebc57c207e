package mqtt

import (
	"fmt"
	"sync"
	"testing"

	"github.com/beaconmq/beacon/packets"
)

func sharedMembers(n int) []string {
	m := make([]string, n)
	for i := range m {
		m[i] = fmt.Sprintf("client-%d", i)
	}
	return m
}

func TestParseSharedStrategy(t *testing.T) {
	for _, s := range []string{"round_robin", "random", "sticky", "hash_clientid", "hash_topic", "hash_key"} {
		got, err := parseSharedStrategy(s)
		if err != nil || string(got) != s {
			t.Errorf("parseSharedStrategy(%q) = %q, %v", s, got, err)
		}
	}
	if got, err := parseSharedStrategy(""); err != nil || got != sharedRoundRobin {
		t.Errorf("empty strategy = %q, %v; want round_robin", got, err)
	}
	if _, err := parseSharedStrategy("roundrobin"); err == nil {
		t.Error("unknown strategy accepted")
	}
}

func TestSharedPickEmptyAndSingle(t *testing.T) {
	for _, s := range []sharedStrategy{sharedRoundRobin, sharedRandom, sharedSticky, sharedHashClientID, sharedHashTopic, sharedHashKey} {
		p := newSharedPicker(s, nil)
		if i := p.pick("g", "a/#", nil, "a/b", "pub", "k"); i != -1 {
			t.Errorf("%s: pick with no members = %d, want -1", s, i)
		}
		if i := p.pick("g", "a/#", []string{"only"}, "a/b", "pub", "k"); i != 0 {
			t.Errorf("%s: pick with one member = %d, want 0", s, i)
		}
	}
}

func TestSharedRoundRobinFair(t *testing.T) {
	p := newSharedPicker("", nil)
	members := sharedMembers(3)
	counts := make([]int, 3)
	var prev = -1
	for range 300 {
		i := p.pick("g", "t/#", members, "t/x", "pub", "")
		if i == prev {
			t.Fatalf("round robin picked member %d twice in a row", i)
		}
		prev = i
		counts[i]++
	}
	for i, c := range counts {
		if c != 100 {
			t.Errorf("member %d got %d of 300 messages, want exactly 100", i, c)
		}
	}
}

func TestSharedRoundRobinConcurrentFair(t *testing.T) {
	p := newSharedPicker(sharedRoundRobin, nil)
	members := sharedMembers(4)
	var mu sync.Mutex
	counts := make([]int, 4)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]int, 4)
			for range 1000 {
				local[p.pick("g", "f", members, "t", "", "")]++
			}
			mu.Lock()
			for i := range local {
				counts[i] += local[i]
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	for i, c := range counts {
		if c != 2000 {
			t.Errorf("member %d got %d of 8000, want exactly 2000", i, c)
		}
	}
}

func TestSharedStateKeyedByGroupAndFilter(t *testing.T) {
	p := newSharedPicker(sharedRoundRobin, nil)
	members := sharedMembers(2)
	// Each group+filter has its own counter: the first pick of every new
	// pair starts at member 0.
	for _, gf := range [][2]string{{"g", "a"}, {"g", "b"}, {"h", "a"}} {
		if i := p.pick(gf[0], gf[1], members, "t", "", ""); i != 0 {
			t.Errorf("first pick of %v = %d, want 0", gf, i)
		}
	}
	if i := p.pick("g", "a", members, "t", "", ""); i != 1 {
		t.Errorf("second pick of g/a = %d, want 1", i)
	}
	p.forget("g", "a")
	if i := p.pick("g", "a", members, "t", "", ""); i != 0 {
		t.Errorf("pick after forget = %d, want 0 (state reset)", i)
	}
}

func TestSharedRandomUsesEveryMember(t *testing.T) {
	p := newSharedPicker(sharedRandom, nil)
	members := sharedMembers(4)
	counts := make([]int, 4)
	for range 4000 {
		i := p.pick("g", "f", members, "t", "", "")
		if i < 0 || i >= 4 {
			t.Fatalf("random pick out of range: %d", i)
		}
		counts[i]++
	}
	// Expect 1000 each; 700 is more than 10 standard deviations away.
	for i, c := range counts {
		if c < 700 || c > 1300 {
			t.Errorf("member %d got %d of 4000 random picks", i, c)
		}
	}
}

func TestSharedSticky(t *testing.T) {
	p := newSharedPicker(sharedRoundRobin, map[string]sharedStrategy{"s": sharedSticky})
	members := sharedMembers(3)
	first := p.pick("s", "f", members, "t1", "a", "")
	for k := range 50 {
		if i := p.pick("s", "f", members, fmt.Sprintf("t%d", k), "b", ""); i != first {
			t.Fatalf("sticky pick %d = %d, want %d", k, i, first)
		}
	}
	// Member order changes do not move the sticky member.
	stickyID := members[first]
	reversed := []string{members[2], members[1], members[0]}
	if i := p.pick("s", "f", reversed, "t", "", ""); reversed[i] != stickyID {
		t.Errorf("after reorder picked %s, want %s", reversed[i], stickyID)
	}
	// The sticky member leaves: another becomes sticky and stays.
	var rest []string
	for _, m := range members {
		if m != stickyID {
			rest = append(rest, m)
		}
	}
	second := p.pick("s", "f", rest, "t", "", "")
	for range 20 {
		if i := p.pick("s", "f", rest, "t", "", ""); i != second {
			t.Fatalf("new sticky member not kept: %d then %d", second, i)
		}
	}
	// The old member rejoining does not take it back.
	back := append([]string{stickyID}, rest...)
	if i := p.pick("s", "f", back, "t", "", ""); back[i] != rest[second] {
		t.Errorf("rejoin moved sticky to %s, want %s", back[i], rest[second])
	}
	// Other groups are unaffected: default strategy is round robin.
	a := p.pick("rr", "f", members, "t", "", "")
	b := p.pick("rr", "f", members, "t", "", "")
	if a == b {
		t.Errorf("group rr is not round robin: %d then %d", a, b)
	}
}

func TestSharedHashStable(t *testing.T) {
	members := sharedMembers(5)
	cases := []struct {
		s             sharedStrategy
		topic, pub, k func(i int) string
	}{
		{sharedHashClientID, func(int) string { return "t" }, func(i int) string { return fmt.Sprintf("pub-%d", i) }, func(int) string { return "" }},
		{sharedHashTopic, func(i int) string { return fmt.Sprintf("dev/%d", i) }, func(int) string { return "p" }, func(int) string { return "" }},
		{sharedHashKey, func(int) string { return "t" }, func(int) string { return "p" }, func(i int) string { return fmt.Sprintf("order-%d", i) }},
	}
	for _, c := range cases {
		p := newSharedPicker(c.s, nil)
		used := map[int]bool{}
		for key := range 200 {
			first := p.pick("g", "f", members, c.topic(key), c.pub(key), c.k(key))
			used[first] = true
			for range 3 {
				if i := p.pick("g", "f", members, c.topic(key), c.pub(key), c.k(key)); i != first {
					t.Fatalf("%s: key %d went to %d then %d", c.s, key, first, i)
				}
			}
			// Independent of member order.
			rev := make([]string, len(members))
			for j := range members {
				rev[len(members)-1-j] = members[j]
			}
			if i := p.pick("g", "f", rev, c.topic(key), c.pub(key), c.k(key)); rev[i] != members[first] {
				t.Fatalf("%s: key %d depends on member order", c.s, key)
			}
		}
		if len(used) != len(members) {
			t.Errorf("%s: 200 keys used only %d of %d members", c.s, len(used), len(members))
		}
	}
}

func TestSharedHashFallbackRoundRobin(t *testing.T) {
	members := sharedMembers(2)
	for _, s := range []sharedStrategy{sharedHashKey, sharedHashClientID} {
		p := newSharedPicker(s, nil)
		a := p.pick("g", "f", members, "t", "", "")
		b := p.pick("g", "f", members, "t", "", "")
		if a == b {
			t.Errorf("%s without a key should fall back to round robin, got %d twice", s, a)
		}
	}
}

func TestSharedRendezvousMinimalMovement(t *testing.T) {
	members := sharedMembers(5)
	const keys = 5000
	before := make([]string, keys)
	counts := map[string]int{}
	for k := range keys {
		before[k] = members[rendezvous(fmt.Sprintf("key-%d", k), members)]
		counts[before[k]]++
	}
	// Balance: expect 1000 per member; 800..1200 is > 6 standard deviations.
	for m, c := range counts {
		if c < 800 || c > 1200 {
			t.Errorf("member %s owns %d of %d keys", m, c, keys)
		}
	}
	// Remove member 2: only its keys move, and they spread over the rest.
	leaving := members[2]
	rest := append(append([]string{}, members[:2]...), members[3:]...)
	moved := map[string]int{}
	for k := range keys {
		now := rest[rendezvous(fmt.Sprintf("key-%d", k), rest)]
		if before[k] != leaving && now != before[k] {
			t.Fatalf("key-%d moved from %s to %s although %s stayed", k, before[k], now, before[k])
		}
		if before[k] == leaving {
			moved[now]++
		}
	}
	if len(moved) != len(rest) {
		t.Errorf("keys of the leaving member went to only %d of %d members: %v", len(moved), len(rest), moved)
	}
	// Add a member: keys only move to the newcomer.
	grown := append(append([]string{}, members...), "client-new")
	took := 0
	for k := range keys {
		now := grown[rendezvous(fmt.Sprintf("key-%d", k), grown)]
		if now != before[k] && now != "client-new" {
			t.Fatalf("key-%d moved from %s to %s, not to the new member", k, before[k], now)
		}
		if now == "client-new" {
			took++
		}
	}
	// Expect keys/6 ≈ 833.
	if took < 600 || took > 1100 {
		t.Errorf("new member took %d of %d keys, want about %d", took, keys, keys/6)
	}
}

func TestSharedKey(t *testing.T) {
	user := []packets.UserProperty{{Key: "a", Value: "1"}, {Key: "partition-key", Value: "dev-7"}, {Key: "partition-key", Value: "x"}}
	if got := sharedKey(user, defaultSharedKeyProperty); got != "dev-7" {
		t.Errorf("sharedKey = %q, want dev-7 (first match)", got)
	}
	if got := sharedKey(user, "missing"); got != "" {
		t.Errorf("sharedKey missing = %q", got)
	}
}

func BenchmarkSharedPickRoundRobin(b *testing.B) {
	p := newSharedPicker(sharedRoundRobin, nil)
	members := sharedMembers(8)
	b.ReportAllocs()
	for b.Loop() {
		p.pick("g", "f", members, "t", "p", "")
	}
}

func BenchmarkSharedPickHashKey(b *testing.B) {
	p := newSharedPicker(sharedHashKey, nil)
	members := sharedMembers(8)
	b.ReportAllocs()
	for b.Loop() {
		p.pick("g", "f", members, "t", "p", "device-000123")
	}
}
