package mqtt

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/storage"
)

// mountTmpfs mounts a tmpfs of size (mount's -o size=, e.g. "24m") on a
// fresh directory and unmounts it when the test ends; it skips the test,
// loudly, where mounting is not possible.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("FULL-DISK TEST NOT RUN: it mounts a small tmpfs, which needs root on Linux; run `go test ./mqtt -run FullDisk` as root to test a real full disk")
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "beacon-fulldisk", mnt).CombinedOutput(); err != nil {
		t.Skipf("FULL-DISK TEST NOT RUN: mounting a tmpfs failed (%v: %s); it needs CAP_SYS_ADMIN (a container without it cannot run it)", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

// A real full disk: the broker runs on a badger store in a 24 MiB tmpfs
// and QoS 1 messages of 32 KiB are published until the store refuses one.
// The refusal is PUBACK 0x97 Quota exceeded (5.0), never a crash: badger
// writes through memory-mapped files, where running out of space is a
// SIGBUS that kills the process, so the store refuses new messages while
// less than its reserve (MinFreeBytes) is free. Meanwhile the broker
// serves other clients (QoS 0 publish/subscribe, new connections), and
// after space is added (the tmpfs is grown with a remount) it accepts
// messages again and a durable subscriber gets every message that was
// acknowledged, and none that was refused.
func TestFullDiskRefusesAndRecovers(t *testing.T) {
	mnt := mountTmpfs(t, "24m")
	o := storage.DefaultBadgerOptions(mnt)
	o.MemTableSize = 1 << 20
	o.MinFreeBytes = 6 << 20
	lw := &tlogWriter{t: t}
	o.Logger = slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelInfo}))
	st, err := storage.OpenBadger(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("closing the store after the full disk: %v", err)
		}
		lw.mu.Lock()
		lw.done = true
		lw.mu.Unlock()
	})
	s := startServer(t, func(o *Options) { o.Store = st })

	durable := dial(t, s, packets.V5)
	durable.connect("durable", true, func(p *packets.Connect) { p.Properties.SessionExpiry = 3600 })
	durable.subscribe(1, packets.Subscription{Filter: "full/#", QoS: 1})
	durable.disconnect()

	pub := dial(t, s, packets.V5)
	pub.connect("filler", true, nil)
	pad := bytes.Repeat([]byte("x"), 32<<10)
	acked := map[string]bool{}
	refused := map[string]bool{}
	publish := func(i int) packets.ReasonCode {
		t.Helper()
		payload := append([]byte(strconv.Itoa(i)+"|"), pad...)
		id := uint16(i%60000 + 1)
		pub.send(&packets.Publish{Topic: "full/data", Payload: payload, QoS: 1, PacketID: id})
		a := recvAs[*packets.Puback](pub)
		if a.PacketID != id {
			t.Fatalf("PUBACK for %d, want %d", a.PacketID, id)
		}
		if a.ReasonCode < 0x80 {
			acked[strconv.Itoa(i)] = true
		} else {
			refused[strconv.Itoa(i)] = true
		}
		return a.ReasonCode
	}
	i := 0
	for ; ; i++ {
		if i == 2000 { // 64 MiB: far more than the tmpfs holds
			t.Fatalf("%d messages of 32 KiB accepted by a 24 MiB disk", i)
		}
		rc := publish(i)
		if rc == packets.QuotaExceeded {
			break
		}
		if rc >= 0x80 {
			t.Fatalf("message %d refused with %v, want 0x97 Quota exceeded", i, rc)
		}
	}
	t.Logf("disk full after %d acknowledged messages of 32 KiB", len(acked))
	if len(acked) < 100 {
		t.Fatalf("only %d messages fitted before the refusal", len(acked))
	}
	// Still refused a moment later: the store is still full.
	i++
	if rc := publish(i); rc != packets.QuotaExceeded {
		t.Fatalf("second publish on a full disk: %v", rc)
	}

	// The broker serves everybody else: QoS 0 publish/subscribe and new
	// connections.
	live := dial(t, s, packets.V5)
	live.connect("live-sub", true, nil)
	live.subscribe(1, packets.Subscription{Filter: "live/#", QoS: 0})
	talker := dial(t, s, packets.V311)
	talker.connect("live-pub", true, nil)
	talker.publish("live/x", "still here", 0, false, 0)
	if p := live.recvPublish(false); string(p.Payload) != "still here" {
		t.Fatalf("QoS 0 on a full disk delivered %q", p.Payload)
	}

	// Space comes back: the store accepts messages again.
	if out, err := exec.Command("mount", "-o", "remount,size=256m", mnt).CombinedOutput(); err != nil {
		t.Fatalf("growing the tmpfs: %v: %s", err, out)
	}
	eventually(t, testTimeout, func() error {
		i++
		if rc := publish(i); rc != packets.Success {
			return fmt.Errorf("publish after space came back: %v", rc)
		}
		return nil
	})

	// Every acknowledged message reaches the durable subscriber, in
	// order, and nothing refused does.
	durable = dial(t, s, packets.V5)
	if ca := durable.connect("durable", false, func(p *packets.Connect) { p.Properties.SessionExpiry = 3600 }); !ca.SessionPresent {
		t.Fatal("durable session lost")
	}
	last := -1
	for len(acked) > 0 {
		p := durable.recvPublish(true)
		n, _, ok := bytes.Cut(p.Payload, []byte("|"))
		if !ok {
			t.Fatalf("malformed payload %q…", p.Payload[:min(len(p.Payload), 20)])
		}
		k, _ := strconv.Atoi(string(n))
		if refused[string(n)] {
			t.Fatalf("message %s was refused but delivered", n)
		}
		if !acked[string(n)] {
			t.Fatalf("message %s delivered but never published", n)
		}
		if k <= last {
			t.Fatalf("message %d after %d: out of order or twice", k, last)
		}
		last = k
		delete(acked, string(n))
	}
	durable.expectNothing(100 * time.Millisecond)
}
