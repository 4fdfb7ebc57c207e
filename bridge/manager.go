package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/beaconmq/beacon/storage"
)

// Manager runs the bridges of one broker. NewManager registers everything
// that must exist before the broker starts (log holds, dead-letter
// replayers, and with Register the admin route and the metrics); Start
// begins forwarding once the broker runs; Stop ends it before the broker
// shuts down, saving every cursor.
type Manager struct {
	broker  Broker
	store   Store
	log     *slog.Logger
	out     []*Bridge
	in      []*inBridge
	mu      sync.Mutex
	started bool
	stopped bool
}

// inBridge is a bridge of direction in: a remote broker's messages
// published locally by the MQTT source (bridge/mqtt_in.go).
type inBridge struct {
	cfg    Config
	closer io.Closer
	err    error // why it did not start
}

// NewManager validates cfgs, builds their sinks and bridges, and registers
// each out bridge's log hold and dead-letter replayer with broker. Call it
// before the broker starts. On error nothing stays registered or open.
func NewManager(broker Broker, store Store, cfgs []Config, logger *slog.Logger) (*Manager, error) {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m := &Manager{broker: broker, store: store, log: logger}
	seen := map[string]bool{}
	fail := func(err error) (*Manager, error) {
		for _, b := range m.out {
			broker.HoldLog(b.cfg.Name, nil)
			broker.SetDeadLetterReplayer(b.cfg.Name, nil)
			_ = b.sink.Close()
		}
		return nil, err
	}
	for _, cfg := range cfgs {
		if err := cfg.Validate(); err != nil {
			return fail(fmt.Errorf("bridge %s: %w", cfg.Name, err))
		}
		if seen[cfg.Name] {
			return fail(fmt.Errorf("bridge %s: the name is used twice", cfg.Name))
		}
		seen[cfg.Name] = true
		cfg = cfg.withDefaults()
		if cfg.Direction == "in" {
			m.in = append(m.in, &inBridge{cfg: cfg})
			continue
		}
		sink, err := newSink(cfg, logger)
		if err != nil {
			return fail(fmt.Errorf("bridge %s: %w", cfg.Name, err))
		}
		b, err := newBridge(cfg, sink, broker, store, logger)
		if err != nil {
			_ = sink.Close()
			return fail(err)
		}
		m.out = append(m.out, b)
	}
	return m, nil
}

func newSink(cfg Config, logger *slog.Logger) (Sink, error) {
	switch cfg.Type {
	case "http":
		return NewHTTPSink(cfg.Name, *cfg.HTTP, logger)
	case "mqtt":
		return newMQTTSink(cfg.Name, cfg.MQTT, logger)
	}
	return nil, fmt.Errorf("type %q is not a sink type", cfg.Type)
}

// Register adds GET /api/v1/bridges to the admin API (through handle, the
// broker's HandleAdmin) and the bridges' collector to reg. Call it before
// the broker starts.
func (m *Manager) Register(handle func(pattern string, h http.Handler), reg prometheus.Registerer) error {
	if handle != nil {
		handle("GET /api/v1/bridges", http.HandlerFunc(m.serveList))
		handle("GET /api/v1/bridges/{name}", http.HandlerFunc(m.serveOne))
	}
	if reg != nil {
		return reg.Register(&collector{m: m})
	}
	return nil
}

// Start begins forwarding: out bridges read the log from their cursors, in
// bridges connect to their remote brokers. An in bridge that cannot start
// is logged and shown as failed in the admin API; the others run.
func (m *Manager) Start() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started || m.stopped {
		return
	}
	m.started = true
	for _, b := range m.out {
		b.start()
	}
	for _, ib := range m.in {
		name := ib.cfg.Name
		pub := func(msg *storage.Message) error { return m.broker.Publish(msg) }
		ib.closer, ib.err = startMQTTIn(context.Background(), name, ib.cfg.MQTT, pub, m.log.With("bridge", name))
		if ib.err != nil {
			m.log.Error("bridge did not start", "bridge", name, "err", ib.err)
		}
	}
}

// StopGrace bounds how long Stop waits for the deliveries in flight, so
// that a slow sink leaves the broker's own shutdown most of its budget.
const StopGrace = 2 * time.Second

// Stop stops every bridge: no new deliveries, the ones in flight get until
// ctx ends or StopGrace passes (then they are cancelled, and delivered
// again after the restart), then every cursor is saved and every sink
// closed.
func (m *Manager) Stop(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, StopGrace)
	defer cancel()
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return nil
	}
	m.stopped = true
	m.mu.Unlock()
	var errs []error
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, b := range m.out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.stop(ctx); err != nil {
				emu.Lock()
				errs = append(errs, fmt.Errorf("bridge %s: %w", b.cfg.Name, err))
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, ib := range m.in {
		if ib.closer != nil {
			if err := ib.closer.Close(); err != nil {
				errs = append(errs, fmt.Errorf("bridge %s: %w", ib.cfg.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Bridge returns the out bridge called name, or nil.
func (m *Manager) Bridge(name string) *Bridge {
	for _, b := range m.out {
		if b.cfg.Name == name {
			return b
		}
	}
	return nil
}

// Status is one bridge as GET /api/v1/bridges shows it.
type Status struct {
	Name         string            `json:"name"`
	Type         string            `json:"type"`
	Direction    string            `json:"direction"`
	State        string            `json:"state"` // running, stopped, not started, failed
	Topics       []string          `json:"topics,omitempty"`
	Ordered      bool              `json:"ordered"`
	SinkUp       bool              `json:"sink_up"`
	Cursor       uint64            `json:"cursor"`
	SavedCursor  uint64            `json:"saved_cursor"`
	Head         uint64            `json:"head"`
	Lag          uint64            `json:"lag"`
	InFlight     int               `json:"in_flight"`
	Delivered    uint64            `json:"delivered"`
	Retried      uint64            `json:"retried"`
	Replayed     uint64            `json:"replayed"`
	ReplaySkip   uint64            `json:"replay_skipped"` // dead letters replayed to it that its filters do not match
	DeadLettered map[string]uint64 `json:"dead_lettered"`
	LastError    string            `json:"last_error,omitempty"`
}

// Statuses returns every bridge's status, by name.
func (m *Manager) Statuses() []Status {
	m.mu.Lock()
	started, stopped := m.started, m.stopped
	m.mu.Unlock()
	state := "not started"
	switch {
	case stopped:
		state = "stopped"
	case started:
		state = "running"
	}
	head := m.store.Head()
	var out []Status
	for _, b := range m.out {
		out = append(out, b.status(state, head))
	}
	for _, ib := range m.in {
		st := Status{Name: ib.cfg.Name, Type: ib.cfg.Type, Direction: "in", State: state, DeadLettered: map[string]uint64{}}
		if ib.err != nil {
			st.State, st.LastError = "failed", ib.err.Error()
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (b *Bridge) status(state string, head uint64) Status {
	cur := b.cursor.Load()
	b.mu.Lock()
	inflight := 0
	for _, it := range b.inflight {
		if !it.done {
			inflight++
		}
	}
	b.mu.Unlock()
	st := Status{
		Name: b.cfg.Name, Type: b.cfg.Type, Direction: "out", State: state,
		Topics: b.cfg.Topics, Ordered: b.cfg.Ordered, SinkUp: b.up.Load(),
		Cursor: cur, SavedCursor: b.saved.Load(), Head: head, Lag: lag(head, cur),
		InFlight: inflight, Delivered: b.delivered.Load(), Retried: b.retried.Load(),
		Replayed: b.replayed.Load(), ReplaySkip: b.replaySkipped.Load(), DeadLettered: b.deadLetteredCounts(),
	}
	if p := b.lastErr.Load(); p != nil {
		st.LastError = *p
	}
	return st
}

func (b *Bridge) deadLetteredCounts() map[string]uint64 {
	b.dlMu.Lock()
	defer b.dlMu.Unlock()
	out := make(map[string]uint64, len(b.deadLettered))
	for k, v := range b.deadLettered {
		out[k] = v
	}
	return out
}

func lag(head, cursor uint64) uint64 {
	if head <= cursor {
		return 0
	}
	return head - cursor
}

func (m *Manager) serveList(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"bridges": m.Statuses()})
}

func (m *Manager) serveOne(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	for _, st := range m.Statuses() {
		if st.Name == name {
			writeJSON(w, http.StatusOK, st)
			return
		}
	}
	writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no bridge %q", name)})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
