package mqtt

import (
	"sync"
	"sync/atomic"
)

// Log append notifications. Readers of the log outside the publish path
// (bridges) wait on LogAppended instead of polling the store: the channel
// it returns is closed by the next successful append, so any number of
// readers wake up at once and none is woken for nothing. A reader takes a
// fresh channel before each scan of the log, so an append that lands while
// it scans is never missed.
//
// The state lives in a package-level table keyed by server rather than in
// Server itself, so that the publish path pays for it only once a reader
// registered (one atomic load otherwise). A server's entry is removed when
// it shuts down. logWatch.mu is a leaf lock: nothing is locked while it is
// held; notifyLogAppended runs with gcMu held for reading.

type logWatch struct {
	taken atomic.Bool // ch was handed out since it was made
	mu    sync.Mutex
	ch    chan struct{}
}

var (
	logWatches  sync.Map     // *Server -> *logWatch
	logWatchers atomic.Int32 // servers with an entry in logWatches
)

// LogAppended returns a channel that is closed the next time a message is
// appended to the log (every QoS 1/2 publish, dead letters included). Take
// the channel before reading the log, then read, then wait on it: an append
// between the two is then seen either by the read or by the channel.
func (s *Server) LogAppended() <-chan struct{} {
	v, ok := logWatches.Load(s)
	if !ok {
		var loaded bool
		v, loaded = logWatches.LoadOrStore(s, &logWatch{ch: make(chan struct{})})
		if !loaded {
			logWatchers.Add(1)
			go func() { // drop the entry with the server
				<-s.quit
				logWatches.Delete(s)
				logWatchers.Add(-1)
			}()
		}
	}
	w := v.(*logWatch)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.taken.Store(true)
	return w.ch
}

// notifyLogAppended wakes the readers waiting on LogAppended. The publish
// path calls it after every successful append.
func (s *Server) notifyLogAppended() {
	if logWatchers.Load() == 0 {
		return
	}
	v, ok := logWatches.Load(s)
	if !ok {
		return
	}
	w := v.(*logWatch)
	if !w.taken.Load() {
		return // nobody holds the current channel: nothing to wake
	}
	w.mu.Lock()
	if w.taken.Load() {
		close(w.ch)
		w.ch = make(chan struct{})
		w.taken.Store(false)
	}
	w.mu.Unlock()
}
