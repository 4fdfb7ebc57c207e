//go:build unix

package storage

import (
	"bytes"
	"context"
	"fmt"
	"testing"
)

// Size counts what the badger store puts on disk: writing megabytes of
// large payloads (value log) grows vlog, and the LSM tree is never empty.
func TestBadgerSize(t *testing.T) {
	b, err := OpenBadger(DefaultBadgerOptions(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	lsm0, vlog0 := b.Size()
	payload := bytes.Repeat([]byte("v"), 64<<10) // above ValueThreshold: value log
	for i := range 64 {
		m := &Message{Topic: fmt.Sprintf("size/%d", i), Payload: payload, QoS: 1}
		if err := b.Append(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	lsm1, vlog1 := b.Size()
	if vlog1 < vlog0+2<<20 {
		t.Errorf("vlog %d -> %d after writing 4 MiB of values, want at least 2 MiB more", vlog0, vlog1)
	}
	if lsm1 <= 0 {
		t.Errorf("lsm size %d, want > 0 (write-ahead log, manifest)", lsm1)
	}
	t.Logf("lsm %d -> %d, vlog %d -> %d", lsm0, lsm1, vlog0, vlog1)
}
