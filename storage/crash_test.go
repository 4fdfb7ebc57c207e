package storage

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestBadgerKill9 checks the claim of docs/storage.md that a kill -9 of the
// process loses no acknowledged write in any durability mode: a child
// process (this test binary) appends from 4 goroutines and prints every
// sequence number whose Append returned; the parent kills it with SIGKILL
// after a varying number of acknowledgements, reopens the store and checks
// that every acknowledged message is there, then does it again on the same
// directory.
func TestBadgerKill9(t *testing.T) {
	if dir := os.Getenv("BEACON_STORAGE_CRASH_DIR"); dir != "" {
		crashChild(t, dir, os.Getenv("BEACON_STORAGE_CRASH_MODE"))
		return
	}
	if testing.Short() {
		t.Skip("-short: skips the kill -9 test, which starts child processes")
	}
	for _, mode := range []string{DurabilitySync, DurabilityBatch, DurabilityNone} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			acked := map[uint64]string{}
			for round, killAfter := range []int{50, 700, 3000} {
				for seq, p := range runAndKill(t, dir, mode, killAfter) {
					acked[seq] = p
				}
				s := openBadgerT(t, dir, mode)
				for seq, payload := range acked {
					m, err := s.Get(seq)
					if err != nil {
						t.Fatalf("round %d: acknowledged seq %d lost after kill -9: %v", round, seq, err)
					}
					if string(m.Payload) != payload {
						t.Fatalf("round %d: seq %d payload %q, acknowledged %q", round, seq, m.Payload, payload)
					}
				}
				var maxSeq uint64
				for seq := range acked {
					maxSeq = max(maxSeq, seq)
				}
				if h := s.Head(); h < maxSeq {
					t.Fatalf("round %d: Head %d below acknowledged seq %d", round, h, maxSeq)
				}
				must(t, s.Close())
				t.Logf("round %d: %d acknowledged messages all present, head %d", round, len(acked), maxSeq)
			}
		})
	}
}

// runAndKill starts the child and SIGKILLs it once it has acknowledged
// killAfter appends; it returns seq -> payload of every acknowledgement read.
func runAndKill(t *testing.T, dir, mode string, killAfter int) map[uint64]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestBadgerKill9$", "-test.count=1")
	cmd.Env = append(os.Environ(), "BEACON_STORAGE_CRASH_DIR="+dir, "BEACON_STORAGE_CRASH_MODE="+mode)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	acked := map[uint64]string{}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		seqStr, payload, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "ACK "), " ")
		if !ok || !strings.HasPrefix(sc.Text(), "ACK ") {
			continue
		}
		seq, err := strconv.ParseUint(seqStr, 10, 64)
		must(t, err)
		acked[seq] = payload
		if len(acked) == killAfter {
			must(t, cmd.Process.Kill()) // SIGKILL, our own child by PID
			break
		}
	}
	// Lines written before the kill may still be in the pipe.
	for sc.Scan() {
		if seqStr, payload, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "ACK "), " "); ok && strings.HasPrefix(sc.Text(), "ACK ") {
			if seq, err := strconv.ParseUint(seqStr, 10, 64); err == nil {
				acked[seq] = payload
			}
		}
	}
	_ = cmd.Wait()
	if len(acked) < killAfter {
		t.Fatalf("child acknowledged only %d appends before exiting (want %d)", len(acked), killAfter)
	}
	return acked
}

// crashChild appends until it is killed, printing "ACK <seq> <payload>"
// after each successful Append.
func crashChild(t *testing.T, dir, mode string) {
	o := DefaultBadgerOptions(dir)
	o.Durability = mode
	o.MemTableSize = 8 << 20
	s, err := OpenBadger(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(3)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	deadline := time.Now().Add(30 * time.Second) // the parent kills long before
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				payload := fmt.Sprintf("w%d-%d-%d", w, os.Getpid(), i)
				m := &Message{Topic: "crash", Payload: []byte(payload), QoS: 1}
				if err := s.Append(context.Background(), m); err != nil {
					fmt.Fprintln(os.Stderr, "child append:", err)
					os.Exit(4)
				}
				mu.Lock()
				fmt.Fprintf(os.Stdout, "ACK %d %s\n", m.Seq, payload)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	_ = s.Close()
}
