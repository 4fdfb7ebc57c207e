package bridge

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/storage"
)

// The HTTP sink POSTs each message to one URL. The request body is the
// payload, unchanged; everything else travels in headers (docs/bridges.md
// shows an example):
//
//	Content-Type           the message's Content Type, else text/plain;
//	                       charset=utf-8 for Payload Format 1, else
//	                       application/octet-stream
//	Beacon-Topic           the topic the message was published on
//	Beacon-Seq             its log sequence number: unique per broker and
//	                       the same on every redelivery, so receivers use it
//	                       as the idempotency key to drop duplicates
//	Beacon-Bridge          the bridge's name
//	Beacon-QoS             0, 1 or 2 as published
//	Beacon-Retain          true or false
//	Beacon-Published-At    arrival time at the broker, RFC 3339 (UTC)
//	Beacon-Payload-Format  0 or 1, when the publisher set it
//	Beacon-Message-Expiry  seconds left of its Message Expiry Interval
//	Beacon-Response-Topic  the Response Topic, when set
//	Beacon-Correlation-Data  the Correlation Data, base64 (standard)
//	Beacon-Prop-{name}     one header per user property, in order
//
// Header values (and the {name} of user properties) are percent-encoded:
// '%', control characters and every non-ASCII byte become %XX, so a
// receiver decodes them with any URL-unescape function and ordinary topics
// read unchanged. HTTP header names are case-insensitive: user property
// names that differ only in case arrive as one header with several values.
//
// Outcome: a 2xx answer is success. 408, 429, 5xx, a timeout and a
// connection error are retried (after at least the answer's Retry-After,
// see StatusError.RetryAfter). Other 4xx answers are permanent (the
// message is dead-lettered at once) unless Retry4xx is set; 1xx and 3xx
// answers are permanent too (redirects are not followed: a POST would be
// replayed as a GET).

// DefaultHTTPTimeout bounds one HTTP delivery attempt.
const DefaultHTTPTimeout = 10 * time.Second

// HTTPConfig configures an http sink.
type HTTPConfig struct {
	// URL receives one POST per message (http or https).
	URL string
	// Timeout bounds one attempt, from connecting to reading the answer.
	Timeout time.Duration
	// Headers are sent with every request (e.g. an API key).
	Headers map[string]string
	// BearerToken, when set, is sent as "Authorization: Bearer …". The
	// configuration file names an environment variable that holds it
	// (bearer_token_env); it never stands in the file itself.
	BearerToken string
	// Retry4xx retries 4xx answers like 5xx instead of dead-lettering them.
	Retry4xx bool
	// HealthURL, when set, is probed with GET while the sink is down; a 2xx
	// answer means healthy again. When empty the probe is a HEAD request to
	// URL, and any answer other than 408, 429 or 5xx counts as healthy.
	HealthURL string
	// CAFile (PEM) replaces the system's roots for https URLs; CertFile and
	// KeyFile (PEM) are a client certificate for mutual TLS.
	CAFile, CertFile, KeyFile string
}

func (h *HTTPConfig) validate() error {
	var errs []error
	for _, f := range []struct{ key, v string }{{"url", h.URL}, {"health_url", h.HealthURL}} {
		if f.v == "" && f.key == "health_url" {
			continue
		}
		u, err := url.Parse(f.v)
		switch {
		case f.v == "":
			errs = append(errs, fmt.Errorf("%s: missing: the address to POST messages to", f.key))
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %v", f.key, err))
		case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
			errs = append(errs, fmt.Errorf("%s: %q: want an absolute http:// or https:// URL", f.key, f.v))
		}
	}
	for _, f := range []struct{ key, path string }{{"ca_file", h.CAFile}, {"cert_file", h.CertFile}, {"key_file", h.KeyFile}} {
		if f.path != "" {
			if _, err := os.Stat(f.path); err != nil {
				errs = append(errs, fmt.Errorf("%s: %v", f.key, err))
			}
		}
	}
	if (h.CertFile == "") != (h.KeyFile == "") {
		errs = append(errs, errors.New("cert_file and key_file go together: set both for a client certificate, or neither"))
	}
	if h.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout: %v is negative", h.Timeout))
	}
	for k, v := range h.Headers {
		if !validHeaderName(k) {
			errs = append(errs, fmt.Errorf("headers: %q is not a valid HTTP header name", k))
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			errs = append(errs, fmt.Errorf("headers: %s: the value contains a line break or NUL", k))
		}
	}
	return errors.Join(errs...)
}

// httpSink is the Sink of an http bridge.
type httpSink struct {
	name   string
	cfg    HTTPConfig
	client *http.Client
	log    *slog.Logger
}

// NewHTTPSink returns the sink of the http bridge name. cfg.Timeout 0
// means DefaultHTTPTimeout.
func NewHTTPSink(name string, cfg HTTPConfig, logger *slog.Logger) (Sink, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("bridge %s: http.%w", name, err)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultHTTPTimeout
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	if cfg.CAFile != "" || cfg.CertFile != "" {
		tc, err := cfg.tlsConfig()
		if err != nil {
			return nil, fmt.Errorf("bridge %s: %w", name, err)
		}
		tr.TLSClientConfig = tc
	}
	return &httpSink{
		name: name,
		cfg:  cfg,
		log:  logger,
		client: &http.Client{
			Transport: tr,
			Timeout:   cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}, nil
}

// Deliver POSTs m and classifies the answer (see the package comment of
// this file).
func (s *httpSink) Deliver(ctx context.Context, m *storage.Message) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(m.Payload))
	if err != nil {
		return Permanent(err)
	}
	s.setHeaders(req.Header, m)
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", s.cfg.URL, stripURLError(err))
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // keep the connection reusable
	code := resp.StatusCode
	if code >= 200 && code <= 299 {
		return nil
	}
	err = &StatusError{Code: code, Body: strings.TrimSpace(string(snippet)), Wait: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	if retryableStatus(code) || (s.cfg.Retry4xx && code >= 400 && code <= 499) {
		return err
	}
	return Permanent(err)
}

// Probe tells whether the endpoint answers again (see HTTPConfig.HealthURL).
func (s *httpSink) Probe(ctx context.Context) error {
	method, target := http.MethodHead, s.cfg.URL
	if s.cfg.HealthURL != "" {
		method, target = http.MethodGet, s.cfg.HealthURL
	}
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return err
	}
	s.setAuth(req.Header)
	resp, err := s.client.Do(req)
	if err != nil {
		return stripURLError(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if s.cfg.HealthURL != "" && (resp.StatusCode < 200 || resp.StatusCode > 299) {
		return &StatusError{Code: resp.StatusCode}
	}
	if retryableStatus(resp.StatusCode) {
		return &StatusError{Code: resp.StatusCode}
	}
	return nil
}

// Close releases idle connections.
func (s *httpSink) Close() error {
	s.client.CloseIdleConnections()
	return nil
}

// StatusError is a non-2xx answer of an HTTP endpoint.
type StatusError struct {
	Code int
	Body string        // the first bytes of the answer's body
	Wait time.Duration // the answer's Retry-After, if any
}

// RetryAfter is how long the endpoint asked to wait (Retry-After); the
// bridge waits at least that long, up to its max_backoff, before the next
// attempt.
func (e *StatusError) RetryAfter() time.Duration { return e.Wait }

// retryAfter parses a Retry-After value: delay-seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32); err == nil {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("HTTP %d %s", e.Code, http.StatusText(e.Code))
	}
	return fmt.Sprintf("HTTP %d %s: %s", e.Code, http.StatusText(e.Code), e.Body)
}

// retryableStatus: a status that says "try again later".
func retryableStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// stripURLError drops the *url.Error wrapper (it repeats method and URL)
// but keeps timeouts recognisable.
func stripURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return fmt.Errorf("timeout: %w", ue.Err)
		}
		return ue.Err
	}
	return err
}

func (s *httpSink) setAuth(h http.Header) {
	for k, v := range s.cfg.Headers {
		h.Set(k, v)
	}
	if s.cfg.BearerToken != "" {
		h.Set("Authorization", "Bearer "+s.cfg.BearerToken)
	}
}

func (s *httpSink) setHeaders(h http.Header, m *storage.Message) {
	s.setAuth(h)
	p := &m.Properties
	switch {
	case p.Has(packets.PropContentType) && p.ContentType != "":
		h.Set("Content-Type", headerValue(p.ContentType))
	case p.Has(packets.PropPayloadFormat) && p.PayloadFormat == 1:
		h.Set("Content-Type", "text/plain; charset=utf-8")
	default:
		h.Set("Content-Type", "application/octet-stream")
	}
	h.Set("Beacon-Topic", headerValue(m.Topic))
	h.Set("Beacon-Seq", strconv.FormatUint(m.Seq, 10))
	h.Set("Beacon-Bridge", s.name)
	h.Set("Beacon-QoS", strconv.Itoa(int(m.QoS)))
	h.Set("Beacon-Retain", strconv.FormatBool(m.Retain))
	if !m.Created.IsZero() {
		h.Set("Beacon-Published-At", m.Created.UTC().Format(time.RFC3339Nano))
	}
	if p.Has(packets.PropPayloadFormat) {
		h.Set("Beacon-Payload-Format", strconv.Itoa(int(p.PayloadFormat)))
	}
	if exp := m.ExpiresAt(); !exp.IsZero() {
		left := max(time.Until(exp).Round(time.Second)/time.Second, 0)
		h.Set("Beacon-Message-Expiry", strconv.FormatInt(int64(left), 10))
	}
	if p.Has(packets.PropResponseTopic) {
		h.Set("Beacon-Response-Topic", headerValue(p.ResponseTopic))
	}
	if p.Has(packets.PropCorrelationData) {
		h.Set("Beacon-Correlation-Data", base64.StdEncoding.EncodeToString(p.CorrelationData))
	}
	for _, u := range p.User {
		h.Add("Beacon-Prop-"+headerName(u.Key), headerValue(u.Value))
	}
}

// headerValue percent-encodes '%', control bytes and non-ASCII bytes.
func headerValue(s string) string {
	return percentEncode(s, func(c byte) bool { return c >= 0x20 && c < 0x7f && c != '%' })
}

// headerName percent-encodes every byte that may not stand in an HTTP
// header name (RFC 9110 tchar), and '%'.
func headerName(s string) string {
	return percentEncode(s, func(c byte) bool { return c != '%' && isTchar(c) })
}

func percentEncode(s string, keep func(byte) bool) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !keep(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if keep(c) {
			b = append(b, c)
		} else {
			b = append(b, '%', hex[c>>4], hex[c&15])
		}
	}
	return string(b)
}

func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return false
		}
	}
	return true
}

// tlsConfig loads CAFile and the client certificate.
func (h *HTTPConfig) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if h.CAFile != "" {
		pem, err := os.ReadFile(h.CAFile)
		if err != nil {
			return nil, fmt.Errorf("http.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("http.ca_file %s: no PEM certificate in it", h.CAFile)
		}
		tc.RootCAs = pool
	}
	if h.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(h.CertFile, h.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("http.cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
