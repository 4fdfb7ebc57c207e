package topics

import (
	"sort"
	"strconv"
	"testing"
)

func indexMatch(x *Index[int], filter string) []string {
	var out []string
	x.Match(filter, func(topic string, v int) bool {
		out = append(out, topic)
		return true
	})
	sort.Strings(out)
	return out
}

func TestIndexBasics(t *testing.T) {
	x := NewIndex[int]()
	topics := []string{
		"sport", "sport/tennis/player1", "sport/tennis/player1/ranking",
		"sport/tennis/player2", "sport/", "/finance", "finance", "a//b",
		"$SYS/monitor/Clients", "$SYS", "Accounts", "ACCOUNTS", "a/$b",
	}
	for i, tp := range topics {
		x.Set(tp, i)
	}
	x.Set("sport", 100) // replace
	if x.Len() != len(topics) {
		t.Fatalf("Len = %d, want %d", x.Len(), len(topics))
	}
	if v, ok := x.Get("sport"); !ok || v != 100 {
		t.Fatalf("Get(sport) = %d, %v", v, ok)
	}
	if _, ok := x.Get("sport/tennis"); ok {
		t.Fatal("Get of an intermediate level found a value")
	}
	if _, ok := x.Get("nope"); ok {
		t.Fatal("Get(nope) found a value")
	}

	for _, c := range []struct {
		filter string
		want   []string
	}{
		{"sport/tennis/player1/#", []string{"sport/tennis/player1", "sport/tennis/player1/ranking"}},
		{"sport/#", []string{"sport", "sport/", "sport/tennis/player1", "sport/tennis/player1/ranking", "sport/tennis/player2"}},
		{"sport/tennis/+", []string{"sport/tennis/player1", "sport/tennis/player2"}},
		{"sport/+", []string{"sport/"}},
		{"+/+", []string{"/finance", "a/$b", "sport/"}},
		{"/+", []string{"/finance"}},
		{"+", []string{"ACCOUNTS", "Accounts", "finance", "sport"}},
		{"#", []string{"/finance", "ACCOUNTS", "Accounts", "a/$b", "a//b", "finance", "sport", "sport/", "sport/tennis/player1", "sport/tennis/player1/ranking", "sport/tennis/player2"}},
		{"+/monitor/Clients", nil}, // [MQTT-4.7.2-1]
		{"$SYS/#", []string{"$SYS", "$SYS/monitor/Clients"}},
		{"$SYS/monitor/+", []string{"$SYS/monitor/Clients"}},
		{"Accounts", []string{"Accounts"}},
		{"a/+/b", []string{"a//b"}},
		{"a/+", []string{"a/$b"}},
		{"nothing/#", nil},
	} {
		if got := indexMatch(x, c.filter); !equalStrings(got, c.want) {
			t.Errorf("Match(%q) = %v, want %v", c.filter, got, c.want)
		}
	}

	// fn returning false stops the walk.
	n := 0
	x.Match("#", func(string, int) bool { n++; return n < 3 })
	if n != 3 {
		t.Fatalf("callback ran %d times after asking to stop at 3", n)
	}

	if !x.Delete("sport/tennis/player1") || x.Delete("sport/tennis/player1") || x.Delete("sport/tennis") {
		t.Fatal("Delete results wrong")
	}
	if got := indexMatch(x, "sport/tennis/#"); !equalStrings(got, []string{"sport/tennis/player1/ranking", "sport/tennis/player2"}) {
		t.Fatalf("after Delete: %v", got)
	}
	if x.Len() != len(topics)-1 {
		t.Fatalf("Len = %d after Delete", x.Len())
	}
}

// TestIndexManyChildren crosses the child-index threshold both ways.
func TestIndexManyChildren(t *testing.T) {
	x := NewIndex[int]()
	const n = 100
	for i := 0; i < n; i++ {
		x.Set("m/"+strconv.Itoa(i)+"/s", i)
	}
	check := func(present func(int) bool) {
		t.Helper()
		seen := map[string]bool{}
		x.Match("m/+/s", func(topic string, v int) bool {
			if topic != "m/"+strconv.Itoa(v)+"/s" || seen[topic] {
				t.Fatalf("bad or repeated topic %q value %d", topic, v)
			}
			seen[topic] = true
			return true
		})
		for i := 0; i < n; i++ {
			tp := "m/" + strconv.Itoa(i) + "/s"
			_, got := x.Get(tp)
			if seen[tp] != present(i) || got != present(i) {
				t.Fatalf("%s: matched=%v got=%v, want %v", tp, seen[tp], got, present(i))
			}
		}
	}
	check(func(int) bool { return true })
	for i := 0; i < n; i += 2 {
		if !x.Delete("m/" + strconv.Itoa(i) + "/s") {
			t.Fatalf("Delete %d failed", i)
		}
	}
	check(func(i int) bool { return i%2 == 1 })
	for i := 1; i < n-3; i += 2 {
		x.Delete("m/" + strconv.Itoa(i) + "/s")
	}
	check(func(i int) bool { return i >= n-3 && i%2 == 1 })
	if x.Len() != 2 {
		t.Fatalf("Len = %d, want 2", x.Len())
	}
}
