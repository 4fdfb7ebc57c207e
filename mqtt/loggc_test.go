package mqtt

import (
	"fmt"
	"testing"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/storage"
)

// logSeqs lists the sequence numbers on the log.
func logSeqs(t *testing.T, st storage.Store) []uint64 {
	t.Helper()
	var seqs []uint64
	if err := st.Scan(0, func(m *storage.Message) bool { seqs = append(seqs, m.Seq); return true }); err != nil {
		t.Fatal(err)
	}
	return seqs
}

// CollectLog deletes log entries no session, retained message or log
// reader needs, and keeps the others until they are no longer needed.
func TestCollectLog(t *testing.T) {
	st := storage.NewMemory()
	s := startServer(t, func(o *Options) { o.Store = st })
	off := dial(t, s, packets.V311)
	off.connect("offline", false, nil)
	off.subscribe(1, packets.Subscription{Filter: "gc/keep", QoS: 1})
	off.disconnect()
	eventually(t, testTimeout, func() error {
		if s.stats.ClientsConnected.Load() != 0 {
			return fmt.Errorf("still connected")
		}
		return nil
	})
	pub := dial(t, s, packets.V311)
	pub.connect("pub", true, nil)
	pub.publish("gc/drop", "nobody", 1, false, 1)  // seq 1: not needed
	pub.publish("gc/keep", "queued", 1, false, 2)  // seq 2: pending for offline
	pub.publish("gc/ret", "retained", 1, true, 3)  // seq 3: retained
	pub.publish("gc/drop", "nobody2", 1, false, 4) // seq 4: held by the reader below
	var readerAt uint64 = 4
	s.HoldLog("bridge", func() uint64 { return readerAt })

	n, err := s.CollectLog()
	if err != nil || n != 1 {
		t.Fatalf("collected %d (%v), want 1", n, err)
	}
	if got := fmt.Sprint(logSeqs(t, st)); got != "[2 3 4]" {
		t.Fatalf("log after first collection %s", got)
	}

	// The reader moves on, the offline session takes its message, the
	// retained message is cleared: everything can go.
	readerAt = 5
	off = dial(t, s, packets.V311)
	off.connect("offline", false, nil)
	off.recvPublish(true)
	pub.publish("gc/ret", "", 0, true, 0)
	pub.send(&packets.Pingreq{})
	recvAs[*packets.Pingresp](pub)
	eventually(t, testTimeout, func() error {
		if _, err := s.CollectLog(); err != nil {
			return err
		}
		if seqs := logSeqs(t, st); len(seqs) != 0 {
			return fmt.Errorf("log still holds %v", seqs)
		}
		return nil
	})
	if s.stats.LogCollected.Load() != 4 {
		t.Errorf("collected %d in all, want 4", s.stats.LogCollected.Load())
	}
}
