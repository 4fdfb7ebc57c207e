package main

import (
	"log/slog"
	"runtime"
	"testing"
)

// serve runs with at least two Ps, unless GOMAXPROCS says otherwise.
func TestApplyMinProcs(t *testing.T) {
	prev := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	log := slog.New(slog.DiscardHandler)

	t.Setenv("GOMAXPROCS", "")
	runtime.GOMAXPROCS(1)
	applyMinProcs(log)
	if n := runtime.GOMAXPROCS(0); n != minProcs {
		t.Fatalf("GOMAXPROCS %d after applyMinProcs from 1, want %d", n, minProcs)
	}
	runtime.GOMAXPROCS(4)
	applyMinProcs(log)
	if n := runtime.GOMAXPROCS(0); n != 4 {
		t.Fatalf("applyMinProcs changed GOMAXPROCS 4 to %d", n)
	}

	t.Setenv("GOMAXPROCS", "1")
	runtime.GOMAXPROCS(1)
	applyMinProcs(log)
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Fatalf("GOMAXPROCS=1 in the environment, but applyMinProcs set %d", n)
	}
}
