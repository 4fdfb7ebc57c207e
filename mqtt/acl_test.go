package mqtt

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
)

const testACL = `# anonymous clients (top of the file)
allow subscribe public/#

user alice
allow both alice/#
deny publish alice/locked
topic read sensors/+/temp
topic write cmd/alice

user bob
allow subscribe #
deny subscribe secret/#

all
allow publish devices/%c/up
allow subscribe devices/%c/down/+
pattern readwrite users/%u/#
pattern	read	$SYS/#
`

// The decision table of the ACL: deny wins, then allow, else deny;
// subscriptions need an allow rule covering the whole filter and are
// denied by any overlapping deny rule.
func TestACLDecisions(t *testing.T) {
	a, err := ParseACL([]byte(testACL), "acl")
	if err != nil {
		t.Fatal(err)
	}
	if a.Rules() != 11 {
		t.Errorf("rules %d, want 11", a.Rules())
	}
	alice := &ClientInfo{ClientID: "dev1", Username: "alice", HasUsername: true}
	bob := &ClientInfo{ClientID: "dev2", Username: "bob", HasUsername: true}
	anon := &ClientInfo{ClientID: "dev3"}
	evil := &ClientInfo{ClientID: "+", Username: "#", HasUsername: true}
	for _, tc := range []struct {
		who   *ClientInfo
		acc   Access
		topic string
		want  bool
	}{
		{alice, AccessPublish, "alice/x", true},
		{alice, AccessPublish, "alice", true}, // '#' matches the parent level
		{alice, AccessPublish, "alice/locked", false},
		{alice, AccessSubscribe, "alice/#", true}, // the deny rule is for publishing only
		{alice, AccessSubscribe, "sensors/k/temp", true},
		{alice, AccessSubscribe, "sensors/+/temp", true},
		{alice, AccessSubscribe, "sensors/#", false}, // wider than the rule
		{alice, AccessPublish, "sensors/k/temp", false},
		{alice, AccessPublish, "cmd/alice", true},
		{alice, AccessSubscribe, "cmd/alice", false},
		{alice, AccessPublish, "bob/x", false},
		{alice, AccessPublish, "devices/dev1/up", true}, // %c
		{alice, AccessPublish, "devices/dev2/up", false},
		{alice, AccessSubscribe, "devices/dev1/down/+", true},
		{alice, AccessSubscribe, "devices/dev1/down/#", false},
		{alice, AccessPublish, "users/alice/a/b", true}, // %u
		{alice, AccessSubscribe, "users/alice/#", true},
		{alice, AccessSubscribe, "users/+/#", false},
		{alice, AccessSubscribe, "$SYS/broker/uptime", true},
		{alice, AccessPublish, "public/x", false}, // the anonymous section is not alice's
		{bob, AccessSubscribe, "#", false},        // overlaps deny secret/#
		{bob, AccessSubscribe, "a/b/#", true},
		{bob, AccessSubscribe, "secret/x", false},
		{bob, AccessSubscribe, "+/x", false}, // overlaps secret/x
		{bob, AccessSubscribe, "$SYS/#", true},
		{anon, AccessSubscribe, "public/a", true},
		{anon, AccessSubscribe, "public/#", true},
		{anon, AccessPublish, "public/a", false},
		{anon, AccessPublish, "users//x", false}, // no user name: %u never matches
		{anon, AccessPublish, "devices/dev3/up", true},
		{evil, AccessPublish, "users/#/x", false}, // wildcards in names never widen access
		{evil, AccessSubscribe, "devices/+/down/+", false},
	} {
		if got := a.Authorize(tc.who, tc.acc, tc.topic); got != tc.want {
			t.Errorf("%s %v %q: %v, want %v", tc.who.Username, tc.acc, tc.topic, got, tc.want)
		}
	}
	// '#' in an allow rule never reaches '$' topics; bob's own "#" rule
	// does not cover $dlq/...
	if a.Authorize(bob, AccessSubscribe, "$dlq/#") {
		t.Error("bob may subscribe to $dlq/# through '#'")
	}
}

// A deny rule whose substitution is unusable treats that level as '+'.
func TestACLDenyWithUnusableName(t *testing.T) {
	a, err := ParseACL([]byte("all\nallow both #\ndeny publish home/%u/admin\n"), "acl")
	if err != nil {
		t.Fatal(err)
	}
	anon := &ClientInfo{ClientID: "c"}
	if a.Authorize(anon, AccessPublish, "home/x/admin") {
		t.Error("anonymous client escapes a %u deny rule")
	}
	if !a.Authorize(anon, AccessPublish, "home/x/other") {
		t.Error("deny rule over-reaches")
	}
	if !a.Authorize(&ClientInfo{ClientID: "c", Username: "y", HasUsername: true}, AccessPublish, "home/x/admin") {
		t.Error("user y denied on x's topic")
	}
}

// The example ACL of docs/security.md loads and means what the text says.
func TestACLDocExample(t *testing.T) {
	doc, err := os.ReadFile("../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "# /etc/beacon/acl\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no ACL example in docs/security.md")
	}
	a, err := ParseACL([]byte(example), "docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	alice := &ClientInfo{ClientID: "dev9", Username: "alice", HasUsername: true}
	backend := &ClientInfo{ClientID: "svc", Username: "backend", HasUsername: true}
	for _, tc := range []struct {
		who   *ClientInfo
		acc   Access
		topic string
		want  bool
	}{
		{&ClientInfo{ClientID: "x"}, AccessSubscribe, "public/news", true},
		{alice, AccessPublish, "alice/a", true},
		{alice, AccessPublish, "alice/readonly/a", false},
		{alice, AccessPublish, "devices/dev9/state", true},
		{alice, AccessPublish, "telemetry/alice/temp", true},
		{alice, AccessPublish, "telemetry/bob/temp", false},
		{alice, AccessSubscribe, "$SYS/broker/uptime", true},
		{backend, AccessPublish, "devices/dev9/firmware/v2", false},
		{backend, AccessSubscribe, "devices/#", true},
	} {
		if got := a.Authorize(tc.who, tc.acc, tc.topic); got != tc.want {
			t.Errorf("%s %v %q: %v, want %v", tc.who.Username, tc.acc, tc.topic, got, tc.want)
		}
	}
}

func TestParseACLErrors(t *testing.T) {
	for _, tc := range []struct{ data, want string }{
		{"allow read a/b", "acl:1: allow \"read\": want publish, subscribe or both"},
		{"\nuser\n", "acl:2: user needs a name"},
		{"allow both a/#/b", "acl:1: topic \"a/#/b\""},
		{"permit both a", "acl:1: unknown keyword \"permit\""},
		{"# x\n\ndeny publish", "acl:3: deny rule without a topic"},
		{"all users", "acl:1: all takes no argument"},
	} {
		_, err := ParseACL([]byte(tc.data), "acl")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error containing %q", tc.data, err, tc.want)
		}
	}
}

// aclServer runs a server with the ACL file text acl (anonymous clients
// allowed, no password file) and returns it and the file's path.
func aclServer(t *testing.T, acl string, mod func(*Options)) (*Server, string) {
	t.Helper()
	path := tempFile(t, "acl", acl)
	s := startServer(t, func(o *Options) {
		o.ACLFile = path
		if mod != nil {
			mod(o)
		}
	})
	return s, path
}

const serverACL = `user alice
allow both alice/#
allow subscribe shared/#
allow publish retained/ok
pattern readwrite devices/%c/#
`

// SUBSCRIBE: a denied filter gets 0x87 (3.1.1: 0x80), no subscription and
// no retained message; allowed ones in the same packet work.
func TestACLSubscribe(t *testing.T) {
	s, _ := aclServer(t, serverACL+"user carol\nallow publish retained/#\n", nil)
	pub := dial(t, s, packets.V5)
	pub.connect("pubr", true, withUser("carol", ""))
	pub.publish("retained/x", "r", 1, true, 1)
	for _, tc := range []struct {
		v    packets.Version
		deny packets.ReasonCode
	}{{packets.V5, packets.NotAuthorized}, {packets.V311, packets.UnspecifiedError}} {
		c := dial(t, s, tc.v)
		c.connect("sub"+tc.v.String(), true, withUser("alice", ""))
		ack := c.subscribe(1,
			packets.Subscription{Filter: "alice/in", QoS: 1},
			packets.Subscription{Filter: "retained/#", QoS: 1},
			packets.Subscription{Filter: "$share/g/shared/x", QoS: 1},
			packets.Subscription{Filter: "devices/sub" + tc.v.String() + "/#", QoS: 0},
			packets.Subscription{Filter: "devices/other/#", QoS: 0})
		want := []packets.ReasonCode{1, tc.deny, 1, 0, tc.deny}
		if len(ack.ReasonCodes) != len(want) {
			t.Fatalf("%v: SUBACK %v", tc.v, ack.ReasonCodes)
		}
		for i := range want {
			if ack.ReasonCodes[i] != want[i] {
				t.Errorf("%v: SUBACK code %d = %v, want %v", tc.v, i, ack.ReasonCodes[i], want[i])
			}
		}
		c.expectNothing(100 * time.Millisecond) // no retained message for the denied filter
	}
	if n := s.stats.SubscribeDenied.Load(); n != 4 {
		t.Errorf("SubscribeDenied %d, want 4", n)
	}
}

// PUBLISH: 5.0 QoS 1/2 get 0x87 in PUBACK/PUBREC; QoS 0 and 3.1.1 are
// dropped (3.1.1 acknowledged as usual) and counted; nobody receives them.
func TestACLPublishDrop(t *testing.T) {
	s, _ := aclServer(t, serverACL+"user watcher\nallow subscribe #\n", nil)
	w := dial(t, s, packets.V5)
	w.connect("watcher", true, withUser("watcher", ""))
	w.subscribe(1, packets.Subscription{Filter: "#", QoS: 2})

	c5 := dial(t, s, packets.V5)
	c5.connect("p5", true, withUser("alice", ""))
	c5.send(&packets.Publish{Topic: "bob/x", QoS: 1, PacketID: 1, Payload: []byte("no")})
	if a := recvAs[*packets.Puback](c5); a.ReasonCode != packets.NotAuthorized {
		t.Errorf("5.0 QoS 1: PUBACK %v, want 0x87", a.ReasonCode)
	}
	c5.send(&packets.Publish{Topic: "bob/x", QoS: 2, PacketID: 2, Payload: []byte("no")})
	if a := recvAs[*packets.Pubrec](c5); a.ReasonCode != packets.NotAuthorized {
		t.Errorf("5.0 QoS 2: PUBREC %v, want 0x87", a.ReasonCode)
	}
	c5.send(&packets.Publish{Topic: "bob/x", QoS: 0, Payload: []byte("no")})

	c3 := dial(t, s, packets.V311)
	c3.connect("p3", true, withUser("alice", ""))
	c3.publish("bob/x", "no", 1, false, 1) // acknowledged, dropped
	c3.publish("bob/x", "no", 2, false, 2)

	c5.publish("alice/x", "yes", 1, false, 3)
	if p := w.recvPublish(true); string(p.Payload) != "yes" || p.Topic != "alice/x" {
		t.Fatalf("watcher got %q on %q, want the allowed message only", p.Payload, p.Topic)
	}
	if n := s.stats.DroppedNotAuthorized.Load(); n != 5 {
		t.Errorf("DroppedNotAuthorized %d, want 5", n)
	}
}

// ACLDenyAction "disconnect": DISCONNECT 0x87 for 5.0, a plain close for
// 3.1.1.
func TestACLPublishDisconnect(t *testing.T) {
	s, _ := aclServer(t, serverACL, func(o *Options) { o.ACLDenyAction = ACLDenyDisconnect })
	c := dial(t, s, packets.V5)
	c.connect("d5", true, withUser("alice", ""))
	c.publish("alice/ok", "x", 0, false, 0)
	c.send(&packets.Publish{Topic: "elsewhere", Payload: []byte("x")})
	if got := c.expectClosed(); len(got) != 1 || got[0].(*packets.Disconnect).ReasonCode != packets.NotAuthorized {
		t.Errorf("5.0: got %v, want DISCONNECT 0x87", got)
	}
	c = dial(t, s, packets.V311)
	c.connect("d3", true, withUser("alice", ""))
	c.send(&packets.Publish{Topic: "elsewhere", QoS: 1, PacketID: 1, Payload: []byte("x")})
	if got := c.expectClosed(); len(got) != 0 {
		t.Errorf("3.1.1: got %v, want a close", got)
	}
}

// The will topic needs publish permission at CONNECT: 0x87 (3.1.1: 5).
func TestACLWill(t *testing.T) {
	s, _ := aclServer(t, serverACL, nil)
	for _, v := range []packets.Version{packets.V5, packets.V311} {
		c := dial(t, s, v)
		ack := c.tryConnect("w", true, func(p *packets.Connect) {
			withUser("alice", "")(p)
			p.Will = &packets.Will{Topic: "not/alice", Payload: []byte("bye")}
		})
		if ack.ReasonCode != packets.NotAuthorized {
			t.Errorf("%v: CONNACK %v, want 0x87", v, ack.ReasonCode)
		}
		c = dial(t, s, v)
		c.connect("w2", true, func(p *packets.Connect) {
			withUser("alice", "")(p)
			p.Will = &packets.Will{Topic: "alice/status", Payload: []byte("bye")}
		})
	}
}

// Reload swaps the ACL under a connected client: its next SUBSCRIBE and
// PUBLISH follow the new rules, and it stays connected. A broken file
// keeps the old rules and names its line.
func TestACLReload(t *testing.T) {
	s, path := aclServer(t, "user alice\nallow both alice/#\n", nil)
	c := dial(t, s, packets.V5)
	c.connect("r1", true, withUser("alice", ""))
	if ack := c.subscribe(1, packets.Subscription{Filter: "news/#"}); ack.ReasonCodes[0] != packets.NotAuthorized {
		t.Fatalf("before reload: SUBACK %v", ack.ReasonCodes)
	}
	if err := os.WriteFile(path, []byte("user alice\nallow both news/#\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if ack := c.subscribe(2, packets.Subscription{Filter: "news/#"}); ack.ReasonCodes[0] != 0 {
		t.Fatalf("after reload: SUBACK %v", ack.ReasonCodes)
	}
	c.send(&packets.Publish{Topic: "alice/x", QoS: 1, PacketID: 3})
	if a := recvAs[*packets.Puback](c); a.ReasonCode != packets.NotAuthorized {
		t.Errorf("alice/x after reload: PUBACK %v, want 0x87", a.ReasonCode)
	}
	if err := os.WriteFile(path, []byte("user alice\nallow everything\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), path+":2") {
		t.Fatalf("broken ACL: %v", err)
	}
	c.publish("news/a", "x", 0, false, 0) // the rules loaded last still hold
	if p := c.recvPublish(true); p.Topic != "news/a" {
		t.Fatalf("got %q", p.Topic)
	}
}

// BenchmarkACLAuthorize is the per-PUBLISH cost of an ACL with a few
// dozen users and patterns (the publish path's hot part of authorization).
func BenchmarkACLAuthorize(b *testing.B) {
	var sb strings.Builder
	for i := range 50 {
		sb.WriteString("user u" + strconv.Itoa(i) + "\nallow both u" + strconv.Itoa(i) + "/#\ndeny publish u" + strconv.Itoa(i) + "/locked\n")
	}
	sb.WriteString("all\nallow publish devices/%c/up/+\npattern read $SYS/#\n")
	a, err := ParseACL([]byte(sb.String()), "bench")
	if err != nil {
		b.Fatal(err)
	}
	who := &ClientInfo{ClientID: "dev-42", Username: "u42", HasUsername: true}
	b.ReportAllocs()
	for b.Loop() {
		if !a.Authorize(who, AccessPublish, "devices/dev-42/up/temp") {
			b.Fatal("denied")
		}
	}
}

// A session resumed by client identifier keeps only the subscriptions the
// ACL gives the client resuming it: here another user.
func TestACLResumedSession(t *testing.T) {
	s, _ := aclServer(t, "user alice\nallow both news/#\nallow both sport/#\nuser bob\nallow subscribe sport/#\n", nil)
	a := dial(t, s, packets.V311)
	a.connect("shared-id", false, withUser("alice", ""))
	a.subscribe(1, packets.Subscription{Filter: "news/#", QoS: 1}, packets.Subscription{Filter: "sport/#", QoS: 1})
	a.disconnect()

	b := dial(t, s, packets.V311)
	if ack := b.connect("shared-id", false, withUser("bob", "")); !ack.SessionPresent {
		t.Fatal("session not present")
	}
	pub := dial(t, s, packets.V311)
	pub.connect("pub", true, withUser("alice", ""))
	// QoS 1: queued even if it arrives before the session is attached.
	pub.publish("news/x", "secret", 1, false, 1)
	pub.publish("sport/y", "score", 1, false, 2)
	if p := b.recvPublish(true); p.Topic != "sport/y" {
		t.Fatalf("bob received %q on %q first, want sport/y only", p.Payload, p.Topic)
	}
	if n := s.stats.SubscribeDenied.Load(); n != 1 {
		t.Errorf("SubscribeDenied %d, want 1", n)
	}
}

// A PUBLISH to $delayed/{seconds}/{topic} is judged by its target topic.
func TestACLDelayedPublish(t *testing.T) {
	s, _ := aclServer(t, serverACL, nil)
	c := dial(t, s, packets.V5)
	c.connect("dl", true, withUser("alice", ""))
	for i, tc := range []struct {
		topic string
		want  packets.ReasonCode
	}{{"$delayed/60/alice/later", packets.Success}, {"$delayed/60/bob/later", packets.NotAuthorized}} {
		c.send(&packets.Publish{Topic: tc.topic, QoS: 1, PacketID: uint16(i + 1), Payload: []byte("x")})
		if a := recvAs[*packets.Puback](c); a.ReasonCode != tc.want {
			t.Errorf("%s: PUBACK %v, want %v", tc.topic, a.ReasonCode, tc.want)
		}
	}
}

// FuzzACL parses arbitrary ACL files and asks them arbitrary questions:
// never a panic, and a file that loads gives the same answer twice.
func FuzzACL(f *testing.F) {
	f.Add([]byte(testACL), "alice", "dev1", "users/alice/x", true)
	f.Add([]byte("all\ndeny both %u/%c/#\nallow both #\n"), "", "c", "+/c/#", false)
	f.Add([]byte("pattern read $SYS/#\ntopic deny a/+/b"), "#", "/", "$SYS/x", false)
	f.Fuzz(func(t *testing.T, data []byte, user, cid, topic string, publish bool) {
		a, err := ParseACL(data, "fuzz")
		if err != nil {
			return
		}
		acc := AccessSubscribe
		if publish {
			acc = AccessPublish
		}
		who := &ClientInfo{ClientID: cid, Username: user, HasUsername: user != ""}
		if a.Authorize(who, acc, topic) != a.Authorize(who, acc, topic) {
			t.Fatal("two answers to one question")
		}
	})
}
