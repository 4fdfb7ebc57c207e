package mqtt

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/beaconmq/beacon/packets"
)

// Shared subscriptions ($share/{group}/{filter}) deliver each message to one
// member of the group [MQTT-4.8.2-1]; the specification leaves the choice of
// member to the server. sharedPicker makes that choice, per group, with a
// configurable strategy.

// sharedStrategy names how a shared subscription group picks the member
// that receives a message.
type sharedStrategy string

// Strategies of shared subscription groups.
const (
	// sharedRoundRobin hands messages to members in turn (the default).
	sharedRoundRobin sharedStrategy = "round_robin"
	// sharedRandom picks a member uniformly at random for each message.
	sharedRandom sharedStrategy = "random"
	// sharedSticky keeps sending to the same member until it leaves the
	// group; then another member becomes the sticky one.
	sharedSticky sharedStrategy = "sticky"
	// sharedHashClientID sends every message of one publisher to the same
	// member (rendezvous hashing on the publisher's client identifier).
	sharedHashClientID sharedStrategy = "hash_clientid"
	// sharedHashTopic sends every message of one topic to the same member.
	sharedHashTopic sharedStrategy = "hash_topic"
	// sharedHashKey sends every message carrying the same sharding key (a
	// user property, default name "partition-key") to the same member, so
	// one device's or one order's messages stay in order on one member.
	// Messages without the key fall back to round robin.
	sharedHashKey sharedStrategy = "hash_key"
)

// defaultSharedKeyProperty is the user property read by hash_key when the
// configuration names no other.
const defaultSharedKeyProperty = "partition-key"

// parseSharedStrategy validates a strategy name from configuration; the
// empty string means the default, round robin.
func parseSharedStrategy(s string) (sharedStrategy, error) {
	switch st := sharedStrategy(s); st {
	case "":
		return sharedRoundRobin, nil
	case sharedRoundRobin, sharedRandom, sharedSticky, sharedHashClientID, sharedHashTopic, sharedHashKey:
		return st, nil
	}
	return "", fmt.Errorf("unknown shared subscription strategy %q (want round_robin, random, sticky, hash_clientid, hash_topic or hash_key)", s)
}

// sharedKey returns the value of the first user property named name (the
// sharding key of hash_key), or "" when the message carries none.
func sharedKey(user []packets.UserProperty, name string) string {
	for i := range user {
		if user[i].Key == name {
			return user[i].Value
		}
	}
	return ""
}

// sharedPicker chooses the receiving member of shared subscription groups.
// It is safe for concurrent use. Its state (round robin counters, the sticky
// member) is kept per group and filter, because $share/g/a and $share/g/b
// are two different shared subscriptions [MQTT-4.8.2-2]; forget drops it
// when the group has no members left.
type sharedPicker struct {
	def      sharedStrategy
	perGroup map[string]sharedStrategy // group name -> strategy; read-only after construction

	mu     sync.RWMutex
	groups map[sharedGroupKey]*sharedGroupState
}

type sharedGroupKey struct{ group, filter string }

type sharedGroupState struct {
	next atomic.Uint64 // round robin position

	mu     sync.Mutex
	sticky string // client id of the sticky member, "" when none yet
}

// newSharedPicker returns a picker using defaultStrategy for every group
// not named in perGroup (keyed by group name, the {group} of
// $share/{group}/{filter}). An empty defaultStrategy means round robin.
func newSharedPicker(defaultStrategy sharedStrategy, perGroup map[string]sharedStrategy) *sharedPicker {
	if defaultStrategy == "" {
		defaultStrategy = sharedRoundRobin
	}
	pg := make(map[string]sharedStrategy, len(perGroup))
	for g, s := range perGroup {
		pg[g] = s
	}
	return &sharedPicker{def: defaultStrategy, perGroup: pg, groups: make(map[sharedGroupKey]*sharedGroupState)}
}

// strategy returns the strategy of group.
func (p *sharedPicker) strategy(group string) sharedStrategy {
	if s, ok := p.perGroup[group]; ok && s != "" {
		return s
	}
	return p.def
}

// state returns the state of group+filter, creating it on first use.
func (p *sharedPicker) state(group, filter string) *sharedGroupState {
	k := sharedGroupKey{group, filter}
	p.mu.RLock()
	st := p.groups[k]
	p.mu.RUnlock()
	if st != nil {
		return st
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if st = p.groups[k]; st == nil {
		st = &sharedGroupState{}
		p.groups[k] = st
	}
	return st
}

// pick returns the index in members of the member that receives a message
// published on topic by publisherID carrying sharding key key ("" if none),
// or -1 when members is empty. members are the client identifiers of the
// group's members in a stable order (the caller's order only matters to
// round robin and random; the hash strategies depend on the identifiers
// alone).
//
// The hash strategies use rendezvous (highest random weight) hashing: each
// member scores hash(key, member) and the highest score wins. The same key
// maps to the same member while membership is unchanged, and when a member
// leaves only the keys it owned move (to the other members, spread evenly);
// when one joins it takes over only the keys for which it now scores
// highest. A key that moves may see messages delivered out of order across
// the change; that is inherent in changing membership.
func (p *sharedPicker) pick(group, filter string, members []string, topic, publisherID, key string) int {
	n := len(members)
	if n == 0 {
		return -1
	}
	if n == 1 {
		// Keep state up to date for sticky even with a single member.
		if p.strategy(group) == sharedSticky {
			st := p.state(group, filter)
			st.mu.Lock()
			st.sticky = members[0]
			st.mu.Unlock()
		}
		return 0
	}
	switch p.strategy(group) {
	case sharedRandom:
		return rand.IntN(n)
	case sharedSticky:
		st := p.state(group, filter)
		st.mu.Lock()
		defer st.mu.Unlock()
		if st.sticky != "" {
			for i, m := range members {
				if m == st.sticky {
					return i
				}
			}
		}
		// The sticky member left (or none was chosen yet): the next one in
		// round robin order becomes sticky.
		i := int(st.next.Add(1)-1) % n
		st.sticky = members[i]
		return i
	case sharedHashClientID:
		if publisherID != "" {
			return rendezvous(publisherID, members)
		}
	case sharedHashTopic:
		return rendezvous(topic, members)
	case sharedHashKey:
		if key != "" {
			return rendezvous(key, members)
		}
	}
	// Round robin, and the fallback of hash strategies without a key.
	st := p.state(group, filter)
	return int((st.next.Add(1) - 1) % uint64(n))
}

// forget drops the state of group+filter; call it when the shared
// subscription has no members left.
func (p *sharedPicker) forget(group, filter string) {
	p.mu.Lock()
	delete(p.groups, sharedGroupKey{group, filter})
	p.mu.Unlock()
}

// rendezvous returns the index of the member with the highest score for
// key; ties (practically impossible with 64-bit scores) go to the member
// with the smaller identifier so the result never depends on order.
func rendezvous(key string, members []string) int {
	hk := fnv64aString(fnvOffset64, key)
	best, bestScore := -1, uint64(0)
	for i, m := range members {
		// Separator byte so ("ab","c") and ("a","bc") score differently.
		h := fnv64aString((hk^0xff)*fnvPrime64, m)
		s := mix64(h)
		if best < 0 || s > bestScore || (s == bestScore && m < members[best]) {
			best, bestScore = i, s
		}
	}
	return best
}

const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// fnv64aString continues an FNV-1a hash h over s without allocating.
func fnv64aString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime64
	}
	return h
}

// mix64 is the splitmix64 finaliser: FNV's low bits avalanche poorly, and
// rendezvous hashing compares whole scores, so scores are mixed first.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
