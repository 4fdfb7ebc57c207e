package storage

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
)

func codecSamples() ([]*Message, []*Session, []Pending) {
	full := &Message{Seq: 9, Topic: "a/b", Payload: []byte("hello"), QoS: 2, Retain: true, Publisher: "p", Created: time.Unix(1700000000, 5).UTC()}
	full.Properties.MessageExpiry = 60
	full.Properties.ContentType = "text/plain"
	full.Properties.CorrelationData = []byte{1, 2}
	full.Properties.SubscriptionIDs = []uint32{1, 268435455}
	full.Properties.User = []packets.UserProperty{{Key: "k", Value: "v"}}
	full.Properties.Mark(packets.PropPayloadFormat)
	msgs := []*Message{{}, {Topic: "t"}, full}
	sess := []*Session{
		{ClientID: "c"},
		{ClientID: "d", Revision: 3, Version: packets.V5, ExpiryInterval: 0xFFFFFFFF,
			DisconnectedAt: time.Unix(1, 0).UTC(), WillAt: time.Unix(2, 0).UTC(), Will: full,
			Subscriptions: []Subscription{{Filter: "x/#", QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2, SubscriptionID: 7}}},
	}
	pend := []Pending{{Seq: 1}, {Seq: 2, QoS: 2, Retain: true, SubscriptionIDs: []uint32{3, 4}, PacketID: 65535, State: PendingReleased}}
	return msgs, sess, pend
}

func TestCodecRoundTrip(t *testing.T) {
	msgs, sess, pend := codecSamples()
	for _, m := range msgs {
		got, err := decodeMessage(appendMessage(nil, m))
		must(t, err)
		if !reflect.DeepEqual(got, m) {
			t.Errorf("message round trip:\n got %#v\nwant %#v", got, m)
		}
	}
	for _, s := range sess {
		b := appendSession(nil, s)
		got, err := decodeSession(b)
		must(t, err)
		if !reflect.DeepEqual(got, s) {
			t.Errorf("session round trip:\n got %#v\nwant %#v", got, s)
		}
		if rev, err := sessionRevision(b); err != nil || rev != s.Revision {
			t.Errorf("sessionRevision = %d, %v; want %d", rev, err, s.Revision)
		}
	}
	for _, p := range pend {
		got, err := decodePending(p.Seq, appendPending(nil, p))
		must(t, err)
		if !reflect.DeepEqual(got, p) {
			t.Errorf("pending round trip:\n got %#v\nwant %#v", got, p)
		}
	}
}

// TestCodecRejectsDamage: every truncation of a record is an error naming
// corruption, never a panic or a silently shorter record.
func TestCodecRejectsDamage(t *testing.T) {
	msgs, sess, pend := codecSamples()
	b := appendMessage(nil, msgs[2])
	for i := 0; i < len(b); i++ {
		if _, err := decodeMessage(b[:i]); !errors.Is(err, errCorruptValue) {
			t.Fatalf("message truncated to %d bytes: err %v", i, err)
		}
	}
	b = appendSession(nil, sess[1])
	for i := 0; i < len(b); i++ {
		if _, err := decodeSession(b[:i]); !errors.Is(err, errCorruptValue) {
			t.Fatalf("session truncated to %d bytes: err %v", i, err)
		}
	}
	b = appendPending(nil, pend[1])
	for i := 0; i < len(b); i++ {
		if _, err := decodePending(1, b[:i]); !errors.Is(err, errCorruptValue) {
			t.Fatalf("pending truncated to %d bytes: err %v", i, err)
		}
	}
	if _, err := decodeMessage(append(appendMessage(nil, msgs[1]), 0)); !errors.Is(err, errCorruptValue) {
		t.Fatalf("trailing byte accepted: %v", err)
	}
	if _, err := decodeMessage([]byte{99}); !errors.Is(err, errCorruptValue) {
		t.Fatalf("unknown format accepted: %v", err)
	}
}

// FuzzDecode: no input makes a decoder panic or allocate without bound, and
// whatever decodes re-encodes to a record that decodes the same.
func FuzzDecode(f *testing.F) {
	msgs, sess, pend := codecSamples()
	for _, m := range msgs {
		f.Add(appendMessage(nil, m))
	}
	for _, s := range sess {
		f.Add(appendSession(nil, s))
	}
	for _, p := range pend {
		f.Add(appendPending(nil, p))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := decodeMessage(b); err == nil {
			again, err := decodeMessage(appendMessage(nil, m))
			if err != nil || !reflect.DeepEqual(again, m) {
				t.Fatalf("message re-encode differs: %v", err)
			}
		}
		if s, err := decodeSession(b); err == nil {
			again, err := decodeSession(appendSession(nil, s))
			if err != nil || !reflect.DeepEqual(again, s) {
				t.Fatalf("session re-encode differs: %v", err)
			}
		}
		_, _ = decodePending(1, b)
		_, _ = sessionRevision(b)
	})
}
