package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beaconmq/beacon/packets"
)

// backlogSessionExpiry is the 5.0 Session Expiry Interval of the offline
// subscriber: long enough to outlive any run.
const backlogSessionExpiry = 3600

// runBacklog measures the offline-queue path: a durable session (5.0
// Session Expiry > 0; 3.1.1 Clean Session 0) subscribes and disconnects,
// cfg.count messages are published to it, and then it reconnects and
// drains them. Every message must arrive, once (QoS 2) and in order. At the
// end the session is discarded with a clean connect so nothing is left on
// the broker.
func runBacklog(ctx context.Context, cfg *benchConfig, rep *benchReport, progressOut io.Writer) error {
	id := runID()
	base := "bench/" + id + "/backlog"
	br := &backlogReport{Messages: cfg.count}
	rep.Backlog = br
	rep.Publishers, rep.Subscribers = cfg.publishers, 1

	subOpts := cfg.opts("bench-"+id+"-backlog", 64<<10)
	subOpts.cleanStart = cfg.version == packets.V5 // 3.1.1: Clean Session 0 from the start
	subOpts.sessionExpiry = backlogSessionExpiry
	sub, err := dialMQTT(ctx, subOpts)
	if err != nil {
		return fmt.Errorf("subscriber: %w", err)
	}
	sub.start(0)
	if err := sub.subscribe(ctx, base+"/#", cfg.qos, cfg.connTimeout); err != nil {
		sub.close()
		return fmt.Errorf("subscriber: %w", err)
	}
	sub.close()
	defer discardSession(cfg, subOpts)

	if cfg.pid > 0 {
		v, err := readRSS(cfg.pid)
		if err != nil {
			return fmt.Errorf("--pid %d: %w", cfg.pid, err)
		}
		br.RSSBefore = v
	}
	disk := func(dst *int64) {
		if cfg.dataDir == "" {
			return
		}
		if v, err := diskUsage(cfg.dataDir); err == nil {
			*dst = v
		} else {
			rep.Notes = append(rep.Notes, "data dir: "+err.Error())
		}
	}
	disk(&br.DiskBefore)

	// Publish phase.
	sampler := sampleRSS(cfg.pid)
	pubs, err := connectAll(ctx, cfg, cfg.publishers, func(i int) clientOpts {
		return cfg.opts("bench-"+id+"-p"+strconv.Itoa(i), 64<<10)
	}, func(i int, c *benchConn) error { c.start(cfg.inflight); return nil })
	if err != nil {
		sampler.end()
		return fmt.Errorf("publishers: %w", err)
	}
	sent := make([]atomic.Uint64, cfg.publishers)
	var received atomic.Uint64
	phase := atomic.Value{}
	phase.Store("publish")
	prog := startProgress(cfg.progress, progressOut, "bench backlog", func() string {
		var s uint64
		for i := range sent {
			s += sent[i].Load()
		}
		return fmt.Sprintf("%s: published %s, drained %s of %s", phase.Load(), human(float64(s)), human(float64(received.Load())), human(float64(cfg.count)))
	})
	defer prog.end()
	start := time.Now()
	errs := make([]error, cfg.publishers)
	var wg sync.WaitGroup
	for i, c := range pubs {
		n := cfg.count / uint64(cfg.publishers)
		if uint64(i) < cfg.count%uint64(cfg.publishers) {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = publishLoop(ctx, cfg, c, uint32(i), base+"/"+strconv.Itoa(i), n, start, time.Time{}, 0, &sent[i])
			if errs[i] == nil {
				errs[i] = c.waitIdle(ctx, cfg.drainTimeout)
			}
			if errs[i] == nil && c.rejected.Load() > 0 {
				errs[i] = fmt.Errorf("broker refused %d messages with a reason code", c.rejected.Load())
			}
		}()
	}
	wg.Wait()
	br.PublishSecs = time.Since(start).Seconds()
	closeAll(pubs)
	br.RSSPeakPublish = sampler.end()
	var total uint64
	for i := range sent {
		total += sent[i].Load()
	}
	rep.Sent, rep.Seconds = total, br.PublishSecs
	if br.PublishSecs > 0 {
		br.PublishRate = float64(total) / br.PublishSecs
		rep.PublishRate = br.PublishRate
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	disk(&br.DiskPublished)
	if cfg.afterPublish != nil {
		cfg.afterPublish()
	}

	// Drain phase: reconnect to the session and take everything.
	phase.Store("drain")
	sampler = sampleRSS(cfg.pid)
	s := &flowSub{}
	subOpts.cleanStart = false
	drainStart := nowNanos()
	sub, err = dialMQTT(ctx, subOpts)
	if err != nil {
		sampler.end()
		return fmt.Errorf("reconnecting subscriber: %w", err)
	}
	br.SessionPresent = sub.sessionPresent
	if !sub.sessionPresent {
		rep.Notes = append(rep.Notes, "the broker did not report the session as present on reconnect")
	}
	s.c = sub
	sub.onMessage = func(p *packets.Publish) {
		s.onMessage(p)
		received.Store(s.got.Load())
	}
	sub.start(0)
	lastProgress, lastN := time.Now(), uint64(0)
	for ctx.Err() == nil && s.got.Load() < total {
		if n := s.got.Load(); n != lastN {
			lastN, lastProgress = n, time.Now()
		} else if time.Since(lastProgress) > cfg.drainTimeout {
			rep.Notes = append(rep.Notes, fmt.Sprintf("stopped draining after %v without progress", cfg.drainTimeout))
			break
		}
		if sub.Err() != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	subErr := sub.Err()
	sub.close()
	br.RSSPeakDrain = sampler.end()
	if cfg.pid > 0 {
		br.RSSAfter, _ = readRSS(cfg.pid)
	}
	if secs := float64(s.lastRecv.Load()-drainStart) / 1e9; secs > 0 {
		br.DrainSecs = secs
		br.DrainRate = float64(s.got.Load()) / secs
	}
	var res checkResult
	for i := range sent {
		res.account(&s.chk, i, sent[i].Load())
	}
	res.Invalid = s.chk.invalid
	rep.Check = &res
	rep.Received = res.Received
	rep.ReceiveRate = br.DrainRate
	rep.ReceiveMBps = br.DrainRate * float64(cfg.size) / 1e6
	disk(&br.DiskDrained)
	rep.Incomplete = ctx.Err() != nil
	if cfg.gcWait > 0 && cfg.dataDir != "" {
		phase.Store("waiting for storage GC")
		time.Sleep(cfg.gcWait)
		br.GCWaitSecs = cfg.gcWait.Seconds()
		disk(&br.DiskLater)
	}
	if subErr != nil {
		return fmt.Errorf("subscriber: %w", subErr)
	}
	return nil
}

// discardSession connects once with a clean start (5.0: and session
// expiry 0) so the broker drops the benchmark's durable session.
func discardSession(cfg *benchConfig, o clientOpts) {
	o.cleanStart = true
	o.sessionExpiry = 0
	ctx, cancel := context.WithTimeout(context.Background(), cfg.connTimeout)
	defer cancel()
	if c, err := dialMQTT(ctx, o); err == nil {
		c.start(0)
		c.close()
	}
}
