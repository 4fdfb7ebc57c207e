// Package mqtt is Beacon's MQTT 3.1, 3.1.1 and 5.0 server: listeners (TCP,
// WebSocket), one reader and one writer goroutine per connection, CONNECT
// handling, routing through the topic tree, retained messages, shared
// subscriptions, wills, session expiry and $SYS. Session state lives in
// package session, persistence in package storage. See LOCKS.md for the
// lock order and docs/architecture.md for the data flow.
package mqtt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/beaconmq/beacon/mqtt/topics"
	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/session"
	"github.com/beaconmq/beacon/storage"
)

// Server is one MQTT broker. Create it with New, run it with Start, stop it
// with Shutdown.
type Server struct {
	opts     Options
	log      *slog.Logger
	store    storage.Store
	ownStore bool
	stats    Stats
	sys      sysStats
	started  time.Time

	tree     *topics.Tree[subValue]
	retained *topics.Index[*storage.Message]
	picker   *sharedPicker
	sched    *scheduler

	mu       sync.Mutex // guards the fields below; see LOCKS.md
	sessions map[string]*sessEntry
	clients  map[*client]struct{}
	closing  bool

	auth atomic.Pointer[authConfig] // password file, ACL; swapped by Reload (auth.go)

	mqttLn, wsLn net.Listener
	tlsLn, wssLn net.Listener // MQTT and WebSocket over TLS (tls.go)
	tls          tlsState     // current TLS configuration (tls.go)
	limits       connLimits   // connection counts and connect rates (limits.go)
	httpSrv      *http.Server
	httpLn       net.Listener
	adminRoutes  []adminRoute // added by HandleAdmin before Start (http.go)
	metrics      *prometheus.Registry
	quit         chan struct{}

	// Log garbage collection (loggc.go).
	gc         logHolds
	gcMu       sync.RWMutex // publish path: read; computing a collection bound: write
	gcRun      sync.Mutex   // one collection at a time
	gcInterval time.Duration
	retMu      sync.Mutex
	retSeq     map[string]uint64   // topic -> log seq of its retained message (QoS > 0)
	dlq        chan deadLetterItem // dead letters waiting for dlqLoop
	dl         dlqState            // dead-letter index and replay (deadletter.go)
	delayed    delayedState        // delayed publish schedule (delayed.go)
	wg         sync.WaitGroup      // every goroutine the server starts
}

// sessEntry ties a client identifier to its session and, while it is
// connected, to the connection that owns it. gen increases on every
// connection so that delayed jobs can tell whether they are stale.
type sessEntry struct {
	sess *session.Session
	cl   *client
	gen  uint64
}

// subValue is what the topic tree stores per subscription.
type subValue struct {
	sess *session.Session
	sub  storage.Subscription
}

// New validates opts and returns a Server that is not yet listening.
func New(opts Options) (*Server, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("mqtt: invalid options: %w", err)
	}
	def, _ := parseSharedStrategy(opts.SharedStrategy)
	per := make(map[string]sharedStrategy, len(opts.SharedStrategies))
	for g, st := range opts.SharedStrategies {
		per[g], _ = parseSharedStrategy(st)
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger,
		store:    opts.Store,
		tree:     topics.New[subValue](opts.TopicCacheSize),
		retained: topics.NewIndex[*storage.Message](),
		picker:   newSharedPicker(def, per),
		sched:    newScheduler(),
		sessions: make(map[string]*sessEntry),
		clients:  make(map[*client]struct{}),
		quit:     make(chan struct{}),
		dlq:      make(chan deadLetterItem, dlqQueueSize),
		retSeq:   make(map[string]uint64),
		metrics:  prometheus.NewRegistry(),
	}
	s.gcInterval = opts.LogGCInterval
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.store == nil {
		s.store = storage.NewMemory()
		s.ownStore = true
	}
	if err := s.initAuth(); err != nil { // auth.go
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	s.initSys()
	return s, nil
}

// Stats returns the server's live counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Start restores persisted sessions and retained messages, binds the
// listeners and starts serving. On error nothing is left running.
func (s *Server) Start() error {
	s.mu.Lock()
	if !s.started.IsZero() || s.closing {
		s.mu.Unlock()
		return errors.New("mqtt: Start called twice, or after Shutdown")
	}
	s.started = time.Now()
	s.mu.Unlock()
	if err := s.restore(); err != nil {
		return fmt.Errorf("mqtt: restoring state: %w", err)
	}
	var err error
	if s.opts.MQTTAddr != "" {
		if s.mqttLn, err = net.Listen("tcp", s.opts.MQTTAddr); err != nil {
			return fmt.Errorf("mqtt: listening on MQTTAddr %s: %w", s.opts.MQTTAddr, err)
		}
	}
	if s.opts.WSAddr != "" {
		if s.wsLn, err = listenWS(s.opts.WSAddr, s.log); err != nil {
			s.closeListeners()
			return fmt.Errorf("mqtt: listening on WSAddr %s: %w", s.opts.WSAddr, err)
		}
	}
	if err = s.startTLS(); err != nil {
		s.closeListeners()
		return fmt.Errorf("mqtt: loading TLS files: %w", err)
	}
	if err = s.listenTLS(); err != nil { // tls.go
		s.closeListeners()
		return err
	}
	if s.opts.HTTPAddr != "" {
		if s.httpLn, err = net.Listen("tcp", s.opts.HTTPAddr); err != nil {
			s.closeListeners()
			return fmt.Errorf("mqtt: listening on HTTPAddr %s: %w", s.opts.HTTPAddr, err)
		}
		mux := s.httpMux() // http.go
		s.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		s.goTracked(func() {
			if err := s.httpSrv.Serve(s.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				s.log.Error("http server stopped", "err", err)
			}
		})
	}
	s.goTracked(func() { s.sched.run(s.quit) })
	s.goTracked(s.dlqLoop)
	s.startDelayed() // publishes what fell due while the broker was down
	for _, ln := range []net.Listener{s.mqttLn, s.wsLn, s.tlsLn, s.wssLn} {
		if ln != nil {
			s.goTracked(func() { s.acceptLoop(ln) })
		}
	}
	if s.opts.SysInterval > 0 {
		s.goTracked(s.sysLoop)
	}
	if s.gcInterval > 0 {
		s.goTracked(s.gcLoop)
	}
	s.log.Info("beacon listening", "mqtt", s.MQTTAddr(), "ws", s.WSAddr(), "tls", s.TLSAddr(), "wss", s.WSSAddr(), "http", s.HTTPAddr())
	return nil
}

func (s *Server) goTracked(fn func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// MQTTAddr is the bound TCP address ("" when disabled or not started).
func (s *Server) MQTTAddr() string { return addrOf(s.mqttLn) }

// WSAddr is the bound WebSocket address ("" when disabled or not started).
func (s *Server) WSAddr() string { return addrOf(s.wsLn) }

// HTTPAddr is the bound HTTP address ("" when disabled or not started).
func (s *Server) HTTPAddr() string { return addrOf(s.httpLn) }

func (s *Server) closeListeners() {
	for _, ln := range []net.Listener{s.mqttLn, s.wsLn, s.tlsLn, s.wssLn, s.httpLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
}

func (s *Server) acceptLoop(ln net.Listener) {
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			select {
			case <-s.quit:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTemporary) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay) // back off on EMFILE and the like
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("accept failed", "err", err)
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.serveConn(conn)
	}
}

// serveConn starts serving an accepted connection: it is counted against
// the connection limits (limits.go) and gets its reader goroutine (the
// writer starts when there is something to write). It never blocks on the
// connection (the TLS handshake happens in the reader). It returns the client, or nil when the server
// is shutting down and closed conn.
func (s *Server) serveConn(conn net.Conn) *client {
	s.stats.ConnectionsTotal.Add(1)
	c := newClient(s, conn)
	if !s.admit(c) {
		s.refuseAtOnce(c) // far over a connection limit (limits.go)
		return nil
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		s.release(c)
		_ = conn.Close()
		return nil
	}
	s.clients[c] = struct{}{}
	s.mu.Unlock()
	s.goTracked(func() { c.readLoop(nil) })
	return c
}

var errTemporary = errors.New("temporary")

// ErrServerClosed is returned by Shutdown when the server was already shut
// down.
var ErrServerClosed = errors.New("mqtt: server already shut down")

// Shutdown stops accepting connections, sends 5.0 clients DISCONNECT 0x8B
// (3.1.1 clients are just closed), flushes and closes every connection and
// waits for every goroutine the server started. When ctx ends first the
// remaining connections are closed abruptly; Shutdown still waits for the
// goroutines, which then end promptly, and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.closing = true
	clients := make([]*client, 0, len(s.clients))
	for c := range s.clients {
		clients = append(clients, c)
	}
	s.mu.Unlock()
	close(s.quit)
	s.closeListeners()
	if s.httpSrv != nil {
		_ = s.httpSrv.Shutdown(ctx)
	}
	for _, c := range clients {
		c.kick(reasonShutdown)
	}
	var err error
	for _, c := range clients {
		select {
		case <-c.done:
		case <-ctx.Done():
			err = ctx.Err()
			for _, c := range clients {
				c.closeConn()
			}
		}
		if err != nil {
			break
		}
	}
	s.wg.Wait()
	if s.ownStore {
		if cerr := s.store.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	s.log.Info("beacon stopped")
	return err
}

// restore loads retained messages and durable sessions from the store
// (after a restart) and reschedules their wills and expiry.
func (s *Server) restore() error {
	now := time.Now()
	var expiredRetained []string
	err := s.store.Retained(func(m *storage.Message) bool {
		if exp := m.ExpiresAt(); !exp.IsZero() && !now.Before(exp) || strings.HasPrefix(m.Topic, "$SYS/") {
			// Expired, or $SYS from an older version that stored it.
			expiredRetained = append(expiredRetained, m.Topic)
			return true
		}
		s.retained.Set(m.Topic, m)
		s.noteRetained(m.Topic, m.Seq)
		return true
	})
	if err != nil {
		return err
	}
	for _, t := range expiredRetained {
		if err := s.store.DeleteRetained(t); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("deleting expired retained message %q: %w", t, err)
		}
	}
	var recs []*storage.Session
	if err := s.store.Sessions(func(r *storage.Session) bool {
		recs = append(recs, r)
		return true
	}); err != nil {
		return err
	}
	for _, rec := range recs {
		sess, lost, err := session.Restore(s.sessionConfig(rec.ClientID, rec.Version, rec.ExpiryInterval), rec)
		if err != nil {
			return fmt.Errorf("session %q: %w", rec.ClientID, err)
		}
		if lost > 0 {
			s.log.Warn("pending deliveries lost: log entries missing", "client", rec.ClientID, "count", lost)
			s.stats.DroppedNoRoute.Add(uint64(lost))
		}
		e := &sessEntry{sess: sess, gen: 1}
		s.sessions[rec.ClientID] = e
		for _, sub := range sess.Subscriptions() {
			s.tree.Subscribe(sub.Filter, rec.ClientID, subValue{sess: sess, sub: sub})
		}
		if _, at := sess.PeekWill(); !at.IsZero() {
			s.scheduleWill(rec.ClientID, e.gen, sess, at)
		}
		if exp := sess.ExpiresAt(); !exp.IsZero() {
			s.scheduleExpiry(rec.ClientID, e.gen, sess, exp)
		}
	}
	if len(recs) > 0 {
		s.log.Info("sessions restored", "count", len(recs), "retained", s.retained.Len())
	}
	return nil
}

// sessionConfig returns the session.Config of a new session of clientID.
func (s *Server) sessionConfig(clientID string, v packets.Version, expiry uint32) session.Config {
	return session.Config{
		ClientID:       clientID,
		Version:        v,
		ExpiryInterval: expiry,
		Store:          s.store,
		MaxInflight:    s.opts.MaxInflight,
		MaxQueued:      s.opts.MaxQueuedMessages,
		MaxQueuedBytes: s.opts.MaxQueuedBytes,
		ReceiveMaximum: s.opts.ReceiveMaximum,
		Stats:          &s.stats.Session,
		OnDrop:         s.onSessionDrop,
	}
}
