package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"callcontrold/internal/gcpercent"
	"callcontrold/server"
)

// envPrefix prefixes the environment variable of every flag: --metrics-addr
// is CALLCONTROLD_METRICS_ADDR.
const envPrefix = "CALLCONTROLD_"

// config is everything the binary can be told. Precedence, highest first:
// command-line flag, environment variable, config file (--config), default.
type config struct {
	configFile string

	addr            string
	metricsAddr     string
	httpAddr        string
	httpCORSOrigins string
	directoryFile   string
	allowDemoPublic bool

	tlsCert, tlsKey, tlsClientCA string

	jwksFile, jwksURL, jwtIssuer, jwtAudience string

	controlRPS   float64
	controlBurst int
	readRPS      float64
	readBurst    int
	maxWatches   int

	historySize      int
	watcherQueue     int
	progressInterval time.Duration
	writeCoalesce    time.Duration

	gcPercent int // GOGC, unless the environment sets GOGC (see gcpercent.Apply)

	switchKind  string
	sipAddr     string
	trunk       trunkFlags
	sipLimits   sipLimitFlags
	ringTimeout time.Duration
	demoTraffic float64

	maxConnectionAge time.Duration
	shutdownTimeout  time.Duration
	drainRetryAfter  time.Duration
	drainRetryJitter time.Duration

	// Transport and watch limits (0: none, except the handshake timeout
	// and the header list size).
	maxConnections       int
	maxConcurrentStreams int
	maxHeaderListSize    int
	connectionTimeout    time.Duration
	maxConnectionIdle    time.Duration
	requestReadTimeout   time.Duration
	maxPendingRequests   int
	maxWatchesTotal      int
	watchSendTimeout     time.Duration

	logLevel  string
	logFormat string

	otlpEndpoint string
	replica      replicaFlags
}

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func newFlagSet(c *config, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("callcontrold", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.configFile, "config", "", "YAML `file` of settings: keys are flag names (e.g. \"metrics-addr: :9090\")")
	fs.StringVar(&c.addr, "addr", "localhost:50051", "gRPC listen `address`")
	fs.StringVar(&c.httpAddr, "http-addr", "localhost:8080", "HTTP listen `address` for Connect, gRPC-Web, gRPC and the console; empty disables")
	fs.StringVar(&c.httpCORSOrigins, "http-cors-origins", "", "comma-separated browser `origins` allowed to call the API from other sites (\"*\": any); none by default")
	fs.StringVar(&c.metricsAddr, "metrics-addr", "localhost:9090", "Prometheus /metrics listen `address`; empty disables")
	fs.StringVar(&c.directoryFile, "directory", "", "directory YAML `file` (companies, users, devices, extensions); empty uses the embedded demo directory")
	fs.BoolVar(&c.allowDemoPublic, "allow-demo-public", false, "allow the demo directory (whose tokens are public) on a non-loopback address")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "TLS certificate `file` (PEM); with --tls-key enables TLS")
	fs.StringVar(&c.tlsKey, "tls-key", "", "TLS private key `file` (PEM)")
	fs.StringVar(&c.tlsClientCA, "tls-client-ca", "", "client CA `file` (PEM); enables mTLS: clients must present a certificate it signed")
	fs.StringVar(&c.jwksFile, "jwks-file", "", "JWKS `file` to verify JWT bearer tokens against")
	fs.StringVar(&c.jwksURL, "jwks-url", "", "JWKS `URL` to verify JWT bearer tokens against (refreshed periodically)")
	fs.StringVar(&c.jwtIssuer, "jwt-issuer", "", "required JWT issuer (iss)")
	fs.StringVar(&c.jwtAudience, "jwt-audience", "", "required JWT audience (aud)")
	fs.Float64Var(&c.controlRPS, "control-rps", 50, "control RPCs per second allowed per login (0: unlimited)")
	fs.IntVar(&c.controlBurst, "control-burst", 100, "burst of control RPCs allowed per login")
	fs.Float64Var(&c.readRPS, "read-rps", 100, "reads (ListCalls, GetCall, ListDevices, GetDevice) per second allowed per login (0: unlimited)")
	fs.IntVar(&c.readBurst, "read-burst", 200, "burst of reads allowed per login")
	fs.IntVar(&c.maxWatches, "max-watches", 100, "concurrent WatchCalls streams per login (0: unlimited)")
	fs.IntVar(&c.historySize, "history-size", 100000, "revisions retained for WatchCalls resume")
	fs.IntVar(&c.watcherQueue, "watcher-queue", 1024, "revisions a watcher may have queued before it catches up from history")
	fs.DurationVar(&c.progressInterval, "progress-interval", 10*time.Second, "WatchCalls progress frame after this long without events")
	fs.DurationVar(&c.writeCoalesce, "write-coalesce-window", 0, "hold back a busy connection's stream messages written less than this after its last write, to go out together (less CPU, more latency on busy streams; 0: off; see docs/DESIGN.md)")
	fs.IntVar(&c.gcPercent, "gc-percent", gcpercent.Default, "garbage collector: the heap grows by this `percent` of the live heap between collections (Go's GOGC; the GOGC environment variable, if set, wins)")
	fs.StringVar(&c.switchKind, "switch", "sim", "channel driver behind the call engine: sim (simulated phones and far ends) or sip (real phones register at --sip-addr)")
	fs.StringVar(&c.sipAddr, "sip-addr", "127.0.0.1:5060", "sip switch: SIP listen `address` (UDP and TCP)")
	addTrunkFlags(fs, &c.trunk)
	addSIPLimitFlags(fs, &c.sipLimits)
	fs.DurationVar(&c.ringTimeout, "ring-timeout", 30*time.Second, "unanswered calls end after this long (cause 19)")
	fs.Float64Var(&c.demoTraffic, "demo-traffic", 0, "simulated switch: start `N` calls per second of mixed demo traffic")
	fs.DurationVar(&c.maxConnectionAge, "max-connection-age", 30*time.Minute, "recycle connections after this long (watchers resume with their token)")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 15*time.Second, "on SIGTERM, wait this long for calls to finish before closing connections")
	fs.DurationVar(&c.drainRetryAfter, "drain-retry-after", time.Second, "on SIGTERM, watchers are told (RetryInfo) to come back after this long plus a random share of --drain-retry-jitter")
	fs.DurationVar(&c.drainRetryJitter, "drain-retry-jitter", 4*time.Second, "spread of the drain's retry delay, so watchers do not all come back at the same instant (0: none)")
	addLimitFlags(fs, c)
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.otlpEndpoint, "otlp-endpoint", "", "export traces (a span per RPC) to this OTLP/gRPC collector: `URL` (http:// for plaintext) or host:port (TLS); empty: no tracing")
	addReplicaFlags(fs, &c.replica)
	fs.Usage = func() {
		fmt.Fprintf(out, "callcontrold serves the Call API of an IP PBX over gRPC.\n\nUsage: callcontrold [flags]\n\n")
		fmt.Fprintf(out, "Every flag can also be set by an environment variable (%sFLAG_NAME, e.g. %s)\nor in the --config file; flags win over the environment, which wins over the file.\nAn empty environment variable counts as unset: to turn a setting off (e.g. --metrics-addr=),\nuse the flag or the file.\n\nFlags:\n", envPrefix, envName("metrics-addr"))
		fs.PrintDefaults()
	}
	return fs
}

// addLimitFlags adds the transport and watch limits. Their defaults are
// server's, so the two cannot drift apart.
func addLimitFlags(fs *flag.FlagSet, c *config) {
	fs.IntVar(&c.maxConnections, "max-connections", server.DefaultMaxConnections, "client connections open at once; at the cap a new one replaces the oldest that has not sent a byte, or is refused (0: unlimited)")
	fs.IntVar(&c.maxConcurrentStreams, "max-concurrent-streams", server.DefaultMaxConcurrentStreams, "streams (calls and watches) per connection; a client wanting more waits for one to end (0: unlimited)")
	fs.IntVar(&c.maxHeaderListSize, "max-header-list-size", server.DefaultMaxHeaderListSize, "`bytes` of request headers (metadata, tokens included) per call")
	fs.DurationVar(&c.connectionTimeout, "connection-timeout", server.DefaultConnectionTimeout, "a new connection must finish its TLS and HTTP/2 handshake within this")
	fs.DurationVar(&c.maxConnectionIdle, "max-connection-idle", server.DefaultMaxConnectionIdle, "close a connection without calls or watches for this long (clients reconnect; 0: never)")
	fs.DurationVar(&c.requestReadTimeout, "request-read-timeout", server.DefaultRequestReadTimeout, "a call's request message must arrive within this of its headers (0: no limit)")
	fs.IntVar(&c.maxPendingRequests, "max-pending-requests", server.DefaultMaxPendingRequests, "calls, server-wide, whose request message has not arrived yet; a new one cancels the oldest (0: unlimited)")
	fs.IntVar(&c.maxWatchesTotal, "max-watches-total", server.DefaultMaxWatchers, "concurrent WatchCalls streams, server-wide (0: unlimited; --max-watches is per login)")
	fs.DurationVar(&c.watchSendTimeout, "watch-send-timeout", server.DefaultWatchSendTimeout, "end a watch (OUT_OF_RANGE, WATCH_STALLED) whose frames wait this long to go out: its client reads nothing, or too slowly to keep up (0: never)")
}

// parseConfig reads args, then fills every flag not given on the command
// line from the environment, then from the config file.
func parseConfig(args []string, getenv func(string) string, out io.Writer) (*config, error) {
	c := &config{}
	fs := newFlagSet(c, out)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q: callcontrold takes flags only", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %v", envName(f.Name), v, err))
			}
			set[f.Name] = true
		}
	})
	if c.configFile != "" {
		if err := applyConfigFile(fs, c.configFile, set); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := c.trunk.load(getenv); err != nil {
		return nil, err
	}
	return c, c.validate()
}

func applyConfigFile(fs *flag.FlagSet, path string, set map[string]bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var values map[string]yaml.Node
	if err := yaml.Unmarshal(data, &values); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		f := fs.Lookup(k)
		if f == nil || k == "config" {
			errs = append(errs, fmt.Errorf("config file %s: unknown setting %q (settings are flag names; see --help)", path, k))
			continue
		}
		if set[k] {
			continue
		}
		n := values[k]
		if n.Kind != yaml.ScalarNode {
			errs = append(errs, fmt.Errorf("config file %s: line %d: %s must be a single value", path, n.Line, k))
			continue
		}
		if err := f.Value.Set(n.Value); err != nil {
			errs = append(errs, fmt.Errorf("config file %s: line %d: %s: %v", path, n.Line, k, err))
		}
	}
	return errors.Join(errs...)
}

func (c *config) validate() error {
	var errs []error
	if (c.tlsCert == "") != (c.tlsKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if c.tlsClientCA != "" && c.tlsCert == "" {
		errs = append(errs, errors.New("--tls-client-ca (mTLS) needs --tls-cert and --tls-key"))
	}
	if c.jwksFile != "" && c.jwksURL != "" {
		errs = append(errs, errors.New("--jwks-file and --jwks-url are exclusive"))
	}
	if (c.jwksFile != "" || c.jwksURL != "") && (c.jwtIssuer == "" || c.jwtAudience == "") {
		errs = append(errs, errors.New("JWT verification needs --jwt-issuer and --jwt-audience"))
	}
	if c.historySize < 1 {
		errs = append(errs, fmt.Errorf("--history-size must be at least 1, got %d", c.historySize))
	}
	if c.watcherQueue < 1 {
		errs = append(errs, fmt.Errorf("--watcher-queue must be at least 1, got %d", c.watcherQueue))
	}
	if c.writeCoalesce < 0 || c.writeCoalesce > 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("--write-coalesce-window must be 0 (off) to 10ms, got %v", c.writeCoalesce))
	}
	if c.progressInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("--progress-interval must be at least 100ms, got %v", c.progressInterval))
	}
	if c.gcPercent < 1 {
		errs = append(errs, fmt.Errorf("--gc-percent must be at least 1, got %d (to turn the collector off, set GOGC=off with GOMEMLIMIT)", c.gcPercent))
	}
	if c.demoTraffic < 0 || c.controlRPS < 0 || c.readRPS < 0 {
		errs = append(errs, errors.New("--demo-traffic, --control-rps and --read-rps must not be negative"))
	}
	errs = append(errs, c.validateLimits()...)
	switch c.switchKind {
	case "sim":
	case "sip":
		if c.demoTraffic > 0 {
			errs = append(errs, errors.New("--demo-traffic needs --switch sim: it plays simulated phones"))
		}
	default:
		errs = append(errs, fmt.Errorf("--switch must be sim or sip, got %q", c.switchKind))
	}
	if err := c.trunk.validate(c.switchKind); err != nil {
		errs = append(errs, err)
	}
	if err := c.sipLimits.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.replica.validate(c); err != nil {
		errs = append(errs, err)
	}
	switch c.logFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("--log-format must be text or json, got %q", c.logFormat))
	}
	switch strings.ToLower(c.logLevel) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level must be debug, info, warn or error, got %q", c.logLevel))
	}
	return errors.Join(errs...)
}

func (c *config) validateLimits() []error {
	var errs []error
	for name, v := range map[string]int{
		"--max-connections": c.maxConnections, "--max-concurrent-streams": c.maxConcurrentStreams,
		"--max-pending-requests": c.maxPendingRequests, "--max-watches-total": c.maxWatchesTotal,
	} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative (0: unlimited), got %d", name, v))
		}
	}
	for name, d := range map[string]time.Duration{
		"--max-connection-idle": c.maxConnectionIdle, "--request-read-timeout": c.requestReadTimeout,
		"--watch-send-timeout": c.watchSendTimeout, "--drain-retry-jitter": c.drainRetryJitter,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative (0: none), got %v", name, d))
		}
	}
	if c.maxHeaderListSize < 1024 {
		errs = append(errs, fmt.Errorf("--max-header-list-size must be at least 1024 bytes, got %d", c.maxHeaderListSize))
	}
	if c.connectionTimeout < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("--connection-timeout must be at least 100ms, got %v", c.connectionTimeout))
	}
	if c.drainRetryAfter < 0 {
		errs = append(errs, fmt.Errorf("--drain-retry-after must not be negative, got %v", c.drainRetryAfter))
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errs
}
