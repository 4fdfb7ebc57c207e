package interop

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// systemPython is Debian's interpreter, which has python3-paho-mqtt; the
// python3 first on PATH may be another one without paho.
const systemPython = "/usr/bin/python3"

// pahoScript drives paho-mqtt; see its docstring for the line protocol.
var pahoScript = filepath.Join("testdata", "paho_client.py")

// TestInteropPythonPaho runs the matrix with Eclipse paho-mqtt for Python
// (Debian python3-paho-mqtt), MQTT 3.1.1 and 5.0 over TCP and WebSocket.
func TestInteropPythonPaho(t *testing.T) {
	runMatrix(t, clientSpec{
		name:       "python paho-mqtt",
		versions:   []string{"3.1.1", "5"},
		transports: []string{"tcp", "ws"},
		setup: func(t *testing.T) interopClient {
			py := requireTool(t, systemPython, "python3")
			version := pythonPahoVersion(t, py)
			t.Logf("python paho-mqtt %s", version)
			return pythonPaho{python: py}
		},
	})
}

var pahoVersion struct {
	once    sync.Once
	version string
	err     error
	out     string
}

// pythonPahoVersion fails the test, naming the Debian package, when paho-mqtt
// cannot be imported (BEACON_INTEROP_SKIP=1 skips loudly instead).
func pythonPahoVersion(t *testing.T, py string) string {
	t.Helper()
	pahoVersion.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, py, "-c", "import paho.mqtt, paho.mqtt.client; print(paho.mqtt.__version__)").CombinedOutput()
		pahoVersion.version, pahoVersion.err, pahoVersion.out = strings.TrimSpace(string(out)), err, string(out)
	})
	if pahoVersion.err != nil {
		msg := "python paho-mqtt is not importable by " + py + ": install the Debian package python3-paho-mqtt (apt-get install python3-paho-mqtt): " + pahoVersion.err.Error() + "\n" + pahoVersion.out
		skipOrFail(t, msg)
	}
	return pahoVersion.version
}

type pythonPaho struct{ python string }

func (p pythonPaho) run(t *testing.T, c cell, mode, id, topic string, extra ...string) *extProc {
	host, port := c.broker.hostPort(t, c.transport)
	transport := "tcp"
	if c.transport == "ws" {
		transport = "websockets"
	}
	args := []string{"-u", pahoScript, "--mode", mode, "--host", host, "--port", port,
		"--transport", transport, "--version", c.version, "--qos", strconv.Itoa(c.qos),
		"--topic", topic, "--client-id", id, "--timeout", strconv.Itoa(int(procTimeout.Seconds()) - 2)}
	return startProc(t, parseJSONEvent, "", p.python, append(args, extra...)...)
}

func (p pythonPaho) subscribe(t *testing.T, c cell, topic string, n int) subscription {
	proc := p.run(t, c, "sub", clientID(c.name, "sub"), topic, "--count", strconv.Itoa(n))
	ev := proc.waitFor(t, "subscribed", setupTimeout)
	if len(ev.Granted) != 1 || ev.Granted[0] != c.qos {
		t.Fatalf("SUBACK granted %v, want [%d]\n%s", ev.Granted, c.qos, proc.diag())
	}
	return extSubscription{proc}
}

func (p pythonPaho) publish(t *testing.T, c cell, topic string, payloads []string, retain bool) {
	var extra []string
	for _, pl := range payloads {
		extra = append(extra, "--payload", pl)
	}
	if retain {
		extra = append(extra, "--retain")
	}
	proc := p.run(t, c, "pub", clientID(c.name, "pub"), topic, extra...)
	ev := proc.waitFor(t, "published", setupTimeout)
	if ev.Count != len(payloads) {
		t.Fatalf("published %d messages, want %d\n%s", ev.Count, len(payloads), proc.diag())
	}
	proc.waitExit(t, setupTimeout)
}

// connectWithWill starts the script in will mode; SIGINT makes it send
// DISCONNECT and exit 0, SIGKILL drops its connection.
func (p pythonPaho) connectWithWill(t *testing.T, c cell, willTopic, willPayload string) willClient {
	proc := p.run(t, c, "will", clientID(c.name, "will"), willTopic, "--payload", willPayload)
	proc.waitFor(t, "ready", setupTimeout)
	return willClient{
		kill: func() { proc.kill(t) },
		disconnect: func() {
			if err := proc.cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatalf("interrupt %s: %v", proc.name, err)
			}
			proc.waitFor(t, "disconnected", setupTimeout)
			proc.waitExit(t, setupTimeout)
		},
	}
}

// parseJSONEvent parses one line of paho_client.py output; anything that is
// not a JSON object (a Python traceback, say) is kept only for diagnostics.
func parseJSONEvent(line string) (event, bool) {
	if !strings.HasPrefix(line, "{") {
		return event{}, false
	}
	var ev event
	if err := json.Unmarshal([]byte(line), &ev); err != nil {
		return event{Event: "error", Error: "unparsable line: " + line}, true
	}
	return ev, true
}
