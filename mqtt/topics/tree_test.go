package topics

import (
	"strconv"
	"testing"

	"github.com/beaconmq/beacon/packets"
)

// matchCases hold every example of MQTT 3.1.1 and 5.0 section 4.7 (and
// section 4.8 for shared subscriptions) plus the edge cases around empty
// levels and '$' topics.
var matchCases = []struct {
	filter, topic string
	want          bool
}{
	// 4.7.1.2 multi-level wildcard (both versions).
	{"sport/tennis/player1/#", "sport/tennis/player1", true},
	{"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
	{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
	{"sport/#", "sport", true},
	{"#", "sport", true},
	{"#", "sport/tennis/player1", true},
	{"sport/tennis/player1/#", "sport/tennis/player2", false},
	{"sport/tennis/player1/#", "sport/tennis", false},
	// 4.7.1.3 single-level wildcard.
	{"sport/tennis/+", "sport/tennis/player1", true},
	{"sport/tennis/+", "sport/tennis/player2", true},
	{"sport/tennis/+", "sport/tennis/player1/ranking", false},
	{"sport/+", "sport", false},
	{"sport/+", "sport/", true},
	{"+", "sport", true},
	{"+/tennis/#", "sport/tennis", true},
	{"+/tennis/#", "sport/tennis/player1/ranking", true},
	{"+/tennis/#", "sport/golf", false},
	{"sport/+/player1", "sport/tennis/player1", true},
	{"sport/+/player1", "sport/tennis/player2", false},
	{"+/+", "/finance", true},
	{"/+", "/finance", true},
	{"+", "/finance", false},
	// 4.7.2 topics beginning with '$' [MQTT-4.7.2-1].
	{"#", "$SYS/monitor/Clients", false},
	{"#", "$SYS", false},
	{"+/monitor/Clients", "$SYS/monitor/Clients", false},
	{"+", "$SYS", false},
	{"+/#", "$SYS/x", false},
	{"$SYS/#", "$SYS/monitor/Clients", true},
	{"$SYS/#", "$SYS", true},
	{"$SYS/monitor/+", "$SYS/monitor/Clients", true},
	{"$SYS/+/Clients", "$SYS/monitor/Clients", true},
	{"$dlq/#", "$dlq/bridge/a", true},
	{"a/+", "a/$b", true}, // only the first level is special
	{"a/#", "a/$b/c", true},
	{"#", "a/$b", true},
	// 4.7.3 case sensitivity and no normalisation [MQTT-4.7.3-4].
	{"ACCOUNTS", "Accounts", false},
	{"Accounts", "Accounts", true},
	{"Accounts payable", "Accounts payable", true},
	{"Accounts payable", "Accounts  payable", false},
	{"/finance", "finance", false},
	{"finance", "/finance", false},
	{"caf\u00e9", "cafe\u0301", false}, // NFC vs NFD: bytes differ
	{"a/b", "a/b/", false},
	// Empty levels.
	{"a//b", "a//b", true},
	{"a/+/b", "a//b", true},
	{"a/+/b", "a/b", false},
	{"/", "/", true},
	{"+/+", "/", true},
	{"+", "/", false},
	{"#", "/", true},
	{"/#", "/", true},
	{"/#", "/a/b", true},
	{"//", "//", true},
	{"a/#", "a/", true},
	{"a/#", "a//", true},
	{"+/#", "a", true},
	{"+/+/#", "a", false},
	{"a/b/c", "a/b", false},
	{"a/b", "a/b/c", false},
}

func TestMatchFilterExamples(t *testing.T) {
	for _, c := range matchCases {
		if got := MatchFilter(c.filter, c.topic); got != c.want {
			t.Errorf("MatchFilter(%q, %q) = %v, want %v", c.filter, c.topic, got, c.want)
		}
		if got := refMatch(c.filter, c.topic); got != c.want {
			t.Errorf("refMatch(%q, %q) = %v, want %v (reference is wrong)", c.filter, c.topic, got, c.want)
		}
	}
}

func TestTreeMatchExamples(t *testing.T) {
	eachCache(t, func(t *testing.T, size int) {
		for _, c := range matchCases {
			tr := New[int](size)
			tr.Subscribe(c.filter, "c1", 1)
			// Ask three times: a topic is cached on its second miss, so
			// the third answer comes from the cache.
			for i := 0; i < 3; i++ {
				r := tr.Match(c.topic)
				got := len(r.Subscribers) == 1
				if got != c.want || len(r.Groups) != 0 {
					t.Errorf("filter %q topic %q: got %v, want match=%v", c.filter, c.topic, render(r), c.want)
				}
				if got && (r.Subscribers[0].Filter != c.filter || r.Subscribers[0].Key != "c1") {
					t.Errorf("filter %q topic %q: entry %+v", c.filter, c.topic, r.Subscribers[0])
				}
			}
			// The same through a shared subscription.
			tr.Subscribe("$share/g/"+c.filter, "c2", 2)
			r := tr.Match(c.topic)
			if got := len(r.Groups) == 1; got != c.want {
				t.Errorf("shared filter %q topic %q: got %v, want match=%v", c.filter, c.topic, render(r), c.want)
			}
		}
	})
}

// TestTreeAllFiltersAtOnce subscribes every example filter together, each
// by its own client, so the paths share nodes, and checks each topic gets
// exactly the reference set.
func TestTreeAllFiltersAtOnce(t *testing.T) {
	eachCache(t, func(t *testing.T, size int) {
		tr := New[int](size)
		filters := map[string]bool{}
		for _, c := range matchCases {
			filters[c.filter] = true
		}
		for f := range filters {
			if !tr.Subscribe(f, "k:"+f, 7) {
				t.Fatalf("Subscribe(%q) not new", f)
			}
		}
		if tr.Count() != len(filters) {
			t.Fatalf("Count = %d, want %d", tr.Count(), len(filters))
		}
		for _, c := range matchCases {
			want := map[string]bool{}
			for f := range filters {
				if refMatch(f, c.topic) {
					want["k:"+f] = true
				}
			}
			for i := 0; i < 3; i++ {
				r := tr.Match(c.topic)
				got := map[string]bool{}
				for _, e := range r.Subscribers {
					if got[e.Key] {
						t.Errorf("topic %q: %s twice", c.topic, e.Key)
					}
					got[e.Key] = true
					if e.Key != "k:"+e.Filter {
						t.Errorf("topic %q: entry %+v has the wrong filter", c.topic, e)
					}
				}
				if len(got) != len(want) {
					t.Errorf("topic %q: got %v, want %v", c.topic, got, want)
				}
				for k := range want {
					if !got[k] {
						t.Errorf("topic %q: missing %s", c.topic, k)
					}
				}
			}
		}
	})
}

func TestTreeReplaceAndUnsubscribe(t *testing.T) {
	eachCache(t, func(t *testing.T, size int) {
		tr := New[int](size)
		if !tr.Subscribe("a/+", "c1", 1) {
			t.Fatal("first Subscribe not new")
		}
		if got := render(tr.Match("a/b")); !equalStrings(got, []string{"c1@a/+=1"}) {
			t.Fatalf("got %v", got)
		}
		// [MQTT-3.8.4-3] the same filter again replaces the subscription.
		if tr.Subscribe("a/+", "c1", 2) {
			t.Fatal("replacing Subscribe reported new")
		}
		if tr.Count() != 1 {
			t.Fatalf("Count = %d after replace, want 1", tr.Count())
		}
		if got := render(tr.Match("a/b")); !equalStrings(got, []string{"c1@a/+=2"}) {
			t.Fatalf("after replace got %v", got)
		}
		// Overlapping filters of one client are reported separately.
		tr.Subscribe("a/b", "c1", 3)
		tr.Subscribe("#", "c1", 4)
		if got := render(tr.Match("a/b")); !equalStrings(got, []string{"c1@#=4", "c1@a/+=2", "c1@a/b=3"}) {
			t.Fatalf("overlap got %v", got)
		}
		// [MQTT-3.10.4-1] literal comparison: "a/b" does not remove "a/+"
		// and "a/c" (which "a/+" matches) removes nothing.
		if tr.Unsubscribe("a/c", "c1") {
			t.Fatal("Unsubscribe(a/c) removed something")
		}
		if tr.Unsubscribe("a/+", "c2") {
			t.Fatal("Unsubscribe of another client's filter removed something")
		}
		if !tr.Unsubscribe("a/b", "c1") {
			t.Fatal("Unsubscribe(a/b) removed nothing")
		}
		if tr.Unsubscribe("a/b", "c1") {
			t.Fatal("second Unsubscribe(a/b) removed something")
		}
		if got := render(tr.Match("a/b")); !equalStrings(got, []string{"c1@#=4", "c1@a/+=2"}) {
			t.Fatalf("after unsubscribe got %v", got)
		}
		if !tr.Unsubscribe("a/+", "c1") || !tr.Unsubscribe("#", "c1") {
			t.Fatal("Unsubscribe of remaining filters failed")
		}
		if r := tr.Match("a/b"); len(r.Subscribers)+len(r.Groups) != 0 {
			t.Fatalf("empty tree matched %v", render(r))
		}
		if tr.Count() != 0 {
			t.Fatalf("Count = %d, want 0", tr.Count())
		}
		if !tr.root.isEmpty() {
			t.Fatalf("tree not pruned: %+v", tr.root)
		}
	})
}

func TestTreeManySubscribersOneFilter(t *testing.T) {
	// Crosses subIndexThreshold both ways.
	eachCache(t, func(t *testing.T, size int) {
		tr := New[int](size)
		const n = 100
		for i := 0; i < n; i++ {
			if !tr.Subscribe("bcast/#", key(i), i) {
				t.Fatalf("Subscribe %d not new", i)
			}
		}
		for i := 0; i < n; i += 3 {
			if tr.Subscribe("bcast/#", key(i), -i) {
				t.Fatalf("replace %d reported new", i)
			}
		}
		check := func(present func(int) bool) {
			t.Helper()
			r := tr.Match("bcast/x")
			got := map[string]int{}
			for _, e := range r.Subscribers {
				got[e.Key] = e.Value
			}
			for i := 0; i < n; i++ {
				v, ok := got[key(i)]
				if ok != present(i) {
					t.Fatalf("client %d present=%v, want %v", i, ok, present(i))
				}
				want := i
				if i%3 == 0 {
					want = -i
				}
				if ok && v != want {
					t.Fatalf("client %d value %d, want %d", i, v, want)
				}
			}
			if len(r.Subscribers) != len(got) {
				t.Fatalf("duplicates: %d entries for %d clients", len(r.Subscribers), len(got))
			}
		}
		check(func(int) bool { return true })
		for i := 0; i < n; i += 2 {
			if !tr.Unsubscribe("bcast/#", key(i)) {
				t.Fatalf("Unsubscribe %d failed", i)
			}
		}
		check(func(i int) bool { return i%2 == 1 })
		for i := 1; i < n; i += 2 {
			if !tr.Unsubscribe("bcast/#", key(i)) {
				t.Fatalf("Unsubscribe %d failed", i)
			}
		}
		check(func(int) bool { return false })
		if tr.Count() != 0 || !tr.root.isEmpty() {
			t.Fatalf("Count=%d, root empty=%v", tr.Count(), tr.root.isEmpty())
		}
	})
}

func key(i int) string { return "client-" + strconv.Itoa(i) }

func TestTreeSharedGroups(t *testing.T) {
	eachCache(t, func(t *testing.T, size int) {
		tr := New[int](size)
		// MQTT 5.0 section 4.8.2 example: two groups on the same filter.
		tr.Subscribe("$share/consumer1/sport/tennis/+", "c1", 1)
		tr.Subscribe("$share/consumer1/sport/tennis/+", "c2", 2)
		tr.Subscribe("$share/consumer2/sport/tennis/+", "c3", 3)
		tr.Subscribe("$share/consumer1/sport/#", "c1", 4) // same group, other filter
		tr.Subscribe("sport/tennis/+", "c1", 5)           // non-shared of the same client
		tr.Subscribe("$share/consumer1//finance", "c4", 6)
		if tr.Count() != 6 {
			t.Fatalf("Count = %d, want 6", tr.Count())
		}
		want := []string{
			"c1@sport/tennis/+=5",
			"share consumer1 $share/consumer1/sport/# [c1=4]",
			"share consumer1 $share/consumer1/sport/tennis/+ [c1=1 c2=2]",
			"share consumer2 $share/consumer2/sport/tennis/+ [c3=3]",
		}
		if got := render(tr.Match("sport/tennis/player1")); !equalStrings(got, want) {
			t.Fatalf("got %v\nwant %v", got, want)
		}
		// The inner filter "/finance" matches "/finance", not "finance".
		if got := render(tr.Match("/finance")); !equalStrings(got, []string{"share consumer1 $share/consumer1//finance [c4=6]"}) {
			t.Fatalf("/finance got %v", got)
		}
		if r := tr.Match("finance"); len(r.Groups) != 0 {
			t.Fatalf("finance matched %v", render(r))
		}
		// "$share/..." is not a topic prefix: a publish to "$share/consumer1/sport"
		// is a '$' topic that no wildcard filter here matches.
		if r := tr.Match("$share/consumer1/sport/tennis/x"); len(r.Subscribers)+len(r.Groups) != 0 {
			t.Fatalf("$share topic matched %v", render(r))
		}

		// Members stay in subscription order; a replace keeps the position.
		tr.Subscribe("$share/consumer1/sport/tennis/+", "c0", 0)
		tr.Subscribe("$share/consumer1/sport/tennis/+", "c1", 11)
		g := findGroup(tr.Match("sport/tennis/x"), "$share/consumer1/sport/tennis/+")
		if got := memberKeys(g); got != "c1=11 c2=2 c0=0" {
			t.Fatalf("members %q", got)
		}
		// Removing from the middle keeps the others' order.
		if !tr.Unsubscribe("$share/consumer1/sport/tennis/+", "c2") {
			t.Fatal("shared Unsubscribe failed")
		}
		g = findGroup(tr.Match("sport/tennis/x"), "$share/consumer1/sport/tennis/+")
		if got := memberKeys(g); got != "c1=11 c0=0" {
			t.Fatalf("members after removal %q", got)
		}
		// Unsubscribing the non-shared filter leaves the shared ones, and
		// vice versa: they are different subscriptions.
		if tr.Unsubscribe("$share/consumer2/sport/tennis/+", "c1") {
			t.Fatal("removed c1 from a group it is not in")
		}
		if !tr.Unsubscribe("sport/tennis/+", "c1") {
			t.Fatal("non-shared Unsubscribe failed")
		}
		want = []string{
			"share consumer1 $share/consumer1/sport/# [c1=4]",
			"share consumer1 $share/consumer1/sport/tennis/+ [c1=11 c0=0]",
			"share consumer2 $share/consumer2/sport/tennis/+ [c3=3]",
		}
		if got := render(tr.Match("sport/tennis/player1")); !equalStrings(got, want) {
			t.Fatalf("got %v\nwant %v", got, want)
		}
		for _, u := range [][2]string{
			{"$share/consumer1/sport/tennis/+", "c1"},
			{"$share/consumer1/sport/tennis/+", "c0"},
			{"$share/consumer2/sport/tennis/+", "c3"},
			{"$share/consumer1/sport/#", "c1"},
			{"$share/consumer1//finance", "c4"},
		} {
			if !tr.Unsubscribe(u[0], u[1]) {
				t.Fatalf("Unsubscribe(%q, %q) failed", u[0], u[1])
			}
		}
		if tr.Count() != 0 || !tr.root.isEmpty() {
			t.Fatalf("Count=%d, root empty=%v", tr.Count(), tr.root.isEmpty())
		}
	})
}

func findGroup(r *Result[int], filter string) *Group[int] {
	for i := range r.Groups {
		if r.Groups[i].Filter == filter {
			return &r.Groups[i]
		}
	}
	return nil
}

func memberKeys(g *Group[int]) string {
	if g == nil {
		return "<no group>"
	}
	s := ""
	for i, m := range g.Members {
		if i > 0 {
			s += " "
		}
		s += m.Key + "=" + strconv.Itoa(m.Value)
	}
	return s
}

// TestTreeCachedResultIsStable checks that a Result handed out earlier is
// not changed by later subscription changes (callers may still be iterating
// over it).
func TestTreeCachedResultIsStable(t *testing.T) {
	eachCache(t, func(t *testing.T, size int) {
		tr := New[int](size)
		tr.Subscribe("a/#", "c1", 1)
		tr.Subscribe("$share/g/a/#", "c2", 2)
		r := tr.Match("a/b")
		before := render(r)
		tr.Subscribe("a/#", "c1", 100)
		tr.Subscribe("$share/g/a/#", "c2", 200)
		tr.Subscribe("a/+", "c3", 3)
		tr.Unsubscribe("a/#", "c1")
		if got := render(r); !equalStrings(got, before) {
			t.Fatalf("old result changed: %v, was %v", got, before)
		}
		want := []string{"c3@a/+=3", "share g $share/g/a/# [c2=200]"}
		if got := render(tr.Match("a/b")); !equalStrings(got, want) {
			t.Fatalf("new result %v, want %v", got, want)
		}
	})
}

func TestTreeCacheBounded(t *testing.T) {
	for _, size := range []int{1, 2, 100, 1000, 5000} {
		tr := New[int](size)
		tr.Subscribe("#", "c", 1)
		for i := 0; i < 3*size+10; i++ {
			tr.Match("t/" + strconv.Itoa(i))
			tr.Match("t/" + strconv.Itoa(i)) // admitted on the second miss
		}
		if n := tr.cache.len(); n > size || n == 0 {
			t.Errorf("cache size %d: holds %d entries", size, n)
		}
	}
	if New[int](0).cache != nil {
		t.Error("cacheSize 0 created a cache")
	}
}

// TestTreeCacheInvalidation checks that only affected topics are dropped
// from the cache and that the unaffected ones stay cached.
func TestTreeCacheInvalidation(t *testing.T) {
	tr := New[int](1024)
	tr.Subscribe("a/+", "c1", 1)
	tr.Match("a/x")
	ra := tr.Match("a/x")
	if tr.Match("a/x") != ra {
		t.Fatal("a/x not cached after two misses")
	}
	tr.Match("b/x")
	rb := tr.Match("b/x")
	if tr.cache.len() != 2 {
		t.Fatalf("cache holds %d topics, want 2", tr.cache.len())
	}
	tr.Subscribe("b/#", "c2", 2)
	if tr.Match("a/x") != ra {
		t.Error("unaffected topic a/x was recomputed")
	}
	if got := tr.Match("b/x"); got == rb || len(got.Subscribers) != 1 {
		t.Errorf("affected topic b/x not recomputed: %v", render(got))
	}
	// A topic seen once is not cached (admission on the second miss).
	tr.Match("c/x")
	if n := tr.cache.len(); n != 2 {
		t.Errorf("cache holds %d topics after a single miss on c/x, want 2", n)
	}
}

func TestParseShared(t *testing.T) {
	for _, c := range []struct {
		in           string
		group, inner string
		ok           bool
	}{
		{"$share/g/a/b", "g", "a/b", true},
		{"$share/g//a", "g", "/a", true},
		{"$share/g/#", "g", "#", true},
		{"$share//a", "", "", false},   // empty name [MQTT-4.8.2-1]
		{"$share/g", "", "", false},    // no filter
		{"$share/g/", "", "", false},   // empty filter
		{"$share/g+/a", "", "", false}, // [MQTT-4.8.2-2]
		{"$share/#/a", "", "", false},
		{"$shared/g/a", "", "", false},
		{"a/$share/g/b", "", "", false},
	} {
		g, in, ok := ParseShared(c.in)
		if g != c.group || in != c.inner || ok != c.ok {
			t.Errorf("ParseShared(%q) = %q, %q, %v", c.in, g, in, ok)
		}
	}
}

// TestCallerValidation: the tree takes filters and topics as validated by
// the codec (packets.ValidTopicFilter, packets.ValidTopicName), which the
// broker calls before Subscribe and publish; these are the forms the tree's
// matching rules rely on.
func TestCallerValidation(t *testing.T) {
	for _, c := range []struct {
		filter string
		valid  bool
	}{
		{"#", true}, {"+", true}, {"sport/tennis/#", true}, {"+/tennis/#", true},
		{"sport/+/player1", true}, {"/", true}, {"a//b", true}, {"$SYS/#", true},
		{"$share/g/a/+", true},
		{"", false},
		{"sport/tennis#", false}, {"sport/tennis/#/ranking", false}, {"#/", false},
		{"sport+", false}, {"a/+b/c", false},
		{"a\x00b", false},
		{"$share/g+/a", false}, {"$share//a", false}, {"$share/g/a#", false},
		{string(make([]byte, 65536)), false},
	} {
		if err := packets.ValidTopicFilter(c.filter); (err == nil) != c.valid {
			t.Errorf("packets.ValidTopicFilter(%.20q) = %v, want valid %v", c.filter, err, c.valid)
		}
	}
	for _, c := range []struct {
		topic string
		valid bool
	}{
		{"a", true}, {"/", true}, {"a//b", true}, {"$SYS/x", true}, {"Accounts payable", true},
		{"", false}, {"a/+", false}, {"a/#", false}, {"a+", false},
		{"a\x00", false},
	} {
		if err := packets.ValidTopicName(c.topic); (err == nil) != c.valid {
			t.Errorf("packets.ValidTopicName(%q) = %v, want valid %v", c.topic, err, c.valid)
		}
	}
}

// TestTreeManyChildren crosses the child-index threshold of one level both
// ways: 100 devices each with its own filter.
func TestTreeManyChildren(t *testing.T) {
	eachCache(t, func(t *testing.T, size int) {
		tr := New[int](size)
		const n = 100
		for i := 0; i < n; i++ {
			tr.Subscribe("d/"+strconv.Itoa(i)+"/cmd", key(i), i)
		}
		tr.Subscribe("d/+/cmd", "all", -1)
		check := func(present func(int) bool) {
			t.Helper()
			for i := 0; i < n; i++ {
				for j := 0; j < 3; j++ {
					want := []string{"all@d/+/cmd=-1"}
					if present(i) {
						want = append(want, key(i)+"@d/"+strconv.Itoa(i)+"/cmd="+strconv.Itoa(i))
					}
					if got := render(tr.Match("d/" + strconv.Itoa(i) + "/cmd")); !equalStrings(got, want) {
						t.Fatalf("device %d: got %v, want %v", i, got, want)
					}
				}
			}
		}
		check(func(int) bool { return true })
		for i := 0; i < n; i += 2 {
			if !tr.Unsubscribe("d/"+strconv.Itoa(i)+"/cmd", key(i)) {
				t.Fatalf("Unsubscribe %d failed", i)
			}
		}
		check(func(i int) bool { return i%2 == 1 })
		for i := 1; i < n-3; i += 2 {
			tr.Unsubscribe("d/"+strconv.Itoa(i)+"/cmd", key(i))
		}
		check(func(i int) bool { return i >= n-3 && i%2 == 1 })
		if tr.Count() != 3 {
			t.Fatalf("Count = %d, want 3", tr.Count())
		}
	})
}
