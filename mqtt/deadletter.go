package mqtt

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/beaconmq/beacon/mqtt/topics"
	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/session"
	"github.com/beaconmq/beacon/storage"
)

// Dead letters (docs/deadletters.md): a message the broker fails to
// deliver to a subscriber (it expired while queued, the session's queue
// was full, it was larger than the client's Maximum Packet Size, or the
// client answered PUBACK/PUBREC with an error code) is republished on
// $dlq/broker/{original topic}; a bridge that gives up on a message
// republishes it on $dlq/{bridge}/{original topic} (DeadLetter). Either
// way it is a QoS 1 message on the log with the original payload and
// properties, without its expiry, and with dlq-* user properties saying
// why.
//
// Each dead letter also gets an entry in the store's dead-letter index
// (storage.DeadLetterStore), written right after its log entry and with
// the same durability. The index is what lists, replays and purges work
// on, and what keeps the log entry from being collected (dlqKeep, called
// by CollectLog) until the dead letter is replayed or purged.
//
// Broker-side failures are discovered where a session lock is held, so
// they are published by one goroutine fed through a bounded channel; a
// dead letter that does not fit in the channel is counted in
// DeadLetterDropped. A message already on a $dlq/ topic is never
// dead-lettered again.

const (
	dlqPrefix    = "$dlq/"
	dlqSource    = "broker"
	dlqQueueSize = 4096
	// replayMarksMax bounds the replayed messages whose dead-letter
	// history is remembered (see dlqState.marks).
	replayMarksMax = 1 << 16
)

// Reasons a message is dead-lettered (the dlq-reason user property). The
// broker uses the first four; bridges use ReasonSinkFailed; retention
// (removed from the log unread) uses ReasonRetention.
const (
	ReasonExpired    = string(session.DropExpired)   // Message Expiry Interval passed while queued
	ReasonQueueFull  = string(session.DropQueueFull) // the session's queue was full
	ReasonTooLarge   = string(session.DropTooLarge)  // larger than the client's Maximum Packet Size
	ReasonNack       = "nack"                        // 5.0 PUBACK/PUBREC with a reason code >= 0x80
	ReasonSinkFailed = "sink-failed"                 // a bridge sink failed after its retries
	ReasonRetention  = "retention"                   // retention removed it from the log unread
)

// Errors of dead-letter replay.
var (
	// ErrNoReplayer: a dead letter of a source other than "broker" can only
	// be replayed by the bridge of that name, which registers itself with
	// SetDeadLetterReplayer; none is registered.
	ErrNoReplayer = errors.New("mqtt: no replayer registered for dead-letter source")
	// ErrReplayFailed: a replayed dead letter failed again; it is back on
	// its dead-letter topic with one more attempt counted.
	ErrReplayFailed = errors.New("mqtt: dead-letter replay failed")
)

// DeadLetter says why a message is dead-lettered; its fields become the
// dlq-* user properties of the dead letter.
type DeadLetter struct {
	Source       string    // "broker" or a bridge name: the topic is $dlq/{Source}/{original topic}
	Reason       string    // dlq-reason, e.g. "expired", "queue-full", "sink-failed"
	Attempts     int       // dlq-attempts; 0 is written as 1
	FirstFailure time.Time // dlq-first-failure; zero means now
	LastError    string    // dlq-last-error
	Client       string    // dlq-client: the subscriber that failed, if any
}

type deadLetterItem struct {
	msg *storage.Message
	dl  DeadLetter
}

// replayFunc is a registered replayer (SetDeadLetterReplayer).
type replayFunc = func(m *storage.Message, dl DeadLetter) error

// replayMark is the dead-letter history of a message being replayed, so
// that when it fails again its new dead letter keeps the attempt count
// and the first failure.
type replayMark struct {
	attempts int
	first    time.Time
}

// dlqState is the Server's dead-letter state. mu guards the fields below
// it; opMu makes replays and purges run one at a time, so that two of them
// never hand the same dead letter on twice. Lock order: opMu, then mu;
// mu is never held while calling the store's write methods or a replayer.
type dlqState struct {
	opMu sync.Mutex

	mu sync.Mutex
	// seqs mirrors the index for log collection, once loaded.
	seqs      map[uint64]struct{}
	loaded    bool
	replayers map[string]replayFunc
	// marks: replays of source "broker" in progress, by message, and
	// published ones by log sequence number (oldest evicted first).
	marks      map[*storage.Message]replayMark
	marksSeq   map[uint64]replayMark
	marksOrder []uint64
}

// onSessionDrop is the session.Config.OnDrop of every session.
func (s *Server) onSessionDrop(clientID string, d *session.Delivery, why session.DropReason) {
	s.deadLetter(clientID, d.Msg, string(why), "")
}

// deadLetter queues m for the dead-letter topic. It never blocks.
func (s *Server) deadLetter(clientID string, m *storage.Message, reason, lastErr string) {
	if m == nil || strings.HasPrefix(m.Topic, dlqPrefix) || strings.HasPrefix(m.Topic, "$SYS/") {
		return
	}
	select {
	case s.dlq <- deadLetterItem{msg: m, dl: DeadLetter{Source: dlqSource, Reason: reason, LastError: lastErr, Client: clientID, FirstFailure: time.Now()}}:
	default:
		s.stats.DeadLetterDropped.Add(1)
	}
}

// dlqLoop publishes dead letters until the server quits, then publishes
// what is still queued.
func (s *Server) dlqLoop() {
	for {
		select {
		case it := <-s.dlq:
			s.publishDeadLetter(it)
		case <-s.quit:
			for {
				select {
				case it := <-s.dlq:
					s.publishDeadLetter(it)
				default:
					return
				}
			}
		}
	}
}

func (s *Server) publishDeadLetter(it deadLetterItem) {
	if err := s.DeadLetter(it.msg, it.dl); err != nil {
		s.stats.DeadLetterDropped.Add(1)
		s.log.Warn("publishing dead letter failed", "topic", it.msg.Topic, "err", err)
	}
}

// DeadLetter publishes m on $dlq/{dl.Source}/{m.Topic} as a QoS 1 message
// with its payload and properties (not its expiry) and the dlq-* user
// properties, indexes it, and returns once both are durable. Bridges call
// it when a sink gives up on a message; an error means the dead letter was
// not stored and the caller must keep the message.
//
// A broker dead letter of a message that is a replay of an earlier one
// (source "broker", by hand) keeps that one's first failure and counts its
// attempts on from there. The history is kept in memory for the newest
// replayMarksMax replays; after a restart the count starts again.
func (s *Server) DeadLetter(m *storage.Message, dl DeadLetter) error {
	if dl.Source == "" || strings.ContainsAny(dl.Source, "/+#") {
		return fmt.Errorf("mqtt: dead letter source %q must be one topic level without wildcards", dl.Source)
	}
	topic := dlqPrefix + dl.Source + "/" + m.Topic
	if len(topic) > 65535 {
		return fmt.Errorf("mqtt: dead letter topic for %q is longer than 65535 bytes", m.Topic)
	}
	props := forwardProperties(&m.Properties)
	props = packets.Properties{
		PayloadFormat:   props.PayloadFormat,
		ContentType:     props.ContentType,
		ResponseTopic:   props.ResponseTopic,
		CorrelationData: props.CorrelationData,
		User:            slices.Clip(props.User),
	}
	own := len(props.User)
	first := dl.FirstFailure
	if first.IsZero() {
		first = time.Now()
	}
	attempts := max(dl.Attempts, 1)
	if mk, ok := s.dl.replayed(m); ok && dl.Source == dlqSource {
		attempts += mk.attempts
		if !mk.first.IsZero() {
			first = mk.first
		}
	}
	props.User = append(props.User,
		packets.UserProperty{Key: "dlq-reason", Value: dl.Reason},
		packets.UserProperty{Key: "dlq-source", Value: dl.Source},
		packets.UserProperty{Key: "dlq-original-topic", Value: m.Topic},
		packets.UserProperty{Key: "dlq-attempts", Value: strconv.Itoa(attempts)},
		packets.UserProperty{Key: "dlq-first-failure", Value: first.UTC().Format(time.RFC3339Nano)},
		packets.UserProperty{Key: "dlq-last-error", Value: dl.LastError},
	)
	if dl.Client != "" {
		props.User = append(props.User, packets.UserProperty{Key: "dlq-client", Value: dl.Client})
	}
	now := time.Now()
	d := &storage.Message{
		Topic:      topic,
		Payload:    m.Payload,
		QoS:        1,
		Properties: props,
		Created:    now,
	}
	e := &storage.DeadLetterEntry{
		Source:       dl.Source,
		Reason:       dl.Reason,
		Topic:        m.Topic,
		QoS:          m.QoS,
		Attempts:     attempts,
		FirstFailure: first.UTC(),
		At:           now.UTC(),
		Created:      m.Created,
		LastError:    dl.LastError,
		Client:       dl.Client,
		UserProps:    own,
	}
	if err := s.appendDeadLetter(d, e); err != nil {
		return err
	}
	s.stats.DeadLettered.Add(1)
	s.stats.DeadLetters.Inc(dl.Source, dl.Reason)
	return nil
}

// appendDeadLetter appends d to the log, adds e (for d's Seq) to the
// index, and routes d to the subscribers of its $dlq/ topic. gcMu is held
// for reading from the append until the index knows d, so a log
// collection never sees the entry unreferenced (loggc.go).
func (s *Server) appendDeadLetter(d *storage.Message, e *storage.DeadLetterEntry) error {
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	if err := s.appendLog(d); err != nil { // route.go: counts, wakes log readers
		return err
	}
	e.Seq = d.Seq
	if err := s.store.AddDeadLetter(e); err != nil {
		// The log entry stays unreferenced and is collected; the caller
		// keeps the message and tries again.
		s.stats.StorageErrors.Add(1)
		return fmt.Errorf("mqtt: indexing dead letter %d: %w", d.Seq, err)
	}
	s.dl.noteAdded(d.Seq)
	if _, err := s.route(d); err != nil {
		// The dead letter is stored and indexed, which is what the caller
		// needs; a $dlq/ subscriber whose pending entry failed is counted
		// and logged by deliver.
		s.log.Warn("delivering dead letter to a subscriber failed", "topic", d.Topic, "err", err)
	}
	return nil
}

// Publish publishes m as if a client had sent it: stored when it must be,
// retained if m.Retain, routed to every matching subscription. It returns
// once m is durable in the configured mode (QoS 1/2), so a caller may then
// acknowledge it upstream. Bridges (direction in) and dead-letter replay
// use it. Topics under the reserved $SYS/ and $dlq/ prefixes are refused.
// The broker keeps m (sessions and the memory store share it), so the
// caller must not change it afterwards (storage.Log.Append).
func (s *Server) Publish(m *storage.Message) error {
	if err := packets.ValidTopicName(m.Topic); err != nil {
		return fmt.Errorf("mqtt: publish: %w", err)
	}
	if reservedTopic(m.Topic) {
		return fmt.Errorf("mqtt: publish: topic %q is reserved for the broker", m.Topic)
	}
	if m.QoS > 2 {
		return fmt.Errorf("mqtt: publish: QoS %d", m.QoS)
	}
	if m.Created.IsZero() {
		m.Created = time.Now()
	}
	_, err := s.publish(m)
	return err
}

// SetDeadLetterReplayer registers fn as the destination of dead letters
// whose source is source (a bridge name): replaying such a dead letter
// hands the original message (topic and properties as before it was
// dead-lettered, Seq the dead letter's log sequence number) and its dlq-*
// record to fn instead of republishing it on its original topic. fn runs
// on the goroutine that asked for the replay (ReplayDeadLetters, or the
// admin API's handler), one dead letter at a time in log order. fn
// returning an error puts it back on the dead-letter topic with Attempts
// counted up (fn must not call DeadLetter for it itself) and ends the
// replay of that source. A nil fn removes the replayer. The source
// "broker" is the broker's own and cannot be registered.
func (s *Server) SetDeadLetterReplayer(source string, fn func(m *storage.Message, dl DeadLetter) error) {
	if source == dlqSource {
		s.log.Warn("dead-letter source \"broker\" is the broker's own; replayer not registered")
		return
	}
	s.dl.mu.Lock()
	defer s.dl.mu.Unlock()
	if fn == nil {
		delete(s.dl.replayers, source)
		return
	}
	if s.dl.replayers == nil {
		s.dl.replayers = make(map[string]replayFunc)
	}
	s.dl.replayers[source] = fn
}

// ReplayDeadLetters replays every stored dead letter of source (see
// SetDeadLetterReplayer; "broker" republishes them on their original
// topics) and returns how many were replayed. Bridges call it when their
// sink is healthy again. It replays the dead letters stored when it
// starts, once each: one that fails again goes back to the dead-letter
// topic, the rest of the source is left for the next replay, and the
// error wraps ErrReplayFailed. Without a replayer for source the error
// wraps ErrNoReplayer and nothing is replayed.
func (s *Server) ReplayDeadLetters(source string) (int, error) {
	if source == "" || strings.ContainsAny(source, "/+#") {
		return 0, fmt.Errorf("mqtt: dead letter source %q must be one topic level without wildcards", source)
	}
	if source != dlqSource && s.dl.replayer(source) == nil {
		return 0, fmt.Errorf("%w: %s", ErrNoReplayer, source)
	}
	res, err := s.replayDeadLetters(dlqFilter{Source: source})
	if err != nil {
		return res.Replayed, err
	}
	if res.Failed > 0 {
		return res.Replayed, fmt.Errorf("%w: source %q: %d failed, %d left for the next replay: %s",
			ErrReplayFailed, source, res.Failed, res.Skipped, res.Errors[0])
	}
	return res.Replayed, nil
}

// dlqFilter selects dead letters (the admin API's filters). Zero fields
// select everything.
type dlqFilter struct {
	Source string
	Reason string
	Topic  string    // a topic filter on the original topic; wildcards allowed
	Since  time.Time // dead-lettered at or after
	Until  time.Time // dead-lettered before
	After  uint64    // log sequence number greater than
	Limit  int       // at most this many; 0 = no limit
}

func (f *dlqFilter) match(e *storage.DeadLetterEntry) bool {
	switch {
	case f.Source != "" && e.Source != f.Source,
		f.Reason != "" && e.Reason != f.Reason,
		!f.Since.IsZero() && e.At.Before(f.Since),
		!f.Until.IsZero() && !e.At.Before(f.Until),
		f.Topic != "" && !topics.MatchFilter(f.Topic, e.Topic):
		return false
	}
	return true
}

// selectDeadLetters returns the index entries f selects, in log order.
func (s *Server) selectDeadLetters(f dlqFilter) ([]*storage.DeadLetterEntry, error) {
	var out []*storage.DeadLetterEntry
	err := s.store.DeadLetters(f.After+1, func(e *storage.DeadLetterEntry) bool {
		if e.Seq <= f.After || !f.match(e) {
			return true
		}
		out = append(out, e)
		return f.Limit <= 0 || len(out) < f.Limit
	})
	return out, err
}

const maxReplayErrors = 10

// replayDeadLetters replays the dead letters f selects, in log order: for
// source "broker" by republishing on the original topic, for any other
// source through its replayer. Only what is stored when it starts is
// replayed, so a dead letter that fails again (and is dead-lettered anew)
// is not replayed a second time by the same call. After a failure the
// other dead letters of that source are skipped: its destination is
// evidently still failing. The error is for the replay as a whole (a
// source without replayer, the index unreadable); failures of single dead
// letters are in the result.
func (s *Server) replayDeadLetters(f dlqFilter) (DLQReplayResult, error) {
	var res DLQReplayResult
	s.dl.opMu.Lock()
	defer s.dl.opMu.Unlock()
	entries, err := s.selectDeadLetters(f)
	if err != nil {
		return res, fmt.Errorf("mqtt: reading the dead-letter index: %w", err)
	}
	fns := make(map[string]replayFunc)
	var missing []string
	for _, e := range entries {
		if _, seen := fns[e.Source]; seen || e.Source == dlqSource {
			continue
		}
		fn := s.dl.replayer(e.Source)
		if fn == nil {
			if !slices.Contains(missing, e.Source) {
				missing = append(missing, e.Source)
			}
			continue
		}
		fns[e.Source] = fn
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return res, fmt.Errorf("%w: %s (replaying them needs the bridge of that name configured and running; narrow the selection with a source filter)",
			ErrNoReplayer, strings.Join(missing, ", "))
	}
	failed := make(map[string]bool)
loop:
	for i, e := range entries {
		select {
		case <-s.quit:
			res.Skipped += len(entries) - i // shutting down: the rest waits
			break loop
		default:
		}
		if failed[e.Source] {
			res.Skipped++
			continue
		}
		ok, stop, err := s.replayOne(e, fns[e.Source])
		if ok {
			res.Replayed++
		} else {
			res.Failed++
		}
		if stop {
			failed[e.Source] = true
		}
		if err != nil && len(res.Errors) < maxReplayErrors {
			res.Errors = append(res.Errors, fmt.Sprintf("dead letter %d (source %s, topic %s): %v", e.Seq, e.Source, e.Topic, err))
		}
	}
	s.stats.DeadLettersReplayed.Add(uint64(res.Replayed))
	s.stats.DeadLetterReplayFailed.Add(uint64(res.Failed))
	if res.Replayed+res.Failed > 0 {
		s.log.Info("dead letters replayed", "replayed", res.Replayed, "failed", res.Failed, "skipped", res.Skipped)
	}
	return res, nil
}

// replayOne replays one dead letter; fn is nil for source "broker". ok
// says it reached its destination; stop says the destination failed (the
// rest of its source is not tried); err says what went wrong, also for a
// replay that worked but could not leave the index.
func (s *Server) replayOne(e *storage.DeadLetterEntry, fn replayFunc) (ok, stop bool, err error) {
	d, err := s.store.Get(e.Seq)
	if errors.Is(err, storage.ErrNotFound) {
		// Its log entry is gone (collection keeps indexed entries, so it
		// was removed behind the broker's back): nothing is left to
		// replay, and the index entry is dropped with it.
		if rerr := s.removeDeadLetters(e.Seq); rerr != nil {
			return false, false, fmt.Errorf("its log entry is gone, and removing the index entry failed: %w", rerr)
		}
		return false, false, errors.New("its log entry is gone; index entry removed")
	}
	if err != nil {
		return false, true, fmt.Errorf("reading it from the log: %w", err)
	}
	orig := originalMessage(e, d)
	if fn == nil {
		orig.Seq = 0
		s.dl.markReplay(orig, replayMark{attempts: max(e.Attempts, 1), first: e.FirstFailure})
		err := s.Publish(orig)
		s.dl.publishedReplay(orig, err == nil)
		if err != nil {
			return false, true, fmt.Errorf("republishing: %w", err)
		}
	} else if ferr := fn(orig, deadLetterOf(e)); ferr != nil {
		// Failed again: back on the dead-letter topic, one attempt more.
		again := deadLetterOf(e)
		again.Attempts = max(e.Attempts, 1) + 1
		again.LastError = ferr.Error()
		if derr := s.DeadLetter(originalMessage(e, d), again); derr != nil {
			return false, true, fmt.Errorf("%v; putting it back on the dead-letter topic failed, it stays as it was: %w", ferr, derr)
		}
		if rerr := s.removeDeadLetters(e.Seq); rerr != nil {
			return false, true, fmt.Errorf("%v; dead-lettered again, but removing the old index entry failed: %w", ferr, rerr)
		}
		return false, true, ferr
	}
	if rerr := s.removeDeadLetters(e.Seq); rerr != nil {
		return true, false, fmt.Errorf("replayed, but removing it from the index failed (a later replay repeats it): %w", rerr)
	}
	return true, false, nil
}

// originalMessage rebuilds the message a dead letter was made from: its
// topic, QoS and arrival time from the index entry, payload and
// properties from the log entry without the dlq-* user properties. It
// carries no expiry (the dead letter dropped it) and is not retained.
func originalMessage(e *storage.DeadLetterEntry, d *storage.Message) *storage.Message {
	p := d.Properties
	n := min(max(e.UserProps, 0), len(p.User))
	p.User = nil
	if n > 0 {
		p.User = slices.Clone(d.Properties.User[:n])
	}
	created := e.Created
	if created.IsZero() {
		created = d.Created
	}
	return &storage.Message{
		Seq:        e.Seq,
		Topic:      e.Topic,
		Payload:    d.Payload,
		QoS:        e.QoS,
		Properties: p,
		Created:    created,
	}
}

// deadLetterOf is the DeadLetter record of an index entry.
func deadLetterOf(e *storage.DeadLetterEntry) DeadLetter {
	return DeadLetter{
		Source:       e.Source,
		Reason:       e.Reason,
		Attempts:     e.Attempts,
		FirstFailure: e.FirstFailure,
		LastError:    e.LastError,
		Client:       e.Client,
	}
}

// purgeDeadLetters removes the dead letters f selects from the index and
// returns how many; their log entries are then collected like any other.
func (s *Server) purgeDeadLetters(f dlqFilter) (int, error) {
	s.dl.opMu.Lock()
	defer s.dl.opMu.Unlock()
	entries, err := s.selectDeadLetters(f)
	if err != nil {
		return 0, fmt.Errorf("mqtt: reading the dead-letter index: %w", err)
	}
	seqs := make([]uint64, len(entries))
	for i, e := range entries {
		seqs[i] = e.Seq
	}
	if err := s.removeDeadLetters(seqs...); err != nil {
		return 0, err
	}
	s.stats.DeadLettersPurged.Add(uint64(len(seqs)))
	if len(seqs) > 0 {
		s.log.Info("dead letters purged", "count", len(seqs))
	}
	return len(seqs), nil
}

// removeDeadLetters drops index entries (store first, then the mirror).
func (s *Server) removeDeadLetters(seqs ...uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	if err := s.store.RemoveDeadLetters(seqs...); err != nil {
		s.stats.StorageErrors.Add(1)
		return fmt.Errorf("mqtt: removing dead letters from the index: %w", err)
	}
	s.dl.noteRemoved(seqs)
	return nil
}

// dlqKeep adds the log sequence numbers of the dead letters in the index
// to keep, the set of entries log collection keeps like retained messages
// (loggc.go): neither collection nor retention removes a dead letter until
// it is replayed or purged. The index is read from the store once and then
// mirrored in memory. If it cannot be read, every dead letter on the log
// (every $dlq/ entry) is kept instead: keeping too much is safe, deleting
// a dead letter is not.
func (s *Server) dlqKeep(keep map[uint64]struct{}) {
	st := &s.dl
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.loaded {
		seqs := make(map[uint64]struct{})
		// The store is read with mu held: index writers update the store
		// before the mirror, so an entry added or removed meanwhile ends up
		// right either way.
		err := s.store.DeadLetters(0, func(e *storage.DeadLetterEntry) bool {
			seqs[e.Seq] = struct{}{}
			return true
		})
		if err != nil {
			s.log.Warn("reading the dead-letter index failed: log collection keeps every $dlq/ entry", "err", err)
			err = s.store.Scan(0, func(m *storage.Message) bool {
				if strings.HasPrefix(m.Topic, dlqPrefix) {
					keep[m.Seq] = struct{}{}
				}
				return true
			})
			if err != nil {
				s.log.Error("reading the log for dead letters failed", "err", err)
			}
			return
		}
		st.seqs, st.loaded = seqs, true
	}
	for seq := range st.seqs {
		keep[seq] = struct{}{}
	}
}

func (st *dlqState) noteAdded(seq uint64) {
	st.mu.Lock()
	if st.loaded {
		st.seqs[seq] = struct{}{}
	}
	st.mu.Unlock()
}

func (st *dlqState) noteRemoved(seqs []uint64) {
	st.mu.Lock()
	if st.loaded {
		for _, seq := range seqs {
			delete(st.seqs, seq)
		}
	}
	st.mu.Unlock()
}

func (st *dlqState) replayer(source string) replayFunc {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.replayers[source]
}

// markReplay remembers m's dead-letter history while it is republished.
func (st *dlqState) markReplay(m *storage.Message, mk replayMark) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.marks == nil {
		st.marks = make(map[*storage.Message]replayMark)
	}
	st.marks[m] = mk
}

// publishedReplay moves m's history from the message to its log sequence
// number once it is published (a QoS 0 message has none and is
// forgotten), keeping the newest replayMarksMax.
func (st *dlqState) publishedReplay(m *storage.Message, ok bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	mk := st.marks[m]
	delete(st.marks, m)
	if !ok || m.Seq == 0 {
		return
	}
	if st.marksSeq == nil {
		st.marksSeq = make(map[uint64]replayMark)
	}
	if len(st.marksOrder) >= replayMarksMax {
		delete(st.marksSeq, st.marksOrder[0])
		st.marksOrder = st.marksOrder[1:] // append reallocates now and then, dropping the head
	}
	st.marksSeq[m.Seq] = mk
	st.marksOrder = append(st.marksOrder, m.Seq)
}

// replayed returns the dead-letter history of m if m is a replay.
func (st *dlqState) replayed(m *storage.Message) (replayMark, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if mk, ok := st.marks[m]; ok {
		return mk, true
	}
	if m.Seq != 0 {
		mk, ok := st.marksSeq[m.Seq]
		return mk, ok
	}
	return replayMark{}, false
}
