package mqtt

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/storage"
)

// fullStore is a store whose disk can be made "full": Append (and, with
// enqueueFull, Enqueue of pending entries) then fail with an error wrapping
// storage.ErrFull, as the badger store reports a full disk.
type fullStore struct {
	*storage.Memory
	full        atomic.Bool
	enqueueFull atomic.Bool
}

func (s *fullStore) Append(ctx context.Context, msgs ...*storage.Message) error {
	if s.full.Load() {
		return fmt.Errorf("writing log: no space left on device: %w", storage.ErrFull)
	}
	return s.Memory.Append(ctx, msgs...)
}

func (s *fullStore) Enqueue(clientID string, entries ...storage.Pending) error {
	if s.enqueueFull.Load() {
		return fmt.Errorf("writing pending: no space left on device: %w", storage.ErrFull)
	}
	return s.Memory.Enqueue(clientID, entries...)
}

// A full store refuses QoS 1/2 publishes with Quota exceeded (5.0: PUBACK
// or PUBREC 0x97, nothing delivered, no QoS 2 state kept so the same
// packet identifier is a new message afterwards [MQTT-4.3.3-9]); 3.1.1
// has no negative acknowledgement, so the connection is closed without
// one and the client sends the message again later. The broker keeps
// running and accepts the messages once there is space again.
func TestFullStoreRefusesPublish(t *testing.T) {
	st := &fullStore{Memory: storage.NewMemory()}
	s := startServer(t, func(o *Options) { o.Store = st })

	sub := dial(t, s, packets.V5)
	sub.connect("sub", true, nil)
	sub.subscribe(1, packets.Subscription{Filter: "full/#", QoS: 2})

	pub := dial(t, s, packets.V5)
	pub.connect("pub", true, nil)
	st.full.Store(true)
	pub.send(&packets.Publish{Topic: "full/a", Payload: []byte("refused1"), QoS: 1, PacketID: 7})
	if a := recvAs[*packets.Puback](pub); a.PacketID != 7 || a.ReasonCode != packets.QuotaExceeded {
		t.Fatalf("PUBACK %d %v, want 7 Quota exceeded (0x97)", a.PacketID, a.ReasonCode)
	}
	pub.send(&packets.Publish{Topic: "full/a", Payload: []byte("refused2"), QoS: 2, PacketID: 8})
	if a := recvAs[*packets.Pubrec](pub); a.PacketID != 8 || a.ReasonCode != packets.QuotaExceeded {
		t.Fatalf("PUBREC %d %v, want 8 Quota exceeded (0x97)", a.PacketID, a.ReasonCode)
	}
	sub.expectNothing(100 * time.Millisecond)

	// Space again: the same identifiers carry new messages.
	st.full.Store(false)
	pub.publish("full/a", "ok1", 1, false, 7)
	pub.publish("full/a", "ok2", 2, false, 8)
	got := []*packets.Publish{sub.recvPublish(true), sub.recvPublish(true)}
	if p := payloads(got); p != "ok1,ok2" {
		t.Fatalf("subscriber got %s, want ok1,ok2", p)
	}

	// 3.1.1: closed without an acknowledgement.
	old := dial(t, s, packets.V311)
	old.connect("old", true, nil)
	st.full.Store(true)
	old.send(&packets.Publish{Topic: "full/b", Payload: []byte("refused3"), QoS: 1, PacketID: 9})
	for _, p := range old.expectClosed() {
		if _, ok := p.(*packets.Puback); ok {
			t.Fatal("3.1.1 client got a PUBACK for a message the store refused")
		}
	}
	st.full.Store(false)
	again := dial(t, s, packets.V311)
	again.connect("old", true, nil)
	again.publish("full/b", "ok3", 1, false, 9)
	if p := sub.recvPublish(true); string(p.Payload) != "ok3" {
		t.Fatalf("subscriber got %q, want ok3", p.Payload)
	}
}

// A durable subscriber's pending entry that cannot be stored because the
// store is full refuses the publish the same way: the publisher is not
// told the message was accepted.
func TestFullStoreRefusesPendingEntry(t *testing.T) {
	st := &fullStore{Memory: storage.NewMemory()}
	s := startServer(t, func(o *Options) { o.Store = st })

	sub := dial(t, s, packets.V5)
	sub.connect("dsub", true, func(c *packets.Connect) {
		c.Properties.SessionExpiry = 3600
		c.Properties.Mark(packets.PropSessionExpiry)
	})
	sub.subscribe(1, packets.Subscription{Filter: "full/#", QoS: 1})
	sub.disconnect()

	pub := dial(t, s, packets.V5)
	pub.connect("pub", true, nil)
	st.enqueueFull.Store(true)
	pub.send(&packets.Publish{Topic: "full/c", Payload: []byte("x"), QoS: 1, PacketID: 3})
	if a := recvAs[*packets.Puback](pub); a.ReasonCode != packets.QuotaExceeded {
		t.Fatalf("PUBACK %v, want Quota exceeded (0x97)", a.ReasonCode)
	}
	st.enqueueFull.Store(false)
	pub.publish("full/c", "y", 1, false, 4)
}
