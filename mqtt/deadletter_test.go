package mqtt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/storage"
)

// origProps are the properties every test message carries, so that each
// dead letter can be checked for keeping them.
func origProps() packets.Properties {
	return packets.Properties{
		ContentType:     "application/json",
		ResponseTopic:   "reply/here",
		CorrelationData: []byte{1, 2, 3},
		User:            []packets.UserProperty{{Key: "order", Value: "42"}, {Key: "order", Value: "dup key kept"}},
	}
}

// publishWithProps publishes (QoS 1 or 2) with origProps and completes the
// flow.
func (c *tclient) publishWithProps(topic, payload string, qos byte, id uint16) {
	c.t.Helper()
	c.send(&packets.Publish{Topic: topic, Payload: []byte(payload), QoS: qos, PacketID: id, Properties: origProps()})
	switch qos {
	case 1:
		recvAs[*packets.Puback](c)
	case 2:
		recvAs[*packets.Pubrec](c)
		c.send(&packets.Pubrel{PacketID: id})
		recvAs[*packets.Pubcomp](c)
	}
}

// dlqReader connects a 5.0 client subscribed to $dlq/# at QoS 1.
func dlqReader(t *testing.T, s *Server, id string) *tclient {
	t.Helper()
	c := dial(t, s, packets.V5)
	c.connect(id, true, nil)
	c.subscribe(1, packets.Subscription{Filter: "$dlq/#", QoS: 1})
	return c
}

func userProps(p *packets.Properties) map[string]string {
	m := map[string]string{}
	for _, u := range p.User {
		if _, dup := m[u.Key]; !dup {
			m[u.Key] = u.Value
		}
	}
	return m
}

// wantDeadLetter is what a received dead letter must carry.
type wantDeadLetter struct {
	source, reason, topic, payload, client, lastError string
	attempts                                          int
	firstAfter, firstBefore                           time.Time // dlq-first-failure within
}

// checkDeadLetter checks topic, payload, the original properties and every
// dlq-* property of a dead letter as a 5.0 subscriber received it.
func checkDeadLetter(t *testing.T, p *packets.Publish, w wantDeadLetter) {
	t.Helper()
	if want := "$dlq/" + w.source + "/" + w.topic; p.Topic != want {
		t.Fatalf("dead letter topic %q, want %q", p.Topic, want)
	}
	if string(p.Payload) != w.payload {
		t.Errorf("payload %q, want %q", p.Payload, w.payload)
	}
	if p.QoS != 1 {
		t.Errorf("dead letter delivered at QoS %d, want 1 (it is on the log)", p.QoS)
	}
	o := origProps()
	if p.Properties.ContentType != o.ContentType || p.Properties.ResponseTopic != o.ResponseTopic || !bytes.Equal(p.Properties.CorrelationData, o.CorrelationData) {
		t.Errorf("original properties not kept: %+v", p.Properties)
	}
	if p.Properties.MessageExpiry != 0 {
		t.Errorf("dead letter carries Message Expiry %d; it must not expire", p.Properties.MessageExpiry)
	}
	// The original user properties come first, in order, then the dlq-* ones.
	if len(p.Properties.User) < 2 || p.Properties.User[0] != o.User[0] || p.Properties.User[1] != o.User[1] {
		t.Errorf("original user properties not kept first: %v", p.Properties.User)
	}
	u := userProps(&p.Properties)
	for k, v := range map[string]string{
		"dlq-reason":         w.reason,
		"dlq-source":         w.source,
		"dlq-original-topic": w.topic,
		"dlq-attempts":       strconv.Itoa(w.attempts),
		"dlq-client":         w.client,
	} {
		if v == "" && k == "dlq-client" {
			if _, ok := u[k]; ok {
				t.Errorf("dlq-client %q set for a dead letter without a client", u[k])
			}
			continue
		}
		if u[k] != v {
			t.Errorf("%s = %q, want %q (all: %v)", k, u[k], v, u)
		}
	}
	if lastErr, ok := u["dlq-last-error"]; !ok || (w.lastError != "" && lastErr != w.lastError) {
		t.Errorf("dlq-last-error = %q (present %v), want %q", lastErr, ok, w.lastError)
	}
	first, err := time.Parse(time.RFC3339Nano, u["dlq-first-failure"])
	if err != nil {
		t.Fatalf("dlq-first-failure %q: %v", u["dlq-first-failure"], err)
	}
	if first.Before(w.firstAfter.Truncate(time.Second)) || first.After(w.firstBefore) {
		t.Errorf("dlq-first-failure %v not within [%v, %v]", first, w.firstAfter, w.firstBefore)
	}
}

// waitOffline waits until the session of id is no longer connected.
func waitOffline(t *testing.T, s *Server, id string) {
	t.Helper()
	eventually(t, testTimeout, func() error {
		s.mu.Lock()
		e := s.sessions[id]
		s.mu.Unlock()
		if e == nil || e.sess.Connected() {
			return fmt.Errorf("session %s missing or still connected", id)
		}
		return nil
	})
}

// indexed returns the dead-letter index entries of the server's store.
func indexed(t *testing.T, s *Server) []*storage.DeadLetterEntry {
	t.Helper()
	var out []*storage.DeadLetterEntry
	if err := s.store.DeadLetters(0, func(e *storage.DeadLetterEntry) bool { out = append(out, e); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkIndexed asserts the index holds exactly one entry, for topic with
// reason, and returns it.
func checkIndexed(t *testing.T, s *Server, source, topic, reason string) *storage.DeadLetterEntry {
	t.Helper()
	var es []*storage.DeadLetterEntry
	eventually(t, testTimeout, func() error {
		es = indexed(t, s)
		if len(es) != 1 {
			return fmt.Errorf("%d index entries, want 1", len(es))
		}
		return nil
	})
	e := es[0]
	if e.Source != source || e.Topic != topic || e.Reason != reason || e.Seq == 0 || e.At.IsZero() {
		t.Fatalf("index entry %+v, want source %s topic %s reason %s", e, source, topic, reason)
	}
	m, err := s.store.Get(e.Seq)
	if err != nil || m.Topic != "$dlq/"+source+"/"+topic {
		t.Fatalf("log entry %d of the index entry: %v %v", e.Seq, m, err)
	}
	return e
}

// Every reason a message is dead-lettered, each checked for topic, payload,
// the original properties and the dlq-* properties, and for its index
// entry. (session_test.go's TestDeadLetters checks nack and too-large
// briefly; these are the full checks.)
func TestDeadLetterReasons(t *testing.T) {
	t.Run("nack PUBACK 0x80", func(t *testing.T) {
		s := startServer(t, nil)
		dlq := dlqReader(t, s, "dlq")
		sub := dial(t, s, packets.V5)
		sub.connect("picky", true, nil)
		sub.subscribe(1, packets.Subscription{Filter: "orders/#", QoS: 1})
		pub := dial(t, s, packets.V5)
		pub.connect("pub", true, nil)
		before := time.Now()
		pub.publishWithProps("orders/1", "paid", 1, 1)
		p := sub.recvPublish(false)
		sub.send(&packets.Puback{PacketID: p.PacketID, ReasonCode: packets.UnspecifiedError})
		checkDeadLetter(t, dlq.recvPublish(true), wantDeadLetter{source: "broker", reason: ReasonNack, topic: "orders/1", payload: "paid",
			client: "picky", attempts: 1, lastError: packets.UnspecifiedError.String(), firstAfter: before, firstBefore: time.Now()})
		checkIndexed(t, s, "broker", "orders/1", ReasonNack)
	})
	t.Run("nack PUBREC 0x87", func(t *testing.T) {
		s := startServer(t, nil)
		dlq := dlqReader(t, s, "dlq")
		sub := dial(t, s, packets.V5)
		sub.connect("picky2", true, nil)
		sub.subscribe(1, packets.Subscription{Filter: "orders/#", QoS: 2})
		pub := dial(t, s, packets.V5)
		pub.connect("pub", true, nil)
		before := time.Now()
		pub.publishWithProps("orders/2", "paid twice", 2, 1)
		p := sub.recvPublish(false)
		if p.QoS != 2 {
			t.Fatalf("delivered at QoS %d", p.QoS)
		}
		sub.send(&packets.Pubrec{PacketID: p.PacketID, ReasonCode: packets.NotAuthorized})
		checkDeadLetter(t, dlq.recvPublish(true), wantDeadLetter{source: "broker", reason: ReasonNack, topic: "orders/2", payload: "paid twice",
			client: "picky2", attempts: 1, lastError: packets.NotAuthorized.String(), firstAfter: before, firstBefore: time.Now()})
		if e := checkIndexed(t, s, "broker", "orders/2", ReasonNack); e.QoS != 2 {
			t.Errorf("index keeps QoS %d, want the original 2", e.QoS)
		}
	})
	t.Run("expired while queued", func(t *testing.T) {
		s := startServer(t, nil)
		dlq := dlqReader(t, s, "dlq")
		sub := dial(t, s, packets.V5)
		sub.connect("away", false, func(p *packets.Connect) { p.Properties.SessionExpiry = 600 })
		sub.subscribe(1, packets.Subscription{Filter: "orders/#", QoS: 1})
		sub.disconnect()
		waitOffline(t, s, "away")
		// Published 10 s ago with a 1 s expiry: it waits in the offline
		// session's queue and has expired when the session comes back.
		before := time.Now()
		m := &storage.Message{Topic: "orders/3", Payload: []byte("stale"), QoS: 1, Created: time.Now().Add(-10 * time.Second), Properties: origProps()}
		m.Properties.MessageExpiry = 1
		if err := s.Publish(m); err != nil {
			t.Fatal(err)
		}
		sub = dial(t, s, packets.V5)
		sub.connect("away", false, func(p *packets.Connect) { p.Properties.SessionExpiry = 600 })
		checkDeadLetter(t, dlq.recvPublish(true), wantDeadLetter{source: "broker", reason: ReasonExpired, topic: "orders/3", payload: "stale",
			client: "away", attempts: 1, firstAfter: before, firstBefore: time.Now()})
		sub.expectNothing(50 * time.Millisecond) // and it was not delivered
		checkIndexed(t, s, "broker", "orders/3", ReasonExpired)
	})
	t.Run("queue overflow", func(t *testing.T) {
		s := startServer(t, func(o *Options) { o.MaxQueuedMessages = 1 })
		dlq := dlqReader(t, s, "dlq")
		sub := dial(t, s, packets.V5)
		sub.connect("slowpoke", false, func(p *packets.Connect) { p.Properties.SessionExpiry = 600 })
		sub.subscribe(1, packets.Subscription{Filter: "orders/#", QoS: 1})
		sub.disconnect()
		waitOffline(t, s, "slowpoke")
		pub := dial(t, s, packets.V5)
		pub.connect("pub", true, nil)
		before := time.Now()
		pub.publishWithProps("orders/4", "fits", 1, 1)
		pub.publishWithProps("orders/5", "overflows", 1, 2)
		checkDeadLetter(t, dlq.recvPublish(true), wantDeadLetter{source: "broker", reason: ReasonQueueFull, topic: "orders/5", payload: "overflows",
			client: "slowpoke", attempts: 1, firstAfter: before, firstBefore: time.Now()})
		checkIndexed(t, s, "broker", "orders/5", ReasonQueueFull)
	})
	t.Run("larger than Maximum Packet Size", func(t *testing.T) {
		s := startServer(t, nil)
		dlq := dlqReader(t, s, "dlq")
		sub := dial(t, s, packets.V5)
		sub.connect("tiny", true, func(p *packets.Connect) { p.Properties.MaximumPacketSize = 128 })
		sub.subscribe(1, packets.Subscription{Filter: "orders/#", QoS: 1})
		pub := dial(t, s, packets.V5)
		pub.connect("pub", true, nil)
		big := string(bytes.Repeat([]byte("x"), 500))
		before := time.Now()
		pub.publishWithProps("orders/6", big, 1, 1)
		checkDeadLetter(t, dlq.recvPublish(true), wantDeadLetter{source: "broker", reason: ReasonTooLarge, topic: "orders/6", payload: big,
			client: "tiny", attempts: 1, firstAfter: before, firstBefore: time.Now()})
		sub.expectNothing(50 * time.Millisecond)
		checkIndexed(t, s, "broker", "orders/6", ReasonTooLarge)
	})
	t.Run("bridge out of retries", func(t *testing.T) {
		s := startServer(t, nil)
		dlq := dlqReader(t, s, "dlq")
		first := time.Now().Add(-time.Hour).UTC()
		m := &storage.Message{Topic: "orders/7", Payload: []byte("to logistics"), QoS: 1, Created: first, Properties: origProps()}
		m.Properties.MessageExpiry = 3600
		if err := s.DeadLetter(m, DeadLetter{Source: "bridgename", Reason: ReasonSinkFailed, Attempts: 5, FirstFailure: first, LastError: "POST http://logistics: 503"}); err != nil {
			t.Fatal(err)
		}
		checkDeadLetter(t, dlq.recvPublish(true), wantDeadLetter{source: "bridgename", reason: "sink-failed", topic: "orders/7", payload: "to logistics",
			attempts: 5, lastError: "POST http://logistics: 503", firstAfter: first, firstBefore: first})
		e := checkIndexed(t, s, "bridgename", "orders/7", "sink-failed")
		if e.Attempts != 5 || !e.FirstFailure.Equal(first) || !e.Created.Equal(first) {
			t.Errorf("index entry %+v", e)
		}
	})
	t.Run("refused sources", func(t *testing.T) {
		s := startServer(t, nil)
		m := &storage.Message{Topic: "x", QoS: 1}
		for _, src := range []string{"", "a/b", "a+", "#"} {
			if err := s.DeadLetter(m, DeadLetter{Source: src, Reason: "r"}); err == nil {
				t.Errorf("DeadLetter with source %q accepted", src)
			}
		}
		if n := len(indexed(t, s)); n != 0 {
			t.Errorf("%d index entries after refused dead letters", n)
		}
	})
}

// A 3.1.1 subscriber of $dlq/# gets the dead letter's topic and payload
// only: 3.1.1 has no properties, so the reason and the rest are not in the
// packet (a 5.0 subscriber of the same dead letter gets them).
func TestDeadLetterV311Subscriber(t *testing.T) {
	s := startServer(t, nil)
	old := dial(t, s, packets.V311)
	old.connect("old", true, nil)
	old.subscribe(1, packets.Subscription{Filter: "$dlq/#", QoS: 1})
	v5 := dlqReader(t, s, "new")
	m := &storage.Message{Topic: "orders/8", Payload: []byte("payload only"), QoS: 1, Properties: origProps()}
	if err := s.DeadLetter(m, DeadLetter{Source: "wh", Reason: ReasonSinkFailed}); err != nil {
		t.Fatal(err)
	}
	p := old.recvPublish(true)
	if p.Topic != "$dlq/wh/orders/8" || string(p.Payload) != "payload only" || p.QoS != 1 {
		t.Fatalf("3.1.1 got %s %q QoS %d", p.Topic, p.Payload, p.QoS)
	}
	if len(p.Properties.User) != 0 || p.Properties.ContentType != "" {
		t.Fatalf("3.1.1 PUBLISH decoded with properties %+v", p.Properties)
	}
	if u := userProps(&v5.recvPublish(true).Properties); u["dlq-reason"] != ReasonSinkFailed {
		t.Fatalf("5.0 subscriber of the same dead letter: %v", u)
	}
}

// Dead letters are kept by log collection until replayed or purged, and
// with a badger store they (log entry and index) survive a restart.
func TestDeadLetterKeptByGCAndRestart(t *testing.T) {
	dir := t.TempDir()
	open := func() storage.Store {
		st, err := storage.OpenBadger(storage.BadgerOptions{Dir: dir, Durability: storage.DurabilityNone})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
	st := open()
	s1 := startServer(t, func(o *Options) { o.Store = st })
	for i, topic := range []string{"gc/1", "gc/2"} {
		if err := s1.DeadLetter(&storage.Message{Topic: topic, Payload: []byte{byte('a' + i)}, QoS: 1}, DeadLetter{Source: "broker", Reason: ReasonNack}); err != nil {
			t.Fatal(err)
		}
	}
	// Ordinary messages nobody needs are collected; the dead letters stay.
	pub := dial(t, s1, packets.V5)
	pub.connect("pub", true, nil)
	pub.publish("nobody/listens", "x", 1, false, 1)
	if _, err := s1.CollectLog(); err != nil {
		t.Fatal(err)
	}
	es := indexed(t, s1)
	if len(es) != 2 {
		t.Fatalf("%d index entries", len(es))
	}
	for _, e := range es {
		if _, err := st.Get(e.Seq); err != nil {
			t.Fatalf("dead letter %d collected: %v", e.Seq, err)
		}
	}
	if n := logCount(t, st); n != 2 {
		t.Fatalf("%d log entries after collection, want the 2 dead letters", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := s1.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st = open()
	s2 := startServer(t, func(o *Options) { o.Store = st })
	if _, err := s2.CollectLog(); err != nil {
		t.Fatal(err)
	}
	list, err := s2.selectDeadLetters(dlqFilter{})
	if err != nil || len(list) != 2 || list[0].Topic != "gc/1" || list[1].Topic != "gc/2" {
		t.Fatalf("after restart: %v %v", list, err)
	}
	for _, e := range list {
		if m, err := st.Get(e.Seq); err != nil || m.Topic != "$dlq/broker/"+e.Topic {
			t.Fatalf("dead letter %d after restart and collection: %v %v", e.Seq, m, err)
		}
	}
	// Purged: it leaves the index and the next collection deletes it.
	if n, err := s2.purgeDeadLetters(dlqFilter{Topic: "gc/1"}); err != nil || n != 1 {
		t.Fatalf("purge = %d, %v", n, err)
	}
	if _, err := s2.CollectLog(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(list[0].Seq); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("purged dead letter still on the log: %v", err)
	}
	if _, err := st.Get(list[1].Seq); err != nil {
		t.Fatalf("the other dead letter was collected: %v", err)
	}
}

func logCount(t *testing.T, st storage.Store) int {
	t.Helper()
	n := 0
	if err := st.Scan(0, func(*storage.Message) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	return n
}

// Replay of a broker dead letter republishes it on its original topic with
// its original properties (no dlq-* ones) to every current subscriber;
// it leaves the index, and its log entry is then collected.
func TestDeadLetterReplayBroker(t *testing.T) {
	s := startServer(t, nil)
	sub := dial(t, s, packets.V5)
	sub.connect("picky", true, nil)
	sub.subscribe(1, packets.Subscription{Filter: "orders/#", QoS: 1})
	pub := dial(t, s, packets.V5)
	pub.connect("pub", true, nil)
	pub.publishWithProps("orders/9", "again", 1, 1)
	p := sub.recvPublish(false)
	sub.send(&packets.Puback{PacketID: p.PacketID, ReasonCode: packets.UnspecifiedError})
	e := checkIndexed(t, s, "broker", "orders/9", ReasonNack)

	// Two subscribers now: both get the replay.
	other := dial(t, s, packets.V5)
	other.connect("other", true, nil)
	other.subscribe(1, packets.Subscription{Filter: "orders/+", QoS: 1})
	n, err := s.ReplayDeadLetters("broker")
	if err != nil || n != 1 {
		t.Fatalf("ReplayDeadLetters = %d, %v", n, err)
	}
	for _, c := range []*tclient{sub, other} {
		r := c.recvPublish(true)
		if r.Topic != "orders/9" || string(r.Payload) != "again" || r.QoS != 1 {
			t.Fatalf("replay: %s %q QoS %d", r.Topic, r.Payload, r.QoS)
		}
		o := origProps()
		if len(r.Properties.User) != 2 || r.Properties.User[0] != o.User[0] || r.Properties.User[1] != o.User[1] {
			t.Fatalf("replay user properties %v, want the original ones only", r.Properties.User)
		}
		if r.Properties.ContentType != o.ContentType || !bytes.Equal(r.Properties.CorrelationData, o.CorrelationData) || r.Properties.ResponseTopic != o.ResponseTopic {
			t.Fatalf("replay properties %+v", r.Properties)
		}
	}
	if n := len(indexed(t, s)); n != 0 {
		t.Fatalf("%d index entries after replay", n)
	}
	if _, err := s.CollectLog(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.store.Get(e.Seq); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("replayed dead letter still on the log after collection: %v", err)
	}
	if s.stats.DeadLettersReplayed.Load() != 1 {
		t.Errorf("DeadLettersReplayed = %d", s.stats.DeadLettersReplayed.Load())
	}
	// Nothing left: a second replay does nothing.
	if n, err := s.ReplayDeadLetters("broker"); err != nil || n != 0 {
		t.Fatalf("second replay = %d, %v", n, err)
	}
	sub.expectNothing(50 * time.Millisecond)
}

// A replayed broker dead letter that fails again comes back with its
// attempt count counted on and its first failure kept, once per replay.
func TestDeadLetterReplayFailsAgain(t *testing.T) {
	s := startServer(t, nil)
	dlq := dlqReader(t, s, "dlq")
	sub := dial(t, s, packets.V5)
	sub.connect("grumpy", true, nil)
	sub.subscribe(1, packets.Subscription{Filter: "orders/#", QoS: 1})
	pub := dial(t, s, packets.V5)
	pub.connect("pub", true, nil)
	pub.publishWithProps("orders/10", "never", 1, 1)
	nack := func() {
		t.Helper()
		p := sub.recvPublish(false)
		if p.Topic != "orders/10" {
			t.Fatalf("got %s", p.Topic)
		}
		sub.send(&packets.Puback{PacketID: p.PacketID, ReasonCode: packets.ImplementationSpecificError})
	}
	nack()
	d := dlq.recvPublish(true)
	first := userProps(&d.Properties)["dlq-first-failure"]
	for attempt := 2; attempt <= 3; attempt++ {
		if n, err := s.ReplayDeadLetters("broker"); err != nil || n != 1 {
			t.Fatalf("replay %d = %d, %v", attempt, n, err)
		}
		nack()
		d := dlq.recvPublish(true)
		u := userProps(&d.Properties)
		if u["dlq-attempts"] != strconv.Itoa(attempt) || u["dlq-first-failure"] != first || u["dlq-reason"] != ReasonNack {
			t.Fatalf("after replay %d: attempts %s first %s (want %s) reason %s", attempt, u["dlq-attempts"], u["dlq-first-failure"], first, u["dlq-reason"])
		}
		es := indexed(t, s)
		eventually(t, testTimeout, func() error {
			if es = indexed(t, s); len(es) != 1 || es[0].Attempts != attempt {
				return fmt.Errorf("index %v", es)
			}
			return nil
		})
		// One replay, one failure: it does not loop.
		dlq.expectNothing(50 * time.Millisecond)
		sub.expectNothing(10 * time.Millisecond)
	}
}

// Dead letters of a bridge go to the replayer the bridge registered; with
// none registered the replay is refused. A replay that fails again puts it
// back with one more attempt and its first failure, and stops replaying
// that source.
func TestDeadLetterReplayBridge(t *testing.T) {
	s := startServer(t, nil)
	dlq := dlqReader(t, s, "dlq")
	first := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	for i := range 2 {
		m := &storage.Message{Topic: fmt.Sprintf("orders/%d", 20+i), Payload: []byte(fmt.Sprint("p", i)), QoS: 1, Properties: origProps()}
		if err := s.DeadLetter(m, DeadLetter{Source: "logistics", Reason: ReasonSinkFailed, Attempts: 5, FirstFailure: first, LastError: "503"}); err != nil {
			t.Fatal(err)
		}
		dlq.recvPublish(true)
	}
	if _, err := s.ReplayDeadLetters("logistics"); !errors.Is(err, ErrNoReplayer) {
		t.Fatalf("replay without replayer: %v, want ErrNoReplayer", err)
	}
	if n := len(indexed(t, s)); n != 2 {
		t.Fatalf("refused replay changed the index: %d entries", n)
	}

	var calls []*storage.Message
	var dls []DeadLetter
	fail := true
	s.SetDeadLetterReplayer("logistics", func(m *storage.Message, dl DeadLetter) error {
		calls = append(calls, m)
		dls = append(dls, dl)
		if fail {
			return errors.New("still down")
		}
		return nil
	})
	n, err := s.ReplayDeadLetters("logistics")
	if n != 0 || !errors.Is(err, ErrReplayFailed) {
		t.Fatalf("failing replay = %d, %v; want 0 and ErrReplayFailed", n, err)
	}
	if len(calls) != 1 {
		t.Fatalf("replayer called %d times; after a failure the rest of the source must wait", len(calls))
	}
	d := dlq.recvPublish(true)
	u := userProps(&d.Properties)
	if d.Topic != "$dlq/logistics/orders/20" || u["dlq-attempts"] != "6" || u["dlq-last-error"] != "still down" || u["dlq-reason"] != ReasonSinkFailed {
		t.Fatalf("dead-lettered again: %s %v", d.Topic, u)
	}
	if f, _ := time.Parse(time.RFC3339Nano, u["dlq-first-failure"]); !f.Equal(first) {
		t.Fatalf("first failure %s, want %v", u["dlq-first-failure"], first)
	}
	es := indexed(t, s)
	if len(es) != 2 || es[0].Topic != "orders/21" || es[1].Topic != "orders/20" || es[1].Attempts != 6 || !es[1].FirstFailure.Equal(first) {
		t.Fatalf("index after failed replay: %+v %+v", es[0], es[1])
	}

	fail = false
	calls, dls = nil, nil
	n, err = s.ReplayDeadLetters("logistics")
	if err != nil || n != 2 {
		t.Fatalf("replay = %d, %v", n, err)
	}
	if len(calls) != 2 || calls[0].Topic != "orders/21" || calls[1].Topic != "orders/20" {
		t.Fatalf("replayer got %d messages", len(calls))
	}
	for i, m := range calls {
		if len(m.Properties.User) != 2 || m.Properties.ContentType != "application/json" || m.QoS != 1 || m.Seq != es[i].Seq {
			t.Fatalf("replayed message %+v", m)
		}
		if dls[i].Source != "logistics" || dls[i].Reason != ReasonSinkFailed {
			t.Fatalf("replayed record %+v", dls[i])
		}
	}
	if dls[1].Attempts != 6 || !dls[1].FirstFailure.Equal(first) {
		t.Fatalf("record of the failed-once dead letter: %+v", dls[1])
	}
	if n := len(indexed(t, s)); n != 0 {
		t.Fatalf("%d index entries after replay", n)
	}
	dlq.expectNothing(50 * time.Millisecond)

	// Unregistered again: refused again.
	s.SetDeadLetterReplayer("logistics", nil)
	if err := s.DeadLetter(&storage.Message{Topic: "orders/22", QoS: 1}, DeadLetter{Source: "logistics", Reason: ReasonSinkFailed}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReplayDeadLetters("logistics"); !errors.Is(err, ErrNoReplayer) {
		t.Fatalf("after removing the replayer: %v", err)
	}
	// "broker" cannot be taken over by a bridge.
	s.SetDeadLetterReplayer("broker", func(*storage.Message, DeadLetter) error { return errors.New("must not be called") })
	if s.dl.replayer("broker") != nil {
		t.Fatal("a replayer for source broker was registered")
	}
}

// A dead letter whose log entry is gone (retention) cannot be replayed: the
// replay says so and drops the index entry instead of failing forever.
func TestDeadLetterReplayMissingLogEntry(t *testing.T) {
	s := startServer(t, nil)
	if err := s.DeadLetter(&storage.Message{Topic: "gone/1", QoS: 1}, DeadLetter{Source: "broker", Reason: ReasonNack}); err != nil {
		t.Fatal(err)
	}
	es := indexed(t, s)
	if err := s.store.DeleteMessages(es[0].Seq); err != nil {
		t.Fatal(err)
	}
	res, err := s.replayDeadLetters(dlqFilter{})
	if err != nil || res.Failed != 1 || res.Replayed != 0 || len(res.Errors) != 1 {
		t.Fatalf("replay = %+v, %v", res, err)
	}
	if n := len(indexed(t, s)); n != 0 {
		t.Fatalf("%d index entries left", n)
	}
}

// Dead letters written while log collections run are never collected:
// the index entry is in place before a collection can see the log entry.
func TestDeadLetterConcurrentWithGC(t *testing.T) {
	s := startServer(t, nil)
	const writers, each = 4, 50
	done := make(chan error, writers)
	for w := range writers {
		go func() {
			for i := range each {
				m := &storage.Message{Topic: fmt.Sprintf("c/%d/%d", w, i), Payload: []byte("x"), QoS: 1}
				if err := s.DeadLetter(m, DeadLetter{Source: "broker", Reason: ReasonNack}); err != nil {
					done <- err
					return
				}
				// Ordinary messages nobody needs, so collections have work.
				if err := s.Publish(&storage.Message{Topic: "noise", Payload: []byte("n"), QoS: 1}); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	collected := 0
	for finished := 0; finished < writers; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			finished++
		default:
			n, err := s.CollectLog()
			if err != nil {
				t.Fatal(err)
			}
			collected += n
		}
	}
	n, err := s.CollectLog()
	if err != nil {
		t.Fatal(err)
	}
	collected += n
	es := indexed(t, s)
	if len(es) != writers*each {
		t.Fatalf("%d index entries, want %d", len(es), writers*each)
	}
	for _, e := range es {
		if _, err := s.store.Get(e.Seq); err != nil {
			t.Fatalf("dead letter %d (%s) collected: %v", e.Seq, e.Topic, err)
		}
	}
	if collected != writers*each {
		t.Errorf("collected %d entries, want the %d noise messages", collected, writers*each)
	}
}

// failingIndex is a memory store whose dead-letter index refuses writes.
type failingIndex struct{ *storage.Memory }

func (failingIndex) AddDeadLetter(*storage.DeadLetterEntry) error { return storage.ErrFull }

// A dead letter whose index entry cannot be written is an error for the
// caller (a bridge keeps the message), and its unreferenced log entry is
// collected rather than kept forever.
func TestDeadLetterIndexWriteFails(t *testing.T) {
	st := failingIndex{storage.NewMemory()}
	s := startServer(t, func(o *Options) { o.Store = st })
	err := s.DeadLetter(&storage.Message{Topic: "x/1", Payload: []byte("p"), QoS: 1}, DeadLetter{Source: "wh", Reason: ReasonSinkFailed})
	if !errors.Is(err, storage.ErrFull) {
		t.Fatalf("DeadLetter = %v, want the index's ErrFull", err)
	}
	if s.stats.DeadLettered.Load() != 0 {
		t.Errorf("DeadLettered counted a dead letter that was not stored")
	}
	if n := logCount(t, st); n != 1 {
		t.Fatalf("%d log entries before collection", n)
	}
	if _, err := s.CollectLog(); err != nil {
		t.Fatal(err)
	}
	if n := logCount(t, st); n != 0 {
		t.Fatalf("unindexed dead letter not collected: %d log entries", n)
	}
}
