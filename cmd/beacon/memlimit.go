package main

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// defaultMemoryLimit is the soft memory limit serve sets when neither the
// memory-limit setting nor GOMEMLIMIT says otherwise. Without a limit the
// Go heap grows to about twice what is live before the collector runs, and
// under a large backlog drain the garbage of decoded messages pushed the
// broker past 400 MB RSS although less than 60 MiB was live (see the
// backlog section of docs/performance.md). 110 MiB keeps a 1M-message
// drain under 150 MB RSS with badger's memory-mapped pages on top (peaks
// of 120–134 MiB in 3 runs; 120 MiB reached 145 MiB, 128 MiB did not
// stay under), now that the store empties badger's table-builder pool
// (storage/allocpool.go). Less costs throughput steeply: the limit caps
// the heap goal, and 1,000 publisher/subscriber pairs, whose live heap is
// ~55 MiB with badger's memtables and tables, ran 72k msg/s at 100 MiB
// (the collector ten times a second, 15 % of the CPU) against 89k at
// 110 MiB; 90 MiB cost them a third. The limit is soft: a broker that
// really needs more keeps running, the collector just works harder (at
// most half the CPU, by the runtime's own cap).
const defaultMemoryLimit = 110 << 20

// memoryLimitSetting is the memory-limit flag and file key: bytes, with an
// optional KiB/MiB/GiB suffix; 0 means no limit.
func memoryLimitSetting(p *int64) *setting {
	return &setting{name: "memory-limit",
		usage: "soft memory limit of the Go runtime, e.g. 256MiB (0 = none; unset: GOMEMLIMIT if set, else 110MiB)",
		set: func(v string) error {
			n, err := parseBytes(v)
			if err != nil {
				return err
			}
			*p = n
			return nil
		},
		get: func() string { return formatBytes(*p) }}
}

// bytesSetting is a setting of a byte count written as parseBytes reads it.
func bytesSetting(name, field, usage string, p *int64) *setting {
	return &setting{name: name, field: field, usage: usage,
		set: func(v string) error {
			n, err := parseBytes(v)
			if err != nil {
				return err
			}
			*p = n
			return nil
		},
		get: func() string { return formatBytes(*p) }}
}

// parseBytes reads a byte count: a whole number, optionally followed by
// B, KiB, MiB or GiB (also K, M, G, KB, MB, GB, all powers of 1024).
func parseBytes(v string) (int64, error) {
	s := strings.TrimSpace(v)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(strings.ToUpper(s), strings.ToUpper(u.suffix)) {
			s, mult = strings.TrimSpace(s[:len(s)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is not a size in bytes (examples: 0, 134217728, 128MiB, 1GiB)", v)
	}
	return n * mult, nil
}

// formatBytes writes n the way parseBytes reads it.
func formatBytes(n int64) string {
	switch {
	case n != 0 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n != 0 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n != 0 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10)
}

// applyMemoryLimit sets the Go runtime's soft memory limit: the configured
// one if the setting was given (0 removes any limit), else GOMEMLIMIT from
// the environment (which the runtime already applied), else the default.
func applyMemoryLimit(c *config, log *slog.Logger) {
	_, explicit := c.source["memory-limit"]
	if !explicit && os.Getenv("GOMEMLIMIT") != "" {
		log.Debug("memory limit from GOMEMLIMIT", "bytes", debug.SetMemoryLimit(-1))
		return
	}
	limit := c.memoryLimit
	if limit == 0 {
		limit = math.MaxInt64
	}
	debug.SetMemoryLimit(limit)
	log.Debug("memory limit", "bytes", c.memoryLimit)
}
