package conformance

// MQTT 5.0 sessions (§3.1.2.4, §3.1.2.11.2, §4.1), Will Messages
// (§3.1.2.5, §3.1.3.2) and Keep Alive (§3.1.2.10).

import (
	"slices"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
)

// v5Persisted connects id with Clean Start 0 / Session Expiry 60, subscribes
// to filter at qos and leaves, so the session lives on offline.
func v5Persisted(t *testing.T, tg *Target, id, filter string, qos byte) {
	t.Helper()
	c, _ := v5Connect(t, tg, id, v5Session(true, 60))
	v5MustSub(c, filter, qos)
	v5Leave(c)
}

// Clean Start 1 discards the existing session: Session Present 0 and the old
// subscription no longer delivers.
func TestMQTT5_3_1_2_4(t *testing.T) {
	t.Parallel()
	tg := target(t)
	id, tp := clientID(t), topic(t)
	v5Persisted(t, tg, id, tp, 1)
	c, ack := v5Connect(t, tg, id, v5Session(true, 60))
	if ack.SessionPresent {
		t.Errorf("Clean Start 1 answered with Session Present 1 [MQTT-3.1.2-4]")
	}
	v5Client(t, tg).publish(tp, []byte("x"), 1, false)
	c.expectNone(short) // [MQTT-3.1.2-4] the old subscription is gone
}

// Clean Start 0 with an existing session resumes it: Session Present 1 and
// the stored subscription delivers, including what was queued offline.
func TestMQTT5_3_1_2_5(t *testing.T) {
	t.Parallel()
	tg := target(t)
	id, tp := clientID(t), topic(t)
	v5Persisted(t, tg, id, tp, 1)
	v5Client(t, tg).publish(tp, []byte("queued"), 1, false)
	c, ack := v5Connect(t, tg, id, v5Session(false, 60))
	if !ack.SessionPresent {
		t.Fatalf("Session Present 0 for an existing session [MQTT-3.1.2-5]")
	}
	if p := c.receive(wait); string(p.Payload) != "queued" {
		t.Errorf("got %q, want the message queued while offline", p.Payload)
	}
	v5Client(t, tg).publish(tp, []byte("live"), 1, false)
	if p := c.receive(wait); string(p.Payload) != "live" {
		t.Errorf("got %q, want live [MQTT-3.1.2-5]", p.Payload)
	}
}

// Clean Start 0 with no existing session creates a new one: Session Present
// 0 and no subscriptions.
func TestMQTT5_3_1_2_6(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c, ack := v5Connect(t, tg, "", v5Session(false, 60))
	if ack.SessionPresent {
		t.Errorf("Session Present 1 for a client that never connected [MQTT-3.1.2-6]")
	}
	c.expectOpen()
}

// With the Will Flag set the server stores the Will and publishes it when the
// network connection drops without DISCONNECT.
func TestMQTT5_3_1_2_7(t *testing.T) {
	t.Parallel()
	tg := target(t)
	wt := topic(t, "will")
	sub := v5Client(t, tg)
	v5MustSub(sub, wt, 1)
	c, _ := v5Connect(t, tg, "", func(c *packets.Connect) {
		c.Will = &packets.Will{Topic: wt, Payload: []byte("gone"), QoS: 1}
	})
	c.close()
	if p := sub.receive(wait); p.Topic != wt || string(p.Payload) != "gone" {
		t.Errorf("will: got %s [MQTT-3.1.2-7]", describe([]packets.Packet{p}))
	}
}

// The Will is published once the Will Delay Interval has passed (not
// before), or when the session ends if that comes first, and not at all
// after a normal DISCONNECT.
func TestMQTT5_3_1_2_8(t *testing.T) {
	t.Parallel()
	tg := target(t)
	t.Run("after will delay", func(t *testing.T) {
		t.Parallel()
		wt := topic(t, "will")
		sub := v5Client(t, tg)
		v5MustSub(sub, wt, 1)
		c, _ := v5Connect(t, tg, "", func(c *packets.Connect) {
			c.Properties.SessionExpiry = 60
			c.Will = &packets.Will{Topic: wt, Payload: []byte("delayed"), QoS: 1, Properties: packets.Properties{WillDelay: 2}}
		})
		dropped := time.Now()
		c.close()
		p := sub.receive(2*time.Second + wait)
		if string(p.Payload) != "delayed" {
			t.Fatalf("got %q", p.Payload)
		}
		if el := time.Since(dropped); el < 1500*time.Millisecond {
			t.Errorf("will with delay 2 s published after %v [MQTT-3.1.2-8]", el)
		}
	})
	t.Run("at session end", func(t *testing.T) {
		t.Parallel()
		wt := topic(t, "will")
		sub := v5Client(t, tg)
		v5MustSub(sub, wt, 1)
		c, _ := v5Connect(t, tg, "", func(c *packets.Connect) {
			c.Properties.SessionExpiry = 1
			c.Will = &packets.Will{Topic: wt, Payload: []byte("at-session-end"), QoS: 1, Properties: packets.Properties{WillDelay: 300}}
		})
		c.close()
		if p := sub.receive(1*time.Second + wait); string(p.Payload) != "at-session-end" {
			t.Errorf("got %q [MQTT-3.1.2-8]", p.Payload)
		}
	})
	t.Run("normal disconnect", func(t *testing.T) {
		t.Parallel()
		wt := topic(t, "will")
		sub := v5Client(t, tg)
		v5MustSub(sub, wt, 1)
		c, _ := v5Connect(t, tg, "", func(c *packets.Connect) {
			c.Will = &packets.Will{Topic: wt, Payload: []byte("cancelled"), QoS: 1}
		})
		v5Leave(c)
		sub.expectNone(short) // [MQTT-3.1.2-8]
	})
}

// The Will is deleted once published: reconnecting and dropping again with
// no Will set publishes nothing more; and DISCONNECT 0x00 deletes it.
func TestMQTT5_3_1_2_10(t *testing.T) {
	t.Parallel()
	tg := target(t)
	wt := topic(t, "will")
	sub := v5Client(t, tg)
	v5MustSub(sub, wt, 1)
	id := clientID(t)
	c, _ := v5Connect(t, tg, id, func(c *packets.Connect) {
		c.CleanStart = false
		c.Properties.SessionExpiry = 60
		c.Will = &packets.Will{Topic: wt, Payload: []byte("once"), QoS: 1}
	})
	c.close()
	sub.receive(wait)
	c2, _ := v5Connect(t, tg, id, v5Session(false, 60))
	c2.close()
	sub.expectNone(short) // [MQTT-3.1.2-10] the published will is gone

	c3, _ := v5Connect(t, tg, "", func(c *packets.Connect) {
		c.Will = &packets.Will{Topic: wt, Payload: []byte("deleted"), QoS: 1}
	})
	c3.send(&packets.Disconnect{ReasonCode: packets.NormalDisconnection})
	v5WaitEOF(c3)
	sub.expectNone(short) // [MQTT-3.1.2-10]
}

// Will Retain 0: the Will is published non-retained (a later subscriber gets
// nothing; a Retain-As-Published subscriber sees RETAIN 0).
func TestMQTT5_3_1_2_14(t *testing.T) {
	t.Parallel()
	tg := target(t)
	wt := topic(t, "will")
	sub := v5Client(t, tg)
	v5Sub(sub, packets.Subscription{Filter: wt, QoS: 1, RetainAsPublished: true}, packets.Properties{})
	c, _ := v5Connect(t, tg, "", func(c *packets.Connect) {
		c.Will = &packets.Will{Topic: wt, Payload: []byte("w"), QoS: 1}
	})
	c.close()
	if p := sub.receive(wait); p.Retain {
		t.Errorf("Will Retain 0 published with RETAIN 1 [MQTT-3.1.2-14]")
	}
	late := v5Client(t, tg)
	v5MustSub(late, wt, 1)
	late.expectNone(short) // [MQTT-3.1.2-14] not stored as retained
}

// Will Retain 1: the Will is published as a retained message.
func TestMQTT5_3_1_2_15(t *testing.T) {
	t.Parallel()
	tg := target(t)
	wt := topic(t, "will")
	sub := v5Client(t, tg)
	v5MustSub(sub, wt, 1)
	c, _ := v5Connect(t, tg, "", func(c *packets.Connect) {
		c.Will = &packets.Will{Topic: wt, Payload: []byte("kept"), QoS: 1, Retain: true}
	})
	c.close()
	sub.receive(wait)
	late := v5Client(t, tg)
	v5MustSub(late, wt, 1)
	p := late.receive(wait)
	if !p.Retain || string(p.Payload) != "kept" {
		t.Errorf("late subscriber got %s, want the retained will [MQTT-3.1.2-15]", describe([]packets.Packet{p}))
	}
	late.publish(wt, nil, 1, true) // clear it
}

// A client silent for 1.5 x Keep Alive is disconnected by the server (using
// the Server Keep Alive when it sent one).
func TestMQTT5_3_1_2_22(t *testing.T) {
	t.Parallel()
	tg := target(t)
	c, ack := v5Connect(t, tg, "", func(c *packets.Connect) { c.KeepAlive = 1 })
	ka := time.Second
	if ack.Properties.Has(packets.PropServerKeepAlive) {
		ka = time.Duration(ack.Properties.ServerKeepAlive) * time.Second
		if ka == 0 || ka > 10*time.Second {
			t.Skipf("server keep alive %v: too long to wait for", ka)
		}
	}
	start := time.Now()
	d := c.expectClosed(ka*3/2 + wait) // [MQTT-3.1.2-22]
	if el := time.Since(start); el < ka {
		t.Errorf("disconnected after %v, before the keep alive %v ran out", el, ka)
	}
	if d != nil && d.ReasonCode != packets.KeepAliveTimeout {
		t.Errorf("keep-alive DISCONNECT reason %v, want 0x8D", d.ReasonCode)
	}
}

// Session state survives the network connection while Session Expiry
// Interval > 0: QoS 1 messages published meanwhile are delivered on return.
func TestMQTT5_3_1_2_23(t *testing.T) {
	t.Parallel()
	tg := target(t)
	id, tp := clientID(t), topic(t)
	c, _ := v5Connect(t, tg, id, v5Session(true, 60))
	v5MustSub(c, tp, 1)
	c.close() // network drop, not DISCONNECT
	pub := v5Client(t, tg)
	pub.publish(tp, []byte("m1"), 1, false)
	c2, ack := v5Connect(t, tg, id, v5Session(false, 60))
	if !ack.SessionPresent {
		t.Fatalf("session gone after a network drop with expiry 60 [MQTT-3.1.2-23]")
	}
	if p := c2.receive(wait); string(p.Payload) != "m1" {
		t.Errorf("got %q, want m1 [MQTT-3.1.2-23]", p.Payload)
	}
}

// Session state is keyed by client identifier: another identifier does not
// see it, the same one does.
func TestMQTT5_3_1_3_2(t *testing.T) {
	t.Parallel()
	tg := target(t)
	id, tp := clientID(t), topic(t)
	v5Persisted(t, tg, id, tp, 1)
	other, ack := v5Connect(t, tg, clientID(t), v5Session(false, 60))
	if ack.SessionPresent {
		t.Errorf("a different client id found a session [MQTT-3.1.3-2]")
	}
	v5Client(t, tg).publish(tp, []byte("x"), 1, false)
	other.expectNone(short)
	same, ack := v5Connect(t, tg, id, v5Session(false, 60))
	if !ack.SessionPresent {
		t.Errorf("the same client id found no session [MQTT-3.1.3-2]")
	}
	same.receive(wait)
}

// Reconnecting before the Will Delay Interval ends withholds the Will.
func TestMQTT5_3_1_3_9(t *testing.T) {
	t.Parallel()
	tg := target(t)
	wt, id := topic(t, "will"), clientID(t)
	sub := v5Client(t, tg)
	v5MustSub(sub, wt, 1)
	c, _ := v5Connect(t, tg, id, func(c *packets.Connect) {
		c.Properties.SessionExpiry = 60
		c.Will = &packets.Will{Topic: wt, Payload: []byte("withheld"), QoS: 1, Properties: packets.Properties{WillDelay: 2}}
	})
	c.close()
	c2, _ := v5Connect(t, tg, id, v5Session(false, 60))
	letTimePass(2500 * time.Millisecond) // past the will delay
	sub.expectNone(short)                // [MQTT-3.1.3-9]
	c2.expectOpen()
}

// The Will's User Properties are published in their original order.
func TestMQTT5_3_1_3_10(t *testing.T) {
	t.Parallel()
	tg := target(t)
	wt := topic(t, "will")
	sub := v5Client(t, tg)
	v5MustSub(sub, wt, 1)
	want := []packets.UserProperty{{Key: "b", Value: "1"}, {Key: "a", Value: "2"}, {Key: "b", Value: "3"}, {Key: "z", Value: ""}}
	c, _ := v5Connect(t, tg, "", func(c *packets.Connect) {
		c.Will = &packets.Will{Topic: wt, Payload: []byte("w"), QoS: 1, Properties: packets.Properties{User: slices.Clone(want)}}
	})
	c.close()
	p := sub.receive(wait)
	if !slices.Equal(p.Properties.User, want) {
		t.Errorf("will user properties %v, want %v in order [MQTT-3.1.3-10]", p.Properties.User, want)
	}
}

// DISCONNECT 0x00 discards the Will.
func TestMQTT5_3_14_4_3(t *testing.T) {
	t.Parallel()
	tg := target(t)
	wt := topic(t, "will")
	sub := v5Client(t, tg)
	v5MustSub(sub, wt, 1)
	c, _ := v5Connect(t, tg, "", func(c *packets.Connect) {
		c.Will = &packets.Will{Topic: wt, Payload: []byte("no"), QoS: 1}
	})
	v5Leave(c)
	sub.expectNone(short) // [MQTT-3.14.4-3]
	// Control: DISCONNECT 0x04 (with will) does publish it.
	c2, _ := v5Connect(t, tg, "", func(c *packets.Connect) {
		c.Will = &packets.Will{Topic: wt, Payload: []byte("yes"), QoS: 1}
	})
	c2.send(&packets.Disconnect{ReasonCode: packets.DisconnectWithWill})
	v5WaitEOF(c2)
	if p := sub.receive(wait); string(p.Payload) != "yes" {
		t.Errorf("DISCONNECT 0x04 published %q", p.Payload)
	}
}

// Session state is kept as long as the connection is open, even with
// Session Expiry 0 and after the expiry interval of 1 s has passed.
func TestMQTT5_4_1_0_1(t *testing.T) {
	t.Parallel()
	tg := target(t)
	for _, exp := range []uint32{0, 1} {
		tp := topic(t)
		c, _ := v5Connect(t, tg, "", v5Session(true, exp))
		v5MustSub(c, tp, 1)
		letTimePass(1500 * time.Millisecond)
		c.expectOpen()
		v5Client(t, tg).publish(tp, []byte("still"), 1, false)
		if p := c.receive(wait); string(p.Payload) != "still" {
			t.Errorf("expiry %d: got %q [MQTT-4.1.0-1]", exp, p.Payload)
		}
	}
}

// The server discards the session once the connection is closed and the
// Session Expiry Interval has elapsed.
func TestMQTT5_4_1_0_2(t *testing.T) {
	t.Parallel()
	tg := target(t)
	id, tp := clientID(t), topic(t)
	c, _ := v5Connect(t, tg, id, v5Session(true, 1))
	v5MustSub(c, tp, 1)
	v5Leave(c)
	letTimePass(2500 * time.Millisecond)
	c2, ack := v5Connect(t, tg, id, v5Session(false, 60))
	if ack.SessionPresent {
		t.Errorf("session still present after its 1 s expiry [MQTT-4.1.0-2]")
	}
	v5Client(t, tg).publish(tp, []byte("x"), 1, false)
	c2.expectNone(short)

	// Session Expiry 0 (absent): discarded as soon as the connection closes.
	id2 := clientID(t)
	c3, _ := v5Connect(t, tg, id2, v5Session(true, 0))
	v5Leave(c3)
	_, ack = v5Connect(t, tg, id2, v5Session(false, 0))
	if ack.SessionPresent {
		t.Errorf("session with expiry 0 survived its connection [MQTT-4.1.0-2]")
	}
}
