package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beaconmq/beacon/packets"
)

// flowPlan is the shape of a publish/subscribe scenario: who publishes on
// which topic and which publishers each subscriber hears.
type flowPlan struct {
	pubTopics  []string
	subFilters []string
	sources    [][]int // per subscriber, the publishers whose messages it must get
	rate       float64 // total messages/s over all publishers; 0 = as fast as possible
}

// runID keeps topics and client identifiers of concurrent or earlier runs
// apart (leftover sessions or retained state cannot leak into a run).
func runID() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func planFor(cfg *benchConfig) flowPlan {
	base := "bench/" + runID() + "/" + cfg.scenario
	var p flowPlan
	switch cfg.scenario {
	case "fanin":
		all := make([]int, cfg.publishers)
		for i := range cfg.publishers {
			p.pubTopics = append(p.pubTopics, base+"/"+strconv.Itoa(i))
			all[i] = i
		}
		p.subFilters = []string{base + "/+"}
		p.sources = [][]int{all}
	case "fanout":
		p.pubTopics = []string{base}
		for range cfg.subscribers {
			p.subFilters = append(p.subFilters, base)
			p.sources = append(p.sources, []int{0})
		}
	case "pairs", "latency":
		for i := range cfg.pairs {
			t := base + "/" + strconv.Itoa(i)
			p.pubTopics = append(p.pubTopics, t)
			p.subFilters = append(p.subFilters, t)
			p.sources = append(p.sources, []int{i})
		}
		if cfg.scenario == "latency" {
			p.rate = cfg.rate
		}
	}
	return p
}

// flowSub is one subscriber with its checker, owned by its reader
// goroutine until the connection is closed.
type flowSub struct {
	c        *benchConn
	chk      streamChecker
	hist     histogram
	got      atomic.Uint64 // first arrivals
	lastRecv atomic.Int64  // nowNanos of the latest first arrival
}

func (s *flowSub) onMessage(p *packets.Publish) {
	sent, first := s.chk.observe(p.Payload)
	if !first {
		return
	}
	now := nowNanos()
	s.hist.record(now - sent)
	s.got.Add(1)
	s.lastRecv.Store(now)
}

// readBufFor sizes per-connection read buffers so thousands of connections
// stay cheap while a few busy ones read in large chunks.
func readBufFor(conns int) int {
	if conns <= 64 {
		return 64 << 10
	}
	return 8 << 10
}

func (cfg *benchConfig) opts(clientID string, readBuf int) clientOpts {
	return clientOpts{
		addr:       cfg.addr,
		version:    cfg.version,
		clientID:   clientID,
		cleanStart: true,
		keepAlive:  uint16(cfg.keepAlive / time.Second),
		receiveMax: 65535,
		timeout:    cfg.connTimeout,
		readBuf:    readBuf,
	}
}

// connectAll opens n connections, at most cfg.concurrency at a time. On
// the first failure it closes what it opened and returns the error.
func connectAll(ctx context.Context, cfg *benchConfig, n int, opts func(i int) clientOpts, setup func(i int, c *benchConn) error) ([]*benchConn, error) {
	conns := make([]*benchConn, n)
	errs := make([]error, n)
	sem := make(chan struct{}, cfg.concurrency)
	var wg sync.WaitGroup
	var failed atomic.Bool
	for i := range n {
		sem <- struct{}{}
		if failed.Load() {
			<-sem
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := dialMQTT(ctx, opts(i))
			if err == nil && setup != nil {
				conns[i] = c
				err = setup(i, c)
			}
			if err != nil {
				errs[i] = err
				failed.Store(true)
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		closeAll(conns)
		return nil, err
	}
	return conns, nil
}

// closeAll disconnects every connection in parallel.
func closeAll(conns []*benchConn) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for _, c := range conns {
		if c == nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() { defer func() { <-sem; wg.Done() }(); c.close() }()
	}
	wg.Wait()
}

// keepAlive sends PINGREQ on every connection at half the keep-alive
// interval, until stop is closed.
func keepAlive(conns []*benchConn, every time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			for _, c := range conns {
				if c != nil {
					c.enqueue(&packets.Pingreq{})
				}
			}
		}
	}
}

// progressLine prints a live status line every second once a run has gone
// on for 2 s; on a terminal it rewrites one line.
type progressLine struct {
	out  io.Writer
	stop chan struct{}
	done chan struct{}
}

func startProgress(enabled bool, out io.Writer, name string, status func() string) *progressLine {
	p := &progressLine{out: out, stop: make(chan struct{}), done: make(chan struct{})}
	if !enabled {
		close(p.done)
		return p
	}
	go func() {
		defer close(p.done)
		start := time.Now()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		printed := false
		for {
			select {
			case <-p.stop:
				if printed {
					fmt.Fprintf(out, "\r\033[K")
				}
				return
			case <-t.C:
				el := time.Since(start)
				if el < 2*time.Second {
					continue
				}
				fmt.Fprintf(out, "\r\033[K%s %4.0fs  %s", name, el.Seconds(), status())
				printed = true
			}
		}
	}()
	return p
}

func (p *progressLine) end() {
	select {
	case <-p.done:
	default:
		close(p.stop)
		<-p.done
	}
}

// runFlow runs a publish/subscribe scenario: connect and subscribe every
// subscriber, connect the publishers, publish for the duration or count,
// wait for every acknowledgement and for the subscribers to receive what
// was sent, then check every stream.
func runFlow(ctx context.Context, cfg *benchConfig, plan flowPlan, rep *benchReport, progressOut io.Writer) error {
	nPub, nSub := len(plan.pubTopics), len(plan.subFilters)
	rep.Publishers, rep.Subscribers, rep.TargetRate = nPub, nSub, plan.rate
	id := runID()
	readBuf := readBufFor(nPub + nSub)

	subs := make([]*flowSub, nSub)
	subConns, err := connectAll(ctx, cfg, nSub, func(i int) clientOpts {
		return cfg.opts("bench-"+id+"-s"+strconv.Itoa(i), readBuf)
	}, func(i int, c *benchConn) error {
		s := &flowSub{c: c}
		subs[i] = s
		c.onMessage = s.onMessage
		c.start(0)
		return c.subscribe(ctx, plan.subFilters[i], cfg.qos, cfg.connTimeout)
	})
	if err != nil {
		return fmt.Errorf("subscribers: %w", err)
	}
	pubConns, err := connectAll(ctx, cfg, nPub, func(i int) clientOpts {
		return cfg.opts("bench-"+id+"-p"+strconv.Itoa(i), readBuf)
	}, func(i int, c *benchConn) error {
		w := 0
		if cfg.qos > 0 {
			w = cfg.inflight
		}
		c.start(w)
		return nil
	})
	if err != nil {
		closeAll(subConns)
		return fmt.Errorf("publishers: %w", err)
	}
	all := append(append([]*benchConn{}, subConns...), pubConns...)
	stopPing := make(chan struct{})
	go keepAlive(all, cfg.keepAlive/2, stopPing)

	sent := make([]atomic.Uint64, nPub)
	totalGot := func() (n uint64) {
		for _, s := range subs {
			n += s.got.Load()
		}
		return n
	}
	totalSent := func() (n uint64) {
		for i := range sent {
			n += sent[i].Load()
		}
		return n
	}
	var lastSent, lastGot uint64
	prog := startProgress(cfg.progress, progressOut, "bench "+cfg.scenario, func() string {
		s, g := totalSent(), totalGot()
		line := fmt.Sprintf("sent %s (%s/s)  received %s (%s/s)", human(float64(s)), human(float64(s-lastSent)), human(float64(g)), human(float64(g-lastGot)))
		lastSent, lastGot = s, g
		return line
	})

	start := time.Now()
	startNs := nowNanos()
	deadline := start.Add(cfg.duration)
	perPubRate := plan.rate / float64(nPub)
	pubErrs := make([]error, nPub)
	var wg sync.WaitGroup
	for i, c := range pubConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pubErrs[i] = publishLoop(ctx, cfg, c, uint32(i), plan.pubTopics[i], cfg.count, start, deadline, perPubRate, &sent[i])
			if pubErrs[i] == nil {
				pubErrs[i] = c.waitIdle(ctx, cfg.drainTimeout)
			}
		}()
	}
	wg.Wait()
	pubSecs := time.Since(start).Seconds()

	// Wait until every subscriber has what it should, or nothing has come
	// in for drainTimeout.
	expected := make([]uint64, nSub)
	var want uint64
	for i, src := range plan.sources {
		for _, p := range src {
			expected[i] += sent[p].Load()
		}
		want += expected[i]
	}
	lastProgress, lastN := time.Now(), totalGot()
	for ctx.Err() == nil {
		done := true
		for i, s := range subs {
			if s.got.Load() < expected[i] {
				done = false
				break
			}
		}
		if done {
			break
		}
		if n := totalGot(); n != lastN {
			lastN, lastProgress = n, time.Now()
		} else if time.Since(lastProgress) > cfg.drainTimeout {
			rep.Notes = append(rep.Notes, fmt.Sprintf("stopped waiting for deliveries after %v without progress", cfg.drainTimeout))
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	prog.end()
	close(stopPing)

	var connErrs []error
	for i, c := range pubConns {
		if pubErrs[i] != nil {
			connErrs = append(connErrs, fmt.Errorf("publisher %d: %w", i, pubErrs[i]))
		} else if err := c.Err(); err != nil {
			connErrs = append(connErrs, fmt.Errorf("publisher %d: %w", i, err))
		}
		if n := c.rejected.Load(); n > 0 {
			connErrs = append(connErrs, fmt.Errorf("publisher %d: broker refused %d messages with a reason code", i, n))
		}
	}
	for i, s := range subs {
		if err := s.c.Err(); err != nil {
			connErrs = append(connErrs, fmt.Errorf("subscriber %d: %w", i, err))
		}
	}
	closeAll(all) // joins the reader goroutines: the checkers are ours now

	var res checkResult
	var hist histogram
	var lastRecv int64
	for i, s := range subs {
		for _, p := range plan.sources[i] {
			res.account(&s.chk, p, sent[p].Load())
		}
		res.Invalid += s.chk.invalid
		hist.merge(&s.hist)
		if lr := s.lastRecv.Load(); lr > lastRecv {
			lastRecv = lr
		}
	}
	rep.Check = &res
	rep.Sent = totalSent()
	rep.Seconds = pubSecs
	if pubSecs > 0 {
		rep.PublishRate = float64(rep.Sent) / pubSecs
	}
	rep.Received = res.Received
	if secs := float64(lastRecv-startNs) / 1e9; secs > 0 {
		rep.ReceiveRate = float64(res.Received) / secs
		rep.ReceiveMBps = float64(res.Received) * float64(cfg.size) / secs / 1e6
	}
	rep.Latency = latencyFrom(&hist)
	if want != res.Expected {
		rep.Notes = append(rep.Notes, "expected count changed while checking")
	}
	if len(connErrs) > 3 {
		connErrs = append(connErrs[:3], fmt.Errorf("and %d more client errors", len(connErrs)-3))
	}
	return errors.Join(connErrs...)
}

// publishLoop publishes numbered messages on topic until count messages
// (count > 0) or the deadline, at rate messages/s when rate > 0.
func publishLoop(ctx context.Context, cfg *benchConfig, c *benchConn, pub uint32, topic string, count uint64, start, deadline time.Time, rate float64, sent *atomic.Uint64) error {
	payload := make([]byte, cfg.size)
	for i := payloadHeader; i < len(payload); i++ {
		payload[i] = byte('a' + i%26)
	}
	p := &packets.Publish{Topic: topic, QoS: cfg.qos, Payload: payload}
	for seq := uint64(0); ; seq++ {
		if count > 0 {
			if seq >= count {
				return nil
			}
		} else if !time.Now().Before(deadline) {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if rate > 0 {
			due := start.Add(time.Duration(float64(seq) / rate * 1e9))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
		putPayloadHeader(payload, pub, seq, nowNanos())
		if err := c.publish(ctx, p); err != nil {
			return err
		}
		sent.Store(seq + 1)
	}
}
