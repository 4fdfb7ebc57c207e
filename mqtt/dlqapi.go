package mqtt

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/storage"
)

// The dead-letter admin API (docs/deadletters.md has the JSON):
//
//	GET  /api/v1/dlq          list dead letters
//	POST /api/v1/dlq/replay   replay them to their original destination
//	POST /api/v1/dlq/purge    remove them
//
// All three take the same filters as query parameters (or, for POST, as a
// form-encoded body): source, reason, topic (a topic filter on the
// original topic, wildcards allowed), since and until (RFC 3339, on the
// time a message was dead-lettered; since inclusive, until exclusive),
// after (a log sequence number, for paging) and limit. Errors are
// {"error": "..."} with 400 for a bad filter, 409 for a replay with no
// destination, 500 for a storage failure.

const (
	dlqListDefault = 100    // GET without limit
	dlqListMax     = 10_000 // GET limit cap
)

// registerDLQAPI serves /api/v1/dlq..., each route behind adminOnly.
func (s *Server) registerDLQAPI(mux *http.ServeMux) {
	mux.Handle("GET /api/v1/dlq", s.adminOnly(http.HandlerFunc(s.handleDLQList)))
	mux.Handle("POST /api/v1/dlq/replay", s.adminOnly(http.HandlerFunc(s.handleDLQReplay)))
	mux.Handle("POST /api/v1/dlq/purge", s.adminOnly(http.HandlerFunc(s.handleDLQPurge)))
}

// DLQEntry is one dead letter as the admin API lists it.
type DLQEntry struct {
	Seq            uint64            `json:"seq"`   // log sequence number; pass as after to page
	Topic          string            `json:"topic"` // the dead letter's topic, $dlq/{source}/{original topic}
	OriginalTopic  string            `json:"original_topic"`
	Source         string            `json:"source"`
	Reason         string            `json:"reason"`
	Attempts       int               `json:"attempts"`
	FirstFailure   time.Time         `json:"first_failure"`
	DeadLetteredAt time.Time         `json:"dead_lettered_at"`
	LastError      string            `json:"last_error,omitempty"`
	Client         string            `json:"client,omitempty"`
	QoS            byte              `json:"qos"` // the original QoS
	PayloadSize    int               `json:"payload_size"`
	Payload        []byte            `json:"payload"` // base64 in JSON
	ContentType    string            `json:"content_type,omitempty"`
	UserProperties []DLQUserProperty `json:"user_properties,omitempty"` // the original message's own
	// Missing: the log entry is gone (removed by retention); only the
	// index record is left, and replaying it removes that.
	Missing bool `json:"missing,omitempty"`
}

// DLQUserProperty is one user property of a listed dead letter.
type DLQUserProperty struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// DLQList is the answer of GET /api/v1/dlq: like the admin API's other
// lists an "items" envelope, but paged by log sequence number rather than
// offset, so that pages stay right while dead letters come and go.
// NextAfter is set when more dead letters match: pass it as after to get
// the next page.
type DLQList struct {
	Items     []DLQEntry `json:"items"`
	Limit     int        `json:"limit"`
	NextAfter uint64     `json:"next_after,omitempty"`
}

// DLQReplayResult is the answer of POST /api/v1/dlq/replay.
type DLQReplayResult struct {
	Replayed int      `json:"replayed"` // reached their destination and left the index
	Failed   int      `json:"failed"`   // failed again (back on the dead-letter topic) or could not be read
	Skipped  int      `json:"skipped"`  // not tried: an earlier one of the same source failed
	Errors   []string `json:"errors,omitempty"`
}

// DLQPurgeResult is the answer of POST /api/v1/dlq/purge.
type DLQPurgeResult struct {
	Purged int `json:"purged"`
}

// parseDLQFilter reads the filters of r; defLimit applies without limit.
func parseDLQFilter(r *http.Request, defLimit, maxLimit int) (dlqFilter, error) {
	var f dlqFilter
	if err := r.ParseForm(); err != nil {
		return f, fmt.Errorf("reading the parameters: %w", err)
	}
	q := r.Form
	f.Source, f.Reason, f.Topic = q.Get("source"), q.Get("reason"), q.Get("topic")
	if f.Source != "" && strings.ContainsAny(f.Source, "/+#") {
		return f, fmt.Errorf("source %q: a source is one topic level (\"broker\" or a bridge name)", f.Source)
	}
	if f.Topic != "" {
		if err := packets.ValidTopicFilter(f.Topic); err != nil {
			return f, fmt.Errorf("topic %q is not a valid topic filter: %w", f.Topic, err)
		}
	}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return f, fmt.Errorf("%s %q is not an RFC 3339 time such as 2026-01-02T15:04:05Z", p.name, v)
			}
			*p.t = t
		}
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return f, fmt.Errorf("after %q is not a sequence number", v)
		}
		f.After = n
	}
	f.Limit = defLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return f, fmt.Errorf("limit %q is not a count >= 0", v)
		}
		f.Limit = n
	}
	if maxLimit > 0 && (f.Limit == 0 || f.Limit > maxLimit) {
		f.Limit = maxLimit
	}
	return f, nil
}

func dlqJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func dlqError(w http.ResponseWriter, code int, err error) {
	dlqJSON(w, code, map[string]string{"error": err.Error()})
}

func (s *Server) handleDLQList(w http.ResponseWriter, r *http.Request) {
	f, err := parseDLQFilter(r, dlqListDefault, dlqListMax)
	if err != nil {
		dlqError(w, http.StatusBadRequest, err)
		return
	}
	limit := f.Limit
	f.Limit++ // one more tells whether there is a next page
	entries, err := s.selectDeadLetters(f)
	if err != nil {
		dlqError(w, http.StatusInternalServerError, fmt.Errorf("reading the dead-letter index: %w", err))
		return
	}
	out := DLQList{Items: make([]DLQEntry, 0, min(len(entries), limit)), Limit: limit}
	if len(entries) > limit {
		entries = entries[:limit]
		out.NextAfter = entries[len(entries)-1].Seq
	}
	for _, e := range entries {
		item, err := s.dlqEntry(e)
		if err != nil {
			dlqError(w, http.StatusInternalServerError, err)
			return
		}
		out.Items = append(out.Items, item)
	}
	dlqJSON(w, http.StatusOK, out)
}

// dlqEntry is the listing of index entry e, with payload and original
// properties read from its log entry.
func (s *Server) dlqEntry(e *storage.DeadLetterEntry) (DLQEntry, error) {
	item := DLQEntry{
		Seq:            e.Seq,
		Topic:          dlqPrefix + e.Source + "/" + e.Topic,
		OriginalTopic:  e.Topic,
		Source:         e.Source,
		Reason:         e.Reason,
		Attempts:       e.Attempts,
		FirstFailure:   e.FirstFailure,
		DeadLetteredAt: e.At,
		LastError:      e.LastError,
		Client:         e.Client,
		QoS:            e.QoS,
	}
	d, err := s.store.Get(e.Seq)
	if errors.Is(err, storage.ErrNotFound) {
		item.Missing = true
		return item, nil
	}
	if err != nil {
		return item, fmt.Errorf("reading dead letter %d from the log: %w", e.Seq, err)
	}
	m := originalMessage(e, d)
	item.Payload, item.PayloadSize = m.Payload, len(m.Payload)
	item.ContentType = m.Properties.ContentType
	for _, u := range m.Properties.User {
		item.UserProperties = append(item.UserProperties, DLQUserProperty{Key: u.Key, Value: u.Value})
	}
	return item, nil
}

func (s *Server) handleDLQReplay(w http.ResponseWriter, r *http.Request) {
	f, err := parseDLQFilter(r, 0, 0)
	if err != nil {
		dlqError(w, http.StatusBadRequest, err)
		return
	}
	res, err := s.replayDeadLetters(f)
	switch {
	case errors.Is(err, ErrNoReplayer):
		dlqError(w, http.StatusConflict, err)
		return
	case err != nil:
		dlqError(w, http.StatusInternalServerError, err)
		return
	}
	dlqJSON(w, http.StatusOK, res)
}

func (s *Server) handleDLQPurge(w http.ResponseWriter, r *http.Request) {
	f, err := parseDLQFilter(r, 0, 0)
	if err != nil {
		dlqError(w, http.StatusBadRequest, err)
		return
	}
	n, err := s.purgeDeadLetters(f)
	if err != nil {
		dlqError(w, http.StatusInternalServerError, err)
		return
	}
	dlqJSON(w, http.StatusOK, DLQPurgeResult{Purged: n})
}
