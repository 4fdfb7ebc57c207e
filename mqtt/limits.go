package mqtt

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"sync"

	"golang.org/x/time/rate"

	"github.com/beaconmq/beacon/packets"
)

// Limits: what one client, or one remote host, may cost the broker. Each
// limit here is off (0) by default except MaxTopicLevels; every refusal
// carries the MQTT 5.0 reason code that names it, is counted in Stats,
// and is described in docs/security.md.
//
//   - Connections in total and per remote IP are counted from accept to
//     close (before the TLS handshake and CONNECT, so a host holding idle
//     sockets is counted too). A connection over a limit is still read up
//     to its CONNECT (within ConnectTimeout) so that it can be told why:
//     CONNACK 0x97 Quota exceeded (5.0's code for an implementation or
//     administrative limit; 0x9F is the one made for the connect rate),
//     3.1.1 0x03 Server unavailable. It counts against the limit until it is closed. At
//     most refusingMax such connections are kept waiting for their
//     CONNECT at a time; beyond that a connection over a limit is closed
//     at once, without a word, so a flood cannot hold more sockets and
//     goroutines than that.
//   - Connect rate per remote IP: a token bucket per IP, charged for every
//     accepted socket (refused ones too); CONNACK 0x9F Connection rate
//     exceeded, 3.1.1 0x03.
//   - Publish rate per connection: a token bucket charged per PUBLISH; see
//     refusePublishRate.
//   - Subscriptions per client: SUBACK 0x97 for each new filter beyond it
//     (3.1.1 0x80); replacing an existing subscription is always allowed.
//   - Topic length and levels: see topicOverLimit.
//   - Queued bytes per session: session.Config.MaxQueuedBytes.

// defaultMaxTopicLevels is the default of Options.MaxTopicLevels. Each
// level of a subscribed filter is a node of the topic tree, so without a
// bound one 64 KiB SUBSCRIBE of "////…" builds ~32,000 nodes. 128 is the
// default EMQX ships (max_topic_levels), so configurations and devices
// that work there work here; real topic hierarchies stay far below it.
const defaultMaxTopicLevels = 128

// Names of the limits in Stats.Refused (and the beacon_connections_refused
// metric's reason label).
const (
	refusedMaxConnections = "max-connections"
	refusedMaxPerIP       = "max-connections-per-ip"
	refusedConnectRate    = "connect-rate"
)

// refusingMax is the default bound on connections kept open only to be
// told (in CONNACK) that a limit refused them.
const refusingMax = 64

// ipPruneAt is the size of the per-IP table from which idle entries (no
// connection open, rate bucket full again) are swept.
const ipPruneAt = 1024

// connLimits counts open connections, in total and per remote IP, and
// holds the per-IP connect rate buckets. Guarded by mu, which is taken on
// accept and on close only, never with another lock held.
type connLimits struct {
	mu       sync.Mutex
	total    int
	perIP    map[string]*ipState
	pruneAt  int
	refusing int // admitted connections waiting to be refused in CONNACK
	// refusingMax bounds refusing (0 means the refusingMax constant;
	// tests lower it).
	refusingMax int
}

type ipState struct {
	conns  int
	bucket *rate.Limiter // nil when MaxConnectRatePerIP is 0
}

// clientLimits is one connection's limit state, and the identity its TLS
// client certificate gave it; client.lim.
type clientLimits struct {
	ip      string // remote IP as counted in connLimits.perIP
	counted bool   // admitted: release must uncount it
	// refuse, when not zero, is the reason code CONNECT is refused with
	// (decided on accept); refuseName names the limit in Stats.Refused.
	refuse     packets.ReasonCode
	refuseName string
	refusing   bool          // counted in connLimits.refusing
	pub        *rate.Limiter // publish rate (reader only); nil until first used
	certUser   string        // username taken from the client certificate's CN (tls.go)
}

// validateLimits checks the limit options; part of Validate.
func (o *Options) validateLimits() []error {
	var errs []error
	for _, f := range []struct {
		name string
		v    int
	}{
		{"MaxConnections", o.MaxConnections}, {"MaxConnectionsPerIP", o.MaxConnectionsPerIP},
		{"ConnectBurstPerIP", o.ConnectBurstPerIP}, {"PublishBurst", o.PublishBurst},
		{"MaxQueuedBytes", o.MaxQueuedBytes}, {"MaxSubscriptionsPerClient", o.MaxSubscriptionsPerClient},
		{"MaxTopicLength", o.MaxTopicLength}, {"MaxTopicLevels", o.MaxTopicLevels},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s %d is negative: use 0 for unlimited", f.name, f.v))
		}
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"MaxConnectRatePerIP", o.MaxConnectRatePerIP}, {"MaxPublishRate", o.MaxPublishRate}} {
		if f.v < 0 || math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			errs = append(errs, fmt.Errorf("%s %v must be a finite number >= 0 (per second; 0 = unlimited)", f.name, f.v))
		}
	}
	if o.MaxTopicLength > 65535 {
		errs = append(errs, fmt.Errorf("MaxTopicLength %d exceeds the protocol's 65535 bytes: use 1..65535, or 0 for no limit beyond the protocol's", o.MaxTopicLength))
	}
	if o.MaxQueuedBytes > 0 && o.MaxQueuedBytes < 1024 {
		errs = append(errs, fmt.Errorf("MaxQueuedBytes %d is too small to hold a message: use at least 1024, or 0 for unlimited", o.MaxQueuedBytes))
	}
	return errs
}

// burst is the token bucket size for a rate: the configured burst, or one
// second's worth (at least 1).
func burst(r float64, b int) int {
	if b > 0 {
		return b
	}
	return max(1, int(math.Ceil(r)))
}

// remoteIP is the host part of a connection's remote address ("" when it
// has none, as with net.Pipe: such connections share one entry).
func remoteIP(a net.Addr) string {
	if a == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// admit counts a new connection and decides whether its CONNECT is to be
// refused by a connection limit. It reports false, counting nothing, when
// the connection is over a limit and refusingMax others already wait to
// be refused: the caller closes it at once. It never blocks on I/O;
// release undoes it.
func (s *Server) admit(c *client) bool {
	o := &s.opts
	perIP := o.MaxConnectionsPerIP > 0 || o.MaxConnectRatePerIP > 0
	l := &s.limits
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total++
	c.lim.counted = true
	var st *ipState
	if perIP {
		c.lim.ip = remoteIP(c.conn.RemoteAddr())
		if l.perIP == nil {
			l.perIP = make(map[string]*ipState)
			l.pruneAt = ipPruneAt
		}
		st = l.perIP[c.lim.ip]
		if st == nil {
			st = &ipState{}
			if o.MaxConnectRatePerIP > 0 {
				st.bucket = rate.NewLimiter(rate.Limit(o.MaxConnectRatePerIP), burst(o.MaxConnectRatePerIP, o.ConnectBurstPerIP))
			}
			l.perIP[c.lim.ip] = st
		}
		st.conns++ // before a sweep, which keeps entries with connections
		if len(l.perIP) >= l.pruneAt {
			l.pruneLocked()
		}
	}
	switch {
	case st != nil && st.bucket != nil && !st.bucket.Allow():
		c.lim.refuse, c.lim.refuseName = packets.ConnectionRateExceeded, refusedConnectRate
	case o.MaxConnections > 0 && l.total > o.MaxConnections:
		c.lim.refuse, c.lim.refuseName = packets.QuotaExceeded, refusedMaxConnections
	case st != nil && o.MaxConnectionsPerIP > 0 && st.conns > o.MaxConnectionsPerIP:
		c.lim.refuse, c.lim.refuseName = packets.QuotaExceeded, refusedMaxPerIP
	}
	if c.lim.refuse == 0 {
		return true
	}
	bound := l.refusingMax
	if bound == 0 {
		bound = refusingMax
	}
	if l.refusing >= bound {
		l.uncountLocked(c)
		return false
	}
	l.refusing++
	c.lim.refusing = true
	return true
}

// release uncounts a connection admitted by admit; it runs once the
// connection is torn down.
func (s *Server) release(c *client) {
	if !c.lim.counted {
		return
	}
	l := &s.limits
	l.mu.Lock()
	defer l.mu.Unlock()
	l.uncountLocked(c)
}

// uncountLocked takes c out of the counts.
func (l *connLimits) uncountLocked(c *client) {
	c.lim.counted = false
	l.total--
	if c.lim.refusing {
		c.lim.refusing = false
		l.refusing--
	}
	if st := l.perIP[c.lim.ip]; st != nil {
		st.conns--
		if st.conns <= 0 && st.bucket == nil {
			delete(l.perIP, c.lim.ip)
		}
	}
}

// pruneLocked forgets the IPs that have no connection open and whose rate
// bucket is full again (they are indistinguishable from new ones), and
// sets the next sweep at twice the entries left, so sweeping is amortised
// O(1) per connection.
func (l *connLimits) pruneLocked() {
	for ip, st := range l.perIP {
		if st.conns == 0 && (st.bucket == nil || st.bucket.Tokens() >= float64(st.bucket.Burst())) {
			delete(l.perIP, ip)
		}
	}
	l.pruneAt = max(ipPruneAt, 2*len(l.perIP))
}

// OpenConnections returns the number of network connections counted
// against MaxConnections (admitted and not yet closed).
func (s *Server) OpenConnections() int {
	s.limits.mu.Lock()
	defer s.limits.mu.Unlock()
	return s.limits.total
}

// refuseByLimit answers the CONNECT of a connection that admit found over
// a connection limit, and reports false (the connection ends). 3.1.1 has
// no return code for quota or rate, so it gets 0x03 Server unavailable.
func (c *client) refuseByLimit() bool {
	rc := c.lim.refuse
	c.srv.stats.ConnectsRefused.Add(1)
	c.srv.stats.Refused.Inc(c.lim.refuseName)
	c.log.Debug("CONNECT refused by limit", "limit", c.lim.refuseName, "reason", rc)
	if c.version != packets.V5 {
		rc = packets.ServerUnavailable
	}
	ack := &packets.Connack{ReasonCode: rc}
	if c.version == packets.V5 && c.problemInfo {
		ack.Properties.ReasonString = "limit " + c.lim.refuseName + " reached"
	}
	c.fitConnack(ack)
	_ = c.send(ack)
	return false
}

// publishOverRate charges one PUBLISH to the connection's token bucket and
// reports whether it is over MaxPublishRate.
func (c *client) publishOverRate() bool {
	o := &c.srv.opts
	if o.MaxPublishRate <= 0 {
		return false
	}
	if c.lim.pub == nil {
		c.lim.pub = rate.NewLimiter(rate.Limit(o.MaxPublishRate), burst(o.MaxPublishRate, o.PublishBurst))
	}
	return !c.lim.pub.Allow()
}

// refusePublishRate handles a PUBLISH over MaxPublishRate; it is not
// routed, and counted in PublishRateLimited. 5.0 QoS 1/2: PUBACK/PUBREC
// 0x97 Quota exceeded, so the client knows and may retry later; 0x96
// Message rate too high would say it better but is valid only in
// DISCONNECT (5.0 §3.4.2.1, §3.5.2.1), and disconnecting would cost a
// reconnect and the client's QoS 0 traffic too. QoS 0: dropped. 3.1.1
// QoS 1/2: an acknowledgement cannot say "refused", and acknowledging
// would lose the message silently, so the connection is closed instead;
// the client sends the unacknowledged PUBLISH again after reconnecting
// [MQTT-4.4.0-1], and the connect rate bounds how often.
func (c *client) refusePublishRate(p *packets.Publish) error {
	c.srv.stats.PublishRateLimited.Add(1)
	switch {
	case p.QoS == 0:
		return nil
	case c.version == packets.V5:
		return c.ackPublish(p, packets.QuotaExceeded)
	}
	c.log.Debug("publish rate exceeded: closing 3.1.1 connection", "rate", c.srv.opts.MaxPublishRate)
	return packets.MessageRateTooHigh
}

// errTopicLimit says a topic name or filter is beyond MaxTopicLength or
// MaxTopicLevels.
var errTopicLimit = errors.New("topic beyond the server's length or level limit")

// topicOverLimit checks a topic name or filter against MaxTopicLength
// (bytes) and MaxTopicLevels. Such a topic is well-formed but not accepted
// by this server, which is what 5.0's 0x90 Topic Name invalid (PUBLISH)
// and 0x8F Topic Filter invalid (SUBSCRIBE) say. A shared subscription's
// levels are counted in the filter after $share/{group}/.
func (s *Server) topicOverLimit(topic string) error {
	o := &s.opts
	if o.MaxTopicLength > 0 && len(topic) > o.MaxTopicLength {
		return fmt.Errorf("%w: %d bytes, at most %d", errTopicLimit, len(topic), o.MaxTopicLength)
	}
	if o.MaxTopicLevels > 0 {
		if _, f, shared, err := packets.ParseShared(topic); shared && err == nil {
			topic = f
		}
		if n := strings.Count(topic, "/") + 1; n > o.MaxTopicLevels {
			return fmt.Errorf("%w: %d levels, at most %d", errTopicLimit, n, o.MaxTopicLevels)
		}
	}
	return nil
}

// subQuota tracks, for one SUBSCRIBE, how many subscriptions the session
// has, so new filters beyond MaxSubscriptionsPerClient are refused.
type subQuota struct {
	limit int
	have  map[string]bool
	n     int
}

// newSubQuota reads the session's subscriptions when a limit is set.
func (c *client) newSubQuota() *subQuota {
	q := &subQuota{limit: c.srv.opts.MaxSubscriptionsPerClient}
	if q.limit > 0 {
		subs := c.sess.Subscriptions()
		q.have = make(map[string]bool, len(subs))
		for _, s := range subs {
			q.have[s.Filter] = true
		}
		q.n = len(subs)
	}
	return q
}

// allow reports whether filter may be subscribed: it replaces an existing
// subscription, or there is room for one more.
func (q *subQuota) allow(filter string) bool {
	return q.limit <= 0 || q.have[filter] || q.n < q.limit
}

// added records a successful subscription to filter.
func (q *subQuota) added(filter string) {
	if q.limit > 0 && !q.have[filter] {
		q.have[filter] = true
		q.n++
	}
}

// subscribeLimit checks a SUBSCRIBE filter against the topic limits and
// MaxSubscriptionsPerClient; it returns the SUBACK code refusing it, or 0.
// 5.0: 0x8F Topic Filter invalid, 0x97 Quota exceeded; 3.1.1: 0x80.
func (c *client) subscribeLimit(q *subQuota, filter string) packets.ReasonCode {
	rc := packets.ReasonCode(0)
	if err := c.srv.topicOverLimit(filter); err != nil {
		rc = packets.TopicFilterInvalid
		c.log.Debug("SUBSCRIBE refused", "err", err)
	} else if !q.allow(filter) {
		rc = packets.QuotaExceeded
		c.log.Debug("SUBSCRIBE refused: subscription limit", "limit", q.limit)
	}
	if rc == 0 {
		return 0
	}
	c.srv.stats.SubscriptionsRefused.Add(1)
	if c.version != packets.V5 {
		rc = packets.UnspecifiedError
	}
	return rc
}

// countLimitDisconnect counts a connection closed by a limit the codec or
// the session enforces: a packet over MaxPacketSize (0x95) or more
// unacknowledged QoS 2 PUBLISH packets than Receive Maximum (0x93).
func (s *Server) countLimitDisconnect(rc packets.ReasonCode) {
	switch rc {
	case packets.PacketTooLarge:
		s.stats.PacketsTooLarge.Add(1)
	case packets.ReceiveMaximumExceeded:
		s.stats.ReceiveMaxExceeded.Add(1)
	}
}

// refuseAtOnce closes a connection admit would not keep: over a limit
// while refusingMax others wait for their CONNACK. It is counted under
// the limit's name like a refusal in CONNACK.
func (s *Server) refuseAtOnce(c *client) {
	s.stats.ConnectsRefused.Add(1)
	s.stats.Refused.Inc(c.lim.refuseName)
	c.log.Debug("connection over a limit closed at once", "limit", c.lim.refuseName)
	_ = c.conn.Close()
}
