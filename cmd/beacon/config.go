package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/beaconmq/beacon/bridge"
	"github.com/beaconmq/beacon/mqtt"
)

// Configuration of `beacon serve` comes from three layers, each overriding
// the one before: the built-in defaults (mqtt.DefaultOptions plus data dir,
// storage and log level), the YAML file named by --config, and flags. Every
// setting has one flag and one file key: the key is the flag name with '_'
// for '-' (--max-packet-size, max_packet_size). A bad value, an unknown key
// or an unknown flag is a usage error (exit code 2) whose message names the
// flag or key, as the user wrote it.

// config is everything serve needs.
type config struct {
	opts    mqtt.Options
	dataDir string
	storage string
	// durability is the badger store's durability mode: sync, batch or none.
	durability string
	// diskReserve is the free space the badger store keeps on the data
	// dir's filesystem: below it, new messages are refused with ErrFull
	// (0 = no reserve).
	diskReserve int64
	logLevel    slog.Level
	// logFormat is the log output format: text or json.
	logFormat string
	// check asks serve to validate the configuration and exit.
	check bool
	// memoryLimit is the Go runtime's soft memory limit in bytes (0 =
	// none); see memlimit.go.
	memoryLimit int64
	// bridges is the file's bridges: list (bridges.go).
	bridges []bridge.Config

	// source says where each setting's value came from ("flag --x" or
	// "key x in FILE"), for error messages; unset settings are absent.
	source map[string]string
}

func defaultConfig() *config {
	return &config{
		opts:        mqtt.DefaultOptions(),
		dataDir:     "./data",
		storage:     "badger",
		durability:  "sync",
		diskReserve: defaultDiskReserve,
		logLevel:    slog.LevelInfo,
		logFormat:   "text",
		memoryLimit: defaultMemoryLimit,
		source:      map[string]string{},
	}
}

// usageError is a configuration or command line mistake: exit code 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// setting is one configurable value: a flag, a file key, and the code that
// parses and stores it.
type setting struct {
	name   string // flag name; the file key is key()
	field  string // the mqtt.Options field it sets ("" for none), to name it in validation errors
	usage  string
	isBool bool
	set    func(v string) error            // parse and store a scalar (flag or file)
	setMap func(m map[string]string) error // file value that is a mapping (nil: scalar only)
	get    func() string                   // current value, shown as the default
}

// key is the configuration file key of s.
func (s *setting) key() string { return strings.ReplaceAll(s.name, "-", "_") }

// settings returns the table of every setting, bound to c.
func (c *config) settings() []*setting {
	o := &c.opts
	return []*setting{
		strSetting("mqtt", "MQTTAddr", "MQTT over TCP listen address, host:port (\"\" disables)", &o.MQTTAddr),
		strSetting("ws", "WSAddr", "MQTT over WebSocket listen address, path /mqtt (\"\" disables)", &o.WSAddr),
		strSetting("http", "HTTPAddr", "HTTP listen address for /healthz, /readyz, /metrics and the admin API /api/v1 (\"\" disables)", &o.HTTPAddr),
		{
			name: "data", usage: "data directory of the badger store",
			set: func(v string) error {
				if v == "" {
					return errors.New("must not be empty")
				}
				c.dataDir = v
				return nil
			},
			get: func() string { return c.dataDir },
		},
		{
			name: "storage", usage: "storage backend: memory or badger",
			set: func(v string) error {
				if v != "memory" && v != "badger" {
					return fmt.Errorf("%q is not a storage backend: use memory or badger", v)
				}
				c.storage = v
				return nil
			},
			get: func() string { return c.storage },
		},
		{
			name: "durability", usage: "badger durability: sync (fsync before PUBACK, group commit), batch (fsync every 10ms) or none",
			set: func(v string) error {
				switch v {
				case "sync", "batch", "none":
					c.durability = v
					return nil
				}
				return fmt.Errorf("%q is not a durability mode: use sync, batch or none", v)
			},
			get: func() string { return c.durability },
		},
		{
			name: "log-level", usage: "log level: debug, info, warn or error",
			set: func(v string) error {
				switch strings.ToLower(v) {
				case "debug":
					c.logLevel = slog.LevelDebug
				case "info":
					c.logLevel = slog.LevelInfo
				case "warn", "warning":
					c.logLevel = slog.LevelWarn
				case "error":
					c.logLevel = slog.LevelError
				default:
					return fmt.Errorf("%q is not a log level: use debug, info, warn or error", v)
				}
				return nil
			},
			get: func() string { return strings.ToLower(c.logLevel.String()) },
		},
		{
			name: "log-format", usage: "log format: text (key=value lines) or json (one object per line)",
			set: func(v string) error {
				switch strings.ToLower(v) {
				case "text", "json":
					c.logFormat = strings.ToLower(v)
					return nil
				}
				return fmt.Errorf("%q is not a log format: use text or json", v)
			},
			get: func() string { return c.logFormat },
		},
		{
			name: "admin-token", field: "AdminToken",
			usage: "bearer token of the admin API; prefer the environment variable " + adminTokenEnv + " (empty: the admin API answers loopback clients only)",
			set:   func(v string) error { o.AdminToken = v; return nil },
			get:   func() string { return o.AdminToken },
		},
		memoryLimitSetting(&c.memoryLimit),
		bytesSetting("disk-reserve", "", "free space the badger store keeps on the data dir's filesystem: below it new messages are refused (5.0: 0x97), e.g. 1GiB (0 = none)", &c.diskReserve),
		uintSetting("max-packet-size", "MaxPacketSize", "largest packet accepted, in bytes (advertised to 5.0 clients)", &o.MaxPacketSize),
		durSetting("connect-timeout", "ConnectTimeout", "how long a new connection may take to send CONNECT", &o.ConnectTimeout),
		uintSetting("max-keepalive", "MaxKeepAlive", "highest Keep Alive in seconds granted to 5.0 clients (0 = no cap)", &o.MaxKeepAlive),
		uintSetting("max-session-expiry", "MaxSessionExpiry", "highest Session Expiry Interval in seconds granted to 5.0 clients (0 = no cap)", &o.MaxSessionExpiry),
		uintSetting("receive-maximum", "ReceiveMaximum", "unacknowledged QoS 1/2 PUBLISH packets a 5.0 client may send", &o.ReceiveMaximum),
		uintSetting("max-inflight", "MaxInflight", "outbound inflight window per session", &o.MaxInflight),
		uintSetting("topic-alias-maximum", "TopicAliasMaximum", "highest topic alias a client may use (0 disables inbound aliases)", &o.TopicAliasMaximum),
		uintSetting("outbound-topic-aliases", "OutboundTopicAliases", "topic aliases the broker assigns per connection (0 disables)", &o.OutboundTopicAliases),
		intSetting("max-queued-messages", "MaxQueuedMessages", "QoS 1/2 messages queued per session (0 = unlimited)", &o.MaxQueuedMessages),
		intSetting("max-outbound-bytes", "MaxOutboundBytes", "outbound buffer per connection in bytes; QoS 0 beyond it is dropped and counted", &o.MaxOutboundBytes),
		durSetting("write-timeout", "WriteTimeout", "how long a write to a client may block before it is disconnected as a slow consumer", &o.WriteTimeout),
		boolSetting("retain-available", "RetainAvailable", "support retained messages", &o.RetainAvailable),
		uintSetting("max-qos", "MaxQoS", "highest QoS supported: 0, 1 or 2", &o.MaxQoS),
		durSetting("sys-interval", "SysInterval", "how often $SYS topics are published (0 disables)", &o.SysInterval),
		durSetting("log-gc-interval", "LogGCInterval", "how often log entries nothing needs any more are deleted (0 disables)", &o.LogGCInterval),
		durSetting("log-retention", "LogRetention", "remove log entries older than this even if still needed, dead-lettering what needed them (0 = no limit)", &o.LogRetention),
		bytesSetting("log-retention-bytes", "LogRetentionBytes", "keep at most this many message bytes on the log, oldest removed first and dead-lettered if still needed, e.g. 10GiB (0 = no limit)", &o.LogRetentionBytes),
		strSetting("shared-strategy", "SharedStrategy", "default shared subscription strategy: round_robin, random, sticky, hash_clientid, hash_topic or hash_key", &o.SharedStrategy),
		{
			name: "shared-strategies", field: "SharedStrategies",
			usage: "per-group shared subscription strategies, group=strategy[,group=strategy...] (file: a mapping)",
			set: func(v string) error {
				m := map[string]string{}
				for _, part := range strings.Split(v, ",") {
					part = strings.TrimSpace(part)
					if part == "" {
						continue
					}
					g, s, ok := strings.Cut(part, "=")
					if !ok || g == "" {
						return fmt.Errorf("%q is not group=strategy", part)
					}
					m[g] = s
				}
				o.SharedStrategies = m
				return nil
			},
			setMap: func(m map[string]string) error { o.SharedStrategies = m; return nil },
			get: func() string {
				groups := make([]string, 0, len(o.SharedStrategies))
				for g, s := range o.SharedStrategies {
					groups = append(groups, g+"="+s)
				}
				sort.Strings(groups)
				return strings.Join(groups, ",")
			},
		},
		intSetting("topic-cache-size", "TopicCacheSize", "entries of the topic match cache (0 disables it)", &o.TopicCacheSize),
		// TLS and limits (docs/security.md).
		strSetting("tls-addr", "TLSAddr", "MQTT over TLS listen address, e.g. :8883 (\"\" disables)", &o.TLSAddr),
		strSetting("wss-addr", "WSSAddr", "MQTT over WebSocket over TLS listen address, path /mqtt (\"\" disables)", &o.WSSAddr),
		strSetting("tls-cert-file", "TLSCertFile", "PEM server certificate (chain) of the TLS listeners; re-read on SIGHUP", &o.TLSCertFile),
		strSetting("tls-key-file", "TLSKeyFile", "PEM private key of tls-cert-file; re-read on SIGHUP", &o.TLSKeyFile),
		strSetting("tls-ca-file", "TLSCAFile", "PEM CA certificates client certificates must chain to", &o.TLSCAFile),
		strSetting("tls-client-auth", "TLSClientAuth", "client certificates: none, request or require", &o.TLSClientAuth),
		boolSetting("tls-use-cn-as-username", "TLSUseCNAsUsername", "use a verified client certificate's Common Name as the username", &o.TLSUseCNAsUsername),
		strSetting("tls-min-version", "TLSMinVersion", "lowest TLS version accepted: 1.2 or 1.3", &o.TLSMinVersion),
		intSetting("max-connections", "MaxConnections", "open connections in total (0 = unlimited; CONNACK 0x97)", &o.MaxConnections),
		intSetting("max-connections-per-ip", "MaxConnectionsPerIP", "open connections per remote IP (0 = unlimited; CONNACK 0x97)", &o.MaxConnectionsPerIP),
		floatSetting("max-connect-rate-per-ip", "MaxConnectRatePerIP", "new connections per second per remote IP (0 = unlimited; CONNACK 0x9F)", &o.MaxConnectRatePerIP),
		intSetting("connect-burst-per-ip", "ConnectBurstPerIP", "connections a remote IP may open at once before max-connect-rate-per-ip applies (0 = one second's worth)", &o.ConnectBurstPerIP),
		floatSetting("max-publish-rate", "MaxPublishRate", "PUBLISH packets per second per connection (0 = unlimited; 5.0 QoS 1/2: PUBACK 0x97)", &o.MaxPublishRate),
		intSetting("publish-burst", "PublishBurst", "PUBLISH packets a connection may send at once before max-publish-rate applies (0 = one second's worth)", &o.PublishBurst),
		intSetting("max-queued-bytes", "MaxQueuedBytes", "topic and payload bytes of QoS 1/2 deliveries queued per session (0 = unlimited)", &o.MaxQueuedBytes),
		intSetting("max-subscriptions-per-client", "MaxSubscriptionsPerClient", "subscriptions per session (0 = unlimited; SUBACK 0x97)", &o.MaxSubscriptionsPerClient),
		intSetting("max-topic-length", "MaxTopicLength", "longest topic name or filter in bytes (0 = the protocol's 65535)", &o.MaxTopicLength),
		intSetting("max-topic-levels", "MaxTopicLevels", "most levels in a topic name or filter (0 = unlimited)", &o.MaxTopicLevels),
		// Authentication and authorization (docs/security.md).
		strSetting("password-file", "PasswordFile", "password file of user:hash lines (beacon passwd FILE USER); re-read on SIGHUP", &o.PasswordFile),
		strSetting("acl-file", "ACLFile", "ACL file of allow/deny rules (default deny once set); re-read on SIGHUP", &o.ACLFile),
		boolSetting("allow-anonymous", "AllowAnonymous", "let clients without a user name connect when a password file is set", &o.AllowAnonymous),
		strSetting("acl-deny-action", "ACLDenyAction", "PUBLISH refused by the ACL: drop (5.0 QoS 1/2: 0x87) or disconnect", &o.ACLDenyAction),
	}
}

func strSetting(name, field, usage string, p *string) *setting {
	return &setting{name: name, field: field, usage: usage,
		set: func(v string) error { *p = v; return nil },
		get: func() string { return *p }}
}

func boolSetting(name, field, usage string, p *bool) *setting {
	return &setting{name: name, field: field, usage: usage, isBool: true,
		set: func(v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("%q is not true or false", v)
			}
			*p = b
			return nil
		},
		get: func() string { return strconv.FormatBool(*p) }}
}

func durSetting(name, field, usage string, p *time.Duration) *setting {
	return &setting{name: name, field: field, usage: usage,
		set: func(v string) error {
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("%q is not a duration (examples: 500ms, 10s, 2m)", v)
			}
			if d < 0 {
				return fmt.Errorf("%q is negative", v)
			}
			*p = d
			return nil
		},
		get: func() string { return p.String() }}
}

func uintSetting[T uint8 | uint16 | uint32](name, field, usage string, p *T) *setting {
	limit := uint64(^T(0))
	return &setting{name: name, field: field, usage: usage,
		set: func(v string) error {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil || n > limit {
				return fmt.Errorf("%q is not a whole number from 0 to %d", v, limit)
			}
			*p = T(n)
			return nil
		},
		get: func() string { return strconv.FormatUint(uint64(*p), 10) }}
}

func intSetting(name, field, usage string, p *int) *setting {
	return &setting{name: name, field: field, usage: usage,
		set: func(v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 || n > math.MaxInt32 {
				return fmt.Errorf("%q is not a whole number from 0 to %d", v, math.MaxInt32)
			}
			*p = int(n)
			return nil
		},
		get: func() string { return strconv.Itoa(*p) }}
}

func floatSetting(name, field, usage string, p *float64) *setting {
	return &setting{name: name, field: field, usage: usage,
		set: func(v string) error {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
				return fmt.Errorf("%q is not a number >= 0 (examples: 10, 0.5)", v)
			}
			*p = f
			return nil
		},
		get: func() string { return strconv.FormatFloat(*p, 'g', -1, 64) }}
}

// rawFlag collects a flag's value as written; values are applied after the
// configuration file so that flags override it.
type rawFlag struct {
	s      *setting
	def    string
	values *[]flagValue
}

type flagValue struct {
	s *setting
	v string
}

func (f rawFlag) String() string {
	if f.s == nil {
		return ""
	}
	return f.def
}
func (f rawFlag) Set(v string) error { *f.values = append(*f.values, flagValue{f.s, v}); return nil }
func (f rawFlag) IsBoolFlag() bool   { return f.s != nil && f.s.isBool }

// loadConfig builds the configuration from the serve command line args.
// It returns flag.ErrHelp when -h was asked for (usage already printed to
// out) and a *usageError for every mistake.
func loadConfig(args []string, out io.Writer) (*config, error) {
	c := defaultConfig()
	table := c.settings()

	fs := flag.NewFlagSet("beacon serve", flag.ContinueOnError)
	var flagBuf bytes.Buffer
	fs.SetOutput(&flagBuf)
	var configPath string
	fs.StringVar(&configPath, "config", "", "YAML configuration file; flags override its values")
	fs.BoolVar(&c.check, "check", false, "validate the configuration (file, flags, environment) and exit: 0 valid, 2 invalid")
	var values []flagValue
	for _, s := range table {
		fs.Var(rawFlag{s: s, def: s.get(), values: &values}, s.name, s.usage)
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: beacon serve [flags]\n\nEach flag --name-x can be set in the --config file as name_x.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			io.Copy(out, &flagBuf)
			return nil, err
		}
		return nil, usagef("%v (run \"beacon serve -h\" for the flags)", err)
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q: serve takes only flags", fs.Arg(0))
	}

	if configPath != "" {
		if err := c.loadFile(configPath, table); err != nil {
			return nil, err
		}
	}
	for _, fv := range values {
		if err := fv.s.set(fv.v); err != nil {
			return nil, usagef("flag --%s: %v", fv.s.name, err)
		}
		c.source[fv.s.name] = "flag --" + fv.s.name
	}
	if _, set := c.source["admin-token"]; !set {
		if tok, ok := os.LookupEnv(adminTokenEnv); ok && tok != "" {
			c.opts.AdminToken = tok
			c.source["admin-token"] = "environment variable " + adminTokenEnv
		}
	}
	if err := c.validate(table); err != nil {
		return nil, err
	}
	return c, nil
}

// loadFile applies the YAML file at path. The file is one mapping of keys
// to values; an unknown or repeated key is an error naming it.
func (c *config) loadFile(path string, table []*setting) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return usagef("config file: %v", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return usagef("config file %s: %v", path, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil // empty file
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil // only comments
	}
	if root.Kind != yaml.MappingNode {
		return usagef("config file %s: line %d: want a mapping of key: value", path, root.Line)
	}
	byKey := make(map[string]*setting, len(table))
	for _, s := range table {
		byKey[s.key()] = s
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Value == "bridges" { // a list, not a setting: bridges.go
			if err := c.loadBridges(path, k, v); err != nil {
				return err
			}
			continue
		}
		where := fmt.Sprintf("config file %s: line %d: key %s", path, k.Line, k.Value)
		s, ok := byKey[k.Value]
		if !ok {
			hint := ""
			if alt, ok := byKey[strings.ReplaceAll(k.Value, "-", "_")]; ok {
				hint = fmt.Sprintf(" (did you mean %s?)", alt.key())
			}
			return usagef("config file %s: line %d: unknown key %q%s; docs/configuration.md lists the keys", path, k.Line, k.Value, hint)
		}
		if first, dup := seen[k.Value]; dup {
			return usagef("%s: repeated (first on line %d)", where, first)
		}
		seen[k.Value] = k.Line
		switch {
		case v.Kind == yaml.MappingNode && s.setMap != nil:
			m := map[string]string{}
			if err := v.Decode(&m); err != nil {
				return usagef("%s: want a mapping of names to strings: %v", where, err)
			}
			for name, val := range m {
				if m[name], err = expandEnv(val); err != nil {
					return usagef("%s: %s: %v", where, name, err)
				}
			}
			if err := s.setMap(m); err != nil {
				return usagef("%s: %v", where, err)
			}
		case v.Kind == yaml.ScalarNode:
			val := v.Value
			if v.Tag == "!!null" {
				val = ""
			}
			val, err := expandEnv(val)
			if err != nil {
				return usagef("%s: %v", where, err)
			}
			if err := s.set(val); err != nil {
				return usagef("%s: %v", where, err)
			}
		default:
			return usagef("%s: want a single value", where)
		}
		c.source[s.name] = fmt.Sprintf("key %s in %s", s.key(), path)
	}
	return nil
}

// adminTokenEnv is the environment variable that gives the admin API token
// when neither --admin-token nor admin_token sets it, so the secret need
// not be written in the configuration file or on the command line.
const adminTokenEnv = "BEACON_ADMIN_TOKEN"

// envRef is a reference to an environment variable in a file value:
// ${NAME}, or $${ for a literal "${".
var envRef = regexp.MustCompile(`\$\$\{|\$\{([^}]*)\}`)

// expandEnv replaces every ${NAME} in a configuration file value by the
// value of the environment variable NAME, so secrets (tokens, passwords)
// can stay out of the file. An unset variable, or a malformed reference,
// is an error naming it; "$${" stands for a literal "${".
func expandEnv(v string) (string, error) {
	if !strings.Contains(v, "${") {
		return v, nil
	}
	var errs []error
	out := envRef.ReplaceAllStringFunc(v, func(ref string) string {
		if ref == "$${" {
			return "${"
		}
		name := ref[2 : len(ref)-1]
		if !validEnvName(name) {
			errs = append(errs, fmt.Errorf("%q is not an environment variable reference: write ${NAME} with NAME made of letters, digits and _", ref))
			return ref
		}
		val, ok := os.LookupEnv(name)
		if !ok {
			errs = append(errs, fmt.Errorf("environment variable %s (in %s) is not set", name, ref))
		}
		return val
	})
	if len(errs) > 0 {
		return "", errors.Join(errs...)
	}
	return out, nil
}

func validEnvName(name string) bool {
	if name == "" || name[0] >= '0' && name[0] <= '9' {
		return false
	}
	for _, r := range name {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// validate runs mqtt.Options.Validate and rewrites each complaint so that
// it names the flag or key that set the offending value.
func (c *config) validate(table []*setting) error {
	if c.storage == "badger" && c.dataDir == "" {
		return usagef("data: must not be empty with storage badger")
	}
	err := c.opts.Validate()
	if err == nil {
		return nil
	}
	var lines []string
	for _, line := range strings.Split(err.Error(), "\n") {
		lines = append(lines, c.nameSetting(line, table))
	}
	return &usageError{errors.New(strings.Join(lines, "\n"))}
}

// nameSetting prefixes a validation message that starts with an Options
// field name with where that field was set, e.g. "flag --max-qos: MaxQoS 3:
// use 0, 1 or 2".
func (c *config) nameSetting(msg string, table []*setting) string {
	fields := 0
	for _, s := range table {
		if s.field != "" && strings.Contains(msg, s.field) {
			fields++
		}
	}
	for _, s := range table {
		if fields > 1 {
			break
		}
		if s.field == "" || !strings.HasPrefix(msg, s.field) {
			continue
		}
		rest := msg[len(s.field):]
		if rest != "" && (rest[0] >= 'a' && rest[0] <= 'z' || rest[0] >= 'A' && rest[0] <= 'Z') {
			continue // a longer field name (MaxQoS vs MaxQoSX)
		}
		src, ok := c.source[s.name]
		if !ok {
			src = fmt.Sprintf("default of --%s / %s", s.name, s.key())
		}
		return src + ": " + msg
	}
	// Messages about several fields, e.g. both listeners disabled.
	for _, s := range table {
		if s.field != "" && strings.Contains(msg, s.field) {
			msg = strings.ReplaceAll(msg, s.field, s.field+" (--"+s.name+")")
		}
	}
	return msg
}
