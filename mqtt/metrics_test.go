package mqtt

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/storage"
)

// scrape GETs /metrics and returns every sample by its series as printed
// (name{label="value",...}, labels in Prometheus' sorted order).
func scrapeMetrics(t testing.TB, s *Server) map[string]float64 {
	t.Helper()
	body := httpGet(t, "http://"+s.HTTPAddr()+"/metrics")
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// metricEventually polls /metrics until series has value want.
func metricEventually(t *testing.T, s *Server, series string, want float64) {
	t.Helper()
	eventually(t, testTimeout, func() error {
		if got, ok := scrapeMetrics(t, s)[series]; !ok || got != want {
			return fmt.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
		return nil
	})
}

func startHTTPServer(t *testing.T, mod func(*Options)) *Server {
	t.Helper()
	return startServer(t, func(o *Options) {
		o.HTTPAddr = "127.0.0.1:0"
		if mod != nil {
			mod(o)
		}
	})
}

// TestMetricsMove scrapes /metrics before and after traffic and checks that
// each family moves with what happened.
func TestMetricsMove(t *testing.T) {
	st, err := storage.OpenBadger(storage.DefaultBadgerOptions(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	s := startHTTPServer(t, func(o *Options) { o.Store = st })

	before := scrapeMetrics(t, s)
	for _, series := range []string{
		"beacon_connections_current", "beacon_connections_total", `beacon_messages_received_total{qos="1"}`,
		`beacon_sessions{state="online"}`, `beacon_storage_size_bytes{part="lsm"}`, `beacon_storage_size_bytes{part="vlog"}`,
		"beacon_log_append_duration_seconds_count", "beacon_retained_messages", "beacon_queued_messages",
		"go_goroutines", `beacon_messages_dropped_total{reason="queue-full"}`,
	} {
		if _, ok := before[series]; !ok {
			t.Errorf("/metrics has no %s", series)
		}
	}
	if before["beacon_connections_current"] != 0 || before[`beacon_messages_received_total{qos="1"}`] != 0 {
		t.Fatalf("fresh broker: %v", before)
	}

	// A durable subscriber that goes offline, a publisher with QoS 1.
	sub := dial(t, s, packets.V5)
	sub.connect("m-sub", true, func(p *packets.Connect) { p.Properties.SessionExpiry = 600 })
	sub.subscribe(1, packets.Subscription{Filter: "m/#", QoS: 1})
	pub := dial(t, s, packets.V5)
	pub.connect("m-pub", true, nil)
	metricEventually(t, s, "beacon_connections_current", 2)
	metricEventually(t, s, `beacon_sessions{state="online"}`, 2)

	pub.publish("m/a", "hello", 1, false, 1)
	sub.recvPublish(true)
	pub.publish("m/r", "retained", 1, true, 2)
	sub.recvPublish(true)
	pub.publish("$SYS/x", "no", 0, false, 0) // refused: reserved prefix
	sub.disconnect()
	metricEventually(t, s, `beacon_sessions{state="offline"}`, 1)
	pub.publish("m/b", "queued", 1, false, 3) // waits for the offline session

	m := scrapeMetrics(t, s)
	checks := []struct {
		series string
		want   float64
	}{
		{"beacon_connections_total", before["beacon_connections_total"] + 2},
		{"beacon_connections_current", 1},
		{`beacon_sessions{state="online"}`, 1},
		{`beacon_sessions{state="offline"}`, 1},
		{`beacon_messages_received_total{qos="1"}`, 3},
		{`beacon_messages_received_total{qos="0"}`, 1},
		{`beacon_messages_sent_total{qos="1"}`, 2},
		{`beacon_payload_bytes_received_total{qos="1"}`, float64(len("hello") + len("retained") + len("queued"))},
		{`beacon_payload_bytes_sent_total{qos="1"}`, float64(len("hello") + len("retained"))},
		{`beacon_messages_dropped_total{reason="reserved-topic"}`, 1},
		{"beacon_retained_messages", 1},
		{"beacon_subscriptions", 1},
		{"beacon_queued_messages", 1},
	}
	for _, c := range checks {
		if got, ok := m[c.series]; !ok || got != c.want {
			t.Errorf("%s = %v (present %v), want %v", c.series, got, ok, c.want)
		}
	}
	if m["beacon_bytes_received_total"] <= before["beacon_bytes_received_total"] || m["beacon_bytes_sent_total"] <= before["beacon_bytes_sent_total"] {
		t.Errorf("bytes counters did not move: %v -> %v, %v -> %v", before["beacon_bytes_received_total"], m["beacon_bytes_received_total"],
			before["beacon_bytes_sent_total"], m["beacon_bytes_sent_total"])
	}
	if m["beacon_log_head_sequence"] < 3 {
		t.Errorf("beacon_log_head_sequence = %v, want >= 3", m["beacon_log_head_sequence"])
	}
	// One observation per append call; one call may carry several
	// messages of a connection.
	if n := m["beacon_log_append_duration_seconds_count"]; n < 1 || n > 3 || m[`beacon_log_append_duration_seconds_bucket{le="+Inf"}`] != n {
		t.Errorf("append latency count %v (+Inf bucket %v), want 1..3 for 3 QoS 1 messages", n, m[`beacon_log_append_duration_seconds_bucket{le="+Inf"}`])
	}
	if m["beacon_log_append_duration_seconds_sum"] <= 0 {
		t.Errorf("append latency sum %v, want > 0", m["beacon_log_append_duration_seconds_sum"])
	}
	if m[`beacon_storage_size_bytes{part="lsm"}`]+m[`beacon_storage_size_bytes{part="vlog"}`] <= 0 {
		t.Errorf("storage size is zero: %v", m)
	}

	// A refused connection is counted by reason: 3.1.1 refuses an empty
	// client identifier without clean session [MQTT-3.1.3-8].
	bad := dial(t, s, packets.V311)
	if ca := bad.tryConnect("", false, nil); ca.ReasonCode == packets.Success {
		t.Fatal("3.1.1 CONNECT with an empty client id and clean session 0 was accepted")
	}
	eventually(t, testTimeout, func() error {
		n := 0.0
		for series, v := range scrapeMetrics(t, s) {
			if strings.HasPrefix(series, "beacon_connections_refused_total{reason=") {
				n += v
			}
		}
		if n != 1 {
			return fmt.Errorf("refused connections counted %v, want 1", n)
		}
		return nil
	})
}

// TestMetricsDeadLetters: a message dropped because it is larger than the
// subscriber's Maximum Packet Size is dead-lettered and counted under its
// source and reason.
func TestMetricsDeadLetters(t *testing.T) {
	s := startHTTPServer(t, nil)
	sub := dial(t, s, packets.V5)
	sub.connect("dl-sub", true, func(p *packets.Connect) {
		p.Properties.MaximumPacketSize = 64
	})
	sub.subscribe(1, packets.Subscription{Filter: "big", QoS: 1})
	pub := dial(t, s, packets.V5)
	pub.connect("dl-pub", true, nil)
	pub.publish("big", strings.Repeat("x", 200), 1, false, 1)
	eventually(t, testTimeout, func() error {
		m := scrapeMetrics(t, s)
		if m[`beacon_messages_dropped_total{reason="too-large"}`] != 1 {
			return fmt.Errorf("too-large drops = %v", m[`beacon_messages_dropped_total{reason="too-large"}`])
		}
		for series, v := range m {
			if strings.HasPrefix(series, "beacon_dead_letters_total{") && strings.Contains(series, "too-large") && v == 1 {
				return nil
			}
		}
		return fmt.Errorf("no beacon_dead_letters_total series for too-large")
	})
}

// Every beacon_ metric family served is documented in docs/operations.md,
// so a counter added to Stats (exported automatically) gets a line there.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	s := startHTTPServer(t, nil)
	fam := regexp.MustCompile(`^(beacon_[a-z0-9_]+?)(_bucket|_sum|_count)?(\{|$)`)
	seen := map[string]bool{}
	for series := range scrapeMetrics(t, s) {
		m := fam.FindStringSubmatch(series)
		if m == nil {
			continue
		}
		name := m[1]
		if m[2] != "" && !strings.HasPrefix(name, "beacon_log_append_duration_seconds") {
			name += m[2] // a counter that happens to end in _count
		}
		if seen[name] {
			continue
		}
		seen[name] = true
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/operations.md does not document metric `%s`", name)
		}
	}
	if len(seen) < 20 {
		t.Errorf("only %d beacon_ families served", len(seen))
	}
}

func TestGenericMetricName(t *testing.T) {
	for field, want := range map[string]string{
		"KeepAliveTimeouts":  "keep_alive_timeouts_total",
		"DroppedSlowQoS0":    "dropped_slow_qos0_total",
		"Session.StoreError": "session_store_error_total",
		"SharedRerouted":     "shared_rerouted_total",
		"TLSHandshakeErrors": "tls_handshake_errors_total",
		"ACLDenied":          "acl_denied_total",
	} {
		if got := genericMetricName(field); got != want {
			t.Errorf("genericMetricName(%q) = %q, want %q", field, got, want)
		}
	}
}

func TestLatencyHistogram(t *testing.T) {
	var h LatencyHistogram
	h.Observe(30 * time.Microsecond) // <= 50µs
	h.Observe(time.Millisecond)      // exactly a bound: counted in it
	h.Observe(3 * time.Millisecond)  // <= 5ms
	h.Observe(10 * time.Second)      // +Inf only
	n, sum, b := h.snapshot()
	if n != 4 {
		t.Errorf("count %d, want 4", n)
	}
	if want := (30e-6 + 1e-3 + 3e-3 + 10); sum < want-1e-9 || sum > want+1e-9 {
		t.Errorf("sum %v, want %v", sum, want)
	}
	for ub, want := range map[float64]uint64{0.00005: 1, 0.0005: 1, 0.001: 2, 0.0025: 2, 0.005: 3, 2.5: 3} {
		if b[ub] != want {
			t.Errorf("bucket le=%v: %d, want %d", ub, b[ub], want)
		}
	}
}
