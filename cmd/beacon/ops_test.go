package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
)

// Operations: configuration from the environment, --check, log format,
// the deploy/ example, admin token, metrics and SIGHUP on the real binary.

func TestConfigEnvExpansion(t *testing.T) {
	t.Setenv("BEACON_TEST_MQTT", "127.0.0.1:1999")
	t.Setenv("BEACON_TEST_GROUP_STRATEGY", "sticky")
	p := writeConfig(t, "mqtt: ${BEACON_TEST_MQTT}\nws: \"\"\ndata: /tmp/a$${b}\nshared_strategies:\n  g: ${BEACON_TEST_GROUP_STRATEGY}\n")
	c, err := loadConfig([]string{"--config", p}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.opts.MQTTAddr != "127.0.0.1:1999" {
		t.Errorf("mqtt = %q, want the environment's value", c.opts.MQTTAddr)
	}
	if c.dataDir != "/tmp/a${b}" {
		t.Errorf("data = %q, want the literal ${b} from $${b}", c.dataDir)
	}
	if c.opts.SharedStrategies["g"] != "sticky" {
		t.Errorf("shared_strategies = %v", c.opts.SharedStrategies)
	}
}

func TestConfigEnvErrors(t *testing.T) {
	cases := []struct{ file, want1, want2 string }{
		{"mqtt: ${BEACON_TEST_UNSET}\n", "key mqtt", "environment variable BEACON_TEST_UNSET"},
		{"mqtt: ${1BAD}\n", "key mqtt", "${1BAD}"},
		{"admin_token: ${}\n", "key admin_token", "${}"},
	}
	for _, tc := range cases {
		_, err := loadConfig([]string{"--config", writeConfig(t, tc.file)}, &bytes.Buffer{})
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want1) || !strings.Contains(err.Error(), tc.want2) {
			t.Errorf("file %q: err %v, want a usage error naming %q and %q", tc.file, err, tc.want1, tc.want2)
		}
	}
}

// The admin token comes from BEACON_ADMIN_TOKEN unless the file or a flag
// sets it.
func TestConfigAdminTokenEnv(t *testing.T) {
	t.Setenv(adminTokenEnv, "from-env")
	c, err := loadConfig(nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.opts.AdminToken != "from-env" {
		t.Errorf("token %q, want from-env", c.opts.AdminToken)
	}
	p := writeConfig(t, "admin_token: from-file\n")
	if c, err = loadConfig([]string{"--config", p}, &bytes.Buffer{}); err != nil || c.opts.AdminToken != "from-file" {
		t.Errorf("file: token %q err %v, want from-file", c.opts.AdminToken, err)
	}
	if c, err = loadConfig([]string{"--config", p, "--admin-token", "from-flag"}, &bytes.Buffer{}); err != nil || c.opts.AdminToken != "from-flag" {
		t.Errorf("flag: token %q err %v, want from-flag", c.opts.AdminToken, err)
	}
	// A bad token is reported with where it came from.
	t.Setenv(adminTokenEnv, "two words")
	_, err = loadConfig(nil, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "environment variable "+adminTokenEnv) || !strings.Contains(err.Error(), "AdminToken") {
		t.Errorf("err %v, want it to name %s", err, adminTokenEnv)
	}
	// The token never shows in -h.
	t.Setenv(adminTokenEnv, "from-env")
	var help bytes.Buffer
	loadConfig([]string{"-h"}, &help)
	if strings.Contains(help.String(), "from-env") {
		t.Errorf("serve -h shows the token:\n%s", help.String())
	}
}

func TestConfigLogFormat(t *testing.T) {
	c, err := loadConfig([]string{"--log-format", "json", "--log-level", "warn"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	l := newLogger(&buf, c)
	l.Info("hidden")
	l.Warn("shown", "client", "c1")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("log output %q is not one JSON object: %v", buf.String(), err)
	}
	if rec["msg"] != "shown" || rec["client"] != "c1" || rec["level"] != "WARN" {
		t.Errorf("log record %v", rec)
	}
	c, _ = loadConfig(nil, &bytes.Buffer{})
	buf.Reset()
	newLogger(&buf, c).Info("text", "k", "v")
	if !strings.Contains(buf.String(), `msg=text k=v`) {
		t.Errorf("default text log: %q", buf.String())
	}
	if _, err := loadConfig([]string{"--config", writeConfig(t, "log_format: xml\n")}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "key log_format") {
		t.Errorf("log_format xml: %v", err)
	}
}

// beacon serve --check validates the configuration and exits: 0 valid, 2
// invalid with the key named; it starts nothing.
func TestServeCheck(t *testing.T) {
	good := writeConfig(t, "mqtt: 127.0.0.1:1\nmax_qos: 1\n")
	code, out := runBeacon(t, "serve", "--check", "--config", good)
	if code != 0 || !strings.Contains(out, "configuration is valid") {
		t.Errorf("--check on a good file: exit %d\n%s", code, out)
	}
	for file, key := range map[string]string{
		"max_qos: 3\n":                   "max_qos",
		"log_format: xml\n":              "log_format",
		"mqtt: ${BEACON_TEST_UNSET_X}\n": "BEACON_TEST_UNSET_X",
		"max_inflight: 0\n":              "max_inflight",
		"no_such_key: 1\n":               "no_such_key",
		// Files the broker reads when it is built are checked too.
		"password_file: /nonexistent/beacon-pw\n": "/nonexistent/beacon-pw",
	} {
		code, out := runBeacon(t, "serve", "--check", "--config", writeConfig(t, file))
		if code != 2 || !strings.Contains(out, key) {
			t.Errorf("--check on %q: exit %d, want 2 and a message naming %s:\n%s", file, code, key, out)
		}
	}
}

// deploy/beacon.yaml works as written: --check accepts it, and the broker
// starts with it (listeners and data dir moved to the test's).
func TestDeployExampleConfig(t *testing.T) {
	cfg, err := filepath.Abs("../../deploy/beacon.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if code, out := runBeacon(t, "serve", "--check", "--config", cfg); code != 0 {
		t.Fatalf("--check deploy/beacon.yaml: exit %d\n%s", code, out)
	}
	unit, err := os.ReadFile("../../deploy/beacon.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"serve --config /etc/beacon/beacon.yaml", "StateDirectory=beacon", "LimitNOFILE=", "Restart=on-failure", "DynamicUser=yes", "ExecReload=/bin/kill -HUP $MAINPID"} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("deploy/beacon.service lacks %q", want)
		}
	}
	data := filepath.Join(t.TempDir(), "data")
	p := startBeaconJSON(t, "serve", "--config", cfg, "--data", data,
		"--mqtt", "127.0.0.1:0", "--ws", "127.0.0.1:0", "--http", "127.0.0.1:0")
	waitHealthy(t, p.http)
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// startBeaconJSON is startBeacon for a broker logging JSON: it finds the
// bound addresses in the "beacon started" record.
func startBeaconJSON(t *testing.T, args ...string) *beaconProc {
	t.Helper()
	p := &beaconProc{stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = execBeacon(t, args...)
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
		for _, line := range strings.Split(p.stderr.String(), "\n") {
			var rec struct{ Msg, MQTT, WS, HTTP string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "beacon started" {
				p.mqtt, p.ws, p.http = rec.MQTT, rec.WS, rec.HTTP
				return nil
			}
		}
		return errors.New(`no JSON "beacon started" record yet`)
	})
	return p
}

// An admin token from the environment protects the admin API of the real
// binary; /metrics and the health checks stay open.
func TestServeAdminTokenAndMetrics(t *testing.T) {
	t.Setenv(adminTokenEnv, "env-token")
	p := startBeacon(t, memoryServe...)
	if strings.Contains(p.stderr.String(), "answers loopback clients only") {
		t.Error("warned about a missing admin token although one is set")
	}
	get := func(path, token string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+p.http+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/api/v1/server", ""); code != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", code)
	}
	if code, _ := get("/api/v1/server", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong token: %d, want 401", code)
	}
	code, body := get("/api/v1/server", "env-token")
	if code != http.StatusOK || !strings.Contains(body, `"storage"`) {
		t.Errorf("with the token: %d %s", code, body)
	}
	if code, body := get("/readyz", ""); code != http.StatusOK {
		t.Errorf("/readyz: %d %s", code, body)
	}

	// A connection moves the metrics; Go and process collectors are there.
	cc, _, err := dialCrash(t.Context(), p.mqtt, packets.V5, &packets.Connect{ClientID: "metrics-client", CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.c.Close()
	eventually(t, 5*time.Second, func() error {
		_, m := get("/metrics", "")
		for _, want := range []string{"\nbeacon_connections_current 1\n", "\ngo_goroutines ", "\nprocess_resident_memory_bytes ", "\nbeacon_uptime_seconds "} {
			if !strings.Contains(m, want) {
				return fmt.Errorf("/metrics lacks %q", strings.TrimSpace(want))
			}
		}
		return nil
	})
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// Without a token the broker says at start that the admin API is for
// loopback clients only.
func TestServeNoTokenWarning(t *testing.T) {
	t.Setenv(adminTokenEnv, "") // empty counts as unset
	p := startBeacon(t, memoryServe...)
	eventually(t, 5*time.Second, func() error {
		if !strings.Contains(p.stderr.String(), "answers loopback clients only") {
			return errors.New("no warning about the admin API without a token")
		}
		return nil
	})
	p.stop(t, syscall.SIGTERM)
}

// SIGHUP reloads without dropping connections: a client connected before
// it still gets PINGRESP after it, and the broker logs the reload.
func TestServeSIGHUP(t *testing.T) {
	p := startBeacon(t, memoryServe...)
	cc, _, err := dialCrash(t.Context(), p.mqtt, packets.V311, &packets.Connect{ClientID: "hup-client", CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.c.Close()
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		if s := p.stderr.String(); !strings.Contains(s, "reloaded on SIGHUP") && !strings.Contains(s, "reload on SIGHUP failed") {
			return errors.New("no reload record in the log")
		}
		return nil
	})
	select {
	case <-p.done:
		t.Fatalf("beacon exited on SIGHUP: %v", p.err)
	default:
	}
	if err := cc.send(&packets.Pingreq{}); err != nil {
		t.Fatalf("connection dropped by SIGHUP: %v", err)
	}
	cc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if pk, err := cc.r.Read(); err != nil {
		t.Fatalf("connection dropped by SIGHUP: %v", err)
	} else if _, ok := pk.(*packets.Pingresp); !ok {
		t.Fatalf("got %T, want PINGRESP", pk)
	}
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// execBeacon returns the command running the binary with args in a
// temporary working directory.
func execBeacon(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(beaconBin, args...)
	cmd.Dir = t.TempDir()
	return cmd
}

// The example in docs/configuration.md is a valid configuration.
func TestConfigDocExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	i := strings.Index(text, "## Example")
	j := strings.Index(text[max(i, 0):], "```yaml\n")
	if i < 0 || j < 0 {
		t.Fatal("no ```yaml block under ## Example in docs/configuration.md")
	}
	block := text[i+j+len("```yaml\n"):]
	block = block[:strings.Index(block, "```")]
	t.Setenv("BEACON_TOKEN", "doc-token")
	c, err := loadConfig([]string{"--config", writeConfig(t, block)}, &bytes.Buffer{})
	if err != nil {
		t.Fatalf("the documented example is refused: %v\n%s", err, block)
	}
	if c.opts.AdminToken != "doc-token" || c.logFormat != "json" {
		t.Errorf("admin token %q, log format %q", c.opts.AdminToken, c.logFormat)
	}
}
