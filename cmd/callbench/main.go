// Command callbench is the load client of `make bench`: it runs the real
// callcontrold server in-process (real store, simulated switch,
// authenticator, interceptor chain, loopback TCP) with a no-op baseline
// service registered beside the real ones on the same grpc.Server, and
// measures, side by side in one run:
//
//  1. unary: a no-op RPC vs the control pair Hold, Talk (concurrency 50);
//  2. streaming: raw server streaming of a pre-built small message vs
//     WatchCalls delivering the simulated switch's call flows;
//  3. fan-out: 1,000 device-filtered + 10 unfiltered watchers under 10k
//     transitions/s: events dropped, commit→receive latency (the watchers
//     run in a child process: this binary re-executed, see fanout_child.go);
//     fanout10k: the same with 10,000 device-filtered watchers;
//  4. connect: the HTTP side (Connect, JSON and binary) beside gRPC, unary
//     and WatchCalls (connect.go);
//  5. idle: the server's memory per idle filtered WatchCalls stream
//     (10,000 streams after their snapshot, over 10 and 1,000 connections;
//     in a fresh process of its own, with the clients in another, see
//     idle.go);
//  6. replicas: control RPCs through two replicas sharing an R3 stream of
//     an embedded 3-node NATS cluster, watched on the follower, beside
//     one process (replicas.go);
//  7. memory: heap and RSS with 100k live calls.
//
// It prints a table, then a JSON summary. See docs/BENCHMARKS.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"callcontrold/directory"
	"callcontrold/internal/benchkit"
)

type config struct {
	smoke     bool
	scenarios map[string]bool
	unary     unaryConfig
	stream    streamConfig
	fanout    fanoutConfig
	// fanoutLarge is the fanout10k scenario: the fan-out's settings with
	// 10,000 filtered watchers.
	fanoutLarge fanoutConfig
	idle        idleConfig
	replicas    replicasConfig
	memory      memoryConfig
	jsonFile    string
	profileDir  string
	strict      bool
}

// allScenarios in run order (the idle scenario's rounds each in a
// process of their own: see runIdleFresh). Memory runs last: its 100k
// calls leave a heap of ≈ 150 MB for the runtime to scavenge and
// collect, which slowed the scenarios that followed it (unary ratio
// 0.81–0.86 and fan-out p99 10–11 ms after it, against 0.87 and 6 ms
// before it, same binary). Its figure is a heap delta between two
// collections, so what ran before does not count in it.
var allScenarios = []string{"unary", "stream", "connect", "fanout", "fanout10k", "idle", "replicas", "memory"}

// flagSet reports whether the command line set the flag name.
func flagSet(fs *flag.FlagSet, name string) (set bool) {
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("callbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	var scen, idleConns string
	var unaryDur, streamDur, fanDur, replDur time.Duration
	fs.BoolVar(&c.smoke, "smoke", false, "tiny durations and sizes: checks that every scenario runs (CI), measures nothing")
	fs.StringVar(&scen, "scenarios", strings.Join(allScenarios, ","), "comma-separated scenarios to run: "+strings.Join(allScenarios, ", "))
	fs.IntVar(&c.unary.concurrency, "concurrency", 50, "unary: concurrent callers")
	fs.IntVar(&c.unary.conns, "unary-conns", 2, "unary: client connections")
	fs.DurationVar(&unaryDur, "unary-duration", 8*time.Second, "unary: measured time of each kind (no-op, control)")
	fs.IntVar(&c.unary.rounds, "unary-rounds", 8, "unary, connect: the kinds alternate this many times within the measured time, so that a neighbour's burst of work falls on both alike")
	fs.IntVar(&c.stream.streams, "streams", 10, "streaming: concurrent streams of each kind")
	fs.DurationVar(&streamDur, "stream-duration", 6*time.Second, "streaming: measured time of each kind")
	fs.IntVar(&c.stream.rounds, "stream-rounds", 6, "streaming, connect's streams: the measured time is this many rounds, each a phase of each kind (the no-op's or WatchCalls' first, in turn); the streaming target checks the median of the rounds' ratios")
	fs.IntVar(&c.fanout.filtered, "watchers", 1000, "fan-out: device-filtered watchers")
	fs.IntVar(&c.fanoutLarge.filtered, "watchers-10k", 10000, "fanout10k: device-filtered watchers (the other fan-out flags apply to it too)")
	fs.IntVar(&c.fanout.unfiltered, "unfiltered", 10, "fan-out: unfiltered watchers")
	fs.IntVar(&c.fanout.conns, "fanout-conns", 2, "fan-out: client connections the watchers share")
	fs.Float64Var(&c.fanout.rate, "rate", 10000, "fan-out: transitions per second")
	fs.DurationVar(&fanDur, "fanout-duration", 10*time.Second, "fan-out: measured time of each kind, WatchCalls and the no-op baseline (after 2s of warm-up each)")
	fs.BoolVar(&c.fanout.inProcess, "fanout-inprocess", false, "fan-out: run the watchers in this process (as before) instead of a child process")
	fs.BoolVar(&c.fanout.baseline, "fanout-baseline", true, "fan-out: also run the no-op fan-out (the same watchers on a no-op service fed the same changes), in segments alternating with the WatchCalls fan-out's")
	fs.IntVar(&c.fanout.rounds, "fanout-rounds", 10, "fan-out: with the baseline, the measured time is this many segments of each kind, alternating")
	fs.IntVar(&c.fanout.watcherWindow, "watcher-window", defaultWatcherWindow, "fan-out: the watchers' HTTP/2 flow-control window per stream in bytes (16 times that per connection), like grpc-java's default; 0: grpc-go's default dynamic window, which keeps a PING in flight while data flows")
	fs.StringVar(&c.fanout.watcherGC, "watcher-gc", watcherGCHeld, "fan-out: the watchers' process's garbage collector: held (collects between the driver's segments, when nothing is in flight, and otherwise only at a 1 GiB memory limit, so that the instrument's own collections are not measured as the server's latency) or on (the runtime's default)")
	fs.IntVar(&c.idle.streams, "idle-streams", 10000, "idle: idle filtered WatchCalls streams")
	fs.StringVar(&idleConns, "idle-conns", "10,1000", "idle: comma-separated connection counts, one round each")
	fs.DurationVar(&replDur, "replicas-duration", 8*time.Second, "replicas: measured time of each kind (one process, replicas); the concurrency is --concurrency")
	fs.IntVar(&c.memory.calls, "calls", 100000, "memory: live calls")
	fs.StringVar(&c.jsonFile, "json", "", "also write the JSON summary to `file`")
	fs.StringVar(&c.profileDir, "profile", "", "write a CPU profile per scenario (cpu-<scenario>.pprof; the unary and stream scenarios' per kind and round, of its measured time, and the unary scenario's mutex and block profiles) the fan-out scenarios' allocation profiles at the start and end of their measured window (allocs-<scenario>-start.pprof, -end.pprof: pprof -base), and the memory scenario's heap profile into `dir`")
	fs.BoolVar(&c.strict, "strict", false, "exit with status 3 when a target is missed")
	if err := benchkit.ParseFlags(fs, args); err != nil {
		return nil, err
	}
	c.scenarios = map[string]bool{}
	for s := range strings.SplitSeq(scen, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		ok := false
		for _, a := range allScenarios {
			ok = ok || a == s
		}
		if !ok {
			return nil, fmt.Errorf("--scenarios: unknown scenario %q", s)
		}
		c.scenarios[s] = true
	}
	c.unary.duration, c.unary.warmup = unaryDur, time.Second
	c.stream.conns, c.stream.duration, c.stream.warmup, c.stream.window = 2, streamDur, 500*time.Millisecond, 256
	c.fanout.duration, c.fanout.warmup = fanDur, 2*time.Second
	c.idle.settle = time.Second
	c.replicas.duration, c.replicas.warmup = replDur, time.Second
	for f := range strings.SplitSeq(idleConns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--idle-conns: %q is not a positive number", f)
		}
		c.idle.conns = append(c.idle.conns, n)
	}
	if c.smoke {
		c.unary.duration, c.unary.rounds, c.unary.warmup = 200*time.Millisecond, 1, 50*time.Millisecond
		c.stream.duration, c.stream.rounds, c.stream.warmup, c.stream.streams = 200*time.Millisecond, 2, 50*time.Millisecond, min(c.stream.streams, 4)
		c.fanout.filtered, c.fanout.rate, c.fanout.duration, c.fanout.warmup, c.fanout.rounds = min(c.fanout.filtered, 100), min(c.fanout.rate, 2000), 300*time.Millisecond, 100*time.Millisecond, min(c.fanout.rounds, 2)
		c.fanoutLarge.filtered = min(c.fanoutLarge.filtered, 200)
		c.memory.calls = min(c.memory.calls, 5000)
		c.idle.streams, c.idle.settle = min(c.idle.streams, 200), 100*time.Millisecond
		if !flagSet(fs, "idle-conns") { // the idle rounds' processes are given theirs
			c.idle.conns = []int{2, 20}
		}
		c.replicas.duration, c.replicas.warmup = 300*time.Millisecond, 100*time.Millisecond
	}
	c.replicas.concurrency = c.unary.concurrency
	c.unary.profileDir = c.profileDir
	c.stream.profileDir = c.profileDir
	c.memory.profileDir = c.profileDir
	c.idle.profileDir = c.profileDir
	c.fanout.profileDir = c.profileDir
	c.fanout.name = "fanout"
	large := c.fanoutLarge.filtered
	c.fanoutLarge = c.fanout
	c.fanoutLarge.name, c.fanoutLarge.filtered = "fanout10k", large
	switch {
	case c.unary.concurrency < 1 || c.unary.concurrency > loadDevices:
		return nil, fmt.Errorf("--concurrency must be 1..%d", loadDevices)
	case c.unary.conns < 1 || c.unary.rounds < 1 || c.stream.streams < 1 || c.stream.rounds < 1 || c.idle.streams < 1:
		return nil, errors.New("--unary-conns, --unary-rounds, --streams, --stream-rounds and --idle-streams must be at least 1")
	case c.fanout.filtered < 0 || c.fanout.filtered > fanoutDevices || c.fanout.unfiltered < 0 || c.fanout.filtered+c.fanout.unfiltered == 0:
		return nil, fmt.Errorf("--watchers must be 0..%d and --unfiltered >= 0, not both 0", fanoutDevices)
	case c.fanout.rounds < 1:
		return nil, errors.New("--fanout-rounds must be at least 1")
	case c.fanout.watcherWindow != 0 && (c.fanout.watcherWindow < minWatcherWindow || c.fanout.watcherWindow > maxWatcherWindow):
		return nil, fmt.Errorf("--watcher-window %d: want 0 (grpc-go's dynamic window) or %d..%d bytes", c.fanout.watcherWindow, minWatcherWindow, maxWatcherWindow)
	case c.fanout.watcherGC != watcherGCHeld && c.fanout.watcherGC != watcherGCOn:
		return nil, fmt.Errorf("--watcher-gc %q: want %s or %s", c.fanout.watcherGC, watcherGCHeld, watcherGCOn)
	case c.fanout.rate <= 0:
		return nil, errors.New("--rate must be positive")
	case c.fanoutLarge.filtered < 0 || c.fanoutLarge.filtered > fanoutDevices:
		return nil, fmt.Errorf("--watchers-10k must be 0..%d", fanoutDevices)
	case c.memory.calls < 1 || c.memory.calls > spreadDevices*memCallsPerDev:
		return nil, fmt.Errorf("--calls must be 1..%d", spreadDevices*memCallsPerDev)
	}
	return c, nil
}

func main() {
	if code, ok := childMode(); ok {
		os.Exit(code)
	}
	c, err := parseFlags(os.Args[1:], os.Stderr)
	benchkit.ExitOnFlagError("callbench", err)
	rep, err := run(context.Background(), c, os.Stderr)
	if rep != nil {
		rep.Command = strings.TrimSpace("go run ./cmd/callbench " + strings.Join(os.Args[1:], " "))
		if werr := rep.write(os.Stdout, c.jsonFile); werr != nil && err == nil {
			err = werr
		}
		if err == nil && c.strict && !rep.AllMet {
			fmt.Fprintln(os.Stderr, "callbench: targets missed")
			os.Exit(3)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "callbench:", err)
		os.Exit(1)
	}
}

// run runs the selected scenarios, each on a fresh in-process server built
// identically, in the order of allScenarios, and
// returns the report. progress receives one line per scenario.
func run(ctx context.Context, c *config, progress io.Writer) (*report, error) {
	dir, err := directory.Parse(benchDirectoryYAML(), "callbench directory")
	if err != nil {
		return nil, err
	}
	rep := newReport(c)
	if c.profileDir != "" {
		if err := os.MkdirAll(c.profileDir, 0o755); err != nil {
			return nil, err
		}
	}
	for _, name := range allScenarios {
		if !c.scenarios[name] {
			continue
		}
		fmt.Fprintf(progress, "callbench: %s...\n", name)
		if err := runScenario(ctx, name, dir, c, rep); err != nil {
			rep.finish()
			return rep, fmt.Errorf("%s: %w", name, err)
		}
	}
	rep.finish()
	return rep, nil
}

func runScenario(ctx context.Context, name string, dir *directory.Directory, c *config, rep *report) error {
	if name == "idle" && os.Getenv(childEnv) != childIdleScenario {
		var err error
		rep.Idle, err = runIdleFresh(ctx, c)
		return err
	}
	opts := envOptions{}
	if name == "memory" {
		// 100 legs on each of the 1,000 fan-out devices.
		opts.maxCallsPerDevice = memCallsPerDev
	}
	e, err := newEnv(dir, opts)
	if err != nil {
		return err
	}
	err = runMeasured(ctx, name, e, c, rep)
	// Tear the server down before collecting, so the next scenario starts
	// on a heap without this one's calls.
	e.close()
	runtime.GC()
	if c.profileDir != "" {
		// Allocations count from the start of the process: run one
		// scenario (--scenarios) to read them for that scenario alone.
		if perr := benchkit.WriteProfile(filepath.Join(c.profileDir, "allocs-"+name+".pprof"), "allocs", 0); perr != nil {
			return errors.Join(err, perr)
		}
	}
	return err
}

// runMeasured runs one scenario on e, under a CPU profile when asked.
func runMeasured(ctx context.Context, name string, e *env, c *config, rep *report) (err error) {
	if c.profileDir != "" && name == "unary" {
		// The unary scenario profiles each kind apart (runUnary); where
		// its callers wait on locks shows in these two.
		runtime.SetMutexProfileFraction(100)
		runtime.SetBlockProfileRate(int(10 * time.Microsecond))
		defer func() {
			runtime.SetMutexProfileFraction(0)
			runtime.SetBlockProfileRate(0)
			err = errors.Join(err,
				benchkit.WriteProfile(filepath.Join(c.profileDir, "mutex-unary.pprof"), "mutex", 0),
				benchkit.WriteProfile(filepath.Join(c.profileDir, "block-unary.pprof"), "block", 0))
		}()
	} else if c.profileDir != "" && name != "stream" { // the stream scenario profiles each kind's measured time (runStream)
		stop, err := benchkit.StartCPUProfile(filepath.Join(c.profileDir, "cpu-"+name+".pprof"))
		if err != nil {
			return err
		}
		defer stop()
	}
	switch name {
	case "unary":
		rep.Unary, err = runUnary(ctx, e, c.unary)
	case "stream":
		rep.Stream, err = runStream(ctx, e, c.stream)
	case "connect":
		rep.Connect, err = runConnect(ctx, e, c.unary, c.stream)
	case "fanout":
		rep.Fanout, err = runFanout(ctx, e, c.fanout)
	case "fanout10k":
		rep.FanoutLarge, err = runFanout(ctx, e, c.fanoutLarge)
	case "idle":
		rep.Idle, err = runIdle(ctx, e, c.idle)
	case "replicas":
		rep.Replicas, err = runReplicas(ctx, e, c.replicas)
	case "memory":
		rep.Memory, err = runMemory(ctx, e, c.memory)
	}
	return err
}

// write prints the table, then the JSON summary, to w, and the JSON to
// file if set.
func (r *report) write(w io.Writer, file string) error {
	r.table(w)
	return benchkit.WriteJSON(w, r, file)
}
