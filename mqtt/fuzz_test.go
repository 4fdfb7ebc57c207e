package mqtt

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
)

// fuzzPrefixes are what FuzzConn may put before the fuzzed bytes, chosen
// by the fuzzed selector: nothing (the bytes must start with CONNECT), or
// a valid CONNECT of 3.1.1 or 5.0 so the fuzzer reaches the packet
// handlers of a connected session quickly.
func fuzzPrefix(sel uint8) (packets.Version, []byte) {
	switch sel % 3 {
	case 1:
		b, _ := packets.Encode(nil, &packets.Connect{Version: packets.V311, ClientID: "fuzz311", CleanStart: true}, packets.V311)
		return packets.V311, b
	case 2:
		b, _ := packets.Encode(nil, &packets.Connect{Version: packets.V5, ClientID: "fuzz5", CleanStart: true,
			Properties: packets.Properties{TopicAliasMaximum: 10, ReceiveMaximum: 5}}, packets.V5)
		return packets.V5, b
	}
	return packets.V5, nil
}

// fuzzConnSeeds are the packet streams FuzzConn starts from (also the
// ordinary test run's inputs): each version's common packets, and a few
// known-hostile ones.
func fuzzConnSeeds(f *testing.F) {
	enc := func(v packets.Version, ps ...packets.Packet) []byte {
		var b []byte
		for _, p := range ps {
			var err error
			if b, err = packets.Encode(b, p, v); err != nil {
				f.Fatalf("seed %T: %v", p, err)
			}
		}
		return b
	}
	for sel, v := range []packets.Version{packets.V5, packets.V311, packets.V5} {
		session := enc(v,
			&packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: "a/+/c", QoS: 2}, {Filter: "$share/g/#", QoS: 1}}},
			&packets.Publish{Topic: "a/b/c", Payload: []byte("q0")},
			&packets.Publish{Topic: "a/b/c", Payload: []byte("q1"), QoS: 1, PacketID: 2, Retain: true},
			&packets.Publish{Topic: "a/b/c", Payload: []byte("q2"), QoS: 2, PacketID: 3},
			&packets.Pubrel{PacketID: 3},
			&packets.Puback{PacketID: 1},
			&packets.Pubrec{PacketID: 1},
			&packets.Pubcomp{PacketID: 1},
			&packets.Unsubscribe{PacketID: 4, Filters: []string{"a/+/c"}},
			&packets.Pingreq{},
			&packets.Disconnect{},
		)
		f.Add(uint8(sel), session)
		for _, cut := range []int{1, 2, len(session) / 2, len(session) - 1} {
			f.Add(uint8(sel), session[:cut])
		}
	}
	f.Add(uint8(0), enc(packets.V5, &packets.Connect{Version: packets.V5, ClientID: "w", KeepAlive: 1,
		Will: &packets.Will{Topic: "will/t", Payload: []byte("bye"), QoS: 1, Properties: packets.Properties{WillDelay: 1}}}))
	f.Add(uint8(0), enc(packets.V311, &packets.Connect{Version: packets.V311, ClientID: "persist", CleanStart: false}))
	f.Add(uint8(2), enc(packets.V5, &packets.Publish{Topic: "t", Payload: []byte("alias"), Properties: packets.Properties{TopicAlias: 3}},
		&packets.Publish{Payload: []byte("by alias"), Properties: packets.Properties{TopicAlias: 3}}))
	f.Add(uint8(2), enc(packets.V5, &packets.Publish{Topic: "$delayed/1/t", Payload: []byte("later"), QoS: 1, PacketID: 9}))
	f.Add(uint8(0), []byte{0x10, 0xFF, 0xFF, 0xFF, 0x7F})                  // huge remaining length
	f.Add(uint8(2), []byte{0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01})            // 5-byte length
	f.Add(uint8(1), []byte{0x10, 0x0C, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0}) // second CONNECT
	f.Add(uint8(2), []byte{0xF0, 0x00})                                    // AUTH without a method
	f.Add(uint8(0), []byte("GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n"))
}

// FuzzConn feeds fuzzed bytes as one client's byte stream into a live
// server (over net.Pipe, through the same serveConn the listeners use),
// optionally after a valid CONNECT. Whatever the bytes, the broker must
// not panic, the connection must be torn down completely once the client
// goes away, and the broker must still serve a fresh client.
func FuzzConn(f *testing.F) {
	fuzzConnSeeds(f)
	var panics atomic.Int64
	s := startServer(f, func(o *Options) {
		o.ConnectTimeout = 2 * time.Second
		o.MaxPacketSize = 64 << 10
		watchPanics(o, &panics, true)
	})
	f.Fuzz(func(t *testing.T, sel uint8, data []byte) {
		_, prefix := fuzzPrefix(sel)
		stream := append(prefix, data...)
		cli, srv := net.Pipe()
		c := s.serveConn(srv)
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			_, _ = io.Copy(io.Discard, cli)
		}()
		_ = cli.SetWriteDeadline(time.Now().Add(testTimeout))
		_, _ = cli.Write(stream) // fails once the server closes: fine
		_ = cli.Close()
		<-drained
		select {
		case <-c.done:
		case <-time.After(testTimeout):
			t.Fatalf("connection not torn down %v after the client left; input %x", testTimeout, stream)
		}
		if n := panics.Load(); n != 0 {
			t.Fatalf("broker panicked on %x", stream)
		}
		eventually(t, testTimeout, func() error {
			if n := s.OpenConnections(); n != 0 {
				return fmt.Errorf("%d connections still open after the client left", n)
			}
			return nil
		})
		fuzzFreshClient(t, s)
	})
}

// fuzzFreshClient checks that the server still answers a new client:
// CONNECT, CONNACK, PINGREQ, PINGRESP.
func fuzzFreshClient(t *testing.T, s *Server) {
	t.Helper()
	cli, srv := net.Pipe()
	defer cli.Close()
	s.serveConn(srv)
	_ = cli.SetDeadline(time.Now().Add(testTimeout))
	b, _ := packets.Encode(nil, &packets.Connect{Version: packets.V5, ClientID: "fresh", CleanStart: true}, packets.V5)
	b, _ = packets.Encode(b, &packets.Pingreq{}, packets.V5)
	go func() { _, _ = cli.Write(b) }()
	r := packets.NewReader(bufio.NewReader(cli), 0)
	r.SetVersion(packets.V5)
	p, err := r.Read()
	if ack, ok := p.(*packets.Connack); err != nil || !ok || ack.ReasonCode != packets.Success {
		t.Fatalf("fresh client: %v %+v, want CONNACK 0x00", err, p)
	}
	if p, err := r.Read(); err != nil {
		t.Fatalf("fresh client: %v, want PINGRESP", err)
	} else if _, ok := p.(*packets.Pingresp); !ok {
		t.Fatalf("fresh client: %T, want PINGRESP", p)
	}
}
