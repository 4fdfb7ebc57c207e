package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestBridgeKillLosesNothing: a real beacon process on badger forwards
// crash/# to an HTTP endpoint through a bridge, and is killed with SIGKILL
// at random moments while publishers send QoS 1 messages, then restarted on
// the same data dir. Every message a publisher got a PUBACK for must reach
// the endpoint at least once (the bridge resumes at its saved cursor);
// duplicates are allowed and counted. The endpoint also fails one request
// in ten with 503, so retries run across the kills.
func TestBridgeKillLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("kill test: skipped in -short mode (it kills and restarts a broker 3 times)")
	}
	var mu sync.Mutex
	got := map[string]int{} // payload -> accepted deliveries
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed) // health probe: up
			return
		}
		if rng.IntN(10) == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		got[string(body)]++
	}))
	defer hook.Close()

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "beacon.yaml")
	cfg := fmt.Sprintf(`bridges:
  - name: hook
    type: http
    topics: ["crash/#"]
    concurrency: 4
    cursor_interval: 200ms
    retry: {initial_backoff: 10ms, max_backoff: 100ms, max_attempts: 0}
    http: {url: %q, timeout: 2s}
`, hook.URL+"/in")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	args := []string{"serve", "--config", cfgPath, "--storage", "badger", "--data", filepath.Join(dir, "data"),
		"--mqtt", addr, "--ws", "", "--http", "127.0.0.1:0"}
	proc := startBeacon(t, args...)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pubs := []*crashPub{{id: "bridge-pub-a", qos: 1}, {id: "bridge-pub-b", qos: 1}}
	var wg sync.WaitGroup
	for _, p := range pubs {
		p.acked = map[string]bool{}
		wg.Add(1)
		go func() { defer wg.Done(); p.run(ctx, addr) }()
	}
	krng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	for i := 0; i < 3; i++ {
		time.Sleep(time.Duration(300+krng.IntN(500)) * time.Millisecond) // load between kills, not synchronisation
		if err := proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		proc.wait(t)
		proc = startBeacon(t, args...)
	}
	time.Sleep(300 * time.Millisecond) // a last stretch of load after the final restart
	cancel()
	wg.Wait()

	var acked []string
	published := 0
	for _, p := range pubs {
		p.mu.Lock()
		published += p.sent
		for k := range p.acked {
			acked = append(acked, k)
		}
		p.mu.Unlock()
	}
	if len(acked) == 0 {
		t.Fatal("no message was acknowledged: the load never ran")
	}
	eventually(t, 30*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		var missing []string
		for _, k := range acked {
			if got[k] == 0 {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			return fmt.Errorf("the endpoint still misses %d of %d acknowledged messages, e.g. %v", len(missing), len(acked), missing[:min(len(missing), 10)])
		}
		return nil
	})
	mu.Lock()
	dups, delivered := 0, 0
	for _, n := range got {
		delivered += n
		dups += n - 1
	}
	mu.Unlock()
	t.Logf("published %d, acknowledged %d, accepted by the endpoint %d (distinct %d), duplicates %d",
		published, len(acked), delivered, len(got), dups)
	// The serve hook registered the admin route: the bridge is caught up.
	eventually(t, 10*time.Second, func() error {
		resp, err := http.Get("http://" + proc.http + "/api/v1/bridges/hook")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var st struct {
			State string `json:"state"`
			Lag   uint64 `json:"lag"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return fmt.Errorf("%s: %v", resp.Status, err)
		}
		if st.State != "running" || st.Lag != 0 {
			return fmt.Errorf("bridge hook: %+v", st)
		}
		return nil
	})
	if code := proc.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit code after SIGTERM = %d", code)
	}
}
