package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/beaconmq/beacon/packets"
)

// beacon bench is a load generator for any MQTT 3.1.1/5.0 broker. Every
// scenario numbers each publisher's messages and stamps them with their
// send time, so a run measures throughput and latency and at the same time
// proves that nothing was lost, duplicated at QoS 2 or reordered. See
// docs/performance.md for how the numbers were taken.

const benchUsage = `Usage: beacon bench SCENARIO [flags]

Scenarios:
  fanin     N publishers (--publishers) -> 1 subscriber on a wildcard filter
  fanout    1 publisher -> M subscribers (--subscribers) of one topic
  pairs     K publisher/subscriber pairs (--pairs), a topic each
  latency   pairs (--pairs, default 1) publishing at a fixed total --rate
  conns     K idle connections (--conns) with keep-alive: connect rate and,
            with --pid, the broker's RSS per connection
  backlog   a durable session subscribes and goes offline, --count messages
            are published, then it reconnects and drains them

Each run checks every message: loss (per-publisher sequence numbers),
reordering and duplicates. The exit code is 1 when a QoS >= 1 run lost or
reordered a message (or duplicated one at QoS 2), or a client failed; QoS 0
loss is reported but allowed (at most once). 2 is a usage error.

Flags:
`

// benchConfig is the parsed command line of beacon bench.
type benchConfig struct {
	scenario     string
	addr         string
	version      packets.Version
	qos          byte
	size         int
	inflight     int
	duration     time.Duration
	count        uint64
	publishers   int
	subscribers  int
	pairs        int
	conns        int
	rate         float64
	keepAlive    time.Duration
	hold         time.Duration
	drainTimeout time.Duration
	connTimeout  time.Duration
	concurrency  int
	pid          int
	dataDir      string
	gcWait       time.Duration
	progress     bool
	json         bool
	cpuProfile   string
	timeLimit    time.Duration

	// afterPublish, when set, runs between the backlog's publish and drain
	// phases (profiling harnesses in tests).
	afterPublish func()
}

// benchError is a usage mistake (exit code 2).
type benchError struct{ msg string }

func (e *benchError) Error() string { return e.msg }

func parseBenchArgs(args []string, usageOut io.Writer) (*benchConfig, error) {
	c := &benchConfig{}
	fs := flag.NewFlagSet("beacon bench", flag.ContinueOnError)
	fs.SetOutput(usageOut)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), benchUsage)
		fs.PrintDefaults()
	}
	var version string
	var qos int
	fs.StringVar(&c.addr, "addr", "127.0.0.1:1883", "broker address host:port")
	fs.StringVar(&version, "version", "5", "MQTT version: 3.1.1 or 5")
	fs.IntVar(&qos, "qos", 0, "QoS of publications and subscriptions: 0, 1 or 2")
	fs.IntVar(&c.size, "size", 64, "payload size in bytes (at least 20: sequence number and timestamp)")
	fs.IntVar(&c.inflight, "inflight", 256, "in-flight window per publisher for QoS 1/2 (capped by the broker's Receive Maximum)")
	fs.DurationVar(&c.duration, "duration", 5*time.Second, "how long each publisher publishes (ignored with --count)")
	fs.Uint64Var(&c.count, "count", 0, "messages per publisher instead of --duration; backlog: total messages (default 100000)")
	fs.IntVar(&c.publishers, "publishers", 0, "publishers of fanin (default 8) and backlog (default 1)")
	fs.IntVar(&c.subscribers, "subscribers", 100, "subscribers of fanout")
	fs.IntVar(&c.pairs, "pairs", 0, "publisher/subscriber pairs of pairs (default 100) and latency (default 1)")
	fs.IntVar(&c.conns, "conns", 1000, "idle connections of conns")
	fs.Float64Var(&c.rate, "rate", 5000, "latency: total messages per second over all publishers")
	fs.DurationVar(&c.keepAlive, "keepalive", 30*time.Second, "keep alive of every connection (pinged at half of it)")
	fs.DurationVar(&c.hold, "hold", 2*time.Second, "conns: how long connections stay idle before the broker's RSS is read")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", 10*time.Second, "give up waiting for messages or acknowledgements after this long without progress")
	fs.DurationVar(&c.connTimeout, "connect-timeout", 10*time.Second, "timeout of one connection attempt")
	fs.IntVar(&c.concurrency, "connect-concurrency", 32, "connections opened in parallel")
	fs.IntVar(&c.pid, "pid", 0, "broker process id: report its RSS (conns, backlog) from /proc/PID/status")
	fs.StringVar(&c.dataDir, "data-dir", "", "backlog: broker data directory whose disk usage is reported before and after")
	fs.DurationVar(&c.gcWait, "gc-wait", 0, "backlog: after draining, wait this long (not cut by --time-limit) and report the data directory again")
	fs.BoolVar(&c.progress, "progress", false, "print a progress line on stderr even when it is not a terminal")
	fs.BoolVar(&c.json, "json", false, "print the report as JSON instead of a table")
	fs.DurationVar(&c.timeLimit, "time-limit", 0, "stop the whole run after this long and report it as incomplete, with the rates measured so far (0 = no limit)")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the load generator to this file (to check it is not the bottleneck)")

	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		c.scenario, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if c.scenario == "" && fs.NArg() > 0 {
		c.scenario = fs.Arg(0)
		fs.Parse(fs.Args()[1:])
	}
	if fs.NArg() > 0 {
		return nil, &benchError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	switch c.scenario {
	case "fanin", "fanout", "pairs", "latency", "conns", "backlog":
	case "":
		return nil, &benchError{"missing scenario: fanin, fanout, pairs, latency, conns or backlog"}
	default:
		return nil, &benchError{fmt.Sprintf("unknown scenario %q: use fanin, fanout, pairs, latency, conns or backlog", c.scenario)}
	}
	switch version {
	case "3.1.1", "311", "4":
		c.version = packets.V311
	case "5", "5.0":
		c.version = packets.V5
	default:
		return nil, &benchError{fmt.Sprintf("--version %q: use 3.1.1 or 5", version)}
	}
	if qos < 0 || qos > 2 {
		return nil, &benchError{fmt.Sprintf("--qos %d: use 0, 1 or 2", qos)}
	}
	c.qos = byte(qos)
	if c.size < payloadHeader {
		return nil, &benchError{fmt.Sprintf("--size %d: at least %d bytes (publisher, sequence number, timestamp)", c.size, payloadHeader)}
	}
	if c.inflight < 1 || c.inflight > 65535 {
		return nil, &benchError{fmt.Sprintf("--inflight %d: use 1..65535", c.inflight)}
	}
	if c.count == 0 && c.duration <= 0 {
		return nil, &benchError{"--duration must be positive (or give --count)"}
	}
	if c.keepAlive < 2*time.Second || c.keepAlive > 65535*time.Second {
		return nil, &benchError{fmt.Sprintf("--keepalive %v: use 2s..18h", c.keepAlive)}
	}
	if c.concurrency < 1 {
		c.concurrency = 1
	}
	switch c.scenario {
	case "fanin":
		if c.publishers == 0 {
			c.publishers = 8
		}
	case "backlog":
		if c.publishers == 0 {
			c.publishers = 1
		}
		if c.count == 0 {
			c.count = 100000
		}
		if c.qos == 0 {
			return nil, &benchError{"backlog needs --qos 1 or 2: QoS 0 messages are not queued for offline sessions"}
		}
	case "pairs":
		if c.pairs == 0 {
			c.pairs = 100
		}
	case "latency":
		if c.pairs == 0 {
			c.pairs = 1
		}
		if c.rate <= 0 {
			return nil, &benchError{"--rate must be positive"}
		}
	}
	if c.publishers < 0 || c.subscribers < 1 || c.pairs < 0 || c.conns < 1 {
		return nil, &benchError{"--publishers, --subscribers, --pairs and --conns must be positive"}
	}
	return c, nil
}

// bench runs `beacon bench` and returns the exit code.
func bench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseBenchArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		var be *benchError
		if errors.As(err, &be) {
			fmt.Fprintf(stderr, "beacon bench: %v (run \"beacon bench -h\" for help)\n", err)
		}
		return exitUsage
	}
	if !cfg.progress {
		if f, ok := stderr.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				cfg.progress = true
			}
		}
	}
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "beacon bench: %v\n", err)
			return exitFailure
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "beacon bench: %v\n", err)
			return exitFailure
		}
		defer pprof.StopCPUProfile()
	}
	rep := runBench(ctx, cfg, stderr)
	if cfg.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		rep.writeTable(stdout)
	}
	if !rep.OK {
		return exitFailure
	}
	return exitOK
}

// runBench runs the configured scenario and judges the outcome.
func runBench(ctx context.Context, cfg *benchConfig, progressOut io.Writer) *benchReport {
	rep := &benchReport{
		Scenario: cfg.scenario,
		Addr:     cfg.addr,
		Version:  versionName(cfg.version),
		QoS:      int(cfg.qos),
		Size:     cfg.size,
		Inflight: cfg.inflight,
	}
	if cfg.timeLimit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.timeLimit)
		defer cancel()
	}
	var err error
	switch cfg.scenario {
	case "conns":
		rep.Size, rep.Inflight, rep.QoS = 0, 0, 0
		err = runConns(ctx, cfg, rep, progressOut)
	case "backlog":
		err = runBacklog(ctx, cfg, rep, progressOut)
	default:
		err = runFlow(ctx, cfg, planFor(cfg), rep, progressOut)
	}
	if err != nil {
		rep.Errors = append(rep.Errors, err.Error())
	}
	if cfg.scenario != "backlog" && ctx.Err() != nil {
		rep.Incomplete = true // backlog decides before its --gc-wait
	}
	if rep.Incomplete {
		// Messages not yet delivered when the run was cut short are not
		// known to be lost: the figures are partial.
		rep.Errors = append(rep.Errors, "run interrupted ("+fmt.Sprint(context.Cause(ctx))+"): figures are partial and undelivered messages count as lost")
	}
	rep.judge()
	return rep
}

func versionName(v packets.Version) string {
	if v == packets.V5 {
		return "5.0"
	}
	return "3.1.1"
}
