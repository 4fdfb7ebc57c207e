package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beaconmq/beacon/mqtt"
)

// startBenchBroker runs an in-process broker on a free loopback port.
func startBenchBroker(t *testing.T) string {
	t.Helper()
	opts := mqtt.DefaultOptions()
	opts.MQTTAddr = "127.0.0.1:0"
	opts.WSAddr = ""
	opts.HTTPAddr = ""
	opts.SysInterval = 0
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := mqtt.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv.MQTTAddr()
}

func runBenchArgs(t *testing.T, args ...string) *benchReport {
	t.Helper()
	cfg, err := parseBenchArgs(args, io.Discard)
	if err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return runBench(ctx, cfg, io.Discard)
}

// assertClean fails unless the run delivered everything it sent, once and
// in order.
func assertClean(t *testing.T, rep *benchReport, wantExpected uint64) {
	t.Helper()
	if len(rep.Errors) > 0 {
		t.Fatalf("errors: %v", rep.Errors)
	}
	c := rep.Check
	if c == nil {
		t.Fatal("no check result")
	}
	if c.Expected != wantExpected || c.Received != wantExpected {
		t.Errorf("expected/received = %d/%d, want %d", c.Expected, c.Received, wantExpected)
	}
	if c.Lost != 0 || c.Reordered != 0 || c.Duplicates != 0 || c.Invalid != 0 {
		t.Errorf("lost %d reordered %d duplicates %d invalid %d", c.Lost, c.Reordered, c.Duplicates, c.Invalid)
	}
	if !rep.OK {
		t.Errorf("report not OK: %+v", rep)
	}
}

func TestBenchScenariosQoS1(t *testing.T) {
	addr := startBenchBroker(t)
	cases := []struct {
		name string
		args []string
		want uint64
	}{
		{"fanin", []string{"fanin", "--publishers", "4", "--count", "300"}, 4 * 300},
		{"fanout", []string{"fanout", "--subscribers", "5", "--count", "200"}, 5 * 200},
		{"pairs", []string{"pairs", "--pairs", "10", "--count", "100"}, 10 * 100},
		{"latency", []string{"latency", "--pairs", "2", "--rate", "2000", "--count", "100"}, 2 * 100},
		{"fanin-3.1.1", []string{"fanin", "--version", "3.1.1", "--publishers", "3", "--count", "200"}, 3 * 200},
		{"fanin-qos2", []string{"fanin", "--qos", "2", "--publishers", "3", "--count", "200"}, 3 * 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{}, tc.args...)
			if !strings.Contains(strings.Join(args, " "), "--qos") {
				args = append(args, "--qos", "1")
			}
			args = append(args, "--addr", addr, "--inflight", "32", "--drain-timeout", "5s")
			rep := runBenchArgs(t, args...)
			assertClean(t, rep, tc.want)
			if rep.Latency == nil || rep.Latency.N != tc.want {
				t.Errorf("latency samples = %+v, want %d", rep.Latency, tc.want)
			}
		})
	}
}

func TestBenchDurationMode(t *testing.T) {
	addr := startBenchBroker(t)
	rep := runBenchArgs(t, "pairs", "--addr", addr, "--qos", "1", "--pairs", "2", "--duration", "300ms", "--inflight", "16")
	if rep.Sent == 0 {
		t.Fatal("nothing sent in 300ms")
	}
	assertClean(t, rep, rep.Sent)
}

func TestBenchBacklog(t *testing.T) {
	addr := startBenchBroker(t)
	for _, v := range []string{"3.1.1", "5"} {
		t.Run(v, func(t *testing.T) {
			rep := runBenchArgs(t, "backlog", "--addr", addr, "--version", v, "--qos", "1", "--count", "500",
				"--pid", strconv.Itoa(os.Getpid()), "--data-dir", t.TempDir(), "--drain-timeout", "5s")
			assertClean(t, rep, 500)
			b := rep.Backlog
			if !b.SessionPresent {
				t.Error("session not present on reconnect")
			}
			if b.RSSPeakPublish <= 0 || b.RSSPeakDrain <= 0 {
				t.Errorf("RSS not sampled: %+v", b)
			}
			if b.DrainRate <= 0 || b.PublishRate <= 0 {
				t.Errorf("rates: %+v", b)
			}
		})
	}
}

func TestBenchConns(t *testing.T) {
	addr := startBenchBroker(t)
	rep := runBenchArgs(t, "conns", "--addr", addr, "--conns", "60", "--keepalive", "2s", "--hold", "1200ms",
		"--pid", strconv.Itoa(os.Getpid()))
	c := rep.Conns
	if c == nil || c.Connected != 60 || c.Alive != 60 {
		t.Fatalf("conns report %+v, errors %v", c, rep.Errors)
	}
	if c.RSSAfter <= 0 || c.ConnectRate <= 0 {
		t.Errorf("conns report %+v", c)
	}
	if !rep.OK {
		t.Errorf("not OK: %v", rep.Errors)
	}
}

// The checker must notice a gap, a reordering and a duplicate in a
// fabricated stream.
func TestBenchSeqTracker(t *testing.T) {
	tr := newSeqTracker()
	for _, s := range []uint64{0, 1, 2, 4, 5, 3, 5, 9} {
		tr.observe(s)
	}
	lost, first := tr.missing(10, 5)
	if lost != 3 || !reflect.DeepEqual(first, []uint64{6, 7, 8}) {
		t.Errorf("missing = %d %v, want 3 [6 7 8]", lost, first)
	}
	if tr.reorders != 1 || tr.dups != 1 || tr.distinct != 7 {
		t.Errorf("reorders %d dups %d distinct %d, want 1 1 7", tr.reorders, tr.dups, tr.distinct)
	}
	// Counting against fewer sent than received ignores the extras.
	if lost, _ := tr.missing(3, 5); lost != 0 {
		t.Errorf("missing(3) = %d, want 0", lost)
	}
	// A long stream crossing bitmap words with a gap at a word boundary.
	tr = newSeqTracker()
	for s := uint64(0); s < 1000; s++ {
		if s != 63 && s != 64 && s != 999 {
			tr.observe(s)
		}
	}
	if lost, first := tr.missing(1000, 5); lost != 3 || !reflect.DeepEqual(first, []uint64{63, 64, 999}) {
		t.Errorf("missing = %d %v, want 3 [63 64 999]", lost, first)
	}
}

// A report with a gap at QoS 1 fails the run; at QoS 0 it is noted only.
func TestBenchJudgeLoss(t *testing.T) {
	var chk streamChecker
	p := make([]byte, payloadHeader)
	for _, seq := range []uint64{0, 1, 3} {
		putPayloadHeader(p, 2, seq, 0)
		chk.observe(p)
	}
	chk.observe([]byte("short"))
	var res checkResult
	res.account(&chk, 2, 4)
	if res.Lost != 1 || res.Received != 3 || res.FirstMissed[0] != "2/2" || chk.invalid != 1 {
		t.Fatalf("check = %+v invalid %d", res, chk.invalid)
	}
	res.Invalid = 0
	for qos, wantOK := range map[int]bool{0: true, 1: false, 2: false} {
		rep := &benchReport{QoS: qos, Check: &res}
		rep.judge()
		if rep.OK != wantOK {
			t.Errorf("QoS %d: OK = %v, want %v", qos, rep.OK, wantOK)
		}
		if qos == 0 && len(rep.Notes) == 0 {
			t.Error("QoS 0 loss not noted")
		}
	}
}

func TestBenchHistogram(t *testing.T) {
	var h histogram
	for v := int64(1); v <= 100000; v++ {
		h.record(v * 1000) // 1µs .. 100ms
	}
	for _, q := range []float64{0.5, 0.99, 0.999} {
		want := q * 100000 * 1000
		got := float64(h.quantile(q))
		if got < want*0.98 || got > want*1.02 {
			t.Errorf("quantile(%v) = %v, want %v ±2%%", q, got, want)
		}
	}
	if h.quantile(1) != 100000*1000 {
		t.Errorf("quantile(1) = %d, want the max", h.quantile(1))
	}
	for v := int64(0); v < 1<<40; v = v*3 + 1 {
		if i := histIndex(v); histIndex(histValue(i)) != i {
			t.Fatalf("bucket of %d: %d, its midpoint %d lands in %d", v, i, histValue(i), histIndex(histValue(i)))
		}
	}
}

func TestBenchCommandLine(t *testing.T) {
	addr := startBenchBroker(t)
	var out, errOut bytes.Buffer
	code := run(context.Background(), func() {}, []string{"bench", "fanin", "--addr", addr, "--qos", "1", "--publishers", "2", "--count", "50", "--json"}, &out, &errOut)
	if code != exitOK {
		t.Fatalf("exit %d, stderr %s, stdout %s", code, errOut.String(), out.String())
	}
	var rep benchReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("JSON: %v\n%s", err, out.String())
	}
	if rep.Check == nil || rep.Check.Received != 100 || !rep.OK || !rep.LossIsError {
		t.Errorf("report %+v", rep)
	}
	out.Reset()
	if code := run(context.Background(), func() {}, []string{"bench", "pairs", "--addr", addr, "--pairs", "2", "--count", "10"}, &out, &errOut); code != exitOK {
		t.Fatalf("table run: exit %d", code)
	}
	for _, want := range []string{"lost", "reordered", "latency p50 / p99 / p999", "result", "OK"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	for _, bad := range [][]string{{"bench"}, {"bench", "nope"}, {"bench", "fanin", "--qos", "3"}, {"bench", "fanin", "--size", "5"}, {"bench", "backlog", "--qos", "0"}} {
		errOut.Reset()
		if code := run(context.Background(), func() {}, bad, &out, &errOut); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", bad, code, exitUsage)
		}
	}
	// Nothing listening: a client failure is exit 1.
	if code := run(context.Background(), func() {}, []string{"bench", "fanin", "--addr", "127.0.0.1:1", "--count", "1", "--connect-timeout", "1s"}, &out, &errOut); code != exitFailure {
		t.Errorf("unreachable broker: exit %d, want %d", code, exitFailure)
	}
}

// A run cut short by --time-limit is reported as incomplete and fails.
func TestBenchTimeLimit(t *testing.T) {
	addr := startBenchBroker(t)
	rep := runBenchArgs(t, "fanin", "--addr", addr, "--qos", "1", "--publishers", "2", "--duration", "10s", "--time-limit", "300ms")
	if !rep.Incomplete || rep.OK || len(rep.Errors) == 0 {
		t.Fatalf("incomplete %v ok %v errors %v", rep.Incomplete, rep.OK, rep.Errors)
	}
	if rep.Seconds > 5 {
		t.Errorf("run went on for %.1f s despite the limit", rep.Seconds)
	}
}
