package interop

import (
	"testing"
)

// endpoint is one client implementation at one protocol version.
type endpoint struct {
	name    string // e.g. "mosquitto-v3.1.1"
	version string
	ws      bool // supports WebSocket
	client  interopClient
}

// TestInteropCrossClient sends messages between different client
// implementations and protocol versions: every publisher endpoint to every
// other subscriber endpoint, the publisher over TCP and the subscriber over
// WebSocket where it supports it. The publisher uses QoS 2 and the
// subscription QoS 1, so every message must arrive downgraded to QoS 1.
func TestInteropCrossClient(t *testing.T) {
	mosq := mosquittoClients{
		pub:    requireTool(t, mosquittoPubPath, "mosquitto-clients"),
		sub:    requireTool(t, mosquittoSubPath, "mosquitto-clients"),
		stdbuf: requireTool(t, stdbufPath, "coreutils"),
	}
	py := pythonPaho{python: requireTool(t, systemPython, "python3")}
	pythonPahoVersion(t, py.python)
	endpoints := []endpoint{
		{"mosquitto-v3.1.1", "3.1.1", false, mosq},
		{"mosquitto-v5", "5", false, mosq},
		{"python-v3.1.1", "3.1.1", true, py},
		{"python-v5", "5", true, py},
		{"pahogolang-v5", "5", true, pahoGolang{}},
	}
	b := startBroker(t)
	t.Logf("broker under test: %s (mqtt %s, ws %s)", b.name, b.mqttAddr, b.wsAddr)
	for _, pub := range endpoints {
		for _, sub := range endpoints {
			if pub.name == sub.name {
				continue // covered by the per-client matrix
			}
			t.Run(pub.name+"_to_"+sub.name, func(t *testing.T) {
				t.Run("publish_subscribe", func(t *testing.T) {
					t.Parallel()
					pc, sc := crossCells(b, t.Name(), pub, sub)
					topic := topicFor(t.Name())
					payloads := []string{"one " + runNonce, "two " + runNonce}
					s := sub.client.subscribe(t, sc, topic, len(payloads))
					pub.client.publish(t, pc, topic, payloads, false)
					for i, m := range s.await(t, len(payloads), deliverTimeout) {
						// QoS 2 published, granted 1: delivered at 1
						// [MQTT-3.8.4-6] (5.0: [MQTT-3.8.4-8]).
						checkMessage(t, i, m, message{Topic: topic, Payload: payloads[i], QoS: 1})
					}
				})
				t.Run("retained", func(t *testing.T) {
					t.Parallel()
					pc, sc := crossCells(b, t.Name(), pub, sub)
					topic := topicFor(t.Name())
					payload := "kept " + runNonce
					pub.client.publish(t, pc, topic, []string{payload}, true)
					s := sub.client.subscribe(t, sc, topic, 1)
					// A retained message stored at QoS 2 [MQTT-3.3.1-5] goes to
					// a QoS 1 subscription at QoS 1 with RETAIN=1 [MQTT-3.3.1-8].
					checkMessage(t, 0, s.await(t, 1, deliverTimeout)[0], message{Topic: topic, Payload: payload, QoS: 1, Retain: true})
				})
			})
		}
	}
}

// crossCells returns the publisher's cell (TCP, QoS 2) and the subscriber's
// (WebSocket if supported, QoS 1) for one cross-client subtest.
func crossCells(b broker, name string, pub, sub endpoint) (pc, sc cell) {
	pc = cell{broker: b, name: name, version: pub.version, transport: "tcp", qos: 2}
	sc = cell{broker: b, name: name, version: sub.version, transport: "tcp", qos: 1}
	if sub.ws {
		sc.transport = "ws"
	}
	return pc, sc
}
