package storage

import (
	"encoding/binary"
	"fmt"
)

// Key layout of the badger store. One byte of prefix and a slash name the
// record kind; numbers are big-endian so badger's byte order is numeric
// order and a prefix iteration visits them in sequence.
//
//	m/<seq:8>                      message (log entry)
//	s/<clientID>                   session record
//	p/<len:2><clientID><seq:8>     pending delivery of clientID for log seq
//	i/<len:2><clientID><pid:2>     inbound QoS 2 packet id of clientID
//	r/<topic>                      retained message of topic
//	c/<name>                       bridge cursor (value: seq:8)
//	d/<due:8><id:8>                delayed message (due: Unix nanoseconds)
//	t/<id:8>                       due time of delayed message id (due:8)
//	x/head                         last sequence number assigned (seq:8)
//	x/rev                          last session revision handed out (rev:8)
//	x/delayed                      last delayed message id handed out (id:8)
//	x/format                       storage format marker
//	x/flush                        marker dropped to flush memtables (maintain.go)
//
// Pending and inbound keys carry the client ID's length (two bytes, the
// limit of an MQTT string) rather than a separator, so no client ID can be
// a prefix of another's keys whatever bytes it contains.
var (
	prefixMsg      = []byte("m/")
	prefixSession  = []byte("s/")
	prefixPending  = []byte("p/")
	prefixInbound  = []byte("i/")
	prefixRetained = []byte("r/")
	prefixCursor   = []byte("c/")
	prefixDelayed  = []byte("d/")
	prefixDueOf    = []byte("t/")
	prefixDLQ      = []byte("q/") // q/<seq:8>: dead-letter index entry (deadletter_badger.go)
	keyDelayedID   = []byte("x/delayed")
	keyHead        = []byte("x/head")
	keyRev         = []byte("x/rev")
	keyFormat      = []byte("x/format")
)

// formatMarker is the value of x/format; a data dir without it (but with
// other keys) or with another value is not opened.
const formatMarker = "beacon-storage-v1"

// maxClientIDLen is the longest client ID the length-prefixed keys hold.
const maxClientIDLen = 0xFFFF

func msgKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, 10), prefixMsg...), seq)
}

func seqFromMsgKey(k []byte) uint64 { return binary.BigEndian.Uint64(k[len(prefixMsg):]) }

func sessionKey(clientID string) []byte {
	return append(append(make([]byte, 0, 2+len(clientID)), prefixSession...), clientID...)
}

// clientPrefix is p/ or i/ followed by the length-prefixed client ID.
func clientPrefix(prefix []byte, clientID string, extra int) ([]byte, error) {
	if len(clientID) > maxClientIDLen {
		return nil, fmt.Errorf("storage: client ID of %d bytes is longer than %d", len(clientID), maxClientIDLen)
	}
	k := make([]byte, 0, len(prefix)+2+len(clientID)+extra)
	k = append(k, prefix...)
	k = binary.BigEndian.AppendUint16(k, uint16(len(clientID)))
	return append(k, clientID...), nil
}

func pendingKey(clientID string, seq uint64) ([]byte, error) {
	k, err := clientPrefix(prefixPending, clientID, 8)
	if err != nil {
		return nil, err
	}
	return binary.BigEndian.AppendUint64(k, seq), nil
}

func inboundKey(clientID string, pid uint16) ([]byte, error) {
	k, err := clientPrefix(prefixInbound, clientID, 2)
	if err != nil {
		return nil, err
	}
	return binary.BigEndian.AppendUint16(k, pid), nil
}

// clientFromKey splits a p/ or i/ key into client ID and the rest.
func clientFromKey(k []byte) (clientID string, rest []byte, ok bool) {
	if len(k) < 4 {
		return "", nil, false
	}
	n := int(binary.BigEndian.Uint16(k[2:4]))
	if len(k) < 4+n {
		return "", nil, false
	}
	return string(k[4 : 4+n]), k[4+n:], true
}

func retainedKey(topic string) []byte {
	return append(append(make([]byte, 0, 2+len(topic)), prefixRetained...), topic...)
}

func cursorKey(name string) []byte {
	return append(append(make([]byte, 0, 2+len(name)), prefixCursor...), name...)
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
