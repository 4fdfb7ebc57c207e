package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// runConns opens cfg.conns idle connections with keep-alive, measures how
// fast the broker accepts them and, with --pid, how much resident memory
// each one costs it. The connections have no goroutines on our side: a
// single pinger writes PINGREQ at half the keep-alive, and at the end every
// connection must answer a PINGREQ to count as alive.
func runConns(ctx context.Context, cfg *benchConfig, rep *benchReport, progressOut io.Writer) error {
	cr := &connsReport{Requested: cfg.conns}
	rep.Conns = cr
	if limit, err := raiseFileLimit(); err == nil && uint64(cfg.conns)+32 > limit {
		rep.Notes = append(rep.Notes, fmt.Sprintf("this process may open at most %d files: expect about %d connections to succeed", limit, limit-32))
	}
	if cfg.pid > 0 {
		v, err := readRSS(cfg.pid)
		if err != nil {
			return fmt.Errorf("--pid %d: %w", cfg.pid, err)
		}
		cr.RSSBefore = v
	}
	id := runID()
	conns := make([]*benchConn, cfg.conns)
	var next, connected atomic.Int64
	var failed atomic.Bool
	var firstErr atomic.Value
	prog := startProgress(cfg.progress, progressOut, "bench conns", func() string {
		return "connected " + strconv.FormatInt(connected.Load(), 10)
	})
	start := time.Now()
	var wg sync.WaitGroup
	for range cfg.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() && ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= cfg.conns {
					return
				}
				c, err := dialMQTT(ctx, cfg.opts("bench-"+id+"-c"+strconv.Itoa(i), 16))
				if err != nil {
					firstErr.CompareAndSwap(nil, fmt.Sprintf("connection %d: %v", i, err))
					failed.Store(true)
					return
				}
				conns[i] = c
				connected.Add(1)
			}
		}()
	}
	wg.Wait()
	cr.ConnectSecs = time.Since(start).Seconds()
	cr.Connected = int(connected.Load())
	if cr.ConnectSecs > 0 {
		cr.ConnectRate = float64(cr.Connected) / cr.ConnectSecs
	}
	if e, ok := firstErr.Load().(string); ok {
		cr.FirstError = e
	}

	// Hold the connections idle, pinging them, then read the broker's RSS.
	stop := make(chan struct{})
	pingDone := make(chan struct{})
	go func() {
		defer close(pingDone)
		t := time.NewTicker(cfg.keepAlive / 2)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				for _, c := range conns {
					if c != nil {
						c.ping(time.Second)
					}
				}
			}
		}
	}()
	select {
	case <-time.After(cfg.hold):
	case <-ctx.Done():
	}
	close(stop)
	<-pingDone
	if cfg.pid > 0 && cr.Connected > 0 {
		if v, err := readRSS(cfg.pid); err == nil {
			cr.RSSAfter = v
			cr.BytesPerConn = float64(v-cr.RSSBefore) / float64(cr.Connected)
		}
	}

	// Every connection must still answer a PINGREQ.
	var alive atomic.Int64
	var idx atomic.Int64
	for range cfg.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(idx.Add(1) - 1)
				if i >= len(conns) {
					return
				}
				if c := conns[i]; c != nil && c.checkAlive(5*time.Second) == nil {
					alive.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	prog.end()
	cr.Alive = int(alive.Load())
	for _, c := range conns {
		if c != nil {
			c.nc.Write([]byte{0xE0, 0}) // DISCONNECT
			c.nc.Close()
		}
	}
	if cr.Connected < cr.Requested {
		return fmt.Errorf("only %d of %d connections succeeded", cr.Connected, cr.Requested)
	}
	if cr.Alive < cr.Connected {
		return fmt.Errorf("%d of %d connections did not answer PINGREQ at the end", cr.Connected-cr.Alive, cr.Connected)
	}
	return nil
}
