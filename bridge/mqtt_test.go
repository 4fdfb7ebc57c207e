package bridge

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/beaconmq/beacon/mqtt"
	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/storage"
)

func TestMQTTConfigValidate(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("BEACON_TEST_BRIDGE_PW", "secret")
	good := []MQTTConfig{
		{URL: "mqtt://127.0.0.1:1883"},
		{URL: "mqtts://broker.example", TLS: MQTTTLSConfig{CAFile: ca}, Version: "5"},
		{URL: "wss://broker.example/mqtt", PasswordEnv: "BEACON_TEST_BRIDGE_PW", QoS: mqQoS(2)},
		{URL: "ws://127.0.0.1:8083/mqtt", LocalPrefix: "site/", RemotePrefix: "hq/site1/", Subscribe: []string{"cmd/#", "+/x"}, SessionExpiry: time.Hour, KeepAlive: 20 * time.Second},
	}
	for _, c := range good {
		if err := c.validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	bad := []struct {
		cfg  MQTTConfig
		want string // a fragment naming the field
	}{
		{MQTTConfig{}, "mqtt.url is empty"},
		{MQTTConfig{URL: "http://x:1"}, "scheme \"http\""},
		{MQTTConfig{URL: "mqtt://"}, "has no host"},
		{MQTTConfig{URL: "mqtt://x", TLS: MQTTTLSConfig{CAFile: ca}}, "not encrypted"},
		{MQTTConfig{URL: "mqtt://x", Version: "3.1"}, "mqtt.version \"3.1\""},
		{MQTTConfig{URL: "mqtt://x", Version: "6"}, "mqtt.version"},
		{MQTTConfig{URL: "mqtt://x", Password: "a", PasswordEnv: "B"}, "mqtt.password and mqtt.password_env"},
		{MQTTConfig{URL: "mqtt://x", PasswordEnv: "BEACON_TEST_BRIDGE_UNSET_VAR"}, "BEACON_TEST_BRIDGE_UNSET_VAR is not set"},
		{MQTTConfig{URL: "mqtts://x", TLS: MQTTTLSConfig{CertFile: ca}}, "mqtt.tls.cert_file and mqtt.tls.key_file"},
		{MQTTConfig{URL: "mqtts://x", TLS: MQTTTLSConfig{CAFile: filepath.Join(dir, "missing.pem")}}, "mqtt.tls.ca_file"},
		{MQTTConfig{URL: "mqtt://x", KeepAlive: 30}, "mqtt.keepalive"},
		{MQTTConfig{URL: "mqtt://x", AckTimeout: 10}, "mqtt.ack_timeout"},
		{MQTTConfig{URL: "mqtt://x", Reconnect: MQTTBackoff{Initial: time.Second, Max: time.Millisecond}}, "mqtt.reconnect.max"},
		{MQTTConfig{URL: "mqtt://x", QoS: mqQoS(3)}, "mqtt.qos 3"},
		{MQTTConfig{URL: "mqtt://x", LocalPrefix: "a/#"}, "mqtt.local_prefix"},
		{MQTTConfig{URL: "mqtt://x", RemotePrefix: "a/+/"}, "mqtt.remote_prefix"},
		{MQTTConfig{URL: "mqtt://x", Subscribe: []string{"a/#/b"}}, "mqtt.subscribe[0]"},
		{MQTTConfig{URL: "mqtt://x", SessionExpiry: -time.Second}, "mqtt.session_expiry"},
	}
	for _, b := range bad {
		err := b.cfg.validate()
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%+v: got %v, want an error containing %q", b.cfg, err, b.want)
		}
	}
}

func TestMQTTMapTopic(t *testing.T) {
	for _, c := range []struct{ topic, from, to, want string }{
		{"site/a/b", "site/", "hq/", "hq/a/b"},
		{"other/a", "site/", "hq/", "hq/other/a"}, // no prefix to strip
		{"a/b", "", "", "a/b"},
		{"a/b", "", "r/", "r/a/b"},
		{"site/a", "site/", "", "a"},
	} {
		if got := mapTopic(c.topic, c.from, c.to); got != c.want {
			t.Errorf("mapTopic(%q, %q, %q) = %q, want %q", c.topic, c.from, c.to, got, c.want)
		}
	}
}

// propsMessage is a local message with every property a bridge keeps.
func propsMessage(topic string, i int) *storage.Message {
	m := &storage.Message{
		Topic:   topic,
		Payload: []byte(fmt.Sprintf("payload %d", i)),
		QoS:     1,
		Created: time.Now(),
	}
	m.Properties.ContentType = "text/plain"
	m.Properties.ResponseTopic = "reply/" + topic
	m.Properties.CorrelationData = []byte{byte(i), 0xFF}
	m.Properties.PayloadFormat = 1
	m.Properties.MessageExpiry = 600
	m.Properties.User = []packets.UserProperty{{Key: "order", Value: fmt.Sprint(i)}, {Key: "k", Value: "v"}}
	return m
}

// testSinkDelivers sends n messages with properties through a sink to the
// remote at addr and checks what a subscriber there receives.
func testSinkDelivers(t *testing.T, addr string) {
	sub := dialRemote(t, addr, "remote-sub")
	sub.subscribe(t, "hq/#")
	sink, err := newMQTTSink("b1", &MQTTConfig{URL: "mqtt://" + addr, LocalPrefix: "site/", RemotePrefix: "hq/", Reconnect: mqFastReconnect}, mqLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	ctx, cancel := context.WithTimeout(context.Background(), mqTimeout)
	defer cancel()
	const n = 50
	for i := 0; i < n; i++ {
		if err := sink.Deliver(ctx, propsMessage(fmt.Sprintf("site/dev%d/temp", i%3), i)); err != nil {
			t.Fatalf("Deliver %d: %v", i, err)
		}
	}
	for i := 0; i < n; i++ {
		p := sub.next(t)
		if want := fmt.Sprintf("hq/dev%d/temp", i%3); p.Topic != want {
			t.Fatalf("message %d: topic %q, want %q", i, p.Topic, want)
		}
		if string(p.Payload) != fmt.Sprintf("payload %d", i) {
			t.Fatalf("message %d: payload %q", i, p.Payload)
		}
		if p.QoS != 1 {
			t.Fatalf("message %d: QoS %d, want 1", i, p.QoS)
		}
		pp := p.Properties
		if pp == nil || pp.ContentType != "text/plain" || pp.ResponseTopic != fmt.Sprintf("reply/site/dev%d/temp", i%3) ||
			!bytes.Equal(pp.CorrelationData, []byte{byte(i), 0xFF}) || pp.PayloadFormat == nil || *pp.PayloadFormat != 1 {
			t.Fatalf("message %d: properties %+v", i, pp)
		}
		if pp.MessageExpiry == nil || *pp.MessageExpiry == 0 || *pp.MessageExpiry > 600 {
			t.Fatalf("message %d: message expiry %v, want the remaining part of 600s", i, pp.MessageExpiry)
		}
		if pp.User.Get("order") != fmt.Sprint(i) || pp.User.Get("k") != "v" || pp.User.Get(MarkerKey) != "beacon-bridge-b1" {
			t.Fatalf("message %d: user properties %+v", i, pp.User)
		}
	}
}

func TestMQTTSinkDeliversToBeacon(t *testing.T) {
	rb := startRemoteBeacon(t, "127.0.0.1:0", "")
	testSinkDelivers(t, rb.addr)
}

func TestMQTTSinkDeliversToMosquitto(t *testing.T) {
	m := startMosquitto(t, "")
	testSinkDelivers(t, m.addr)
}

// deliverUntil calls Deliver until it succeeds, as the bridge core's
// retries do, and returns the errors seen before.
func deliverUntil(t *testing.T, sink Sink, m *storage.Message) []error {
	t.Helper()
	var errs []error
	mqEventually(t, mqTimeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := sink.Deliver(ctx, m)
		if err != nil {
			if IsPermanent(err) {
				t.Fatalf("Deliver: permanent error for a remote that is only down: %v", err)
			}
			errs = append(errs, err)
		}
		return err
	})
	return errs
}

// deliverFailsWith calls Deliver until its error names why the sink
// cannot connect (the first attempts may still be under way); it must
// never succeed, nor be permanent (the remote's configuration may be
// fixed).
func deliverFailsWith(t *testing.T, sink Sink, m *storage.Message, why string) {
	t.Helper()
	mqEventually(t, mqTimeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := sink.Deliver(ctx, m)
		if err == nil || IsPermanent(err) {
			t.Fatalf("Deliver: %v, want a retryable error naming %q", err, why)
		}
		if !strings.Contains(err.Error(), why) {
			return err
		}
		return nil
	})
}

// The remote goes away: Deliver fails (retryable); once it is back the
// sink reconnects in the background and Deliver succeeds.
func TestMQTTSinkReconnectsBeacon(t *testing.T) {
	rb := startRemoteBeacon(t, "127.0.0.1:0", "")
	addr := rb.addr
	sink, err := newMQTTSink("b1", &MQTTConfig{URL: "mqtt://" + addr, ConnectTimeout: 300 * time.Millisecond, Reconnect: mqFastReconnect}, mqLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	deliverUntil(t, sink, propsMessage("a", 0))

	rb.stop(t)
	ctx, cancel := context.WithTimeout(context.Background(), mqTimeout)
	defer cancel()
	err = sink.Deliver(ctx, propsMessage("a", 1))
	if err == nil || IsPermanent(err) {
		t.Fatalf("Deliver with the remote down: %v, want a retryable error", err)
	}
	p, ok := sink.(Prober)
	if !ok {
		t.Fatal("the MQTT sink is not a Prober")
	}
	// The sink learns of the lost connection from paho's disconnect
	// callback, which can run just after the failed Deliver returned.
	waitFor(t, mqTimeout, func() error {
		if p.Probe(ctx) == nil {
			return errors.New("Probe reports the sink up while the remote is down")
		}
		return nil
	})

	rb2 := startRemoteBeacon(t, addr, "")
	sub := dialRemote(t, rb2.addr, "remote-sub")
	sub.subscribe(t, "a")
	deliverUntil(t, sink, propsMessage("a", 2))
	if p := sub.next(t); string(p.Payload) != "payload 2" {
		t.Fatalf("after reconnect received %q", p.Payload)
	}
	if err := sink.(Prober).Probe(ctx); err != nil {
		t.Fatalf("Probe after reconnect: %v", err)
	}
}

func TestMQTTSinkReconnectsMosquitto(t *testing.T) {
	mq := startMosquitto(t, "")
	sink, err := newMQTTSink("b1", &MQTTConfig{URL: "mqtt://" + mq.addr, ConnectTimeout: 300 * time.Millisecond, Reconnect: mqFastReconnect}, mqLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	deliverUntil(t, sink, propsMessage("a", 0))
	mq.stop()
	ctx, cancel := context.WithTimeout(context.Background(), mqTimeout)
	defer cancel()
	if err := sink.Deliver(ctx, propsMessage("a", 1)); err == nil || IsPermanent(err) {
		t.Fatalf("Deliver with the remote down: %v, want a retryable error", err)
	}
	mq.start(mosquittoBin)
	sub := dialRemote(t, mq.addr, "remote-sub")
	sub.subscribe(t, "a")
	deliverUntil(t, sink, propsMessage("a", 2))
	if p := sub.next(t); string(p.Payload) != "payload 2" {
		t.Fatalf("after reconnect received %q", p.Payload)
	}
}

// A PUBACK with a reason code >= 0x80 is Permanent: Mosquitto answers a
// publication its ACL denies with 0x87 Not authorized.
func TestMQTTSinkRefusedIsPermanent(t *testing.T) {
	dir := t.TempDir()
	acl := filepath.Join(dir, "acl")
	if err := os.WriteFile(acl, []byte("topic readwrite allowed/#\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mq := startMosquitto(t, "acl_file "+acl+"\n")
	sink, err := newMQTTSink("b1", &MQTTConfig{URL: "mqtt://" + mq.addr, Reconnect: mqFastReconnect}, mqLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	ctx, cancel := context.WithTimeout(context.Background(), mqTimeout)
	defer cancel()
	deliverUntil(t, sink, propsMessage("allowed/x", 0))
	err = sink.Deliver(ctx, propsMessage("denied/x", 1))
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "0x87") {
		t.Fatalf("Deliver to a denied topic: %v, want a permanent error naming 0x87", err)
	}
	// The connection survives a refusal.
	if err := sink.Deliver(ctx, propsMessage("allowed/x", 2)); err != nil {
		t.Fatalf("Deliver after a refusal: %v", err)
	}
}

// A message that came in through the same bridge is not sent back out.
func TestMQTTSinkSkipsOwnMarker(t *testing.T) {
	rb := startRemoteBeacon(t, "127.0.0.1:0", "")
	sub := dialRemote(t, rb.addr, "remote-sub")
	sub.subscribe(t, "#")
	sink, err := newMQTTSink("b1", &MQTTConfig{URL: "mqtt://" + rb.addr, Reconnect: mqFastReconnect}, mqLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	ctx, cancel := context.WithTimeout(context.Background(), mqTimeout)
	defer cancel()
	looped := propsMessage("x", 0)
	looped.Properties.User = append(looped.Properties.User, packets.UserProperty{Key: MarkerKey, Value: "beacon-bridge-b1"})
	if err := sink.Deliver(ctx, looped); err != nil {
		t.Fatalf("Deliver of a looped message: %v", err)
	}
	other := propsMessage("x", 1)
	other.Properties.User = append(other.Properties.User, packets.UserProperty{Key: MarkerKey, Value: "another-bridge"})
	if err := sink.Deliver(ctx, other); err != nil {
		t.Fatal(err)
	}
	p := sub.next(t)
	if string(p.Payload) != "payload 1" {
		t.Fatalf("first message on the remote is %q, want the one not marked b1 (payload 1)", p.Payload)
	}
	var markers []string
	for _, u := range p.Properties.User {
		if u.Key == MarkerKey {
			markers = append(markers, u.Value)
		}
	}
	if strings.Join(markers, ",") != "another-bridge,beacon-bridge-b1" {
		t.Fatalf("markers %v, want another-bridge then beacon-bridge-b1", markers)
	}
}

// An expired message is refused for good instead of being sent.
func TestMQTTSinkExpiredIsPermanent(t *testing.T) {
	rb := startRemoteBeacon(t, "127.0.0.1:0", "")
	sink, err := newMQTTSink("b1", &MQTTConfig{URL: "mqtt://" + rb.addr, Reconnect: mqFastReconnect}, mqLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	m := propsMessage("x", 0)
	m.Properties.MessageExpiry = 1
	m.Created = time.Now().Add(-2 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), mqTimeout)
	defer cancel()
	if err := sink.Deliver(ctx, m); err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("Deliver of an expired message: %v", err)
	}
}

// WebSocket transport with several goroutines publishing at once (paho
// writes a packet as several Writes; they must not interleave).
func TestMQTTSinkWebSocketConcurrent(t *testing.T) {
	rb := startRemoteBeacon(t, "127.0.0.1:0", "127.0.0.1:0")
	sub := dialRemote(t, rb.addr, "remote-sub")
	sub.subscribe(t, "ws/#")
	sink, err := newMQTTSink("b1", &MQTTConfig{URL: "ws://" + rb.ws + "/mqtt", Reconnect: mqFastReconnect}, mqLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	ctx, cancel := context.WithTimeout(context.Background(), mqTimeout)
	defer cancel()
	const workers, per = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*per)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				if err := sink.Deliver(ctx, propsMessage(fmt.Sprintf("ws/%d", w), w*per+i)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Deliver over WebSocket: %v", err)
	}
	seen := map[string]bool{}
	for i := 0; i < workers*per; i++ {
		seen[string(sub.next(t).Payload)] = true
	}
	if len(seen) != workers*per {
		t.Fatalf("received %d distinct messages, want %d", len(seen), workers*per)
	}
}

// TLS to Mosquitto with a generated CA: with ca_file the sink delivers;
// without it the certificate is unknown and Deliver fails (retryable).
func TestMQTTSinkTLSMosquitto(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := mqTestCerts(t, dir)
	port := mqFreePort(t)
	mq := startMosquitto(t, fmt.Sprintf("listener %d 127.0.0.1\ncertfile %s\nkeyfile %s\n", port, cert, key))
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", port)
	sub := dialRemote(t, mq.addr, "remote-sub")
	sub.subscribe(t, "tls/#")

	sink, err := newMQTTSink("b1", &MQTTConfig{URL: "mqtts://" + tlsAddr, TLS: MQTTTLSConfig{CAFile: ca}, Reconnect: mqFastReconnect}, mqLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	deliverUntil(t, sink, propsMessage("tls/a", 7))
	if p := sub.next(t); string(p.Payload) != "payload 7" {
		t.Fatalf("received %q over TLS", p.Payload)
	}

	untrusted, err := newMQTTSink("b2", &MQTTConfig{URL: "mqtts://" + tlsAddr, ConnectTimeout: 500 * time.Millisecond, Reconnect: mqFastReconnect}, mqLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer untrusted.Close()
	deliverFailsWith(t, untrusted, propsMessage("tls/a", 8), "certificate")
}

// Credentials against Mosquitto's password_file: the right password (from
// password_env) connects, a wrong one is refused in CONNACK.
func TestMQTTSinkCredentialsMosquitto(t *testing.T) {
	passwd, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		t.Skip("SKIPPED: mosquitto_passwd is not installed (it comes with the mosquitto package, which CI installs)")
	}
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "passwd")
	if out, err := exec.Command(passwd, "-b", "-c", pwFile, "bridge", "s3cret").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v %s", err, out)
	}
	mq := startMosquitto(t, "allow_anonymous false\npassword_file "+pwFile+"\n")
	t.Setenv("BEACON_TEST_MQTT_PW", "s3cret")
	sink, err := newMQTTSink("b1", &MQTTConfig{URL: "mqtt://" + mq.addr, Username: "bridge", PasswordEnv: "BEACON_TEST_MQTT_PW", Reconnect: mqFastReconnect}, mqLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	deliverUntil(t, sink, propsMessage("a", 0))

	wrong, err := newMQTTSink("b2", &MQTTConfig{URL: "mqtt://" + mq.addr, Username: "bridge", Password: "wrong", ConnectTimeout: 500 * time.Millisecond, Reconnect: mqFastReconnect}, mqLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	deliverFailsWith(t, wrong, propsMessage("a", 1), "CONNACK 0x8")
}

// fakeRemote is a minimal 5.0 server for the cases real brokers do not
// produce on demand: it answers CONNECT with a CONNACK carrying props and
// lets onPublish decide each PUBACK (a reason code, or -1 to drop the
// connection without answering).
type fakeRemote struct {
	ln        net.Listener
	props     packets.Properties
	onPublish func(*packets.Publish) int
	wg        sync.WaitGroup
	silent    atomic.Bool  // never answer PINGREQ
	conns     atomic.Int32 // connections accepted
}

func startFakeRemote(t *testing.T, props packets.Properties, onPublish func(*packets.Publish) int) *fakeRemote {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRemote{ln: ln, props: props, onPublish: onPublish}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() { defer f.wg.Done(); f.serve(c) }()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); f.wg.Wait() })
	return f
}

func (f *fakeRemote) serve(c net.Conn) {
	defer c.Close()
	f.conns.Add(1)
	rd := packets.NewReader(bufio.NewReader(c), 0)
	write := func(p packets.Packet) bool {
		b, err := packets.Encode(nil, p, rd.Version())
		if err == nil {
			_, err = c.Write(b)
		}
		return err == nil
	}
	for {
		p, err := rd.Read()
		if err != nil {
			return
		}
		switch p := p.(type) {
		case *packets.Connect:
			if !write(&packets.Connack{Properties: f.props}) {
				return
			}
		case *packets.Publish:
			code := f.onPublish(p)
			if code < 0 {
				return
			}
			if p.QoS == 1 && !write(&packets.Puback{PacketID: p.PacketID, ReasonCode: packets.ReasonCode(code)}) {
				return
			}
		case *packets.Pingreq:
			if !f.silent.Load() && !write(&packets.Pingresp{}) {
				return
			}
		case *packets.Disconnect:
			return
		}
	}
}

// 0x97 Quota exceeded is worth retrying; the next attempt succeeds.
func TestMQTTSinkQuotaExceededIsRetried(t *testing.T) {
	var mu sync.Mutex
	n := 0
	f := startFakeRemote(t, packets.Properties{}, func(*packets.Publish) int {
		mu.Lock()
		defer mu.Unlock()
		n++
		if n == 1 {
			return int(packets.QuotaExceeded)
		}
		return 0
	})
	sink, err := newMQTTSink("b1", &MQTTConfig{URL: "mqtt://" + f.ln.Addr().String(), Reconnect: mqFastReconnect}, mqLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	ctx, cancel := context.WithTimeout(context.Background(), mqTimeout)
	defer cancel()
	err = sink.Deliver(ctx, propsMessage("a", 0))
	if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "0x97") {
		t.Fatalf("Deliver answered 0x97: %v, want a retryable error naming 0x97", err)
	}
	if err := sink.Deliver(ctx, propsMessage("a", 0)); err != nil {
		t.Fatalf("retry: %v", err)
	}
}

// A connection lost while a PUBACK is awaited fails that Deliver at once
// (retryable), not after ack_timeout; the sink reconnects and the retry
// succeeds.
func TestMQTTSinkConnectionLostInFlight(t *testing.T) {
	for _, version := range []string{"5", "3.1.1"} {
		t.Run(version, func(t *testing.T) {
			var mu sync.Mutex
			drops := 0
			f := startFakeRemote(t, packets.Properties{}, func(p *packets.Publish) int {
				mu.Lock()
				defer mu.Unlock()
				if drops == 0 {
					drops++
					return -1
				}
				return 0
			})
			sink, err := newMQTTSink("b1", &MQTTConfig{URL: "mqtt://" + f.ln.Addr().String(), Version: version, AckTimeout: time.Hour, Reconnect: mqFastReconnect}, mqLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			defer sink.Close()
			ctx, cancel := context.WithTimeout(context.Background(), mqTimeout)
			defer cancel()
			err = sink.Deliver(ctx, propsMessage("a", 0))
			if err == nil || IsPermanent(err) || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "connection lost") {
				t.Fatalf("Deliver when the connection drops before PUBACK: %v, want a retryable connection-lost error", err)
			}
			deliverUntil(t, sink, propsMessage("a", 0))
		})
	}
}

// A message larger than the remote's Maximum Packet Size is refused for
// good before it is sent (the remote would close the connection).
func TestMQTTSinkMaximumPacketSize(t *testing.T) {
	props := packets.Properties{MaximumPacketSize: 200}
	var mu sync.Mutex
	var got []int
	f := startFakeRemote(t, props, func(p *packets.Publish) int {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, len(p.Payload))
		return 0
	})
	sink, err := newMQTTSink("b1", &MQTTConfig{URL: "mqtt://" + f.ln.Addr().String(), Reconnect: mqFastReconnect}, mqLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	ctx, cancel := context.WithTimeout(context.Background(), mqTimeout)
	defer cancel()
	big := propsMessage("a", 0)
	big.Payload = make([]byte, 300)
	if err := sink.Deliver(ctx, big); err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "Maximum Packet Size 200") {
		t.Fatalf("Deliver of a too large message: %v", err)
	}
	if err := sink.Deliver(ctx, propsMessage("a", 1)); err != nil {
		t.Fatalf("Deliver of a small message: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != len("payload 1") {
		t.Fatalf("remote received payload sizes %v, want only the small one", got)
	}
}

// The example of docs/bridges-mqtt.md decodes with the documented keys
// (unknown keys refused) and validates.
func TestMQTTDocExample(t *testing.T) {
	doc, err := os.ReadFile("../docs/bridges-mqtt.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```yaml\n")
	if !ok {
		t.Fatal("no yaml example in docs/bridges-mqtt.md")
	}
	example, _, _ := strings.Cut(rest, "```")
	ca := filepath.Join(t.TempDir(), "hq-ca.pem")
	if err := os.WriteFile(ca, []byte("-"), 0o600); err != nil {
		t.Fatal(err)
	}
	example = strings.ReplaceAll(example, "/etc/beacon/hq-ca.pem", ca)
	t.Setenv("HQ_PASSWORD", "x")
	var file struct {
		Bridges []struct {
			Name      string     `yaml:"name"`
			Type      string     `yaml:"type"`
			Direction string     `yaml:"direction"`
			Topics    []string   `yaml:"topics"`
			MQTT      MQTTConfig `yaml:"mqtt"`
		} `yaml:"bridges"`
	}
	dec := yaml.NewDecoder(strings.NewReader(example))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("decoding the example: %v", err)
	}
	if len(file.Bridges) != 2 {
		t.Fatalf("example has %d bridges, want 2", len(file.Bridges))
	}
	for _, b := range file.Bridges {
		if err := b.MQTT.validate(); err != nil {
			t.Errorf("bridge %s: %v", b.Name, err)
		}
	}
	in := file.Bridges[1].MQTT
	if in.SessionExpiry != 72*time.Hour || in.ClientID != file.Bridges[0].MQTT.ClientID || len(in.Subscribe) != 1 {
		t.Fatalf("example's in bridge decoded as %+v", in)
	}
	if got := mapTopic("commands/site1/door", in.RemotePrefix, in.LocalPrefix); got != "local/door" {
		t.Fatalf("example's in mapping gives %q, the comment says local/door", got)
	}
	out := file.Bridges[0].MQTT
	if got := mapTopic("orders/42", out.LocalPrefix, out.RemotePrefix); got != "site1/orders/42" {
		t.Fatalf("example's out mapping gives %q, the comment says site1/orders/42", got)
	}
}

// The sink over MQTT 3.1.1, QoS 1 and 2: every message arrives on the
// remote, remapped, in order; a 3.1.1 PUBLISH has no properties.
func TestMQTT311SinkDelivers(t *testing.T) {
	mq := startMosquitto(t, "")
	rb := startRemoteBeacon(t, "127.0.0.1:0", "")
	for _, c := range []struct {
		name, addr string
		qos        byte
	}{{"mosquitto-qos1", mq.addr, 1}, {"mosquitto-qos2", mq.addr, 2}, {"beacon-qos1", rb.addr, 1}, {"beacon-qos2", rb.addr, 2}} {
		t.Run(c.name, func(t *testing.T) {
			sub := dialRemote(t, c.addr, "remote-sub-"+c.name)
			sub.subscribe(t, "hq/#")
			sink, err := newMQTTSink("b1", &MQTTConfig{URL: "mqtt://" + c.addr, Version: "3.1.1", QoS: mqQoS(c.qos), ClientID: "b-" + c.name, LocalPrefix: "site/", RemotePrefix: "hq/", Reconnect: mqFastReconnect}, mqLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			defer sink.Close()
			ctx, cancel := context.WithTimeout(context.Background(), mqTimeout)
			defer cancel()
			const n = 30
			for i := 0; i < n; i++ {
				if err := sink.Deliver(ctx, propsMessage("site/x", i)); err != nil {
					t.Fatalf("Deliver %d: %v", i, err)
				}
			}
			for i := 0; i < n; i++ {
				p := sub.next(t)
				if p.Topic != "hq/x" || string(p.Payload) != fmt.Sprintf("payload %d", i) {
					t.Fatalf("message %d: %s %q", i, p.Topic, p.Payload)
				}
				if p.Properties != nil && p.Properties.User.Get(MarkerKey) != "" {
					t.Fatalf("message %d carries properties over 3.1.1: %+v", i, p.Properties)
				}
			}
		})
	}
}

// 3.1.1 reconnects like 5.0, and a refused CONNECT names its return code.
func TestMQTT311SinkReconnectsAndCredentials(t *testing.T) {
	passwd, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		t.Skip("SKIPPED: mosquitto_passwd is not installed (it comes with the mosquitto package, which CI installs)")
	}
	pwFile := filepath.Join(t.TempDir(), "passwd")
	if out, err := exec.Command(passwd, "-b", "-c", pwFile, "bridge", "s3cret").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v %s", err, out)
	}
	mq := startMosquitto(t, "allow_anonymous false\npassword_file "+pwFile+"\n")
	sink, err := newMQTTSink("b1", &MQTTConfig{URL: "mqtt://" + mq.addr, Version: "3.1.1", Username: "bridge", Password: "s3cret", ConnectTimeout: 300 * time.Millisecond, Reconnect: mqFastReconnect}, mqLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	deliverUntil(t, sink, propsMessage("a", 0))
	mq.restart()
	deliverUntil(t, sink, propsMessage("a", 1))

	wrong, err := newMQTTSink("b2", &MQTTConfig{URL: "mqtt://" + mq.addr, Version: "3.1.1", Username: "bridge", Password: "nope", ConnectTimeout: 500 * time.Millisecond, Reconnect: mqFastReconnect}, mqLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	deliverFailsWith(t, wrong, propsMessage("a", 2), "CONNACK 0x8")
}

// A remote that stops answering is noticed by the keep alive (paho's
// pinger for 5.0, client311's for 3.1.1): the sink drops the connection
// and connects again.
func TestMQTTSinkKeepAliveDetectsSilentRemote(t *testing.T) {
	for _, version := range []string{"5", "3.1.1"} {
		t.Run(version, func(t *testing.T) {
			f := startFakeRemote(t, packets.Properties{}, func(*packets.Publish) int { return 0 })
			f.silent.Store(true)
			sink, err := newMQTTSink("b1", &MQTTConfig{URL: "mqtt://" + f.ln.Addr().String(), Version: version, KeepAlive: time.Second, Reconnect: mqFastReconnect}, mqLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			defer sink.Close()
			mqEventually(t, mqTimeout, func() error {
				if n := f.conns.Load(); n < 2 {
					return fmt.Errorf("%d connection(s) so far; the silent one was not given up", n)
				}
				return nil
			})
		})
	}
}

// What docs/bridges-mqtt.md says of 3.1.1 refusals: Mosquitto acknowledges
// a 3.1.1 publication its ACL denies (and drops it), so the sink reports
// success; the same publication over 5.0 is refused with 0x87.
func TestMQTT311RefusalIsInvisible(t *testing.T) {
	acl := filepath.Join(t.TempDir(), "acl")
	if err := os.WriteFile(acl, []byte("topic readwrite allowed/#\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mq := startMosquitto(t, "acl_file "+acl+"\n")
	ctx, cancel := context.WithTimeout(context.Background(), mqTimeout)
	defer cancel()
	for _, c := range []struct {
		version   string
		permanent bool
	}{{"3.1.1", false}, {"5", true}} {
		sink, err := newMQTTSink("b-"+c.version, &MQTTConfig{URL: "mqtt://" + mq.addr, Version: c.version, Reconnect: mqFastReconnect}, mqLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		deliverUntil(t, sink, propsMessage("allowed/x", 0))
		err = sink.Deliver(ctx, propsMessage("denied/x", 1))
		_ = sink.Close()
		if c.permanent != (err != nil && IsPermanent(err)) || (!c.permanent && err != nil) {
			t.Fatalf("version %s: Deliver to a denied topic: %v", c.version, err)
		}
	}
}

// wss:// to Mosquitto's WebSocket listener with TLS and ca_file.
func TestMQTTSinkWSSMosquitto(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := mqTestCerts(t, dir)
	port := mqFreePort(t)
	mq := startMosquitto(t, fmt.Sprintf("listener %d 127.0.0.1\nprotocol websockets\ncertfile %s\nkeyfile %s\n", port, cert, key))
	sub := dialRemote(t, mq.addr, "remote-sub")
	sub.subscribe(t, "wss/#")
	for _, version := range []string{"5", "3.1.1"} {
		sink, err := newMQTTSink("b-"+version, &MQTTConfig{URL: fmt.Sprintf("wss://127.0.0.1:%d/mqtt", port), Version: version, TLS: MQTTTLSConfig{CAFile: ca}, Reconnect: mqFastReconnect}, mqLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		deliverUntil(t, sink, propsMessage("wss/"+version, 3))
		_ = sink.Close()
		if p := sub.next(t); p.Topic != "wss/"+version || string(p.Payload) != "payload 3" {
			t.Fatalf("version %s: received %s %q over wss", version, p.Topic, p.Payload)
		}
	}
}

// mqtts:// to a Beacon that requires client certificates: with ca_file,
// cert_file and key_file the sink delivers; without the client
// certificate the handshake is refused (retryable).
func TestMQTTSinkTLSClientCertBeacon(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := mqTestCerts(t, dir)
	o := mqtt.DefaultOptions()
	o.MQTTAddr, o.WSAddr, o.HTTPAddr, o.SysInterval = "127.0.0.1:0", "", "", 0
	o.TLSAddr, o.TLSCertFile, o.TLSKeyFile = "127.0.0.1:0", cert, key
	o.TLSCAFile, o.TLSClientAuth = ca, "require"
	o.Store = storage.NewMemory()
	o.Logger = mqLogger(t).With("broker", "remote")
	srv, err := mqtt.New(o)
	if err != nil {
		t.Fatalf("mqtt.New: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	rb := &remoteBeacon{srv: srv, addr: srv.MQTTAddr()}
	t.Cleanup(func() { rb.stop(t) })
	sub := dialRemote(t, rb.addr, "remote-sub")
	sub.subscribe(t, "tls/#")

	for _, version := range []string{"5", "3.1.1"} {
		sink, err := newMQTTSink("b-"+version, &MQTTConfig{URL: "mqtts://" + srv.TLSAddr(), Version: version, Reconnect: mqFastReconnect,
			TLS: MQTTTLSConfig{CAFile: ca, CertFile: filepath.Join(dir, "client.pem"), KeyFile: filepath.Join(dir, "client.key")}}, mqLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		deliverUntil(t, sink, propsMessage("tls/"+version, 1))
		_ = sink.Close()
		if p := sub.next(t); p.Topic != "tls/"+version {
			t.Fatalf("received %s over TLS with a client certificate", p.Topic)
		}
	}

	anon, err := newMQTTSink("b-anon", &MQTTConfig{URL: "mqtts://" + srv.TLSAddr(), ConnectTimeout: 500 * time.Millisecond, Reconnect: mqFastReconnect, TLS: MQTTTLSConfig{CAFile: ca}}, mqLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	deliverFailsWith(t, anon, propsMessage("tls/anon", 2), "certificate")
}

// BenchmarkMQTTSinkDeliver measures QoS 1 deliveries to an in-process
// Beacon over loopback: one at a time (ordered bridges) and from several
// goroutines (parallel bridges).
func BenchmarkMQTTSinkDeliver(b *testing.B) {
	for _, version := range []string{"5", "3.1.1"} {
		b.Run("v"+version, func(b *testing.B) {
			rb := startRemoteBeacon(b, "127.0.0.1:0", "")
			sink, err := newMQTTSink("bench", &MQTTConfig{URL: "mqtt://" + rb.addr, Version: version}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer sink.Close()
			ctx := context.Background()
			m := propsMessage("bench/t", 0)
			m.Payload = make([]byte, 256)
			if err := sink.Deliver(ctx, m); err != nil {
				b.Fatal(err)
			}
			b.Run("serial", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := sink.Deliver(ctx, m); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.SetParallelism(4)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := sink.Deliver(ctx, m); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		})
	}
}
