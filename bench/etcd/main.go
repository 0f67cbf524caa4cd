// Command etcd is the peer benchmark of `make bench`: callcontrold's
// WatchCalls beside etcd's watch (v3.7, embedded), in one run, each server
// in its own child process, fed the same stream of changes and watched by
// the same client code:
//
//  1. fan-out: 1,000 watchers of one device each and 10 of everything, on
//     2 connections, while the server commits 10,000 leg changes per
//     second (one key per leg in etcd): delivered events/s, p99
//     commit→receive, and the server process's CPU time per delivered
//     event (/proc/<pid>/stat);
//  2. idle streams: 10,000 device watches (callcontrold's after their
//     snapshot) on 10 connections, then the server's resident set
//     (/proc/<pid>/status) and heap growth per stream.
//
// It prints a table with the ratios callcontrold/etcd and the targets,
// then a JSON summary. It lives in its own module so that etcd's
// dependencies never enter the service's go.mod. See docs/BENCHMARKS.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"callcontrold/internal/benchkit"
)

type config struct {
	smoke    bool
	fanout   fanoutConfig
	idle     idleConfig
	jsonFile string
	strict   bool
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("peerbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	fs.BoolVar(&c.smoke, "smoke", false, "tiny durations and sizes: checks that the benchmark runs (CI), measures nothing")
	fs.IntVar(&c.fanout.filtered, "watchers", 1000, "fan-out: watchers of one device each")
	fs.IntVar(&c.fanout.unfiltered, "unfiltered", 10, "fan-out: watchers of everything")
	fs.IntVar(&c.fanout.conns, "conns", 2, "fan-out: client connections the watchers share")
	fs.Float64Var(&c.fanout.rate, "rate", 10000, "fan-out: changes committed per second")
	fs.DurationVar(&c.fanout.duration, "duration", 10*time.Second, "fan-out: measured time (after the warm-up)")
	fs.DurationVar(&c.fanout.warmup, "warmup", 2*time.Second, "fan-out: committed and counted, not in the latency figures")
	fs.IntVar(&c.idle.streams, "idle-streams", 10000, "idle: watch streams")
	fs.IntVar(&c.idle.conns, "idle-conns", 10, "idle: client connections they share")
	fs.StringVar(&c.jsonFile, "json", "", "also write the JSON summary to `file`")
	fs.BoolVar(&c.strict, "strict", false, "exit with status 3 when a target is missed")
	if err := benchkit.ParseFlags(fs, args); err != nil {
		return nil, err
	}
	c.idle.settle = time.Second
	if c.smoke {
		c.fanout.filtered, c.fanout.unfiltered = min(c.fanout.filtered, 50), min(c.fanout.unfiltered, 2)
		c.fanout.rate, c.fanout.duration, c.fanout.warmup = min(c.fanout.rate, 1000), 300*time.Millisecond, 100*time.Millisecond
		c.idle.streams, c.idle.conns, c.idle.settle = min(c.idle.streams, 200), min(c.idle.conns, 2), 100*time.Millisecond
	}
	switch {
	case c.fanout.filtered < 1 || c.fanout.filtered > fanoutDevices || c.fanout.unfiltered < 0:
		return nil, fmt.Errorf("--watchers must be 1..%d and --unfiltered >= 0", fanoutDevices)
	case c.fanout.conns < 1 || c.idle.conns < 1 || c.idle.streams < 1:
		return nil, errors.New("--conns, --idle-conns and --idle-streams must be at least 1")
	case c.fanout.rate <= 0 || c.fanout.duration <= 0 || c.fanout.warmup < 0:
		return nil, errors.New("--rate and --duration must be positive, --warmup not negative")
	}
	return c, nil
}

func main() {
	if name := os.Getenv(childEnv); name != "" {
		os.Exit(childMain(name, os.Stdin, os.Stdout))
	}
	c, err := parseFlags(os.Args[1:], os.Stderr)
	benchkit.ExitOnFlagError("peerbench", err)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := run(ctx, c, os.Stderr)
	if rep != nil {
		rep.Command = strings.TrimSpace("cd bench/etcd && go run . " + strings.Join(os.Args[1:], " "))
		if werr := rep.write(os.Stdout, c.jsonFile); err == nil {
			err = werr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "peerbench:", err)
		os.Exit(1)
	}
	if c.strict && !rep.AllMet {
		fmt.Fprintln(os.Stderr, "peerbench: targets missed")
		os.Exit(3)
	}
}

// run measures callcontrold, then etcd, each in a fresh child process.
func run(ctx context.Context, c *config, progress io.Writer) (*report, error) {
	rep := newReport(c)
	for _, name := range []string{peerCallcontrold, peerEtcd} {
		fmt.Fprintf(progress, "peerbench: %s...\n", name)
		r, err := runPeer(ctx, name, c)
		if err != nil {
			rep.finish()
			return rep, fmt.Errorf("%s: %w", name, err)
		}
		rep.Peers = append(rep.Peers, r)
	}
	rep.finish()
	return rep, nil
}

// peerResult is one server's figures.
type peerResult struct {
	Name   string        `json:"name"`
	Fanout *fanoutResult `json:"fanout"`
	Idle   *idleResult   `json:"idle"`
}

func runPeer(ctx context.Context, name string, c *config) (*peerResult, error) {
	ch, err := startChild(ctx, name)
	if err != nil {
		return nil, err
	}
	defer ch.close()
	p := clientFor(name)
	r := &peerResult{Name: name}
	if r.Fanout, err = runFanoutPhase(ctx, ch, p, c.fanout); err != nil {
		return nil, fmt.Errorf("fan-out: %w", err)
	}
	if r.Idle, err = runIdlePhase(ctx, ch, p, c.idle); err != nil {
		return nil, fmt.Errorf("idle streams: %w", err)
	}
	return r, nil
}

// write prints the table, then the JSON summary, to w, and the JSON to
// file if set.
func (r *report) write(w io.Writer, file string) error {
	r.table(w)
	return benchkit.WriteJSON(w, r, file)
}
