package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/beaconmq/beacon/mqtt"
	"github.com/beaconmq/beacon/storage"
)

// Helpers of the bridge core tests: an in-process Beacon on 127.0.0.1:0
// with a Manager, an HTTP endpoint that records what it accepted and can
// be told to fail, and a $dlq/# subscriber.

const coreTimeout = 15 * time.Second

// waitFor polls fn until it returns nil or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
}

type coreLogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *coreLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// replayBroker wraps the server to see the replay calls and keep the
// registered replayers.
type replayBroker struct {
	*mqtt.Server
	mu        sync.Mutex
	replays   map[string]int
	replayers map[string]func(*storage.Message, mqtt.DeadLetter) error
}

func (r *replayBroker) SetDeadLetterReplayer(source string, fn func(*storage.Message, mqtt.DeadLetter) error) {
	r.mu.Lock()
	if fn == nil {
		delete(r.replayers, source)
	} else {
		r.replayers[source] = fn
	}
	r.mu.Unlock()
	r.Server.SetDeadLetterReplayer(source, fn)
}

func (r *replayBroker) ReplayDeadLetters(source string) (int, error) {
	r.mu.Lock()
	r.replays[source]++
	r.mu.Unlock()
	return r.Server.ReplayDeadLetters(source)
}

func (r *replayBroker) replayCalls(source string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.replays[source]
}

func (r *replayBroker) replayer(source string) func(*storage.Message, mqtt.DeadLetter) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.replayers[source]
}

// env is one running broker with bridges.
type env struct {
	t      testing.TB
	srv    *mqtt.Server
	broker *replayBroker
	store  storage.Store
	mgr    *Manager
	logw   *coreLogWriter
	once   sync.Once
}

// startEnv runs a broker on store (a memory store when nil) with the
// bridges cfgs. The log collector runs every 20ms, so a bridge that does
// not hold the log would lose messages.
func startEnv(t testing.TB, store storage.Store, cfgs ...Config) *env {
	t.Helper()
	return startEnvOpts(t, store, nil, cfgs...)
}

// startEnvOpts is startEnv with the broker's options changed by mod.
func startEnvOpts(t testing.TB, store storage.Store, mod func(*mqtt.Options), cfgs ...Config) *env {
	t.Helper()
	if store == nil {
		store = storage.NewMemory()
		t.Cleanup(func() { store.Close() })
	}
	lw := &coreLogWriter{t: t}
	logger := slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelInfo}))
	o := mqtt.DefaultOptions()
	o.MQTTAddr, o.WSAddr, o.HTTPAddr = "127.0.0.1:0", "", "127.0.0.1:0"
	o.SysInterval = 0
	o.LogGCInterval = 20 * time.Millisecond
	o.Store = store
	o.Logger = logger
	if mod != nil {
		mod(&o)
	}
	srv, err := mqtt.New(o)
	if err != nil {
		t.Fatal(err)
	}
	rb := &replayBroker{Server: srv, replays: map[string]int{}, replayers: map[string]func(*storage.Message, mqtt.DeadLetter) error{}}
	mgr, err := NewManager(rb, store, cfgs, logger)
	if err != nil {
		t.Fatal(err)
	}
	if err := mgr.Register(srv.HandleAdmin, srv.MetricsRegistry()); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	mgr.Start()
	e := &env{t: t, srv: srv, broker: rb, store: store, mgr: mgr, logw: lw}
	t.Cleanup(e.stop)
	return e
}

// stop stops the bridges, then the broker (idempotent).
func (e *env) stop() {
	e.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), coreTimeout)
		defer cancel()
		if err := e.mgr.Stop(ctx); err != nil {
			e.t.Errorf("Manager.Stop: %v", err)
		}
		if err := e.srv.Shutdown(ctx); err != nil && !errors.Is(err, mqtt.ErrServerClosed) {
			e.t.Errorf("Shutdown: %v", err)
		}
		e.logw.mu.Lock()
		e.logw.done = true
		e.logw.mu.Unlock()
	})
}

// publish publishes n QoS 1 messages on topic with payloads prefix-0 … and
// returns their payloads.
func (e *env) publish(topic, prefix string, n int) []string {
	e.t.Helper()
	var out []string
	for i := 0; i < n; i++ {
		p := fmt.Sprintf("%s-%d", prefix, i)
		if err := e.srv.Publish(&storage.Message{Topic: topic, Payload: []byte(p), QoS: 1}); err != nil {
			e.t.Fatalf("Publish: %v", err)
		}
		out = append(out, p)
	}
	return out
}

// httpCall is one request the endpoint received.
type httpCall struct {
	status  int
	seq     uint64
	topic   string
	payload string
	header  http.Header
}

// endpoint is an HTTP server that answers each request with what decide
// returns (200 when decide is nil) and records every call.
type endpoint struct {
	srv *httptest.Server

	mu       sync.Mutex
	decide   func(c *httpCall) int
	calls    []httpCall
	accepted map[uint64]int // Beacon-Seq -> 2xx answers
	inflight map[string]int // per topic, now
	overlap  int            // times a topic had two requests at once
	cur, max int            // requests in flight now, at most
	gate     chan struct{}  // when set, requests wait for it to close
	probes   int            // HEAD/GET requests (health probes)
}

func newEndpoint(t testing.TB) *endpoint {
	ep := &endpoint{accepted: map[uint64]int{}, inflight: map[string]int{}}
	ep.srv = httptest.NewServer(http.HandlerFunc(ep.serve))
	t.Cleanup(ep.srv.Close)
	return ep
}

func (ep *endpoint) url() string { return ep.srv.URL + "/hook" }

func (ep *endpoint) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost { // a health probe
		ep.mu.Lock()
		ep.probes++
		code := http.StatusMethodNotAllowed
		if ep.decide != nil && ep.decide(&httpCall{}) >= 500 {
			code = http.StatusServiceUnavailable
		}
		ep.mu.Unlock()
		w.WriteHeader(code)
		return
	}
	body, _ := io.ReadAll(r.Body)
	seq, _ := strconv.ParseUint(r.Header.Get("Beacon-Seq"), 10, 64)
	c := httpCall{seq: seq, topic: r.Header.Get("Beacon-Topic"), payload: string(body), header: r.Header.Clone()}
	ep.mu.Lock()
	ep.cur++
	ep.max = max(ep.max, ep.cur)
	ep.inflight[c.topic]++
	if ep.inflight[c.topic] > 1 {
		ep.overlap++
	}
	gate := ep.gate
	ep.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
		}
	}
	ep.mu.Lock()
	c.status = http.StatusOK
	if ep.decide != nil {
		c.status = ep.decide(&c)
	}
	if c.status/100 == 2 {
		ep.accepted[seq]++
	}
	ep.calls = append(ep.calls, c)
	ep.inflight[c.topic]--
	ep.cur--
	ep.mu.Unlock()
	w.WriteHeader(c.status)
	if c.status/100 != 2 {
		fmt.Fprintf(w, "refused %s", c.payload)
	}
}

func (ep *endpoint) setDecide(fn func(c *httpCall) int) {
	ep.mu.Lock()
	ep.decide = fn
	ep.mu.Unlock()
}

// acceptedPayloads returns the accepted payloads of topic in arrival order.
func (ep *endpoint) acceptedPayloads(topic string) []string {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	var out []string
	for _, c := range ep.calls {
		if c.status/100 == 2 && (topic == "" || c.topic == topic) {
			out = append(out, c.payload)
		}
	}
	return out
}

func (ep *endpoint) callCount() int {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return len(ep.calls)
}

// dlqSub is a paho.golang client subscribed to $dlq/#.
type dlqSub struct {
	mu  sync.Mutex
	got []*paho.Publish
}

func subscribeDLQ(t testing.TB, e *env) *dlqSub {
	t.Helper()
	d := &dlqSub{}
	conn, err := net.Dial("tcp", e.srv.MQTTAddr())
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) {
			d.mu.Lock()
			d.got = append(d.got, pr.Packet)
			d.mu.Unlock()
			return true, nil
		},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), coreTimeout)
	defer cancel()
	if ca, err := c.Connect(ctx, &paho.Connect{ClientID: "dlq-watch", CleanStart: true, KeepAlive: 30}); err != nil || ca.ReasonCode != 0 {
		t.Fatalf("connect: %v %+v", err, ca)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$dlq/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *dlqSub) messages() []*paho.Publish {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*paho.Publish(nil), d.got...)
}

// httpBridge is a bridge config to ep with fast retries.
func httpBridge(name string, ep *endpoint, filters ...string) Config {
	c := Config{
		Name: name, Type: "http", Topics: filters,
		HTTP:           &HTTPConfig{URL: ep.url(), Timeout: 5 * time.Second},
		CursorInterval: 20 * time.Millisecond,
		Retry:          RetryPolicy{InitialBackoff: 5 * time.Millisecond, MaxBackoff: 40 * time.Millisecond},
	}
	return c
}
