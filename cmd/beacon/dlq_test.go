package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beaconmq/beacon/mqtt"
	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/storage"
)

// rawClient is a minimal MQTT 5.0 client on the codec, enough to make the
// broker dead-letter something.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	r    *packets.Reader
}

func rawConnect(t *testing.T, addr, id string, maxPacket uint32) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := &rawClient{t: t, conn: conn, r: packets.NewReader(bufio.NewReader(conn), 0)}
	c.r.SetVersion(packets.V5)
	cp := &packets.Connect{Version: packets.V5, ClientID: id, CleanStart: true, KeepAlive: 30}
	cp.Properties.MaximumPacketSize = maxPacket
	c.send(cp)
	if ca, ok := c.recv().(*packets.Connack); !ok || ca.ReasonCode != packets.Success {
		t.Fatalf("CONNACK %+v", ca)
	}
	return c
}

func (c *rawClient) send(p packets.Packet) {
	c.t.Helper()
	b, err := packets.Encode(nil, p, packets.V5)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawClient) recv() packets.Packet {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, err := c.r.Read()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return p
}

// dlqRun runs "beacon dlq args..." in-process and returns exit code and
// output.
func dlqRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), func() {}, append([]string{"dlq"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// The command against a real `beacon serve`: a subscriber whose Maximum
// Packet Size is too small makes a dead letter; list shows it (table and
// JSON), replay republishes it (it fails again and comes back with two
// attempts), purge removes it.
func TestDLQCommandAgainstServe(t *testing.T) {
	p := startBeacon(t, memoryServe...)
	waitHealthy(t, p.http)
	sub := rawConnect(t, p.mqtt, "tiny", 64)
	sub.send(&packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: "orders/#", QoS: 1}}})
	if _, ok := sub.recv().(*packets.Suback); !ok {
		t.Fatal("no SUBACK")
	}
	pub := rawConnect(t, p.mqtt, "pub", 0)
	pub.send(&packets.Publish{Topic: "orders/1", QoS: 1, PacketID: 1, Payload: bytes.Repeat([]byte("x"), 200)})
	if _, ok := pub.recv().(*packets.Puback); !ok {
		t.Fatal("no PUBACK")
	}
	httpAddr := "http://" + p.http
	var l mqtt.DLQList
	eventually(t, 5*time.Second, func() error {
		code, out := runBeacon(t, "dlq", "list", "--http-addr", httpAddr, "--json")
		if code != 0 {
			return fmt.Errorf("exit %d: %s", code, out)
		}
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if len(l.Items) != 1 {
			return fmt.Errorf("%d dead letters", len(l.Items))
		}
		return nil
	})
	e := l.Items[0]
	if e.Topic != "$dlq/broker/orders/1" || e.Reason != "too-large" || e.Client != "tiny" || e.PayloadSize != 200 {
		t.Fatalf("listed %+v", e)
	}
	code, out := runBeacon(t, "dlq", "list", "--http-addr", p.http, "--topic", "orders/+")
	if code != 0 || !strings.Contains(out, "SEQ") || !strings.Contains(out, "orders/1") || !strings.Contains(out, "too-large") {
		t.Fatalf("table (exit %d):\n%s", code, out)
	}
	code, out = runBeacon(t, "dlq", "replay", "--http-addr", httpAddr, "--source", "broker")
	if code != 0 || !strings.Contains(out, "replayed 1, failed 0") {
		t.Fatalf("replay (exit %d): %s", code, out)
	}
	// The subscriber is still too small: the replay is dead-lettered again.
	eventually(t, 5*time.Second, func() error {
		code, out := runBeacon(t, "dlq", "list", "--http-addr", httpAddr, "--json")
		l = mqtt.DLQList{}
		if code != 0 || json.Unmarshal([]byte(out), &l) != nil || len(l.Items) != 1 || l.Items[0].Attempts != 2 {
			return fmt.Errorf("exit %d: %s", code, out)
		}
		return nil
	})
	if !l.Items[0].FirstFailure.Equal(e.FirstFailure) {
		t.Errorf("first failure %v after replay, want %v", l.Items[0].FirstFailure, e.FirstFailure)
	}
	code, out = runBeacon(t, "dlq", "purge", "--http-addr", httpAddr)
	if code != exitUsage || !strings.Contains(out, "--all") {
		t.Fatalf("purge without filter (exit %d): %s", code, out)
	}
	code, out = runBeacon(t, "dlq", "purge", "--http-addr", httpAddr, "--all")
	if code != 0 || strings.TrimSpace(out) != "purged 1" {
		t.Fatalf("purge --all (exit %d): %s", code, out)
	}
	code, out = runBeacon(t, "dlq", "list", "--http-addr", httpAddr)
	if code != 0 || strings.TrimSpace(out) != "no dead letters" {
		t.Fatalf("list after purge (exit %d): %s", code, out)
	}
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("serve exit %d", code)
	}
}

// The command's filters, errors and exit codes, in-process against an
// in-process broker with a bridge's dead letters.
func TestDLQCommandFiltersAndErrors(t *testing.T) {
	o := mqtt.DefaultOptions()
	o.MQTTAddr, o.WSAddr, o.HTTPAddr, o.SysInterval = "127.0.0.1:0", "", "127.0.0.1:0", 0
	s, err := mqtt.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	for _, d := range []struct{ source, topic string }{{"broker", "a/1"}, {"wh", "orders/1"}, {"wh", "orders/2"}} {
		err := s.DeadLetter(&storage.Message{Topic: d.topic, Payload: []byte("p"), QoS: 1},
			mqtt.DeadLetter{Source: d.source, Reason: "sink-failed", Attempts: 3, LastError: "HTTP 503\nService Unavailable"})
		if err != nil {
			t.Fatal(err)
		}
	}
	addr := s.HTTPAddr()

	code, out, errs := dlqRun(t, "list", "--http-addr", addr, "--source", "wh")
	if code != 0 || strings.Count(out, "\n") != 3 || !strings.Contains(out, "orders/2") || strings.Contains(out, "a/1") ||
		!strings.Contains(out, "HTTP 503 Service Unavailable") {
		t.Fatalf("list --source wh (exit %d, %s):\n%s", code, errs, out)
	}
	code, out, _ = dlqRun(t, "list", "--http-addr", addr, "--limit", "1")
	if code != 0 || !strings.Contains(out, "a/1") || !strings.Contains(out, "more dead letters follow: --after") {
		t.Fatalf("list --limit 1 (exit %d):\n%s", code, out)
	}
	code, out, _ = dlqRun(t, "list", "--http-addr", addr, "--since", "1h", "--until", time.Now().Add(time.Hour).Format(time.RFC3339))
	if code != 0 || strings.Count(out, "\n") != 4 {
		t.Fatalf("list --since 1h (exit %d):\n%s", code, out)
	}
	code, out, _ = dlqRun(t, "list", "--http-addr", addr, "--since", time.Now().Add(time.Hour).Format(time.RFC3339))
	if code != 0 || strings.TrimSpace(out) != "no dead letters" {
		t.Fatalf("list --since in an hour (exit %d):\n%s", code, out)
	}
	// wh has no replayer (no bridge of that name): refused, exit 1.
	code, _, errs = dlqRun(t, "replay", "--http-addr", addr)
	if code != exitFailure || !strings.Contains(errs, "409") || !strings.Contains(errs, "wh") {
		t.Fatalf("replay without replayer: exit %d, %s", code, errs)
	}
	var got []string
	s.SetDeadLetterReplayer("wh", func(m *storage.Message, dl mqtt.DeadLetter) error {
		got = append(got, m.Topic)
		if m.Topic == "orders/2" {
			return fmt.Errorf("still down")
		}
		return nil
	})
	code, out, _ = dlqRun(t, "replay", "--http-addr", addr, "--source", "wh")
	if code != exitFailure || !strings.Contains(out, "replayed 1, failed 1") || !strings.Contains(out, "still down") {
		t.Fatalf("replay with one failure: exit %d\n%s", code, out)
	}
	code, out, _ = dlqRun(t, "purge", "--http-addr", addr, "--topic", "orders/#", "--json")
	var pr mqtt.DLQPurgeResult
	if code != 0 || json.Unmarshal([]byte(out), &pr) != nil || pr.Purged != 1 {
		t.Fatalf("purge --json: exit %d %s", code, out)
	}
	for _, bad := range [][]string{
		{"list", "--since", "last week"},
		{"list", "--limit", "-2"},
		{"frobnicate"},
		{},
		{"list", "extra"},
	} {
		if code, _, errs := dlqRun(t, append(bad, "--http-addr", addr)...); code != exitUsage {
			t.Errorf("dlq %v: exit %d (%s), want %d", bad, code, errs, exitUsage)
		}
	}
	code, _, errs = dlqRun(t, "list", "--http-addr", addr, "--topic", "a/#/b")
	if code != exitFailure || !strings.Contains(errs, "400") {
		t.Errorf("bad topic filter: exit %d, %s", code, errs)
	}
	// Nothing listening: a failure naming the cause, not a hang.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	if code, _, errs := dlqRun(t, "list", "--http-addr", closed); code != exitFailure || !strings.Contains(errs, "refused") {
		t.Errorf("closed port: exit %d, %s", code, errs)
	}
}

// With an admin token configured the command needs it: from --token or
// from BEACON_ADMIN_TOKEN.
func TestDLQCommandToken(t *testing.T) {
	o := mqtt.DefaultOptions()
	o.MQTTAddr, o.WSAddr, o.HTTPAddr, o.SysInterval = "127.0.0.1:0", "", "127.0.0.1:0", 0
	o.AdminToken = "s3cret"
	s, err := mqtt.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	t.Setenv("BEACON_ADMIN_TOKEN", "")
	if code, _, errs := dlqRun(t, "list", "--http-addr", s.HTTPAddr()); code != exitFailure || !strings.Contains(errs, "401") {
		t.Fatalf("without token: exit %d, %s", code, errs)
	}
	if code, out, errs := dlqRun(t, "list", "--http-addr", s.HTTPAddr(), "--token", "s3cret"); code != 0 || strings.TrimSpace(out) != "no dead letters" {
		t.Fatalf("--token: exit %d, %s %s", code, out, errs)
	}
	t.Setenv("BEACON_ADMIN_TOKEN", "s3cret")
	if code, _, errs := dlqRun(t, "purge", "--http-addr", s.HTTPAddr(), "--all"); code != 0 {
		t.Fatalf("BEACON_ADMIN_TOKEN: exit %d, %s", code, errs)
	}
}
