package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Timeouts keep every interop cell bounded: a broker that never answers fails
// the cell within seconds instead of hanging the suite.
const (
	procTimeout    = 30 * time.Second // hard bound on any external client process
	deliverTimeout = 10 * time.Second // how long a subscriber waits for its messages
	setupTimeout   = 10 * time.Second // CONNACK / SUBACK / publish acknowledgements
)

// runNonce makes topics and client identifiers unique per test process, so
// two runs against the same broker cannot see each other's messages.
var runNonce = fmt.Sprintf("%x", time.Now().UnixNano())

// message is one application message as a subscriber observed it.
type message struct {
	Topic   string
	Payload string
	QoS     int
	Retain  bool
}

func (m message) String() string {
	return fmt.Sprintf("{topic=%q payload=%q qos=%d retain=%v}", m.Topic, m.Payload, m.QoS, m.Retain)
}

// clientID returns a client identifier unique to this run, cell and role,
// of at most 23 ASCII letters and digits: what every 3.1.1 server must
// accept [MQTT-3.1.3-5].
func clientID(cellName, role string) string {
	h := fnv.New64a()
	h.Write([]byte(runNonce + "/" + cellName))
	id := fmt.Sprintf("ix%012x%s", h.Sum64()&0xffffffffffff, role)
	if len(id) > 23 {
		id = id[:23]
	}
	return id
}

// topicFor returns a topic unique to this run and cell.
func topicFor(cellName string) string {
	return "interop/" + runNonce + "/" + cellName
}

// eventually polls f until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// requireTool fails the test when an external client is missing, naming the
// Debian package that provides it: a silent skip would hide missing coverage
// in CI. BEACON_INTEROP_SKIP=1 turns the failure into a loud skip.
func requireTool(t *testing.T, path, debianPackage string) string {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return path
	}
	skipOrFail(t, fmt.Sprintf("%s not found: install the Debian package %s (apt-get install %s)", path, debianPackage, debianPackage))
	return ""
}

// skipOrFail fails with msg, or skips loudly when BEACON_INTEROP_SKIP=1.
func skipOrFail(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("BEACON_INTEROP_SKIP") == "1" {
		t.Skip("BEACON_INTEROP_SKIP=1: skipping, " + msg)
	}
	t.Fatal(msg + "; or set BEACON_INTEROP_SKIP=1 to skip these interop tests")
}

// event is one line of an external client's output, parsed.
type event struct {
	Event   string `json:"event"` // connected, subscribed, message, published, error
	RC      int    `json:"rc"`
	Granted []int  `json:"granted"`
	Topic   string `json:"topic"`
	Payload string `json:"payload"` // hex
	QoS     int    `json:"qos"`
	Retain  bool   `json:"retain"`
	Error   string `json:"error"`
	Count   int    `json:"count"`
}

// lockedBuffer is a bytes.Buffer safe for a process writer and a test reader.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// extProc is an external client process whose stdout is parsed line by line
// into events. It is bounded by procTimeout and killed (by its own PID, via
// exec.CommandContext) on test cleanup.
type extProc struct {
	name    string
	cmd     *exec.Cmd
	events  chan event
	stdout  lockedBuffer // every line, for failure messages
	stderr  lockedBuffer
	exited  chan struct{}
	waitErr error
}

// startProc starts name with args; parse turns a stdout line into an event
// (ok=false ignores the line).
func startProc(t *testing.T, parse func(string) (event, bool), stdin string, name string, args ...string) *extProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), procTimeout)
	p := &extProc{
		name:   name,
		events: make(chan event, 1024),
		exited: make(chan struct{}),
	}
	p.cmd = exec.CommandContext(ctx, name, args...)
	p.cmd.WaitDelay = time.Second
	p.cmd.Stderr = &p.stderr
	if stdin != "" {
		p.cmd.Stdin = strings.NewReader(stdin)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatalf("%s: %v", name, err)
	}
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			p.stdout.Write([]byte(line + "\n"))
			if ev, ok := parse(line); ok {
				select {
				case p.events <- ev:
				default: // far more output than any cell produces; keep draining
				}
			}
		}
		p.waitErr = p.cmd.Wait() // only after all reads: Wait closes the pipe
		close(p.events)
		close(p.exited)
	}()
	t.Cleanup(func() {
		cancel() // kills the process if it is still running
		<-p.exited
	})
	return p
}

// diag describes the process's state for a failure message.
func (p *extProc) diag() string {
	state := "running"
	select {
	case <-p.exited:
		state = fmt.Sprintf("exited: %v", p.waitErr)
	default:
	}
	return fmt.Sprintf("%s (%s)\n--- stdout:\n%s--- stderr:\n%s", strings.Join(p.cmd.Args, " "), state, p.stdout.String(), p.stderr.String())
}

var errExited = errors.New("process exited")

// next returns the next event, or an error on timeout or process exit.
func (p *extProc) next(timeout time.Duration) (event, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case ev, ok := <-p.events:
		if !ok {
			return event{}, errExited
		}
		return ev, nil
	case <-timer.C:
		return event{}, fmt.Errorf("timed out after %v", timeout)
	}
}

// waitFor reads events until one of kind arrives; an "error" event, a
// timeout or the process exiting fails the test.
func (p *extProc) waitFor(t *testing.T, kind string, timeout time.Duration) event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ev, err := p.next(time.Until(deadline))
		if err != nil {
			t.Fatalf("waiting for %q from %s: %v\n%s", kind, p.name, err, p.diag())
		}
		if ev.Event == kind {
			return ev
		}
		if ev.Event == "error" {
			t.Fatalf("%s reported an error while waiting for %q: %s\n%s", p.name, kind, ev.Error, p.diag())
		}
	}
}

// waitExit waits for the process to exit and fails the test unless it exited 0.
func (p *extProc) waitExit(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %v\n%s", p.name, timeout, p.diag())
	}
	if p.waitErr != nil {
		t.Fatalf("%s failed: %v\n%s", p.name, p.waitErr, p.diag())
	}
}

// kill sends SIGKILL to the process (by PID) and waits for it to exit, so the
// operating system closes its socket without an MQTT DISCONNECT.
func (p *extProc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill %s: %v", p.name, err)
	}
	select {
	case <-p.exited:
	case <-time.After(setupTimeout):
		t.Fatalf("%s did not exit after SIGKILL", p.name)
	}
}

// extSubscription collects "message" events from an external subscriber.
type extSubscription struct{ p *extProc }

func (s extSubscription) await(t *testing.T, n int, timeout time.Duration) []message {
	t.Helper()
	var got []message
	deadline := time.Now().Add(timeout)
	for len(got) < n {
		ev, err := s.p.next(time.Until(deadline))
		if err != nil {
			t.Fatalf("got %d of %d messages: %v\nreceived: %v\n%s", len(got), n, err, got, s.p.diag())
		}
		switch ev.Event {
		case "message":
			payload, err := hex.DecodeString(ev.Payload)
			if err != nil {
				t.Fatalf("bad payload hex %q: %v", ev.Payload, err)
			}
			got = append(got, message{Topic: ev.Topic, Payload: string(payload), QoS: ev.QoS, Retain: ev.Retain})
		case "error":
			t.Fatalf("%s reported an error after %d of %d messages: %s\n%s", s.p.name, len(got), n, ev.Error, s.p.diag())
		}
	}
	return got
}
