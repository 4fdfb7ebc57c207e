package storage

import (
	"fmt"
	"time"
)

// DeadLetterEntry is the index record of one dead letter: a message the
// broker or a bridge failed to deliver, republished on the log under
// $dlq/{Source}/{Topic}. The log entry (Seq) holds the payload and the
// properties; the entry holds what listing, filtering and replaying need
// without reading it, and what the dead letter's topic and properties no
// longer say about the original message (its QoS, its arrival time, how
// many of its user properties were its own).
//
// The index is what keeps a dead letter: log collection keeps every log
// entry an index entry refers to, until the dead letter is replayed or
// purged and its entry removed.
type DeadLetterEntry struct {
	Seq          uint64    // log sequence number of the dead letter
	Source       string    // "broker" or a bridge name
	Reason       string    // why: expired, queue-full, too-large, nack, sink-failed, ...
	Topic        string    // the original topic
	QoS          byte      // the original QoS
	Attempts     int       // delivery attempts so far
	FirstFailure time.Time // the first failed attempt
	At           time.Time // when it was dead-lettered
	Created      time.Time // when the original message arrived
	LastError    string
	Client       string // the subscriber that failed, if any
	// UserProps is how many of the dead letter's user properties are the
	// original message's own; the dlq-* ones follow them.
	UserProps int
}

// DeadLetterStore keeps the dead-letter index, ordered by Seq.
type DeadLetterStore interface {
	// AddDeadLetter stores e under e.Seq (replacing an entry with the same
	// Seq) and returns once it is durable in the configured mode.
	AddDeadLetter(e *DeadLetterEntry) error
	// DeadLetters calls fn with a copy of every entry with Seq >= from, in
	// Seq order, until fn returns false. No lock is held while fn runs.
	DeadLetters(from uint64, fn func(*DeadLetterEntry) bool) error
	// RemoveDeadLetters deletes the entries with these sequence numbers;
	// unknown ones are ignored.
	RemoveDeadLetters(seqs ...uint64) error
}

// Dead-letter entry (format 1), the badger value of q/<seq:8>:
//
//	format=1 | qos | attempts | first failure | at | created | user props
//	| source | reason | topic | last error | client
func appendDeadLetter(dst []byte, e *DeadLetterEntry) []byte {
	en := encoder{b: dst}
	en.byte(codecVersion)
	en.byte(e.QoS)
	en.uvarint(uint64(max(e.Attempts, 0)))
	en.time(e.FirstFailure)
	en.time(e.At)
	en.time(e.Created)
	en.uvarint(uint64(max(e.UserProps, 0)))
	en.string(e.Source)
	en.string(e.Reason)
	en.string(e.Topic)
	en.string(e.LastError)
	en.string(e.Client)
	return en.b
}

// decodeDeadLetter decodes an entry; seq comes from its key.
func decodeDeadLetter(seq uint64, b []byte) (*DeadLetterEntry, error) {
	d := decoder{b: b}
	if v := d.byte("dead letter format"); d.err == nil && v != codecVersion {
		return nil, fmt.Errorf("%w: unknown dead letter format %d", errCorruptValue, v)
	}
	e := &DeadLetterEntry{Seq: seq}
	e.QoS = d.byte("qos")
	e.Attempts = int(min(d.uvarint("attempts"), 1<<31-1))
	e.FirstFailure = d.time("first failure")
	e.At = d.time("dead-lettered at")
	e.Created = d.time("created")
	e.UserProps = int(min(d.uvarint("user property count"), 1<<31-1))
	e.Source = d.string("source")
	e.Reason = d.string("reason")
	e.Topic = d.string("topic")
	e.LastError = d.string("last error")
	e.Client = d.string("client")
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes after dead letter", errCorruptValue, len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return e, nil
}
