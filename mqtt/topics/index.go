package topics

import (
	"strings"
	"sync"
)

// Index stores values by topic name and finds the names that a filter
// matches: the store behind retained messages, which a new subscription
// receives for every retained topic its filter matches. The zero Index is
// empty and ready to use. It is safe for concurrent use; see the package
// comment for its lock rule.
type Index[V any] struct {
	mu   sync.RWMutex
	root inode[V]
	n    int
}

// inode is one level of a stored topic name.
type inode[V any] struct {
	kids  children[inode[V]]
	topic string // the full topic name, when set
	value V
	set   bool
}

// NewIndex returns an empty Index.
func NewIndex[V any]() *Index[V] {
	return &Index[V]{}
}

// Set stores v under the topic name, replacing any previous value.
func (x *Index[V]) Set(topic string, v V) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if n := x.root.lookup(topic); n != nil && n.set {
		n.value = v
		return
	}
	// One copy of the name, owned by the index; the tokens of the path are
	// views into it.
	n := x.root.insert(strings.Clone(topic))
	n.value = v
	x.n++
}

// Get returns the value stored under the topic name.
func (x *Index[V]) Get(topic string) (V, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if n := x.root.lookup(topic); n != nil && n.set {
		return n.value, true
	}
	var zero V
	return zero, false
}

// Delete removes the topic name and reports whether it was stored.
func (x *Index[V]) Delete(topic string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if n := x.root.lookup(topic); n == nil || !n.set {
		return false
	}
	x.root.remove(topic)
	x.n--
	return true
}

// Len returns the number of stored topic names.
func (x *Index[V]) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.n
}

// Match calls fn for every stored topic name that filter matches, in no
// particular order, until fn returns false. fn runs under the Index's read
// lock: it must not call Set or Delete on x.
func (x *Index[V]) Match(filter string, fn func(topic string, v V) bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	x.root.match(filter, true, fn)
}

// insert marks topic as set below n, creating the path as needed, and
// returns its node. topic must be a string the trie may keep: the node keeps
// it and new tokens of the path are substrings of it.
func (n *inode[V]) insert(topic string) *inode[V] {
	for rest, more := topic, true; more; {
		var tok string
		tok, rest, more = cut(rest)
		c := n.kids.get(tok)
		if c == nil {
			c = &inode[V]{}
			n.kids.add(tok, c)
		}
		n = c
	}
	n.set = true
	n.topic = topic
	return n
}

// lookup returns the node of topic below n, or nil.
func (n *inode[V]) lookup(topic string) *inode[V] {
	for rest, more := topic, true; more; {
		var tok string
		tok, rest, more = cut(rest)
		if n = n.kids.get(tok); n == nil {
			return nil
		}
	}
	return n
}

// any returns one stored name below n, or "" and false when there is none.
// Which one is unspecified.
func (n *inode[V]) any() (string, bool) {
	for {
		if n.set {
			return n.topic, true
		}
		if n.kids.len() == 0 {
			return "", false
		}
		n = n.kids.kids[n.kids.len()-1].n
	}
}

// remove unsets topic, which must be set, below n, pruning emptied nodes on
// the way back, and reports whether n is left empty.
func (n *inode[V]) remove(topic string) bool {
	tok, rest, more := cut(topic)
	c := n.kids.get(tok)
	if more {
		if c.remove(rest) {
			n.kids.del(tok)
		}
	} else {
		var zero V
		c.set, c.value, c.topic = false, zero, ""
		if c.kids.len() == 0 {
			n.kids.del(tok)
		}
	}
	return !n.set && n.kids.len() == 0
}

// match walks the filter from n. root is true at the first level, where
// wildcards skip names beginning with '$'. It returns false once fn asks to
// stop.
func (n *inode[V]) match(filter string, root bool, fn func(string, V) bool) bool {
	tok, rest, more := cut(filter)
	switch tok {
	case "#":
		// '#' matches the parent level ("sport/#" matches "sport"); the
		// root is never a topic, so "#" alone does not match it.
		if n.set && !fn(n.topic, n.value) {
			return false
		}
		for _, k := range n.kids.kids {
			if root && strings.HasPrefix(k.tok, "$") { // [MQTT-4.7.2-1]
				continue
			}
			if !k.n.all(fn) {
				return false
			}
		}
	case "+":
		for _, k := range n.kids.kids {
			if root && strings.HasPrefix(k.tok, "$") { // [MQTT-4.7.2-1]
				continue
			}
			if !k.n.step(rest, more, fn) {
				return false
			}
		}
	default:
		// [MQTT-4.7.3-4] byte-for-byte comparison of the level.
		if c := n.kids.get(tok); c != nil {
			return c.step(rest, more, fn)
		}
	}
	return true
}

// step continues a match at c, which matched the current filter level.
func (c *inode[V]) step(rest string, more bool, fn func(string, V) bool) bool {
	if more {
		return c.match(rest, false, fn)
	}
	if c.set {
		return fn(c.topic, c.value)
	}
	return true
}

// all calls fn for n and every name below it.
func (n *inode[V]) all(fn func(string, V) bool) bool {
	if n.set && !fn(n.topic, n.value) {
		return false
	}
	for _, k := range n.kids.kids {
		if !k.n.all(fn) {
			return false
		}
	}
	return true
}
