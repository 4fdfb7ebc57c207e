package mqtt

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func sysMap(msgs []sysMessage) map[string]string {
	m := make(map[string]string, len(msgs))
	for _, x := range msgs {
		m[x.Topic] = string(x.Payload)
	}
	return m
}

func TestSysMessagesNamesAndFormats(t *testing.T) {
	var s sysStats
	s.clientConnected()
	s.clientConnected()
	s.clientConnected()
	s.clientDisconnected()
	s.messagesReceived.Add(10)
	s.messagesSent.Add(12)
	s.publishReceived.Add(4)
	s.publishSent.Add(6)
	s.publishDropped.Add(1)
	s.bytesReceived.Add(1000)
	s.bytesSent.Add(2000)
	s.clientsTotal = func() int64 { return 5 } // 2 connected + 3 offline sessions
	s.subscriptionsCount = func() int64 { return 7 }
	s.retainedCount = func() int64 { return 3 }
	s.storeMessagesCount = func() int64 { return 9 }
	s.storeMessagesBytes = func() int64 { return 512 }
	s.inflight = func() int64 { return 2 }

	started := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := sysMap(s.messages(started.Add(90*time.Second+400*time.Millisecond), started, "0.1.0"))
	want := map[string]string{
		"$SYS/broker/version":                     "beacon version 0.1.0",
		"$SYS/broker/uptime":                      "90 seconds",
		"$SYS/broker/clients/connected":           "2",
		"$SYS/broker/clients/total":               "5",
		"$SYS/broker/clients/maximum":             "3",
		"$SYS/broker/clients/disconnected":        "3",
		"$SYS/broker/clients/expired":             "0",
		"$SYS/broker/messages/received":           "10",
		"$SYS/broker/messages/sent":               "12",
		"$SYS/broker/messages/inflight":           "2",
		"$SYS/broker/publish/messages/received":   "4",
		"$SYS/broker/publish/messages/sent":       "6",
		"$SYS/broker/publish/messages/dropped":    "1",
		"$SYS/broker/bytes/received":              "1000",
		"$SYS/broker/bytes/sent":                  "2000",
		"$SYS/broker/subscriptions/count":         "7",
		"$SYS/broker/retained messages/count":     "3",
		"$SYS/broker/store/messages/count":        "9",
		"$SYS/broker/store/messages/bytes":        "512",
		"$SYS/broker/load/messages/received/1min": "0.00",
		"$SYS/broker/load/bytes/sent/15min":       "0.00",
		"$SYS/broker/load/connections/5min":       "0.00",
		"$SYS/broker/load/sockets/1min":           "0.00",
		"$SYS/broker/load/publish/dropped/1min":   "0.00",
	}
	for topic, v := range want {
		if got, ok := m[topic]; !ok {
			t.Errorf("missing %s", topic)
		} else if got != v {
			t.Errorf("%s = %q, want %q", topic, got, v)
		}
	}
	for topic := range m {
		if !strings.HasPrefix(topic, "$SYS/broker/") {
			t.Errorf("topic %q outside $SYS/broker/", topic)
		}
	}
	// 9 counters × 3 windows of load averages.
	loads := 0
	for topic := range m {
		if strings.HasPrefix(topic, "$SYS/broker/load/") {
			loads++
		}
	}
	if loads != 27 {
		t.Errorf("%d load topics, want 27", loads)
	}
}

func TestSysOptionalCallbacks(t *testing.T) {
	var s sysStats
	s.clientConnected()
	m := sysMap(s.messages(time.Now(), time.Now(), "x"))
	for _, topic := range []string{"subscriptions/count", "retained messages/count", "store/messages/count", "store/messages/bytes", "messages/inflight"} {
		if _, ok := m[sysPrefix+topic]; ok {
			t.Errorf("%s published without its callback", topic)
		}
	}
	// Without a total callback, total is the connected count.
	if m[sysPrefix+"clients/total"] != "1" || m[sysPrefix+"clients/disconnected"] != "0" {
		t.Errorf("total %q disconnected %q, want 1 and 0", m[sysPrefix+"clients/total"], m[sysPrefix+"clients/disconnected"])
	}
	// A callback lagging behind connected never yields a negative count.
	s.clientsTotal = func() int64 { return 0 }
	m = sysMap(s.messages(time.Now(), time.Now(), "x"))
	if m[sysPrefix+"clients/disconnected"] != "0" {
		t.Errorf("disconnected = %q, want 0", m[sysPrefix+"clients/disconnected"])
	}
	// Clock before start: uptime 0, not negative.
	now := time.Now()
	m = sysMap(s.messages(now, now.Add(time.Second), "x"))
	if m[sysPrefix+"uptime"] != "0 seconds" {
		t.Errorf("uptime = %q", m[sysPrefix+"uptime"])
	}
}

func TestSysClientsMaximumConcurrent(t *testing.T) {
	var s sysStats
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() { defer wg.Done(); s.clientConnected() }()
	}
	wg.Wait()
	for range 50 {
		s.clientDisconnected()
	}
	s.clientConnected()
	if c, m := s.clientsConnected.Load(), s.clientsMaximum.Load(); c != 1 || m != 50 {
		t.Errorf("connected %d maximum %d, want 1 and 50", c, m)
	}
}

func TestSysLoadAverages(t *testing.T) {
	var s sysStats
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.messages(t0, t0, "x") // first sample
	// A steady 600 publishes per minute, sampled every 10 s for two hours:
	// every average converges to 600.
	now := t0
	var m map[string]string
	for range 720 {
		s.publishReceived.Add(100)
		now = now.Add(10 * time.Second)
		m = sysMap(s.messages(now, t0, "x"))
	}
	for _, w := range []string{"1min", "5min", "15min"} {
		v, err := strconv.ParseFloat(m[sysPrefix+"load/publish/received/"+w], 64)
		if err != nil || v < 599 || v > 601 {
			t.Errorf("publish/received/%s = %q, want about 600.00", w, m[sysPrefix+"load/publish/received/"+w])
		}
	}
	// Traffic stops: the 1 minute average falls faster than the 15 minute one.
	for range 6 {
		now = now.Add(10 * time.Second)
		m = sysMap(s.messages(now, t0, "x"))
	}
	one, _ := strconv.ParseFloat(m[sysPrefix+"load/publish/received/1min"], 64)
	fifteen, _ := strconv.ParseFloat(m[sysPrefix+"load/publish/received/15min"], 64)
	if !(one < fifteen && one < 600*0.5 && fifteen > 600*0.9) {
		t.Errorf("after a quiet minute: 1min %.2f, 15min %.2f", one, fifteen)
	}
	// Same instant again: no update, no division by zero.
	again := sysMap(s.messages(now, t0, "x"))
	if again[sysPrefix+"load/publish/received/1min"] != m[sysPrefix+"load/publish/received/1min"] {
		t.Error("a second call at the same instant changed the averages")
	}
}

func TestSysChangesFilter(t *testing.T) {
	var s sysStats
	c := sysChanges{}
	t0 := time.Now()
	first := c.filter(s.messages(t0, t0, "x"))
	if len(first) == 0 {
		t.Fatal("first filter returned nothing")
	}
	// Same second, nothing counted: nothing changed.
	if again := c.filter(s.messages(t0, t0, "x")); len(again) != 0 {
		t.Errorf("unchanged values republished: %v", sysMap(again))
	}
	s.bytesSent.Add(5)
	changed := sysMap(c.filter(s.messages(t0, t0, "x")))
	if len(changed) != 1 || changed[sysPrefix+"bytes/sent"] != "5" {
		t.Errorf("changed = %v, want only bytes/sent = 5", changed)
	}
}
