package storage

import (
	"bufio"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkBacklog measures what an offline session with a large backlog
// costs: an offline durable session accumulates n 100-byte messages (one log
// entry and one pending entry each), the store is reopened (recovery), and
// the backlog is drained the way a reconnecting session drains it: scan
// pending in order from where it left off, read each message, then remove
// the pending entries and the log entries in batches of 1024 (sync mode). It reports drain msgs/s, the process's peak
// RSS, recovery time and disk use before, at the peak and after the drain.
//
// n is 1,000,000 unless BEACON_BACKLOG_N says otherwise; run it alone:
//
//	go test -run XXX -bench Backlog -benchtime 1x ./storage/
func BenchmarkBacklog(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("BEACON_BACKLOG_N")); err == nil && v > 0 {
		n = v
	}
	for i := 0; i < b.N; i++ {
		benchBacklog(b, n)
	}
}

func benchBacklog(b *testing.B, n int) {
	dir := b.TempDir()
	stopRSS, _ := sampleRSS(b)
	o := DefaultBadgerOptions(dir)
	o.Durability = DurabilityNone // filling is not what is measured
	o.Logger = testLogger(b)
	s, err := OpenBadger(o)
	if err != nil {
		b.Fatal(err)
	}
	before := dirSize(b, dir)
	ctx := context.Background()
	payload := make([]byte, 100)
	const batch = 500
	msgs := make([]*Message, batch)
	pend := make([]Pending, batch)
	fillStart := time.Now()
	for done := 0; done < n; done += batch {
		k := min(batch, n-done)
		for j := 0; j < k; j++ {
			msgs[j] = &Message{Topic: "fleet/device-42/telemetry", Payload: payload, QoS: 1, Created: time.Now()}
		}
		if err := s.Append(ctx, msgs[:k]...); err != nil {
			b.Fatal(err)
		}
		for j := 0; j < k; j++ {
			pend[j] = Pending{Seq: msgs[j].Seq, QoS: 1}
		}
		if err := s.Enqueue("offline-device", pend[:k]...); err != nil {
			b.Fatal(err)
		}
	}
	fill := time.Since(fillStart)
	fillAnon, _ := stopRSS()
	stopRSS, _ = sampleRSS(b)
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	peakDisk := dirSize(b, dir)

	o.Durability = DurabilitySync
	openStart := time.Now()
	s, err = OpenBadger(o)
	if err != nil {
		b.Fatal(err)
	}
	recovery := time.Since(openStart)
	if c, _ := s.CountPending("offline-device"); c != n {
		b.Fatalf("CountPending after reopen = %d, want %d", c, n)
	}

	b.ResetTimer()
	drainStart := time.Now()
	// A reader reads batches in order while a remover acknowledges the
	// previous ones, as a session with an inflight window does; pending and
	// log removals go in concurrently so they share group commits.
	batches := make(chan []uint64, 4)
	removeErr := make(chan error, 1)
	go func() {
		var firstErr error
		for seqs := range batches {
			done := make(chan error, 1)
			go func() { done <- s.DeleteMessages(seqs...) }()
			if err := s.RemovePending("offline-device", seqs...); err != nil && firstErr == nil {
				firstErr = err
			}
			if err := <-done; err != nil && firstErr == nil {
				firstErr = err
			}
		}
		removeErr <- firstErr
	}()
	drained := 0
	var from uint64 // the session resumes after what it delivered last
	for {
		seqs := make([]uint64, 0, 1024)
		err := s.ScanPending("offline-device", from, func(p Pending) bool {
			m, err := s.Get(p.Seq)
			if err != nil || len(m.Payload) != 100 {
				b.Fatalf("Get(%d) = %v", p.Seq, err)
			}
			seqs = append(seqs, p.Seq)
			return len(seqs) < cap(seqs)
		})
		if err != nil {
			b.Fatal(err)
		}
		if len(seqs) == 0 {
			break
		}
		batches <- seqs
		drained += len(seqs)
		from = seqs[len(seqs)-1] + 1
	}
	close(batches)
	if err := <-removeErr; err != nil {
		b.Fatal(err)
	}
	drain := time.Since(drainStart)
	b.StopTimer()
	if drained != n {
		b.Fatalf("drained %d, want %d", drained, n)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	// Reopen once more so badger's close-time flush and compaction settle.
	s, err = OpenBadger(o)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	after := dirSize(b, dir)
	anon, file := stopRSS()
	if testing.Verbose() {
		logDir(b, dir)
	}

	b.ReportMetric(float64(n)/drain.Seconds(), "drain-msgs/s")
	b.ReportMetric(float64(n)/fill.Seconds(), "fill-msgs/s")
	b.ReportMetric(recovery.Seconds()*1000, "reopen-ms")
	b.ReportMetric(float64(peakRSS(b))/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(fillAnon)/(1<<20), "fill-peak-anon-MiB")
	b.ReportMetric(float64(anon)/(1<<20), "drain-peak-anon-MiB")
	b.ReportMetric(float64(file)/(1<<20), "peak-filemap-MiB")
	b.ReportMetric(float64(before)/(1<<20), "disk-before-MiB")
	b.ReportMetric(float64(peakDisk)/(1<<20), "disk-peak-MiB")
	b.ReportMetric(float64(after)/(1<<20), "disk-after-MiB")
}

// dirSize is the disk space allocated to the files under dir (badger
// preallocates sparse files, so their apparent size would overstate it).
func dirSize(tb testing.TB, dir string) int64 {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				total += st.Blocks * 512
			} else {
				total += fi.Size()
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return total
}

// peakRSS is the process's high-water resident set (VmHWM), in bytes.
func peakRSS(tb testing.TB) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		tb.Skip("no /proc/self/status on this system: peak RSS not measurable")
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb << 10
		}
	}
	tb.Fatal("VmHWM not found in /proc/self/status")
	return 0
}

// sampleRSS samples RssAnon and RssFile of /proc/self/status every 50 ms
// until stop is called and returns their peaks. VmHWM alone cannot tell
// heap from pages of memory-mapped files (badger maps its WAL and tables),
// which the kernel reclaims under pressure.
func sampleRSS(tb testing.TB) (stop func() (anon, file int64), _ struct{}) {
	done := make(chan struct{})
	result := make(chan [2]int64, 1)
	go func() {
		var peak [2]int64
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			a, f := rssParts()
			peak[0], peak[1] = max(peak[0], a), max(peak[1], f)
			select {
			case <-done:
				result <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() (int64, int64) {
		close(done)
		p := <-result
		return p[0], p[1]
	}, struct{}{}
}

func rssParts() (anon, file int64) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		for _, f := range []struct {
			key string
			dst *int64
		}{{"RssAnon:", &anon}, {"RssFile:", &file}} {
			if v, ok := strings.CutPrefix(line, f.key); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				*f.dst = kb << 10
			}
		}
	}
	return anon, file
}

func logDir(tb testing.TB, dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			continue
		}
		var alloc int64
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			alloc = st.Blocks * 512
		}
		tb.Logf("%-20s size %10d allocated %10d", e.Name(), fi.Size(), alloc)
	}
}
