package interop

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// Paths of the Debian mosquitto-clients tools. stdbuf (coreutils) makes
// mosquitto_sub line-buffer its stdout: piped, it would hold the SUBACK
// line until exit and the test could not know when to publish.
const (
	mosquittoPubPath = "/usr/bin/mosquitto_pub"
	mosquittoSubPath = "/usr/bin/mosquitto_sub"
	stdbufPath       = "/usr/bin/stdbuf"
)

// TestInteropMosquittoClients runs the matrix with mosquitto_pub and
// mosquitto_sub (Debian mosquitto-clients), MQTT 3.1.1 and 5.0 over TCP.
func TestInteropMosquittoClients(t *testing.T) {
	runMatrix(t, clientSpec{
		name:        "mosquitto_pub/mosquitto_sub",
		versions:    []string{"3.1.1", "5"},
		transports:  []string{"tcp"},
		unsupported: "WebSocket: mosquitto_pub and mosquitto_sub have no WebSocket transport",
		setup: func(t *testing.T) interopClient {
			return mosquittoClients{
				pub:    requireTool(t, mosquittoPubPath, "mosquitto-clients"),
				sub:    requireTool(t, mosquittoSubPath, "mosquitto-clients"),
				stdbuf: requireTool(t, stdbufPath, "coreutils"),
			}
		},
	})
}

type mosquittoClients struct{ pub, sub, stdbuf string }

// commonArgs are the connection options shared by both tools.
func (m mosquittoClients) commonArgs(t *testing.T, c cell, id string) []string {
	host, port := c.broker.hostPort(t, c.transport)
	v := "mqttv311"
	if c.version == "5" {
		v = "mqttv5"
	}
	return []string{"-h", host, "-p", port, "-V", v, "-i", id, "-q", strconv.Itoa(c.qos), "-k", "30"}
}

// startSub runs mosquitto_sub with debug output (-d) so the SUBACK is
// visible, and a -F format the parser understands: MSG|qos|retain|topic|hex.
func (m mosquittoClients) startSub(t *testing.T, c cell, id, topic string, n int, extra ...string) *extProc {
	args := append([]string{"-oL", m.sub}, m.commonArgs(t, c, id)...)
	args = append(args, "-t", topic, "-d", "-F", "MSG|%q|%r|%t|%x", "-W", strconv.Itoa(int(procTimeout.Seconds())))
	if n > 0 {
		args = append(args, "-C", strconv.Itoa(n))
	}
	args = append(args, extra...)
	p := startProc(t, parseMosquittoSub, "", m.stdbuf, args...)
	ev := p.waitFor(t, "subscribed", setupTimeout)
	if len(ev.Granted) != 1 || ev.Granted[0] != c.qos {
		t.Fatalf("SUBACK granted %v, want [%d]\n%s", ev.Granted, c.qos, p.diag())
	}
	return p
}

func (m mosquittoClients) subscribe(t *testing.T, c cell, topic string, n int) subscription {
	return extSubscription{m.startSub(t, c, clientID(c.name, "sub"), topic, n)}
}

func (m mosquittoClients) publish(t *testing.T, c cell, topic string, payloads []string, retain bool) {
	// -l publishes each stdin line as one message, over one connection.
	args := append(m.commonArgs(t, c, clientID(c.name, "pub")), "-t", topic, "-l")
	if retain {
		args = append(args, "-r")
	}
	p := startProc(t, func(string) (event, bool) { return event{}, false }, strings.Join(payloads, "\n")+"\n", m.pub, args...)
	p.waitExit(t, setupTimeout)
}

func (m mosquittoClients) connectWithWill(t *testing.T, c cell, willTopic, willPayload string) willClient {
	// mosquitto_sub stays connected; its SUBACK proves the CONNECT (and so
	// the will) was accepted. SIGKILL then drops the TCP connection; on
	// SIGINT mosquitto_sub sends DISCONNECT and exits — in 5.0 with reason
	// 0x04, Disconnect with Will Message.
	p := m.startSub(t, c, clientID(c.name, "will"), willTopic+"/alive", 0,
		"--will-topic", willTopic, "--will-payload", willPayload, "--will-qos", strconv.Itoa(c.qos))
	return willClient{
		kill: func() { p.kill(t) },
		disconnect: func() {
			if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatalf("interrupt %s: %v", p.name, err)
			}
			p.waitExit(t, setupTimeout)
		},
		disconnectKeepsWill: c.version == "5",
	}
}

// parseMosquittoSub turns mosquitto_sub -d output into events: the
// "Subscribed (mid: 1): 2" line and the MSG|… lines of the -F format.
func parseMosquittoSub(line string) (event, bool) {
	switch {
	case strings.HasPrefix(line, "Subscribed (mid: "):
		_, codes, ok := strings.Cut(line, "): ")
		if !ok {
			return event{}, false
		}
		ev := event{Event: "subscribed"}
		for _, s := range strings.Split(codes, ",") {
			q, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil {
				return event{Event: "error", Error: "unparsable SUBACK line: " + line}, true
			}
			ev.Granted = append(ev.Granted, q)
		}
		return ev, true
	case strings.HasPrefix(line, "MSG|"):
		f := strings.SplitN(line, "|", 5)
		if len(f) != 5 {
			return event{Event: "error", Error: "unparsable message line: " + line}, true
		}
		qos, err1 := strconv.Atoi(f[1])
		retain, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil {
			return event{Event: "error", Error: "unparsable message line: " + line}, true
		}
		// The topic is the middle field; it never contains '|' in these tests.
		return event{Event: "message", QoS: qos, Retain: retain == 1, Topic: f[3], Payload: f[4]}, true
	}
	return event{}, false
}
