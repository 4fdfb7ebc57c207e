package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// benchReport is the outcome of one run, printed as a table or as JSON.
type benchReport struct {
	Scenario    string  `json:"scenario"`
	Addr        string  `json:"addr"`
	Version     string  `json:"version"`
	QoS         int     `json:"qos"`
	Size        int     `json:"size"`
	Inflight    int     `json:"inflight"`
	Publishers  int     `json:"publishers,omitempty"`
	Subscribers int     `json:"subscribers,omitempty"`
	TargetRate  float64 `json:"target_rate,omitempty"`

	// Seconds is the publish phase: from the first PUBLISH to the last
	// acknowledgement (QoS 1/2) or the last write (QoS 0).
	Seconds     float64 `json:"seconds"`
	Sent        uint64  `json:"sent"`
	PublishRate float64 `json:"publish_rate"` // messages/s accepted by the broker
	// Received counts first arrivals over all subscribers; ReceiveRate
	// divides it by the time from the first PUBLISH to the last arrival.
	Received    uint64  `json:"received"`
	ReceiveRate float64 `json:"receive_rate"`
	ReceiveMBps float64 `json:"receive_mbps"` // payload megabytes (10^6) per second

	Latency *latencyReport `json:"latency_ms,omitempty"`
	Check   *checkResult   `json:"check,omitempty"`
	// LossIsError is false at QoS 0, whose delivery is at most once.
	LossIsError bool `json:"loss_is_error"`

	Conns   *connsReport   `json:"conns,omitempty"`
	Backlog *backlogReport `json:"backlog,omitempty"`

	// Incomplete is set when --time-limit or a signal cut the run short.
	Incomplete bool     `json:"incomplete,omitempty"`
	Errors     []string `json:"errors,omitempty"`
	Notes      []string `json:"notes,omitempty"`
	OK         bool     `json:"ok"`
}

// latencyReport holds publish-to-delivery latencies in milliseconds.
type latencyReport struct {
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	N    uint64  `json:"samples"`
}

func latencyFrom(h *histogram) *latencyReport {
	if h.n == 0 {
		return nil
	}
	ms := func(ns int64) float64 { return float64(ns) / 1e6 }
	return &latencyReport{P50: ms(h.quantile(0.5)), P99: ms(h.quantile(0.99)), P999: ms(h.quantile(0.999)), Max: ms(h.max), N: h.n}
}

// connsReport is the outcome of the conns scenario.
type connsReport struct {
	Requested   int     `json:"requested"`
	Connected   int     `json:"connected"`
	Alive       int     `json:"alive_at_end"`
	ConnectSecs float64 `json:"connect_seconds"`
	ConnectRate float64 `json:"connect_rate"` // connections/s
	RSSBefore   int64   `json:"rss_before_bytes,omitempty"`
	RSSAfter    int64   `json:"rss_after_bytes,omitempty"`
	// BytesPerConn is (RSSAfter-RSSBefore)/Connected.
	BytesPerConn float64 `json:"rss_per_conn_bytes,omitempty"`
	FirstError   string  `json:"first_error,omitempty"`
}

// backlogReport is the outcome of the backlog scenario.
type backlogReport struct {
	Messages       uint64  `json:"messages"`
	PublishSecs    float64 `json:"publish_seconds"`
	PublishRate    float64 `json:"publish_rate"`
	SessionPresent bool    `json:"session_present"`
	DrainSecs      float64 `json:"drain_seconds"`
	DrainRate      float64 `json:"drain_rate"`
	RSSBefore      int64   `json:"rss_before_bytes,omitempty"`
	RSSPeakPublish int64   `json:"rss_peak_publish_bytes,omitempty"`
	RSSPeakDrain   int64   `json:"rss_peak_drain_bytes,omitempty"`
	RSSAfter       int64   `json:"rss_after_bytes,omitempty"`
	DiskBefore     int64   `json:"disk_before_bytes,omitempty"`
	DiskPublished  int64   `json:"disk_after_publish_bytes,omitempty"`
	DiskDrained    int64   `json:"disk_after_drain_bytes,omitempty"`
	DiskLater      int64   `json:"disk_after_gc_wait_bytes,omitempty"`
	GCWaitSecs     float64 `json:"gc_wait_seconds,omitempty"`
}

// judge sets OK: no client failure, and at QoS >= 1 no loss and no
// reordering (MQTT 5.0 §4.6), and at QoS 2 no duplicate (exactly once).
func (r *benchReport) judge() {
	r.LossIsError = r.QoS >= 1
	ok := len(r.Errors) == 0
	if c := r.Check; c != nil {
		if r.QoS >= 1 && (c.Lost > 0 || c.Reordered > 0) {
			ok = false
		}
		if r.QoS == 2 && c.Duplicates > 0 {
			ok = false
		}
		if c.Invalid > 0 {
			ok = false
		}
		if r.QoS == 0 && (c.Lost > 0 || c.Reordered > 0) {
			r.Notes = append(r.Notes, "QoS 0 is at most once: loss and reordering are reported, not treated as errors")
		}
	}
	if cr := r.Conns; cr != nil && cr.Connected < cr.Requested {
		ok = false
	}
	if cr := r.Conns; cr != nil && cr.Alive < cr.Connected {
		ok = false
	}
	r.OK = ok
}

// writeTable prints the report for people.
func (r *benchReport) writeTable(w io.Writer) {
	fmt.Fprintf(w, "beacon bench %s — %s, MQTT %s", r.Scenario, r.Addr, r.Version)
	if r.Scenario != "conns" {
		fmt.Fprintf(w, ", QoS %d, %d B payload, in-flight %d", r.QoS, r.Size, r.Inflight)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "  %s\t"+format+"\n", append([]any{k}, a...)...) }
	if r.Publishers > 0 || r.Subscribers > 0 {
		row("publishers / subscribers", "%d / %d", r.Publishers, r.Subscribers)
	}
	if r.TargetRate > 0 {
		row("target rate", "%s msg/s", human(r.TargetRate))
	}
	if r.Sent > 0 || r.Scenario != "conns" {
		row("publish", "%s msg in %.2f s = %s msg/s", human(float64(r.Sent)), r.Seconds, human(r.PublishRate))
		row("receive", "%s msg = %s msg/s, %.1f MB/s", human(float64(r.Received)), human(r.ReceiveRate), r.ReceiveMBps)
	}
	if l := r.Latency; l != nil {
		row("latency p50 / p99 / p999", "%s / %s / %s ms (max %s ms, %s samples)", ms(l.P50), ms(l.P99), ms(l.P999), ms(l.Max), human(float64(l.N)))
	}
	if c := r.Check; c != nil {
		row("expected / received", "%d / %d", c.Expected, c.Received)
		lost := fmt.Sprint(c.Lost)
		if c.Lost > 0 {
			lost += " (first: " + strings.Join(c.FirstMissed, " ") + ")"
		}
		row("lost", "%s", lost)
		row("reordered", "%d", c.Reordered)
		row("duplicates", "%d", c.Duplicates)
		if c.Invalid > 0 {
			row("invalid payloads", "%d", c.Invalid)
		}
	}
	if b := r.Backlog; b != nil {
		row("backlog publish", "%d msg in %.2f s = %s msg/s", b.Messages, b.PublishSecs, human(b.PublishRate))
		row("backlog drain", "%.2f s = %s msg/s (session present: %v)", b.DrainSecs, human(b.DrainRate), b.SessionPresent)
		if b.RSSPeakPublish > 0 {
			row("broker RSS before / peak publish / peak drain / after", "%s / %s / %s / %s", mib(b.RSSBefore), mib(b.RSSPeakPublish), mib(b.RSSPeakDrain), mib(b.RSSAfter))
		}
		if b.DiskBefore > 0 || b.DiskPublished > 0 {
			row("data dir before / after publish / after drain", "%s / %s / %s", mib(b.DiskBefore), mib(b.DiskPublished), mib(b.DiskDrained))
			if b.GCWaitSecs > 0 {
				row("data dir after gc wait", "%s (%.0f s later)", mib(b.DiskLater), b.GCWaitSecs)
			}
		}
	}
	if c := r.Conns; c != nil {
		row("connected / requested", "%d / %d", c.Connected, c.Requested)
		row("connect rate", "%s conn/s (%.2f s)", human(c.ConnectRate), c.ConnectSecs)
		row("alive at end", "%d", c.Alive)
		if c.RSSAfter > 0 {
			row("broker RSS before / after", "%s / %s", mib(c.RSSBefore), mib(c.RSSAfter))
			row("broker RSS per connection", "%.2f KiB", c.BytesPerConn/1024)
		}
		if c.FirstError != "" {
			row("first error", "%s", c.FirstError)
		}
	}
	for _, e := range r.Errors {
		row("error", "%s", e)
	}
	for _, n := range r.Notes {
		row("note", "%s", n)
	}
	result := "OK"
	if !r.OK {
		result = "FAILED"
	}
	row("result", "%s", result)
	tw.Flush()
}

// human prints a count with k/M suffixes.
func human(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func ms(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.3f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
