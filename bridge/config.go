package bridge

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"time"

	"github.com/beaconmq/beacon/packets"
)

// Config is one bridge as the configuration file declares it. The zero
// values of the optional fields take the defaults below (see
// Config.withDefaults); Validate says what is wrong in terms of the YAML
// keys, which cmd/beacon prefixes with the bridge's name.
type Config struct {
	// Name identifies the bridge: its cursor is stored as "bridge/{Name}",
	// its dead letters go to $dlq/{Name}/{topic}, its metrics carry
	// bridge="{Name}". One topic level of letters, digits, '-' and '_'.
	Name string
	// Type is the sink: "http" or "mqtt".
	Type string
	// Direction is "out" (local log → sink, the default) or "in" (a remote
	// MQTT broker → local; Type mqtt only).
	Direction string
	// Topics are the topic filters of the messages forwarded (out). Only
	// QoS 1 and 2 messages are on the log, so only those are forwarded.
	Topics []string
	// Ordered keeps per-topic order: one message of a topic in flight at a
	// time, the next only after it was delivered or dead-lettered. When
	// false, up to Concurrency messages are in flight in any order.
	Ordered bool
	// Concurrency bounds the deliveries in flight at once (ordered: across
	// topics). Default 16.
	Concurrency int
	// Window bounds the messages read from the log and not yet completed
	// (delivered or dead-lettered): the memory a bridge holds and how far
	// deliveries run ahead of the cursor. Default 1024.
	Window int
	// Start is where a bridge seen for the first time begins: "latest"
	// (messages appended from now on, the default) or "earliest" (everything
	// still on the log). A bridge that has a stored cursor resumes there.
	Start string
	// Retry is the policy for deliveries that fail.
	Retry RetryPolicy
	// AutoReplay replays the bridge's dead letters through the sink when the
	// sink becomes healthy again after failing. Default true.
	AutoReplay *bool
	// CursorInterval is how often the cursor is saved while it moves.
	// Default 1s; it is also saved when the bridge stops.
	CursorInterval time.Duration

	HTTP *HTTPConfig // Type http
	MQTT *MQTTConfig // Type mqtt (bridge/mqtt.go)
}

// RetryPolicy is exponential backoff with jitter: the wait before attempt
// n+1 is InitialBackoff·Multiplier^(n-1), at most MaxBackoff, then moved at
// random by up to ±Jitter of itself. After MaxAttempts attempts the message
// is dead-lettered with reason sink-failed; MaxAttempts 0 retries forever.
type RetryPolicy struct {
	InitialBackoff time.Duration // default 100ms
	MaxBackoff     time.Duration // default 30s
	Multiplier     float64       // default 2
	Jitter         float64       // 0..1, default 0.2
	MaxAttempts    int           // default 10; 0 = never give up
	// maxAttemptsSet and jitterSet tell a configured 0 from an absent value.
	maxAttemptsSet, jitterSet bool
}

// SetJitter sets Jitter, including 0 (no jitter).
func (r *RetryPolicy) SetJitter(f float64) {
	r.Jitter = f
	r.jitterSet = true
}

// SetMaxAttempts sets MaxAttempts, including 0 (retry forever), which
// the zero value of RetryPolicy cannot tell from "not configured".
func (r *RetryPolicy) SetMaxAttempts(n int) {
	r.MaxAttempts = n
	r.maxAttemptsSet = true
}

// Defaults of Config and RetryPolicy.
const (
	DefaultConcurrency    = 16
	DefaultWindow         = 1024
	DefaultInitialBackoff = 100 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultMultiplier     = 2.0
	DefaultJitter         = 0.2
	DefaultMaxAttempts    = 10
	DefaultCursorInterval = time.Second
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// withDefaults returns c with every unset optional field at its default.
func (c Config) withDefaults() Config {
	if c.Direction == "" {
		c.Direction = "out"
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Start == "" {
		c.Start = "latest"
	}
	if c.CursorInterval == 0 {
		c.CursorInterval = DefaultCursorInterval
	}
	r := &c.Retry
	if r.InitialBackoff == 0 {
		r.InitialBackoff = DefaultInitialBackoff
	}
	if r.MaxBackoff == 0 {
		r.MaxBackoff = max(DefaultMaxBackoff, r.InitialBackoff)
	}
	if r.Multiplier == 0 {
		r.Multiplier = DefaultMultiplier
	}
	if r.Jitter == 0 && !r.jitterSet {
		r.Jitter = DefaultJitter
	}
	if r.MaxAttempts == 0 && !r.maxAttemptsSet {
		r.MaxAttempts = DefaultMaxAttempts
	}
	if c.AutoReplay == nil {
		t := true
		c.AutoReplay = &t
	}
	if c.HTTP != nil {
		h := *c.HTTP
		if h.Timeout == 0 {
			h.Timeout = DefaultHTTPTimeout
		}
		c.HTTP = &h
	}
	return c
}

// Validate checks c (after defaults) and returns every problem, one per
// line, each starting with the YAML key it is about.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch {
	case !nameRE.MatchString(c.Name):
		bad("name: %q must be letters, digits, '-' or '_' (it becomes a topic level of $dlq/{name}/…)", c.Name)
	case c.Name == "broker":
		bad("name: \"broker\" is the broker's own dead-letter source ($dlq/broker/…): choose another name")
	}
	switch c.Type {
	case "http":
		if c.HTTP == nil {
			bad("http: missing: a bridge of type http needs an http: section with at least url")
		} else if err := c.HTTP.validate(); err != nil {
			bad("http.%v", err)
		}
		if c.Direction != "out" {
			bad("direction: %q: an http bridge only forwards out", c.Direction)
		}
	case "mqtt":
		switch {
		case c.MQTT == nil:
			bad("mqtt: missing: a bridge of type mqtt needs an mqtt: section")
		default:
			if err := c.MQTT.validate(); err != nil {
				errs = append(errs, err)
			}
			if c.Direction == "in" && len(c.MQTT.Subscribe) == 0 {
				bad("mqtt.subscribe: missing: list the remote topic filters to bring in (direction in)")
			}
		}
	case "":
		bad("type: missing: use http or mqtt")
	default:
		bad("type: %q is not a sink type: use http or mqtt", c.Type)
	}
	switch c.Direction {
	case "out":
		if len(c.Topics) == 0 {
			bad("topics: missing: list at least one topic filter, e.g. [\"orders/#\"]")
		}
		for _, f := range c.Topics {
			if err := packets.ValidTopicFilter(f); err != nil {
				bad("topics: %q: %v", f, err)
			}
		}
	case "in":
		// The remote subscriptions are the MQTT section's business.
	default:
		bad("direction: %q: use out or in", c.Direction)
	}
	if c.Concurrency < 1 {
		bad("concurrency: %d: must be at least 1", c.Concurrency)
	}
	if c.Window < 1 {
		bad("window: %d: must be at least 1", c.Window)
	}
	if c.Start != "latest" && c.Start != "earliest" {
		bad("start: %q: use latest or earliest", c.Start)
	}
	if c.CursorInterval < 0 {
		bad("cursor_interval: %v is negative", c.CursorInterval)
	}
	r := c.Retry
	if r.InitialBackoff < 0 {
		bad("retry.initial_backoff: %v is negative", r.InitialBackoff)
	}
	if r.MaxBackoff < r.InitialBackoff {
		bad("retry.max_backoff: %v is below initial_backoff %v", r.MaxBackoff, r.InitialBackoff)
	}
	if r.Multiplier < 1 || math.IsInf(r.Multiplier, 0) || math.IsNaN(r.Multiplier) {
		bad("retry.multiplier: %v: must be a number >= 1", r.Multiplier)
	}
	if r.Jitter < 0 || r.Jitter > 1 || math.IsNaN(r.Jitter) {
		bad("retry.jitter: %v: must be from 0 to 1 (a fraction of the backoff)", r.Jitter)
	}
	if r.MaxAttempts < 0 {
		bad("retry.max_attempts: %d is negative: use 0 to retry forever", r.MaxAttempts)
	}
	return errors.Join(errs...)
}
