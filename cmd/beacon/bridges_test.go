package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestBridgesConfig(t *testing.T) {
	t.Setenv("TEST_HOOK_TOKEN", "tok")
	p := writeConfig(t, `
storage: memory
bridges:
  - name: hook
    type: http
    topics: ["a/#", "b/+"]
    ordered: true
    concurrency: 3
    window: 50
    start: earliest
    auto_replay: false
    cursor_interval: 250ms
    retry:
      initial_backoff: 10ms
      max_backoff: 2s
      multiplier: 3
      jitter: 0
      max_attempts: 0
    http:
      url: http://127.0.0.1:9/x
      timeout: 2s
      headers: {X-Api-Key: k}
      bearer_token_env: TEST_HOOK_TOKEN
      retry_4xx: true
  - name: plain
    type: http
    topics: [c]
    http: {url: "https://example.invalid/in"}
`)
	c, err := loadConfig([]string{"--config", p}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.bridges) != 2 {
		t.Fatalf("%d bridges", len(c.bridges))
	}
	b := c.bridges[0]
	if b.Name != "hook" || !b.Ordered || b.Concurrency != 3 || b.Window != 50 || b.Start != "earliest" ||
		b.AutoReplay == nil || *b.AutoReplay || b.CursorInterval != 250*time.Millisecond || len(b.Topics) != 2 {
		t.Errorf("bridge %+v", b)
	}
	r := b.Retry
	if r.InitialBackoff != 10*time.Millisecond || r.MaxBackoff != 2*time.Second || r.Multiplier != 3 || r.Jitter != 0 || r.MaxAttempts != 0 {
		t.Errorf("retry %+v", r)
	}
	h := b.HTTP
	if h.URL != "http://127.0.0.1:9/x" || h.Timeout != 2*time.Second || h.Headers["X-Api-Key"] != "k" || h.BearerToken != "tok" || !h.Retry4xx {
		t.Errorf("http %+v", h)
	}
	if c.bridges[1].Name != "plain" || c.bridges[1].HTTP.URL != "https://example.invalid/in" {
		t.Errorf("second bridge %+v", c.bridges[1])
	}
}

// Every mistake is a usage error naming the bridge and the key.
func TestBridgesConfigErrors(t *testing.T) {
	t.Setenv("TEST_MISSING_TOKEN", "")
	for _, tc := range []struct{ body, want string }{
		{"bridges: 3", "key bridges: want a list"},
		{"bridges:\n  - 3", "bridges[0]: want a mapping"},
		{"bridges:\n  - name: w\n    type: http\n    topics: [a]\n    htp: {url: http://x}", "bridge w: line 5: unknown key htp"},
		{"bridges:\n  - name: w\n    type: http\n    topics: [a]\n    http: {url: http://x, timeot: 1s}", "bridge w: line 5: unknown key http.timeot"},
		{"bridges:\n  - name: w\n    type: http\n    topics: [a]\n    http: {url: 'ftp://x'}", "bridge w: http.url:"},
		{"bridges:\n  - name: w\n    type: http\n    topics: [a]\n    http: {url: 'http://x', bearer_token_env: TEST_MISSING_TOKEN}", "bridge w: http.bearer_token_env: the environment variable TEST_MISSING_TOKEN"},
		{"bridges:\n  - name: w\n    type: http\n    http: {url: 'http://x'}", "bridge w: topics: missing"},
		{"bridges:\n  - name: w\n    type: http\n    topics: [a]\n    concurrency: many\n    http: {url: 'http://x'}", "bridge w: line 5: cannot unmarshal"},
		{"bridges:\n  - name: w\n    type: http\n    topics: [a]\n    retry: {jitter: 1.5}\n    http: {url: 'http://x'}", "bridge w: retry.jitter"},
		{"bridges:\n  - name: w\n    type: http\n    topics: [a]\n    retry: {max_backoff: soon}\n    http: {url: 'http://x'}", "bridge w:"},
		{"bridges:\n  - name: w\n    type: smtp\n    topics: [a]", "bridge w: type:"},
		{"bridges:\n  - name: a/b\n    type: http\n    topics: [a]\n    http: {url: 'http://x'}", "name:"},
		{"bridges:\n  - {name: w, type: http, topics: [a], http: {url: 'http://x'}}\n  - {name: w, type: http, topics: [b], http: {url: 'http://y'}}", "name: \"w\" is used by the bridge on line 2 too"},
		{"bridges:\n  - {name: w, type: mqtt, topics: [a]}", "bridge w: mqtt: missing"},
		{"bridges:\n  - {name: w, type: mqtt, topics: [a], mqtt: {url: 'http://x'}}", "bridge w: mqtt.url"},
		{"bridges:\n  - {name: w, type: mqtt, direction: in, mqtt: {url: 'mqtt://127.0.0.1:1'}}", "bridge w: mqtt.subscribe"},
		{"bridges: []\nbridges: []", "repeated"},
	} {
		p := writeConfig(t, tc.body)
		_, err := loadConfig([]string{"--config", p}, &bytes.Buffer{})
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %q:\n got %v\nwant a usage error containing %q", tc.body, err, tc.want)
		}
	}
}

// docsExample returns the YAML block of docs/bridges.md that the doc says
// works as written.
func docsExample(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "bridges.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- beacon.yaml:[^>]*-->\n```yaml\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/bridges.md has no marked beacon.yaml block")
	}
	return string(m[1])
}

// The example configuration of docs/bridges.md loads as written.
func TestBridgesDocExample(t *testing.T) {
	t.Setenv("WAREHOUSE_TOKEN", "w-token")
	t.Setenv("LOGISTICS_PASSWORD", "l-password")
	p := writeConfig(t, docsExample(t))
	c, err := loadConfig([]string{"--config", p}, &bytes.Buffer{})
	if err != nil {
		t.Fatalf("docs/bridges.md example: %v", err)
	}
	if len(c.bridges) != 2 || c.bridges[0].Name != "warehouse" || c.bridges[1].Name != "logistics" ||
		c.bridges[0].HTTP.BearerToken != "w-token" || c.bridges[1].MQTT == nil {
		t.Fatalf("bridges %+v", c.bridges)
	}
	// And the binary agrees, with --check.
	if code, out := runBeacon(t, "serve", "--config", p, "--check"); code != 0 {
		t.Fatalf("beacon serve --check: exit %d\n%s", code, out)
	}
}
