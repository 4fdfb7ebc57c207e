package topics

import (
	"fmt"
	"sync"
	"testing"
)

// TestTreeConcurrent runs subscribers, unsubscribers and matchers at once
// (meant for -race). Each writer goroutine owns its client key and checks,
// after each of its own Subscribe and Unsubscribe calls, that Match already
// reflects it: the cache must never serve a Result older than a completed
// change.
func TestTreeConcurrent(t *testing.T) {
	eachCache(t, func(t *testing.T, size int) {
		tr := New[int](size)
		tr.Subscribe("dev/+/telemetry", "base", 0)
		const writers, matchers = 4, 4
		rounds := 300
		if raceEnabled {
			rounds = 100
		}
		filters := []string{"dev/+/telemetry", "dev/#", "#", "dev/1/telemetry", "$share/g/dev/+/telemetry"}
		var writersWG, matchersWG sync.WaitGroup
		errs := make(chan error, writers+matchers)
		stop := make(chan struct{})

		has := func(r *Result[int], filter, key string) bool {
			for _, e := range r.Subscribers {
				if e.Key == key && e.Filter == filter {
					return true
				}
			}
			for _, g := range r.Groups {
				for _, m := range g.Members {
					if m.Key == key && m.Filter == filter {
						return true
					}
				}
			}
			return false
		}

		for w := 0; w < writers; w++ {
			writersWG.Add(1)
			go func(w int) {
				defer writersWG.Done()
				k := fmt.Sprintf("w%d", w)
				for i := 0; i < rounds; i++ {
					f := filters[(i+w)%len(filters)]
					tr.Subscribe(f, k, i)
					if !has(tr.Match("dev/1/telemetry"), f, k) {
						errs <- fmt.Errorf("%s: Match misses %q right after Subscribe", k, f)
						return
					}
					if !tr.Unsubscribe(f, k) {
						errs <- fmt.Errorf("%s: Unsubscribe(%q) failed", k, f)
						return
					}
					if has(tr.Match("dev/1/telemetry"), f, k) {
						errs <- fmt.Errorf("%s: Match still has %q after Unsubscribe", k, f)
						return
					}
				}
			}(w)
		}
		for m := 0; m < matchers; m++ {
			matchersWG.Add(1)
			go func(m int) {
				defer matchersWG.Done()
				topics := []string{"dev/1/telemetry", "dev/2/telemetry", "dev/1/x", "other"}
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					tp := topics[(i+m)%len(topics)]
					r := tr.Match(tp)
					// Reading every field concurrently with writers is
					// what -race checks.
					for _, e := range r.Subscribers {
						if e.Key == "" || !MatchFilter(e.Filter, tp) {
							errs <- fmt.Errorf("bad entry %+v for %q", e, tp)
							return
						}
					}
					for _, g := range r.Groups {
						for _, e := range g.Members {
							_ = e.Value
						}
					}
					if tp == "dev/1/telemetry" && !has(r, "dev/+/telemetry", "base") {
						errs <- fmt.Errorf("lost the base subscription")
						return
					}
				}
			}(m)
		}
		writersWG.Wait()
		close(stop)
		matchersWG.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if tr.Count() != 1 {
			t.Fatalf("Count = %d, want 1", tr.Count())
		}
	})
}

// TestIndexConcurrent runs Set/Delete against Match and Get (meant for -race).
func TestIndexConcurrent(t *testing.T) {
	x := NewIndex[int]()
	var writers, readers sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 2; w++ {
		writers.Add(1)
		go func(w int) {
			defer writers.Done()
			for i := 0; i < 2000; i++ {
				tp := fmt.Sprintf("r/%d/%d", w, i%50)
				x.Set(tp, i)
				if i%3 == 0 {
					x.Delete(tp)
				}
			}
		}(w)
	}
	for r := 0; r < 2; r++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				x.Match("r/+/#", func(topic string, v int) bool { return v >= 0 })
				x.Get("r/0/1")
			}
		}()
	}
	writers.Wait()
	close(stop)
	readers.Wait()
	n := 0
	x.Match("#", func(string, int) bool { n++; return true })
	if n != x.Len() || n == 0 {
		t.Fatalf("Match(#) saw %d topics, Len %d", n, x.Len())
	}
}
