package mqtt

import (
	"context"
	"net"
	"testing"

	"github.com/eclipse/paho.golang/paho"
)

// paho.golang, a client nobody here wrote, talks 5.0 to the broker: QoS 0,
// 1 and 2 round trips with user properties.
func TestPahoGolangRoundTrip(t *testing.T) {
	s := startServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	got := make(chan *paho.Publish, 10)
	newClient := func(id string) *paho.Client {
		conn, err := net.Dial("tcp", s.MQTTAddr())
		if err != nil {
			t.Fatal(err)
		}
		c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { got <- pr.Packet; return true, nil },
		}})
		ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30})
		if err != nil || ca.ReasonCode != 0 {
			t.Fatalf("connect %s: %v %+v", id, err, ca)
		}
		t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
		return c
	}
	sub := newClient("paho-sub")
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "paho/#", QoS: 2}}}); err != nil {
		t.Fatal(err)
	}
	pub := newClient("paho-pub")
	for qos := byte(0); qos <= 2; qos++ {
		props := &paho.PublishProperties{User: paho.UserProperties{{Key: "q", Value: string('0' + qos)}}}
		if _, err := pub.Publish(ctx, &paho.Publish{Topic: "paho/t", QoS: qos, Payload: []byte{qos}, Properties: props}); err != nil {
			t.Fatalf("publish QoS %d: %v", qos, err)
		}
		select {
		case p := <-got:
			if p.QoS != qos || len(p.Payload) != 1 || p.Payload[0] != qos || p.Properties.User.Get("q") != string('0'+qos) {
				t.Fatalf("QoS %d: received %+v", qos, p)
			}
		case <-ctx.Done():
			t.Fatalf("QoS %d: nothing received", qos)
		}
	}
}
