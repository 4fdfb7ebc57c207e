package mqtt

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/session"
	"github.com/beaconmq/beacon/storage"
)

// benchBroker is a server without listeners whose subscribers are real
// client structs (no sockets): routing goes through the tree, the sessions
// and the PUBLISH encoder into each client's outbound buffer, which the
// benchmark empties instead of a writer goroutine.
type benchBroker struct {
	s       *Server
	clients []*client
	sess    []*session.Session
}

func newBenchBroker(b *testing.B, subs int, qos byte, v packets.Version) *benchBroker {
	return newBenchBrokerStore(b, subs, qos, v, nil, 0)
}

func newBenchBrokerStore(b *testing.B, subs int, qos byte, v packets.Version, st storage.Store, expiry uint32) *benchBroker {
	b.Helper()
	o := DefaultOptions()
	o.MQTTAddr, o.WSAddr, o.HTTPAddr = "127.0.0.1:0", "", ""
	o.Store = st
	s, err := New(o)
	if err != nil {
		b.Fatal(err)
	}
	bb := &benchBroker{s: s}
	for i := range subs {
		id := fmt.Sprintf("sub-%d", i)
		c1, c2 := net.Pipe()
		b.Cleanup(func() { _ = c1.Close(); _ = c2.Close() })
		c := newClient(s, c1)
		c.id, c.version = id, v
		sess := session.New(s.sessionConfig(id, v, expiry))
		if err := sess.Save(); err != nil {
			b.Fatal(err)
		}
		c.sess = sess
		sess.Attach(c, 0)
		sub := storage.Subscription{Filter: "bench/+/data", QoS: qos}
		if _, err := sess.Subscribe(sub); err != nil {
			b.Fatal(err)
		}
		s.tree.Subscribe(sub.Filter, id, subValue{sess: sess, sub: sub})
		bb.clients = append(bb.clients, c)
		bb.sess = append(bb.sess, sess)
	}
	return bb
}

// drain empties the outbound buffers and, for QoS 1, acknowledges the
// delivery so the inflight window never fills.
func (bb *benchBroker) drain(b *testing.B, qos byte) {
	for i, c := range bb.clients {
		c.outMu.Lock()
		c.out.release()
		c.outMu.Unlock()
		if qos > 0 {
			in, _ := bb.sess[i].Unacknowledged()
			for _, d := range in {
				if _, err := bb.sess[i].Puback(d.PacketID); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
}

// BenchmarkRoute routes one PUBLISH (64-byte payload) to N subscribers:
// tree match (cached), per-client merge, session, PUBLISH encoding. The
// QoS 1 cases include the log append (memory store) and the PUBACK
// bookkeeping.
func BenchmarkRoute(b *testing.B) {
	payload := make([]byte, 64)
	for _, qos := range []byte{0, 1} {
		for _, n := range []int{1, 1000} {
			b.Run(fmt.Sprintf("qos%d/subs=%d", qos, n), func(b *testing.B) {
				bb := newBenchBroker(b, n, qos, packets.V5)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					m := &storage.Message{Topic: "bench/dev1/data", Payload: payload, QoS: qos, Publisher: "pub", Created: time.Now()}
					got, err := bb.s.publish(m)
					if err != nil || got != n {
						b.Fatalf("routed to %d (%v)", got, err)
					}
					bb.drain(b, qos)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/delivery")
			})
		}
	}
}

// BenchmarkRouteDurable routes one QoS 1 PUBLISH to N persistent
// (durable) subscribers on a badger store in sync mode: the log append and
// every subscriber's pending entry are fsynced (group-committed) before
// publish returns. Disk-bound; compare runs on the same machine only.
func BenchmarkRouteDurable(b *testing.B) {
	payload := make([]byte, 64)
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("badger-sync/subs=%d", n), func(b *testing.B) {
			st, err := storage.OpenBadger(storage.BadgerOptions{Dir: b.TempDir(), Durability: storage.DurabilitySync})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = st.Close() })
			bb := newBenchBrokerStore(b, n, 1, packets.V5, st, 3600)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				m := &storage.Message{Topic: "bench/dev1/data", Payload: payload, QoS: 1, Publisher: "pub", Created: time.Now()}
				if got, err := bb.s.publish(m); err != nil || got != n {
					b.Fatalf("routed to %d (%v)", got, err)
				}
				b.StopTimer() // the PUBACKs' store writes are not routing
				bb.drain(b, 1)
				b.StartTimer()
			}
		})
	}
}
