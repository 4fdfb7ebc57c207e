package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// testLogger routes the store's logs to t.Log (warnings and above).
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func openBadgerT(t testing.TB, dir, durability string) *Badger {
	t.Helper()
	o := DefaultBadgerOptions(dir)
	o.Durability = durability
	o.Logger = testLogger(t)
	o.MemTableSize = 8 << 20 // keep tests light
	b, err := OpenBadger(o)
	if err != nil {
		t.Fatalf("OpenBadger(%s): %v", durability, err)
	}
	return b
}

func TestBadger(t *testing.T) {
	for _, mode := range []string{DurabilitySync, DurabilityBatch, DurabilityNone} {
		t.Run(mode, func(t *testing.T) {
			if mode != DurabilitySync && testing.Short() {
				t.Skip("-short: the suite runs against badger in sync mode only")
			}
			runSuite(t, func(t *testing.T) Store { return openBadgerT(t, t.TempDir(), mode) })
		})
	}
}

// TestBadgerReopen: everything the store holds survives Close and OpenBadger,
// and the counters the committer owns (head, revision, pending counts) are
// recovered rather than restarted.
func TestBadgerReopen(t *testing.T) {
	dir := t.TempDir()
	s := openBadgerT(t, dir, DurabilitySync)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		must(t, s.Append(ctx, msg(fmt.Sprintf("t/%d", i), "x")))
	}
	must(t, s.DeleteMessages(5)) // the newest: head must still come back as 5
	sess := &Session{ClientID: "c", ExpiryInterval: 3600, Subscriptions: []Subscription{{Filter: "t/#", QoS: 2}}}
	must(t, s.SaveSession(sess))
	must(t, s.Enqueue("c", Pending{Seq: 2, QoS: 1}, Pending{Seq: 3, QoS: 2, State: PendingSent, PacketID: 9}))
	must(t, s.AddInbound("c", 77))
	must(t, s.SetRetained(msg("t/r", "kept")))
	must(t, s.SetCursor("bridge", 4))
	must(t, s.Close())

	s = openBadgerT(t, dir, DurabilitySync)
	closeStore(t, s)
	if h := s.Head(); h != 5 {
		t.Fatalf("Head after reopen = %d, want 5", h)
	}
	m := msg("t/new", "y")
	must(t, s.Append(ctx, m))
	if m.Seq != 6 {
		t.Fatalf("first Seq after reopen = %d, want 6", m.Seq)
	}
	if got := scanAll(t, s, 0); len(got) != 5 || got[0].Topic != "t/0" || got[4].Seq != 6 {
		t.Fatalf("log after reopen: %d messages", len(got))
	}
	loaded, err := s.LoadSession("c")
	must(t, err)
	if loaded.Revision != sess.Revision || len(loaded.Subscriptions) != 1 || loaded.ExpiryInterval != 3600 {
		t.Fatalf("session after reopen = %+v", loaded)
	}
	// The revision counter continues: a re-created record gets a new one.
	must(t, s.DeleteSession("c", 0))
	fresh := &Session{ClientID: "c"}
	must(t, s.SaveSession(fresh))
	if fresh.Revision <= sess.Revision {
		t.Fatalf("revision after reopen = %d, not above %d", fresh.Revision, sess.Revision)
	}
	must(t, s.Enqueue("d", Pending{Seq: 1}))
	must(t, s.Close())

	s = openBadgerT(t, dir, DurabilityBatch)
	closeStore(t, s)
	if n, err := s.CountPending("d"); err != nil || n != 1 {
		t.Fatalf("CountPending after reopen = %d, %v; want 1", n, err)
	}
	if n, _ := s.CountPending("c"); n != 0 {
		t.Fatalf("CountPending of deleted session after reopen = %d", n)
	}
	if c, _ := s.Cursor("bridge"); c != 4 {
		t.Fatalf("cursor after reopen = %d", c)
	}
	found := false
	must(t, s.Retained(func(m *Message) bool { found = m.Topic == "t/r" && string(m.Payload) == "kept"; return true }))
	if !found {
		t.Fatal("retained message lost across reopen")
	}
}

// TestBadgerPendingCountSurvivesReopen checks the counts rebuilt on open
// against what a scan finds, including entries enqueued twice.
func TestBadgerPendingCountSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s := openBadgerT(t, dir, DurabilityNone)
	for i := uint64(1); i <= 1000; i++ {
		must(t, s.Enqueue("c", Pending{Seq: i}))
	}
	must(t, s.Enqueue("c", Pending{Seq: 10}, Pending{Seq: 20}))
	must(t, s.RemovePending("c", 1, 2, 3))
	if n, _ := s.CountPending("c"); n != 997 {
		t.Fatalf("CountPending = %d, want 997", n)
	}
	must(t, s.Close())
	s = openBadgerT(t, dir, DurabilityNone)
	closeStore(t, s)
	if n, _ := s.CountPending("c"); n != 997 {
		t.Fatalf("CountPending after reopen = %d, want 997", n)
	}
}

// TestBadgerGroupCommit holds the committer on the first request of a group
// until 50 more are queued, then checks they were committed together with
// one fsync.
func TestBadgerGroupCommit(t *testing.T) {
	t.Run("badger SyncWrites", func(t *testing.T) { testGroupCommit(t, false) })
	t.Run("explicit Sync", func(t *testing.T) { testGroupCommit(t, true) })
}

func testGroupCommit(t *testing.T, explicitSync bool) {
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	o := DefaultBadgerOptions(t.TempDir())
	o.Logger = testLogger(t)
	o.MemTableSize = 8 << 20
	o.explicitSync = explicitSync
	o.groupHook = func() { once.Do(func() { close(entered); <-release }) }
	s, err := OpenBadger(o)
	must(t, err)
	closeStore(t, s)
	var wg sync.WaitGroup
	errs := make(chan error, 51)
	for i := 0; i < 51; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.Append(context.Background(), msg("g", fmt.Sprint(i)))
		}()
		if i == 0 {
			// The first request is the one the committer holds in the hook.
			select {
			case <-entered:
			case <-time.After(10 * time.Second):
				t.Fatal("committer never took the first request")
			}
		}
	}
	eventually(t, 10*time.Second, func() error {
		if n := len(s.reqs); n != 50 {
			return fmt.Errorf("%d requests queued, want 50", n)
		}
		return nil
	})
	syncsBefore := s.syncs.Load()
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err)
	}
	if g := s.groups.Load(); g != 1 {
		t.Fatalf("51 waiting appends took %d group commits, want 1", g)
	}
	if n := s.syncs.Load() - syncsBefore; n != 1 {
		t.Fatalf("51 waiting appends took %d fsyncs, want 1", n)
	}
	if h := s.Head(); h != 51 {
		t.Fatalf("Head = %d, want 51", h)
	}
}

// TestBadgerLargeGroupSplits: a group bigger than one badger transaction is
// committed as several transactions and every message still lands, in
// order; a single Append too big for any transaction is written in parts,
// its messages still numbered consecutively.
func TestBadgerLargeGroupSplits(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	o := DefaultBadgerOptions(t.TempDir())
	o.Logger = testLogger(t)
	o.MemTableSize = 8 << 20   // about 600 KB per transaction
	o.ValueThreshold = 4 << 10 // the 3000-byte payloads stay in the LSM tree
	o.groupHook = func() { once.Do(func() { close(entered); <-release }) }
	s, err := OpenBadger(o)
	must(t, err)
	closeStore(t, s)
	payload := make([]byte, 3000) // below this test's ValueThreshold: counts fully in the txn
	const n = 400
	var wg sync.WaitGroup
	seqs := make([]uint64, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := &Message{Topic: "big", Payload: payload}
			if err := s.Append(context.Background(), m); err != nil {
				t.Errorf("Append: %v", err)
			}
			seqs[i] = m.Seq
		}()
		if i == 0 {
			<-entered
		}
	}
	eventually(t, 10*time.Second, func() error {
		if q := len(s.reqs); q != n-1 {
			return fmt.Errorf("%d requests queued, want %d", q, n-1)
		}
		return nil
	})
	close(release)
	wg.Wait()
	if g := s.groups.Load(); g != 1 {
		t.Fatalf("%d groups, want 1", g)
	}
	if c := s.commits.Load(); c < 2 {
		t.Fatalf("1.2 MB group committed in %d transaction(s); expected a split", c)
	}
	if h := s.Head(); h != n {
		t.Fatalf("Head = %d, want %d", h, n)
	}
	got := scanAll(t, s, 0)
	if len(got) != n {
		t.Fatalf("Scan found %d, want %d", len(got), n)
	}
	for i, m := range got {
		if m.Seq != uint64(i+1) || len(m.Payload) != 3000 {
			t.Fatalf("message %d: seq %d, %d bytes", i, m.Seq, len(m.Payload))
		}
	}

	huge := make([]*Message, 1000)
	for i := range huge {
		huge[i] = &Message{Topic: "huge", Payload: payload}
	}
	before := s.commits.Load()
	must(t, s.Append(context.Background(), huge...))
	if c := s.commits.Load() - before; c < 2 {
		t.Fatalf("3 MB single Append committed in %d transaction(s); expected parts", c)
	}
	for i, m := range huge {
		if m.Seq != n+1+uint64(i) {
			t.Fatalf("huge[%d] has seq %d, want %d", i, m.Seq, n+1+i)
		}
	}
	if h := s.Head(); h != n+1000 {
		t.Fatalf("Head = %d, want %d", h, n+1000)
	}
	m := msg("after", "x")
	must(t, s.Append(context.Background(), m))
	if m.Seq != n+1001 {
		t.Fatalf("Seq after the large Append = %d, want %d", m.Seq, n+1001)
	}
}

func TestBadgerLockedDir(t *testing.T) {
	dir := t.TempDir()
	s := openBadgerT(t, dir, DurabilitySync)
	closeStore(t, s)
	o := DefaultBadgerOptions(dir)
	_, err := OpenBadger(o)
	if err == nil {
		t.Fatal("second OpenBadger of a locked dir succeeded")
	}
	if !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("error does not name the dir and the lock: %v", err)
	}
}

func TestBadgerBadDirs(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	must(t, os.WriteFile(file, []byte("x"), 0o600))
	foreign := filepath.Join(base, "foreign")
	must(t, os.MkdirAll(foreign, 0o750))
	must(t, os.WriteFile(filepath.Join(foreign, "notes.txt"), []byte("x"), 0o600))

	corrupt := filepath.Join(base, "corrupt")
	s := openBadgerT(t, corrupt, DurabilitySync)
	must(t, s.Append(context.Background(), msg("a", "b")))
	must(t, s.Close())
	must(t, os.WriteFile(filepath.Join(corrupt, "MANIFEST"), []byte("this is not a manifest at all"), 0o600))

	for _, tc := range []struct {
		name, dir, want string
	}{
		{"path is a file", file, "not a directory"},
		{"dir of other files", foreign, "no badger MANIFEST"},
		{"corrupt manifest", corrupt, "corrupt"},
		{"empty dir name", "", "data dir is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultBadgerOptions(tc.dir)
			o.Logger = testLogger(t)
			s, err := OpenBadger(o)
			if err == nil {
				s.Close()
				t.Fatal("OpenBadger succeeded")
			}
			if !strings.Contains(err.Error(), tc.dir) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name %q and %q", err, tc.dir, tc.want)
			}
		})
	}
}

// TestBadgerUnreadableDir needs a user that file permissions apply to.
func TestBadgerUnreadableDir(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root: permission bits do not stop root, so an unreadable dir cannot be made")
	}
	dir := filepath.Join(t.TempDir(), "locked")
	must(t, os.MkdirAll(dir, 0o750))
	must(t, os.WriteFile(filepath.Join(dir, "MANIFEST"), nil, 0o600))
	must(t, os.Chmod(dir, 0))
	t.Cleanup(func() { _ = os.Chmod(dir, 0o750) })
	_, err := OpenBadger(DefaultBadgerOptions(dir))
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("OpenBadger of an unreadable dir = %v", err)
	}
}

// TestBadgerNotBeaconData: a badger dir written by something else (no
// format marker) is refused rather than mixed with.
func TestBadgerNotBeaconData(t *testing.T) {
	dir := t.TempDir()
	s := openBadgerT(t, dir, DurabilitySync)
	must(t, s.Close())
	// Remove the marker through a raw badger handle to simulate a foreign dir.
	s = openBadgerT(t, dir, DurabilitySync)
	must(t, s.db.Update(func(txn *badger.Txn) error {
		if err := txn.Set([]byte("foreign"), []byte("1")); err != nil {
			return err
		}
		return txn.Delete(keyFormat)
	}))
	must(t, s.Close())
	_, err := OpenBadger(DefaultBadgerOptions(dir))
	if err == nil || !strings.Contains(err.Error(), "format marker") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("OpenBadger of a foreign badger dir = %v", err)
	}
}

func TestWrapWriteErrorFull(t *testing.T) {
	err := wrapWriteError(fmt.Errorf("commit: %w", &os.PathError{Op: "write", Path: "/x/000001.vlog", Err: syscall.ENOSPC}))
	if !errors.Is(err, ErrFull) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("ENOSPC not wrapped as ErrFull: %v", err)
	}
	err = wrapWriteError(errors.New("While writing: write /x/MANIFEST: no space left on device"))
	if !errors.Is(err, ErrFull) {
		t.Fatalf("flattened ENOSPC text not wrapped as ErrFull: %v", err)
	}
	if err := wrapWriteError(errors.New("other")); errors.Is(err, ErrFull) {
		t.Fatal("unrelated error wrapped as ErrFull")
	}
}

func TestBadgerOptionsValidate(t *testing.T) {
	o := BadgerOptions{Dir: "d"}
	must(t, o.Validate())
	if o.Durability != DurabilitySync || o.BatchInterval != 10*time.Millisecond || o.MaxGroup == 0 {
		t.Fatalf("defaults not filled: %+v", o)
	}
	o = BadgerOptions{Dir: "d", Durability: "fsync"}
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "fsync") {
		t.Fatalf("bad durability accepted: %v", err)
	}
}

// eventually polls cond until it returns nil or timeout passes.
func eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", timeout, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestBadgerCloseJoinsGoroutines: the committer, the GC loop and the batch
// fsync ticker are gone once Close returns (give the runtime a moment to
// retire goroutines that already called Done).
func TestBadgerCloseJoinsGoroutines(t *testing.T) {
	// Goroutines are counted process-wide: first let any store an earlier
	// test closed finish stopping.
	eventually(t, 5*time.Second, func() error {
		if n := storageGoroutines(); n != 0 {
			return fmt.Errorf("%d store goroutines of earlier tests still running (a test left a store open?)", n)
		}
		return nil
	})
	s := openBadgerT(t, t.TempDir(), DurabilityBatch)
	must(t, s.Append(context.Background(), msg("a", "b")))
	eventually(t, 5*time.Second, func() error {
		if n := storageGoroutines(); n != 3 {
			return fmt.Errorf("%d store goroutines running, want 3 (committer, maintenance, fsync ticker)", n)
		}
		return nil
	})
	must(t, s.Close())
	eventually(t, 5*time.Second, func() error {
		if n := storageGoroutines(); n != 0 {
			return fmt.Errorf("%d store goroutines still running after Close", n)
		}
		return nil
	})
}

func storageGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf)) // every goroutine, not the first 1 MiB of them
	}
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, fn := range []string{"storage.(*Badger).commitLoop", "storage.(*Badger).maintainLoop", "storage.(*Badger).syncLoop"} {
			if strings.Contains(g, fn) {
				n++
			}
		}
	}
	return n
}
