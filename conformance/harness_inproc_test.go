package conformance

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/beaconmq/beacon/mqtt"
	"github.com/beaconmq/beacon/storage"
)

func init() { startInProcess = startBeacon }

// startBeacon starts a fresh Beacon for one test: memory store, MQTT and
// WebSocket on 127.0.0.1 with free ports, no HTTP. t.Cleanup shuts it down.
func startBeacon(t *testing.T) *Target {
	t.Helper()
	opts := mqtt.DefaultOptions()
	opts.MQTTAddr = "127.0.0.1:0"
	opts.WSAddr = "127.0.0.1:0"
	opts.HTTPAddr = ""
	opts.Store = storage.NewMemory()
	opts.Logger = testLogger(t)
	srv, err := mqtt.New(opts)
	if err != nil {
		t.Fatalf("mqtt.New: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("broker start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Logf("broker shutdown: %v", err)
		}
	})
	return &Target{Addr: srv.MQTTAddr(), WSAddr: wsURL(srv.WSAddr())}
}

// testLogger routes broker logs to t.Log when BEACON_CONFORMANCE_LOG is set,
// and stops forwarding once the test has finished (a late log line from a
// broker goroutine must not panic the test binary).
func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("BEACON_CONFORMANCE_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	w := &testWriter{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(b))
	}
	return len(b), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}
