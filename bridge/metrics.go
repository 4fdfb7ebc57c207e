package bridge

import "github.com/prometheus/client_golang/prometheus"

// Per-bridge metrics, read from the bridges' counters at scrape time.
var (
	descDelivered = prometheus.NewDesc("beacon_bridge_delivered_total",
		"Messages the bridge's sink accepted (first deliveries, not replays).", []string{"bridge"}, nil)
	descRetried = prometheus.NewDesc("beacon_bridge_retried_total",
		"Delivery attempts that failed and were retried.", []string{"bridge"}, nil)
	descReplayed = prometheus.NewDesc("beacon_bridge_replayed_total",
		"Dead letters the bridge's sink accepted on replay.", []string{"bridge"}, nil)
	descDeadLettered = prometheus.NewDesc("beacon_bridge_dead_lettered_total",
		"Messages the bridge put on $dlq/{bridge}/…, by reason (sink-failed, sink-rejected, expired).", []string{"bridge", "reason"}, nil)
	descLag = prometheus.NewDesc("beacon_bridge_lag_messages",
		"Log head minus the bridge's cursor: sequence numbers not yet known to be done.", []string{"bridge"}, nil)
	descCursor = prometheus.NewDesc("beacon_bridge_cursor",
		"The bridge's cursor: every message at or below it is delivered or dead-lettered.", []string{"bridge"}, nil)
	descInFlight = prometheus.NewDesc("beacon_bridge_in_flight_messages",
		"Messages read from the log and not yet delivered or dead-lettered.", []string{"bridge"}, nil)
	descSinkUp = prometheus.NewDesc("beacon_bridge_sink_up",
		"1 while the bridge's sink works, 0 after a failed attempt until it works again.", []string{"bridge"}, nil)
)

// collector exposes the Manager's bridges to Prometheus.
type collector struct{ m *Manager }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDelivered, descRetried, descReplayed, descDeadLettered, descLag, descCursor, descInFlight, descSinkUp} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.m.Statuses() {
		if st.Direction != "out" {
			continue
		}
		n := st.Name
		ch <- prometheus.MustNewConstMetric(descDelivered, prometheus.CounterValue, float64(st.Delivered), n)
		ch <- prometheus.MustNewConstMetric(descRetried, prometheus.CounterValue, float64(st.Retried), n)
		ch <- prometheus.MustNewConstMetric(descReplayed, prometheus.CounterValue, float64(st.Replayed), n)
		for _, reason := range []string{ReasonSinkFailed, ReasonSinkRejected, ReasonExpired} {
			ch <- prometheus.MustNewConstMetric(descDeadLettered, prometheus.CounterValue, float64(st.DeadLettered[reason]), n, reason)
		}
		ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(st.Lag), n)
		ch <- prometheus.MustNewConstMetric(descCursor, prometheus.GaugeValue, float64(st.Cursor), n)
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(st.InFlight), n)
		up := 0.0
		if st.SinkUp {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descSinkUp, prometheus.GaugeValue, up, n)
	}
}
