package mqtt

import (
	"context"
	"fmt"
	"testing"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/storage"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// LogAppended wakes on every append (client PUBLISH at QoS 1/2 and
// Publish), not on QoS 0, and the table entry goes with the server.
func TestLogAppended(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s, packets.V5)
	c.connect("watch-pub", true, nil)

	ch := s.LogAppended()
	c.publish("w/0", "zero", 0, false, 0)
	c.publish("w/1", "one", 1, false, 1) // its PUBACK comes after the append
	if !closed(ch) {
		t.Fatal("a QoS 1 PUBLISH did not wake the log reader")
	}

	ch = s.LogAppended()
	c.publish("w/0", "zero", 0, false, 0)
	c.publish("w/0", "zero", 0, false, 0)
	if closed(ch) {
		t.Fatal("QoS 0 messages are not on the log but woke the reader")
	}
	if err := s.Publish(&storage.Message{Topic: "w/2", Payload: []byte("two"), QoS: 2}); err != nil {
		t.Fatal(err)
	}
	if !closed(ch) {
		t.Fatal("Publish at QoS 2 did not wake the log reader")
	}
	if again := s.LogAppended(); closed(again) {
		t.Fatal("a fresh channel is closed before any new append")
	}

	if _, ok := logWatches.Load(s); !ok {
		t.Fatal("no table entry for a server with a reader")
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, testTimeout, func() error {
		if _, ok := logWatches.Load(s); ok {
			return fmt.Errorf("table entry still there after Shutdown")
		}
		return nil
	})
}
