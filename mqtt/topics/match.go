package topics

// Match returns every subscription whose filter matches the topic name. The
// Result may be shared with other callers and must not be modified.
func (t *Tree[V]) Match(topic string) *Result[V] {
	c := t.cache
	if c == nil {
		t.mu.RLock()
		r := t.matchLocked(topic)
		t.mu.RUnlock()
		return r
	}
	if r := c.get(topic); r != nil {
		return r
	}
	t.mu.RLock()
	r := t.matchLocked(topic)
	if c.admit(topic) {
		// Stored while the read lock is held, so no Subscribe or
		// Unsubscribe can change the tree between computing r and caching
		// it.
		c.put(topic, r)
	}
	t.mu.RUnlock()
	return r
}

// maxStackNodes is how many matching nodes Match collects on the stack
// before it spills to the heap; a topic rarely matches more distinct filters.
const maxStackNodes = 16

// collector gathers the nodes whose filter matches a topic. It lives on
// Match's stack, so the common case allocates nothing.
type collector[V any] struct {
	buf   [maxStackNodes]*node[V]
	n     int
	spill []*node[V] // nodes beyond the first maxStackNodes
}

func (c *collector[V]) add(n *node[V]) {
	if c.n < len(c.buf) {
		c.buf[c.n] = n
		c.n++
		return
	}
	c.spill = append(c.spill, n)
}

// matchLocked computes the Result for topic. The caller holds t.mu.
func (t *Tree[V]) matchLocked(topic string) *Result[V] {
	var c collector[V]
	// [MQTT-4.7.2-1] a filter starting with a wildcard does not match a topic
	// name starting with '$': wildcards are skipped at the root for such topics.
	dollar := len(topic) > 0 && topic[0] == '$'
	c.collect(&t.root, topic, dollar)
	if c.n == 0 {
		return t.empty
	}

	nsubs, ngroups, nmembers := 0, 0, 0
	count := func(n *node[V]) {
		nsubs += len(n.subs)
		ngroups += len(n.groups())
		for _, g := range n.groups() {
			nmembers += len(g.members)
		}
	}
	for _, n := range c.buf[:c.n] {
		count(n)
	}
	for _, n := range c.spill {
		count(n)
	}

	r, subs, members := newResult[V](nsubs, ngroups, nmembers)
	if nsubs > 0 {
		for _, n := range c.buf[:c.n] {
			subs = append(subs, n.subs...)
		}
		for _, n := range c.spill {
			subs = append(subs, n.subs...)
		}
		r.Subscribers = subs
	}
	if ngroups > 0 {
		groups := make([]Group[V], 0, ngroups)
		add := func(n *node[V]) {
			for _, g := range n.groups() {
				start := len(members)
				members = append(members, g.members...)
				groups = append(groups, Group[V]{
					Name:    g.name,
					Filter:  g.filter,
					Members: members[start:len(members):len(members)],
				})
			}
		}
		for _, n := range c.buf[:c.n] {
			add(n)
		}
		for _, n := range c.spill {
			add(n)
		}
		r.Groups = groups
	}
	return r
}

// Results with one or two subscribers and no groups (a device's own topic,
// or its own topic plus one wildcard consumer) are the most common; they are
// allocated together with their Subscribers array in one allocation.
type (
	result1[V any] struct {
		r Result[V]
		a [1]Entry[V]
	}
	result2[V any] struct {
		r Result[V]
		a [2]Entry[V]
	}
)

// newResult allocates a Result and empty slices with room for nsubs
// subscribers and nmembers group members (one array holds both).
func newResult[V any](nsubs, ngroups, nmembers int) (r *Result[V], subs, members []Entry[V]) {
	if ngroups == 0 {
		switch nsubs {
		case 1:
			x := &result1[V]{}
			return &x.r, x.a[:0], nil
		case 2:
			x := &result2[V]{}
			return &x.r, x.a[:0], nil
		}
	}
	r = &Result[V]{}
	if nsubs+nmembers == 0 {
		return r, nil, nil
	}
	all := make([]Entry[V], nsubs+nmembers)
	return r, all[:0:nsubs], all[nsubs:nsubs:len(all)]
}

// collect adds the nodes below l whose filter matches topic and that hold
// subscriptions. dollar is true only at the root of a topic beginning with
// '$'.
func (c *collector[V]) collect(l *level[V], topic string, dollar bool) {
	tok, rest, more := cut(topic)
	if !dollar { // [MQTT-4.7.2-1]
		if h := l.hash; h != nil && h.hasSubs() {
			// '#' matches this level and everything below it.
			c.add(h)
		}
		if p := l.plus; p != nil {
			// '+' matches exactly this one level, empty or not.
			c.descend(p, rest, more)
		}
	}
	// [MQTT-4.7.3-4] literal levels are compared byte for byte: the token
	// is the map key as is, with no normalisation.
	if n := l.nodes.get(tok); n != nil {
		c.descend(n, rest, more)
	}
}

// descend continues a match at node n, which matched the current level.
func (c *collector[V]) descend(n *node[V], rest string, more bool) {
	if more {
		c.collect(&n.next, rest, false)
		return
	}
	// The topic ends here.
	if n.hasSubs() {
		c.add(n)
	}
	// '#' also matches its parent level: "sport/#" matches "sport".
	if h := n.next.hash; h != nil && h.hasSubs() {
		c.add(h)
	}
}

// MatchFilter reports whether the topic name matches the filter, by the same
// rules as Tree and Index. It is the reference for those structures and a
// convenience for callers (ACLs, bridges); it does not allocate.
func MatchFilter(filter, topic string) bool {
	if len(topic) > 0 && topic[0] == '$' && len(filter) > 0 && (filter[0] == '+' || filter[0] == '#') {
		return false // [MQTT-4.7.2-1]
	}
	for {
		ftok, frest, fmore := cut(filter)
		if ftok == "#" {
			return true
		}
		ttok, trest, tmore := cut(topic)
		if ftok != "+" && ftok != ttok { // [MQTT-4.7.3-4] byte for byte
			return false
		}
		if !tmore {
			// The topic ends: the filter must end too, or continue with
			// just "#", which matches its parent level.
			return !fmore || frest == "#"
		}
		if !fmore {
			return false
		}
		filter, topic = frest, trest
	}
}
