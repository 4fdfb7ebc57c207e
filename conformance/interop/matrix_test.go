package interop

import (
	"fmt"
	"testing"
	"time"
)

// interopClient drives one MQTT client implementation that nobody on the
// Beacon team wrote. Every method fails the test itself when the client
// reports an error or does not finish within the cell's timeouts.
type interopClient interface {
	// subscribe connects a subscriber, subscribes to topic at c.qos and
	// returns once the SUBACK granted c.qos; it expects n messages.
	subscribe(t *testing.T, c cell, topic string, n int) subscription
	// publish connects, publishes payloads to topic in order at c.qos with the
	// given RETAIN flag, waits for each acknowledgement the QoS requires and
	// disconnects cleanly.
	publish(t *testing.T, c cell, topic string, payloads []string, retain bool)
	// connectWithWill connects a client whose CONNECT carries a will (topic,
	// payload, c.qos, RETAIN=0) and returns once the CONNACK arrived.
	connectWithWill(t *testing.T, c cell, willTopic, willPayload string) willClient
}

// willClient is a connected client with a will; the test ends it one of two
// ways, each returning once the client is gone.
type willClient struct {
	// kill ends the client without an MQTT DISCONNECT.
	kill func()
	// disconnect makes the client send DISCONNECT and close.
	disconnect func()
	// disconnectKeepsWill is set when that DISCONNECT carries 5.0 reason
	// 0x04, Disconnect with Will Message, which asks the server to publish
	// the will anyway (mosquitto_sub sends it when interrupted).
	disconnectKeepsWill bool
}

// subscription is a running subscriber.
type subscription interface {
	// await returns the first n messages, failing the test after timeout.
	await(t *testing.T, n int, timeout time.Duration) []message
}

// cell is one point of the matrix.
type cell struct {
	broker    broker
	name      string // the subtest's full name: unique, used for topics and ids
	version   string // "3.1.1" or "5"
	transport string // "tcp" or "ws"
	qos       int
}

// clientSpec describes a client implementation and the part of the matrix
// it supports.
type clientSpec struct {
	name       string
	versions   []string // of "3.1.1", "5"
	transports []string // of "tcp", "ws"
	// unsupported explains the cells left out, e.g. a client without WebSocket.
	unsupported string
	// setup checks the client's prerequisites (failing with the package to
	// install) and returns the driver.
	setup func(t *testing.T) interopClient
}

// scenario is one behaviour checked in every (version, transport, QoS) cell.
type scenario struct {
	name string
	run  func(t *testing.T, cl interopClient, c cell)
}

var scenarios = []scenario{
	{"publish_subscribe", runPublishSubscribe},
	{"retained", runRetained},
	{"will", runWill},
	{"clean_disconnect", runCleanDisconnect},
}

// runMatrix runs every scenario in every version × transport × QoS cell the
// client supports, against one broker started for the whole matrix. Cells
// use unique topics and client identifiers and run in parallel.
func runMatrix(t *testing.T, spec clientSpec) {
	cl := spec.setup(t)
	if spec.unsupported != "" {
		t.Logf("%s: not in the matrix: %s", spec.name, spec.unsupported)
	}
	b := startBroker(t)
	t.Logf("broker under test: %s (mqtt %s, ws %s)", b.name, b.mqttAddr, b.wsAddr)
	for _, version := range spec.versions {
		t.Run("v"+version, func(t *testing.T) {
			for _, transport := range spec.transports {
				t.Run(transport, func(t *testing.T) {
					for qos := 0; qos <= 2; qos++ {
						t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) {
							for _, sc := range scenarios {
								t.Run(sc.name, func(t *testing.T) {
									t.Parallel()
									sc.run(t, cl, cell{broker: b, name: t.Name(), version: version, transport: transport, qos: qos})
								})
							}
						})
					}
				})
			}
		})
	}
}

// runPublishSubscribe: messages published to a topic reach an established
// subscriber in order, at min(published, granted) QoS — both c.qos here —
// with RETAIN=0.
func runPublishSubscribe(t *testing.T, cl interopClient, c cell) {
	topic := topicFor(c.name)
	payloads := []string{"first " + runNonce, "second " + runNonce, "third " + runNonce}
	sub := cl.subscribe(t, c, topic, len(payloads))
	cl.publish(t, c, topic, payloads, false)
	got := sub.await(t, len(payloads), deliverTimeout)
	for i, m := range got {
		want := message{Topic: topic, Payload: payloads[i], QoS: c.qos, Retain: false}
		// In order [MQTT-4.6.0-6], at the lower QoS [MQTT-3.8.4-6]
		// (5.0: [MQTT-3.8.4-8]), RETAIN cleared on an established
		// subscription [MQTT-3.3.1-9] (5.0: [MQTT-3.3.1-12]).
		checkMessage(t, i, m, want)
	}
}

// runRetained: a retained message published before anyone subscribed is
// delivered to a later subscriber with RETAIN=1.
func runRetained(t *testing.T, cl interopClient, c cell) {
	topic := topicFor(c.name)
	payload := "retained " + runNonce
	cl.publish(t, c, topic, []string{payload}, true)
	if c.qos == 0 {
		// No acknowledgement tells the publisher when a QoS 0 message has
		// been stored; without this a fast subscriber may get it live.
		waitRetained(t, c, topic, payload)
	}
	sub := cl.subscribe(t, c, topic, 1)
	got := sub.await(t, 1, deliverTimeout)
	// Stored with its QoS [MQTT-3.3.1-5], sent to the new subscription
	// [MQTT-3.3.1-6] (5.0: [MQTT-3.3.1-9]) with RETAIN=1 [MQTT-3.3.1-8].
	checkMessage(t, 0, got[0], message{Topic: topic, Payload: payload, QoS: c.qos, Retain: true})
}

// runWill: a client that dies without DISCONNECT has its will published to
// subscribers of the will topic — after it dies, not before: a marker
// published to the same topic while the will client is alive must reach the
// subscriber first, and only then is the will client killed.
func runWill(t *testing.T, cl interopClient, c cell) {
	topic := topicFor(c.name)
	payload := "will " + runNonce
	marker := "alive " + runNonce
	sub := cl.subscribe(t, c, topic, 2)
	wc := cl.connectWithWill(t, c, topic, payload)
	cl.publish(t, c, topic, []string{marker}, false)
	// A will published at CONNECT time would have been queued before the
	// marker was even sent.
	checkMessage(t, 0, sub.await(t, 1, deliverTimeout)[0], message{Topic: topic, Payload: marker, QoS: c.qos, Retain: false})
	wc.kill()
	// Published when the connection closes without DISCONNECT
	// [MQTT-3.1.2-8], as a non-retained message [MQTT-3.1.2-16] (no will
	// delay: 5.0 [MQTT-3.1.2-8] publishes at once).
	checkMessage(t, 1, sub.await(t, 1, deliverTimeout)[0], message{Topic: topic, Payload: payload, QoS: c.qos, Retain: false})
}

// runCleanDisconnect: a client that sends DISCONNECT has its will discarded
// [MQTT-3.14.4-3] [MQTT-3.1.2-10]. A marker published after the client is
// gone must be the first message the subscriber sees: a will published on
// the DISCONNECT would have been queued before it. A 5.0 DISCONNECT with
// reason 0x04 asks for the will instead (5.0 section 3.14.2.1), so then the
// will must come first.
func runCleanDisconnect(t *testing.T, cl interopClient, c cell) {
	topic := topicFor(c.name)
	will := "will " + runNonce
	marker := "after " + runNonce
	sub := cl.subscribe(t, c, topic, 2)
	wc := cl.connectWithWill(t, c, topic, will)
	wc.disconnect()
	cl.publish(t, c, topic, []string{marker}, false)
	want := []string{marker}
	if wc.disconnectKeepsWill {
		want = []string{will, marker}
	}
	for i, m := range sub.await(t, len(want), deliverTimeout) {
		checkMessage(t, i, m, message{Topic: topic, Payload: want[i], QoS: c.qos, Retain: false})
	}
}

func checkMessage(t *testing.T, i int, got, want message) {
	t.Helper()
	if got != want {
		t.Errorf("message %d: got %v, want %v", i, got, want)
	}
}
