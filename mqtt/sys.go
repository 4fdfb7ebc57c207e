package mqtt

import (
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// $SYS topics: the broker reports its state under $SYS/broker/… with the
// names and payload formats Mosquitto uses (mosquitto(8), "Broker Status"),
// so dashboards and scripts written for Mosquitto work unchanged. Payloads
// are decimal numbers as text; uptime is "N seconds"; load averages have two
// decimals. Mosquitto publishes them retained every sys_interval seconds.
// Topics starting with $ are not matched by a leading wildcard
// [MQTT-4.7.2-1], and clients may not publish under $SYS/.

// sysPrefix is the reserved prefix of broker status topics.
const sysPrefix = "$SYS/broker/"

// sysMessage is one $SYS topic and its payload.
type sysMessage struct {
	Topic   string
	Payload []byte
}

// sysStats holds the counters behind $SYS. The broker increments the atomic
// fields where the events happen; the gauges it does not keep itself
// (sessions, subscriptions, retained and stored messages) are read through
// the callbacks, set once before the broker starts (a nil callback omits the
// topic, except clientsTotal which falls back to clientsConnected).
type sysStats struct {
	clientsConnected atomic.Int64  // connected clients now; use clientConnected/clientDisconnected
	clientsMaximum   atomic.Int64  // high-water mark of clientsConnected
	clientsExpired   atomic.Uint64 // disconnected sessions removed by expiry
	connects         atomic.Uint64 // CONNECT packets received (load/connections)
	sockets          atomic.Uint64 // network connections accepted (load/sockets)

	messagesReceived atomic.Uint64 // MQTT control packets of any type received
	messagesSent     atomic.Uint64 // MQTT control packets of any type sent
	publishReceived  atomic.Uint64 // PUBLISH packets received
	publishSent      atomic.Uint64 // PUBLISH packets sent
	publishDropped   atomic.Uint64 // PUBLISH messages dropped (queue limits, QoS 0 overflow)
	bytesReceived    atomic.Uint64 // bytes read from clients
	bytesSent        atomic.Uint64 // bytes written to clients

	// Callbacks for gauges owned by other parts of the broker.
	clientsTotal       func() int64 // connected clients plus disconnected persistent sessions
	inflight           func() int64 // QoS>0 messages awaiting acknowledgement
	subscriptionsCount func() int64 // active subscriptions
	retainedCount      func() int64 // retained messages
	storeMessagesCount func() int64 // messages held in the store (retained + queued)
	storeMessagesBytes func() int64 // payload bytes held in the store

	mu   sync.Mutex // guards load
	load sysLoad
}

// clientConnected counts a client that completed CONNECT and raises the
// maximum if needed.
func (s *sysStats) clientConnected() {
	n := s.clientsConnected.Add(1)
	for {
		hi := s.clientsMaximum.Load()
		if n <= hi || s.clientsMaximum.CompareAndSwap(hi, n) {
			return
		}
	}
}

// clientDisconnected counts a connected client that went away.
func (s *sysStats) clientDisconnected() { s.clientsConnected.Add(-1) }

// sysLoad keeps the moving averages of the load/… topics: one exponentially
// weighted average per counter and window, of the rate per minute.
type sysLoad struct {
	last time.Time
	prev [sysLoadCounters]uint64
	avg  [sysLoadCounters][len(sysLoadWindows)]float64
}

// Counters with a load average, in the order of sysLoadNames.
const sysLoadCounters = 9

var sysLoadNames = [sysLoadCounters]string{
	"connections",
	"sockets",
	"messages/received",
	"messages/sent",
	"publish/received",
	"publish/sent",
	"publish/dropped",
	"bytes/received",
	"bytes/sent",
}

var sysLoadWindows = [...]struct {
	name   string
	window time.Duration
}{{"1min", time.Minute}, {"5min", 5 * time.Minute}, {"15min", 15 * time.Minute}}

func (s *sysStats) loadCounters() [sysLoadCounters]uint64 {
	return [sysLoadCounters]uint64{
		s.connects.Load(),
		s.sockets.Load(),
		s.messagesReceived.Load(),
		s.messagesSent.Load(),
		s.publishReceived.Load(),
		s.publishSent.Load(),
		s.publishDropped.Load(),
		s.bytesReceived.Load(),
		s.bytesSent.Load(),
	}
}

// updateLoad folds the counts since the previous call into the averages:
// avg = avg·e + ratePerMinute·(1−e) with e = exp(−elapsed/window). The
// first call only takes a sample, so the averages start at zero.
func (s *sysStats) updateLoad(now time.Time) {
	cur := s.loadCounters()
	l := &s.load
	if !l.last.IsZero() {
		elapsed := now.Sub(l.last)
		if elapsed <= 0 {
			return
		}
		for i := range cur {
			delta := float64(cur[i] - l.prev[i])
			perMinute := delta * float64(time.Minute) / float64(elapsed)
			for w, win := range sysLoadWindows {
				e := math.Exp(-float64(elapsed) / float64(win.window))
				l.avg[i][w] = l.avg[i][w]*e + perMinute*(1-e)
			}
		}
	}
	l.last = now
	l.prev = cur
}

// messages returns the current value of every $SYS topic. now and started
// give the uptime; version is the broker's version string. Each call also
// advances the load averages, so call it once per publishing interval.
func (s *sysStats) messages(now, started time.Time, version string) []sysMessage {
	s.mu.Lock()
	s.updateLoad(now)
	load := s.load.avg
	s.mu.Unlock()

	out := make([]sysMessage, 0, 24+sysLoadCounters*len(sysLoadWindows))
	str := func(topic, v string) { out = append(out, sysMessage{sysPrefix + topic, []byte(v)}) }
	num := func(topic string, v int64) { str(topic, strconv.FormatInt(v, 10)) }
	unum := func(topic string, v uint64) { str(topic, strconv.FormatUint(v, 10)) }

	uptime := int64(now.Sub(started) / time.Second)
	if uptime < 0 {
		uptime = 0
	}
	str("version", "beacon version "+version)
	str("uptime", strconv.FormatInt(uptime, 10)+" seconds")

	connected := max(s.clientsConnected.Load(), 0)
	total := connected
	if s.clientsTotal != nil {
		total = max(s.clientsTotal(), connected)
	}
	num("clients/connected", connected)
	num("clients/total", total)
	num("clients/maximum", s.clientsMaximum.Load())
	num("clients/disconnected", total-connected)
	unum("clients/expired", s.clientsExpired.Load())

	unum("messages/received", s.messagesReceived.Load())
	unum("messages/sent", s.messagesSent.Load())
	if s.inflight != nil {
		num("messages/inflight", s.inflight())
	}
	unum("publish/messages/received", s.publishReceived.Load())
	unum("publish/messages/sent", s.publishSent.Load())
	unum("publish/messages/dropped", s.publishDropped.Load())
	unum("bytes/received", s.bytesReceived.Load())
	unum("bytes/sent", s.bytesSent.Load())

	if s.subscriptionsCount != nil {
		num("subscriptions/count", s.subscriptionsCount())
	}
	if s.retainedCount != nil {
		num("retained messages/count", s.retainedCount())
	}
	if s.storeMessagesCount != nil {
		num("store/messages/count", s.storeMessagesCount())
	}
	if s.storeMessagesBytes != nil {
		num("store/messages/bytes", s.storeMessagesBytes())
	}

	for i, name := range sysLoadNames {
		for w, win := range sysLoadWindows {
			str("load/"+name+"/"+win.name, strconv.FormatFloat(load[i][w], 'f', 2, 64))
		}
	}
	return out
}

// sysChanges remembers the payload last published per $SYS topic, so the
// broker can publish only what changed, as Mosquitto does. Not safe for
// concurrent use: the one goroutine publishing $SYS owns it.
type sysChanges map[string]string

// filter returns the messages whose payload differs from the last call's
// (all of them on the first call) and records the new payloads.
func (c sysChanges) filter(msgs []sysMessage) []sysMessage {
	out := msgs[:0:0]
	for _, m := range msgs {
		if old, ok := c[m.Topic]; ok && old == string(m.Payload) {
			continue
		}
		c[m.Topic] = string(m.Payload)
		out = append(out, m)
	}
	return out
}
