package bridge

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/beaconmq/beacon/mqtt"
	"github.com/beaconmq/beacon/storage"
)

// An endpoint that answers 503 for a while and then recovers receives
// every message exactly once, and nothing is dead-lettered while the
// retries (unlimited here) last.
func TestBridgeHTTPOutageThenRecovery(t *testing.T) {
	ep := newEndpoint(t)
	var down atomic.Bool
	down.Store(true)
	ep.setDecide(func(*httpCall) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	cfg := httpBridge("warehouse", ep, "orders/+/paid")
	cfg.Retry.SetMaxAttempts(0) // retry forever
	e := startEnv(t, nil, cfg)
	dlq := subscribeDLQ(t, e)
	var want []string
	for i := 0; i < 20; i++ {
		want = append(want, e.publish(fmt.Sprintf("orders/%d/paid", i), "order", 3)...)
	}
	e.publish("orders/1/created", "other", 5) // not matched
	// The endpoint is failing: wait until every topic has been tried.
	waitFor(t, coreTimeout, func() error {
		if n := ep.callCount(); n < 60 {
			return fmt.Errorf("%d calls so far", n)
		}
		return nil
	})
	b := e.mgr.Bridge("warehouse")
	if b.up.Load() {
		t.Error("sink is up while every call fails")
	}
	down.Store(false)
	waitFor(t, coreTimeout, func() error {
		if got := len(ep.acceptedPayloads("")); got < len(want) {
			return fmt.Errorf("%d of %d accepted", got, len(want))
		}
		return nil
	})
	got := ep.acceptedPayloads("")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("accepted %v\nwant %v", got, want)
	}
	ep.mu.Lock()
	for seq, n := range ep.accepted {
		if n != 1 {
			t.Errorf("seq %d accepted %d times", seq, n)
		}
	}
	ep.mu.Unlock()
	waitFor(t, coreTimeout, func() error {
		if c, h := b.Cursor(), e.store.Head(); c != h {
			return fmt.Errorf("cursor %d, head %d", c, h)
		}
		return nil
	})
	if n := len(dlq.messages()); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
	if !b.up.Load() {
		t.Error("sink still down after recovery")
	}
	if b.retried.Load() == 0 || b.delivered.Load() != uint64(len(want)) {
		t.Errorf("retried %d delivered %d", b.retried.Load(), b.delivered.Load())
	}
}

// When the retries run out the message is on $dlq/{bridge}/{topic} with
// reason sink-failed, its attempts, and the last error.
func TestBridgeHTTPRetriesExhaustedDeadLetter(t *testing.T) {
	ep := newEndpoint(t)
	ep.setDecide(func(*httpCall) int { return http.StatusServiceUnavailable })
	cfg := httpBridge("logistics", ep, "orders/#")
	cfg.Retry.SetMaxAttempts(3)
	e := startEnv(t, nil, cfg)
	dlq := subscribeDLQ(t, e)
	e.publish("orders/7/paid", "order", 4)
	waitFor(t, coreTimeout, func() error {
		if n := len(dlq.messages()); n < 4 {
			return fmt.Errorf("%d dead letters", n)
		}
		return nil
	})
	for _, p := range dlq.messages() {
		if p.Topic != "$dlq/logistics/orders/7/paid" {
			t.Errorf("dead letter topic %q", p.Topic)
		}
		u := p.Properties.User
		if u.Get("dlq-reason") != ReasonSinkFailed || u.Get("dlq-source") != "logistics" ||
			u.Get("dlq-attempts") != "3" || u.Get("dlq-original-topic") != "orders/7/paid" ||
			!strings.Contains(u.Get("dlq-last-error"), "503") || u.Get("dlq-first-failure") == "" || u.Get(OriginalSeqKey) == "" {
			t.Errorf("dead letter properties %+v", u)
		}
		if !strings.HasPrefix(string(p.Payload), "order-") {
			t.Errorf("payload %q", p.Payload)
		}
	}
	if n := ep.callCount(); n != 12 {
		t.Errorf("endpoint saw %d calls, want 4 messages × 3 attempts", n)
	}
	b := e.mgr.Bridge("logistics")
	waitFor(t, coreTimeout, func() error {
		if c, h := b.Cursor(), e.store.Head(); c != h {
			return fmt.Errorf("cursor %d, head %d: dead letters are on the log too", c, h)
		}
		return nil
	})
	if got := b.deadLetteredCounts()[ReasonSinkFailed]; got != 4 {
		t.Errorf("dead-lettered counter %d", got)
	}
}

// A 4xx answer is dead-lettered at once, with the status and body as the
// last error; with retry_4xx it is retried like a 5xx.
func TestBridgeHTTP4xx(t *testing.T) {
	ep := newEndpoint(t)
	ep.setDecide(func(*httpCall) int { return http.StatusBadRequest })
	e := startEnv(t, nil, httpBridge("strict", ep, "orders/#"))
	dlq := subscribeDLQ(t, e)
	e.publish("orders/1/paid", "bad", 2)
	waitFor(t, coreTimeout, func() error {
		if n := len(dlq.messages()); n < 2 {
			return fmt.Errorf("%d dead letters", n)
		}
		return nil
	})
	for _, p := range dlq.messages() {
		u := p.Properties.User
		if p.Topic != "$dlq/strict/orders/1/paid" || u.Get("dlq-reason") != ReasonSinkRejected || u.Get("dlq-attempts") != "1" ||
			!strings.Contains(u.Get("dlq-last-error"), "HTTP 400") || !strings.Contains(u.Get("dlq-last-error"), "refused "+string(p.Payload)) {
			t.Errorf("dead letter %s %+v", p.Topic, u)
		}
	}
	if n := ep.callCount(); n != 2 {
		t.Errorf("endpoint saw %d calls, want one per message", n)
	}
	if !e.mgr.Bridge("strict").up.Load() {
		t.Error("a 4xx answer marked the sink down; it answered")
	}

	// retry_4xx: 404 twice, then accepted.
	ep2 := newEndpoint(t)
	var n atomic.Int32
	ep2.setDecide(func(*httpCall) int {
		if n.Add(1) <= 2 {
			return http.StatusNotFound
		}
		return http.StatusNoContent
	})
	cfg := httpBridge("lenient", ep2, "orders/#")
	cfg.HTTP.Retry4xx = true
	e2 := startEnv(t, nil, cfg)
	e2.publish("orders/2/paid", "ok", 1)
	waitFor(t, coreTimeout, func() error {
		if got := ep2.acceptedPayloads(""); len(got) != 1 {
			return fmt.Errorf("accepted %v", got)
		}
		return nil
	})
}

// Ordered bridges keep each topic's order with failures at random, and
// never have two messages of one topic in flight.
func TestBridgeOrderedPerTopic(t *testing.T) {
	ep := newEndpoint(t)
	rng := rand.New(rand.NewPCG(1, 2))
	ep.setDecide(func(*httpCall) int { // called under ep.mu
		if rng.IntN(3) == 0 {
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	// The first requests wait until four topics are in flight at once.
	gate := make(chan struct{})
	ep.gate = gate
	cfg := httpBridge("ordered", ep, "dev/#")
	cfg.Ordered = true
	cfg.Concurrency = 4
	cfg.Retry.SetMaxAttempts(0)
	e := startEnv(t, nil, cfg)
	const topicsN, per = 8, 25
	go func() { // opens the gate; the max check below fails if 4 never were in flight
		defer close(gate)
		for deadline := time.Now().Add(coreTimeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			ep.mu.Lock()
			n := ep.cur
			if n >= 4 {
				ep.gate = nil
			}
			ep.mu.Unlock()
			if n >= 4 {
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for i := 0; i < topicsN; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < per; j++ {
				m := &storage.Message{Topic: fmt.Sprintf("dev/%d", i), Payload: []byte(strconv.Itoa(j)), QoS: 1}
				if err := e.srv.Publish(m); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, coreTimeout, func() error {
		if got := len(ep.acceptedPayloads("")); got < topicsN*per {
			return fmt.Errorf("%d of %d accepted", got, topicsN*per)
		}
		return nil
	})
	for i := 0; i < topicsN; i++ {
		got := ep.acceptedPayloads(fmt.Sprintf("dev/%d", i))
		for j, p := range got {
			if p != strconv.Itoa(j) {
				t.Fatalf("topic dev/%d: accepted order %v", i, got)
			}
		}
		if len(got) != per {
			t.Errorf("topic dev/%d: %d accepted, want %d: %v", i, len(got), per, got)
		}
	}
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.overlap != 0 {
		t.Errorf("a topic had two requests in flight %d times", ep.overlap)
	}
	if ep.max != 4 {
		t.Errorf("at most %d requests in flight at once, want the concurrency 4", ep.max)
	}
}

// A parallel bridge has exactly its concurrency limit in flight when the
// endpoint is slow.
func TestBridgeParallelConcurrencyLimit(t *testing.T) {
	ep := newEndpoint(t)
	gate := make(chan struct{})
	ep.gate = gate
	cfg := httpBridge("parallel", ep, "load/#")
	cfg.Concurrency = 3
	e := startEnv(t, nil, cfg)
	want := e.publish("load/a", "m", 30)
	waitFor(t, coreTimeout, func() error {
		ep.mu.Lock()
		defer ep.mu.Unlock()
		if ep.cur != 3 {
			return fmt.Errorf("%d in flight", ep.cur)
		}
		return nil
	})
	ep.mu.Lock()
	ep.gate = nil
	ep.mu.Unlock()
	close(gate)
	waitFor(t, coreTimeout, func() error {
		if got := len(ep.acceptedPayloads("")); got < len(want) {
			return fmt.Errorf("%d accepted", got)
		}
		return nil
	})
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.max != 3 {
		t.Errorf("at most %d in flight, want the limit 3", ep.max)
	}
}

// A bridge stopped mid-stream and started again on the same store
// delivers every message at least once, and redelivers at most its window.
func TestBridgeStopMidStreamBadger(t *testing.T) {
	dir := t.TempDir()
	open := func() storage.Store {
		s, err := storage.OpenBadger(storage.DefaultBadgerOptions(dir))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ep := newEndpoint(t)
	const total = 300
	var slowN atomic.Int32
	ep.setDecide(func(c *httpCall) int {
		if slowN.Add(1)%7 == 0 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	cfg := httpBridge("stopper", ep, "s/#")
	cfg.Window = 64
	cfg.Retry.SetMaxAttempts(0)
	store := open()
	e := startEnv(t, store, cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.publish("s/x", "p", total)
	}()
	waitFor(t, coreTimeout, func() error {
		if n := len(ep.acceptedPayloads("")); n < 40 {
			return fmt.Errorf("%d accepted", n)
		}
		return nil
	})
	e.stop() // mid-stream: the publisher may still be running
	<-done
	stoppedAt := e.mgr.Bridge("stopper").saved.Load()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	before := len(ep.acceptedPayloads(""))

	store = open()
	t.Cleanup(func() { store.Close() })
	if c, _ := store.Cursor("bridge/stopper"); c != stoppedAt {
		t.Fatalf("stored cursor %d, saved %d at stop", c, stoppedAt)
	}
	startEnv(t, store, cfg)
	waitFor(t, coreTimeout, func() error {
		got := map[string]bool{}
		for _, p := range ep.acceptedPayloads("") {
			got[p] = true
		}
		if len(got) < total {
			return fmt.Errorf("%d of %d distinct payloads accepted (%d before the restart)", len(got), total, before)
		}
		return nil
	})
	dups := len(ep.acceptedPayloads("")) - total
	t.Logf("accepted %d before the stop, %d duplicates after the restart", before, dups)
	if dups > cfg.Window {
		t.Errorf("%d duplicates, more than the window %d", dups, cfg.Window)
	}
}

// The log collector keeps what a bridge has not finished, however long the
// sink is down.
func TestBridgeHoldsTheLog(t *testing.T) {
	ep := newEndpoint(t)
	var down atomic.Bool
	down.Store(true)
	ep.setDecide(func(*httpCall) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	cfg := httpBridge("holder", ep, "gc/#")
	cfg.Ordered = true
	cfg.Retry.SetMaxAttempts(0)
	e := startEnv(t, nil, cfg)
	want := e.publish("gc/a", "g", 20)
	for i := 0; i < 3; i++ {
		if _, err := e.srv.CollectLog(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.store.Get(e.store.Head()); err != nil {
		t.Fatalf("the last message was collected while the bridge needs it: %v", err)
	}
	down.Store(false)
	waitFor(t, coreTimeout, func() error {
		if got := ep.acceptedPayloads("gc/a"); !slices.Equal(got, want) {
			return fmt.Errorf("accepted %v", got)
		}
		return nil
	})
	// Once done, the cursor releases the log.
	b := e.mgr.Bridge("holder")
	waitFor(t, coreTimeout, func() error {
		if b.saved.Load() != e.store.Head() {
			return fmt.Errorf("saved %d head %d", b.saved.Load(), e.store.Head())
		}
		if _, err := e.srv.CollectLog(); err != nil {
			return err
		}
		if _, err := e.store.Get(e.store.Head()); err == nil {
			return fmt.Errorf("message %d still on the log", e.store.Head())
		}
		return nil
	})
}

// A failing sink that recovers triggers the replay of the bridge's dead
// letters through the registered replayer, which delivers via the sink.
func TestBridgeAutoReplay(t *testing.T) {
	ep := newEndpoint(t)
	var down atomic.Bool
	down.Store(true)
	ep.setDecide(func(*httpCall) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	cfg := httpBridge("replayer", ep, "orders/#")
	cfg.Retry.SetMaxAttempts(2)
	e := startEnv(t, nil, cfg)
	dlq := subscribeDLQ(t, e)
	want := e.publish("orders/9/paid", "r", 5)
	waitFor(t, coreTimeout, func() error {
		if n := len(dlq.messages()); n < 5 {
			return fmt.Errorf("%d dead letters", n)
		}
		return nil
	})
	fn := e.broker.replayer("replayer")
	if fn == nil {
		t.Fatal("no dead-letter replayer registered")
	}
	// The replayer delivers through the sink: an error while it is down.
	probe := &storage.Message{Topic: "orders/probe", Payload: []byte("probe"), QoS: 1, Seq: 999999}
	if err := fn(probe, mqtt.DeadLetter{Source: "replayer"}); err == nil {
		t.Error("replayer succeeded while the endpoint answers 503")
	}
	down.Store(false)
	// HEAD probes (no health_url) see the endpoint answer and mark it up.
	waitFor(t, coreTimeout, func() error {
		if e.broker.replayCalls("replayer") == 0 {
			return fmt.Errorf("ReplayDeadLetters not called yet")
		}
		return nil
	})
	if err := fn(probe, mqtt.DeadLetter{Source: "replayer"}); err != nil {
		t.Errorf("replayer after recovery: %v", err)
	}
	if got := ep.acceptedPayloads("orders/probe"); len(got) != 1 {
		t.Errorf("replayer delivered %v to the endpoint", got)
	}
	// The automatic replay brings the five out again, under their
	// original sequence numbers (the receivers' idempotency key).
	waitFor(t, coreTimeout, func() error {
		got := map[string]bool{}
		for _, p := range ep.acceptedPayloads("orders/9/paid") {
			got[p] = true
		}
		for _, w := range want {
			if !got[w] {
				return fmt.Errorf("%s not replayed yet (accepted %v)", w, got)
			}
		}
		return nil
	})
	ep.mu.Lock()
	defer ep.mu.Unlock()
	firstSeq := map[string]uint64{} // payload -> Beacon-Seq of its first (failed) attempt
	for _, c := range ep.calls {
		if c.topic != "orders/9/paid" {
			continue
		}
		if _, ok := firstSeq[c.payload]; !ok {
			firstSeq[c.payload] = c.seq
		}
		if c.seq != firstSeq[c.payload] {
			t.Errorf("%s: Beacon-Seq %d on a later call, %d on the first", c.payload, c.seq, firstSeq[c.payload])
		}
		if c.header.Get("Beacon-Prop-"+OriginalSeqKey) != "" {
			t.Errorf("%s: the replay marker reached the endpoint", c.payload)
		}
	}
}

// Metrics and the admin listing show a bridge's counters.
func TestBridgeMetricsAndStatus(t *testing.T) {
	ep := newEndpoint(t)
	ep.setDecide(func(c *httpCall) int {
		if strings.HasPrefix(c.payload, "bad") {
			return http.StatusUnprocessableEntity
		}
		return http.StatusOK
	})
	e := startEnv(t, nil, httpBridge("metered", ep, "m/#"))
	reg := prometheus.NewRegistry()
	var handler http.Handler
	if err := e.mgr.Register(func(p string, h http.Handler) {
		if p == "GET /api/v1/bridges" {
			handler = h
		}
	}, reg); err != nil {
		t.Fatal(err)
	}
	e.publish("m/ok", "ok", 3)
	e.publish("m/bad", "bad", 2)
	b := e.mgr.Bridge("metered")
	waitFor(t, coreTimeout, func() error {
		if b.Cursor() != e.store.Head() {
			return fmt.Errorf("cursor %d head %d", b.Cursor(), e.store.Head())
		}
		return nil
	})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					key += "/" + l.GetValue()
				}
			}
			if m.Counter != nil {
				vals[key] = m.GetCounter().GetValue()
			} else {
				vals[key] = m.GetGauge().GetValue()
			}
		}
	}
	for k, want := range map[string]float64{
		"beacon_bridge_delivered_total":                   3,
		"beacon_bridge_dead_lettered_total/sink-rejected": 2,
		"beacon_bridge_dead_lettered_total/sink-failed":   0,
		"beacon_bridge_lag_messages":                      0,
		"beacon_bridge_sink_up":                           1,
		"beacon_bridge_in_flight_messages":                0,
	} {
		if got, ok := vals[k]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, want)
		}
	}
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/bridges", nil))
	body := rec.Body.String()
	for _, want := range []string{`"name": "metered"`, `"state": "running"`, `"delivered": 3`, `"sink-rejected": 2`, `"lag": 0`} {
		if !strings.Contains(body, want) {
			t.Errorf("/api/v1/bridges lacks %s:\n%s", want, body)
		}
	}
}

// The HTTP format: payload as the body, the rest in headers.
// Outcome classes of the HTTP sink, including timeouts and connection
// errors, and the probe.
func TestConfigValidate(t *testing.T) {
	ok := Config{Name: "w", Type: "http", Topics: []string{"a/#"}, HTTP: &HTTPConfig{URL: "http://127.0.0.1:1/x"}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, tc := range []struct {
		mod  func(c *Config)
		want string
	}{
		{func(c *Config) { c.Name = "a/b" }, "name:"},
		{func(c *Config) { c.Name = "broker" }, "name: \"broker\""},
		{func(c *Config) { c.Type = "kafka" }, "type:"},
		{func(c *Config) { c.Topics = nil }, "topics: missing"},
		{func(c *Config) { c.Topics = []string{"a/#/b"} }, "topics:"},
		{func(c *Config) { c.HTTP = &HTTPConfig{URL: "ftp://x"} }, "http.url:"},
		{func(c *Config) { c.HTTP = nil }, "http: missing"},
		{func(c *Config) { c.Direction = "in" }, "direction:"},
		{func(c *Config) { c.Retry.Multiplier = 0.5 }, "retry.multiplier"},
		{func(c *Config) { c.Retry.SetJitter(2) }, "retry.jitter"},
		{func(c *Config) { c.Retry.SetMaxAttempts(-1) }, "retry.max_attempts"},
		{func(c *Config) { c.Retry.InitialBackoff = time.Minute; c.Retry.MaxBackoff = time.Second }, "retry.max_backoff"},
		{func(c *Config) { c.Start = "middle" }, "start:"},
		{func(c *Config) { c.Concurrency = -1 }, "concurrency:"},
	} {
		c := ok
		h := *ok.HTTP
		c.HTTP = &h
		tc.mod(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want an error with %q, got %v", tc.want, err)
		}
	}
}

// A message whose expiry passed before the sink took it is dead-lettered
// with reason expired, not delivered.
func TestBridgeExpiredDeadLetter(t *testing.T) {
	ep := newEndpoint(t)
	e := startEnv(t, nil, httpBridge("exp", ep, "x/#"))
	dlq := subscribeDLQ(t, e)
	m := &storage.Message{Topic: "x/old", Payload: []byte("stale"), QoS: 1, Created: time.Now().Add(-time.Minute)}
	m.Properties.MessageExpiry = 5
	if err := e.srv.Publish(m); err != nil {
		t.Fatal(err)
	}
	e.publish("x/new", "fresh", 1)
	waitFor(t, coreTimeout, func() error {
		if len(dlq.messages()) == 0 || len(ep.acceptedPayloads("")) == 0 {
			return fmt.Errorf("dead letters %d, accepted %d", len(dlq.messages()), len(ep.acceptedPayloads("")))
		}
		return nil
	})
	p := dlq.messages()[0]
	if p.Topic != "$dlq/exp/x/old" || p.Properties.User.Get("dlq-reason") != ReasonExpired {
		t.Errorf("dead letter %s %+v", p.Topic, p.Properties.User)
	}
	if got := ep.acceptedPayloads(""); !slices.Equal(got, []string{"fresh-0"}) {
		t.Errorf("endpoint accepted %v", got)
	}
}

// The admin route and the metrics are served on the broker's HTTP
// listener.
func TestBridgeAdminOverHTTP(t *testing.T) {
	ep := newEndpoint(t)
	e := startEnv(t, nil, httpBridge("api", ep, "api/#"))
	e.publish("api/x", "a", 2)
	b := e.mgr.Bridge("api")
	waitFor(t, coreTimeout, func() error { // done, as the bridge sees it
		if b.Cursor() != e.store.Head() {
			return fmt.Errorf("cursor %d head %d", b.Cursor(), e.store.Head())
		}
		return nil
	})
	get := func(path string) string {
		resp, err := http.Get("http://" + e.srv.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s\n%s", path, resp.Status, b)
		}
		return string(b)
	}
	if body := get("/api/v1/bridges/api"); !strings.Contains(body, `"delivered": 2`) {
		t.Errorf("/api/v1/bridges/api:\n%s", body)
	}
	if body := get("/api/v1/bridges"); !strings.Contains(body, `"name": "api"`) {
		t.Errorf("/api/v1/bridges:\n%s", body)
	}
	if body := get("/metrics"); !strings.Contains(body, `beacon_bridge_delivered_total{bridge="api"} 2`) {
		t.Errorf("/metrics lacks the bridge counter")
	}
}

// A bridge of direction in publishes a remote broker's messages locally.
func TestBridgeManagerStartsDirectionIn(t *testing.T) {
	remote := startEnv(t, nil)
	local := startEnv(t, nil, Config{Name: "inbound", Type: "mqtt", Direction: "in",
		MQTT: &MQTTConfig{URL: "mqtt://" + remote.srv.MQTTAddr(), Subscribe: []string{"remote/#"}}})
	found := func() bool {
		ok := false
		local.store.Scan(1, func(m *storage.Message) bool {
			ok = ok || m.Topic == "remote/x" && string(m.Payload) == "hello-0"
			return !ok
		})
		return ok
	}
	waitFor(t, coreTimeout, func() error {
		// Publish until the source's subscription is in place.
		remote.publish("remote/x", "hello", 1)
		if !found() {
			return fmt.Errorf("not on the local log yet")
		}
		return nil
	})
	st := local.mgr.Statuses()
	if len(st) != 1 || st[0].Direction != "in" || st[0].State != "running" {
		t.Errorf("statuses %+v", st)
	}
}

// https with a private CA: ca_file makes the endpoint's certificate
// trusted; without it the delivery fails (and is retried).
// A new bridge starts at the log head (latest) or at its start (earliest);
// once started it resumes at its cursor whatever was appended meanwhile.
func TestBridgeStartPosition(t *testing.T) {
	store := storage.NewMemory()
	t.Cleanup(func() { store.Close() }) // after the brokers' cleanups
	old := []*storage.Message{
		{Topic: "p/a", Payload: []byte("old-0"), QoS: 1},
		{Topic: "p/a", Payload: []byte("old-1"), QoS: 1},
	}
	if err := store.Append(context.Background(), old...); err != nil {
		t.Fatal(err)
	}
	epLatest, epEarliest := newEndpoint(t), newEndpoint(t)
	latest := httpBridge("latest", epLatest, "p/#")
	earliest := httpBridge("earliest", epEarliest, "p/#")
	earliest.Start = "earliest"
	e := startEnv(t, store, latest, earliest)
	e.publish("p/a", "new", 1)
	waitFor(t, coreTimeout, func() error {
		if got := epEarliest.acceptedPayloads(""); !slices.Equal(slices.Sorted(slices.Values(got)), []string{"new-0", "old-0", "old-1"}) {
			return fmt.Errorf("earliest accepted %v", got)
		}
		if got := epLatest.acceptedPayloads(""); !slices.Equal(got, []string{"new-0"}) {
			return fmt.Errorf("latest accepted %v", got)
		}
		return nil
	})
	e.stop()
	// Appended while no bridge runs: a "latest" bridge with a cursor still
	// gets it.
	if err := store.Append(context.Background(), &storage.Message{Topic: "p/a", Payload: []byte("between"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	startEnv(t, store, latest)
	waitFor(t, coreTimeout, func() error {
		if got := epLatest.acceptedPayloads(""); !slices.Equal(got, []string{"new-0", "between"}) {
			return fmt.Errorf("latest accepted %v", got)
		}
		return nil
	})
}

// The whole story: an outage longer than the retries dead-letters some
// messages; after recovery the live ones and the replayed ones together
// reach the endpoint exactly once each.
func TestBridgeOutageDeadLetterReplayExactlyOnce(t *testing.T) {
	ep := newEndpoint(t)
	var down atomic.Bool
	down.Store(true)
	ep.setDecide(func(*httpCall) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	cfg := httpBridge("story", ep, "orders/+/paid")
	cfg.Retry.SetMaxAttempts(3)
	cfg.Concurrency = 2
	e := startEnv(t, nil, cfg)
	dlq := subscribeDLQ(t, e)
	var want []string
	for i := 0; i < 3; i++ {
		want = append(want, e.publish(fmt.Sprintf("orders/%d/paid", i), fmt.Sprintf("o%d", i), 10)...)
	}
	waitFor(t, coreTimeout, func() error {
		if n := len(dlq.messages()); n < 6 {
			return fmt.Errorf("%d dead letters", n)
		}
		return nil
	})
	down.Store(false)
	waitFor(t, coreTimeout, func() error {
		got := map[string]int{}
		for _, p := range ep.acceptedPayloads("") {
			got[p]++
		}
		for _, w := range want {
			if got[w] == 0 {
				return fmt.Errorf("%s not accepted yet (%d of %d)", w, len(got), len(want))
			}
		}
		return nil
	})
	got := map[string]int{}
	for _, p := range ep.acceptedPayloads("") {
		got[p]++
	}
	for p, n := range got {
		if n != 1 {
			t.Errorf("%s accepted %d times", p, n)
		}
	}
	for _, p := range dlq.messages() {
		if p.Properties.User.Get("dlq-reason") != ReasonSinkFailed {
			t.Errorf("dead letter %s reason %q", p.Topic, p.Properties.User.Get("dlq-reason"))
		}
	}
	b := e.mgr.Bridge("story")
	// The endpoint counts before its answer reaches the bridge.
	waitFor(t, coreTimeout, func() error {
		if r, d := b.replayed.Load(), b.delivered.Load(); r == 0 || r+d != uint64(len(want)) {
			return fmt.Errorf("replayed %d + delivered %d, want %d", r, d, len(want))
		}
		return nil
	})
	t.Logf("dead-lettered %d, replayed %d, delivered live %d", len(dlq.messages()), b.replayed.Load(), b.delivered.Load())
}

// Retry-After of a 429/503 answer lengthens the wait, capped at max_backoff.
// Log retention removes what a stalled bridge has not read and
// dead-letters it under the bridge's name; after recovery the replay
// delivers the bridge's own messages and skips those its filters do not
// match.
func TestBridgeRetentionDeadLettersReplayed(t *testing.T) {
	ep := newEndpoint(t)
	var down atomic.Bool
	down.Store(true)
	ep.setDecide(func(*httpCall) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	cfg := httpBridge("ret", ep, "keep/#")
	cfg.Ordered = true
	cfg.Window = 1
	cfg.Retry.SetMaxAttempts(0)
	e := startEnvOpts(t, nil, func(o *mqtt.Options) { o.LogRetention = time.Millisecond }, cfg)
	dlq := subscribeDLQ(t, e)
	keep := e.publish("keep/x", "k", 4)
	e.publish("other/y", "o", 3)
	waitFor(t, coreTimeout, func() error {
		n := 0
		for _, p := range dlq.messages() {
			if strings.HasPrefix(p.Topic, "$dlq/ret/") && p.Properties.User.Get("dlq-reason") == "retention" {
				n++
			}
		}
		if n < 6 { // the three keep/x not in flight, and the three other/y
			return fmt.Errorf("%d retention dead letters of the bridge", n)
		}
		return nil
	})
	down.Store(false)
	b := e.mgr.Bridge("ret")
	waitFor(t, coreTimeout, func() error {
		got := map[string]bool{}
		for _, p := range ep.acceptedPayloads("") {
			got[p] = true
		}
		for _, k := range keep {
			if !got[k] {
				return fmt.Errorf("%s not accepted (accepted %v)", k, got)
			}
		}
		if b.replaySkipped.Load() < 3 {
			return fmt.Errorf("%d replays skipped", b.replaySkipped.Load())
		}
		return nil
	})
	if got := ep.acceptedPayloads("other/y"); len(got) != 0 {
		t.Errorf("other/y reached the endpoint: %v", got)
	}
}

// In an ordered bridge a message refused for good is dead-lettered and its
// topic goes on with the next one, still in order.
func TestBridgeOrderedSkipsRejected(t *testing.T) {
	ep := newEndpoint(t)
	ep.setDecide(func(c *httpCall) int {
		if c.payload == "t-2" {
			return http.StatusBadRequest
		}
		return http.StatusOK
	})
	cfg := httpBridge("ordrej", ep, "t/#")
	cfg.Ordered = true
	e := startEnv(t, nil, cfg)
	dlq := subscribeDLQ(t, e)
	e.publish("t/1", "t", 5)
	waitFor(t, coreTimeout, func() error {
		if got := ep.acceptedPayloads("t/1"); !slices.Equal(got, []string{"t-0", "t-1", "t-3", "t-4"}) {
			return fmt.Errorf("accepted %v", got)
		}
		if len(dlq.messages()) != 1 {
			return fmt.Errorf("%d dead letters", len(dlq.messages()))
		}
		return nil
	})
	if p := dlq.messages()[0]; string(p.Payload) != "t-2" || p.Properties.User.Get("dlq-reason") != ReasonSinkRejected {
		t.Errorf("dead letter %q %+v", p.Payload, p.Properties.User)
	}
}
