package main

import (
	"encoding/binary"
	"math"
	"math/bits"
	"strconv"
	"time"
)

// The payload of every benchmark PUBLISH starts with a fixed header that
// lets the receiving side check loss, order and latency without any state
// shared with the publisher:
//
//	bytes 0..3   publisher number (big endian)
//	bytes 4..11  sequence number within that publisher, from 0
//	bytes 12..19 send time, nanoseconds since the bench process started
//	             (monotonic clock; publisher and subscriber share the process)
//
// The rest of the payload, up to --size, is filler.
const payloadHeader = 20

// maxTrackedSeq bounds the sequence numbers a tracker accepts, so a
// corrupted payload cannot make it allocate a huge bitmap.
const maxTrackedSeq = 1 << 32

// benchEpoch is the origin of the send times carried in payloads.
var benchEpoch = time.Now()

func nowNanos() int64 { return int64(time.Since(benchEpoch)) }

// putPayloadHeader writes the header into p (len(p) >= payloadHeader).
func putPayloadHeader(p []byte, pub uint32, seq uint64, sent int64) {
	binary.BigEndian.PutUint32(p[0:4], pub)
	binary.BigEndian.PutUint64(p[4:12], seq)
	binary.BigEndian.PutUint64(p[12:20], uint64(sent))
}

// parsePayloadHeader reads the header; ok is false for a payload too short
// to carry one (a message the bench did not send).
func parsePayloadHeader(p []byte) (pub uint32, seq uint64, sent int64, ok bool) {
	if len(p) < payloadHeader {
		return 0, 0, 0, false
	}
	return binary.BigEndian.Uint32(p[0:4]), binary.BigEndian.Uint64(p[4:12]), int64(binary.BigEndian.Uint64(p[12:20])), true
}

// seqTracker follows one publisher's stream as seen by one subscriber. A
// bitmap of the sequence numbers received tells duplicates from first
// arrivals; a first arrival below the highest number already seen is a
// reordering (MQTT 5.0 §4.6 requires a subscriber to see one publisher's
// messages on a topic in order at QoS >= 1). What never arrived is counted
// at the end against the number the publisher says it sent.
type seqTracker struct {
	seen     []uint64
	distinct uint64
	dups     uint64
	reorders uint64
	max      int64 // highest sequence number received; -1 before the first
}

func newSeqTracker() *seqTracker { return &seqTracker{max: -1} }

// observe records the arrival of seq and reports whether it was a first
// arrival (not a duplicate).
func (t *seqTracker) observe(seq uint64) bool {
	w := int(seq / 64)
	if w >= len(t.seen) {
		n := 2 * len(t.seen)
		if n <= w {
			n = w + 1
		}
		grown := make([]uint64, n)
		copy(grown, t.seen)
		t.seen = grown
	}
	bit := uint64(1) << (seq % 64)
	if t.seen[w]&bit != 0 {
		t.dups++
		return false
	}
	t.seen[w] |= bit
	t.distinct++
	if int64(seq) < t.max {
		t.reorders++
	} else {
		t.max = int64(seq)
	}
	return true
}

// missing returns how many of the sequence numbers 0..sent-1 never
// arrived, and the first few of them (at most n) for the report.
func (t *seqTracker) missing(sent uint64, n int) (uint64, []uint64) {
	var got uint64
	full := sent / 64
	for w := uint64(0); w < full && w < uint64(len(t.seen)); w++ {
		got += uint64(bits.OnesCount64(t.seen[w]))
	}
	if rem := sent % 64; rem != 0 && full < uint64(len(t.seen)) {
		got += uint64(bits.OnesCount64(t.seen[full] & (1<<rem - 1)))
	}
	lost := sent - got
	var first []uint64
	for s := uint64(0); s < sent && len(first) < n && lost > 0; s++ {
		w := s / 64
		if w >= uint64(len(t.seen)) || t.seen[w]&(1<<(s%64)) == 0 {
			first = append(first, s)
		}
	}
	return lost, first
}

// streamChecker is one subscriber's view of every publisher it hears from.
type streamChecker struct {
	pubs    []*seqTracker // indexed by publisher number
	invalid uint64        // payloads without a valid header
}

// observe records one received payload; it returns the send time carried
// in it and whether the payload was valid and a first arrival.
func (c *streamChecker) observe(payload []byte) (sent int64, first bool) {
	pub, seq, sent, ok := parsePayloadHeader(payload)
	if !ok || pub > 1<<20 || seq >= maxTrackedSeq {
		c.invalid++
		return 0, false
	}
	for int(pub) >= len(c.pubs) {
		c.pubs = append(c.pubs, nil)
	}
	t := c.pubs[pub]
	if t == nil {
		t = newSeqTracker()
		c.pubs[pub] = t
	}
	return sent, t.observe(seq)
}

func (c *streamChecker) tracker(pub int) *seqTracker {
	if pub < len(c.pubs) && c.pubs[pub] != nil {
		return c.pubs[pub]
	}
	return newSeqTracker()
}

// checkResult sums what the checkers found.
type checkResult struct {
	Expected    uint64   `json:"expected"`
	Received    uint64   `json:"received"` // distinct messages
	Lost        uint64   `json:"lost"`
	Reordered   uint64   `json:"reordered"`
	Duplicates  uint64   `json:"duplicates"`
	Invalid     uint64   `json:"invalid"`
	FirstMissed []string `json:"first_missing,omitempty"` // "pub/seq"
}

// account adds the comparison of checker c against publisher pub, which
// sent `sent` messages.
func (r *checkResult) account(c *streamChecker, pub int, sent uint64) {
	t := c.tracker(pub)
	lost, first := t.missing(sent, 5)
	r.Expected += sent
	r.Received += sent - lost
	r.Lost += lost
	r.Reordered += t.reorders
	r.Duplicates += t.dups
	for _, s := range first {
		if len(r.FirstMissed) < 10 {
			r.FirstMissed = append(r.FirstMissed, strconv.Itoa(pub)+"/"+strconv.FormatUint(s, 10))
		}
	}
}

// histogram is a log-linear latency histogram in nanoseconds: values below
// 128 are exact, larger ones fall in one of 64 buckets per power of two,
// so any reported percentile is within 1.6% of the true value.
type histogram struct {
	counts [60 * 64]uint64
	n      uint64
	max    int64
}

func histIndex(v int64) int {
	if v < 128 {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	msb := bits.Len64(uint64(v)) - 1
	shift := msb - 6
	return (shift+1)*64 + int(uint64(v)>>shift) - 64
}

// histValue is the midpoint of bucket i.
func histValue(i int) int64 {
	if i < 128 {
		return int64(i)
	}
	shift := i/64 - 1
	top := int64(i%64 + 64)
	return top<<shift + (int64(1)<<shift)/2
}

func (h *histogram) record(v int64) {
	i := histIndex(v)
	if i >= len(h.counts) {
		i = len(h.counts) - 1
	}
	h.counts[i]++
	h.n++
	if v > h.max {
		h.max = v
	}
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	if o.max > h.max {
		h.max = o.max
	}
}

// quantile returns the value at quantile q (0 < q <= 1); 0 when empty.
func (h *histogram) quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var acc uint64
	for i, c := range h.counts {
		acc += c
		if acc >= rank {
			v := histValue(i)
			if v > h.max {
				v = h.max
			}
			return v
		}
	}
	return h.max
}
