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
