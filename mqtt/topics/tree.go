package topics

import (
	"strings"
	"sync"
)

// SharePrefix starts a shared subscription filter: $share/{group}/{filter}
// (MQTT 5.0 section 4.8.2).
const SharePrefix = "$share/"

// Entry is one subscription: the client Key, the Filter exactly as it was
// subscribed (including any $share/{group}/ prefix) and the caller's Value
// (typically the subscription options).
type Entry[V any] struct {
	Key    string
	Filter string
	Value  V
}

// Group is one shared subscription, $share/{Name}/{filter}, that matched a
// topic. A message goes to one of its Members, not to all of them. Members
// are kept in subscription order so that a round-robin cursor over them is
// fair and stable while membership does not change.
type Group[V any] struct {
	Name    string
	Filter  string // the full filter, $share/{Name}/{filter}
	Members []Entry[V]
}

// Result is everything that matched one topic name. Subscribers holds every
// matching non-shared subscription; a client with several overlapping
// filters appears once per filter and the caller merges them (MQTT 5.0
// section 3.3.4 lets the server deliver once with the highest QoS and all
// subscription identifiers). Groups holds one entry per matching shared
// subscription (group name, filter).
//
// A Result may be shared between callers through the match cache: it and its
// slices are read-only.
type Result[V any] struct {
	Subscribers []Entry[V]
	Groups      []Group[V]
}

// Tree is a subscription index for the publish path. Create one with New. It
// is safe for concurrent use; see the package comment for its lock rules.
type Tree[V any] struct {
	mu    sync.RWMutex
	root  level[V]
	count int

	cache *matchCache[V] // nil when the cache is disabled
	empty *Result[V]     // shared answer for topics nobody subscribes to
}

// level is one level of the tree: the children of one node.
type level[V any] struct {
	nodes children[node[V]] // literal tokens, compared byte for byte
	plus  *node[V]          // the '+' child
	hash  *node[V]          // the '#' child
}

// node is where a filter's token sits; it holds the subscriptions whose
// filter ends at this token and the levels below it.
type node[V any] struct {
	next level[V]      // the level below, held inline: one allocation and one pointer hop fewer per level
	subs []Entry[V]    // non-shared subscriptions, unordered
	x    *nodeExtra[V] // what few nodes need, kept out of line to keep nodes small; nil when unused
}

// nodeExtra holds the parts of a node that most nodes do not need.
type nodeExtra[V any] struct {
	subIdx map[string]int // Key -> index in subs; built once subs is large
	groups []*shareGroup[V]
}

// shareGroup is the state of one shared subscription $share/{name}/{filter}.
type shareGroup[V any] struct {
	name    string
	filter  string // the full $share/ filter
	members []Entry[V]
}

// subIndexThreshold is the number of non-shared subscriptions on one node
// above which a Key index is kept, so that a filter many clients share (a
// broadcast topic) has O(1) subscribe and unsubscribe.
const subIndexThreshold = 16

// New returns an empty Tree. cacheSize bounds the number of topic names whose
// Result is cached; 0 disables the cache.
func New[V any](cacheSize int) *Tree[V] {
	t := &Tree[V]{empty: &Result[V]{}}
	if cacheSize > 0 {
		t.cache = newMatchCache[V](cacheSize)
	}
	return t
}

// ParseShared splits a shared subscription filter $share/{group}/{filter}
// into its group name and inner filter. ok is false when filter is not a
// well-formed shared filter: the group name must be at least one character
// and contain none of '/', '+', '#', and a filter must follow it
// [MQTT-4.8.2-1] [MQTT-4.8.2-2].
func ParseShared(filter string) (group, inner string, ok bool) {
	if !strings.HasPrefix(filter, SharePrefix) {
		return "", "", false
	}
	rest := filter[len(SharePrefix):]
	i := strings.IndexByte(rest, '/')
	if i <= 0 || i == len(rest)-1 { // [MQTT-4.8.2-1]
		return "", "", false
	}
	group, inner = rest[:i], rest[i+1:]
	if strings.ContainsAny(group, "+#") { // [MQTT-4.8.2-2]
		return "", "", false
	}
	return group, inner, true
}

// Subscribe adds the subscription (filter, key) with value v, or replaces
// the value of an existing one with the same filter and key, in which case it
// returns false ([MQTT-3.8.4-3]: a repeated filter replaces the subscription).
//
// A filter of the form $share/{group}/{f} is a shared subscription to f in
// group {group}; a filter that starts with $share/ but is not well formed is
// treated as an ordinary filter (the caller is expected to reject it first).
func (t *Tree[V]) Subscribe(filter, key string, v V) (isNew bool) {
	// One copy of the filter, owned by the tree: the tree outlives the packet
	// the string came from and must not keep a larger buffer alive. Entries,
	// group names and the tokens of new nodes are views into this copy.
	filter = strings.Clone(filter)
	group, inner, shared := ParseShared(filter)
	if !shared {
		inner = filter
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	// Invalidate before changing the tree: see the package comment.
	t.cache.invalidate(inner)

	n := t.root.insert(inner)
	if shared {
		isNew = n.addShared(group, filter, key, v)
	} else {
		isNew = n.add(filter, key, v)
	}
	if isNew {
		t.count++
	}
	return isNew
}

// Unsubscribe removes the subscription (filter, key). The filter is compared
// literally with the subscribed one, wildcards included [MQTT-3.10.4-1]:
// unsubscribing "a/+" does not remove "a/b". It reports whether a
// subscription was removed.
func (t *Tree[V]) Unsubscribe(filter, key string) (removed bool) {
	group, inner, shared := ParseShared(filter)
	if !shared {
		inner = filter
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.root.find(inner) // [MQTT-3.10.4-1] token by token, wildcards as literals
	if n == nil {
		return false
	}
	if shared {
		if !n.hasMember(group, key) {
			return false
		}
	} else if n.indexOf(key) < 0 {
		return false
	}
	t.cache.invalidate(inner)
	if shared {
		n.removeShared(group, key)
	} else {
		n.remove(key)
	}
	t.count--
	if n.empty() {
		t.root.prune(inner)
	}
	return true
}

// Count returns the number of subscriptions, shared ones included.
func (t *Tree[V]) Count() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.count
}

// cut splits off the first level of a topic or filter without allocating:
// tok is the text before the first '/', rest the text after it, and more
// whether there was a '/'. "a/" yields "a", "", true; "" yields "", "",
// false, so empty levels are levels like any other.
func cut(s string) (tok, rest string, more bool) {
	i := strings.IndexByte(s, '/')
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

// child returns the child node for tok, or nil.
func (l *level[V]) child(tok string) *node[V] {
	switch tok {
	case "+":
		return l.plus
	case "#":
		return l.hash
	}
	return l.nodes.get(tok)
}

// insert returns the node for filter, creating the path as needed. New
// tokens are stored as substrings of filter, which the tree must own.
func (l *level[V]) insert(filter string) *node[V] {
	for {
		tok, rest, more := cut(filter)
		n := l.child(tok)
		if n == nil {
			n = &node[V]{}
			switch tok {
			case "+":
				l.plus = n
			case "#":
				l.hash = n
			default:
				l.nodes.add(tok, n)
			}
		}
		if !more {
			return n
		}
		l, filter = &n.next, rest
	}
}

// find returns the node for filter, compared token by token literally, or
// nil.
func (l *level[V]) find(filter string) *node[V] {
	for {
		tok, rest, more := cut(filter)
		n := l.child(tok)
		if n == nil || !more {
			return n
		}
		l, filter = &n.next, rest
	}
}

// prune removes the empty nodes and levels along filter's path, deepest
// first. It reports whether l itself is empty afterwards.
func (l *level[V]) prune(filter string) bool {
	tok, rest, more := cut(filter)
	n := l.child(tok)
	if n == nil {
		return l.isEmpty()
	}
	if more {
		n.next.prune(rest)
	}
	if n.empty() {
		switch tok {
		case "+":
			l.plus = nil
		case "#":
			l.hash = nil
		default:
			l.nodes.del(tok)
		}
	}
	return l.isEmpty()
}

func (l *level[V]) isEmpty() bool {
	return l.nodes.len() == 0 && l.plus == nil && l.hash == nil
}

// empty reports whether n holds no subscriptions and no children.
func (n *node[V]) empty() bool {
	return len(n.subs) == 0 && n.x == nil && n.next.isEmpty()
}

// hasSubs reports whether any subscription ends at n.
func (n *node[V]) hasSubs() bool {
	return len(n.subs) != 0 || (n.x != nil && len(n.x.groups) != 0)
}

// groups returns the shared subscriptions that end at n.
func (n *node[V]) groups() []*shareGroup[V] {
	if n.x == nil {
		return nil
	}
	return n.x.groups
}

// extra returns n.x, creating it if needed.
func (n *node[V]) extra() *nodeExtra[V] {
	if n.x == nil {
		n.x = &nodeExtra[V]{}
	}
	return n.x
}

// tidy drops n.x once it holds nothing.
func (n *node[V]) tidy() {
	if n.x != nil && n.x.subIdx == nil && len(n.x.groups) == 0 {
		n.x = nil
	}
}

func (n *node[V]) indexOf(key string) int {
	if n.x != nil && n.x.subIdx != nil {
		if i, ok := n.x.subIdx[key]; ok {
			return i
		}
		return -1
	}
	for i := range n.subs {
		if n.subs[i].Key == key {
			return i
		}
	}
	return -1
}

// add adds or replaces the non-shared subscription of key.
func (n *node[V]) add(filter, key string, v V) bool {
	if i := n.indexOf(key); i >= 0 {
		n.subs[i].Value = v // [MQTT-3.8.4-3] a repeated filter replaces the subscription
		return false
	}
	e := Entry[V]{Key: strings.Clone(key), Filter: filter, Value: v}
	n.subs = append(n.subs, e)
	switch {
	case n.x != nil && n.x.subIdx != nil:
		n.x.subIdx[e.Key] = len(n.subs) - 1
	case len(n.subs) > subIndexThreshold:
		idx := make(map[string]int, len(n.subs)*2)
		for i := range n.subs {
			idx[n.subs[i].Key] = i
		}
		n.extra().subIdx = idx
	}
	return true
}

// remove deletes the non-shared subscription of key, which must exist. The
// order of non-shared subscribers carries no meaning, so the last one takes
// its place.
func (n *node[V]) remove(key string) {
	i := n.indexOf(key)
	var idx map[string]int
	if n.x != nil {
		idx = n.x.subIdx
	}
	last := len(n.subs) - 1
	if i != last {
		n.subs[i] = n.subs[last]
		if idx != nil {
			idx[n.subs[i].Key] = i
		}
	}
	n.subs[last] = Entry[V]{} // drop references for the garbage collector
	n.subs = n.subs[:last]
	if idx != nil {
		delete(idx, key)
		if len(n.subs) <= subIndexThreshold/2 {
			n.x.subIdx = nil
			n.tidy()
		}
	}
	if len(n.subs) == 0 {
		n.subs = nil
	}
}

func (n *node[V]) group(name string) (int, *shareGroup[V]) {
	for i, g := range n.groups() {
		if g.name == name {
			return i, g
		}
	}
	return -1, nil
}

func (g *shareGroup[V]) indexOf(key string) int {
	for i := range g.members {
		if g.members[i].Key == key {
			return i
		}
	}
	return -1
}

func (n *node[V]) hasMember(group, key string) bool {
	_, g := n.group(group)
	return g != nil && g.indexOf(key) >= 0
}

// addShared adds key to the share group, or replaces its value in place so
// that its round-robin position is kept.
func (n *node[V]) addShared(group, filter, key string, v V) bool {
	_, g := n.group(group)
	if g == nil {
		g = &shareGroup[V]{name: group, filter: filter}
		x := n.extra()
		x.groups = append(x.groups, g)
	}
	if i := g.indexOf(key); i >= 0 {
		g.members[i].Value = v
		return false
	}
	g.members = append(g.members, Entry[V]{Key: strings.Clone(key), Filter: g.filter, Value: v})
	return true
}

// removeShared deletes key, which must be a member, from the group keeping
// the others in subscription order, and drops the group when it is empty.
func (n *node[V]) removeShared(group, key string) {
	gi, g := n.group(group)
	i := g.indexOf(key)
	copy(g.members[i:], g.members[i+1:])
	g.members[len(g.members)-1] = Entry[V]{}
	g.members = g.members[:len(g.members)-1]
	if len(g.members) == 0 {
		x := n.x
		copy(x.groups[gi:], x.groups[gi+1:])
		x.groups[len(x.groups)-1] = nil
		x.groups = x.groups[:len(x.groups)-1]
		if len(x.groups) == 0 {
			x.groups = nil
			n.tidy()
		}
	}
}
