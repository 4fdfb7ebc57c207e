package main

import (
	"io"
	"log/slog"
	"math"
	"runtime/debug"
	"testing"
)

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "134217728": 128 << 20, "128MiB": 128 << 20, "128 mib": 128 << 20,
		"64K": 64 << 10, "1GiB": 1 << 30, "2GB": 2 << 30, "512B": 512,
	} {
		got, err := parseBytes(in)
		if err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
		if back, err := parseBytes(formatBytes(got)); err != nil || back != got {
			t.Errorf("formatBytes(%d) = %q does not read back", got, formatBytes(got))
		}
	}
	for _, bad := range []string{"", "-1", "12XB", "MiB", "1.5GiB", "99999999999GiB"} {
		if _, err := parseBytes(bad); err == nil {
			t.Errorf("parseBytes(%q) accepted", bad)
		}
	}
}

// The memory-limit setting reaches the runtime: explicit values win over
// GOMEMLIMIT, 0 removes the limit, and without either the default applies.
func TestApplyMemoryLimit(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	t.Setenv("GOMEMLIMIT", "")
	c, err := loadConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	applyMemoryLimit(c, log)
	if got := debug.SetMemoryLimit(-1); got != defaultMemoryLimit {
		t.Fatalf("default: limit %d, want %d", got, defaultMemoryLimit)
	}

	t.Setenv("GOMEMLIMIT", "300MiB")
	debug.SetMemoryLimit(300 << 20) // what the runtime did at start
	applyMemoryLimit(c, log)
	if got := debug.SetMemoryLimit(-1); got != 300<<20 {
		t.Fatalf("with GOMEMLIMIT: limit %d, want it kept", got)
	}

	c, err = loadConfig([]string{"--memory-limit", "64MiB"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	applyMemoryLimit(c, log)
	if got := debug.SetMemoryLimit(-1); got != 64<<20 {
		t.Fatalf("explicit 64MiB: limit %d", got)
	}
	c, err = loadConfig([]string{"--memory-limit", "0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	applyMemoryLimit(c, log)
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Fatalf("explicit 0: limit %d, want none", got)
	}
}
