package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beaconmq/beacon/mqtt"
	"github.com/beaconmq/beacon/mqtt/topics"
	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/storage"
)

// Dead-letter reasons of a bridge (the dlq-reason user property).
const (
	// ReasonSinkFailed: the sink failed MaxAttempts times in a row.
	ReasonSinkFailed = "sink-failed"
	// ReasonSinkRejected: the sink refused the message for good (an
	// error wrapped with Permanent, e.g. HTTP 4xx).
	ReasonSinkRejected = "sink-rejected"
	// ReasonExpired: the Message Expiry Interval ran out before the sink
	// accepted the message.
	ReasonExpired = "expired"
)

const (
	readBatch    = 256             // messages read from the log per scan
	fallbackPoll = 2 * time.Second // re-scan the log even without a wake-up
	probeTimeout = 10 * time.Second
)

// Broker is what a bridge needs from the MQTT server; *mqtt.Server has it.
type Broker interface {
	Publish(m *storage.Message) error
	DeadLetter(m *storage.Message, dl mqtt.DeadLetter) error
	LogAppended() <-chan struct{}
	HoldLog(name string, low func() uint64)
	SetDeadLetterReplayer(source string, fn func(m *storage.Message, dl mqtt.DeadLetter) error)
	ReplayDeadLetters(source string) (int, error)
}

// Store is what a bridge needs from storage: the log and its cursor.
type Store interface {
	storage.Log
	storage.CursorStore
}

// Bridge forwards the messages of the log that match its topic filters to
// its sink, at least once, in log order per topic when ordered.
//
// Progress is a low watermark: the cursor is the highest sequence number
// such that every message at or below it was delivered, dead-lettered or
// did not match; nothing below it is ever needed again. The cursor is
// saved every CursorInterval and when the bridge stops, and the log
// collector keeps everything above it (Broker.HoldLog).
// After a crash the bridge resumes at the saved cursor, so what it
// finished since the last save (the last CursorInterval's messages, and up
// to Window finished out of order above the cursor) is delivered again.
type Bridge struct {
	cfg    Config
	sink   Sink
	broker Broker
	store  Store
	log    *slog.Logger
	key    string // cursor key, "bridge/{name}"

	// Counters (metrics.go, the admin API).
	delivered, retried, replayed atomic.Uint64
	replaySkipped                atomic.Uint64 // replayed dead letters the filters do not match
	dlMu                         sync.Mutex
	deadLettered                 map[string]uint64 // by reason
	lastErr                      atomic.Pointer[string]

	up     atomic.Bool // the sink worked last time it was tried
	liveOK atomic.Bool // a live delivery succeeded since the last probe
	// needReplay: dead letters of this bridge may be waiting (set at start
	// and whenever the sink fails a message for good or a replay fails).
	needReplay   atomic.Bool
	lastStateLog atomic.Int64 // unix nanos of the last up/down log line
	downCh       chan struct{}
	replayCh     chan struct{}
	// kick wakes the reader after the bridge appended to the log itself
	// (a dead letter), whether or not that append notifies LogAppended.
	kick chan struct{}

	mu       sync.Mutex
	readUpTo uint64  // last sequence number read and handed on
	inflight []*item // handed on and not all done, in sequence order
	queues   map[string]*topicQueue
	cursor   atomic.Uint64 // low watermark (see above)
	saved    atomic.Uint64 // cursor as last stored
	saveMu   sync.Mutex

	window chan struct{} // one slot per message read and not done
	sem    chan struct{} // one slot per delivery in flight

	ctx      context.Context // deliveries; cancelled when Stop gives up waiting
	cancel   context.CancelFunc
	stopping chan struct{} // closed by Stop: no new reads or attempts
	stopOnce sync.Once
	wg       sync.WaitGroup
}

type item struct {
	m    *storage.Message
	done bool
}

type topicQueue struct{ items []*item }

// newBridge loads or creates the bridge's cursor and registers its log hold
// and dead-letter replayer. cfg must be validated and defaulted.
func newBridge(cfg Config, sink Sink, broker Broker, store Store, logger *slog.Logger) (*Bridge, error) {
	b := &Bridge{
		cfg:          cfg,
		sink:         sink,
		broker:       broker,
		store:        store,
		log:          logger.With("bridge", cfg.Name),
		key:          "bridge/" + cfg.Name,
		deadLettered: map[string]uint64{},
		downCh:       make(chan struct{}, 1),
		replayCh:     make(chan struct{}, 1),
		kick:         make(chan struct{}, 1),
		queues:       map[string]*topicQueue{},
		window:       make(chan struct{}, cfg.Window),
		sem:          make(chan struct{}, cfg.Concurrency),
		stopping:     make(chan struct{}),
	}
	b.up.Store(true)
	b.needReplay.Store(true)
	b.ctx, b.cancel = context.WithCancel(context.Background())
	cur, err := b.loadCursor()
	if err != nil {
		return nil, fmt.Errorf("bridge %s: reading its cursor: %w", cfg.Name, err)
	}
	b.cursor.Store(cur)
	b.saved.Store(cur)
	b.readUpTo = cur
	// The hold is named after the bridge: retention dead-letters what it
	// removes unread under the hold's name, $dlq/{bridge}/{topic}. Only
	// what is above the in-memory cursor is still needed; a restart
	// resumes at the saved cursor and skips what is gone below it.
	broker.HoldLog(cfg.Name, func() uint64 { return b.cursor.Load() + 1 })
	broker.SetDeadLetterReplayer(cfg.Name, b.replayOne)
	return b, nil
}

// loadCursor returns the stored cursor. A bridge seen for the first time
// starts at the log head (Start latest) or before the first message
// (earliest); the start is stored at once, with a marker, so that a crash
// before the first save does not move a "latest" bridge past messages
// appended meanwhile.
func (b *Bridge) loadCursor() (uint64, error) {
	cur, err := b.store.Cursor(b.key)
	if err != nil || cur != 0 {
		return cur, err
	}
	marker := b.key + "/started"
	started, err := b.store.Cursor(marker)
	if err != nil || started != 0 {
		return 0, err
	}
	if b.cfg.Start == "latest" {
		cur = b.store.Head()
	}
	if err := b.store.SetCursor(b.key, cur); err != nil {
		return 0, err
	}
	return cur, b.store.SetCursor(marker, 1)
}

// Name is the bridge's name.
func (b *Bridge) Name() string { return b.cfg.Name }

// Cursor is the in-memory low watermark (see Bridge).
func (b *Bridge) Cursor() uint64 { return b.cursor.Load() }

// start runs the bridge's goroutines.
func (b *Bridge) start() {
	b.goTracked(b.readLoop)
	b.goTracked(b.saveLoop)
	b.goTracked(b.healthLoop)
	b.goTracked(b.replayLoop)
}

func (b *Bridge) goTracked(fn func()) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		fn()
	}()
}

// stop ends reading and new attempts, waits for the attempts in flight
// until ctx ends (then cancels them: their outcome is unknown, so they are
// delivered again next time), saves the cursor and closes the sink.
func (b *Bridge) stop(ctx context.Context) error {
	b.stopOnce.Do(func() { close(b.stopping) })
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		b.cancel()
		<-done
	}
	b.cancel()
	b.broker.SetDeadLetterReplayer(b.cfg.Name, nil)
	err := b.saveCursor()
	if cerr := b.sink.Close(); err == nil {
		err = cerr
	}
	return err
}

func (b *Bridge) isStopping() bool {
	select {
	case <-b.stopping:
		return true
	default:
		return false
	}
}

// sleep waits d or until the bridge stops; false means it stops.
func (b *Bridge) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-b.stopping:
		return false
	}
}

// readLoop reads the log from the cursor and hands every message on: to
// delivery when it matches, straight to done when it does not. It takes
// the wake-up channel before each scan, so an append during the scan is
// never slept through; the fallback poll only covers a missed wake-up.
func (b *Bridge) readLoop() {
	b.mu.Lock()
	next := b.readUpTo + 1
	b.mu.Unlock()
	poll := time.NewTicker(fallbackPoll)
	defer poll.Stop()
	var batch []*storage.Message
	errLogged := false
	for {
		wake := b.broker.LogAppended()
		batch = batch[:0]
		err := b.store.Scan(next, func(m *storage.Message) bool {
			batch = append(batch, m)
			return len(batch) < readBatch
		})
		if err != nil && !errLogged {
			b.log.Warn("bridge cannot read the log", "err", err)
			errLogged = true
		} else if err == nil {
			errLogged = false
		}
		for _, m := range batch {
			if !b.hand(m) {
				return
			}
			next = m.Seq + 1
		}
		if len(batch) == readBatch {
			continue
		}
		select {
		case <-wake:
		case <-b.kick:
		case <-poll.C:
		case <-b.stopping:
			return
		}
	}
}

// matches reports whether m is for this bridge. A bridge never forwards its
// own dead letters (that would loop), whatever its filters.
func (b *Bridge) matches(m *storage.Message) bool {
	if strings.HasPrefix(m.Topic, "$dlq/"+b.cfg.Name+"/") {
		return false
	}
	for _, f := range b.cfg.Topics {
		if topics.MatchFilter(f, m.Topic) {
			return true
		}
	}
	return false
}

// hand passes m on; false means the bridge stops.
func (b *Bridge) hand(m *storage.Message) bool {
	if !b.matches(m) {
		b.mu.Lock()
		b.readUpTo = m.Seq
		b.advanceLocked()
		b.mu.Unlock()
		return true
	}
	select {
	case b.window <- struct{}{}:
	case <-b.stopping:
		return false
	}
	it := &item{m: m}
	b.mu.Lock()
	b.readUpTo = m.Seq
	b.inflight = append(b.inflight, it)
	if b.cfg.Ordered {
		if q := b.queues[m.Topic]; q != nil {
			q.items = append(q.items, it)
			b.mu.Unlock()
			return true
		}
		q := &topicQueue{items: []*item{it}}
		b.queues[m.Topic] = q
		b.mu.Unlock()
		b.goTracked(func() { b.runTopic(m.Topic, q) })
		return true
	}
	b.mu.Unlock()
	select {
	case b.sem <- struct{}{}:
	case <-b.stopping:
		return false
	}
	b.goTracked(func() {
		defer func() { <-b.sem }()
		b.process(it)
	})
	return true
}

// runTopic delivers one topic's queue in order, one message at a time,
// until the queue is empty.
func (b *Bridge) runTopic(topic string, q *topicQueue) {
	for {
		b.mu.Lock()
		it := q.items[0]
		b.mu.Unlock()
		select {
		case b.sem <- struct{}{}:
		case <-b.stopping:
			return
		}
		ok := b.process(it)
		<-b.sem
		if !ok {
			return // stopping: the rest is delivered after the restart
		}
		b.mu.Lock()
		q.items = q.items[1:]
		if len(q.items) == 0 {
			delete(b.queues, topic)
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
	}
}

// complete marks it done and moves the cursor over every done message at
// the front.
func (b *Bridge) complete(it *item) {
	b.mu.Lock()
	it.done = true
	b.advanceLocked()
	b.mu.Unlock()
	<-b.window
}

func (b *Bridge) advanceLocked() {
	i := 0
	for i < len(b.inflight) && b.inflight[i].done {
		i++
	}
	if i > 0 {
		clear(b.inflight[:i])
		b.inflight = b.inflight[i:]
	}
	if len(b.inflight) == 0 {
		b.cursor.Store(b.readUpTo)
	} else {
		b.cursor.Store(b.inflight[0].m.Seq - 1)
	}
}

// process delivers it with retries, or dead-letters it. It returns false
// when the bridge stopped first (it is then not done).
func (b *Bridge) process(it *item) bool {
	m := it.m
	var first time.Time
	var lastErr error
	for attempt := 1; ; attempt++ {
		if exp := m.ExpiresAt(); !exp.IsZero() && time.Now().After(exp) {
			msg := "message expired before the sink accepted it"
			if lastErr != nil {
				msg = lastErr.Error()
			}
			return b.deadLetter(it, ReasonExpired, attempt-1, first, msg)
		}
		if b.isStopping() {
			return false
		}
		err := b.sink.Deliver(b.ctx, m)
		if err == nil {
			b.delivered.Add(1)
			b.liveOK.Store(true)
			b.setUp()
			b.complete(it)
			return true
		}
		if b.ctx.Err() != nil {
			return false // cancelled by stop: the outcome is unknown
		}
		if first.IsZero() {
			first = time.Now()
		}
		lastErr = err
		b.setLastError(err)
		if IsPermanent(err) {
			return b.deadLetter(it, ReasonSinkRejected, attempt, first, err.Error())
		}
		b.setDown(err)
		if n := b.cfg.Retry.MaxAttempts; n > 0 && attempt >= n {
			return b.deadLetter(it, ReasonSinkFailed, attempt, first, err.Error())
		}
		b.retried.Add(1)
		if !b.sleep(b.waitAfter(attempt, err)) {
			return false
		}
	}
}

// backoff is the wait after the attempt-th failed attempt.
func (b *Bridge) backoff(attempt int) time.Duration {
	return backoff(b.cfg.Retry, attempt, rand.Float64())
}

// waitAfter is backoff, lengthened to what the sink asked for (an error
// with a RetryAfter method, e.g. HTTP Retry-After) up to MaxBackoff.
func (b *Bridge) waitAfter(attempt int, err error) time.Duration {
	d := b.backoff(attempt)
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		d = max(d, min(ra.RetryAfter(), b.cfg.Retry.MaxBackoff))
	}
	return d
}

// backoff computes InitialBackoff·Multiplier^(attempt-1) capped at
// MaxBackoff, moved by (2u-1)·Jitter of itself (u uniform in [0,1)).
func backoff(r RetryPolicy, attempt int, u float64) time.Duration {
	d := float64(r.InitialBackoff) * math.Pow(r.Multiplier, float64(attempt-1))
	if d > float64(r.MaxBackoff) || math.IsInf(d, 0) || math.IsNaN(d) {
		d = float64(r.MaxBackoff)
	}
	d += d * r.Jitter * (2*u - 1)
	return time.Duration(max(d, 0))
}

// deadLetter stores m on $dlq/{bridge}/{topic}. Storing may fail (disk
// full); it is retried until it works or the bridge stops, since the
// cursor must not pass a message that is neither delivered nor stored.
func (b *Bridge) deadLetter(it *item, reason string, attempts int, first time.Time, lastErr string) bool {
	dl := mqtt.DeadLetter{Source: b.cfg.Name, Reason: reason, Attempts: attempts, FirstFailure: first, LastError: lastErr}
	m := withOriginalSeq(it.m)
	for try := 1; ; try++ {
		err := b.broker.DeadLetter(m, dl)
		if err == nil {
			break
		}
		if try == 1 || try%20 == 0 {
			b.log.Warn("bridge cannot store a dead letter; it keeps the message and tries again", "topic", it.m.Topic, "seq", it.m.Seq, "tries", try, "err", err)
		}
		if !b.sleep(b.backoff(try)) {
			return false
		}
	}
	b.dlMu.Lock()
	b.deadLettered[reason]++
	b.dlMu.Unlock()
	b.needReplay.Store(true)
	b.complete(it)
	select {
	case b.kick <- struct{}{}:
	default:
	}
	return true
}

func (b *Bridge) setLastError(err error) {
	s := err.Error()
	b.lastErr.Store(&s)
}

// stateLogEvery rate-limits the sink up/down log lines of a flapping sink.
const stateLogEvery = 10 * time.Second

// logState logs a sink state change at level, or at debug level when the
// last such line is less than stateLogEvery old.
func (b *Bridge) logState(level slog.Level, msg string, args ...any) {
	now := time.Now().UnixNano()
	last := b.lastStateLog.Load()
	if now-last < int64(stateLogEvery) || !b.lastStateLog.CompareAndSwap(last, now) {
		level = slog.LevelDebug
	}
	b.log.Log(context.Background(), level, msg, args...)
}

// setDown records that the sink failed; the health loop starts probing.
func (b *Bridge) setDown(err error) {
	if b.up.CompareAndSwap(true, false) {
		b.logState(slog.LevelWarn, "bridge sink is down", "err", err)
		select {
		case b.downCh <- struct{}{}:
		default:
		}
	}
}

// setUp records that the sink works. Coming back from down, it starts the
// automatic replay of the bridge's dead letters if there may be any.
func (b *Bridge) setUp() {
	if b.up.CompareAndSwap(false, true) {
		b.logState(slog.LevelInfo, "bridge sink is up again")
		if *b.cfg.AutoReplay && b.needReplay.Swap(false) {
			select {
			case b.replayCh <- struct{}{}:
			default:
			}
		}
	}
}

// healthLoop probes a sink that is down, with backoff, until it is up. The
// probe delay grows across down periods that end without a live delivery
// succeeding, so a sink that answers probes but fails deliveries is not
// replayed to in a tight loop.
func (b *Bridge) healthLoop() {
	prober, _ := b.sink.(Prober)
	r := b.cfg.Retry
	delay := r.InitialBackoff
	for {
		select {
		case <-b.downCh:
		case <-b.stopping:
			return
		}
		if b.liveOK.Swap(false) {
			delay = r.InitialBackoff
		}
		for !b.up.Load() {
			if !b.sleep(delay) {
				return
			}
			delay = min(time.Duration(float64(delay)*r.Multiplier), r.MaxBackoff)
			if prober == nil {
				continue // up again with the next delivery that succeeds
			}
			ctx, cancel := context.WithTimeout(b.ctx, probeTimeout)
			err := prober.Probe(ctx)
			cancel()
			if err == nil {
				b.setUp()
			}
		}
	}
}

// replayLoop replays the bridge's dead letters each time the sink comes
// back (see setUp).
func (b *Bridge) replayLoop() {
	for {
		select {
		case <-b.replayCh:
		case <-b.stopping:
			return
		}
		n, err := b.broker.ReplayDeadLetters(b.cfg.Name)
		if err != nil {
			b.log.Warn("bridge dead-letter replay failed", "replayed", n, "err", err)
		} else if n > 0 {
			b.log.Info("bridge dead letters replayed", "replayed", n)
		}
	}
}

// errStopping refuses replays while the bridge stops.
var errStopping = errors.New("bridge is stopping")

// replayOne is the bridge's dead-letter replayer: one delivery attempt
// through the sink. An error sends the message back to the dead-letter
// topic with its attempts counted up (the replay code does that), and a
// failure that is not permanent marks the sink down again, so the next
// replay waits for the next recovery: never a tight loop.
func (b *Bridge) replayOne(m *storage.Message, _ mqtt.DeadLetter) error {
	if b.isStopping() {
		return errStopping
	}
	m = restoreOriginalSeq(m)
	if !b.matches(m) {
		// Not this bridge's message (log retention dead-letters whatever a
		// reader had not read yet, or the filters changed since): it is
		// done here, as the reader would have skipped it.
		b.replaySkipped.Add(1)
		return nil
	}
	err := b.sink.Deliver(b.ctx, m)
	if err == nil {
		b.replayed.Add(1)
		b.setUp()
		return nil
	}
	b.setLastError(err)
	b.needReplay.Store(true)
	if !IsPermanent(err) {
		b.setDown(err)
	}
	return err
}

// saveLoop stores the cursor every CursorInterval while it moves.
func (b *Bridge) saveLoop() {
	t := time.NewTicker(b.cfg.CursorInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := b.saveCursor(); err != nil && !errors.Is(err, storage.ErrClosed) {
				b.log.Warn("bridge cannot save its cursor", "err", err)
			}
		case <-b.stopping:
			return
		}
	}
}

// saveCursor stores the cursor if it moved.
func (b *Bridge) saveCursor() error {
	b.saveMu.Lock()
	defer b.saveMu.Unlock()
	c := b.cursor.Load()
	if c == b.saved.Load() {
		return nil
	}
	if err := b.store.SetCursor(b.key, c); err != nil {
		return err
	}
	b.saved.Store(c)
	return nil
}

// OriginalSeqKey is the user property a bridge adds to the messages it
// dead-letters: the message's log sequence number. A dead letter lives
// under a new sequence number, so on replay the bridge takes this one off
// again and delivers the message under its original number: the HTTP
// sink's Beacon-Seq, the receivers' idempotency key, stays the same
// through any number of dead-letterings and replays.
const OriginalSeqKey = "beacon-original-seq"

// withOriginalSeq returns m with OriginalSeqKey set, unless it has one.
func withOriginalSeq(m *storage.Message) *storage.Message {
	for _, u := range m.Properties.User {
		if u.Key == OriginalSeqKey {
			return m
		}
	}
	c := *m
	c.Properties.User = append(slices.Clip(m.Properties.User), packets.UserProperty{Key: OriginalSeqKey, Value: strconv.FormatUint(m.Seq, 10)})
	return &c
}

// restoreOriginalSeq returns m without OriginalSeqKey and with Seq set
// from it, when it has a valid one.
func restoreOriginalSeq(m *storage.Message) *storage.Message {
	i := slices.IndexFunc(m.Properties.User, func(u packets.UserProperty) bool { return u.Key == OriginalSeqKey })
	if i < 0 {
		return m
	}
	c := *m
	if seq, err := strconv.ParseUint(m.Properties.User[i].Value, 10, 64); err == nil && seq != 0 {
		c.Seq = seq
	}
	c.Properties.User = slices.Delete(slices.Clone(m.Properties.User), i, i+1)
	if len(c.Properties.User) == 0 {
		c.Properties.User = nil
	}
	return &c
}
