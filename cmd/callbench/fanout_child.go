package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"

	"callcontrold/internal/benchkit"
)

// The fan-out watchers run in a child process by default: the callbench
// binary itself, re-executed (os.Executable) with CALLBENCH_CHILD set. Real
// watchers run in other processes; in the benchmark's own process their
// 1,010 client streams made ≈ 40% of the allocations, and that GC landed
// on the server's latency tail.
//
// Protocol (one line each way at a time; the child's stdout carries
// nothing else, its stderr is passed up in errors):
//
//	parent starts:  callbench -addr A -watchers N -unfiltered U -conns C -gc G -window W [-baseline] [-cpuprofile F]
//	child → parent: ready <base> <noopBase>  every watcher has its started frame: WatchCalls' at base, the no-op
//	                                         fan-out's at noopBase (-1 without -baseline)
//	parent → child: start <mark> <noopMark>  latencies count from these revisions on
//	parent → child: sync <n> <noopN>         the driver committed n (noopN) revisions after base (noopBase)
//	child → parent: caught-up                the watchers caught up (or gave up after 10 s), streams still open
//	                                         (sync and caught-up once per segment of the driver)
//	parent → child: finish                   the parent has read its work figures
//	child → parent: {fanSummary as JSON}     after closing the streams, then exits 0
//
// The child is the measuring instrument, and its own garbage collector's
// work was in what it measured: with the server's collector off and the
// child's on, the 1,000 + 10 fan-out's p99 was 3.5–5.7 ms; the other way
// round 1.3–1.6 ms (and 10,000 + 10: 9.8–12.2 ms against 2.5–4.0 ms).
// The child's ≈ 1.3M frames in a run are small, and grpc-go allocates
// each one's buffer (below its pooling threshold) and its stream's queue
// entries: ≈ 350 B per delivery, a collection every ≈ 0.3 s, each
// delaying the deliveries it overlaps. So by default (-gc held) the child
// holds its collector while the driver commits and collects between the
// driver's segments (each about a second), when every watcher has caught
// up and nothing is in flight; the memory limit watcherMemLimit is a
// backstop (a segment allocates ≈ 40 MB). Collections while the driver
// commits are reported (fanSummary.GCCycles, printed as the watchers'
// GC). -gc on leaves the
// runtime's default (GOGC 100), for comparison (callbench --watcher-gc
// on). The server's collector is the service's setting in both.
// The child computes each watcher's expected revisions from the shared
// schedule (fanoutExpected) and the commit times from the frames
// (Call.name, see runFanout). It exits if its stdin closes early (the
// parent is gone); on Linux it is also killed with the parent
// (Pdeathsig), and the parent kills it on any error or cancellation
// (exec.CommandContext).
const (
	childEnv    = "CALLBENCH_CHILD"
	childFanout = "fanout-watchers"
)

// The watchers' collector settings (callbench --watcher-gc, the child's -gc).
const (
	watcherGCHeld = "held" // collect between the driver's segments, and at watcherMemLimit
	watcherGCOn   = "on"   // the runtime's default
)

// watcherMemLimit is the held collector's backstop (debug.SetMemoryLimit):
// far above what a segment allocates (≈ 40 MB) and the 10,000 + 10 run
// keeps (≈ 120 MB), so that a default run does not reach it, and a
// --fanout-rounds 1 run of a long --fanout-duration collects (and says
// so) instead of growing without bound.
const watcherMemLimit = 1 << 30

// childMode runs the child's side if this process is a callbench child
// and returns its exit code; ok is false otherwise. main and TestMain call it.
func childMode() (code int, ok bool) {
	switch os.Getenv(childEnv) {
	case "":
		return 0, false
	case childFanout:
		return fanoutChildMain(os.Args[1:], os.Stdin, os.Stdout, os.Stderr), true
	case childIdle:
		return idleChildMain(os.Args[1:], os.Stdin, os.Stdout, os.Stderr), true
	case childIdleScenario:
		return idleScenarioMain(os.Args[1:], os.Stdout, os.Stderr), true
	default:
		fmt.Fprintf(os.Stderr, "callbench: unknown %s=%q\n", childEnv, os.Getenv(childEnv))
		return 2, true
	}
}

// fanChild is the parent's handle on the watchers' child process.
type fanChild struct{ *benchkit.Child }

// startFanChild starts the child, which opens the watchers on the server
// at addr, and returns once they are all started, with their revision.
func startFanChild(ctx context.Context, addr string, cfg fanoutConfig) (c *fanChild, base, noopBase int64, err error) {
	args := []string{"-addr", addr, "-watchers", strconv.Itoa(cfg.filtered), "-unfiltered", strconv.Itoa(cfg.unfiltered), "-conns", strconv.Itoa(cfg.conns), "-gc", cfg.watcherGC, "-window", strconv.Itoa(cfg.watcherWindow)}
	if cfg.baseline {
		args = append(args, "-baseline")
	}
	if cfg.profileDir != "" {
		args = append(args, "-cpuprofile", filepath.Join(cfg.profileDir, "cpu-"+cfg.name+"-watchers.pprof"))
	}
	ch, err := benchkit.StartChild(ctx, "fanout watchers' process", childEnv+"="+childFanout, args, nil)
	if err != nil {
		return nil, 0, 0, err
	}
	c = &fanChild{ch}
	line, err := c.ReadLine(time.Minute)
	if err != nil {
		c.Close()
		return nil, 0, 0, err
	}
	if _, err := fmt.Sscanf(line, "ready %d %d", &base, &noopBase); err != nil {
		c.Close()
		return nil, 0, 0, c.Err(fmt.Errorf("unexpected line %q", line))
	}
	return c, base, noopBase, nil
}

func (c *fanChild) start(mark, noopMark int64) error {
	return c.Send("start %d %d", mark, noopMark)
}

func (c *fanChild) caughtUp(n, noopN int64) error {
	if err := c.Send("sync %d %d", n, noopN); err != nil {
		return err
	}
	line, err := c.ReadLine(time.Minute)
	if err != nil {
		return err
	}
	if line != "caught-up" {
		return c.Err(fmt.Errorf("unexpected line %q, want caught-up", line))
	}
	return nil
}

func (c *fanChild) finish() (*fanSummary, error) {
	if err := c.Send("finish"); err != nil {
		return nil, err
	}
	var sum fanSummary
	if err := c.ReadJSON(time.Minute, &sum); err != nil {
		return nil, err
	}
	if err := c.Finish(time.Minute); err != nil {
		return nil, err
	}
	return &sum, nil
}

// close kills the child unless it has exited, and reaps it.
func (c *fanChild) close() { c.Close() }

// fanoutChildMain is the child: it opens the watchers, follows the
// protocol above on stdin/stdout and returns the exit code.
func fanoutChildMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if err := fanoutChild(args, stdin, stdout); err != nil {
		fmt.Fprintln(stderr, "callbench fan-out watchers:", err)
		return 1
	}
	return 0
}

func fanoutChild(args []string, stdin io.Reader, stdout io.Writer) (err error) {
	fs := flag.NewFlagSet("callbench fan-out watchers", flag.ContinueOnError)
	addr := fs.String("addr", "", "server address")
	filtered := fs.Int("watchers", 0, "device-filtered watchers")
	unfiltered := fs.Int("unfiltered", 0, "unfiltered watchers")
	nconns := fs.Int("conns", 1, "client connections")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to `file`")
	baseline := fs.Bool("baseline", false, "also open the watchers on the no-op fan-out")
	window := fs.Int("window", 0, "the streams' HTTP/2 flow-control window in bytes (0: grpc-go's dynamic window)")
	gc := fs.String("gc", watcherGCHeld, "the collector: held (once the watchers are open, only at the memory limit) or on (the runtime's default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case *addr == "" || fs.NArg() > 0:
		return errors.New("usage: -addr HOST:PORT -watchers N -unfiltered N -conns N")
	case *filtered < 0 || *filtered > fanoutDevices || *unfiltered < 0 || *nconns < 1:
		return errors.New("bad -watchers, -unfiltered or -conns")
	case *window != 0 && (*window < minWatcherWindow || *window > maxWatcherWindow):
		return fmt.Errorf("-window %d: want 0 or %d..%d", *window, minWatcherWindow, maxWatcherWindow)
	case *gc != watcherGCHeld && *gc != watcherGCOn:
		return fmt.Errorf("-gc %q: want %s or %s", *gc, watcherGCHeld, watcherGCOn)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// next reads the parent's next command: verb and its numbers.
	next := func(verb string, nums ...*int64) error {
		line, ok := <-lines
		if !ok {
			return fmt.Errorf("stdin closed while waiting for %q: the parent is gone", verb)
		}
		f := strings.Fields(line)
		if len(f) != 1+len(nums) || f[0] != verb {
			return fmt.Errorf("got %q, want %q and %d numbers", line, verb, len(nums))
		}
		for i, p := range nums {
			v, perr := strconv.ParseInt(f[i+1], 10, 64)
			if perr != nil {
				return fmt.Errorf("%q: %w", line, perr)
			}
			*p = v
		}
		return nil
	}

	conns := make([]*grpc.ClientConn, *nconns)
	for i := range conns {
		if conns[i], err = dialAddr(*addr, watcherWindowOpts(*window)...); err != nil {
			return err
		}
		defer conns[i].Close()
	}
	c, base, noopBase, err := startFanClient(context.Background(), conns, *filtered, *unfiltered, *baseline)
	if err != nil {
		return err
	}
	defer c.close()
	stopProfile, err := benchkit.StartCPUProfile(*cpuprofile)
	if err != nil {
		return err
	}
	defer stopProfile()
	if *gc == watcherGCHeld {
		// What opening the watchers left is collected now; from here on
		// only the memory limit starts a collection.
		runtime.GC()
		debug.SetGCPercent(-1)
		debug.SetMemoryLimit(watcherMemLimit)
	}
	if _, err := fmt.Fprintf(stdout, "ready %d %d\n", base, noopBase); err != nil {
		return err
	}
	var mark, noopMark int64
	if err := next("start", &mark, &noopMark); err != nil {
		return err
	}
	if err := c.start(mark, noopMark); err != nil {
		return err
	}
	// gcCycles counts the collections while the driver commits, not the
	// ones forced between its segments.
	var gcCycles uint64
	gc0, work0 := readGC(), benchkit.ReadWork()
	work1 := work0
	for {
		line, ok := <-lines
		if !ok {
			return errors.New("stdin closed while waiting for sync or finish: the parent is gone")
		}
		var n, noopN int64
		if line == "finish" {
			break
		}
		if _, err := fmt.Sscanf(line, "sync %d %d", &n, &noopN); err != nil {
			return fmt.Errorf("got %q, want sync <n> <noopN> or finish", line)
		}
		if err := c.caughtUp(n, noopN); err != nil {
			return err
		}
		work1 = benchkit.ReadWork()
		gcCycles += readGC().cycles - gc0.cycles
		if *gc == watcherGCHeld {
			// Nothing is in flight until the parent's next segment: a
			// collection now delays no delivery.
			runtime.GC()
		}
		gc0 = readGC()
		if _, err := fmt.Fprintln(stdout, "caught-up"); err != nil {
			return err
		}
	}
	sum, err := c.finish()
	if err != nil {
		return err
	}
	received := sum.WatchCalls.Received
	if sum.Baseline != nil {
		received += sum.Baseline.Received
	}
	sum.GC, sum.GCCycles = *gc, gcCycles
	sum.Work = benchkit.PerEvent(work0, work1, received)
	b, err := json.Marshal(sum)
	if err != nil {
		return err
	}
	_, err = stdout.Write(append(b, '\n'))
	return err
}
