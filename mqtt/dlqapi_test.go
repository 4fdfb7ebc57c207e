package mqtt

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/storage"
)

// dlqCall makes one admin API request and decodes the JSON answer into
// out (when not nil); it returns the status code.
func dlqCall(t *testing.T, s *Server, method, path string, q url.Values, out any) int {
	t.Helper()
	u := "http://" + s.HTTPAddr() + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	cl := &http.Client{Timeout: testTimeout}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusOK && out != nil {
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("%s %s: decoding %s: %v", method, u, body, err)
		}
	}
	if resp.StatusCode >= 400 && resp.StatusCode != http.StatusMethodNotAllowed {
		var e struct{ Error string }
		if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
			t.Errorf("%s %s: error answer %q is not {\"error\": ...}", method, u, body)
		}
	}
	return resp.StatusCode
}

func listTopics(l DLQList) string {
	var ts []string
	for _, e := range l.Items {
		ts = append(ts, e.Source+":"+e.OriginalTopic)
	}
	return strings.Join(ts, ",")
}

// The admin API lists with every filter and pages, replays (refusing a
// source without replayer) and purges.
func TestDLQAPI(t *testing.T) {
	s := startServer(t, func(o *Options) { o.HTTPAddr = "127.0.0.1:0" })
	for _, d := range []struct{ source, topic string }{
		{"broker", "a/1"}, {"broker", "a/2"}, {"wh", "orders/1"}, {"broker", "b/1"},
	} {
		m := &storage.Message{Topic: d.topic, Payload: []byte("payload of " + d.topic), QoS: 1, Properties: origProps()}
		if err := s.DeadLetter(m, DeadLetter{Source: d.source, Reason: ReasonNack, LastError: "nope", Client: "c1"}); err != nil {
			t.Fatal(err)
		}
	}
	after := time.Now().Add(time.Second).UTC().Format(time.RFC3339)
	before := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)

	var all DLQList
	if code := dlqCall(t, s, "GET", "/api/v1/dlq", nil, &all); code != 200 {
		t.Fatalf("list: %d", code)
	}
	if got := listTopics(all); got != "broker:a/1,broker:a/2,wh:orders/1,broker:b/1" || all.NextAfter != 0 {
		t.Fatalf("list = %s (next %d)", got, all.NextAfter)
	}
	e := all.Items[2]
	if e.Topic != "$dlq/wh/orders/1" || string(e.Payload) != "payload of orders/1" || e.PayloadSize != len(e.Payload) ||
		e.Reason != ReasonNack || e.Attempts != 1 || e.LastError != "nope" || e.Client != "c1" || e.QoS != 1 ||
		e.ContentType != "application/json" || len(e.UserProperties) != 2 || e.UserProperties[0].Key != "order" ||
		e.FirstFailure.IsZero() || e.DeadLetteredAt.IsZero() || e.Missing {
		t.Fatalf("entry %+v", e)
	}

	for _, c := range []struct {
		q    url.Values
		want string
	}{
		{url.Values{"source": {"wh"}}, "wh:orders/1"},
		{url.Values{"topic": {"a/+"}}, "broker:a/1,broker:a/2"},
		{url.Values{"topic": {"#"}, "source": {"broker"}}, "broker:a/1,broker:a/2,broker:b/1"},
		{url.Values{"reason": {"expired"}}, ""},
		{url.Values{"since": {after}}, ""},
		{url.Values{"until": {after}, "since": {before}}, "broker:a/1,broker:a/2,wh:orders/1,broker:b/1"},
		{url.Values{"until": {before}}, ""},
	} {
		var l DLQList
		if code := dlqCall(t, s, "GET", "/api/v1/dlq", c.q, &l); code != 200 {
			t.Fatalf("list %v: %d", c.q, code)
		}
		if got := listTopics(l); got != c.want {
			t.Errorf("list %v = %q, want %q", c.q, got, c.want)
		}
	}

	// Paging: limit and after, next_after says where to go on.
	var p1, p2 DLQList
	dlqCall(t, s, "GET", "/api/v1/dlq", url.Values{"limit": {"3"}}, &p1)
	if len(p1.Items) != 3 || p1.NextAfter != p1.Items[2].Seq {
		t.Fatalf("page 1: %s next %d", listTopics(p1), p1.NextAfter)
	}
	dlqCall(t, s, "GET", "/api/v1/dlq", url.Values{"limit": {"3"}, "after": {fmt.Sprint(p1.NextAfter)}}, &p2)
	if listTopics(p2) != "broker:b/1" || p2.NextAfter != 0 {
		t.Fatalf("page 2: %s next %d", listTopics(p2), p2.NextAfter)
	}

	for _, q := range []url.Values{
		{"since": {"yesterday"}}, {"until": {"2026-13-01"}}, {"topic": {"a/#/b"}}, {"limit": {"-1"}},
		{"after": {"x"}}, {"source": {"a/b"}},
	} {
		if code := dlqCall(t, s, "GET", "/api/v1/dlq", q, nil); code != http.StatusBadRequest {
			t.Errorf("list %v: %d, want 400", q, code)
		}
	}
	if code := dlqCall(t, s, "GET", "/api/v1/dlq/replay", nil, nil); code != http.StatusMethodNotAllowed {
		t.Errorf("GET replay: %d, want 405", code)
	}

	// Replay without a source filter includes wh, which has no replayer:
	// refused, nothing replayed.
	if code := dlqCall(t, s, "POST", "/api/v1/dlq/replay", nil, nil); code != http.StatusConflict {
		t.Fatalf("replay with a source without replayer: %d, want 409", code)
	}
	if n := len(indexed(t, s)); n != 4 {
		t.Fatalf("refused replay changed the index: %d", n)
	}

	sub := dial(t, s, packets.V5)
	sub.connect("sub", true, nil)
	sub.subscribe(1, packets.Subscription{Filter: "a/#", QoS: 1})
	var res DLQReplayResult
	if code := dlqCall(t, s, "POST", "/api/v1/dlq/replay", url.Values{"source": {"broker"}, "topic": {"a/+"}}, &res); code != 200 {
		t.Fatalf("replay: %d", code)
	}
	if res.Replayed != 2 || res.Failed != 0 || res.Skipped != 0 {
		t.Fatalf("replay result %+v", res)
	}
	if got := payloads([]*packets.Publish{sub.recvPublish(true), sub.recvPublish(true)}); got != "payload of a/1,payload of a/2" {
		t.Fatalf("replayed %s", got)
	}

	var got []string
	s.SetDeadLetterReplayer("wh", func(m *storage.Message, dl DeadLetter) error {
		got = append(got, m.Topic)
		return nil
	})
	res = DLQReplayResult{}
	if code := dlqCall(t, s, "POST", "/api/v1/dlq/replay", url.Values{"source": {"wh"}}, &res); code != 200 || res.Replayed != 1 {
		t.Fatalf("replay wh: %d %+v", code, res)
	}
	if len(got) != 1 || got[0] != "orders/1" {
		t.Fatalf("wh replayer got %v", got)
	}

	s.SetDeadLetterReplayer("wh", func(*storage.Message, DeadLetter) error { return errors.New("down") })
	if err := s.DeadLetter(&storage.Message{Topic: "orders/2", QoS: 1}, DeadLetter{Source: "wh", Reason: ReasonSinkFailed}); err != nil {
		t.Fatal(err)
	}
	res = DLQReplayResult{}
	if code := dlqCall(t, s, "POST", "/api/v1/dlq/replay", url.Values{"source": {"wh"}}, &res); code != 200 || res.Failed != 1 || len(res.Errors) != 1 || !strings.Contains(res.Errors[0], "down") {
		t.Fatalf("failing replay: %d %+v", code, res)
	}

	var pr DLQPurgeResult
	if code := dlqCall(t, s, "POST", "/api/v1/dlq/purge", url.Values{"source": {"broker"}}, &pr); code != 200 || pr.Purged != 1 {
		t.Fatalf("purge: %d %+v", code, pr)
	}
	if code := dlqCall(t, s, "POST", "/api/v1/dlq/purge", url.Values{"topic": {"orders/#"}}, &pr); code != 200 || pr.Purged != 1 {
		t.Fatalf("purge wh: %d %+v", code, pr)
	}
	var empty DLQList
	dlqCall(t, s, "GET", "/api/v1/dlq", nil, &empty)
	if len(empty.Items) != 0 || empty.Items == nil {
		t.Fatalf("after purge: %+v (want an empty list, not null)", empty)
	}
	if s.stats.DeadLettersPurged.Load() != 2 {
		t.Errorf("DeadLettersPurged = %d", s.stats.DeadLettersPurged.Load())
	}
	// The counters docs/deadletters.md names are on /metrics.
	metrics := httpGet(t, "http://"+s.HTTPAddr()+"/metrics")
	for _, line := range []string{"beacon_dead_letters_replayed_total 3", "beacon_dead_letter_replay_failed_total 1", "beacon_dead_letters_purged_total 2"} {
		if !strings.Contains(metrics, "\n"+line+"\n") {
			t.Errorf("/metrics has no line %q", line)
		}
	}
}

// A listed dead letter whose log entry is gone says so.
func TestDLQAPIMissingLogEntry(t *testing.T) {
	s := startServer(t, func(o *Options) { o.HTTPAddr = "127.0.0.1:0" })
	if err := s.DeadLetter(&storage.Message{Topic: "gone", Payload: []byte("x"), QoS: 1}, DeadLetter{Source: "broker", Reason: ReasonNack}); err != nil {
		t.Fatal(err)
	}
	if err := s.store.DeleteMessages(indexed(t, s)[0].Seq); err != nil {
		t.Fatal(err)
	}
	var l DLQList
	dlqCall(t, s, "GET", "/api/v1/dlq", nil, &l)
	if len(l.Items) != 1 || !l.Items[0].Missing || l.Items[0].Payload != nil {
		t.Fatalf("list %+v", l)
	}
}

// POST filters may come as a form-encoded body instead of the query.
func TestDLQAPIFormBody(t *testing.T) {
	s := startServer(t, func(o *Options) { o.HTTPAddr = "127.0.0.1:0" })
	for _, topic := range []string{"keep/1", "drop/1", "drop/2"} {
		if err := s.DeadLetter(&storage.Message{Topic: topic, QoS: 1}, DeadLetter{Source: "broker", Reason: ReasonNack}); err != nil {
			t.Fatal(err)
		}
	}
	cl := &http.Client{Timeout: testTimeout}
	resp, err := cl.PostForm("http://"+s.HTTPAddr()+"/api/v1/dlq/purge", url.Values{"topic": {"drop/#"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var pr DLQPurgeResult
	if err := json.NewDecoder(resp.Body).Decode(&pr); err != nil || resp.StatusCode != 200 || pr.Purged != 2 {
		t.Fatalf("purge with form body: %s %+v %v", resp.Status, pr, err)
	}
	if es := indexed(t, s); len(es) != 1 || es[0].Topic != "keep/1" {
		t.Fatalf("left %v", es)
	}
}
