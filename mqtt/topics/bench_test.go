package topics

import (
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
)

// benchCacheSize is the cache size the "cache=on" benchmarks use.
const benchCacheSize = 4096

// fleet builds a tree shaped like an IoT broker's: n subscriptions in total,
// mostly one command filter per device (devices/{id}/cmd/#, key = device),
// plus backend consumers on wildcard filters: devices/+/telemetry,
// devices/#, and a shared group of 4 workers on devices/+/telemetry.
func fleet(n, cacheSize int) (*Tree[byte], []string) {
	tr := New[byte](cacheSize)
	wild := []struct{ filter, key string }{
		{"devices/+/telemetry", "backend"},
		{"devices/#", "monitor"},
		{"$share/workers/devices/+/telemetry", "w1"},
		{"$share/workers/devices/+/telemetry", "w2"},
		{"$share/workers/devices/+/telemetry", "w3"},
		{"$share/workers/devices/+/telemetry", "w4"},
	}
	for i := 0; i < n && i < len(wild); i++ {
		tr.Subscribe(wild[i].filter, wild[i].key, 1)
	}
	for i := len(wild); i < n; i++ {
		id := "dev" + strconv.Itoa(i)
		tr.Subscribe("devices/"+id+"/cmd/#", id, 1)
	}
	// The topics published: telemetry of up to 1000 devices (fits the cache).
	m := n
	if m < 1 {
		m = 1
	}
	if m > 1000 {
		m = 1000
	}
	topics := make([]string, m)
	for i := range topics {
		topics[i] = "devices/dev" + strconv.Itoa(i) + "/telemetry"
	}
	return tr, topics
}

func cacheName(size int) string {
	if size == 0 {
		return "off"
	}
	return "on"
}

func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{1, 100, 100000} {
		for _, cs := range []int{0, benchCacheSize} {
			b.Run(fmt.Sprintf("subs=%d/cache=%s", n, cacheName(cs)), func(b *testing.B) {
				tr, topics := fleet(n, cs)
				for _, tp := range topics {
					tr.Match(tp) // warm the cache: a topic is admitted on its second miss
					tr.Match(tp)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if tr.Match(topics[i%len(topics)]) == nil {
						b.Fatal("nil result")
					}
				}
			})
		}
	}
}

// BenchmarkMatchCommand matches a device's own command topic: one exact
// filter and one '#' filter out of 100k.
func BenchmarkMatchCommand(b *testing.B) {
	for _, cs := range []int{0, benchCacheSize} {
		b.Run("subs=100000/cache="+cacheName(cs), func(b *testing.B) {
			tr, _ := fleet(100000, cs)
			topics := make([]string, 1000)
			for i := range topics {
				topics[i] = "devices/dev" + strconv.Itoa(1000+i*97) + "/cmd/reboot"
			}
			for _, tp := range topics {
				tr.Match(tp)
				if len(tr.Match(tp).Subscribers) != 2 {
					b.Fatal("expected 2 subscribers")
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				tr.Match(topics[i%len(topics)])
			}
		})
	}
}

// BenchmarkMatchNoSubscribers is a publish nobody listens to.
func BenchmarkMatchNoSubscribers(b *testing.B) {
	for _, cs := range []int{0, benchCacheSize} {
		b.Run("subs=100000/cache="+cacheName(cs), func(b *testing.B) {
			tr, _ := fleet(100000, cs)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				tr.Match("other/topic/x")
			}
		})
	}
}

// BenchmarkMatchManyTopics publishes on more distinct topics (16,384
// devices) than the cache holds, round robin, so with the cache on every
// Match misses and none is admitted: the cost of a cache that cannot help,
// against the same workload with the cache off. Touching 16k devices' nodes
// also defeats the CPU caches, unlike BenchmarkMatch's 1,000 topics.
func BenchmarkMatchManyTopics(b *testing.B) {
	for _, cs := range []int{0, benchCacheSize} {
		b.Run("subs=100000/cache="+cacheName(cs), func(b *testing.B) {
			tr, _ := fleet(100000, cs)
			topics := make([]string, 4*benchCacheSize)
			for i := range topics {
				topics[i] = "devices/dev" + strconv.Itoa(i) + "/telemetry"
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				tr.Match(topics[i%len(topics)])
			}
		})
	}
}

// BenchmarkMatchCacheInsert matches each of more topics than the cache holds
// twice in a row: every second Match inserts into a full cache and evicts.
func BenchmarkMatchCacheInsert(b *testing.B) {
	tr, _ := fleet(100000, benchCacheSize)
	topics := make([]string, 4*benchCacheSize)
	for i := range topics {
		topics[i] = "devices/dev" + strconv.Itoa(i) + "/telemetry"
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tr.Match(topics[(i/2)%len(topics)])
	}
}

func BenchmarkMatchParallel(b *testing.B) {
	for _, cs := range []int{0, benchCacheSize} {
		b.Run("subs=100000/cache="+cacheName(cs), func(b *testing.B) {
			tr, topics := fleet(100000, cs)
			for _, tp := range topics {
				tr.Match(tp)
				tr.Match(tp) // admitted on the second miss
			}
			var next atomic.Uint32
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(7919))
				for pb.Next() {
					tr.Match(topics[i%len(topics)])
					i++
				}
			})
		})
	}
}

// BenchmarkMatchParallelChurn matches in parallel while one goroutine keeps
// subscribing and unsubscribing a device command filter (which invalidates
// nothing the matchers use) and, every 64th change, a telemetry filter (which
// invalidates one cached topic).
func BenchmarkMatchParallelChurn(b *testing.B) {
	for _, cs := range []int{0, benchCacheSize} {
		b.Run("subs=100000/cache="+cacheName(cs), func(b *testing.B) {
			tr, topics := fleet(100000, cs)
			for _, tp := range topics {
				tr.Match(tp)
				tr.Match(tp) // admitted on the second miss
			}
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					f := "devices/new" + strconv.Itoa(i%100) + "/cmd/#"
					if i%64 == 0 {
						f = "devices/dev" + strconv.Itoa(i%1000) + "/telemetry"
					}
					tr.Subscribe(f, "churn", 1)
					tr.Unsubscribe(f, "churn")
				}
			}()
			var next atomic.Uint32
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(7919))
				for pb.Next() {
					tr.Match(topics[i%len(topics)])
					i++
				}
			})
			b.StopTimer()
			close(stop)
			<-done
		})
	}
}

// BenchmarkSubscribe measures one Subscribe plus one Unsubscribe of a new
// device filter in a tree of 100k subscriptions.
func BenchmarkSubscribe(b *testing.B) {
	for _, cs := range []int{0, benchCacheSize} {
		b.Run("subs=100000/cache="+cacheName(cs), func(b *testing.B) {
			tr, topics := fleet(100000, cs)
			for _, tp := range topics {
				tr.Match(tp) // a cache of 1000 entries
				tr.Match(tp)
			}
			filters := make([]string, 1000)
			for i := range filters {
				filters[i] = "devices/new" + strconv.Itoa(i) + "/cmd/#"
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				f := filters[i%len(filters)]
				tr.Subscribe(f, "k", 1)
				tr.Unsubscribe(f, "k")
			}
		})
	}
}

// BenchmarkSubscribeExisting subscribes a second client to an existing
// filter and removes it again: no nodes are created.
func BenchmarkSubscribeExisting(b *testing.B) {
	tr, _ := fleet(100000, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tr.Subscribe("devices/+/telemetry", "k2", 1)
		tr.Unsubscribe("devices/+/telemetry", "k2")
	}
}

func BenchmarkIndexMatch(b *testing.B) {
	x := NewIndex[int]()
	for i := 0; i < 100000; i++ {
		x.Set("devices/dev"+strconv.Itoa(i)+"/status", i)
	}
	for _, f := range []string{"devices/dev5/status", "devices/dev5/#", "devices/+/status", "#"} {
		b.Run("topics=100000/filter="+f, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			fn := func(string, int) bool { n++; return true }
			for i := 0; i < b.N; i++ {
				x.Match(f, fn)
			}
			if n == 0 {
				b.Fatal("nothing matched")
			}
		})
	}
}

func BenchmarkIndexSet(b *testing.B) {
	x := NewIndex[int]()
	topics := make([]string, 100000)
	for i := range topics {
		topics[i] = "devices/dev" + strconv.Itoa(i) + "/status"
		x.Set(topics[i], i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		x.Set(topics[i%len(topics)], i) // replace
	}
}

func BenchmarkMatchFilter(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if !MatchFilter("devices/+/telemetry/#", "devices/dev42/telemetry/temp") {
			b.Fatal("no match")
		}
	}
}

// BenchmarkFleetBuild subscribes the 100k-subscription fleet from scratch.
// Custom metrics: ns/sub is the time per Subscribe; heapB/sub is the live
// heap the finished tree keeps per subscription, measured after a GC (the
// fleet's own key and filter strings are counted too, as a broker keeps
// them as well).
func BenchmarkFleetBuild(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		fleet(100000, 0)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100000, "ns/sub")

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tr, _ := fleet(100000, 0)
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(tr)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/100000, "heapB/sub")
}
