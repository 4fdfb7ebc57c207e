package mqtt

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/beaconmq/beacon/packets"
)

// A publisher feeding a subscriber whose queue is long is held back (back
// pressure, counted), but a subscriber that acknowledges nothing does not
// block it: every PUBLISH is acknowledged, and the subscriber then gets
// every message, in order.
func TestBackPressureHoldsButNeverBlocksPublisher(t *testing.T) {
	s := startServer(t, func(o *Options) { o.ReceiveMaximum = 1024 })
	sub := dial(t, s, packets.V5)
	sub.connect("bp-sub", true, func(p *packets.Connect) { p.Properties.ReceiveMaximum = 10 })
	sub.subscribe(1, packets.Subscription{Filter: "bp/#", QoS: 1})

	pub := dial(t, s, packets.V5)
	pub.connect("bp-pub", true, nil)
	const n = 3000
	var nAcked atomic.Int64
	acked := make(chan error, 1)
	go func() {
		for i := range n {
			p, err := pub.tryRecv(testTimeout * 4)
			if err != nil {
				acked <- fmt.Errorf("waiting for PUBACK %d of %d: %w", i+1, n, err)
				return
			}
			if a, ok := p.(*packets.Puback); !ok || a.ReasonCode != packets.Success {
				acked <- fmt.Errorf("got %v, want a successful PUBACK", p)
				return
			}
			nAcked.Add(1)
		}
		acked <- nil
	}()
	for i := range n {
		// At most 1000 unacknowledged, under the server's Receive Maximum.
		id := uint16(i%1000 + 1)
		if i >= 1000 {
			// Reuse an identifier only after its PUBACK (they arrive in
			// order): wait for the acknowledgement count to pass it.
			eventually(t, testTimeout*4, func() error {
				if got := nAcked.Load(); got < int64(i-999) {
					return fmt.Errorf("%d acknowledged, waiting for %d", got, i-999)
				}
				return nil
			})
		}
		pub.send(&packets.Publish{Topic: "bp/t", Payload: []byte(strconv.Itoa(i)), QoS: 1, PacketID: id})
	}
	if err := <-acked; err != nil {
		t.Fatal(err)
	}
	if w := s.stats.BackPressureWaits.Load(); w == 0 {
		t.Fatalf("no back-pressure wait with %d messages queued for a subscriber with a window of 10", n)
	}
	for i := range n {
		p := sub.recvPublish(true)
		if string(p.Payload) != strconv.Itoa(i) {
			t.Fatalf("message %d: payload %q, want %d (order or loss)", i, p.Payload, i)
		}
	}
}

// A QoS 0 subscriber that reads nothing makes its connection's buffer fill
// (back pressure) and then stalls: publishers must not be slowed for good.
// 20,000 QoS 0 messages would take 100 ms each if every one waited for the
// stalled subscriber; here they are all read (PINGRESP after them) within
// the deadline, and the excess is dropped and counted for the subscriber.
func TestBackPressureStuckQoS0Subscriber(t *testing.T) {
	s := startServer(t, func(o *Options) { o.MaxOutboundBytes = 64 << 10 })
	sub := dial(t, s, packets.V5)
	sub.connect("bp0-sub", true, nil)
	sub.subscribe(1, packets.Subscription{Filter: "bp0/#", QoS: 0})
	pub := dial(t, s, packets.V5)
	pub.connect("bp0-pub", true, nil)
	payload := make([]byte, 1024)
	const n = 20000 // 20 MB: more than the kernel's socket buffers hold
	for range n {
		pub.send(&packets.Publish{Topic: "bp0/t", Payload: payload})
	}
	pub.send(&packets.Pingreq{})
	p, err := pub.tryRecv(testTimeout * 4)
	if err != nil {
		t.Fatalf("no PINGRESP after %d QoS 0 messages to a stuck subscriber: %v", n, err)
	}
	if _, ok := p.(*packets.Pingresp); !ok {
		t.Fatalf("got %T, want PINGRESP", p)
	}
	if w := s.stats.BackPressureWaits.Load(); w == 0 {
		t.Error("no back-pressure wait although the subscriber's buffer filled")
	}
	if d := s.stats.DroppedSlowQoS0.Load(); d == 0 {
		t.Error("nothing dropped for a subscriber that reads nothing")
	}
}
