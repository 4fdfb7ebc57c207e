package packets

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"
)

// These tests check the codec against real MQTT clients (mosquitto_pub and
// mosquitto_sub from the Debian mosquitto-clients package): the test plays
// a minimal broker on 127.0.0.1, decodes what the client sends with the
// Reader and answers with packets built by Encode. A wrong encoding makes
// the client fail; a wrong decoding fails the field checks.

// fakeBroker accepts one connection and hands it to serve, returning the
// error serve returned.
func fakeBroker(t *testing.T, serve func(r *Reader, c net.Conn) error) (port string, done <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		ch <- serve(NewReader(bufio.NewReader(c), 0), c)
	}()
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	return port, ch
}

func send(c net.Conn, p Packet, v Version) error {
	b, err := Encode(nil, p, v)
	if err != nil {
		return err
	}
	_, err = c.Write(b)
	return err
}

// expect returns an error describing v when cond is false.
func expect(cond bool, what string, v any) error {
	if !cond {
		return fmt.Errorf("unexpected %s: %#v", what, v)
	}
	return nil
}

func runClient(t *testing.T, name string, args ...string) ([]byte, error) {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (Debian package mosquitto-clients): %v", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, bin, args...).CombinedOutput()
}

func TestInteropMosquittoPub(t *testing.T) {
	for _, c := range []struct {
		flag string
		v    Version
	}{{"mqttv31", V31}, {"mqttv311", V311}, {"mqttv5", V5}} {
		t.Run(c.flag, func(t *testing.T) {
			port, done := fakeBroker(t, func(r *Reader, conn net.Conn) error {
				p, err := r.Read()
				if err != nil {
					return err
				}
				cn, ok := p.(*Connect)
				if err := expect(ok && cn.Version == c.v && cn.ClientID == "interop-pub" && cn.Username == "user" &&
					string(cn.Password) == "secret" && cn.Will != nil && cn.Will.Topic == "will/t" &&
					string(cn.Will.Payload) == "gone" && cn.Will.QoS == 1 && cn.KeepAlive == 42, "CONNECT", p); err != nil {
					return err
				}
				if c.v == V5 {
					if err := expect(cn.Properties.SessionExpiry == 30 && cn.Properties.Has(PropSessionExpiry), "CONNECT properties", cn.Properties); err != nil {
						return err
					}
				}
				if err := send(conn, &Connack{}, c.v); err != nil {
					return err
				}
				if p, err = r.Read(); err != nil {
					return err
				}
				pub, ok := p.(*Publish)
				if err := expect(ok && pub.Topic == "sensors/\u00e9t\u00e9" && string(pub.Payload) == "hello" && pub.QoS == 1 && pub.PacketID != 0 && pub.Retain,
					"PUBLISH", p); err != nil {
					return err
				}
				if c.v == V5 {
					pr := pub.Properties
					if err := expect(pr.ContentType == "text/plain" && pr.MessageExpiry == 60 &&
						reflect.DeepEqual(pr.User, []UserProperty{{"k1", "v1"}, {"k1", "v2"}}), "PUBLISH properties", pr); err != nil {
						return err
					}
				}
				if err := send(conn, &Puback{PacketID: pub.PacketID}, c.v); err != nil {
					return err
				}
				if p, err = r.Read(); err != nil {
					return err
				}
				_, ok = p.(*Disconnect)
				return expect(ok, "DISCONNECT", p)
			})
			args := []string{"-h", "127.0.0.1", "-p", port, "-V", c.flag, "-i", "interop-pub", "-u", "user", "-P", "secret",
				"-k", "42", "-q", "1", "-r", "-t", "sensors/\u00e9t\u00e9", "-m", "hello",
				"--will-topic", "will/t", "--will-payload", "gone", "--will-qos", "1"}
			if c.v == V5 {
				args = append(args, "-x", "30", "-D", "publish", "content-type", "text/plain",
					"-D", "publish", "message-expiry-interval", "60",
					"-D", "publish", "user-property", "k1", "v1", "-D", "publish", "user-property", "k1", "v2")
			}
			out, err := runClient(t, "mosquitto_pub", args...)
			if berr := <-done; berr != nil {
				t.Fatalf("broker side: %v (client output %q)", berr, out)
			}
			if err != nil {
				t.Fatalf("mosquitto_pub: %v: %s", err, out)
			}
		})
	}
}

func TestInteropMosquittoSub(t *testing.T) {
	for _, c := range []struct {
		flag string
		v    Version
	}{{"mqttv311", V311}, {"mqttv5", V5}} {
		t.Run(c.flag, func(t *testing.T) {
			port, done := fakeBroker(t, func(r *Reader, conn net.Conn) error {
				p, err := r.Read()
				if err != nil {
					return err
				}
				if _, ok := p.(*Connect); !ok {
					return expect(false, "CONNECT", p)
				}
				ack := &Connack{}
				if c.v == V5 {
					ack.Properties = Properties{TopicAliasMaximum: 5, ReceiveMaximum: 10, AssignedClientID: "x", ReasonString: "welcome"}
				}
				if err := send(conn, ack, c.v); err != nil {
					return err
				}
				if p, err = r.Read(); err != nil {
					return err
				}
				sub, ok := p.(*Subscribe)
				if err := expect(ok && len(sub.Subscriptions) == 2 && sub.Subscriptions[0].Filter == "a/+/c" &&
					sub.Subscriptions[1].Filter == "d/#" && sub.Subscriptions[0].QoS == 1, "SUBSCRIBE", p); err != nil {
					return err
				}
				if err := send(conn, &Suback{PacketID: sub.PacketID, ReasonCodes: []ReasonCode{GrantedQoS1, GrantedQoS1}}, c.v); err != nil {
					return err
				}
				pub := &Publish{QoS: 1, PacketID: 7, Topic: "a/b/c", Payload: []byte("payload-1")}
				if c.v == V5 {
					pub.Properties = Properties{User: []UserProperty{{"x", "y"}}, ContentType: "text/plain"}
				}
				if err := send(conn, pub, c.v); err != nil {
					return err
				}
				if p, err = r.Read(); err != nil {
					return err
				}
				ack2, ok := p.(*Puback)
				if err := expect(ok && ack2.PacketID == 7, "PUBACK", p); err != nil {
					return err
				}
				if p, err = r.Read(); err != nil {
					return err
				}
				_, ok = p.(*Disconnect)
				return expect(ok, "DISCONNECT", p)
			})
			out, err := runClient(t, "mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-V", c.flag, "-q", "1", "-C", "1",
				"-t", "a/+/c", "-t", "d/#", "-F", "%t %p")
			if berr := <-done; berr != nil {
				t.Fatalf("broker side: %v (client output %q)", berr, out)
			}
			if err != nil {
				t.Fatalf("mosquitto_sub: %v: %s", err, out)
			}
			if strings.TrimSpace(string(out)) != "a/b/c payload-1" {
				t.Errorf("mosquitto_sub printed %q", out)
			}
		})
	}
}
