package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
)

// TestCrashDurableDelivery is the crash test of the durable log: a real
// beacon process on badger is killed with SIGKILL at random moments while
// publishers send QoS 1 and QoS 2 messages to durable subscribers, and is
// restarted each time on the same data dir. Afterwards every message whose
// PUBACK (QoS 1) or PUBCOMP (QoS 2) a publisher received must have reached
// every durable subscriber: at least once for QoS 1, exactly once for QoS 2.
// No QoS 2 message may ever arrive twice, acknowledged or not.
func TestCrashDurableDelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: skipped in -short mode (it kills and restarts a broker 12 times)")
	}
	const kills = 12
	dataDir := filepath.Join(t.TempDir(), "data")
	port := freePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := []string{"serve", "--storage", "badger", "--data", dataDir,
		"--mqtt", addr, "--ws", "", "--http", ""}

	proc := startBeacon(t, args...)

	// Durable subscribers: two 5.0 sessions with a long expiry and one
	// 3.1.1 session with clean session 0, all on crash/# at QoS 2.
	subs := []*crashSub{
		{id: "crash-sub-a", version: packets.V5},
		{id: "crash-sub-b", version: packets.V5},
		{id: "crash-sub-c", version: packets.V311},
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, s := range subs {
		s.got = map[string]int{}
		s.inbound = map[uint16]string{}
		s.subscribed = make(chan struct{})
		wg.Add(1)
		go func() { defer wg.Done(); s.run(ctx, addr) }()
	}
	for _, s := range subs {
		select {
		case <-s.subscribed:
		case <-time.After(10 * time.Second):
			t.Fatalf("subscriber %s did not subscribe within 10s", s.id)
		}
	}

	// Publishers: two at QoS 1 and two at QoS 2, each sending numbered
	// messages and reconnecting after every crash.
	pubCtx, stopPub := context.WithCancel(ctx)
	pubs := []*crashPub{
		{id: "crash-pub-1a", qos: 1}, {id: "crash-pub-1b", qos: 1},
		{id: "crash-pub-2a", qos: 2}, {id: "crash-pub-2b", qos: 2},
	}
	var pwg sync.WaitGroup
	for _, p := range pubs {
		p.acked = map[string]bool{}
		pwg.Add(1)
		go func() { defer pwg.Done(); p.run(pubCtx, addr) }()
	}

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for i := 0; i < kills; i++ {
		// A random amount of load between kills: the kill lands at a random
		// point of the publish/deliver/acknowledge flows.
		time.Sleep(time.Duration(200+rng.IntN(700)) * time.Millisecond)
		if err := proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		proc.wait(t)
		proc = startBeacon(t, args...)
	}
	time.Sleep(500 * time.Millisecond) // a last stretch of load after the final restart
	stopPub()
	pwg.Wait()

	acked := map[string]byte{} // payload -> qos
	published := 0
	for _, p := range pubs {
		p.mu.Lock()
		published += p.sent
		for k := range p.acked {
			acked[k] = p.qos
		}
		p.mu.Unlock()
	}
	if len(acked) == 0 {
		t.Fatal("no message was acknowledged: the load never ran")
	}

	// Every acknowledged message must arrive at every subscriber.
	eventually(t, 60*time.Second, func() error {
		for _, s := range subs {
			s.mu.Lock()
			var missing []string
			for k := range acked {
				if s.got[k] == 0 {
					missing = append(missing, k)
				}
			}
			s.mu.Unlock()
			if len(missing) > 0 {
				slices.Sort(missing)
				return fmt.Errorf("subscriber %s still misses %d of %d acknowledged messages, e.g. %v", s.id, len(missing), len(acked), missing[:min(len(missing), 10)])
			}
		}
		return nil
	})

	for _, s := range subs {
		s.mu.Lock()
		delivered, dup1, dup2 := 0, 0, 0
		for k, n := range s.got {
			delivered += n
			if n > 1 {
				if strings.HasPrefix(k, "crash-pub-2") {
					dup2 += n - 1
				} else {
					dup1 += n - 1
				}
			}
		}
		t.Logf("subscriber %s (v%d): published %d, acknowledged %d, delivered %d (distinct %d), QoS 1 duplicates %d, QoS 2 duplicates %d, reconnects %d, session lost %d",
			s.id, s.version, published, len(acked), delivered, len(s.got), dup1, dup2, s.reconnects, s.sessionLost)
		if dup2 > 0 {
			t.Errorf("subscriber %s received %d duplicate QoS 2 messages", s.id, dup2)
		}
		if s.idReuse > 0 {
			t.Errorf("subscriber %s: the broker sent %d new messages under a QoS 2 packet identifier still unreleased", s.id, s.idReuse)
		}
		if s.sessionLost > 0 {
			t.Errorf("subscriber %s found its session gone (Session Present 0) %d times after a restart", s.id, s.sessionLost)
		}
		s.mu.Unlock()
	}
}

// freePort returns a loopback TCP port that was free a moment ago; the
// broker is restarted on it after every kill.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// crashConn is a minimal MQTT client connection on Beacon's codec.
type crashConn struct {
	c       net.Conn
	r       *packets.Reader
	version packets.Version
	wmu     sync.Mutex
	buf     []byte
}

func dialCrash(ctx context.Context, addr string, version packets.Version, connect *packets.Connect) (*crashConn, *packets.Connack, error) {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	cc := &crashConn{c: c, r: packets.NewReader(bufio.NewReader(c), 0), version: version}
	cc.r.SetVersion(version)
	connect.Version = version
	connect.ProtocolName = "MQTT"
	if err := cc.send(connect); err != nil {
		c.Close()
		return nil, nil, err
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, err := cc.r.Read()
	c.SetReadDeadline(time.Time{})
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	ack, ok := p.(*packets.Connack)
	if !ok || ack.ReasonCode != packets.Success {
		c.Close()
		return nil, nil, fmt.Errorf("connect refused: %T %+v", p, p)
	}
	return cc, ack, nil
}

func (cc *crashConn) send(p packets.Packet) error {
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	var err error
	cc.buf, err = packets.Encode(cc.buf[:0], p, cc.version)
	if err != nil {
		return err
	}
	cc.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err = cc.c.Write(cc.buf)
	return err
}

// crashSub is a durable subscriber that survives broker restarts. Its
// inbound QoS 2 state (packet identifiers received but not yet released)
// lives for the whole test, as a real client's session state would, so a
// PUBLISH resent with DUP after a restart is recognised and not counted
// twice [MQTT-4.3.3-2]; a resend under a new identifier would be a broker bug
// and shows up as a duplicate.
type crashSub struct {
	id         string
	version    packets.Version
	subscribed chan struct{}

	mu          sync.Mutex
	got         map[string]int
	inbound     map[uint16]string // unreleased QoS 2 identifier -> payload
	idReuse     int               // a new message under an unreleased identifier
	reconnects  int
	sessionLost int
}

func (s *crashSub) run(ctx context.Context, addr string) {
	first := true
	for ctx.Err() == nil {
		// 5.0: Clean Start on the first connection, with an expiry that
		// keeps the session; 3.1.1: clean session 0 from the start, since
		// clean session 1 would end the session at the first disconnect.
		connect := &packets.Connect{ClientID: s.id, CleanStart: first && s.version == packets.V5, KeepAlive: 30}
		if s.version == packets.V5 {
			connect.Properties.SessionExpiry = 3600
		}
		cc, ack, err := dialCrash(ctx, addr, s.version, connect)
		if err != nil {
			time.Sleep(50 * time.Millisecond) // broker restarting: retry interval
			continue
		}
		if first {
			sub := &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: "crash/#", QoS: 2}}}
			if err := cc.send(sub); err == nil {
				s.readLoop(ctx, cc, true)
			}
			first = false
			continue
		}
		s.mu.Lock()
		s.reconnects++
		if !ack.SessionPresent {
			s.sessionLost++
		}
		s.mu.Unlock()
		s.readLoop(ctx, cc, false)
	}
}

func (s *crashSub) readLoop(ctx context.Context, cc *crashConn, awaitSuback bool) {
	defer cc.c.Close()
	stop := context.AfterFunc(ctx, func() { cc.c.Close() })
	defer stop()
	for {
		p, err := cc.r.Read()
		if err != nil {
			return
		}
		switch p := p.(type) {
		case *packets.Suback:
			if awaitSuback {
				close(s.subscribed)
				awaitSuback = false
			}
		case *packets.Publish:
			key := string(p.Payload)
			s.mu.Lock()
			switch p.QoS {
			case 2:
				prev, held := s.inbound[p.PacketID]
				switch {
				case !held:
					s.inbound[p.PacketID] = key
					s.got[key]++
				case prev != key:
					// The broker reused an identifier the client still
					// holds [MQTT-2.3.1-4]; a real client would drop this
					// message as a duplicate, and so does this one.
					s.idReuse++
				}
			default:
				s.got[key]++
			}
			s.mu.Unlock()
			switch p.QoS {
			case 1:
				cc.send(&packets.Puback{PacketID: p.PacketID})
			case 2:
				cc.send(&packets.Pubrec{PacketID: p.PacketID})
			}
		case *packets.Pubrel:
			s.mu.Lock()
			delete(s.inbound, p.PacketID)
			s.mu.Unlock()
			cc.send(&packets.Pubcomp{PacketID: p.PacketID})
		}
	}
}

// crashPub publishes numbered messages one at a time and records those
// whose final acknowledgement arrived. After a lost connection it starts a
// clean session and goes on with new numbers: an unacknowledged message is
// not resent, so it may or may not arrive, but never more than once for QoS 2.
type crashPub struct {
	id  string
	qos byte

	mu    sync.Mutex
	sent  int
	acked map[string]bool
}

func (p *crashPub) run(ctx context.Context, addr string) {
	var n atomic.Int64
	for ctx.Err() == nil {
		cc, _, err := dialCrash(ctx, addr, packets.V5, &packets.Connect{ClientID: p.id, CleanStart: true, KeepAlive: 30})
		if err != nil {
			time.Sleep(50 * time.Millisecond) // broker restarting: retry interval
			continue
		}
		p.publishLoop(ctx, cc, &n)
		cc.c.Close()
	}
}

func (p *crashPub) publishLoop(ctx context.Context, cc *crashConn, n *atomic.Int64) {
	for ctx.Err() == nil {
		i := n.Add(1)
		payload := fmt.Sprintf("%s-%d", p.id, i)
		pid := uint16(i%65535) + 1
		p.mu.Lock()
		p.sent++
		p.mu.Unlock()
		if err := cc.send(&packets.Publish{QoS: p.qos, Topic: "crash/" + p.id, PacketID: pid, Payload: []byte(payload)}); err != nil {
			return
		}
		cc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for done := false; !done; {
			pk, err := cc.r.Read()
			if err != nil {
				return
			}
			switch a := pk.(type) {
			case *packets.Puback:
				if a.ReasonCode.IsError() {
					return
				}
				done = true
			case *packets.Pubrec:
				if a.ReasonCode.IsError() {
					return
				}
				if err := cc.send(&packets.Pubrel{PacketID: pid}); err != nil {
					return
				}
			case *packets.Pubcomp:
				done = true
			}
		}
		p.mu.Lock()
		p.acked[payload] = true
		p.mu.Unlock()
	}
}
