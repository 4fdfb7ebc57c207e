package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
)

// TestSIGTERMUnderLoadLosesNothing: a graceful stop is as safe as a crash.
// Publishers send QoS 1 messages to a durable subscriber session on a
// badger broker; SIGTERM lands in the middle of the load; the broker must
// exit 0 within its shutdown budget, and after a restart on the same data
// dir every message whose PUBACK a publisher received must reach the
// subscriber. (The crash test does the same with SIGKILL.)
func TestSIGTERMUnderLoadLosesNothing(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	args := []string{"serve", "--storage", "badger", "--data", dataDir, "--durability", "sync",
		"--mqtt", addr, "--ws", "", "--http", ""}
	proc := startBeacon(t, args...)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	// crashSub and crashPub (crash_test.go): a 5.0 subscriber with a session
	// expiry of an hour on crash/#, and publishers that reconnect after the
	// broker comes back, recording each PUBACKed payload.
	sub := &crashSub{id: "term-sub", version: packets.V5, got: map[string]int{},
		inbound: map[uint16]string{}, subscribed: make(chan struct{})}
	wg.Add(1)
	go func() { defer wg.Done(); sub.run(ctx, addr) }()
	select {
	case <-sub.subscribed:
	case <-time.After(10 * time.Second):
		t.Fatal("subscriber did not subscribe within 10s")
	}

	pubCtx, stopPub := context.WithCancel(ctx)
	pubs := []*crashPub{{id: "term-pub-a", qos: 1}, {id: "term-pub-b", qos: 1}, {id: "term-pub-c", qos: 1}}
	var pwg sync.WaitGroup
	for _, p := range pubs {
		p.acked = map[string]bool{}
		pwg.Add(1)
		go func() { defer pwg.Done(); p.run(pubCtx, addr) }()
	}
	ackedCount := func() int {
		n := 0
		for _, p := range pubs {
			p.mu.Lock()
			n += len(p.acked)
			p.mu.Unlock()
		}
		return n
	}

	// Under load: SIGTERM once the publishers are well under way.
	eventually(t, 20*time.Second, func() error {
		if n := ackedCount(); n < 300 {
			return fmt.Errorf("%d messages acknowledged so far", n)
		}
		return nil
	})
	beforeStop := ackedCount()
	if code := proc.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d after SIGTERM under load, want 0\n%s", code, proc.stderr.String())
	}

	// Restart on the same data dir; the clients reconnect by themselves.
	proc = startBeacon(t, args...)
	eventually(t, 20*time.Second, func() error {
		if n := ackedCount(); n < beforeStop+100 {
			return fmt.Errorf("%d acknowledged, want %d after the restart", n, beforeStop+100)
		}
		return nil
	})
	stopPub()
	pwg.Wait()

	acked := map[string]bool{}
	for _, p := range pubs {
		p.mu.Lock()
		for k := range p.acked {
			acked[k] = true
		}
		p.mu.Unlock()
	}
	eventually(t, 30*time.Second, func() error {
		sub.mu.Lock()
		defer sub.mu.Unlock()
		var missing []string
		for k := range acked {
			if sub.got[k] == 0 {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			return fmt.Errorf("subscriber misses %d of %d acknowledged messages, e.g. %v", len(missing), len(acked), missing[:min(len(missing), 10)])
		}
		return nil
	})
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.sessionLost > 0 {
		t.Errorf("the subscriber's session was gone after the restart (Session Present 0) %d times", sub.sessionLost)
	}
	t.Logf("acknowledged %d (%d before SIGTERM), subscriber received %d distinct, reconnects %d",
		len(acked), beforeStop, len(sub.got), sub.reconnects)
	if code := proc.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit code %d at the end", code)
	}
}
