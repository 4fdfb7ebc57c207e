package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"

	"github.com/beaconmq/beacon/storage"
)

// inCollector is a pub function that records messages and can be told to
// fail.
type inCollector struct {
	mu      sync.Mutex
	msgs    []*storage.Message
	failN   int  // fail this many calls, then succeed
	failAll bool // fail every call
	calls   int
}

var errLocalDown = errors.New("local store unavailable (test)")

func (c *inCollector) pub(m *storage.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.failAll || c.failN > 0 {
		if c.failN > 0 {
			c.failN--
		}
		return errLocalDown
	}
	c.msgs = append(c.msgs, m)
	return nil
}

// payloads returns the payloads received so far.
func (c *inCollector) payloads() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.msgs {
		out = append(out, string(m.Payload))
	}
	return out
}

// waitFor polls until every payload in want was received (duplicates
// allowed: at least once) and returns the messages by payload.
func (c *inCollector) waitFor(t *testing.T, want []string) map[string]*storage.Message {
	t.Helper()
	var got map[string]*storage.Message
	mqEventually(t, mqTimeout, func() error {
		c.mu.Lock()
		got = map[string]*storage.Message{}
		for _, m := range c.msgs {
			got[string(m.Payload)] = m
		}
		c.mu.Unlock()
		for _, w := range want {
			if got[w] == nil {
				return fmt.Errorf("%q not received yet (have %d distinct)", w, len(got))
			}
		}
		return nil
	})
	return got
}

func startIn(t *testing.T, name, addr string, c *inCollector, mod func(*MQTTConfig)) io.Closer {
	t.Helper()
	cfg := &MQTTConfig{URL: "mqtt://" + addr, Subscribe: []string{"hq/#"}, RemotePrefix: "hq/", LocalPrefix: "site/", Reconnect: mqFastReconnect}
	if mod != nil {
		mod(cfg)
	}
	src, err := startMQTTIn(context.Background(), name, cfg, c.pub, mqLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })
	return src
}

// waitSubscribed publishes probes on the remote until one arrives through
// the source: the source is connected and subscribed.
func waitSubscribed(t *testing.T, pub *remoteClient, c *inCollector) {
	t.Helper()
	i := 0
	mqEventually(t, mqTimeout, func() error {
		i++
		pub.publish(t, &paho.Publish{Topic: "hq/probe", QoS: 1, Payload: []byte(fmt.Sprint("probe ", i))})
		for _, p := range c.payloads() {
			if len(p) > 5 && p[:5] == "probe" {
				return nil
			}
		}
		return errors.New("source not subscribed yet")
	})
}

func testSourceReceives(t *testing.T, addr string) {
	c := &inCollector{}
	startIn(t, "b1", addr, c, nil)
	pub := dialRemote(t, addr, "remote-pub")
	waitSubscribed(t, pub, c)
	const n = 50
	var want []string
	for i := 0; i < n; i++ {
		exp := uint32(600)
		pub.publish(t, &paho.Publish{Topic: fmt.Sprintf("hq/dev%d/cmd", i%3), QoS: 1, Payload: []byte(fmt.Sprint("m", i)),
			Properties: &paho.PublishProperties{ContentType: "application/json", ResponseTopic: "hq/reply", CorrelationData: []byte{byte(i)},
				MessageExpiry: &exp, User: paho.UserProperties{{Key: "order", Value: fmt.Sprint(i)}}}})
		want = append(want, fmt.Sprint("m", i))
	}
	got := c.waitFor(t, want)
	for i := 0; i < n; i++ {
		m := got[fmt.Sprint("m", i)]
		if wantTopic := fmt.Sprintf("site/dev%d/cmd", i%3); m.Topic != wantTopic {
			t.Fatalf("message %d: local topic %q, want %q", i, m.Topic, wantTopic)
		}
		p := m.Properties
		if m.QoS != 1 || p.ContentType != "application/json" || p.ResponseTopic != "hq/reply" || len(p.CorrelationData) != 1 || p.CorrelationData[0] != byte(i) {
			t.Fatalf("message %d: %+v", i, m)
		}
		if p.MessageExpiry == 0 || p.MessageExpiry > 600 {
			t.Fatalf("message %d: message expiry %d, want the remaining part of 600", i, p.MessageExpiry)
		}
		if !hasMarker(p.User, "beacon-bridge-b1") || len(p.User) != 2 || p.User[0].Key != "order" || p.User[0].Value != fmt.Sprint(i) {
			t.Fatalf("message %d: user properties %+v, want order then the loop marker", i, p.User)
		}
	}
	// Order of first arrival is the remote's order.
	seen := map[string]bool{}
	var order []string
	for _, p := range c.payloads() {
		if !seen[p] && p[0] == 'm' {
			seen[p] = true
			order = append(order, p)
		}
	}
	for i, p := range order {
		if p != fmt.Sprint("m", i) {
			t.Fatalf("arrival order %v", order)
		}
	}
}

func TestMQTTSourceReceivesFromBeacon(t *testing.T) {
	rb := startRemoteBeacon(t, "127.0.0.1:0", "")
	testSourceReceives(t, rb.addr)
}

func TestMQTTSourceReceivesFromMosquitto(t *testing.T) {
	mq := startMosquitto(t, "")
	testSourceReceives(t, mq.addr)
}

// A local publish that fails leaves the message unacknowledged; the source
// reconnects and the remote sends it again, so nothing is lost and the
// order holds.
func testSourceRedeliversAfterFailure(t *testing.T, addr string, mod func(*MQTTConfig)) {
	c := &inCollector{}
	startIn(t, "b1", addr, c, mod)
	pub := dialRemote(t, addr, "remote-pub")
	waitSubscribed(t, pub, c)
	c.mu.Lock()
	c.failN = 3
	calls := c.calls
	c.mu.Unlock()
	var want []string
	for i := 0; i < 10; i++ {
		pub.publish(t, &paho.Publish{Topic: "hq/x", QoS: 1, Payload: []byte(fmt.Sprint("m", i))})
		want = append(want, fmt.Sprint("m", i))
	}
	c.waitFor(t, want)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failN != 0 || c.calls-calls < 13 {
		t.Fatalf("pub called %d times with %d failures left; want at least 10 successes after 3 failures", c.calls-calls, c.failN)
	}
	// After the failures, m0.. arrive in order (duplicates of earlier
	// probes aside).
	var order []string
	seen := map[string]bool{}
	for _, m := range c.msgs {
		p := string(m.Payload)
		if p[0] == 'm' && !seen[p] {
			seen[p] = true
			order = append(order, p)
		}
	}
	for i, p := range order {
		if p != fmt.Sprint("m", i) {
			t.Fatalf("order after redelivery %v", order)
		}
	}
}

func TestMQTTSourceRedeliversAfterFailureBeacon(t *testing.T) {
	rb := startRemoteBeacon(t, "127.0.0.1:0", "")
	testSourceRedeliversAfterFailure(t, rb.addr, nil)
}

func TestMQTTSourceRedeliversAfterFailureMosquitto(t *testing.T) {
	mq := startMosquitto(t, "")
	testSourceRedeliversAfterFailure(t, mq.addr, nil)
}

// The persistent session outlives the source: a message whose local
// publish failed, and messages published while the source is stopped,
// arrive when a new source starts.
func testSourceRestart(t *testing.T, addr string, mod func(*MQTTConfig)) {
	c1 := &inCollector{}
	src := startIn(t, "b1", addr, c1, mod)
	pub := dialRemote(t, addr, "remote-pub")
	waitSubscribed(t, pub, c1)
	c1.mu.Lock()
	c1.failAll = true
	before := c1.calls
	c1.mu.Unlock()
	pub.publish(t, &paho.Publish{Topic: "hq/x", QoS: 1, Payload: []byte("failed once")})
	mqEventually(t, mqTimeout, func() error {
		c1.mu.Lock()
		defer c1.mu.Unlock()
		if c1.calls == before {
			return errors.New("pub not called yet")
		}
		return nil
	})
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	pub.publish(t, &paho.Publish{Topic: "hq/x", QoS: 1, Payload: []byte("while down")})

	c2 := &inCollector{}
	startIn(t, "b1", addr, c2, mod)
	c2.waitFor(t, []string{"failed once", "while down"})
	for _, p := range c1.payloads() {
		if p == "failed once" {
			t.Fatal("the failing source recorded the message")
		}
	}
}

func TestMQTTSourceRestartBeacon(t *testing.T) {
	rb := startRemoteBeacon(t, "127.0.0.1:0", "")
	testSourceRestart(t, rb.addr, nil)
}

func TestMQTTSourceRestartMosquitto(t *testing.T) {
	mq := startMosquitto(t, "")
	testSourceRestart(t, mq.addr, nil)
}

// A pair of bridges, one in and one out, to the same remote on the same
// topics, sharing their client_id: what the sink sends out comes back
// through the source's subscription and is not brought in; a message
// published on the remote by someone else is, and carries the marker that
// keeps the sink from sending it back.
func TestMQTTBothDirectionsNoLoop(t *testing.T) {
	rb := startRemoteBeacon(t, "127.0.0.1:0", "")
	c := &inCollector{}
	startIn(t, "hq-in", rb.addr, c, func(cfg *MQTTConfig) {
		cfg.Subscribe = []string{"#"}
		cfg.LocalPrefix, cfg.RemotePrefix = "", ""
		cfg.ClientID = "site1-hq"
	})
	pub := dialRemote(t, rb.addr, "remote-pub")
	i := 0
	mqEventually(t, mqTimeout, func() error {
		i++
		pub.publish(t, &paho.Publish{Topic: "probe", QoS: 1, Payload: []byte(fmt.Sprint("probe ", i))})
		if len(c.payloads()) == 0 {
			return errors.New("source not subscribed yet")
		}
		return nil
	})
	sink, err := newMQTTSink("hq-out", &MQTTConfig{URL: "mqtt://" + rb.addr, ClientID: "site1-hq", Reconnect: mqFastReconnect}, mqLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	ctx, cancel := context.WithTimeout(context.Background(), mqTimeout)
	defer cancel()
	if err := sink.Deliver(ctx, propsMessage("shared/t", 1)); err != nil {
		t.Fatal(err)
	}
	pub.publish(t, &paho.Publish{Topic: "shared/t", QoS: 1, Payload: []byte("from the remote")})
	got := c.waitFor(t, []string{"from the remote"})["from the remote"]
	// The remote delivers in order on the source's connection: the sink's
	// message was published first, so had it been brought in it would be
	// here by now.
	for _, p := range c.payloads() {
		if p == "payload 1" {
			t.Fatal("the sink's own message came back in through the source")
		}
	}
	if !hasMarker(got.Properties.User, "site1-hq") {
		t.Fatalf("message brought in has no loop marker: %+v", got.Properties.User)
	}
	// The sink does not send it back out: a message it does send after it
	// is the first the remote sees.
	sub := dialRemote(t, rb.addr, "remote-sub")
	sub.subscribe(t, "shared/#")
	if err := sink.Deliver(ctx, got); err != nil {
		t.Fatal(err)
	}
	if err := sink.Deliver(ctx, propsMessage("shared/t", 2)); err != nil {
		t.Fatal(err)
	}
	if p := sub.next(t); string(p.Payload) != "payload 2" {
		t.Fatalf("remote received %q first, want payload 2 (the looped message skipped)", p.Payload)
	}
}

// End to end with a real local broker: the source's pub is the local
// Beacon's Publish, a local subscriber receives what was published on the
// remote, with the remapped topic.
func TestMQTTSourceIntoLocalBeacon(t *testing.T) {
	remote := startRemoteBeacon(t, "127.0.0.1:0", "")
	local := startRemoteBeacon(t, "127.0.0.1:0", "")
	sub := dialRemote(t, local.addr, "local-sub")
	sub.subscribe(t, "site/#")
	cfg := &MQTTConfig{URL: "mqtt://" + remote.addr, Subscribe: []string{"hq/#"}, RemotePrefix: "hq/", LocalPrefix: "site/", Reconnect: mqFastReconnect}
	src, err := startMQTTIn(context.Background(), "b1", cfg, local.srv.Publish, mqLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	pub := dialRemote(t, remote.addr, "remote-pub")
	i := 0
	var got *paho.Publish
	mqEventually(t, mqTimeout, func() error {
		i++
		pub.publish(t, &paho.Publish{Topic: "hq/a", QoS: 1, Payload: []byte("hello")})
		select {
		case got = <-sub.got:
			return nil
		case <-time.After(100 * time.Millisecond):
			return errors.New("nothing on the local broker yet")
		}
	})
	if got.Topic != "site/a" || string(got.Payload) != "hello" || got.Properties.User.Get(MarkerKey) != "beacon-bridge-b1" {
		t.Fatalf("local subscriber received %+v", got)
	}
}

func v311(cfg *MQTTConfig) { cfg.Version = "3.1.1" }

// MQTT 3.1.1 towards the remote: the same guarantees (clean session 0,
// acknowledgement after the local publish, redelivery after a failure and
// after a restart), without properties.
func TestMQTT311SourceMosquitto(t *testing.T) {
	mq := startMosquitto(t, "")
	t.Run("redelivers", func(t *testing.T) { testSourceRedeliversAfterFailure(t, mq.addr, v311) })
	t.Run("restart", func(t *testing.T) { testSourceRestart(t, mq.addr, v311) })
}

func TestMQTT311SourceBeacon(t *testing.T) {
	rb := startRemoteBeacon(t, "127.0.0.1:0", "")
	t.Run("redelivers", func(t *testing.T) { testSourceRedeliversAfterFailure(t, rb.addr, v311) })
	t.Run("restart", func(t *testing.T) { testSourceRestart(t, rb.addr, v311) })
}

// A QoS 2 subscription (5.0 through paho, 3.1.1 through client311):
// PUBREC after the local publish, PUBREL answered with PUBCOMP; every
// message arrives, and the remote's inflight window keeps moving (it
// would stall after max_inflight_messages if PUBCOMP never went out).
func TestMQTTSourceQoS2Mosquitto(t *testing.T) {
	mq := startMosquitto(t, "max_inflight_messages 5\n")
	for _, version := range []string{"5", "3.1.1"} {
		t.Run(version, func(t *testing.T) {
			c := &inCollector{}
			startIn(t, "b-"+version, mq.addr, c, func(cfg *MQTTConfig) { cfg.Version = version; cfg.QoS = mqQoS(2) })
			pub := dialRemote(t, mq.addr, "remote-pub")
			waitSubscribed(t, pub, c)
			var want []string
			for i := 0; i < 40; i++ {
				pub.publish(t, &paho.Publish{Topic: "hq/q2", QoS: 2, Payload: []byte(fmt.Sprint("m", i))})
				want = append(want, fmt.Sprint("m", i))
			}
			got := c.waitFor(t, want)
			if m := got["m0"]; m.QoS != 2 || m.Topic != "site/q2" {
				t.Fatalf("received %+v, want QoS 2 on site/q2", m)
			}
		})
	}
}

// Close joins everything the sink and the source started: the connection
// loop, the protocol client's goroutines, the WebSocket reader.
func TestMQTTCloseLeavesNoGoroutines(t *testing.T) {
	rb := startRemoteBeacon(t, "127.0.0.1:0", "127.0.0.1:0")
	pub := dialRemote(t, rb.addr, "remote-pub")
	base := runtime.NumGoroutine()
	for _, version := range []string{"5", "3.1.1"} {
		for _, url := range []string{"mqtt://" + rb.addr, "ws://" + rb.ws + "/mqtt"} {
			sink, err := newMQTTSink("b1", &MQTTConfig{URL: url, Version: version, Reconnect: mqFastReconnect}, mqLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			deliverUntil(t, sink, propsMessage("x", 0))
			c := &inCollector{}
			src, err := startMQTTIn(context.Background(), "b1", &MQTTConfig{URL: url, Version: version, Subscribe: []string{"hq/#"}, Reconnect: mqFastReconnect}, c.pub, mqLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			waitSubscribed(t, pub, c)
			if err := sink.Close(); err != nil {
				t.Fatal(err)
			}
			if err := src.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	mqEventually(t, mqTimeout, func() error {
		if n := runtime.NumGoroutine(); n > base {
			return fmt.Errorf("%d goroutines, %d before the sinks and sources", n, base)
		}
		return nil
	})
}
