package interop

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/beaconmq/beacon/mqtt"
	"github.com/beaconmq/beacon/storage"
)

// startBeacon runs an in-process Beacon (memory store, MQTT and WebSocket on
// free loopback ports, no HTTP) and shuts it down on cleanup. Broker logs go
// to stderr when BEACON_INTEROP_LOG=1.
func startBeacon(t *testing.T) broker {
	t.Helper()
	opts := mqtt.DefaultOptions()
	opts.MQTTAddr = "127.0.0.1:0"
	opts.WSAddr = "127.0.0.1:0"
	opts.HTTPAddr = ""
	store := storage.NewMemory()
	opts.Store = store
	if os.Getenv("BEACON_INTEROP_LOG") == "1" {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := mqtt.New(opts)
	if err != nil {
		t.Fatalf("mqtt.New: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		// Shutdown leaves a Store it was given open for its owner.
		if err := store.Close(); err != nil {
			t.Errorf("store Close: %v", err)
		}
	})
	return broker{name: "beacon", mqttAddr: srv.MQTTAddr(), wsAddr: srv.WSAddr()}
}
