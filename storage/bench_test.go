package storage

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkAppend measures Log.Append of one 100-byte message per call with
// 1, 8 and 64 concurrent appenders in every durability mode. Besides ns/op
// (wall time per message over all appenders) it reports msgs/s and the p50
// and p99 latency of a single Append call, the figure a publisher waits for
// its PUBACK. With group commit, sync-mode throughput grows with the number
// of appenders while latency stays near one fsync.
func BenchmarkAppend(b *testing.B) {
	modes := []struct {
		name         string
		durability   string
		explicitSync bool
	}{
		{"sync", DurabilitySync, false},
		{"sync-explicitSync", DurabilitySync, true},
		{"batch", DurabilityBatch, false},
		{"none", DurabilityNone, false},
	}
	for _, mode := range modes {
		for _, workers := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("%s/appenders=%d", mode.name, workers), func(b *testing.B) {
				o := DefaultBadgerOptions(b.TempDir())
				o.Durability = mode.durability
				o.explicitSync = mode.explicitSync
				o.Logger = testLogger(b)
				s, err := OpenBadger(o)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				benchAppend(b, s, workers)
			})
		}
	}
	b.Run("memory/appenders=1", func(b *testing.B) { benchAppend(b, NewMemory(), 1) })
}

func benchAppend(b *testing.B, s Store, workers int) {
	payload := make([]byte, 100)
	ctx := context.Background()
	lat := make([][]time.Duration, workers)
	var groups0 uint64
	if bs, ok := s.(*Badger); ok {
		groups0 = bs.groups.Load()
	}
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < workers; w++ {
		n := b.N / workers
		if w < b.N%workers {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := make([]time.Duration, 0, n)
			for i := 0; i < n; i++ {
				m := &Message{Topic: "bench/devices/1234/telemetry", Payload: payload, QoS: 1, Created: time.Now()}
				t0 := time.Now()
				if err := s.Append(ctx, m); err != nil {
					b.Error(err)
					return
				}
				l = append(l, time.Since(t0))
			}
			lat[w] = l
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	if bs, ok := s.(*Badger); ok {
		if g := bs.groups.Load() - groups0; g > 0 {
			b.ReportMetric(float64(len(all))/float64(g), "msgs/group")
		}
	}
}
