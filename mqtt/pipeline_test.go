package mqtt

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/storage"
)

// gateStore is a memory store whose Append calls are counted and, while
// the gate is closed, block: it stands in for an fsync that takes long.
type gateStore struct {
	*storage.Memory
	calls   atomic.Int64
	msgs    atomic.Int64
	mu      sync.Mutex
	gate    chan struct{} // nil: open
	waiting atomic.Int64
}

func (s *gateStore) close() {
	s.mu.Lock()
	s.gate = make(chan struct{})
	s.mu.Unlock()
}

func (s *gateStore) open() {
	s.mu.Lock()
	if s.gate != nil {
		close(s.gate)
		s.gate = nil
	}
	s.mu.Unlock()
}

func (s *gateStore) Append(ctx context.Context, msgs ...*storage.Message) error {
	s.mu.Lock()
	g := s.gate
	s.mu.Unlock()
	if g != nil {
		s.waiting.Add(1)
		<-g
		s.waiting.Add(-1)
	}
	s.calls.Add(1)
	s.msgs.Add(int64(len(msgs)))
	return s.Memory.Append(ctx, msgs...)
}

// pipelineLen is the number of PUBLISH packets c's connection has queued
// behind the worker's current batch.
func pipelineLen(s *Server, id string) int {
	s.mu.Lock()
	e := s.sessions[id]
	s.mu.Unlock()
	if e == nil || e.cl == nil {
		return -1
	}
	e.cl.pipe.mu.Lock()
	defer e.cl.pipe.mu.Unlock()
	return len(e.cl.pipe.items)
}

// While one append waits for the disk, the connection keeps reading: the
// PUBLISH packets that arrive meanwhile go to the log in one Append call
// (one group commit), and are acknowledged and delivered in the order they
// were sent [MQTT-4.6.0-2] [MQTT-4.6.0-6], QoS 0 included.
func TestPipelineBatchesAppendsInOrder(t *testing.T) {
	st := &gateStore{Memory: storage.NewMemory()}
	s := startServer(t, func(o *Options) { o.Store = st })

	sub := dial(t, s, packets.V5)
	sub.connect("sub", true, nil)
	sub.subscribe(1, packets.Subscription{Filter: "pipe/#", QoS: 1})
	pub := dial(t, s, packets.V5)
	pub.connect("pub", true, nil)

	st.close()
	const n = 60
	pub.send(&packets.Publish{Topic: "pipe/t", Payload: []byte("0"), QoS: 1, PacketID: 1})
	eventually(t, testTimeout, func() error {
		if st.waiting.Load() != 1 {
			return fmt.Errorf("first append not waiting yet")
		}
		return nil
	})
	for i := 1; i < n; i++ {
		qos := byte(i % 3)
		p := &packets.Publish{Topic: "pipe/t", Payload: fmt.Appendf(nil, "%d", i), QoS: qos}
		if qos > 0 {
			p.PacketID = uint16(i + 1)
		}
		pub.send(p)
	}
	eventually(t, testTimeout, func() error {
		if l := pipelineLen(s, "pub"); l != n-1 {
			return fmt.Errorf("%d packets queued, want %d", l, n-1)
		}
		return nil
	})
	st.open()

	// Acknowledgements in order: PUBACK for QoS 1, PUBREC for QoS 2.
	var want []uint16
	for i := 0; i < n; i++ {
		if i%3 != 0 || i == 0 {
			want = append(want, uint16(i+1))
		}
	}
	for len(want) > 0 {
		var got uint16
		switch a := pub.recv().(type) {
		case *packets.Puback:
			got = a.PacketID
		case *packets.Pubrec:
			got = a.PacketID
			pub.send(&packets.Pubrel{PacketID: a.PacketID})
		case *packets.Pubcomp:
			continue
		default:
			t.Fatalf("got %T, want an acknowledgement", a)
		}
		if got != want[0] {
			t.Fatalf("acknowledgement for %d, want %d (out of order)", got, want[0])
		}
		want = want[1:]
	}
	for i := 0; i < n; i++ {
		p := sub.recvPublish(true)
		if string(p.Payload) != fmt.Sprint(i) {
			t.Fatalf("delivery %d has payload %q, want %d (out of order)", i, p.Payload, i)
		}
	}
	// The first message alone, then the 40 QoS 1/2 ones queued meanwhile.
	if c, m := st.calls.Load(), st.msgs.Load(); c != 2 || m != 41 {
		t.Fatalf("%d Append calls for %d messages, want 2 for 41", c, m)
	}
}

// Messages accepted but not yet acknowledged (waiting for the log) count
// against the server's Receive Maximum: one more is DISCONNECT 0x93.
func TestPipelineCountsAgainstReceiveMaximum(t *testing.T) {
	st := &gateStore{Memory: storage.NewMemory()}
	s := startServer(t, func(o *Options) { o.Store = st; o.ReceiveMaximum = 4 })
	defer st.open()
	pub := dial(t, s, packets.V5)
	pub.connect("pub", true, nil)
	st.close()
	for i := 1; i <= 5; i++ {
		pub.send(&packets.Publish{Topic: "rm/t", Payload: []byte("x"), QoS: 1, PacketID: uint16(i)})
	}
	got := pub.expectClosed()
	if len(got) == 0 {
		t.Fatal("closed without DISCONNECT")
	}
	d, ok := got[len(got)-1].(*packets.Disconnect)
	if !ok || d.ReasonCode != packets.ReceiveMaximumExceeded {
		t.Fatalf("last packet %#v, want DISCONNECT 0x93", got[len(got)-1])
	}
}

// A QoS 2 PUBLISH sent again (DUP) while the first copy still waits for
// the log is answered with a second PUBREC and delivered once
// [MQTT-4.3.3-10].
func TestPipelineQoS2DuplicateWhileQueued(t *testing.T) {
	st := &gateStore{Memory: storage.NewMemory()}
	s := startServer(t, func(o *Options) { o.Store = st })
	sub := dial(t, s, packets.V5)
	sub.connect("sub", true, nil)
	sub.subscribe(1, packets.Subscription{Filter: "dup/#", QoS: 2})
	pub := dial(t, s, packets.V5)
	pub.connect("pub", true, nil)

	st.close()
	pub.send(&packets.Publish{Topic: "dup/t", Payload: []byte("once"), QoS: 2, PacketID: 9})
	eventually(t, testTimeout, func() error {
		if st.waiting.Load() != 1 {
			return fmt.Errorf("append not waiting yet")
		}
		return nil
	})
	pub.send(&packets.Publish{Topic: "dup/t", Payload: []byte("once"), QoS: 2, PacketID: 9, Dup: true})
	eventually(t, testTimeout, func() error {
		if l := pipelineLen(s, "pub"); l != 1 {
			return fmt.Errorf("%d queued, want 1", l)
		}
		return nil
	})
	st.open()
	for range 2 {
		if a := recvAs[*packets.Pubrec](pub); a.PacketID != 9 || a.ReasonCode.IsError() {
			t.Fatalf("PUBREC %d %v, want 9 success", a.PacketID, a.ReasonCode)
		}
	}
	pub.send(&packets.Pubrel{PacketID: 9})
	recvAs[*packets.Pubcomp](pub)
	if p := sub.recvPublish(true); string(p.Payload) != "once" {
		t.Fatalf("got %q", p.Payload)
	}
	sub.send(&packets.Pingreq{})
	recvAs[*packets.Pingresp](sub) // nothing else came first
}
