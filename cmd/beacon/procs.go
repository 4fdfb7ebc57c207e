package main

import (
	"log/slog"
	"os"
	"runtime"
)

// minProcs is the fewest Ps (GOMAXPROCS) serve runs with. With one CPU the
// runtime would use one P, and badger's background work then starves the
// request path: a memtable flush is two goroutines handing each table
// block to each other, and a goroutine woken that way runs next on the P
// and inherits its time slice, so the pair kept the only P for ~20 ms
// while the goroutine committing the next write (and every publisher
// waiting on it) sat runnable — an execution trace of the 5,000 msg/s
// latency run showed exactly that at each memtable switch, its p999. With
// two Ps the kernel interleaves the threads instead: p999 went from
// 17–24 ms to 6–10 ms (docs/performance.md). More Ps than CPUs cost a
// little more switching, so it is a floor of 2, not more.
const minProcs = 2

// applyMinProcs raises GOMAXPROCS to minProcs unless GOMAXPROCS was set in
// the environment, which always wins.
func applyMinProcs(log *slog.Logger) {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	if n := runtime.GOMAXPROCS(0); n < minProcs {
		runtime.GOMAXPROCS(minProcs)
		log.Debug("GOMAXPROCS raised", "from", n, "to", minProcs)
	}
}
