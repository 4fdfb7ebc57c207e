package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// These tests build the real binary and run it as a user would.

var beaconBin string // path of the built binary, set by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "beacon-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	beaconBin = filepath.Join(dir, "beacon")
	build := exec.Command("go", "build", "-o", beaconBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building beacon:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// eventually polls fn until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

// syncBuffer collects a process's output safely across goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// beaconProc is a running `beacon serve`.
type beaconProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's result, valid after done
	mqtt   string
	ws     string
	http   string
}

var startedLine = regexp.MustCompile(`msg="beacon started".*\bmqtt=(\S*) ws=(\S*) .*\bhttp=(\S*)`)

// startBeacon runs the binary with args and waits for its "beacon started"
// log line, which carries the bound addresses.
func startBeacon(t *testing.T, args ...string) *beaconProc {
	t.Helper()
	p := &beaconProc{stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(beaconBin, args...)
	p.cmd.Dir = t.TempDir()
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill() // only this test's process, by PID
			<-p.done
		}
		if t.Failed() {
			t.Logf("beacon stderr:\n%s", p.stderr.String())
		}
	})
	eventually(t, 10*time.Second, func() error {
		select {
		case <-p.done:
			return fmt.Errorf("exited early: %v\n%s", p.err, p.stderr.String())
		default:
		}
		sc := bufio.NewScanner(strings.NewReader(p.stderr.String()))
		for sc.Scan() {
			if m := startedLine.FindStringSubmatch(sc.Text()); m != nil {
				unq := func(s string) string { return strings.Trim(s, `"`) }
				p.mqtt, p.ws, p.http = unq(m[1]), unq(m[2]), unq(m[3])
				return nil
			}
		}
		return errors.New("no \"beacon started\" line yet")
	})
	return p
}

// stop sends sig and returns the exit code, failing if the process takes
// longer than the 5 s shutdown budget plus process start-up slack.
func (p *beaconProc) stop(t *testing.T, sig os.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	return p.wait(t)
}

// wait returns the exit code once the process has exited (bounded as stop).
func (p *beaconProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(6 * time.Second):
		t.Fatal("beacon did not exit within 6s of the signal")
	}
	return p.cmd.ProcessState.ExitCode()
}

// runBeacon runs the binary to completion (bounded) and returns its exit
// code and combined output.
func runBeacon(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, beaconBin, args...)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("running beacon %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

var memoryServe = []string{"serve", "--storage", "memory", "--mqtt", "127.0.0.1:0", "--ws", "127.0.0.1:0", "--http", "127.0.0.1:0"}

func waitHealthy(t *testing.T, addr string) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	eventually(t, 10*time.Second, func() error {
		resp, err := client.Get("http://" + addr + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/healthz: %s", resp.Status)
		}
		return nil
	})
}

func TestServeHealthzAndSIGTERM(t *testing.T) {
	p := startBeacon(t, memoryServe...)
	if p.mqtt == "" || p.ws == "" || p.http == "" {
		t.Fatalf("addresses mqtt=%q ws=%q http=%q", p.mqtt, p.ws, p.http)
	}
	waitHealthy(t, p.http)
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0\n%s", code, p.stderr.String())
	}
}

func TestServeSIGINTDefaultCommand(t *testing.T) {
	// No "serve": it is the default command.
	p := startBeacon(t, memoryServe[1:]...)
	waitHealthy(t, p.http)
	if code := p.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("exit code after SIGINT = %d, want 0", code)
	}
}

func TestServeDisabledListeners(t *testing.T) {
	p := startBeacon(t, "--storage", "memory", "--mqtt", "127.0.0.1:0", "--ws", "", "--http", "")
	if p.mqtt == "" || p.ws != "" || p.http != "" {
		t.Fatalf("addresses mqtt=%q ws=%q http=%q, want only mqtt", p.mqtt, p.ws, p.http)
	}
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code = %d", code)
	}
}

func TestServeConfigFile(t *testing.T) {
	cfg := writeConfig(t, "storage: memory\nmqtt: 127.0.0.1:0\nws: \"\"\nhttp: 127.0.0.1:0\nlog_level: warn\n")
	// Flags override the file: the WebSocket listener comes back, and the
	// log level returns to info (the "beacon started" line is at info).
	p := startBeacon(t, "--config", cfg, "--ws", "127.0.0.1:0", "--log-level", "info")
	if p.ws == "" {
		t.Error("--ws did not override ws: \"\" from the file")
	}
	waitHealthy(t, p.http)
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code = %d", code)
	}
}

func TestServeMosquittoClients(t *testing.T) {
	for _, bin := range []string{"/usr/bin/mosquitto_pub", "/usr/bin/mosquitto_sub"} {
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("%s not installed: %v", bin, err)
		}
	}
	p := startBeacon(t, memoryServe...)
	host, port := splitAddr(t, p.mqtt)
	for _, ver := range []string{"mqttv311", "mqttv5"} {
		for _, qos := range []string{"0", "1", "2"} {
			t.Run(ver+"/qos"+qos, func(t *testing.T) {
				topic := "beacon/test/" + ver + "/" + qos
				payload := "hello-" + ver + "-" + qos
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				subOut := &syncBuffer{}
				sub := exec.CommandContext(ctx, "/usr/bin/mosquitto_sub", "-h", host, "-p", port,
					"-V", ver, "-q", qos, "-t", topic, "-C", "1", "-W", "10")
				sub.Stdout, sub.Stderr = subOut, subOut
				if err := sub.Start(); err != nil {
					t.Fatal(err)
				}
				subDone := make(chan error, 1)
				go func() { subDone <- sub.Wait() }()
				// mosquitto_sub's output is block-buffered on a pipe, so
				// "subscribed" cannot be observed: publish every 100 ms until
				// the subscriber has received one message (-C 1) and exited.
				var subErr error
				eventually(t, 12*time.Second, func() error {
					select {
					case subErr = <-subDone:
						return nil
					default:
					}
					pub := exec.CommandContext(ctx, "/usr/bin/mosquitto_pub", "-h", host, "-p", port,
						"-V", ver, "-q", qos, "-t", topic, "-m", payload)
					if out, err := pub.CombinedOutput(); err != nil {
						t.Fatalf("mosquitto_pub: %v\n%s", err, out)
					}
					select {
					case subErr = <-subDone:
						return nil
					case <-time.After(100 * time.Millisecond):
						return errors.New("subscriber has not received a message yet")
					}
				})
				if subErr != nil {
					t.Fatalf("mosquitto_sub: %v\n%s", subErr, subOut.String())
				}
				if got := strings.TrimSpace(subOut.String()); got != payload {
					t.Errorf("subscriber printed %q, want %q", got, payload)
				}
			})
		}
	}
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code = %d", code)
	}
}

// TestServeWebSocket connects over the WebSocket listener with a raw MQTT
// 3.1.1 CONNECT and expects CONNACK "accepted".
func TestServeWebSocket(t *testing.T) {
	p := startBeacon(t, memoryServe...)
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.Dial("ws://"+p.ws+"/mqtt", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	resp.Body.Close()
	defer c.Close()
	if c.Subprotocol() != "mqtt" {
		t.Errorf("subprotocol %q, want mqtt", c.Subprotocol())
	}
	connect := []byte{0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 0} // clean session, empty client id
	// Split over two frames: the broker must reassemble the stream.
	if err := c.WriteMessage(websocket.BinaryMessage, connect[:5]); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(websocket.BinaryMessage, connect[5:]); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []byte
	for len(got) < 4 {
		mt, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("reading CONNACK: %v (have % x)", err, got)
		}
		if mt != websocket.BinaryMessage {
			t.Fatalf("frame type %d, want binary", mt)
		}
		got = append(got, data...)
	}
	if !bytes.Equal(got[:4], []byte{0x20, 2, 0, 0}) {
		t.Fatalf("CONNACK % x, want 20 02 00 00", got)
	}
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code = %d", code)
	}
}

func splitAddr(t *testing.T, addr string) (string, string) {
	t.Helper()
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		t.Fatalf("bad address %q", addr)
	}
	return addr[:i], addr[i+1:]
}

func TestCLIErrorsExit2(t *testing.T) {
	bad := writeConfig(t, "storage: memory\nmqtt_port: 1883\n")
	badVal := writeConfig(t, "storage: memory\nmax_qos: 7\n")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--config", bad}, "mqtt_port"},
		{[]string{"serve", "--config", badVal}, "max_qos"},
		{[]string{"serve", "--storage", "tape"}, "--storage"},
		{[]string{"serve", "--max-packet-size", "-1"}, "--max-packet-size"},
		{[]string{"serve", "--no-such-flag"}, "no-such-flag"},
		{[]string{"frobnicate"}, "frobnicate"},
	}
	for _, tc := range cases {
		code, out := runBeacon(t, tc.args...)
		if code != 2 {
			t.Errorf("beacon %v: exit %d, want 2\n%s", tc.args, code, out)
		}
		if !strings.Contains(out, tc.want) {
			t.Errorf("beacon %v: output does not name %q:\n%s", tc.args, tc.want, out)
		}
	}
}

// TestServeBadgerDataDirLocked: a data dir held by another running beacon
// is refused with an error naming the dir, never opened a second time.
func TestServeBadgerDataDirLocked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	first := startBeacon(t, "serve", "--data", dir, "--mqtt", "127.0.0.1:0", "--ws", "", "--http", "")
	code, out := runBeacon(t, "serve", "--data", dir, "--mqtt", "127.0.0.1:0", "--ws", "", "--http", "")
	if code == 0 {
		t.Fatalf("a second beacon on a locked data dir exited 0:\n%s", out)
	}
	if !strings.Contains(out, dir) {
		t.Errorf("error does not name the data dir %s:\n%s", dir, out)
	}
	if code := first.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("first beacon exit code %d after SIGTERM", code)
	}
}

func TestCLIVersionAndHelp(t *testing.T) {
	code, out := runBeacon(t, "version")
	if code != 0 || !strings.HasPrefix(out, "beacon ") {
		t.Errorf("version: exit %d output %q", code, out)
	}
	code, out = runBeacon(t, "help")
	if code != 0 || !strings.Contains(out, "beacon [serve]") {
		t.Errorf("help: exit %d output %q", code, out)
	}
	code, out = runBeacon(t, "serve", "-h")
	if code != 0 || !strings.Contains(out, "-max-queued-messages") {
		t.Errorf("serve -h: exit %d output %q", code, out)
	}
}

// TestServeSysTopics reads $SYS/broker/version, published retained by the
// broker at start-up, with mosquitto_sub.
func TestServeSysTopics(t *testing.T) {
	if _, err := os.Stat("/usr/bin/mosquitto_sub"); err != nil {
		t.Skipf("mosquitto_sub not installed: %v", err)
	}
	p := startBeacon(t, append(memoryServe, "--sys-interval", "1s")...)
	host, port := splitAddr(t, p.mqtt)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var out []byte
	eventually(t, 10*time.Second, func() error {
		sub := exec.CommandContext(ctx, "/usr/bin/mosquitto_sub", "-h", host, "-p", port,
			"-t", "$SYS/broker/version", "-t", "$SYS/broker/uptime", "-C", "2", "-v", "-W", "3")
		var err error
		out, err = sub.CombinedOutput()
		return err
	})
	s := string(out)
	if !strings.Contains(s, "$SYS/broker/version beacon version ") {
		t.Errorf("no version topic in %q", s)
	}
	if !regexp.MustCompile(`\$SYS/broker/uptime \d+ seconds`).MatchString(s) {
		t.Errorf("no uptime topic in %q", s)
	}
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code = %d", code)
	}
}

// TestServeShutdownDisconnects5 checks that SIGTERM sends an MQTT 5.0
// client DISCONNECT with reason 0x8B (server shutting down) before exit.
func TestServeShutdownDisconnects5(t *testing.T) {
	p := startBeacon(t, memoryServe...)
	conn, err := net.DialTimeout("tcp", p.mqtt, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	// CONNECT 5.0: clean start, keep alive 60, no properties, empty client id.
	connect := []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 0, 0, 0}
	if _, err := conn.Write(connect); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	typ, body := readPacket(t, r)
	if typ != 0x20 || len(body) < 2 || body[1] != 0 {
		t.Fatalf("CONNACK: type %#x body % x", typ, body)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	typ, body = readPacket(t, r)
	if typ != 0xE0 || len(body) < 1 || body[0] != 0x8B {
		t.Fatalf("after SIGTERM got type %#x body % x, want DISCONNECT 0x8B", typ, body)
	}
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit code = %d", code)
	}
}

// readPacket reads one MQTT packet: first byte and body.
func readPacket(t *testing.T, r *bufio.Reader) (byte, []byte) {
	t.Helper()
	typ, err := r.ReadByte()
	if err != nil {
		t.Fatalf("reading packet: %v", err)
	}
	n, mul := 0, 1
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil || i == 4 {
			t.Fatalf("reading remaining length: %v", err)
		}
		n += int(b&0x7f) * mul
		mul *= 128
		if b&0x80 == 0 {
			break
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return typ, body
}

// pahoWSScript subscribes and publishes over WebSocket with python
// paho-mqtt (a client nobody here wrote) and prints what it received.
const pahoWSScript = `
import sys, paho.mqtt.client as mqtt
host, port, proto, qos = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
version = mqtt.MQTTv5 if proto == "5" else mqtt.MQTTv311
topic = "beacon/ws/" + proto + "/" + str(qos)
got = []
c = mqtt.Client(client_id="paho-ws-" + proto + "-" + str(qos), protocol=version, transport="websockets")
c.ws_set_options(path="/mqtt")
def on_connect(cl, u, f, rc, props=None):
    cl.subscribe(topic, qos)
def on_subscribe(cl, u, mid, granted, props=None):
    cl.publish(topic, "over-websocket", qos)
def on_message(cl, u, msg):
    got.append(msg.payload.decode())
    cl.disconnect()
c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
c.connect(host, port, 30)
c.loop_forever(timeout=1.0)
print("received:" + ",".join(got))
`

func TestServePahoWebSocket(t *testing.T) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skipf("/usr/bin/python3 not installed: %v", err)
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import paho.mqtt.client").Run(); err != nil {
		t.Skipf("python3-paho-mqtt not installed: %v", err)
	}
	p := startBeacon(t, memoryServe...)
	host, port := splitAddr(t, p.ws)
	for _, proto := range []string{"4", "5"} {
		for _, qos := range []string{"0", "1", "2"} {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			out, err := exec.CommandContext(ctx, "/usr/bin/python3", "-c", pahoWSScript, host, port, proto, qos).CombinedOutput()
			cancel()
			if err != nil {
				t.Errorf("paho over websocket, protocol %s qos %s: %v\n%s", proto, qos, err, out)
				continue
			}
			if got := strings.TrimSpace(string(out)); got != "received:over-websocket" {
				t.Errorf("protocol %s qos %s: %q, want received:over-websocket", proto, qos, got)
			}
		}
	}
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code = %d", code)
	}
}
