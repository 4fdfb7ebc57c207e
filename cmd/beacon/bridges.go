package main

import (
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/beaconmq/beacon/bridge"
	"github.com/beaconmq/beacon/mqtt"
	"github.com/beaconmq/beacon/storage"
)

// The bridges: key of the configuration file is a list of bridges
// (docs/bridges.md). Unlike the other keys it has no flag: a bridge is a
// structure, not a value. Every mistake names the bridge and the key.

// fileBridge is one item of bridges: as written in the file.
type fileBridge struct {
	Name           string             `yaml:"name"`
	Type           string             `yaml:"type"`
	Direction      string             `yaml:"direction"`
	Topics         []string           `yaml:"topics"`
	Ordered        bool               `yaml:"ordered"`
	Concurrency    int                `yaml:"concurrency"`
	Window         int                `yaml:"window"`
	Start          string             `yaml:"start"`
	AutoReplay     *bool              `yaml:"auto_replay"`
	CursorInterval time.Duration      `yaml:"cursor_interval"`
	Retry          fileRetry          `yaml:"retry"`
	HTTP           *fileHTTP          `yaml:"http"`
	MQTT           *bridge.MQTTConfig `yaml:"mqtt"`
}

type fileRetry struct {
	InitialBackoff time.Duration `yaml:"initial_backoff"`
	MaxBackoff     time.Duration `yaml:"max_backoff"`
	Multiplier     float64       `yaml:"multiplier"`
	Jitter         *float64      `yaml:"jitter"`
	MaxAttempts    *int          `yaml:"max_attempts"`
}

type fileHTTP struct {
	URL            string            `yaml:"url"`
	Timeout        time.Duration     `yaml:"timeout"`
	Headers        map[string]string `yaml:"headers"`
	BearerTokenEnv string            `yaml:"bearer_token_env"`
	Retry4xx       bool              `yaml:"retry_4xx"`
	HealthURL      string            `yaml:"health_url"`
	CAFile         string            `yaml:"ca_file"`
	CertFile       string            `yaml:"cert_file"`
	KeyFile        string            `yaml:"key_file"`
}

// loadBridges parses the value of the bridges: key (node v, key node k) of
// the file at path into c.bridges. Environment variables named by the file
// (bearer_token_env) are read here: only cmd/ reads the environment.
func (c *config) loadBridges(path string, k, v *yaml.Node) error {
	where := fmt.Sprintf("config file %s: line %d: key bridges", path, k.Line)
	if first, dup := c.source["bridges"]; dup {
		return usagef("%s: repeated (first as %s)", where, first)
	}
	c.source["bridges"] = fmt.Sprintf("key bridges on line %d", k.Line)
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return nil // bridges: with nothing under it
	}
	if v.Kind != yaml.SequenceNode {
		return usagef("%s: want a list of bridges (- name: …)", where)
	}
	names := map[string]int{}
	for i, item := range v.Content {
		label := fmt.Sprintf("config file %s: line %d: bridges[%d]", path, item.Line, i)
		if item.Kind != yaml.MappingNode {
			return usagef("%s: want a mapping (name:, type:, …)", label)
		}
		if name := mappingValue(item, "name"); name != "" {
			label = fmt.Sprintf("config file %s: line %d: bridge %s", path, item.Line, name)
		}
		if err := checkKeys(item, reflect.TypeOf(fileBridge{}), ""); err != nil {
			return usagef("%s: %v", label, err)
		}
		var fb fileBridge
		if err := item.Decode(&fb); err != nil {
			return usagef("%s: %v", label, strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n  "))
		}
		if first, dup := names[fb.Name]; dup && fb.Name != "" {
			return usagef("%s: name: %q is used by the bridge on line %d too", label, fb.Name, first)
		}
		names[fb.Name] = item.Line
		bc, err := fb.config()
		if err != nil {
			return usagef("%s: %v", label, err)
		}
		if err := bc.Validate(); err != nil {
			lines := strings.Split(err.Error(), "\n")
			return usagef("%s: %s", label, strings.Join(lines, "\n  "))
		}
		c.bridges = append(c.bridges, bc)
	}
	return nil
}

// config turns the file's form into a bridge.Config, reading the secrets
// from the environment.
func (fb *fileBridge) config() (bridge.Config, error) {
	bc := bridge.Config{
		Name: fb.Name, Type: fb.Type, Direction: fb.Direction, Topics: fb.Topics,
		Ordered: fb.Ordered, Concurrency: fb.Concurrency, Window: fb.Window, Start: fb.Start,
		AutoReplay: fb.AutoReplay, CursorInterval: fb.CursorInterval, MQTT: fb.MQTT,
		Retry: bridge.RetryPolicy{
			InitialBackoff: fb.Retry.InitialBackoff,
			MaxBackoff:     fb.Retry.MaxBackoff,
			Multiplier:     fb.Retry.Multiplier,
		},
	}
	if fb.Retry.Jitter != nil {
		bc.Retry.SetJitter(*fb.Retry.Jitter)
	}
	if fb.Retry.MaxAttempts != nil {
		bc.Retry.SetMaxAttempts(*fb.Retry.MaxAttempts)
	}
	if h := fb.HTTP; h != nil {
		bc.HTTP = &bridge.HTTPConfig{URL: h.URL, Timeout: h.Timeout, Headers: h.Headers, Retry4xx: h.Retry4xx, HealthURL: h.HealthURL,
			CAFile: h.CAFile, CertFile: h.CertFile, KeyFile: h.KeyFile}
		if h.BearerTokenEnv != "" {
			tok := os.Getenv(h.BearerTokenEnv)
			if tok == "" {
				return bc, fmt.Errorf("http.bearer_token_env: the environment variable %s is not set or empty: export it with the token", h.BearerTokenEnv)
			}
			bc.HTTP.BearerToken = tok
		}
	}
	return bc, nil
}

// mappingValue returns the scalar value of key in mapping node n, or "".
func mappingValue(n *yaml.Node, key string) string {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key && n.Content[i+1].Kind == yaml.ScalarNode {
			return n.Content[i+1].Value
		}
	}
	return ""
}

// checkKeys reports the first key of mapping node n (and of the mappings
// under it) that has no field in struct type t, and repeated keys, naming
// the key by its dotted path and line.
func checkKeys(n *yaml.Node, t reflect.Type, prefix string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind != yaml.MappingNode || t.Kind() != reflect.Struct {
		return nil
	}
	fields := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag != "" && tag != "-" {
			fields[tag] = f.Type
		}
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		ft, ok := fields[k.Value]
		if !ok {
			known := make([]string, 0, len(fields))
			for name := range fields {
				known = append(known, prefix+name)
			}
			return fmt.Errorf("line %d: unknown key %s%s (known here: %s)", k.Line, prefix, k.Value, strings.Join(sorted(known), ", "))
		}
		if first, dup := seen[k.Value]; dup {
			return fmt.Errorf("line %d: key %s%s repeated (first on line %d)", k.Line, prefix, k.Value, first)
		}
		seen[k.Value] = k.Line
		if err := checkKeys(v, ft, prefix+k.Value+"."); err != nil {
			return err
		}
	}
	return nil
}

func sorted(s []string) []string {
	slices.Sort(s)
	return s
}

// newBridgeManager builds the bridges of c on srv (before srv.Start): log
// holds, dead-letter replayers, GET /api/v1/bridges and the bridge
// metrics. serve starts it after srv.Start and stops it before
// srv.Shutdown.
func newBridgeManager(c *config, srv *mqtt.Server, store storage.Store, logger *slog.Logger) (*bridge.Manager, error) {
	m, err := bridge.NewManager(srv, store, c.bridges, logger)
	if err != nil {
		return nil, err
	}
	if err := m.Register(srv.HandleAdmin, srv.MetricsRegistry()); err != nil {
		return nil, err
	}
	return m, nil
}
