package storage

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The dead-letter index contract, run against both implementations (the
// shared suite in suite_test.go is the pattern; these are added here so
// the index has its own file).
func TestDeadLetterStore(t *testing.T) {
	impls := map[string]func(t *testing.T) Store{
		"memory": func(t *testing.T) Store { return NewMemory() },
		"badger": func(t *testing.T) Store { return openBadgerT(t, t.TempDir(), DurabilitySync) },
	}
	for name, open := range impls {
		t.Run(name, func(t *testing.T) {
			t.Run("Add, list in order, remove", func(t *testing.T) { testDeadLetterIndex(t, open(t)) })
			t.Run("Every field round trips", func(t *testing.T) { testDeadLetterFields(t, open(t)) })
			t.Run("Many entries, from and early stop", func(t *testing.T) { testDeadLetterMany(t, open(t)) })
			t.Run("Callback may write", func(t *testing.T) { testDeadLetterReentrant(t, open(t)) })
			t.Run("After Close", func(t *testing.T) { testDeadLetterClosed(t, open(t)) })
		})
	}
}

func dlqSeqs(t *testing.T, s Store, from uint64) []uint64 {
	t.Helper()
	var out []uint64
	must(t, s.DeadLetters(from, func(e *DeadLetterEntry) bool { out = append(out, e.Seq); return true }))
	return out
}

func testDeadLetterIndex(t *testing.T, s Store) {
	closeStore(t, s)
	if got := dlqSeqs(t, s, 0); len(got) != 0 {
		t.Fatalf("empty index lists %v", got)
	}
	for _, seq := range []uint64{30, 10, 20, 256, 257} { // added out of order
		must(t, s.AddDeadLetter(&DeadLetterEntry{Seq: seq, Source: "broker", Reason: "r", Topic: fmt.Sprint("t/", seq)}))
	}
	if got, want := dlqSeqs(t, s, 0), []uint64{10, 20, 30, 256, 257}; !reflect.DeepEqual(got, want) {
		t.Fatalf("listed %v, want %v", got, want)
	}
	if got, want := dlqSeqs(t, s, 20), []uint64{20, 30, 256, 257}; !reflect.DeepEqual(got, want) {
		t.Fatalf("from 20: %v, want %v", got, want)
	}
	if got, want := dlqSeqs(t, s, 21), []uint64{30, 256, 257}; !reflect.DeepEqual(got, want) {
		t.Fatalf("from 21: %v, want %v", got, want)
	}
	// Adding the same Seq again replaces the entry.
	must(t, s.AddDeadLetter(&DeadLetterEntry{Seq: 20, Source: "b2", Reason: "again", Attempts: 2}))
	var e20 *DeadLetterEntry
	must(t, s.DeadLetters(20, func(e *DeadLetterEntry) bool { e20 = e; return false }))
	if e20 == nil || e20.Source != "b2" || e20.Reason != "again" || e20.Attempts != 2 {
		t.Fatalf("replaced entry = %+v", e20)
	}
	must(t, s.RemoveDeadLetters(10, 256, 999)) // 999 is unknown: ignored
	if got, want := dlqSeqs(t, s, 0), []uint64{20, 30, 257}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after remove: %v, want %v", got, want)
	}
	must(t, s.RemoveDeadLetters())
	if got := dlqSeqs(t, s, 0); len(got) != 3 {
		t.Fatalf("empty remove changed the index: %v", got)
	}
}

func testDeadLetterFields(t *testing.T, s Store) {
	closeStore(t, s)
	base := time.Unix(1800000000, 123456789).UTC()
	in := &DeadLetterEntry{
		Seq: 7, Source: "warehouse", Reason: "sink-failed", Topic: "orders/π/1",
		QoS: 2, Attempts: 5, FirstFailure: base, At: base.Add(time.Minute), Created: base.Add(-time.Second),
		LastError: "POST http://x: 503", Client: "c-1", UserProps: 3,
	}
	must(t, s.AddDeadLetter(in))
	in.Topic = "changed after Add" // the store keeps its own copy
	var out *DeadLetterEntry
	must(t, s.DeadLetters(0, func(e *DeadLetterEntry) bool { out = e; return true }))
	in.Topic = "orders/π/1"
	if out == nil {
		t.Fatal("entry not listed")
	}
	for _, tm := range []*time.Time{&out.FirstFailure, &out.At, &out.Created} {
		*tm = tm.UTC()
	}
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", out, in)
	}
	// Zero times and empty strings stay zero and empty.
	must(t, s.AddDeadLetter(&DeadLetterEntry{Seq: 8}))
	var z *DeadLetterEntry
	must(t, s.DeadLetters(8, func(e *DeadLetterEntry) bool { z = e; return false }))
	if z == nil || !z.FirstFailure.IsZero() || !z.At.IsZero() || !z.Created.IsZero() || z.Source != "" || z.Attempts != 0 {
		t.Fatalf("zero entry = %+v", z)
	}
}

func testDeadLetterMany(t *testing.T, s Store) {
	closeStore(t, s)
	const n = 700 // more than two scan chunks
	for i := range n {
		must(t, s.AddDeadLetter(&DeadLetterEntry{Seq: uint64(2*i + 1), Source: "broker"}))
	}
	got := dlqSeqs(t, s, 0)
	if len(got) != n {
		t.Fatalf("listed %d, want %d", len(got), n)
	}
	for i, seq := range got {
		if seq != uint64(2*i+1) {
			t.Fatalf("entry %d has seq %d, want %d", i, seq, 2*i+1)
		}
	}
	if got := dlqSeqs(t, s, 600); len(got) != n-300 || got[0] != 601 {
		t.Fatalf("from 600: %d entries starting at %v", len(got), got[:1])
	}
	count := 0
	must(t, s.DeadLetters(0, func(*DeadLetterEntry) bool { count++; return count < 300 }))
	if count != 300 {
		t.Fatalf("fn returning false stopped after %d calls, want 300", count)
	}
}

// The callback runs without a lock held: removing what was just listed
// (what purge does) must not deadlock.
func testDeadLetterReentrant(t *testing.T, s Store) {
	closeStore(t, s)
	for i := range 600 {
		must(t, s.AddDeadLetter(&DeadLetterEntry{Seq: uint64(i + 1)}))
	}
	must(t, s.DeadLetters(0, func(e *DeadLetterEntry) bool {
		must(t, s.RemoveDeadLetters(e.Seq))
		return true
	}))
	if got := dlqSeqs(t, s, 0); len(got) != 0 {
		t.Fatalf("%d entries left after removing each while listing", len(got))
	}
}

func testDeadLetterClosed(t *testing.T, s Store) {
	must(t, s.AddDeadLetter(&DeadLetterEntry{Seq: 1}))
	must(t, s.Close())
	if err := s.AddDeadLetter(&DeadLetterEntry{Seq: 2}); !errors.Is(err, ErrClosed) {
		t.Errorf("AddDeadLetter after Close = %v, want ErrClosed", err)
	}
	if err := s.RemoveDeadLetters(1); !errors.Is(err, ErrClosed) {
		t.Errorf("RemoveDeadLetters after Close = %v, want ErrClosed", err)
	}
	if err := s.DeadLetters(0, func(*DeadLetterEntry) bool { return true }); !errors.Is(err, ErrClosed) {
		t.Errorf("DeadLetters after Close = %v, want ErrClosed", err)
	}
}

// The index survives a reopen of the badger store (written in batch mode,
// so it depends on Close's final fsync like the log does), and a removal
// before the reopen stays removed.
func TestBadgerDeadLettersReopen(t *testing.T) {
	dir := t.TempDir()
	s := openBadgerT(t, dir, DurabilityBatch)
	at := time.Unix(1800000000, 0).UTC()
	for _, seq := range []uint64{3, 5, 9} {
		must(t, s.AddDeadLetter(&DeadLetterEntry{Seq: seq, Source: "broker", Reason: "nack", At: at, Attempts: int(seq)}))
	}
	must(t, s.RemoveDeadLetters(5))
	must(t, s.Close())

	s = openBadgerT(t, dir, DurabilitySync)
	closeStore(t, s)
	var got []DeadLetterEntry
	must(t, s.DeadLetters(0, func(e *DeadLetterEntry) bool { got = append(got, *e); return true }))
	if len(got) != 2 || got[0].Seq != 3 || got[1].Seq != 9 || got[1].Attempts != 9 || !got[1].At.Equal(at) || got[1].Reason != "nack" {
		t.Fatalf("after reopen: %+v", got)
	}
}

// A damaged index value is an error naming the entry, never a silently
// skipped dead letter.
func TestDeadLetterCodecRejectsDamage(t *testing.T) {
	good := appendDeadLetter(nil, &DeadLetterEntry{Seq: 1, Source: "s", Reason: "r", Topic: "t", Attempts: 2, At: time.Now()})
	if _, err := decodeDeadLetter(1, good); err != nil {
		t.Fatalf("good value: %v", err)
	}
	for n := range len(good) {
		if _, err := decodeDeadLetter(1, good[:n]); !errors.Is(err, errCorruptValue) {
			t.Fatalf("truncated to %d bytes: err = %v, want errCorruptValue", n, err)
		}
	}
	if _, err := decodeDeadLetter(1, append(append([]byte(nil), good...), 0)); !errors.Is(err, errCorruptValue) {
		t.Fatalf("trailing byte: err = %v", err)
	}
	bad := append([]byte(nil), good...)
	bad[0] = 99
	if _, err := decodeDeadLetter(1, bad); !errors.Is(err, errCorruptValue) {
		t.Fatalf("unknown format: err = %v", err)
	}
}

// TestBadgerDeadLetterKill9: what AddDeadLetter and RemoveDeadLetters
// acknowledged survives a kill -9, like the log (TestBadgerKill9). A child
// process (this test binary) appends a message and indexes it, and removes
// every third entry again, printing each acknowledged step; the parent
// kills it, reopens the store and checks the index against the steps.
func TestBadgerDeadLetterKill9(t *testing.T) {
	if dir := os.Getenv("BEACON_DLQ_CRASH_DIR"); dir != "" {
		dlqCrashChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("-short: skips the kill -9 test, which starts a child process")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestBadgerDeadLetterKill9$", "-test.count=1")
	cmd.Env = append(os.Environ(), "BEACON_DLQ_CRASH_DIR="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	added, removed := map[uint64]bool{}, map[uint64]bool{}
	read := func(line string) {
		op, num, ok := strings.Cut(line, " ")
		seq, err := strconv.ParseUint(num, 10, 64)
		if !ok || err != nil {
			return
		}
		switch op {
		case "ADD":
			added[seq] = true
		case "DEL":
			removed[seq] = true
		}
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		read(sc.Text())
		if len(added) == 300 {
			must(t, cmd.Process.Kill()) // SIGKILL, our own child by PID
			break
		}
	}
	for sc.Scan() { // lines written before the kill
		read(sc.Text())
	}
	_ = cmd.Wait()
	if len(added) < 300 {
		t.Fatalf("child acknowledged only %d dead letters", len(added))
	}
	s := openBadgerT(t, dir, DurabilitySync)
	closeStore(t, s)
	have := map[uint64]bool{}
	must(t, s.DeadLetters(0, func(e *DeadLetterEntry) bool {
		have[e.Seq] = true
		if e.Source != "broker" || e.Reason != "nack" || e.Topic != fmt.Sprint("t/", e.Seq) {
			t.Errorf("entry %+v", e)
		}
		return true
	}))
	last := uint64(0)
	for seq := range added {
		last = max(last, seq)
	}
	for seq := range added {
		// The child removes every third entry right after adding it, so
		// the last one added may have been removed (committed) with the
		// kill arriving before its DEL line was written: only that one
		// may be missing without a DEL.
		inFlightRemoval := seq == last && seq%3 == 0
		if !removed[seq] && !have[seq] && !inFlightRemoval {
			t.Fatalf("acknowledged dead letter %d lost after kill -9", seq)
		}
		if _, err := s.Get(seq); err != nil {
			t.Fatalf("log entry of dead letter %d: %v", seq, err)
		}
	}
	for seq := range removed {
		if have[seq] {
			t.Fatalf("acknowledged removal of dead letter %d undone after kill -9", seq)
		}
	}
	t.Logf("%d dead letters acknowledged, %d removals, all as acknowledged", len(added), len(removed))
}

// dlqCrashChild appends and indexes dead letters until it is killed.
func dlqCrashChild(dir string) {
	o := DefaultBadgerOptions(dir)
	o.Durability = DurabilitySync
	o.MemTableSize = 8 << 20
	s, err := OpenBadger(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(3)
	}
	deadline := time.Now().Add(30 * time.Second) // the parent kills long before
	for i := 0; time.Now().Before(deadline); i++ {
		m := &Message{Topic: "$dlq/broker/t", Payload: []byte("p"), QoS: 1}
		if err := s.Append(context.Background(), m); err != nil {
			fmt.Fprintln(os.Stderr, "child append:", err)
			os.Exit(4)
		}
		m.Topic = fmt.Sprint("t/", m.Seq)
		if err := s.AddDeadLetter(&DeadLetterEntry{Seq: m.Seq, Source: "broker", Reason: "nack", Topic: m.Topic}); err != nil {
			fmt.Fprintln(os.Stderr, "child index:", err)
			os.Exit(4)
		}
		fmt.Printf("ADD %d\n", m.Seq)
		if i%3 == 2 {
			if err := s.RemoveDeadLetters(m.Seq); err != nil {
				fmt.Fprintln(os.Stderr, "child remove:", err)
				os.Exit(4)
			}
			fmt.Printf("DEL %d\n", m.Seq)
		}
	}
	_ = s.Close()
}
