package mqtt

import (
	"bufio"
	"fmt"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/session"
)

// refusedCount (auth_test.go) reads Stats.Refused for one label.

// dialFrom connects to the server's MQTT listener from the loopback
// address local (e.g. 127.0.0.2), so per-IP limits can be tested.
func dialFrom(t *testing.T, s *Server, local string, v packets.Version) *tclient {
	t.Helper()
	d := net.Dialer{Timeout: testTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	conn, err := d.Dial("tcp", s.MQTTAddr())
	if err != nil {
		t.Skipf("cannot connect from %s (loopback aliases unavailable here): %v", local, err)
	}
	return wrapConn(t, conn, v)
}

// sessionOf returns the session of client id.
func sessionOf(t testing.TB, s *Server, id string) *session.Session {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.sessions[id]
	if e == nil {
		t.Fatalf("no session %q", id)
	}
	return e.sess
}

// wrapConn makes a test client of an established connection.
func wrapConn(t testing.TB, conn net.Conn, v packets.Version) *tclient {
	t.Cleanup(func() { _ = conn.Close() })
	r := packets.NewReader(bufio.NewReader(conn), 0)
	r.SetVersion(v)
	return &tclient{t: t, conn: conn, r: r, v: v}
}

func TestLimitMaxConnections(t *testing.T) {
	s := startServer(t, func(o *Options) { o.MaxConnections = 2 })
	a := dial(t, s, packets.V5)
	a.connect("a", true, nil)
	b := dial(t, s, packets.V311)
	b.connect("b", true, nil)

	c := dial(t, s, packets.V5)
	if ack := c.tryConnect("c", true, nil); ack.ReasonCode != packets.QuotaExceeded {
		t.Fatalf("5.0 CONNACK over max_connections: %v, want 0x97 Quota exceeded", ack.ReasonCode)
	}
	c.expectClosed()
	d := dial(t, s, packets.V311)
	if ack := d.tryConnect("d", true, nil); ack.ReasonCode != packets.ServerUnavailable {
		t.Fatalf("3.1.1 CONNACK over max_connections: %v, want return code 3 (server unavailable)", ack.ReasonCode)
	}
	d.expectClosed()
	if n := refusedCount(s, refusedMaxConnections); n != 2 {
		t.Fatalf("Refused[max-connections] = %d, want 2", n)
	}

	// A closed connection frees its place.
	a.disconnect()
	eventually(t, testTimeout, func() error {
		if n := s.OpenConnections(); n != 1 {
			return fmt.Errorf("%d connections counted, want 1", n)
		}
		return nil
	})
	e := dial(t, s, packets.V5)
	e.connect("e", true, nil)
}

// Connections over a limit wait for their CONNACK only while few others
// do; beyond that they are closed at once, so a flood cannot hold sockets
// and goroutines for connect_timeout each.
func TestLimitRefusingBounded(t *testing.T) {
	s := startServer(t, func(o *Options) {
		o.MaxConnections = 1
		o.ConnectTimeout = time.Minute
	})
	s.limits.mu.Lock()
	s.limits.refusingMax = 2
	s.limits.mu.Unlock()
	good := dial(t, s, packets.V5)
	good.connect("good", true, nil)
	waiting := []*tclient{dial(t, s, packets.V5), dial(t, s, packets.V5)}
	openConnections(t, s, 3)
	flood := dialRaw(t, s)
	if got := readUntilClosed(t, flood, testTimeout); len(got) != 0 {
		t.Fatalf("got %x, want the connection closed without a word", got)
	}
	if n := refusedCount(s, refusedMaxConnections); n != 1 {
		t.Fatalf("Refused[max-connections] = %d, want 1", n)
	}
	// The waiting ones are still told why.
	if ack := waiting[0].tryConnect("w0", true, nil); ack.ReasonCode != packets.QuotaExceeded {
		t.Fatalf("CONNACK %v, want 0x97", ack.ReasonCode)
	}
	waiting[0].expectClosed()
	openConnections(t, s, 2)
	// A place among the waiting is free again.
	again := dial(t, s, packets.V5)
	if ack := again.tryConnect("again", true, nil); ack.ReasonCode != packets.QuotaExceeded {
		t.Fatalf("CONNACK %v, want 0x97", ack.ReasonCode)
	}
}

func TestLimitMaxConnectionsPerIP(t *testing.T) {
	s := startServer(t, func(o *Options) { o.MaxConnectionsPerIP = 1 })
	a := dial(t, s, packets.V5)
	a.connect("a", true, nil)
	b := dial(t, s, packets.V5)
	ack := b.tryConnect("b", true, nil)
	if ack.ReasonCode != packets.QuotaExceeded {
		t.Fatalf("CONNACK: %v, want 0x97", ack.ReasonCode)
	}
	if !strings.Contains(ack.Properties.ReasonString, refusedMaxPerIP) {
		t.Errorf("reason string %q does not name the limit", ack.Properties.ReasonString)
	}
	if n := refusedCount(s, refusedMaxPerIP); n != 1 {
		t.Fatalf("Refused[max-connections-per-ip] = %d, want 1", n)
	}
	// Another address has its own count.
	c := dialFrom(t, s, "127.0.0.2", packets.V5)
	c.connect("c", true, nil)
}

func TestLimitConnectRatePerIP(t *testing.T) {
	s := startServer(t, func(o *Options) {
		o.MaxConnectRatePerIP = 0.001 // no refill during the test
		o.ConnectBurstPerIP = 2
	})
	for i := range 2 {
		c := dial(t, s, packets.V5)
		c.connect(fmt.Sprint("ok", i), true, nil)
		c.disconnect() // the rate counts connects, not open connections
	}
	c := dial(t, s, packets.V5)
	if ack := c.tryConnect("third", true, nil); ack.ReasonCode != packets.ConnectionRateExceeded {
		t.Fatalf("CONNACK: %v, want 0x9F Connection rate exceeded", ack.ReasonCode)
	}
	c.expectClosed()
	d := dial(t, s, packets.V311)
	if ack := d.tryConnect("fourth", true, nil); ack.ReasonCode != packets.ServerUnavailable {
		t.Fatalf("3.1.1 CONNACK: %v, want return code 3", ack.ReasonCode)
	}
	if n := refusedCount(s, refusedConnectRate); n != 2 {
		t.Fatalf("Refused[connect-rate] = %d, want 2", n)
	}
	e := dialFrom(t, s, "127.0.0.2", packets.V5)
	e.connect("other-ip", true, nil)
}

// The per-IP table forgets idle addresses instead of growing without
// bound.
func TestLimitIPTablePruned(t *testing.T) {
	s := startServer(t, func(o *Options) { o.MaxConnectionsPerIP = 5 })
	l := &s.limits
	l.mu.Lock()
	l.perIP = map[string]*ipState{}
	l.pruneAt = ipPruneAt
	for i := range ipPruneAt - 1 {
		l.perIP[fmt.Sprint("10.0.0.", i)] = &ipState{}
	}
	l.mu.Unlock()
	c := dial(t, s, packets.V5)
	c.connect("c", true, nil)
	l.mu.Lock()
	n := len(l.perIP)
	l.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d per-IP entries after a sweep, want 1 (only the open connection's)", n)
	}
}

func TestLimitPublishRate(t *testing.T) {
	s := startServer(t, func(o *Options) {
		o.MaxPublishRate = 0.001
		o.PublishBurst = 2
	})
	sub := dial(t, s, packets.V5)
	sub.connect("sub", true, nil)
	sub.subscribe(1, packets.Subscription{Filter: "rate/#", QoS: 1})

	pub := dial(t, s, packets.V5)
	pub.connect("pub", true, nil)
	pub.publish("rate/1", "one", 1, false, 1)
	pub.publish("rate/2", "two", 1, false, 2)
	pub.send(&packets.Publish{Topic: "rate/3", Payload: []byte("three"), QoS: 1, PacketID: 3})
	if a := recvAs[*packets.Puback](pub); a.ReasonCode != packets.QuotaExceeded {
		t.Fatalf("PUBACK over the rate: %v, want 0x97 Quota exceeded", a.ReasonCode)
	}
	pub.send(&packets.Publish{Topic: "rate/4", Payload: []byte("four"), QoS: 2, PacketID: 4})
	if a := recvAs[*packets.Pubrec](pub); a.ReasonCode != packets.QuotaExceeded {
		t.Fatalf("PUBREC over the rate: %v, want 0x97", a.ReasonCode)
	}
	pub.send(&packets.Publish{Topic: "rate/5", Payload: []byte("five")}) // QoS 0: dropped
	if got := payloads([]*packets.Publish{sub.recvPublish(true), sub.recvPublish(true)}); got != "one,two" {
		t.Fatalf("subscriber got %s, want one,two", got)
	}
	eventually(t, testTimeout, func() error {
		if n := s.stats.PublishRateLimited.Load(); n != 3 {
			return fmt.Errorf("PublishRateLimited = %d, want 3", n)
		}
		return nil
	})
	sub.expectNothing(100e6)
	// The publisher stays connected.
	pub.send(&packets.Pingreq{})
	recvAs[*packets.Pingresp](pub)

	// 3.1.1 cannot be told: QoS 1 over the rate closes the connection,
	// unacknowledged, so the client sends it again after reconnecting.
	old := dial(t, s, packets.V311)
	old.connect("old", true, nil)
	old.publish("rate/a", "a", 1, false, 1)
	old.publish("rate/b", "b", 1, false, 2)
	old.send(&packets.Publish{Topic: "rate/c", Payload: []byte("c"), QoS: 1, PacketID: 3})
	if got := old.expectClosed(); len(got) != 0 {
		t.Fatalf("3.1.1 publisher over the rate got %v, want the connection closed without PUBACK", got)
	}
}

func TestLimitTopicLengthAndLevels(t *testing.T) {
	s := startServer(t, func(o *Options) {
		o.MaxTopicLength = 32
		o.MaxTopicLevels = 4
	})
	c := dial(t, s, packets.V5)
	c.connect("c", true, nil)
	subAck := c.subscribe(1,
		packets.Subscription{Filter: "a/b/c/d", QoS: 1},
		packets.Subscription{Filter: "a/b/c/d/e", QoS: 1},
		packets.Subscription{Filter: strings.Repeat("x", 33), QoS: 1},
		packets.Subscription{Filter: "$share/g/a/b/c/+", QoS: 1}, // levels counted after $share/g/
	)
	want := []packets.ReasonCode{packets.GrantedQoS1, packets.TopicFilterInvalid, packets.TopicFilterInvalid, packets.GrantedQoS1}
	if fmt.Sprint(subAck.ReasonCodes) != fmt.Sprint(want) {
		t.Fatalf("SUBACK %v, want %v", subAck.ReasonCodes, want)
	}
	c.send(&packets.Publish{Topic: "a/b/c/d/e", Payload: []byte("x"), QoS: 1, PacketID: 2})
	if a := recvAs[*packets.Puback](c); a.ReasonCode != packets.TopicNameInvalid {
		t.Fatalf("PUBACK for 5 levels: %v, want 0x90 Topic Name invalid", a.ReasonCode)
	}
	c.send(&packets.Publish{Topic: strings.Repeat("y", 33), Payload: []byte("x"), QoS: 1, PacketID: 3})
	if a := recvAs[*packets.Puback](c); a.ReasonCode != packets.TopicNameInvalid {
		t.Fatalf("PUBACK for 33 bytes: %v, want 0x90", a.ReasonCode)
	}
	c.send(&packets.Publish{Topic: "a/b/c/d/e/f", Payload: []byte("x")}) // QoS 0: dropped, counted
	other := dial(t, s, packets.V5)
	other.connect("other", true, nil)
	other.publish("a/b/c/d", "ok", 1, false, 4)
	if p := c.recvPublish(true); p.Topic != "a/b/c/d" || string(p.Payload) != "ok" {
		t.Fatalf("got %s %q, want the message within the limits", p.Topic, p.Payload)
	}
	eventually(t, testTimeout, func() error {
		if n := s.stats.DroppedTopicLimit.Load(); n != 3 {
			return fmt.Errorf("DroppedTopicLimit = %d, want 3", n)
		}
		return nil
	})
	if n := s.stats.SubscriptionsRefused.Load(); n != 2 {
		t.Fatalf("SubscriptionsRefused = %d, want 2", n)
	}

	old := dial(t, s, packets.V311)
	old.connect("old", true, nil)
	if ack := old.subscribe(1, packets.Subscription{Filter: "a/b/c/d/e"}); ack.ReasonCodes[0] != packets.UnspecifiedError {
		t.Fatalf("3.1.1 SUBACK %v, want 0x80", ack.ReasonCodes)
	}

	// A will topic is held to the same limits (5.0: CONNACK 0x90).
	w := dial(t, s, packets.V5)
	ack := w.tryConnect("will", true, func(p *packets.Connect) {
		p.Will = &packets.Will{Topic: "a/b/c/d/e", Payload: []byte("bye")}
	})
	if ack.ReasonCode != packets.TopicNameInvalid {
		t.Fatalf("CONNACK for a will topic of 5 levels: %v, want 0x90", ack.ReasonCode)
	}
}

// The default level limit keeps one SUBSCRIBE from building tens of
// thousands of topic tree nodes.
func TestLimitTopicLevelsDefaultProtectsTree(t *testing.T) {
	if DefaultOptions().MaxTopicLevels != 128 {
		t.Fatalf("default MaxTopicLevels %d, docs say 128", DefaultOptions().MaxTopicLevels)
	}
	s := startServer(t, nil)
	c := dial(t, s, packets.V5)
	c.connect("c", true, nil)
	ack := c.subscribe(1,
		packets.Subscription{Filter: strings.Repeat("/", 65534)},
		packets.Subscription{Filter: strings.Repeat("l/", 127) + "#"},
	)
	if ack.ReasonCodes[0] != packets.TopicFilterInvalid || ack.ReasonCodes[1] != packets.GrantedQoS0 {
		t.Fatalf("SUBACK %v, want [0x8F 0x00]", ack.ReasonCodes)
	}
	if subs := sessionOf(t, s, "c").Subscriptions(); len(subs) != 1 {
		t.Fatalf("%d subscriptions stored, want 1", len(subs))
	}
}

func TestLimitSubscriptionsPerClient(t *testing.T) {
	s := startServer(t, func(o *Options) { o.MaxSubscriptionsPerClient = 2 })
	c := dial(t, s, packets.V5)
	c.connect("c", true, nil)
	ack := c.subscribe(1,
		packets.Subscription{Filter: "a"},
		packets.Subscription{Filter: "b"},
		packets.Subscription{Filter: "c"},
		packets.Subscription{Filter: "a", QoS: 1}, // replaces: always allowed
	)
	want := []packets.ReasonCode{packets.GrantedQoS0, packets.GrantedQoS0, packets.QuotaExceeded, packets.GrantedQoS1}
	if fmt.Sprint(ack.ReasonCodes) != fmt.Sprint(want) {
		t.Fatalf("SUBACK %v, want %v", ack.ReasonCodes, want)
	}
	c.send(&packets.Unsubscribe{PacketID: 2, Filters: []string{"b"}})
	recvAs[*packets.Unsuback](c)
	if ack := c.subscribe(3, packets.Subscription{Filter: "c"}); ack.ReasonCodes[0] != packets.GrantedQoS0 {
		t.Fatalf("after UNSUBSCRIBE: SUBACK %v, want granted", ack.ReasonCodes)
	}
	if n := s.stats.SubscriptionsRefused.Load(); n != 1 {
		t.Fatalf("SubscriptionsRefused = %d, want 1", n)
	}
	old := dial(t, s, packets.V311)
	old.connect("old", true, nil)
	ack = old.subscribe(1, packets.Subscription{Filter: "x"}, packets.Subscription{Filter: "y"}, packets.Subscription{Filter: "z"})
	if ack.ReasonCodes[2] != packets.UnspecifiedError {
		t.Fatalf("3.1.1 SUBACK %v, want 0x80 for the third", ack.ReasonCodes)
	}
}

// A packet over MaxPacketSize ends the connection with 0x95 (5.0).
func TestLimitPacketSize(t *testing.T) {
	s := startServer(t, func(o *Options) { o.MaxPacketSize = 256 })
	c := dial(t, s, packets.V5)
	if ack := c.connect("c", true, nil); ack.Properties.MaximumPacketSize != 256 {
		t.Fatalf("Maximum Packet Size advertised %d, want 256", ack.Properties.MaximumPacketSize)
	}
	c.send(&packets.Publish{Topic: "t", Payload: make([]byte, 300)})
	got := c.expectClosed()
	if len(got) != 1 {
		t.Fatalf("got %v, want one DISCONNECT", got)
	}
	if d, ok := got[0].(*packets.Disconnect); !ok || d.ReasonCode != packets.PacketTooLarge {
		t.Fatalf("got %+v, want DISCONNECT 0x95", got[0])
	}
	if n := s.stats.PacketsTooLarge.Load(); n != 1 {
		t.Fatalf("PacketsTooLarge = %d, want 1", n)
	}
}

// Inbound inflight: a 5.0 client with more unreleased QoS 2 PUBLISH
// packets than Receive Maximum is disconnected with 0x93; outbound, a
// subscriber never has more than MaxInflight unacknowledged.
func TestLimitInflight(t *testing.T) {
	s := startServer(t, func(o *Options) {
		o.ReceiveMaximum = 2
		o.MaxInflight = 2
	})
	sub := dial(t, s, packets.V5)
	sub.connect("sub", true, nil)
	sub.subscribe(1, packets.Subscription{Filter: "in/#", QoS: 1})

	pub := dial(t, s, packets.V5)
	if ack := pub.connect("pub", true, nil); ack.Properties.ReceiveMaximum != 2 {
		t.Fatalf("Receive Maximum advertised %d, want 2", ack.Properties.ReceiveMaximum)
	}
	for i := range 3 {
		pub.publish(fmt.Sprint("in/", i), fmt.Sprint(i), 1, false, uint16(i+1))
	}
	a, b := sub.recvPublish(false), sub.recvPublish(false)
	sub.expectNothing(100e6) // the third waits for a free slot
	sub.ack(a)
	if p := sub.recvPublish(true); string(p.Payload) != "2" {
		t.Fatalf("got %q after freeing a slot, want 2", p.Payload)
	}
	sub.ack(b)

	for i := range 2 {
		pub.send(&packets.Publish{Topic: "in/q2", Payload: []byte("x"), QoS: 2, PacketID: uint16(10 + i)})
		recvAs[*packets.Pubrec](pub)
	}
	pub.send(&packets.Publish{Topic: "in/q2", Payload: []byte("x"), QoS: 2, PacketID: 12})
	got := pub.expectClosed()
	if len(got) == 0 {
		t.Fatal("no DISCONNECT")
	}
	if d, ok := got[len(got)-1].(*packets.Disconnect); !ok || d.ReasonCode != packets.ReceiveMaximumExceeded {
		t.Fatalf("got %+v, want DISCONNECT 0x93", got)
	}
	if n := s.stats.ReceiveMaxExceeded.Load(); n != 1 {
		t.Fatalf("ReceiveMaxExceeded = %d, want 1", n)
	}
}

// A subscriber whose queue holds MaxQueuedBytes gets no more: the
// delivery is dead-lettered with reason queue-full, and the publisher is
// not refused (it is not at fault).
func TestLimitQueuedBytes(t *testing.T) {
	s := startServer(t, func(o *Options) { o.MaxQueuedBytes = 2048 })
	dlq := dial(t, s, packets.V5)
	dlq.connect("dlq", true, nil)
	dlq.subscribe(1, packets.Subscription{Filter: "$dlq/#", QoS: 1})

	sub := dial(t, s, packets.V5)
	sub.connect("sub", true, func(p *packets.Connect) { p.Properties.ReceiveMaximum = 1 })
	sub.subscribe(1, packets.Subscription{Filter: "big", QoS: 1})

	pub := dial(t, s, packets.V5)
	pub.connect("pub", true, nil)
	payload := strings.Repeat("p", 600)
	// One in flight, three queued (3 x 603 bytes), the fifth over 2048.
	for i := range 5 {
		pub.publish("big", payload, 1, false, uint16(i+1))
	}
	dl := dlq.recvPublish(true)
	if dl.Topic != "$dlq/broker/big" {
		t.Fatalf("dead letter on %q, want $dlq/broker/big", dl.Topic)
	}
	reason := ""
	for _, u := range dl.Properties.User {
		if u.Key == "dlq-reason" {
			reason = u.Value
		}
	}
	if reason != "queue-full" {
		t.Fatalf("dlq-reason %q, want queue-full", reason)
	}
	if n := s.stats.Session.OverflowBytes.Load(); n != 1 {
		t.Fatalf("Session.OverflowBytes = %d, want 1", n)
	}
	// The subscriber gets the four that fitted.
	for i := range 4 {
		if p := sub.recvPublish(true); len(p.Payload) != 600 {
			t.Fatalf("delivery %d: %d bytes", i, len(p.Payload))
		}
	}
	sub.expectNothing(100e6)
	eventually(t, testTimeout, func() error {
		if n := sessionOf(t, s, "sub").QueuedBytes(); n != 0 {
			return fmt.Errorf("%d bytes still charged to the empty queue", n)
		}
		return nil
	})
}

func TestLimitOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"negative connections", func(o *Options) { o.MaxConnections = -1 }, "MaxConnections"},
		{"negative per IP", func(o *Options) { o.MaxConnectionsPerIP = -1 }, "MaxConnectionsPerIP"},
		{"NaN rate", func(o *Options) { o.MaxPublishRate = math.NaN() }, "MaxPublishRate"},
		{"negative connect rate", func(o *Options) { o.MaxConnectRatePerIP = -1 }, "MaxConnectRatePerIP"},
		{"topic length", func(o *Options) { o.MaxTopicLength = 70000 }, "MaxTopicLength"},
		{"levels", func(o *Options) { o.MaxTopicLevels = -2 }, "MaxTopicLevels"},
		{"queued bytes", func(o *Options) { o.MaxQueuedBytes = 10 }, "MaxQueuedBytes"},
		{"subscriptions", func(o *Options) { o.MaxSubscriptionsPerClient = -1 }, "MaxSubscriptionsPerClient"},
	} {
		o := DefaultOptions()
		tc.mod(&o)
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate() = %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
	o := DefaultOptions()
	o.MaxConnections, o.MaxConnectionsPerIP, o.MaxConnectRatePerIP, o.MaxPublishRate = 10, 2, 0.5, 100
	o.MaxQueuedBytes, o.MaxTopicLength = 1<<20, 256
	if err := o.Validate(); err != nil {
		t.Fatalf("valid limits refused: %v", err)
	}
}

// The topic limits are checked on every PUBLISH: they must not allocate.
func BenchmarkTopicOverLimit(b *testing.B) {
	s := &Server{opts: DefaultOptions()}
	s.opts.MaxTopicLength = 256
	topic := "fleet/eu-west/site-42/device-1234/telemetry/temperature"
	b.ReportAllocs()
	for b.Loop() {
		if s.topicOverLimit(topic) != nil {
			b.Fatal("within the limits")
		}
	}
}

// Publish rate check of a connection within its rate.
func BenchmarkPublishOverRate(b *testing.B) {
	s := &Server{opts: DefaultOptions()}
	s.opts.MaxPublishRate = 1e9
	c := &client{srv: s}
	b.ReportAllocs()
	for b.Loop() {
		if c.publishOverRate() {
			b.Fatal("over a rate of 1e9/s")
		}
	}
}
