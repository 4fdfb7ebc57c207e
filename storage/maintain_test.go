package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// dirBlocks is the disk space dir takes as du counts it (allocated blocks:
// badger's memory-mapped files are sparse).
func dirBlocks(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil // a file a compaction removed while walking
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				total += st.Blocks * 512
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}

// fillAndDrain appends n 100-byte messages with a pending entry each for
// one session, then removes the entries and the messages as a drain and
// the log collector would.
func fillAndDrain(t *testing.T, s *Badger, n int) {
	t.Helper()
	ctx := context.Background()
	payload := make([]byte, 100)
	const batch = 500
	for done := 0; done < n; done += batch {
		msgs := make([]*Message, batch)
		pend := make([]Pending, batch)
		for i := range msgs {
			msgs[i] = &Message{Topic: "t/backlog", Payload: payload, QoS: 1, Created: time.Now()}
		}
		must(t, s.Append(ctx, msgs...))
		for i, m := range msgs {
			pend[i] = Pending{Seq: m.Seq, QoS: 1}
		}
		must(t, s.Enqueue("sess", pend...))
	}
	for from := uint64(1); ; {
		var seqs []uint64
		must(t, s.ScanPending("sess", from, func(p Pending) bool { seqs = append(seqs, p.Seq); return len(seqs) < 1024 }))
		if len(seqs) == 0 {
			break
		}
		must(t, s.RemovePending("sess", seqs...))
		must(t, s.DeleteMessages(seqs...))
		from = seqs[len(seqs)-1] + 1
	}
}

// TestBadgerCompactGivesDiskBack: after a large backlog is deleted, Compact
// (which the store runs by itself once the deletions stop) brings the data
// dir back near the size of the empty store, where without it the
// tombstones and the dead tables stay.
func TestBadgerCompactGivesDiskBack(t *testing.T) {
	dir := t.TempDir()
	o := DefaultBadgerOptions(dir)
	o.Durability = DurabilityNone
	o.Logger = testLogger(t)
	o.MemTableSize = 1 << 20
	o.CompactInterval = time.Hour // only the explicit call below
	s, err := OpenBadger(o)
	must(t, err)
	t.Cleanup(func() { _ = s.Close() })
	empty := dirBlocks(t, dir)

	const n = 20_000 // several memtables' worth with 1 MiB memtables
	fillAndDrain(t, s, n)
	drained := dirBlocks(t, dir)
	if c, _ := s.CountPending("sess"); c != 0 {
		t.Fatalf("%d pending left after the drain", c)
	}
	if got := s.Maintenance().Deleted; got != uint64(2*n) {
		t.Fatalf("Deleted = %d, want %d", got, 2*n)
	}
	must(t, s.Compact())
	after := dirBlocks(t, dir)
	t.Logf("data dir: empty %d KiB, drained %d KiB, compacted %d KiB", empty>>10, drained>>10, after>>10)
	if after >= drained/4 {
		t.Errorf("Compact left %d KiB of %d KiB", after>>10, drained>>10)
	}
	if limit := empty*2 + 256<<10; after > limit {
		t.Errorf("data dir %d KiB after Compact, want at most %d KiB (2× the empty store plus the manifest's history)", after>>10, limit>>10)
	}
	// The store still works, and nothing deleted came back.
	var left int
	must(t, s.Scan(0, func(*Message) bool { left++; return true }))
	if left != 0 {
		t.Fatalf("%d messages back after Compact", left)
	}
	m := msg("t/after", "x")
	must(t, s.Append(context.Background(), m))
	if got, err := s.Get(m.Seq); err != nil || string(got.Payload) != "x" {
		t.Fatalf("Get after Compact = %v, %v", got, err)
	}
}

// TestBadgerCompactsByItself: the maintenance loop compacts once enough
// deletions were made and the store is quiet.
func TestBadgerCompactsByItself(t *testing.T) {
	o := DefaultBadgerOptions(t.TempDir())
	o.Durability = DurabilityNone
	o.Logger = testLogger(t)
	o.MemTableSize = 1 << 20
	o.CompactInterval = 20 * time.Millisecond
	o.CompactAfterDeletes = 1000
	s, err := OpenBadger(o)
	must(t, err)
	t.Cleanup(func() { _ = s.Close() })
	fillAndDrain(t, s, 1000)
	eventually(t, 10*time.Second, func() error {
		if c := s.Maintenance().Compactions; c == 0 {
			return errors.New("no compaction yet")
		}
		return nil
	})
}

// TestBadgerValueLogGCByVolume: messages of ValueThreshold and more go to
// the value log, whose space only GC gives back, so GC runs once another
// ValueLogFileSize of them was written, long before GCInterval.
func TestBadgerValueLogGCByVolume(t *testing.T) {
	o := DefaultBadgerOptions(t.TempDir())
	o.Durability = DurabilityNone
	o.Logger = testLogger(t)
	o.GCInterval = time.Hour
	o.ValueLogFileSize = 1 << 20
	s, err := OpenBadger(o)
	must(t, err)
	t.Cleanup(func() { _ = s.Close() })
	big := make([]*Message, 1500) // 1.5 MiB to the value log
	for i := range big {
		big[i] = &Message{Topic: "gc/big", QoS: 1, Payload: make([]byte, 1024)}
	}
	must(t, s.Append(context.Background(), big...))
	eventually(t, 10*time.Second, func() error {
		if s.Maintenance().ValueLogGCs == 0 {
			return errors.New("no value-log GC yet")
		}
		return nil
	})
}

// TestBadgerReserveHoldsUnderBurst: messages big enough for the value log,
// written faster than the free space is read again, stop at the reserve.
// The filesystem is simulated (its free space falls by exactly what the
// data dir allocates) so that nothing else on the machine moves it: 10 MiB
// free at the start and a 6 MiB reserve leave room for 4 MiB. Badger
// writes through memory-mapped files, so writing past a really full disk
// is a SIGBUS, not an error (mqtt's TestFullDiskRefusesAndRecovers shows
// it on a real one).
// Not parallel: it replaces freeSpace.
func TestBadgerReserveHoldsUnderBurst(t *testing.T) {
	dir := t.TempDir()
	o := DefaultBadgerOptions(dir)
	o.Logger = testLogger(t)
	o.MemTableSize = 1 << 20
	o.MinFreeBytes = 6 << 20
	s, err := OpenBadger(o)
	must(t, err)
	t.Cleanup(func() { _ = s.Close() })
	base := dirBlocks(t, dir)
	freeSpace = func(string) (int64, error) { return base + 10<<20 - dirBlocks(t, dir), nil }
	t.Cleanup(func() { freeSpace = freeBytes })

	big := func(i int) *Message {
		m := msg("t/big", fmt.Sprint(i))
		m.Payload = append(m.Payload, make([]byte, 64<<10)...)
		return m
	}
	// One Append of 5 MiB does not fit the 4 MiB left: refused whole.
	burst := make([]*Message, 80)
	for i := range burst {
		burst[i] = big(i)
	}
	if err := s.Append(context.Background(), burst...); !errors.Is(err, ErrFull) {
		t.Fatalf("Append of 5 MiB with 4 MiB above the reserve = %v, want ErrFull", err)
	}
	// One at a time, as fast as they commit: refused once 4 MiB are used.
	accepted := 0
	for ; accepted < 1000; accepted++ {
		err := s.Append(context.Background(), big(accepted))
		if errors.Is(err, ErrFull) {
			break
		}
		must(t, err)
	}
	if max := 4<<20/(64<<10) + 1; accepted > max || accepted < max/2 {
		t.Fatalf("%d messages of 64 KiB accepted with 4 MiB above the reserve, want %d..%d", accepted, max/2, max)
	}
	if used := dirBlocks(t, dir) - base; used > 6<<20 {
		t.Fatalf("the data dir grew by %d bytes, more than the 4 MiB above the reserve and a little", used)
	}
}

// TestBadgerDiskReserve: below MinFreeBytes free, writes that add messages
// fail with ErrFull; deletions and small records still succeed, so sessions
// can connect and drain and the log can be collected.
func TestBadgerDiskReserve(t *testing.T) {
	dir := t.TempDir()
	free, err := freeBytes(dir)
	if err != nil {
		t.Skipf("cannot read free disk space here (%v): the reserve is not enforced on this platform", err)
	}
	o := DefaultBadgerOptions(dir)
	o.Logger = testLogger(t)
	o.MemTableSize = 1 << 20
	o.MinFreeBytes = -1 // first without a reserve
	s, err := OpenBadger(o)
	must(t, err)
	m := msg("t/a", "before")
	must(t, s.Append(context.Background(), m))
	must(t, s.Enqueue("c", Pending{Seq: m.Seq, QoS: 1}))
	must(t, s.Close())

	o.MinFreeBytes = free * 4 // more than the disk can ever have
	s, err = OpenBadger(o)
	must(t, err)
	t.Cleanup(func() { _ = s.Close() })
	refused := []struct {
		name string
		err  error
	}{
		{"Append", s.Append(context.Background(), msg("t/a", "after"))},
		{"SetRetained", s.SetRetained(msg("t/r", "r"))},
	}
	_, derr := s.AddDelayed(time.Now(), msg("t/d", "d"))
	refused = append(refused, struct {
		name string
		err  error
	}{"AddDelayed", derr})
	for _, r := range refused {
		if !errors.Is(r.err, ErrFull) {
			t.Errorf("%s below the reserve = %v, want ErrFull", r.name, r.err)
		}
	}
	if got := s.Maintenance().FullRefused; got != uint64(len(refused)) {
		t.Errorf("FullRefused = %d, want %d", got, len(refused))
	}
	// What frees space or writes small records goes through.
	must(t, s.Enqueue("c2", Pending{Seq: m.Seq, QoS: 1}))
	must(t, s.UpdatePending("c", Pending{Seq: m.Seq, QoS: 1, State: PendingSent, PacketID: 1}))
	must(t, s.SaveSession(&Session{ClientID: "c", ExpiryInterval: 60}))
	must(t, s.SetCursor("bridge", 1))
	must(t, s.RemovePending("c", m.Seq))
	must(t, s.DeleteMessages(m.Seq))
	if _, err := s.Get(m.Seq); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a deleted message = %v", err)
	}
	if s.Head() != m.Seq {
		t.Fatalf("head moved to %d by refused appends", s.Head())
	}
}

// TestBadgerRemovePendingBatch: the batched existence check of
// RemovePending keeps CountPending exact with unknown, repeated and
// unsorted sequence numbers.
func TestBadgerRemovePendingBatch(t *testing.T) {
	s := openBadgerT(t, t.TempDir(), DurabilityNone)
	t.Cleanup(func() { _ = s.Close() })
	var pend []Pending
	for seq := uint64(10); seq < 110; seq += 2 { // 50 entries: 10, 12, …, 108
		pend = append(pend, Pending{Seq: seq, QoS: 1})
	}
	must(t, s.Enqueue("c", pend...))
	must(t, s.Enqueue("c2", Pending{Seq: 11, QoS: 1})) // another client's key in between
	var rm []uint64
	for seq := uint64(120); seq >= 1; seq-- { // descending, half unknown
		if seq < 60 {
			rm = append(rm, seq)
		}
	}
	rm = append(rm, 20, 20, 200)
	must(t, s.RemovePending("c", rm...))
	n, _ := s.CountPending("c")
	if n != 25 { // 60, 62, …, 108
		t.Fatalf("CountPending = %d after removing 25 of 50, want 25", n)
	}
	var left []uint64
	must(t, s.ScanPending("c", 0, func(p Pending) bool { left = append(left, p.Seq); return true }))
	if len(left) != 25 || left[0] != 60 || left[24] != 108 {
		t.Fatalf("left %v", left)
	}
	if n, _ := s.CountPending("c2"); n != 1 {
		t.Fatalf("other client's count %d", n)
	}
	must(t, s.Close())
	s2 := openBadgerT(t, s.opts.Dir, DurabilityNone)
	defer s2.Close()
	if n, _ := s2.CountPending("c"); n != 25 {
		t.Fatalf("CountPending after reopen = %d", n)
	}
}

// TestBadgerTrimResident: the table files' pages can be given back; the
// data stays readable afterwards.
func TestBadgerTrimResident(t *testing.T) {
	dir := t.TempDir()
	o := DefaultBadgerOptions(dir)
	o.Durability = DurabilityNone
	o.Logger = testLogger(t)
	o.MemTableSize = 1 << 20
	o.TrimInterval = -1
	s, err := OpenBadger(o)
	must(t, err)
	t.Cleanup(func() { _ = s.Close() })
	fillAndDrain(t, s, 2000) // flushes a few tables
	ms := make([]*Message, 3000)
	for i := range ms {
		ms[i] = msg("t/keep", fmt.Sprint(i))
	}
	for i := 0; i < len(ms); i += 300 {
		must(t, s.Append(context.Background(), ms[i:i+300]...))
	}
	must(t, s.Compact()) // the messages are now in .sst files
	if runtime.GOOS == "linux" {
		if n := trimResident(dir); n == 0 {
			t.Fatal("no table mapping found to trim")
		}
	}
	got := 0
	must(t, s.Scan(0, func(m *Message) bool {
		if m.Topic == "t/keep" && string(m.Payload) == fmt.Sprint(got) {
			got++
		}
		return true
	}))
	if got != len(ms) {
		t.Fatalf("read back %d of %d messages after the trim", got, len(ms))
	}
}
