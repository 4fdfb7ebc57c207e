package mqtt

import (
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/beaconmq/beacon/packets"
)

// ClientInfo is who a connected client is, as an Authorizer sees it.
type ClientInfo struct {
	ClientID    string
	Username    string // the authenticated user name ("" when HasUsername is false)
	HasUsername bool
	RemoteAddr  net.Addr
	// CertCommonName is the Common Name of the verified TLS client
	// certificate, "" without one.
	CertCommonName string
}

// Access is what a client asks to do with a topic.
type Access uint8

const (
	// AccessPublish is publishing to a topic name (also a will topic).
	AccessPublish Access = 1 << iota
	// AccessSubscribe is subscribing to a topic filter.
	AccessSubscribe
)

func (a Access) String() string {
	switch a {
	case AccessPublish:
		return "publish"
	case AccessSubscribe:
		return "subscribe"
	case AccessPublish | AccessSubscribe:
		return "both"
	}
	return fmt.Sprintf("Access(%d)", uint8(a))
}

// Authorizer decides what a connected client may do. Authorize is called
// with a topic name for AccessPublish and with a topic filter (without a
// $share/{group}/ prefix) for AccessSubscribe, on the connection's reader
// goroutine for every PUBLISH and every filter of a SUBSCRIBE; it must be
// fast and safe for concurrent use. The reserved $SYS/ and $dlq/ trees stay
// read-only for clients whatever it says.
type Authorizer interface {
	Authorize(c *ClientInfo, a Access, topic string) bool
}

// ACL is the built-in Authorizer: rules read from an ACL file.
//
// The file is read line by line; blank lines and lines starting with '#'
// are ignored (there are no comments after a rule: the rest of a rule line
// is its topic filter, which may contain spaces). Section lines say whom the rules below them apply to:
//
//	user NAME     clients authenticated as NAME
//	anonymous     clients without a user name (the section at the top of the file)
//	all           every client
//
// Rule lines:
//
//	allow|deny publish|subscribe|both TOPIC
//	topic [read|write|readwrite|deny] TOPIC    (Mosquitto; read = subscribe, write = publish, default readwrite)
//	pattern [read|write|readwrite|deny] TOPIC  (Mosquitto; applies to every client wherever it stands)
//
// TOPIC is a topic filter with '+' and '#'; in every rule %u stands for
// the client's user name and %c for its client identifier, as one whole
// topic level or part of one (devices/%u/#, dev-%c/in). A value that is
// empty or contains '+', '#' or '/' never satisfies an allow rule, and a
// deny rule treats its level as '+', so a strange name can only lose
// access.
//
// Decision: a request is denied if any deny rule that applies to the
// client matches, else allowed if any allow rule matches, else denied
// (default deny). A PUBLISH topic matches a rule by the usual filter
// matching. A SUBSCRIBE filter needs an allow rule that covers it (every
// topic the filter can match, the rule matches too: "sensors/#" covers
// "sensors/+/temp", not "#") and is denied by a deny rule that overlaps it
// (some topic matches both). As in topic matching, wildcards at the first
// level never reach topics starting with '$'.
type ACL struct {
	anonymous []aclRule
	all       []aclRule
	users     map[string][]aclRule
	n         int
}

var _ Authorizer = (*ACL)(nil)

// aclRule is one allow or deny rule.
type aclRule struct {
	allow  bool
	access Access
	levels []ruleLevel // the filter split at '/'
}

// ruleLevel is one level of a rule's filter; a level holding %u or %c is
// a template, compared with a topic level without building the expanded
// string.
type ruleLevel struct {
	s         string
	user, cid bool // holds %u, %c
}

// LoadACL reads an ACL file. Errors name the file and line.
func LoadACL(path string) (*ACL, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ACL file: %w", err)
	}
	return ParseACL(data, path)
}

// ParseACL parses the contents of an ACL file; name is used in error
// messages.
func ParseACL(data []byte, name string) (*ACL, error) {
	a := &ACL{users: make(map[string][]aclRule)}
	user := "" // the section: "" for anonymous or all, else a user name
	toAll := false
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue // a comment is a whole line: topics may hold spaces, and "#" is a filter
		}
		where := fmt.Sprintf("ACL file %s:%d", name, i+1)
		word, rest := cutWord(line)
		switch word {
		case "user":
			if rest == "" {
				return nil, fmt.Errorf("%s: user needs a name", where)
			}
			user, toAll = rest, false
			continue
		case "anonymous", "all":
			if rest != "" {
				return nil, fmt.Errorf("%s: %s takes no argument", where, word)
			}
			user, toAll = "", word == "all"
			continue
		}
		r, global, err := parseACLRule(word, rest)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", where, err)
		}
		switch {
		case global || toAll:
			a.all = append(a.all, r)
		case user != "":
			a.users[user] = append(a.users[user], r)
		default:
			a.anonymous = append(a.anonymous, r)
		}
		a.n++
	}
	return a, nil
}

// cutWord splits s at its first space or tab: the word before, and the
// rest without surrounding white space.
func cutWord(s string) (word, rest string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i+1:])
}

// parseACLRule parses one rule line whose first word is word. global
// reports a pattern line, which applies to every client.
func parseACLRule(word, rest string) (r aclRule, global bool, err error) {
	var topic string
	switch word {
	case "allow", "deny":
		what, t := cutWord(rest)
		topic = t
		r.allow = word == "allow"
		switch what {
		case "publish":
			r.access = AccessPublish
		case "subscribe":
			r.access = AccessSubscribe
		case "both":
			r.access = AccessPublish | AccessSubscribe
		default:
			return r, false, fmt.Errorf("%s %q: want publish, subscribe or both", word, what)
		}
	case "topic", "pattern":
		global = word == "pattern"
		r.allow, r.access, topic = true, AccessPublish|AccessSubscribe, rest
		if kw, t := cutWord(rest); t != "" {
			switch kw {
			case "read":
				r.access, topic = AccessSubscribe, t
			case "write":
				r.access, topic = AccessPublish, t
			case "readwrite":
				topic = t
			case "deny":
				r.allow, topic = false, t
			}
		}
	default:
		return r, false, fmt.Errorf("unknown keyword %q: want user, anonymous, all, allow, deny, topic or pattern", word)
	}
	if topic == "" {
		return r, false, fmt.Errorf("%s rule without a topic", word)
	}
	if err := packets.ValidTopicFilter(topic); err != nil {
		return r, false, fmt.Errorf("topic %q: %v", topic, err)
	}
	for _, l := range strings.Split(topic, "/") {
		r.levels = append(r.levels, ruleLevel{s: l, user: strings.Contains(l, "%u"), cid: strings.Contains(l, "%c")})
	}
	return r, global, nil
}

// Rules returns the number of rules.
func (a *ACL) Rules() int { return a.n }

// Authorize implements Authorizer.
func (a *ACL) Authorize(c *ClientInfo, acc Access, topic string) bool {
	var buf [16]string
	f := splitTopic(buf[:0], topic)
	own := a.anonymous
	if c.HasUsername {
		own = a.users[c.Username]
	}
	for _, rules := range [2][]aclRule{own, a.all} {
		for i := range rules {
			if r := &rules[i]; !r.allow && r.access&acc != 0 && r.overlaps(c, f) {
				return false
			}
		}
	}
	for _, rules := range [2][]aclRule{own, a.all} {
		for i := range rules {
			if r := &rules[i]; r.allow && r.access&acc != 0 && r.covers(c, f) {
				return true
			}
		}
	}
	return false
}

// splitTopic appends the levels of topic to dst (which the caller
// provides on its stack, so a topic of up to 16 levels costs no
// allocation).
func splitTopic(dst []string, topic string) []string {
	for {
		i := strings.IndexByte(topic, '/')
		if i < 0 {
			return append(dst, topic)
		}
		dst = append(dst, topic[:i])
		topic = topic[i+1:]
	}
}

// usable reports whether template level l can be expanded for c: the
// value put in must not be empty or hold '+', '#' or '/'.
func (l *ruleLevel) usable(c *ClientInfo) bool {
	return (!l.user || c.HasUsername && substitutable(c.Username)) && (!l.cid || substitutable(c.ClientID))
}

func substitutable(v string) bool { return v != "" && !strings.ContainsAny(v, "+#/") }

func isWild(l string) bool { return l == "+" || l == "#" }

// eq reports whether rule level l, expanded for c, equals the filter
// level f (a usable template is never a wildcard).
func (l *ruleLevel) eq(f string, c *ClientInfo) bool {
	if !l.user && !l.cid {
		return l.s == f
	}
	t := l.s
	for len(t) > 0 {
		if len(t) >= 2 && t[0] == '%' && (t[1] == 'u' || t[1] == 'c') {
			v := c.Username
			if t[1] == 'c' {
				v = c.ClientID
			}
			if !strings.HasPrefix(f, v) {
				return false
			}
			f, t = f[len(v):], t[2:]
			continue
		}
		if f == "" || f[0] != t[0] {
			return false
		}
		f, t = f[1:], t[1:]
	}
	return f == ""
}

// dollar reports whether rule level l, expanded for c, starts with '$'.
func (l *ruleLevel) dollar(c *ClientInfo) bool {
	switch {
	case strings.HasPrefix(l.s, "%u") && l.user:
		return strings.HasPrefix(c.Username, "$")
	case strings.HasPrefix(l.s, "%c") && l.cid:
		return strings.HasPrefix(c.ClientID, "$")
	}
	return strings.HasPrefix(l.s, "$")
}

// dollarMismatch reports whether level 0 of a rule and of a filter f
// cannot meet because one is a wildcard and the other starts with '$'
// [MQTT-4.7.2-1].
func (l *ruleLevel) dollarMismatch(f string, c *ClientInfo) bool {
	return isWild(l.s) && strings.HasPrefix(f, "$") || isWild(f) && l.dollar(c)
}

// covers reports whether every topic filter f can match, the rule matches
// too. For a topic name it is plain matching. A level whose substitution
// is unusable matches nothing.
func (r *aclRule) covers(c *ClientInfo, f []string) bool {
	for i := 0; ; i++ {
		if i == len(r.levels) {
			return i == len(f)
		}
		l := &r.levels[i]
		if !l.usable(c) {
			return false
		}
		if i == 0 && len(f) > 0 && l.dollarMismatch(f[0], c) {
			return false
		}
		if l.s == "#" {
			return true // also the parent level: "a/#" covers "a"
		}
		if i == len(f) {
			return false
		}
		switch {
		case f[i] == "#":
			return false
		case f[i] == "+":
			if l.s != "+" {
				return false
			}
		case l.s != "+" && !l.eq(f[i], c):
			return false
		}
	}
}

// overlaps reports whether some topic matches both the rule and filter f.
// A level whose substitution is unusable is taken as '+'.
func (r *aclRule) overlaps(c *ClientInfo, f []string) bool {
	for i := 0; ; i++ {
		pEnd, fEnd := i == len(r.levels), i == len(f)
		switch {
		case pEnd && fEnd:
			return true
		case pEnd:
			return f[i] == "#"
		}
		l := &r.levels[i]
		if !l.usable(c) {
			l = &ruleLevel{s: "+"}
		}
		if fEnd {
			return l.s == "#"
		}
		if i == 0 && l.dollarMismatch(f[0], c) {
			return false
		}
		if l.s == "#" || f[i] == "#" {
			return true
		}
		if l.s != "+" && f[i] != "+" && !l.eq(f[i], c) {
			return false
		}
	}
}

// mayPublish reports whether the current Authorizer lets the client
// publish to topic; a $delayed/{seconds}/{topic} PUBLISH is judged by its
// target topic.
func (c *client) mayPublish(topic string) bool {
	az := c.srv.auth.Load().authz
	if az == nil {
		return true
	}
	if isDelayedTopic(topic) {
		if _, target, ok := parseDelayed(topic); ok {
			topic = target
		}
	}
	return az.Authorize(&c.auth.info, AccessPublish, topic)
}

// maySubscribe reports whether the current Authorizer lets the client
// subscribe to filter (without any $share/{group}/ prefix).
func (c *client) maySubscribe(filter string) bool {
	az := c.srv.auth.Load().authz
	return az == nil || az.Authorize(&c.auth.info, AccessSubscribe, filter)
}

// publishDenied handles a PUBLISH the ACL refuses: counted, then with
// ACLDenyAction "disconnect" the connection ends (5.0: DISCONNECT 0x87);
// otherwise a 5.0 QoS 1/2 PUBLISH is answered with 0x87 and everything
// else is dropped (3.1.1 acknowledges as usual: it cannot refuse).
func (c *client) publishDenied(p *packets.Publish, topic string) error {
	c.srv.stats.DroppedNotAuthorized.Add(1)
	c.log.Debug("PUBLISH not authorized", "topic", topic)
	if c.srv.opts.ACLDenyAction == ACLDenyDisconnect {
		return packets.NotAuthorized
	}
	return c.ackPublish(p, packets.NotAuthorized)
}

// recheckSubscriptions removes from a resumed session the subscriptions
// the current ACL does not give this client. A session is found by client
// identifier alone, so the client resuming it may be another user than
// the one that subscribed, or the rules may have changed since; without
// this, it would go on receiving what it may not subscribe to. (Messages
// already queued for the session are still delivered.)
func (c *client) recheckSubscriptions() {
	if c.srv.auth.Load().authz == nil {
		return
	}
	for _, sub := range c.sess.Subscriptions() {
		_, inner, _, err := packets.ParseShared(sub.Filter)
		if err != nil || c.maySubscribe(inner) {
			continue
		}
		existed, err := c.sess.Unsubscribe(sub.Filter)
		if err != nil {
			c.log.Warn("removing a subscription the ACL denies failed", "filter", sub.Filter, "err", err)
		}
		if existed {
			c.srv.tree.Unsubscribe(sub.Filter, c.id)
		}
		c.srv.stats.SubscribeDenied.Add(1)
		c.log.Info("subscription of the resumed session removed: not authorized", "filter", sub.Filter)
	}
}

// subscribeDenied counts a subscription the ACL refuses and returns its
// SUBACK code: 0x87 Not Authorized, or 0x80 for 3.1.1, which has no other
// failure code. No subscription is made, so no retained message is sent.
func (c *client) subscribeDenied(filter string) packets.ReasonCode {
	c.srv.stats.SubscribeDenied.Add(1)
	c.log.Debug("SUBSCRIBE not authorized", "filter", filter)
	if c.version != packets.V5 {
		return packets.UnspecifiedError
	}
	return packets.NotAuthorized
}
