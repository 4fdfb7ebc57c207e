package main

import (
	"context"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/beaconmq/beacon/mqtt"
	"github.com/beaconmq/beacon/storage"
)

// TestBenchConnMemoryProfile is a profiling harness, not a check: it opens
// idle connections to an in-process broker and logs what each one costs
// the process (heap, goroutine stacks, goroutines), and writes a heap
// profile when BEACON_BENCH_HEAPPROFILE names a file. The client side is
// included in the figures; its share is measured separately with a dummy
// listener. Run with BEACON_BENCH_PROFILE=1 (it takes a few seconds).
func TestBenchConnMemoryProfile(t *testing.T) {
	if os.Getenv("BEACON_BENCH_PROFILE") == "" {
		t.Skip("profiling harness: set BEACON_BENCH_PROFILE=1 to run it")
	}
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("BEACON_BENCH_CONNS")); err == nil && v > 0 {
		n = v
	}
	addr := startBenchBroker(t)
	cfg, err := parseBenchArgs([]string{"conns", "--addr", addr}, nil)
	if err != nil {
		t.Fatal(err)
	}
	measure := func() (heap, stack uint64, gs int) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse, ms.StackInuse, runtime.NumGoroutine()
	}
	h0, s0, g0 := measure()
	conns := make([]*benchConn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.nc.Close()
		}
	})
	for i := range n {
		c, err := dialMQTT(context.Background(), cfg.opts("mem-"+strconv.Itoa(i), 16))
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	// Let the broker's goroutines settle into their idle state.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && runtime.NumGoroutine()-g0 < n {
		runtime.Gosched()
	}
	h1, s1, g1 := measure()
	t.Logf("%d idle connections (broker and bench client in one process):", n)
	t.Logf("  heap in use   %.2f KiB/conn", float64(h1-h0)/float64(n)/1024)
	t.Logf("  stacks in use %.2f KiB/conn", float64(s1-s0)/float64(n)/1024)
	t.Logf("  goroutines    %.2f /conn", float64(g1-g0)/float64(n))
	if f := os.Getenv("BEACON_BENCH_HEAPPROFILE"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		if err := pprof.Lookup("heap").WriteTo(out, 0); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBenchBacklogMemoryProfile is a profiling harness, not a check: an
// in-process broker on badger (durability none, so the disk is not what
// is measured, or BEACON_BENCH_DURABILITY) takes a backlog of BEACON_BENCH_BACKLOG messages (default
// 100,000) for one offline session; at the end of the publish phase it
// logs the heap and writes a heap profile to BEACON_BENCH_HEAPPROFILE.
// Run with BEACON_BENCH_PROFILE=1.
func TestBenchBacklogMemoryProfile(t *testing.T) {
	if os.Getenv("BEACON_BENCH_PROFILE") == "" {
		t.Skip("profiling harness: set BEACON_BENCH_PROFILE=1 to run it")
	}
	n := 100000
	if v, err := strconv.Atoi(os.Getenv("BEACON_BENCH_BACKLOG")); err == nil && v > 0 {
		n = v
	}
	bo := storage.DefaultBadgerOptions(t.TempDir())
	bo.Durability = storage.DurabilityNone
	if d := os.Getenv("BEACON_BENCH_DURABILITY"); d != "" {
		bo.Durability = d
	}
	st, err := storage.OpenBadger(bo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	opts := mqtt.DefaultOptions()
	opts.MQTTAddr, opts.WSAddr, opts.HTTPAddr = "127.0.0.1:0", "", ""
	opts.SysInterval = 0
	opts.MaxQueuedMessages = 0
	opts.Store = st
	srv, err := mqtt.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	cfg, err := parseBenchArgs([]string{"backlog", "--addr", srv.MQTTAddr(), "--qos", "1", "--size", "100",
		"--count", strconv.Itoa(n), "--publishers", "8", "--drain-timeout", "20s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var base runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&base)
	cfg.afterPublish = func() {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		t.Logf("after publishing %d messages to an offline session: heap in use %+.1f MiB (%.0f B/message), sys %.1f MiB",
			n, float64(int64(ms.HeapInuse)-int64(base.HeapInuse))/(1<<20),
			float64(int64(ms.HeapInuse)-int64(base.HeapInuse))/float64(n), float64(ms.Sys)/(1<<20))
		if f := os.Getenv("BEACON_BENCH_HEAPPROFILE"); f != "" {
			out, err := os.Create(f)
			if err != nil {
				t.Error(err)
				return
			}
			defer out.Close()
			pprof.Lookup("heap").WriteTo(out, 0)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep := runBench(ctx, cfg, io.Discard)
	t.Logf("publish %.0f msg/s, drain %.0f msg/s, lost %d, errors %v", rep.Backlog.PublishRate, rep.Backlog.DrainRate, rep.Check.Lost, rep.Errors)
}
