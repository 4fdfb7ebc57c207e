package mqtt

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/storage"
)

// retentionProps returns p's user properties as a map.
func retentionProps(p *packets.Publish) map[string]string {
	m := map[string]string{}
	for _, u := range p.Properties.User {
		m[u.Key] = u.Value
	}
	return m
}

// checkRetentionDeadLetter checks one dead letter of retention: topic,
// payload and the dlq-* properties.
func checkRetentionDeadLetter(t *testing.T, d *packets.Publish, source, topic, payload, client string) {
	t.Helper()
	props := retentionProps(d)
	if d.Topic != "$dlq/"+source+"/"+topic || string(d.Payload) != payload {
		t.Errorf("dead letter %s %q, want $dlq/%s/%s %q", d.Topic, d.Payload, source, topic, payload)
	}
	want := map[string]string{"dlq-reason": "retention", "dlq-source": source, "dlq-original-topic": topic, "dlq-attempts": "1"}
	if client != "" {
		want["dlq-client"] = client
	}
	for k, v := range want {
		if props[k] != v {
			t.Errorf("dead letter of %q: %s = %q, want %q (all: %v)", payload, k, props[k], v, props)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, props["dlq-first-failure"]); err != nil {
		t.Errorf("dlq-first-failure %q: %v", props["dlq-first-failure"], err)
	}
	if !strings.Contains(props["dlq-last-error"], "retention") {
		t.Errorf("dlq-last-error %q does not say retention", props["dlq-last-error"])
	}
}

// Retention by size removes the oldest entries beyond LogRetentionBytes
// even though an offline session still has them queued: each such
// delivery is dead-lettered on $dlq/broker/{topic} and taken out of the
// session, which then gets only the messages retention kept.
func TestRetentionBySizeDeadLettersQueued(t *testing.T) {
	st := storage.NewMemory()
	s := startServer(t, func(o *Options) {
		o.Store = st
		o.LogGCInterval = time.Hour // collections below are explicit
		o.LogRetentionBytes = 21    // three messages of 7 bytes (topic + payload)
	})
	off := dial(t, s, packets.V311)
	off.connect("offline", false, nil)
	off.subscribe(1, packets.Subscription{Filter: "ret/#", QoS: 1})
	off.disconnect()
	eventually(t, testTimeout, func() error {
		if n := s.stats.ClientsConnected.Load(); n != 0 {
			return fmt.Errorf("%d still connected", n)
		}
		return nil
	})
	dlq := dial(t, s, packets.V5)
	dlq.connect("dlq-reader", true, nil)
	dlq.subscribe(1, packets.Subscription{Filter: "$dlq/#", QoS: 1})
	pub := dial(t, s, packets.V5)
	pub.connect("pub", true, nil)
	for i := 1; i <= 5; i++ {
		pub.publish("ret/a", fmt.Sprintf("m%d", i), 1, false, uint16(i))
	}

	if _, err := s.CollectLog(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"m1", "m2"} {
		checkRetentionDeadLetter(t, dlq.recvPublish(true), "broker", "ret/a", want, "offline")
	}
	if got := s.stats.RetentionRemoved.Load(); got != 2 {
		t.Errorf("RetentionRemoved = %d, want 2", got)
	}
	if got := s.stats.RetentionDeadLettered.Load(); got != 2 {
		t.Errorf("RetentionDeadLettered = %d, want 2", got)
	}
	var byLabel uint64
	s.stats.DeadLetters.Each(func(l []string, n uint64) {
		if strings.Join(l, ",") == "broker,retention" {
			byLabel = n
		}
	})
	if got := byLabel; got != 2 {
		t.Errorf("dead letters by (broker, retention) = %d, want 2", got)
	}
	if n, _ := st.CountPending("offline"); n != 3 {
		t.Errorf("offline session has %d pending entries, want 3", n)
	}

	off = dial(t, s, packets.V311)
	off.connect("offline", false, nil)
	var got []*packets.Publish
	for range 3 {
		got = append(got, off.recvPublish(true))
	}
	if p := payloads(got); p != "m3,m4,m5" {
		t.Fatalf("offline session got %s after retention, want m3,m4,m5", p)
	}
	off.expectNothing(100 * time.Millisecond)
}

// Retention by age removes entries a log reader (HoldLog, a bridge) has not
// read yet: each is dead-lettered on $dlq/{reader}/{topic}, so the reader
// finds a gap on the log and its dead letters say what was there. The
// current retained message stays.
func TestRetentionByAgeDeadLettersForReaders(t *testing.T) {
	st := storage.NewMemory()
	s := startServer(t, func(o *Options) {
		o.Store = st
		o.LogGCInterval = time.Hour
		o.LogRetention = 50 * time.Millisecond
	})
	s.HoldLog("bridge1", func() uint64 { return 1 }) // has read nothing
	dlq := dial(t, s, packets.V5)
	dlq.connect("dlq-reader", true, nil)
	dlq.subscribe(1, packets.Subscription{Filter: "$dlq/#", QoS: 1})
	pub := dial(t, s, packets.V5)
	pub.connect("pub", true, nil)
	pub.publish("age/r", "state", 1, true, 1) // retained: kept
	pub.publish("age/x", "old1", 1, false, 2)
	pub.publish("age/x", "old2", 1, false, 3)
	retSeq := st.Head() - 2

	// Collect until the entries are old enough and gone.
	eventually(t, testTimeout, func() error {
		if _, err := s.CollectLog(); err != nil {
			return err
		}
		if n := s.stats.RetentionReaderGaps.Load(); n != 2 {
			return fmt.Errorf("%d reader gaps dead-lettered", n)
		}
		return nil
	})
	for _, want := range []string{"old1", "old2"} {
		checkRetentionDeadLetter(t, dlq.recvPublish(true), "bridge1", "age/x", want, "")
	}
	if _, err := st.Get(retSeq); err != nil {
		t.Errorf("retained message's entry removed by retention: %v", err)
	}
	for _, m := range logMessages(t, st) {
		if m.Topic == "age/x" {
			t.Errorf("entry %d (%q) still on the log", m.Seq, m.Payload)
		}
	}
	if got := s.stats.RetentionRemoved.Load(); got < 2 {
		t.Errorf("RetentionRemoved = %d, want at least 2", got)
	}
}

func logMessages(t *testing.T, st storage.Store) []*storage.Message {
	t.Helper()
	var ms []*storage.Message
	if err := st.Scan(0, func(m *storage.Message) bool { ms = append(ms, m); return true }); err != nil {
		t.Fatal(err)
	}
	return ms
}

// Retention needs log collection: Validate says so, naming the fields.
func TestRetentionOptionsValidate(t *testing.T) {
	o := DefaultOptions()
	o.LogRetention = time.Hour
	o.LogGCInterval = 0
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "LogRetention") || !strings.Contains(err.Error(), "LogGCInterval") {
		t.Fatalf("Validate = %v", err)
	}
	o = DefaultOptions()
	o.LogRetentionBytes = -1
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "LogRetentionBytes") {
		t.Fatalf("Validate = %v", err)
	}
}
