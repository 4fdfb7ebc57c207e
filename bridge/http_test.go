package bridge

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/storage"
)

func TestHTTPSinkFormat(t *testing.T) {
	ep := newEndpoint(t)
	sink, err := NewHTTPSink("fmt", HTTPConfig{URL: ep.url(), BearerToken: "s3cret", Headers: map[string]string{"X-Api-Key": "k"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	m := &storage.Message{Seq: 42, Topic: "orders/ü 1/paid", Payload: []byte(`{"id":1}`), QoS: 2, Retain: true,
		Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	m.Properties.ContentType = "application/json"
	m.Properties.CorrelationData = []byte{1, 2, 3}
	m.Properties.User = []packets.UserProperty{{Key: "region", Value: "eu"}, {Key: "region", Value: "us"}, {Key: "a b", Value: "50%"}}
	if err := sink.Deliver(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	c := ep.calls[0]
	h := c.header
	for k, want := range map[string]string{
		"Content-Type": "application/json", "Beacon-Topic": "orders/%C3%BC 1/paid", "Beacon-Seq": "42",
		"Beacon-Bridge": "fmt", "Beacon-Qos": "2", "Beacon-Retain": "true",
		"Beacon-Published-At": "2026-01-02T03:04:05Z", "Beacon-Correlation-Data": "AQID",
		"Authorization": "Bearer s3cret", "X-Api-Key": "k", "Beacon-Prop-A%20b": "50%25",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if got := h.Values("Beacon-Prop-Region"); !slices.Equal(got, []string{"eu", "us"}) {
		t.Errorf("Beacon-Prop-Region %v", got)
	}
	if c.payload != `{"id":1}` {
		t.Errorf("body %q", c.payload)
	}
}

func TestHTTPSinkOutcomes(t *testing.T) {
	for _, tc := range []struct {
		code      int
		retry4xx  bool
		ok, perm  bool
		probeGood bool
	}{
		{200, false, true, false, true}, {204, false, true, false, true},
		{400, false, false, true, true}, {404, true, false, false, true},
		{408, false, false, false, false}, {429, false, false, false, false},
		{500, false, false, false, false}, {503, false, false, false, false},
		{302, false, false, true, true},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tc.code == 302 {
				w.Header().Set("Location", "/elsewhere")
			}
			w.WriteHeader(tc.code)
		}))
		sink, err := NewHTTPSink("o", HTTPConfig{URL: srv.URL, Retry4xx: tc.retry4xx}, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = sink.Deliver(context.Background(), &storage.Message{Topic: "t", QoS: 1})
		if (err == nil) != tc.ok || IsPermanent(err) != tc.perm {
			t.Errorf("HTTP %d (retry_4xx %v): err %v permanent %v", tc.code, tc.retry4xx, err, IsPermanent(err))
		}
		if perr := sink.(Prober).Probe(context.Background()); (perr == nil) != tc.probeGood {
			t.Errorf("HTTP %d: probe %v", tc.code, perr)
		}
		sink.Close()
		srv.Close()
	}
	// Timeout: retried, not permanent.
	block := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(block)
	sink, _ := NewHTTPSink("o", HTTPConfig{URL: slow.URL, Timeout: 50 * time.Millisecond}, nil)
	if err := sink.Deliver(context.Background(), &storage.Message{Topic: "t"}); err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("timeout: %v", err)
	}
	// Connection refused: retried.
	closed := httptest.NewServer(http.NotFoundHandler())
	url := closed.URL
	closed.Close()
	sink, _ = NewHTTPSink("o", HTTPConfig{URL: url}, nil)
	if err := sink.Deliver(context.Background(), &storage.Message{Topic: "t"}); err == nil || IsPermanent(err) {
		t.Errorf("connection refused: %v", err)
	}
	if err := sink.(Prober).Probe(context.Background()); err == nil {
		t.Error("probe of a closed port succeeded")
	}
}

func TestRetryBackoff(t *testing.T) {
	r := RetryPolicy{InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, Multiplier: 2, Jitter: 0.5}
	for _, tc := range []struct {
		attempt int
		u       float64
		want    time.Duration
	}{
		{1, 0.5, 100 * time.Millisecond}, {2, 0.5, 200 * time.Millisecond}, {4, 0.5, 800 * time.Millisecond},
		{5, 0.5, time.Second}, {200, 0.5, time.Second}, {1, 0, 50 * time.Millisecond}, {5, 0.999999, 1499999 * time.Microsecond},
	} {
		if got := backoff(r, tc.attempt, tc.u); got.Round(time.Microsecond) != tc.want {
			t.Errorf("attempt %d u %v: %v, want %v", tc.attempt, tc.u, got, tc.want)
		}
	}
}

func TestHTTPSinkCAFile(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	m := &storage.Message{Topic: "t", QoS: 1}
	plain, _ := NewHTTPSink("tls", HTTPConfig{URL: srv.URL}, nil)
	defer plain.Close()
	if err := plain.Deliver(context.Background(), m); err == nil || IsPermanent(err) {
		t.Errorf("without ca_file: %v", err)
	}
	trusted, err := NewHTTPSink("tls", HTTPConfig{URL: srv.URL, CAFile: ca}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer trusted.Close()
	if err := trusted.Deliver(context.Background(), m); err != nil {
		t.Errorf("with ca_file: %v", err)
	}
	if _, err := NewHTTPSink("tls", HTTPConfig{URL: srv.URL, CAFile: ca + ".missing"}, nil); err == nil || !strings.Contains(err.Error(), "ca_file") {
		t.Errorf("missing ca_file: %v", err)
	}
}

func TestBridgeRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"": 0, "3": 3 * time.Second, " 7 ": 7 * time.Second, "-1": 0, "soon": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Minute).Format(http.TimeFormat):     0,
	} {
		if got := retryAfter(v, now); got != want {
			t.Errorf("Retry-After %q: %v, want %v", v, got, want)
		}
	}
	b := &Bridge{cfg: Config{Retry: RetryPolicy{InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Second, Multiplier: 2}}}
	if got := b.waitAfter(1, &StatusError{Code: 429, Wait: 2 * time.Second}); got != 2*time.Second {
		t.Errorf("wait with Retry-After 2s: %v", got)
	}
	if got := b.waitAfter(1, fmt.Errorf("wrapped: %w", &StatusError{Code: 503, Wait: time.Hour})); got != 5*time.Second {
		t.Errorf("wait with Retry-After 1h, max_backoff 5s: %v", got)
	}
	if got := b.waitAfter(1, &StatusError{Code: 503}); got != time.Millisecond {
		t.Errorf("wait without Retry-After: %v", got)
	}
	// The sink reads the header.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "4")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	sink, _ := NewHTTPSink("ra", HTTPConfig{URL: srv.URL}, nil)
	defer sink.Close()
	err := sink.Deliver(context.Background(), &storage.Message{Topic: "t"})
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 429 || se.RetryAfter() != 4*time.Second || IsPermanent(err) {
		t.Errorf("429 with Retry-After: %v", err)
	}
}
