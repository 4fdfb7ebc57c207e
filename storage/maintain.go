package storage

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Maintenance of the badger store: giving disk back after large deletions,
// and keeping a reserve of free disk space so badger never runs out.
//
// Disk after deletions. A deleted key leaves a tombstone in badger's LSM
// tree, and the space of the key and its tombstone comes back only when a
// compaction carries them into the bottom level. Compactions are driven by
// writes, so a store that goes quiet after a large backlog drained (1M log
// entries and 1M pending entries deleted) keeps tens of MiB of dead tables
// for as long as it stays quiet. maintainLoop therefore watches the number
// of deletions: once CompactAfterDeletes have been committed since the last
// compaction and the store has been quiet for a whole CompactInterval
// (fewer than quietWrites entries written), it
//
//  1. asks the committer to flush badger's memtables to disk (compactNow):
//     the tombstones of the last deletions are in the memtable and its
//     write-ahead log, which no compaction reaches otherwise;
//  2. flattens the LSM tree (DB.Flatten), which compacts level by level
//     down to the bottom one, where tombstones and what they delete are
//     dropped;
//  3. runs badger's value-log GC (as it also does every GCInterval).
//
// Only step 1 holds writes back: the committer does it between two groups
// (writes arriving meanwhile wait in its queue; none is refused), for as
// long as flushing at most NumMemtables memtables takes. Steps 2 and 3 run
// beside the committer; new writes go on to the memtable meanwhile.
//
// Free space. Badger writes its write-ahead log, tables and value log
// through memory-mapped files that are created sparse, so a full
// filesystem is not reported as ENOSPC from a write call but as SIGBUS
// when a page is first touched, which kills the process. The store
// therefore refuses writes that add messages (Append, SetRetained,
// AddDelayed) with ErrFull while the filesystem of the data dir has less
// than MinFreeBytes available, checked by the committer at most every
// freeCheckEvery or after freeCheckBytes written, whichever comes first.
// Writes that free space or only write small records (deletions, pending
// entries, sessions, cursors, inbound packet ids) still go through,
// so sessions can connect and drain, and the log collector can delete what
// was delivered. The reserve has to cover what badger writes on its own:
// the memtables being flushed and the output of the compactions under way.

const (
	// quietWrites is how many entries may be written during one
	// CompactInterval for the store to count as quiet.
	quietWrites = 1000
	// freeCheckEvery and freeCheckBytes bound how stale the free-space
	// reading of the committer may get.
	freeCheckEvery = 100 * time.Millisecond
	freeCheckBytes = 1 << 20
)

// freeSpace reads the free space of the data dir's filesystem (a variable
// for tests).
var freeSpace = freeBytes

// keyFlush is the marker key flushMemtables writes and drops (keys.go).
var keyFlush = []byte("x/flush")

// defaultMinFree is the reserve of free disk space for memtable size mt:
// the two memtables' logs, their flushed tables and a compaction's output.
func defaultMinFree(mt int64) int64 { return 6*mt + 32<<20 }

// A compaction can read and write tens of MiB of table pages within a
// second, and every one of them stays resident until trimmed: between two
// TrimInterval ticks that showed as 20-40 MiB spikes of the broker's RSS
// while a large backlog drained. So the resident file-backed memory is
// also checked every trimCheckInterval (one read of /proc/self/statm), and
// trimmed at once when it passes trimAboveFile (the broker's own binary
// accounts for ~14 MiB of it).
const (
	vlogCheckInterval = time.Second
	trimCheckInterval = 100 * time.Millisecond
	trimAboveFile     = 32 << 20
)

// maintainLoop runs value-log GC every GCInterval, a compaction after large
// deletions (see above) and, every TrimInterval (and sooner when the
// resident table pages grow, see above), trimResident, until Close.
func (b *Badger) maintainLoop() {
	defer b.wg.Done()
	gc := time.NewTicker(b.opts.GCInterval)
	defer gc.Stop()
	check := time.NewTicker(b.opts.CompactInterval)
	defer check.Stop()
	var trim, trimCheck <-chan time.Time
	if b.opts.TrimInterval > 0 {
		t := time.NewTicker(b.opts.TrimInterval)
		defer t.Stop()
		trim = t.C
		c := time.NewTicker(trimCheckInterval)
		defer c.Stop()
		trimCheck = c.C
	}
	lastWrites := b.written.Load()
	vlogCheck := time.NewTicker(vlogCheckInterval)
	defer vlogCheck.Stop()
	lastVlog := b.vlogWritten.Load()
	pool := allocPoolOf(b.db) // allocpool.go
	for {
		select {
		case <-b.stop:
			return
		case <-vlogCheck.C:
			// Messages of ValueThreshold and more are written once, to the
			// value log, and their space comes back only when GC drops a
			// whole file. Under a steady stream of them waiting for
			// GCInterval would leave minutes of garbage (at 90 MB/s, tens
			// of GB), so GC also runs after every ValueLogFileSize written.
			if v := b.vlogWritten.Load(); v-lastVlog >= uint64(b.opts.ValueLogFileSize) {
				lastVlog = v
				b.valueLogGCAsync()
			}
		case <-trim:
			trimResident(b.opts.Dir)
			drainAllocPool(pool)
		case <-trimCheck:
			if residentFileBytes() > trimAboveFile {
				trimResident(b.opts.Dir)
			}
		case <-gc.C:
			b.valueLogGCAsync()
		case <-check.C:
			w := b.written.Load()
			quiet := w-lastWrites < quietWrites
			lastWrites = w
			if quiet && b.deleted.Load()-b.compactedAt.Load() >= uint64(b.opts.CompactAfterDeletes) {
				if err := b.Compact(); err != nil && !errors.Is(err, ErrClosed) {
					b.log.Warn("compaction after deletions failed", "err", err)
				}
				lastWrites = b.written.Load()
			}
		}
	}
}

// Compact gives back the disk space of deleted entries now: it flushes the
// memtables, flattens the LSM tree and runs value-log GC. The store does it
// by itself after large deletions; tests and tools may call it directly.
func (b *Badger) Compact() error {
	b.compactMu.Lock()
	defer b.compactMu.Unlock()
	start := time.Now()
	deleted := b.deleted.Load()
	r := newReq(wFlushMemtables)
	if err := b.do(r); err != nil {
		return err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	if err := b.db.Flatten(1); err != nil {
		return wrapWriteError(fmt.Errorf("storage: flatten: %w", err))
	}
	b.compactedAt.Store(deleted)
	b.compactions.Add(1)
	b.valueLogGCLocked()
	b.log.Info("compacted after deletions", "deleted", deleted, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// flushMemtables writes badger's memtables to level-0 tables and starts an
// empty one. Badger exports no flush, but DropPrefix flushes every memtable
// before it drops anything, so the committer writes a marker key and drops
// it. It runs in the committer, the store's only writer: DropPrefix blocks
// badger's writes while it runs, and a write arriving meanwhile would fail
// with ErrBlockedWrites instead of waiting.
func (b *Badger) flushMemtables() error {
	if err := b.db.Update(func(txn *badger.Txn) error { return txn.Set(keyFlush, nil) }); err != nil {
		return wrapWriteError(fmt.Errorf("storage: flush marker: %w", err))
	}
	if err := b.db.DropPrefix(keyFlush); err != nil {
		return wrapWriteError(fmt.Errorf("storage: flushing memtables: %w", err))
	}
	return nil
}

// valueLogGCAsync runs valueLogGC in its own goroutine unless one runs
// already: a rewrite reads a whole value-log file through its mapping, and
// the maintenance loop must go on trimming those pages meanwhile (it
// showed as a 600 MB RSS peak when GC ran in the loop).
func (b *Badger) valueLogGCAsync() {
	if !b.gcRunning.CompareAndSwap(false, true) {
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer b.gcRunning.Store(false)
		b.valueLogGC()
	}()
}

func (b *Badger) valueLogGC() {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if !b.closed {
		b.valueLogGCLocked()
	}
}

// valueLogGCLocked rewrites value-log files while at least GCDiscardRatio
// of one is garbage. The caller holds mu shared.
func (b *Badger) valueLogGCLocked() {
	b.vlogGCs.Add(1)
	for rewrites := 0; ; rewrites++ {
		select {
		case <-b.stop:
			return
		default:
		}
		err := b.db.RunValueLogGC(b.opts.GCDiscardRatio)
		if err != nil {
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				b.log.Warn("value log GC failed", "err", err)
			}
			if rewrites > 0 {
				b.log.Debug("value log GC", "rewrites", rewrites)
			}
			return
		}
	}
}

// growing reports whether r adds a message to the store (refused while the
// disk is below its reserve) rather than freeing space or writing small
// records. Pending entries are small and follow a message the store has
// already accepted (and the publisher may have been acknowledged for), so
// they are not refused: a backlog's entries must not go missing.
func growing(r *writeReq) bool {
	switch r.kind {
	case wAppend, wSetRetained, wAddDelayed:
		return true
	}
	return false
}

// diskFull reports whether writing pending more bytes (the group's so far
// and the request's own) would take the data dir's filesystem below the
// reserve. The free space is read again when the last reading is older
// than freeCheckEvery or freeCheckBytes were written since; in between,
// what was written since the reading is taken off it, so a burst of big
// messages cannot fill the disk between two readings. Committer only.
func (b *Badger) diskFull(pending int64) bool {
	if b.opts.MinFreeBytes < 0 {
		return false
	}
	now := time.Now()
	if b.freeAt.IsZero() || now.Sub(b.freeAt) >= freeCheckEvery || b.bytesWritten+pending-b.bytesAt >= freeCheckBytes {
		b.freeAt, b.bytesAt = now, b.bytesWritten
		free, err := freeSpace(b.opts.Dir)
		if err != nil {
			if !b.freeErrLogged {
				b.freeErrLogged = true
				b.log.Warn("cannot read free disk space; the reserve is not enforced", "err", err)
			}
			free = -1
		}
		b.free = free
	}
	if b.free < 0 {
		b.full = false
		return false
	}
	free := b.free - (b.bytesWritten - b.bytesAt)
	// The log says when the disk itself crosses the reserve; a write
	// refused only for its own size is counted, not logged.
	if full := free < b.opts.MinFreeBytes; full != b.full {
		if full {
			b.log.Error("disk almost full: refusing new messages until space is freed", "free_bytes", free, "reserve_bytes", b.opts.MinFreeBytes)
		} else {
			b.log.Warn("disk space back above the reserve: accepting new messages", "free_bytes", free)
		}
		b.full = full
	}
	return free-pending < b.opts.MinFreeBytes
}

// errBelowReserve is the error of a write refused by the reserve.
func (b *Badger) errBelowReserve() error {
	return fmt.Errorf("%w: less than %d bytes free on the filesystem of %q (the reserve badger needs for flushes and compactions)", ErrFull, b.opts.MinFreeBytes, b.opts.Dir)
}

// Counters of the maintenance, for tests and metrics.
type MaintenanceStats struct {
	Deleted     uint64 // entries deleted since open
	Compactions uint64 // compactions after deletions (Compact) done
	FullRefused uint64 // writes refused because the disk was below the reserve
	ValueLogGCs uint64 // value-log GC passes run (each rewrites zero or more files)
}

// Maintenance returns the maintenance counters.
func (b *Badger) Maintenance() MaintenanceStats {
	return MaintenanceStats{Deleted: b.deleted.Load(), Compactions: b.compactions.Load(), FullRefused: b.fullRefused.Load(),
		ValueLogGCs: b.vlogGCs.Load()}
}
