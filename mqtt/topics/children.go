package topics

// children holds the literal children of a tree level, keyed by token. They
// are a slice, so walking them for a wildcard is a scan of contiguous memory
// and a level with few children (most levels: devices/{id}/... gives each id
// one or two children) costs no map; once there are more than
// childIndexMin of them a token index keeps lookups O(1).
type children[N any] struct {
	kids []kid[N]
	idx  map[string]int // token -> position in kids, once len(kids) > childIndexMin
}

type kid[N any] struct {
	tok string
	n   *N
}

// childIndexMin is the number of children above which a token index is kept.
const childIndexMin = 8

// get returns the child for tok, compared byte for byte [MQTT-4.7.3-4], or
// nil.
func (c *children[N]) get(tok string) *N {
	if c.idx != nil {
		if i, ok := c.idx[tok]; ok {
			return c.kids[i].n
		}
		return nil
	}
	for i := range c.kids {
		if c.kids[i].tok == tok {
			return c.kids[i].n
		}
	}
	return nil
}

// add adds a child for tok, which must not exist yet.
func (c *children[N]) add(tok string, n *N) {
	c.kids = append(c.kids, kid[N]{tok, n})
	switch {
	case c.idx != nil:
		c.idx[tok] = len(c.kids) - 1
	case len(c.kids) > childIndexMin:
		c.idx = make(map[string]int, 2*len(c.kids))
		for i, k := range c.kids {
			c.idx[k.tok] = i
		}
	}
}

// del removes the child for tok, which must exist; the last child takes its
// place.
func (c *children[N]) del(tok string) {
	i := -1
	if c.idx != nil {
		i = c.idx[tok]
		delete(c.idx, tok)
	} else {
		for j := range c.kids {
			if c.kids[j].tok == tok {
				i = j
				break
			}
		}
	}
	last := len(c.kids) - 1
	if i != last {
		c.kids[i] = c.kids[last]
		if c.idx != nil {
			c.idx[c.kids[i].tok] = i
		}
	}
	c.kids[last] = kid[N]{}
	c.kids = c.kids[:last]
	if c.idx != nil && len(c.kids) <= childIndexMin/2 {
		c.idx = nil
	}
	if len(c.kids) == 0 {
		c.kids = nil
	}
}

func (c *children[N]) len() int { return len(c.kids) }
