package bridge

// The two protocol clients behind the mqtt sink and source: paho.golang
// for MQTT 5.0, and a small MQTT 3.1.1 client on Beacon's own codec
// (paho.golang speaks 5.0 only). Both offer remoteConn; everything above
// them (mqtt.go, mqtt_in.go) is version-neutral and works on
// packets.Publish.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.golang/paho"

	"github.com/beaconmq/beacon/packets"
)

// remoteConn is one established connection to the remote broker.
type remoteConn interface {
	// publish sends p (p.PacketID is assigned here) and waits for the
	// acknowledgement its QoS calls for. code is the reason code of the
	// PUBACK (QoS 1) or PUBREC (QoS 2), 0 for 3.1.1 which has none.
	publish(ctx context.Context, p *packets.Publish) (code packets.ReasonCode, reason string, err error)
	// subscribe subscribes and fails if any filter is refused.
	subscribe(ctx context.Context, subs []packets.Subscription) error
	// done is closed once the connection has ended and the client's
	// goroutines have returned.
	done() <-chan struct{}
	// disconnect sends DISCONNECT (normal) and closes the connection.
	disconnect()
}

// connectOpts is what both clients need to connect.
type connectOpts struct {
	version       packets.Version
	clientID      string
	keepAlive     uint16
	cleanStart    bool
	sessionExpiry uint32 // 5.0 only
	receiveMax    uint16 // 5.0 only; 0 = not sent
	username      string
	password      []byte
	ackTimeout    time.Duration
	// onPublish receives the remote's PUBLISH packets one at a time, in
	// order, on one goroutine; ack acknowledges p to the remote (a no-op
	// for QoS 0). nil: the connection is not expected to receive any.
	onPublish func(p *packets.Publish, ack func())
	// onError learns why the connection ended.
	onError func(error)
}

// connackInfo is what the CONNACK announced about the remote.
type connackInfo struct {
	maxPacket uint32 // 0: no limit announced
	retain    bool   // Retain Available
	maxQoS    byte
}

// errConnack is a CONNACK refusal.
func errConnack(code packets.ReasonCode, reason string) error {
	if reason != "" {
		reason = ": " + reason
	}
	return fmt.Errorf("CONNACK 0x%02x %s%s", byte(code), code.String(), reason)
}

// --- MQTT 5.0 through paho.golang ---

type pahoConn struct{ cli *paho.Client }

// connectPaho runs CONNECT/CONNACK over conn with paho.golang. Received
// messages are acknowledged manually (paho's ack tracker sends the
// acknowledgements in the order the messages arrived [MQTT-4.6.0-2]).
func connectPaho(ctx context.Context, conn net.Conn, o connectOpts) (remoteConn, connackInfo, error) {
	info := connackInfo{retain: true, maxQoS: 2}
	cc := paho.ClientConfig{
		ClientID:                   o.clientID,
		Conn:                       conn,
		PacketTimeout:              o.ackTimeout,
		EnableManualAcknowledgment: o.onPublish != nil,
		OnClientError:              o.onError,
		OnServerDisconnect: func(d *paho.Disconnect) {
			reason := ""
			if d.Properties != nil && d.Properties.ReasonString != "" {
				reason = ": " + d.Properties.ReasonString
			}
			o.onError(fmt.Errorf("remote sent DISCONNECT 0x%02x %s%s", d.ReasonCode, packets.ReasonCode(d.ReasonCode).String(), reason))
		},
	}
	if o.onPublish != nil {
		cc.OnPublishReceived = []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				o.onPublish(fromPaho(pr.Packet), func() { _ = pr.Client.Ack(pr.Packet) })
				return true, nil
			},
		}
	}
	cli := paho.NewClient(cc)
	cp := &paho.Connect{
		ClientID:   o.clientID,
		KeepAlive:  o.keepAlive,
		CleanStart: o.cleanStart,
		Properties: &paho.ConnectProperties{},
	}
	if o.sessionExpiry > 0 {
		se := o.sessionExpiry
		cp.Properties.SessionExpiryInterval = &se
	}
	if o.receiveMax > 0 {
		rm := o.receiveMax
		cp.Properties.ReceiveMaximum = &rm
	}
	if o.username != "" {
		cp.UsernameFlag, cp.Username = true, o.username
	}
	if len(o.password) > 0 {
		cp.PasswordFlag, cp.Password = true, o.password
	}
	ca, err := cli.Connect(ctx, cp)
	if err != nil {
		_ = conn.Close()
		if ca != nil {
			reason := ""
			if ca.Properties != nil {
				reason = ca.Properties.ReasonString
			}
			return nil, info, errConnack(packets.ReasonCode(ca.ReasonCode), reason)
		}
		return nil, info, err
	}
	if p := ca.Properties; p != nil {
		if p.MaximumPacketSize != nil {
			info.maxPacket = *p.MaximumPacketSize
		}
		if p.MaximumQoS != nil {
			info.maxQoS = *p.MaximumQoS
		}
		info.retain = p.RetainAvailable
	}
	return &pahoConn{cli: cli}, info, nil
}

func (c *pahoConn) publish(ctx context.Context, p *packets.Publish) (packets.ReasonCode, string, error) {
	resp, err := c.cli.Publish(ctx, toPaho(p))
	if resp != nil && resp.ReasonCode >= 0x80 {
		reason := ""
		if resp.Properties != nil {
			reason = resp.Properties.ReasonString
		}
		return packets.ReasonCode(resp.ReasonCode), reason, nil
	}
	if err != nil && errors.Is(err, paho.ErrInvalidArguments) {
		return 0, "", &refusedError{err}
	}
	return 0, "", err
}

func (c *pahoConn) subscribe(ctx context.Context, subs []packets.Subscription) error {
	sub := &paho.Subscribe{}
	for _, s := range subs {
		sub.Subscriptions = append(sub.Subscriptions, paho.SubscribeOptions{
			Topic: s.Filter, QoS: s.QoS, NoLocal: s.NoLocal,
			RetainAsPublished: s.RetainAsPublished, RetainHandling: s.RetainHandling,
		})
	}
	sa, err := c.cli.Subscribe(ctx, sub)
	if err != nil && sa != nil {
		return fmt.Errorf("SUBACK %x: %w", sa.Reasons, err)
	}
	return err
}

func (c *pahoConn) done() <-chan struct{} { return c.cli.Done() }

func (c *pahoConn) disconnect() { _ = c.cli.Disconnect(&paho.Disconnect{ReasonCode: 0}) }

// refusedError: the client itself refuses to send a message to this
// remote (it would break a limit the remote announced); retrying cannot
// help.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// toPaho converts a PUBLISH for paho.golang.
func toPaho(p *packets.Publish) *paho.Publish {
	mp := &p.Properties
	pp := &paho.PublishProperties{
		ContentType:     mp.ContentType,
		ResponseTopic:   mp.ResponseTopic,
		CorrelationData: mp.CorrelationData,
	}
	if mp.Has(packets.PropPayloadFormat) {
		v := mp.PayloadFormat
		pp.PayloadFormat = &v
	}
	if mp.Has(packets.PropMessageExpiry) {
		v := mp.MessageExpiry
		pp.MessageExpiry = &v
	}
	for _, u := range mp.User {
		pp.User = append(pp.User, paho.UserProperty{Key: u.Key, Value: u.Value})
	}
	return &paho.Publish{QoS: p.QoS, Retain: p.Retain, Topic: p.Topic, Payload: p.Payload, Properties: pp}
}

// fromPaho converts a received paho.golang PUBLISH.
func fromPaho(p *paho.Publish) *packets.Publish {
	out := &packets.Publish{QoS: p.QoS, Retain: p.Retain, Topic: p.Topic, Payload: p.Payload, PacketID: p.PacketID}
	if pp := p.Properties; pp != nil {
		mp := &out.Properties
		mp.ContentType = pp.ContentType
		mp.ResponseTopic = pp.ResponseTopic
		mp.CorrelationData = pp.CorrelationData
		if pp.PayloadFormat != nil {
			mp.PayloadFormat = *pp.PayloadFormat
			mp.Mark(packets.PropPayloadFormat)
		}
		if pp.MessageExpiry != nil {
			mp.MessageExpiry = *pp.MessageExpiry
			mp.Mark(packets.PropMessageExpiry)
		}
		for _, u := range pp.User {
			mp.User = append(mp.User, packets.UserProperty{Key: u.Key, Value: u.Value})
		}
	}
	return out
}

// --- MQTT 3.1.1 on Beacon's codec ---

// client311 is a minimal MQTT 3.1.1 client: QoS 0-2 publish and receive,
// subscribe, keep alive. One goroutine reads, one hands received messages
// to onPublish in order, one pings; writes take wmu so packets do not
// interleave. It keeps no session state across connections: a
// publication in flight when the connection ends fails (the sink's caller
// retries), and received messages not acknowledged are sent again by the
// remote after a reconnect with Clean Session 0 [MQTT-4.4.0-1].
type client311 struct {
	conn net.Conn
	o    connectOpts

	wmu sync.Mutex // one packet write at a time

	mu     sync.Mutex
	nextID uint16
	wait   map[uint16]chan packets.Packet // packet id → its PUBACK/PUBCOMP/SUBACK

	incoming chan *packets.Publish
	lastRecv atomic.Int64 // unix nanoseconds of the last packet read
	quit     chan struct{}
	closing  sync.Once
	wg       sync.WaitGroup
	doneCh   chan struct{}
}

func connect311(ctx context.Context, conn net.Conn, o connectOpts) (remoteConn, connackInfo, error) {
	info := connackInfo{retain: true, maxQoS: 2}
	c := &client311{
		conn: conn, o: o,
		wait:     map[uint16]chan packets.Packet{},
		incoming: make(chan *packets.Publish, inReceiveMaximum),
		quit:     make(chan struct{}),
		doneCh:   make(chan struct{}),
	}
	cp := &packets.Connect{
		CleanStart: o.cleanStart, KeepAlive: o.keepAlive, ClientID: o.clientID,
		UsernameFlag: o.username != "", Username: o.username,
		PasswordFlag: len(o.password) > 0, Password: o.password,
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// Cancelling ctx (the bridge closing) ends a CONNECT in progress.
	defer context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })()
	rd := packets.NewReader(bufio.NewReader(conn), 0)
	rd.SetVersion(packets.V311)
	ca, err := func() (*packets.Connack, error) {
		if err := c.write(cp); err != nil {
			return nil, err
		}
		p, err := rd.Read()
		if err != nil {
			return nil, fmt.Errorf("reading CONNACK: %w", err)
		}
		ca, ok := p.(*packets.Connack)
		if !ok {
			return nil, fmt.Errorf("remote answered CONNECT with %T", p)
		}
		return ca, nil
	}()
	if err == nil && ca.ReasonCode != packets.Success {
		err = errConnack(ca.ReasonCode, "")
	}
	if err != nil {
		_ = conn.Close()
		return nil, info, err
	}
	_ = conn.SetDeadline(time.Time{})
	c.lastRecv.Store(time.Now().UnixNano())
	c.wg.Add(3)
	go c.readLoop(rd)
	go c.dispatch()
	go c.ping()
	go func() { c.wg.Wait(); close(c.doneCh) }()
	return c, info, nil
}

// write encodes p for 3.1.1 and writes it whole.
func (c *client311) write(p packets.Packet) error {
	b, err := packets.Encode(nil, p, packets.V311)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err = c.conn.Write(b)
	return err
}

// fail ends the connection once, telling onError why.
func (c *client311) fail(err error) {
	c.closing.Do(func() {
		close(c.quit)
		_ = c.conn.Close()
		if err != nil && c.o.onError != nil {
			c.o.onError(err)
		}
	})
}

func (c *client311) readLoop(rd *packets.Reader) {
	defer c.wg.Done()
	defer close(c.incoming)
	for {
		p, err := rd.Read()
		if err != nil {
			c.fail(fmt.Errorf("reading from the remote: %w", err))
			return
		}
		c.lastRecv.Store(time.Now().UnixNano())
		switch p := p.(type) {
		case *packets.Publish:
			select {
			case c.incoming <- p:
			case <-c.quit:
				return
			}
		case *packets.Puback:
			c.complete(p.PacketID, p)
		case *packets.Pubrec:
			// Our QoS 2 publication was received: release it.
			if err := c.write(&packets.Pubrel{PacketID: p.PacketID}); err != nil {
				c.fail(err)
				return
			}
		case *packets.Pubcomp:
			c.complete(p.PacketID, p)
		case *packets.Pubrel:
			// A QoS 2 message we acknowledged with PUBREC is released.
			if err := c.write(&packets.Pubcomp{PacketID: p.PacketID}); err != nil {
				c.fail(err)
				return
			}
		case *packets.Suback:
			c.complete(p.PacketID, p)
		case *packets.Pingresp:
		default:
			c.fail(fmt.Errorf("remote sent an unexpected %T", p))
			return
		}
	}
}

// dispatch hands received messages to onPublish one at a time, in order.
func (c *client311) dispatch() {
	defer c.wg.Done()
	for {
		var p *packets.Publish
		select {
		case <-c.quit:
			return // what was not acknowledged comes again after the reconnect
		case q, ok := <-c.incoming:
			if !ok {
				return
			}
			p = q
		}
		if c.o.onPublish == nil {
			continue
		}
		c.o.onPublish(p, func() {
			var err error
			switch p.QoS {
			case 1:
				err = c.write(&packets.Puback{PacketID: p.PacketID})
			case 2:
				err = c.write(&packets.Pubrec{PacketID: p.PacketID})
			}
			if err != nil {
				c.fail(err)
			}
		})
	}
}

// ping sends PINGREQ at three quarters of the keep alive, so the remote
// hears from the client within each keep alive period, and ends the
// connection when nothing (not even a PINGRESP) arrived for one and a half
// periods: a client should close a connection whose PINGRESP does not come
// (3.1.1 §3.1.2.10), and 1.5 periods is the limit the server applies the
// other way [MQTT-3.1.2-24].
func (c *client311) ping() {
	defer c.wg.Done()
	if c.o.keepAlive == 0 {
		<-c.quit
		return
	}
	ka := time.Duration(c.o.keepAlive) * time.Second
	t := time.NewTicker(ka * 3 / 4)
	defer t.Stop()
	for {
		select {
		case <-c.quit:
			return
		case <-t.C:
			if time.Since(time.Unix(0, c.lastRecv.Load())) > ka*3/2 {
				c.fail(errors.New("no answer from the remote within 1.5 keep alive intervals"))
				return
			}
			if err := c.write(&packets.Pingreq{}); err != nil {
				c.fail(err)
				return
			}
		}
	}
}

// register reserves a free packet identifier and the channel its answer
// goes to.
func (c *client311) register() (uint16, chan packets.Packet, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for range 65535 {
		c.nextID++
		if c.nextID == 0 {
			c.nextID = 1
		}
		if _, used := c.wait[c.nextID]; !used {
			ch := make(chan packets.Packet, 1)
			c.wait[c.nextID] = ch
			return c.nextID, ch, nil
		}
	}
	return 0, nil, errors.New("all 65535 packet identifiers in use")
}

func (c *client311) release(id uint16) {
	c.mu.Lock()
	delete(c.wait, id)
	c.mu.Unlock()
}

func (c *client311) complete(id uint16, p packets.Packet) {
	c.mu.Lock()
	ch := c.wait[id]
	delete(c.wait, id)
	c.mu.Unlock()
	if ch != nil {
		ch <- p
	}
}

// await waits for the answer to id.
func (c *client311) await(ctx context.Context, id uint16, ch chan packets.Packet) (packets.Packet, error) {
	t := time.NewTimer(c.o.ackTimeout)
	defer t.Stop()
	select {
	case p := <-ch:
		return p, nil
	case <-ctx.Done():
		c.release(id)
		return nil, ctx.Err()
	case <-t.C:
		c.release(id)
		return nil, fmt.Errorf("no acknowledgement within %v", c.o.ackTimeout)
	case <-c.quit:
		c.release(id)
		return nil, errors.New("connection lost before the acknowledgement")
	}
}

func (c *client311) publish(ctx context.Context, p *packets.Publish) (packets.ReasonCode, string, error) {
	if p.QoS == 0 {
		return 0, "", c.write(p)
	}
	id, ch, err := c.register()
	if err != nil {
		return 0, "", err
	}
	q := *p
	q.PacketID = id
	if err := c.write(&q); err != nil {
		c.release(id)
		c.fail(err)
		return 0, "", err
	}
	_, err = c.await(ctx, id, ch)
	return 0, "", err
}

func (c *client311) subscribe(ctx context.Context, subs []packets.Subscription) error {
	id, ch, err := c.register()
	if err != nil {
		return err
	}
	if err := c.write(&packets.Subscribe{PacketID: id, Subscriptions: subs}); err != nil {
		c.release(id)
		c.fail(err)
		return err
	}
	p, err := c.await(ctx, id, ch)
	if err != nil {
		return err
	}
	sa, ok := p.(*packets.Suback)
	if !ok {
		return fmt.Errorf("remote answered SUBSCRIBE with %T", p)
	}
	for i, code := range sa.ReasonCodes {
		if code >= 0x80 && i < len(subs) {
			return fmt.Errorf("remote refused the subscription to %q (SUBACK 0x%02x)", subs[i].Filter, byte(code))
		}
	}
	return nil
}

func (c *client311) done() <-chan struct{} { return c.doneCh }

func (c *client311) disconnect() {
	_ = c.write(&packets.Disconnect{})
	c.fail(nil)
}
