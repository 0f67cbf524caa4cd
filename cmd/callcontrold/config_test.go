package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"callcontrold/server"
)

// env is a fake environment for parseConfig.
type env map[string]string

func (e env) get(k string) string { return e[k] }

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "callcontrold.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseConfigDefaults(t *testing.T) {
	c, err := parseConfig(nil, env{}.get, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.addr != "localhost:50051" {
		t.Errorf("addr = %q, want localhost:50051 (the README's default)", c.addr)
	}
	if c.metricsAddr != "localhost:9090" {
		t.Errorf("metrics-addr = %q, want localhost:9090", c.metricsAddr)
	}
	if c.directoryFile != "" || c.allowDemoPublic {
		t.Errorf("default must be the embedded demo directory, loopback only: directory=%q allow-demo-public=%v", c.directoryFile, c.allowDemoPublic)
	}
	if c.shutdownTimeout <= 0 || c.progressInterval <= 0 || c.historySize < 1 || c.watcherQueue < 1 {
		t.Errorf("bad defaults: %+v", c)
	}
}

func TestEnvName(t *testing.T) {
	for flagName, want := range map[string]string{
		"addr":              "CALLCONTROLD_ADDR",
		"metrics-addr":      "CALLCONTROLD_METRICS_ADDR",
		"allow-demo-public": "CALLCONTROLD_ALLOW_DEMO_PUBLIC",
		"tls-client-ca":     "CALLCONTROLD_TLS_CLIENT_CA",
	} {
		if got := envName(flagName); got != want {
			t.Errorf("envName(%q) = %q, want %q", flagName, got, want)
		}
	}
}

// TestParseConfigPrecedence: flag > environment > config file > default,
// setting by setting.
func TestParseConfigPrecedence(t *testing.T) {
	file := writeConfig(t, `
addr: file.example:1
metrics-addr: file.example:2
log-level: warn
history-size: 3
progress-interval: 3s
`)
	tests := []struct {
		name string
		args []string
		env  env
		want func(*config) []string // mismatches
	}{
		{
			name: "file over default",
			args: []string{"--config", file},
			want: func(c *config) []string {
				return diffs(
					"addr", c.addr, "file.example:1",
					"metrics-addr", c.metricsAddr, "file.example:2",
					"log-level", c.logLevel, "warn",
					"history-size", c.historySize, 3,
					"progress-interval", c.progressInterval, 3*time.Second,
					"watcher-queue (default)", c.watcherQueue, 1024,
				)
			},
		},
		{
			name: "env over file",
			args: []string{"--config", file},
			env:  env{"CALLCONTROLD_ADDR": "env.example:1", "CALLCONTROLD_HISTORY_SIZE": "4"},
			want: func(c *config) []string {
				return diffs(
					"addr", c.addr, "env.example:1",
					"history-size", c.historySize, 4,
					"metrics-addr (file)", c.metricsAddr, "file.example:2",
					"log-level (file)", c.logLevel, "warn",
				)
			},
		},
		{
			name: "flag over env over file",
			args: []string{"--config", file, "--addr=flag.example:1", "--history-size", "5"},
			env: env{
				"CALLCONTROLD_ADDR":         "env.example:1",
				"CALLCONTROLD_HISTORY_SIZE": "4",
				"CALLCONTROLD_LOG_LEVEL":    "error",
			},
			want: func(c *config) []string {
				return diffs(
					"addr", c.addr, "flag.example:1",
					"history-size", c.historySize, 5,
					"log-level (env)", c.logLevel, "error",
					"metrics-addr (file)", c.metricsAddr, "file.example:2",
					"progress-interval (file)", c.progressInterval, 3*time.Second,
				)
			},
		},
		{
			name: "flag over env without file",
			args: []string{"--metrics-addr="},
			env:  env{"CALLCONTROLD_METRICS_ADDR": "env.example:9", "CALLCONTROLD_ALLOW_DEMO_PUBLIC": "true"},
			want: func(c *config) []string {
				return diffs(
					"metrics-addr (empty flag disables metrics)", c.metricsAddr, "",
					"allow-demo-public (env)", c.allowDemoPublic, true,
				)
			},
		},
		{
			name: "config file named by the environment",
			env:  env{"CALLCONTROLD_CONFIG": file, "CALLCONTROLD_LOG_LEVEL": "debug"},
			want: func(c *config) []string {
				return diffs(
					"addr (file)", c.addr, "file.example:1",
					"log-level (env)", c.logLevel, "debug",
				)
			},
		},
		{
			name: "flag names the config file over the environment",
			args: []string{"--config=" + file},
			env:  env{"CALLCONTROLD_CONFIG": filepath.Join(t.TempDir(), "missing.yaml")},
			want: func(c *config) []string {
				return diffs("addr (file)", c.addr, "file.example:1")
			},
		},
		{
			name: "empty environment variable is unset",
			env:  env{"CALLCONTROLD_ADDR": ""},
			want: func(c *config) []string { return diffs("addr (default)", c.addr, "localhost:50051") },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := tt.env
			if e == nil {
				e = env{}
			}
			c, err := parseConfig(tt.args, e.get, io.Discard)
			if err != nil {
				t.Fatalf("parseConfig: %v", err)
			}
			for _, d := range tt.want(c) {
				t.Error(d)
			}
		})
	}
}

// diffs takes (name, got, want) triples and describes those that differ.
func diffs(triples ...any) []string {
	var out []string
	for i := 0; i+2 < len(triples); i += 3 {
		if triples[i+1] != triples[i+2] {
			out = append(out, fmtDiff(triples[i].(string), triples[i+1], triples[i+2]))
		}
	}
	return out
}

func fmtDiff(name string, got, want any) string {
	if _, ok := got.(string); ok {
		return fmt.Sprintf("%s: got %q, want %q", name, got, want)
	}
	return fmt.Sprintf("%s: got %v, want %v", name, got, want)
}

// TestParseConfigErrors: every error names what is wrong and where.
func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		file string // config file content, if any
		args []string
		env  env
		want []string // substrings of the error
	}{
		{
			name: "unknown key in file",
			file: "addr: localhost:1\nmetrics-adr: localhost:2\n",
			want: []string{`unknown setting "metrics-adr"`, "callcontrold.yaml"},
		},
		{
			name: "config key inside the config file",
			file: "config: other.yaml\n",
			want: []string{`unknown setting "config"`},
		},
		{
			name: "bad value in file names key and line",
			file: "addr: localhost:1\n\nhistory-size: lots\n",
			want: []string{"line 3", "history-size", "callcontrold.yaml"},
		},
		{
			name: "bad duration in file names key and line",
			file: "# comment\nprogress-interval: 10 parsecs\n",
			want: []string{"line 2", "progress-interval"},
		},
		{
			name: "non-scalar value in file names key and line",
			file: "log-level: info\naddr:\n  - localhost:1\n  - localhost:2\n",
			want: []string{"line 3", "addr", "single value"},
		},
		{
			name: "several bad keys are all reported",
			file: "history-size: x\nwatcher-queue: y\n",
			want: []string{"line 1", "history-size", "line 2", "watcher-queue"},
		},
		{
			name: "negative limits are refused, each by name",
			args: []string{"--max-connections=-1", "--watch-send-timeout=-1s", "--max-header-list-size=10"},
			env:  env{"CALLCONTROLD_MAX_WATCHES_TOTAL": "-5"},
			want: []string{"--max-connections must not be negative", "--watch-send-timeout must not be negative", "--max-header-list-size must be at least 1024", "--max-watches-total must not be negative"},
		},
		{
			name: "write coalescing window out of range",
			args: []string{"--write-coalesce-window=1s"},
			want: []string{"--write-coalesce-window must be 0 (off) to 10ms"},
		},
		{
			name: "sip limits out of range",
			args: []string{"--sip-max-dialogs-per-source=0", "--sip-session-probe=1s"},
			want: []string{"--sip-max-dialogs-per-source must be at least 1"},
		},
		{
			name: "sip session probe too often",
			args: []string{"--sip-session-probe=1s"},
			want: []string{"--sip-session-probe must be 0 (never) or at least 10s"},
		},
		{
			name: "malformed YAML",
			file: "addr: [unclosed\n",
			want: []string{"callcontrold.yaml", "line"},
		},
		{
			name: "unknown switch",
			args: []string{"--switch", "pjsip"},
			want: []string{"--switch must be sim or sip", `"pjsip"`},
		},
		{
			name: "demo traffic needs the simulated switch",
			args: []string{"--switch", "sip", "--demo-traffic", "2"},
			want: []string{"--demo-traffic needs --switch sim"},
		},
		{
			name: "missing config file",
			args: []string{"--config", filepath.Join(os.TempDir(), "callcontrold-does-not-exist.yaml")},
			want: []string{"config file", "callcontrold-does-not-exist.yaml"},
		},
		{
			name: "bad environment value names the variable",
			env:  env{"CALLCONTROLD_HISTORY_SIZE": "many"},
			want: []string{"CALLCONTROLD_HISTORY_SIZE", `"many"`},
		},
		{
			name: "bad flag",
			args: []string{"--history-size=many"},
			want: []string{"history-size"},
		},
		{
			name: "unknown flag",
			args: []string{"--no-such-flag"},
			want: []string{"no-such-flag"},
		},
		{
			name: "positional arguments",
			args: []string{"serve"},
			want: []string{"unexpected arguments", "serve"},
		},
		{
			name: "validation: TLS cert without key",
			args: []string{"--tls-cert=cert.pem"},
			want: []string{"--tls-cert", "--tls-key"},
		},
		{
			name: "validation: mTLS without TLS",
			env:  env{"CALLCONTROLD_TLS_CLIENT_CA": "ca.pem"},
			want: []string{"--tls-client-ca"},
		},
		{
			name: "validation: JWT without issuer and audience",
			args: []string{"--jwks-file=keys.json"},
			want: []string{"--jwt-issuer", "--jwt-audience"},
		},
		{
			name: "validation: values from the file are validated",
			file: "log-format: xml\nprogress-interval: 1ms\n",
			want: []string{"--log-format", `"xml"`, "--progress-interval"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				args = append([]string{"--config", writeConfig(t, tt.file)}, args...)
			}
			e := tt.env
			if e == nil {
				e = env{}
			}
			c, err := parseConfig(args, e.get, io.Discard)
			if err == nil {
				t.Fatalf("want an error, got config %+v", c)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestParseConfigFlagWinsOverBadLowerLayers: a setting given on the command
// line is not read from the environment or the file at all.
func TestParseConfigFlagWinsOverBadLowerLayers(t *testing.T) {
	file := writeConfig(t, "history-size: lots\n")
	c, err := parseConfig([]string{"--config", file, "--history-size=7"}, env{"CALLCONTROLD_HISTORY_SIZE": "many"}.get, io.Discard)
	if err != nil {
		t.Fatalf("parseConfig: %v", err)
	}
	if c.historySize != 7 {
		t.Errorf("history-size = %d, want 7", c.historySize)
	}
}

func TestParseConfigHelp(t *testing.T) {
	var out strings.Builder
	_, err := parseConfig([]string{"--help"}, env{}.get, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: err = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"Usage: callcontrold", "CALLCONTROLD_METRICS_ADDR", "-addr", "-config", "-allow-demo-public"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help does not mention %q", want)
		}
	}
}

// The limits reach server.Config: defaults as the server's, a value as
// given, and 0 on the command line ("none") as a negative value (the
// server's zero means "default").
func TestServerConfigLimits(t *testing.T) {
	c, err := parseConfig(nil, env{}.get, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	got := serverConfig(c)
	if got.MaxConnections != server.DefaultMaxConnections || got.MaxConcurrentStreams != server.DefaultMaxConcurrentStreams ||
		got.MaxHeaderListSize != server.DefaultMaxHeaderListSize || got.WatchSendTimeout != server.DefaultWatchSendTimeout ||
		got.MaxWatchers != server.DefaultMaxWatchers || got.RequestReadTimeout != server.DefaultRequestReadTimeout ||
		got.DrainRetryJitter != 4*time.Second {
		t.Errorf("defaults reach server.Config as %+v", got)
	}
	file := filepath.Join(t.TempDir(), "limits.yaml")
	if err := os.WriteFile(file, []byte("max-pending-requests: 7\nconnection-timeout: 3s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = parseConfig([]string{"--config", file, "--max-connections=0", "--watch-send-timeout=0", "--drain-retry-jitter=0"},
		env{"CALLCONTROLD_MAX_WATCHES_TOTAL": "12"}.get, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	got = serverConfig(c)
	if got.MaxConnections >= 0 || got.WatchSendTimeout >= 0 || got.DrainRetryJitter >= 0 {
		t.Errorf("0 (none) reaches server.Config as %d, %v, %v, want negative", got.MaxConnections, got.WatchSendTimeout, got.DrainRetryJitter)
	}
	if got.MaxWatchers != 12 || got.MaxPendingRequests != 7 || got.ConnectionTimeout != 3*time.Second {
		t.Errorf("env and file values reach server.Config as %d, %d, %v, want 12, 7, 3s", got.MaxWatchers, got.MaxPendingRequests, got.ConnectionTimeout)
	}
}
