// Package bridge forwards messages between the broker's ordered log and
// backend consumers: remote MQTT brokers and HTTP endpoints. A bridge is a
// named consumer of the log with its own persisted cursor; it delivers at
// least once, retries with backoff, and dead-letters what its sink
// refuses for good (see docs/bridges.md).
package bridge

import (
	"context"
	"errors"

	"github.com/beaconmq/beacon/storage"
)

// Sink is where a bridge delivers messages (direction out).
type Sink interface {
	// Deliver sends m and returns nil once the remote end has accepted it
	// (MQTT: PUBACK; HTTP: a 2xx answer). Errors are retried with backoff
	// unless wrapped with Permanent.
	Deliver(ctx context.Context, m *storage.Message) error
	// Close releases the sink's connections.
	Close() error
}

// permanentError marks a failure retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps err so the bridge dead-letters the message at once
// instead of retrying (e.g. HTTP 4xx, a PUBACK reason code the remote
// will repeat).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err was wrapped with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// Prober is implemented by sinks that can tell whether the remote end
// works again without delivering a message. While a sink is down its
// bridge probes it with backoff; the first success marks it up and starts
// the automatic replay of the bridge's dead letters. A sink without Probe
// is marked up by its next successful delivery.
type Prober interface {
	Probe(ctx context.Context) error
}
