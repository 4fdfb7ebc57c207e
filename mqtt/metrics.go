package mqtt

import (
	"fmt"
	"net/http"
	"reflect"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/beaconmq/beacon/session"
)

// Prometheus metrics. The broker counts events in plain atomics (Stats)
// where they happen; the exporter reads them when /metrics is scraped, so
// a metric costs nothing on the hot path and nothing is counted twice.
// Gauges of state the broker keeps anyway (sessions, subscriptions,
// retained messages, queues, storage size) are computed at scrape time.
//
// Every exported field of Stats is exported: the well-known ones under the
// names and labels below, and any other counter under
// beacon_<snake_case_field>_total, so a counter added to Stats is never
// left out of /metrics (docs/operations.md lists them; a test keeps the
// list complete).

// metricNamespace prefixes every metric of the broker.
const metricNamespace = "beacon"

// registerMetrics serves /metrics from the server's registry, after adding
// the broker's collector and the Go runtime and process collectors to it.
func (s *Server) registerMetrics(mux *http.ServeMux) {
	for _, c := range []prometheus.Collector{
		&statsCollector{s: s},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := s.metrics.Register(c); err != nil {
			s.log.Warn("registering metrics collector failed", "err", err)
		}
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics, promhttp.HandlerOpts{
		ErrorLog:      slogPromLogger{s},
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      s.metrics, // promhttp_metric_handler_errors_total
	}))
}

// slogPromLogger routes promhttp's error messages to the server log.
type slogPromLogger struct{ s *Server }

func (l slogPromLogger) Println(v ...any) {
	l.s.log.Warn("serving /metrics", "err", strings.TrimSpace(fmt.Sprintln(v...)))
}

// latencyBuckets are the upper bounds, in seconds, of LatencyHistogram:
// from 50µs (an append with durability none) to 2.5s (a disk in trouble).
var latencyBuckets = [...]float64{
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
	0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
}

// LatencyHistogram is a lock-free histogram of durations with the fixed
// buckets latencyBuckets, exported as a Prometheus histogram. The zero
// value is ready to use.
type LatencyHistogram struct {
	counts [len(latencyBuckets) + 1]atomic.Uint64 // the last one is +Inf
	sumNs  atomic.Uint64
}

// Observe records one duration.
func (h *LatencyHistogram) Observe(d time.Duration) {
	sec := d.Seconds()
	i := sort.SearchFloat64s(latencyBuckets[:], sec) // first bound >= sec
	h.counts[i].Add(1)
	h.sumNs.Add(uint64(max(d, 0)))
}

// snapshot returns the count, the sum in seconds and the cumulative count
// of every bucket, as Prometheus wants them.
func (h *LatencyHistogram) snapshot() (count uint64, sum float64, buckets map[float64]uint64) {
	buckets = make(map[float64]uint64, len(latencyBuckets))
	for i, ub := range latencyBuckets {
		count += h.counts[i].Load()
		buckets[ub] = count
	}
	count += h.counts[len(latencyBuckets)].Load()
	sum = float64(h.sumNs.Load()) / 1e9
	return count, sum, buckets
}

// storageSizer is implemented by stores that can tell their disk usage
// (storage.Badger); other stores export no storage size.
type storageSizer interface {
	Size() (lsm, vlog int64)
}

// statsCollector exports the server's Stats and state gauges.
type statsCollector struct{ s *Server }

// metricDef is one metric family of the broker.
type metricDef struct {
	name   string // without the namespace
	help   string
	labels []string
}

func (d metricDef) desc() *prometheus.Desc {
	return prometheus.NewDesc(metricNamespace+"_"+d.name, d.help, d.labels, nil)
}

// Well-known metric families. Field names in statsMapped are exported
// through them instead of the generic per-field counters.
var (
	mConnCurrent = metricDef{"connections_current", "Clients connected now (past CONNACK).", nil}
	mConnTotal   = metricDef{"connections_total", "Network connections accepted, on every MQTT listener (TCP, TLS, WebSocket).", nil}
	mConnRefused = metricDef{"connections_refused_total", "Connections refused, by reason (a CONNACK reason code, bad-connect, or a limit's name).", []string{"reason"}}
	mMsgIn       = metricDef{"messages_received_total", "PUBLISH packets received from clients, by QoS.", []string{"qos"}}
	mMsgOut      = metricDef{"messages_sent_total", "PUBLISH packets sent to clients, by QoS.", []string{"qos"}}
	mPayloadIn   = metricDef{"payload_bytes_received_total", "Application payload bytes of PUBLISH packets received, by QoS.", []string{"qos"}}
	mPayloadOut  = metricDef{"payload_bytes_sent_total", "Application payload bytes of PUBLISH packets sent, by QoS.", []string{"qos"}}
	mBytesIn     = metricDef{"bytes_received_total", "Bytes read from client connections (all packets).", nil}
	mBytesOut    = metricDef{"bytes_sent_total", "Bytes written to client connections (all packets).", nil}
	mDropped     = metricDef{"messages_dropped_total", "Deliveries and messages the broker did not deliver, by reason.", []string{"reason"}}
	mDeadLetters = metricDef{"dead_letters_total", "Messages dead-lettered to $dlq/..., by source and reason.", []string{"source", "reason"}}
	mRetained    = metricDef{"retained_messages", "Retained messages held now (including $SYS).", nil}
	mSubs        = metricDef{"subscriptions", "Subscriptions in the topic tree now.", nil}
	mSessions    = metricDef{"sessions", "Sessions now, by state: online (a connection owns it) or offline (kept for a reconnect).", []string{"state"}}
	mQueued      = metricDef{"queued_messages", "QoS 1/2 deliveries queued in sessions, waiting for the inflight window (in memory and spilled to storage).", nil}
	mInflight    = metricDef{"inflight_messages", "QoS 1/2 deliveries sent and not yet acknowledged.", nil}
	mAppend      = metricDef{"log_append_duration_seconds", "Time to append a QoS 1/2 message to the log (durable in the configured mode) on the publish path.", nil}
	mStorageSize = metricDef{"storage_size_bytes", "Disk space of the store, by part: lsm (tables, write-ahead log, manifest) and vlog (value log).", []string{"part"}}
	mLogHead     = metricDef{"log_head_sequence", "Sequence number of the newest message in the log.", nil}
	mUptime      = metricDef{"uptime_seconds", "Seconds since the broker started.", nil}
	mBuildInfo   = metricDef{"build_info", "Always 1; the labels say which Beacon and Go versions run.", []string{"version", "goversion"}}
)

// droppedReasons maps the Dropped counters of Stats and session.Stats to
// the reason label of beacon_messages_dropped_total.
var droppedReasons = []struct {
	field  string // in Stats, or "Session." + field in session.Stats
	reason string
}{
	{"DroppedReserved", "reserved-topic"},
	{"DroppedDelayedInvalid", "delayed-invalid"},
	{"DroppedSlowQoS0", "slow-qos0"},
	{"DroppedNoRoute", "no-route"},
	{"DroppedQueueFull", "queue-full"},
	{"DroppedTopicLimit", "topic-limit"},
	{"DroppedNotAuthorized", "not-authorized"},
	{"PublishRateLimited", "rate-limited"},
	{"DeadLetterDropped", "dead-letter-lost"},
	{"Session.Expired", "expired"},
	{"Session.TooLarge", "too-large"},
	{"Session.Offline0", "offline-qos0"},
	{"Session.Missing", "missing-from-log"},
}

// statsMapped are the Stats fields exported by the well-known families
// (or deliberately not at all); every other field gets a generic metric.
var statsMapped = map[string]bool{
	"ClientsConnected": true, "ConnectionsTotal": true, "Refused": true,
	"ConnectsRefused":  true,                       // the sum of Refused
	"MessagesReceived": true, "MessagesSent": true, // sums of the by-QoS counters
	"PublishReceived": true, "PublishSent": true, "PayloadReceived": true, "PayloadSent": true,
	"BytesReceived": true, "BytesSent": true,
	"DeadLetters": true, "DeadLettered": true, // the latter is the sum of the former
	"AppendLatency": true,
	// Session.Overflow counts the same refusals as DroppedQueueFull.
	"Session.Overflow": true,
}

func init() {
	for _, d := range droppedReasons {
		statsMapped[d.field] = true
	}
}

// Describe sends nothing: the generic per-field families and the labels of
// labelled counters are only known at collection time, so the collector is
// "unchecked" (the registry then skips the consistency check at
// registration; names are still unique by construction).
func (c *statsCollector) Describe(chan<- *prometheus.Desc) {}

// Collect reads every counter and gauge.
func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	st := &s.stats
	counter := func(d metricDef, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d.desc(), prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d metricDef, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d.desc(), prometheus.GaugeValue, v, labels...)
	}

	gauge(mConnCurrent, float64(max(st.ClientsConnected.Load(), 0)))
	counter(mConnTotal, st.ConnectionsTotal.Load())
	st.Refused.Each(func(l []string, n uint64) {
		if len(l) == 1 {
			counter(mConnRefused, n, l[0])
		}
	})
	for q := range 3 {
		qs := strconv.Itoa(q)
		counter(mMsgIn, st.PublishReceived[q].Load(), qs)
		counter(mMsgOut, st.PublishSent[q].Load(), qs)
		counter(mPayloadIn, st.PayloadReceived[q].Load(), qs)
		counter(mPayloadOut, st.PayloadSent[q].Load(), qs)
	}
	counter(mBytesIn, st.BytesReceived.Load())
	counter(mBytesOut, st.BytesSent.Load())

	fields := statsFields(st)
	for _, d := range droppedReasons {
		if f := fields[d.field]; f != nil {
			counter(mDropped, f.Load(), d.reason)
		}
	}
	st.DeadLetters.Each(func(l []string, n uint64) {
		if len(l) == 2 {
			counter(mDeadLetters, n, l[0], l[1])
		}
	})

	gauge(mRetained, float64(s.retained.Len()))
	gauge(mSubs, float64(s.tree.Count()))
	online, offline, queued, inflight := s.sessionCounts()
	gauge(mSessions, float64(online), "online")
	gauge(mSessions, float64(offline), "offline")
	gauge(mQueued, float64(queued))
	gauge(mInflight, float64(inflight))

	n, sum, buckets := st.AppendLatency.snapshot()
	ch <- prometheus.MustNewConstHistogram(mAppend.desc(), n, sum, buckets)
	if sz, ok := s.store.(storageSizer); ok {
		lsm, vlog := sz.Size()
		gauge(mStorageSize, float64(lsm), "lsm")
		gauge(mStorageSize, float64(vlog), "vlog")
	}
	gauge(mLogHead, float64(s.store.Head()))
	if !s.started.IsZero() {
		gauge(mUptime, time.Since(s.started).Seconds())
	}
	gauge(mBuildInfo, 1, Version, runtime.Version())

	// Every other counter of Stats, under its field name.
	names := make([]string, 0, len(fields))
	for name := range fields {
		if !statsMapped[name] {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		f := fields[name]
		d := metricDef{name: genericMetricName(name),
			help: "Stats." + name + " (see docs/operations.md)."}
		counter(d, f.Load())
	}
	for name, g := range statsGauges(st) {
		if statsMapped[name] {
			continue
		}
		d := metricDef{name: snakeCase(name) + "_current", help: "Stats." + name + " (see docs/operations.md)."}
		gauge(d, float64(g.Load()))
	}
}

// sessionCounts counts the sessions by state and their queued and inflight
// deliveries. The session table is copied under Server.mu and each
// session's counts read after it is released (LOCKS.md: Session.mu is
// never needed with Server.mu here).
func (s *Server) sessionCounts() (online, offline, queued, inflight int) {
	s.mu.Lock()
	sessions := make([]*session.Session, 0, len(s.sessions))
	for _, e := range s.sessions {
		if e.cl != nil {
			online++
		} else {
			offline++
		}
		if e.sess != nil {
			sessions = append(sessions, e.sess)
		}
	}
	s.mu.Unlock()
	for _, sess := range sessions {
		in, q := sess.Counts()
		inflight += in
		queued += q
	}
	return online, offline, queued, inflight
}

// statsFields returns the atomic.Uint64 counters of st and of st.Session
// ("Session." + name) by field name.
func statsFields(st *Stats) map[string]*atomic.Uint64 {
	out := map[string]*atomic.Uint64{}
	collect := func(prefix string, v reflect.Value) {
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			if p, ok := v.Field(i).Addr().Interface().(*atomic.Uint64); ok {
				out[prefix+f.Name] = p
			}
		}
	}
	collect("", reflect.ValueOf(st).Elem())
	collect("Session.", reflect.ValueOf(&st.Session).Elem())
	return out
}

// statsGauges returns the atomic.Int64 fields of st (values that go up and
// down) by field name.
func statsGauges(st *Stats) map[string]*atomic.Int64 {
	out := map[string]*atomic.Int64{}
	v := reflect.ValueOf(st).Elem()
	t := v.Type()
	for i := range t.NumField() {
		if f := t.Field(i); f.IsExported() {
			if p, ok := v.Field(i).Addr().Interface().(*atomic.Int64); ok {
				out[f.Name] = p
			}
		}
	}
	return out
}

// genericMetricName turns a Stats field name into a metric name without
// the namespace: "KeepAliveTimeouts" -> "keep_alive_timeouts_total",
// "Session.StoreError" -> "session_store_error_total", "DroppedSlowQoS0"
// -> "dropped_slow_qos0_total".
func genericMetricName(field string) string { return snakeCase(field) + "_total" }

func snakeCase(field string) string {
	field = strings.ReplaceAll(field, ".", "")
	field = strings.ReplaceAll(field, "QoS", "Qos")
	var b strings.Builder
	rs := []rune(field)
	for i, r := range rs {
		if unicode.IsUpper(r) && i > 0 {
			prevLower := unicode.IsLower(rs[i-1]) || unicode.IsDigit(rs[i-1])
			acronymEnd := unicode.IsUpper(rs[i-1]) && i+1 < len(rs) && unicode.IsLower(rs[i+1])
			if prevLower || acronymEnd {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}
