package main

import (
	"bytes"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/beaconmq/beacon/mqtt"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "beacon.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigDefaults(t *testing.T) {
	c, err := loadConfig(nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	def := mqtt.DefaultOptions()
	if c.opts.MQTTAddr != ":1883" || c.opts.WSAddr != ":8083" || c.opts.HTTPAddr != ":8080" {
		t.Errorf("default addresses %q %q %q", c.opts.MQTTAddr, c.opts.WSAddr, c.opts.HTTPAddr)
	}
	if !reflect.DeepEqual(c.opts, def) {
		t.Errorf("defaults differ from mqtt.DefaultOptions:\n%+v\n%+v", c.opts, def)
	}
	if c.dataDir != "./data" || c.storage != "badger" || c.logLevel != slog.LevelInfo {
		t.Errorf("data %q storage %q level %v", c.dataDir, c.storage, c.logLevel)
	}
}

func TestConfigFileAndFlagOverride(t *testing.T) {
	p := writeConfig(t, `
# comment
mqtt: 127.0.0.1:1999
ws: ""          # disabled
http:           # null disables too
data: /tmp/beacon-data
storage: memory
log_level: debug
max_packet_size: 65536
connect_timeout: 3s
max_keepalive: 120
max_queued_messages: 50
retain_available: false
max_qos: 1
sys_interval: 0s
shared_strategy: sticky
shared_strategies:
  orders: hash_key
  telemetry: random
`)
	c, err := loadConfig([]string{"--config", p, "--mqtt", "127.0.0.1:2000", "--max-qos=2", "--retain-available", "--shared-strategies", "a=random,b=sticky"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	o := c.opts
	checks := []struct {
		name      string
		got, want any
	}{
		{"mqtt (flag overrides file)", o.MQTTAddr, "127.0.0.1:2000"},
		{"ws", o.WSAddr, ""},
		{"http", o.HTTPAddr, ""},
		{"data", c.dataDir, "/tmp/beacon-data"},
		{"storage", c.storage, "memory"},
		{"log_level", c.logLevel, slog.LevelDebug},
		{"max_packet_size", o.MaxPacketSize, uint32(65536)},
		{"connect_timeout", o.ConnectTimeout, 3 * time.Second},
		{"max_keepalive", o.MaxKeepAlive, uint16(120)},
		{"max_queued_messages", o.MaxQueuedMessages, 50},
		{"retain_available (bare bool flag overrides file)", o.RetainAvailable, true},
		{"max_qos (flag overrides file)", o.MaxQoS, byte(2)},
		{"sys_interval", o.SysInterval, time.Duration(0)},
		{"shared_strategy", o.SharedStrategy, "sticky"},
		{"shared_strategies (flag overrides file)", o.SharedStrategies, map[string]string{"a": "random", "b": "sticky"}},
		{"untouched default", o.MaxInflight, mqtt.DefaultOptions().MaxInflight},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestConfigFileMapping(t *testing.T) {
	p := writeConfig(t, "shared_strategies:\n  orders: hash_key\n")
	c, err := loadConfig([]string{"--config", p}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.opts.SharedStrategies, map[string]string{"orders": "hash_key"}) {
		t.Errorf("shared_strategies = %v", c.opts.SharedStrategies)
	}
}

func TestConfigEmptyFile(t *testing.T) {
	for _, text := range []string{"", "# only a comment\n"} {
		if _, err := loadConfig([]string{"--config", writeConfig(t, text)}, &bytes.Buffer{}); err != nil {
			t.Errorf("config %q: %v", text, err)
		}
	}
}

// Every mistake is a usage error whose message names the flag or key.
func TestConfigErrorsNameTheSetting(t *testing.T) {
	cases := []struct {
		name   string
		file   string // "" = no config file
		args   []string
		expect []string
	}{
		{"unknown key", "mqtt: :1883\nmqtt_addr: :1884\n", nil, []string{"unknown key", `"mqtt_addr"`, "line 2"}},
		{"dash key hint", "max-qos: 1\n", nil, []string{`"max-qos"`, "did you mean max_qos"}},
		{"repeated key", "max_qos: 1\nmax_qos: 2\n", nil, []string{"max_qos", "repeated"}},
		{"bad number in file", "max_packet_size: abc\n", nil, []string{"key max_packet_size", `"abc"`}},
		{"number too big", "max_keepalive: 70000\n", nil, []string{"key max_keepalive", "65535"}},
		{"bad duration", "connect_timeout: 10\n", nil, []string{"key connect_timeout", "duration"}},
		{"list for scalar", "mqtt: [a, b]\n", nil, []string{"key mqtt", "single value"}},
		{"not a mapping", "- a\n- b\n", nil, []string{"mapping"}},
		{"invalid yaml", "mqtt: [\n", nil, []string{"config file"}},
		{"bad storage flag", "", []string{"--storage", "sqlite"}, []string{"flag --storage", "memory or badger"}},
		{"bad log level", "", []string{"--log-level", "loud"}, []string{"flag --log-level"}},
		{"unknown flag", "", []string{"--mqtt-addr", "x"}, []string{"mqtt-addr"}},
		{"stray argument", "", []string{"extra"}, []string{`"extra"`}},
		{"missing file", "", []string{"--config", "/nonexistent/beacon.yaml"}, []string{"/nonexistent/beacon.yaml"}},
		// Range checks done by mqtt.Options.Validate name the setting too.
		{"validate via flag", "", []string{"--max-qos", "3"}, []string{"flag --max-qos", "MaxQoS"}},
		{"validate via file", "max_packet_size: 10\n", nil, []string{"key max_packet_size", "MaxPacketSize"}},
		{"validate address", "", []string{"--mqtt", "nonsense"}, []string{"flag --mqtt"}},
		{"validate strategy", "shared_strategies:\n  g: fastest\n", nil, []string{"key shared_strategies", "fastest"}},
		{"both listeners off", "", []string{"--mqtt", "", "--ws", ""}, []string{"--mqtt", "--ws"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				args = append([]string{"--config", writeConfig(t, tc.file)}, args...)
			}
			_, err := loadConfig(args, &bytes.Buffer{})
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Fatalf("err = %v, want a usage error", err)
			}
			for _, want := range tc.expect {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestConfigHelp(t *testing.T) {
	var out bytes.Buffer
	_, err := loadConfig([]string{"-h"}, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"-max-packet-size", "-storage", "(default badger)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, out.String())
		}
	}
}

// Every field of mqtt.Options that a user can set has a flag and key, so a
// limit added to the broker is not silently unconfigurable.
func TestEveryOptionHasASetting(t *testing.T) {
	covered := map[string]bool{"Store": true, "Logger": true} // set by serve itself
	// Hooks for programs embedding the broker; the files are the settings.
	covered["Authenticator"], covered["Authorizer"] = true, true
	for _, s := range defaultConfig().settings() {
		if s.field != "" {
			covered[s.field] = true
		}
	}
	typ := reflect.TypeOf(mqtt.Options{})
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.IsExported() && !covered[f.Name] {
			t.Errorf("mqtt.Options.%s has no flag/config key in cmd/beacon/config.go", f.Name)
		}
	}
}

// docs/configuration.md documents every flag and key.
func TestEverySettingDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(doc), "\n")
	for _, s := range defaultConfig().settings() {
		// The table row of the setting: | `--name ARG` | `key` | default | ...
		var row string
		for _, l := range lines {
			if strings.HasPrefix(l, "| `--"+s.name+" ") || strings.HasPrefix(l, "| `--"+s.name+"`") {
				row = l
				break
			}
		}
		if row == "" {
			t.Errorf("docs/configuration.md has no table row for --%s", s.name)
			continue
		}
		cells := strings.Split(row, "|")
		if len(cells) < 5 {
			t.Errorf("row for --%s has too few cells: %s", s.name, row)
			continue
		}
		if key := strings.TrimSpace(cells[2]); key != "`"+s.key()+"`" {
			t.Errorf("row for --%s names key %s, want `%s`", s.name, key, s.key())
		}
		wantDef := "`" + s.get() + "`"
		if s.get() == "" {
			wantDef = "none"
		}
		if def := strings.TrimSpace(cells[3]); def != wantDef {
			t.Errorf("row for --%s documents default %s, the binary's is %s", s.name, def, wantDef)
		}
	}
}
