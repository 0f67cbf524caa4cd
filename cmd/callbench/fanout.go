package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"callcontrold/internal/benchkit"
	"callcontrold/internal/benchserver"
	"callcontrold/internal/latency"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/internal/rawframe"
)

type fanoutConfig struct {
	name       string  // the scenario: "fanout" or "fanout10k"
	filtered   int     // watchers filtered to one device each
	unfiltered int     // watchers of everything
	conns      int     // client connections the watchers share
	rate       float64 // transitions (revisions) per second
	duration   time.Duration
	warmup     time.Duration // committed and checked, not in the latency figures
	inProcess  bool          // watchers in this process (the old setup), not in a child process
	watcherGC  string        // the child's collector: watcherGCHeld or watcherGCOn (fanout_child.go)
	// watcherWindow is the watchers' HTTP/2 flow-control window per
	// stream, in bytes; 0: grpc-go's dynamic window (watcherWindowOpts).
	watcherWindow int
	// profileDir non-empty: the child writes its CPU profile here
	// (cpu-<name>-watchers.pprof), and this process the allocation
	// profiles that bound the measured window (writeWindowAllocs).
	profileDir string
}

type fanoutResult struct {
	Filtered      int     `json:"filtered_watchers"`
	Unfiltered    int     `json:"unfiltered_watchers"`
	Conns         int     `json:"connections"`
	WatcherProc   string  `json:"watcher_process"` // "child" or "in-process"
	TargetRate    float64 `json:"target_transitions_per_second"`
	Rate          float64 `json:"transitions_per_second"`
	Commits       int64   `json:"commits"`
	Expected      uint64  `json:"expected_deliveries"`
	Received      uint64  `json:"received_deliveries"`
	Dropped       uint64  `json:"dropped"`
	Unexpected    uint64  `json:"unexpected"`
	Failures      int     `json:"watcher_failures"`
	FirstError    string  `json:"first_error,omitempty"`
	DeliveriesSec float64 `json:"deliveries_per_second"`
	// ServerWork is the work of this process (the server and the driver;
	// the watchers run in the child) from the driver's start until every
	// watcher has caught up, per delivered event: CPU time, allocations,
	// goroutines started. Less sensitive to a busy machine than the
	// latency: it counts work, not waiting. With --fanout-inprocess it
	// includes the watchers' side.
	ServerWork benchkit.WorkPerEvent `json:"server_work_per_event"`
	// ServerGC is the garbage collector's share of ServerWork.
	ServerGC fanoutGC `json:"server_gc"`
	// WatcherWindow is the watchers' flow-control window per stream in
	// bytes, 0 for grpc-go's dynamic window (watcherWindowOpts).
	WatcherWindow int `json:"watcher_window"`
	// WatcherGC is the watchers' process's collector setting ("held",
	// "on"; "in-process": the server's) and WatcherGCCycles the
	// collections it did in the measured window (see fanout_child.go).
	// WatcherWork is the watchers' process's work per delivered event
	// (zero in-process: it is in ServerWork).
	WatcherWork     benchkit.WorkPerEvent `json:"watcher_work_per_event"`
	WatcherGC       string                `json:"watcher_gc"`
	WatcherGCCycles uint64                `json:"watcher_gc_cycles"`
	Latency         latency.Summary       `json:"commit_to_receive"`
	// Steal is the machine's CPU time the hypervisor gave other guests
	// over the same window, in per cent (-1: unknown): on a busy host it
	// is what the tail follows.
	Steal float64 `json:"steal_percent"`
}

// fanoutGC is what the collector did in this process over the measured
// window, from the runtime's own estimates: the fan-out's latency tail is
// made of the deliveries woken during a mark phase.
type fanoutGC struct {
	Cycles    uint64  `json:"cycles"`
	CPUMicros float64 `json:"cpu_us_per_event"` // mark (assists, workers, idle workers) and pauses
	Share     float64 `json:"cpu_share"`        // of the process's CPU time over the window
}

// gcReading is the collector's counters at one moment.
type gcReading struct {
	cycles uint64
	cpu    float64 // seconds
}

func readGC() gcReading {
	m := benchkit.ReadMetrics("/gc/cycles/total:gc-cycles", "/cpu/classes/gc/total:cpu-seconds")
	return gcReading{cycles: m.Uint64(0), cpu: m.Float64(1)}
}

// gcPerEvent is the collector's work between two readings, per event,
// and its share of cpu (the process's CPU time over the same window).
func gcPerEvent(from, to gcReading, cpu time.Duration, events uint64) fanoutGC {
	g := fanoutGC{Cycles: to.cycles - from.cycles}
	if events > 0 {
		g.CPUMicros = benchkit.Round3((to.cpu - from.cpu) * 1e6 / float64(events))
	}
	if cpu > 0 {
		g.Share = benchkit.Round3((to.cpu - from.cpu) / cpu.Seconds())
	}
	return g
}

// The fan-out schedule, which the driver follows and the watchers' side
// computes on its own to know what each watcher must receive: revision
// base+n+1 (n = 0, 1, ...) changes the leg of device n%devs, where devs is
// the number of filtered watchers (at least 1); filtered watcher i watches
// fanoutDevice(i); unfiltered watchers receive every revision.
func fanoutDevs(filtered int) int { return max(filtered, 1) }

// fanoutExpected returns the revisions watcher i must receive when the
// driver committed n revisions after base.
func fanoutExpected(i, filtered int, base, n int64) []int64 {
	first, step := int64(0), int64(1)
	if i < filtered {
		first, step = int64(i), int64(fanoutDevs(filtered))
	}
	var want []int64
	if first < n {
		want = make([]int64, 0, (n-first+step-1)/step)
	}
	for k := first; k < n; k += step {
		want = append(want, base+k+1)
	}
	return want
}

// The watchers' flow-control window (callbench --watcher-window, the
// child's -window). grpc-go's client by default sizes its windows from a
// bandwidth-delay estimate: while data flows it keeps a PING in flight,
// one per round trip, which on loopback is one every few hundred
// microseconds, each read and answered by the server, and it sends window
// updates as it reads. Clients that set a window (grpc-java's and a
// browser's, by default) send neither. In the 1,000 + 10 fan-out the
// default client made ≈ 6,000 writes a second against ≈ 400 with a 1 MiB
// window, and the server spent 6.3–6.7 µs CPU per delivered event against
// 4.0 (docs/BENCHMARKS.md, "Tenth round: the measuring instrument"). The
// fan-out's watchers use defaultWatcherWindow, like grpc-java's default;
// --watcher-window 0 measures grpc-go's default client.
const (
	defaultWatcherWindow = 1 << 20
	// grpc-go ignores a window below 64 KiB - 1 (HTTP/2's initial one);
	// the top is HTTP/2's bound on a window, less the connection's 16×.
	minWatcherWindow = 1<<16 - 1
	maxWatcherWindow = 1 << 26
)

// watcherWindowOpts are the dial options of a watchers' connection with a
// flow-control window of window bytes per stream (16 times that for the
// connection), none for 0.
func watcherWindowOpts(window int) []grpc.DialOption {
	if window == 0 {
		return nil
	}
	return []grpc.DialOption{grpc.WithInitialWindowSize(int32(window)), grpc.WithInitialConnWindowSize(int32(16 * window))}
}

// fanWatchers is the watchers' side of the fan-out scenario: in this
// process (fanClient) or in a child process (fanChild).
type fanWatchers interface {
	// start says the driver commits from base on, and that latencies count
	// from revision mark on.
	start(base, mark int64) error
	// caughtUp says the driver committed n revisions after base, and
	// returns once the watchers caught up (or gave up after a while),
	// their streams still open: what the server does to end them is not
	// in the measured window.
	caughtUp(n int64) error
	// finish stops the watchers and checks what they received.
	finish() (*fanSummary, error)
	close()
}

// fanSummary is what the watchers' side reports (a child prints it as one
// JSON line).
type fanSummary struct {
	Expected   uint64          `json:"expected"`
	Received   uint64          `json:"received"`
	Dropped    uint64          `json:"dropped"`
	Unexpected uint64          `json:"unexpected"`
	Failures   int             `json:"failures"`
	FirstError string          `json:"first_error,omitempty"`
	Samples    uint64          `json:"latency_samples"`
	Latency    latency.Summary `json:"latency"`
	// GC and GCCycles: the child's collector setting and its collections
	// between the driver's start and the watchers' catching up.
	GC       string `json:"gc"`
	GCCycles uint64 `json:"gc_cycles"`
	// Work is the child's own work over the same window, per delivered
	// event: what the instrument took from the machine the server shares.
	Work benchkit.WorkPerEvent `json:"work_per_event"`
}

// runFanout commits transitions straight to the store of a running server
// at a fixed rate while filtered watchers (one device each) and unfiltered
// ones stream them over gRPC; the driver is the store's only writer, so it
// knows each revision before committing it. Just before each commit it
// writes the wall-clock time (UnixNano, decimal) into the committed
// Call.Name: the receiver reads it back from the frame and measures
// receive − commit. The watchers run in a child process (the same binary,
// re-executed: see fanout_child.go) unless cfg.inProcess. Every watcher's
// received revisions are compared with what was committed for its filter:
// a missing one is dropped.
func runFanout(ctx context.Context, e *env, cfg fanoutConfig) (*fanoutResult, error) {
	if cfg.filtered > fanoutDevices {
		return nil, fmt.Errorf("fanout: %d filtered watchers > %d devices", cfg.filtered, fanoutDevices)
	}
	var (
		ws   fanWatchers
		base int64
		err  error
	)
	proc := "child"
	if cfg.inProcess {
		proc = "in-process"
		var conns []*grpc.ClientConn
		if conns, err = e.dialN(cfg.conns, watcherWindowOpts(cfg.watcherWindow)...); err != nil {
			return nil, err
		}
		var c *fanClient
		c, base, err = startFanClient(ctx, conns, cfg.filtered, cfg.unfiltered)
		ws = c
	} else {
		ws, base, err = startFanChild(ctx, e.addr, cfg)
	}
	if err != nil {
		return nil, err
	}
	defer ws.close()
	if rev := e.store.Revision(); base != rev {
		return nil, fmt.Errorf("fanout: watchers started at revision %d, the store is at %d", base, rev)
	}

	total := int(cfg.rate*(cfg.warmup+cfg.duration).Seconds()) + 1
	warm := int(cfg.rate * cfg.warmup.Seconds())
	if err := ws.start(base, base+int64(warm)+1); err != nil {
		return nil, err
	}

	// The driver: device n%devs's leg moves ring → up → hold → up → dead,
	// then a new leg starts; one leg change per revision.
	devs := fanoutDevs(cfg.filtered)
	legs := make([]benchserver.Leg, devs)
	interval := time.Duration(float64(time.Second) / cfg.rate)
	if err := writeWindowAllocs(cfg, "start"); err != nil {
		return nil, err
	}
	work0, gc0, cpu0 := benchkit.ReadWork(), readGC(), benchkit.ReadCPUTimes()
	start := time.Now()
	due := start
	var derr error
	n := 0
	for ; n < total; n++ {
		if now := time.Now(); due.After(now) {
			time.Sleep(due.Sub(now))
		}
		due = due.Add(interval)
		d := n % devs
		ch := legs[d].Next(e.store.NewUID, fanoutDevice(d))
		rev := base + int64(n) + 1
		ch.Call.Name = strconv.FormatInt(time.Now().UnixNano(), 10)
		got, err := e.store.Commit(ch)
		if err != nil {
			derr = err
			break
		}
		if got != rev {
			derr = fmt.Errorf("fanout: committed revision %d, expected %d: another writer?", got, rev)
			break
		}
	}
	elapsed := time.Since(start)
	if derr != nil {
		return nil, derr
	}
	if err := ws.caughtUp(int64(n)); err != nil {
		return nil, err
	}
	work1, gc1, cpu1 := benchkit.ReadWork(), readGC(), benchkit.ReadCPUTimes()
	if err := writeWindowAllocs(cfg, "end"); err != nil {
		return nil, err
	}
	sum, err := ws.finish()
	if err != nil {
		return nil, err
	}
	if cfg.inProcess {
		sum.GC = "in-process"
	}
	res := &fanoutResult{
		Filtered: cfg.filtered, Unfiltered: cfg.unfiltered, Conns: cfg.conns, WatcherProc: proc,
		TargetRate: cfg.rate, Rate: float64(n) / elapsed.Seconds(), Commits: int64(n),
		Expected: sum.Expected, Received: sum.Received, Dropped: sum.Dropped, Unexpected: sum.Unexpected,
		Failures: sum.Failures, FirstError: sum.FirstError,
		DeliveriesSec: float64(sum.Received) / elapsed.Seconds(),
		WatcherWindow: cfg.watcherWindow, WatcherGC: sum.GC, WatcherGCCycles: sum.GCCycles, WatcherWork: sum.Work,
		Latency: sum.Latency,
		Steal:   cpu0.StealPercent(cpu1),
	}
	res.ServerWork = benchkit.PerEvent(work0, work1, sum.Received)
	res.ServerGC = gcPerEvent(gc0, gc1, work1.CPU-work0.CPU, sum.Received)
	// A watcher failure is reported, not fatal: a watcher that fell behind
	// the retained history (OUT_OF_RANGE) is part of what this scenario
	// measures.
	return res, nil
}

// writeWindowAllocs writes this process's allocation profile as
// allocs-<scenario>-<at>.pprof when profiling: at "start", before the
// driver's first commit, and at "end", once the watchers caught up, so
// that `go tool pprof -sample_index=alloc_space -base
// allocs-fanout-start.pprof allocs-fanout-end.pprof` is what the server
// and the driver allocated in the measured window, which the work figures
// (alloc_bytes per event) count too; allocs-<scenario>.pprof counts from
// the start of the process (the directory's set-up, the watchers' opening).
// A heap profile holds the allocations up to the last collection, so each
// is written after one: forced outside the window, counted in neither its
// work nor its collections.
func writeWindowAllocs(cfg fanoutConfig, at string) error {
	if cfg.profileDir == "" {
		return nil
	}
	runtime.GC()
	return benchkit.WriteProfile(filepath.Join(cfg.profileDir, "allocs-"+cfg.name+"-"+at+".pprof"), "allocs", 0)
}

// fanWatcher is one watch of the fan-out scenario.
type fanWatcher struct {
	s    grpc.ClientStream
	revs []int64 // received revisions, in order
	last atomic.Int64
	err  error
}

// fanClient runs the fan-out watchers in this process: in the child, or in
// the benchmark's own process with --fanout-inprocess.
type fanClient struct {
	filtered int
	ws       []*fanWatcher
	cancel   context.CancelFunc
	wctx     context.Context
	wg       sync.WaitGroup
	mark     atomic.Int64 // latencies count from this revision on
	lat      latency.Hist
	base     int64
	want     [][]int64 // each watcher's revisions, once caughtUp is told the commits
}

// startFanClient opens filtered watchers (watcher i on fanoutDevice(i))
// and unfiltered ones, as admin with skip_snapshot, round-robin over
// conns, and returns once each has its started frame, with the revision
// they started at.
func startFanClient(ctx context.Context, conns []*grpc.ClientConn, filtered, unfiltered int) (*fanClient, int64, error) {
	c := &fanClient{filtered: filtered}
	c.mark.Store(1 << 62)
	c.wctx, c.cancel = context.WithCancel(withToken(ctx, adminToken))
	base := int64(-1)
	for i := range filtered + unfiltered {
		req := &callcontrolv1.WatchCallsRequest{SkipSnapshot: true}
		if i < filtered {
			req.Filter = &callcontrolv1.CallFilter{Devices: []string{fanoutDevice(i)}}
		}
		s, rev, err := openWatch(c.wctx, conns[i%len(conns)], req)
		if err == nil && base >= 0 && rev != base {
			err = fmt.Errorf("started at revision %d, the others at %d", rev, base)
		}
		if err != nil {
			c.close()
			return nil, 0, fmt.Errorf("open watch %d: %w", i, err)
		}
		base = rev
		w := &fanWatcher{s: s}
		w.last.Store(rev)
		c.ws = append(c.ws, w)
	}
	for _, w := range c.ws {
		c.wg.Go(func() { c.recv(w) })
	}
	return c, base, nil
}

func (c *fanClient) recv(w *fanWatcher) {
	var m rawframe.Msg
	for {
		err := w.s.RecvMsg(&m)
		now := time.Now().UnixNano()
		var kind protowire.Number
		var rev, at int64
		if err == nil {
			kind, rev, at, err = parseEventFrame(m.B)
		}
		if err != nil {
			if !ended(c.wctx, err) {
				w.err = err
			}
			return
		}
		if kind != frameEvents {
			continue
		}
		if rev >= c.mark.Load() && at > 0 {
			c.lat.Record(time.Duration(now - at))
		}
		w.revs = append(w.revs, rev)
		w.last.Store(rev)
	}
}

func (c *fanClient) start(base, mark int64) error {
	c.base = base
	c.mark.Store(mark)
	return nil
}

func (c *fanClient) caughtUp(n int64) error {
	want := make([][]int64, len(c.ws))
	for i := range c.ws {
		want[i] = fanoutExpected(i, c.filtered, c.base, n)
	}
	c.want = want
	// Let every watcher catch up (or give up after a while).
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		done := true
		for i, w := range c.ws {
			if wi := want[i]; len(wi) > 0 && w.last.Load() < wi[len(wi)-1] {
				done = false
				break
			}
		}
		if done {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

func (c *fanClient) finish() (*fanSummary, error) {
	if c.want == nil {
		return nil, errors.New("fanout: finish before caughtUp")
	}
	want := c.want
	c.cancel()
	c.wg.Wait()
	sum := &fanSummary{Samples: c.lat.Count(), Latency: c.lat.Summary()}
	for i, w := range c.ws {
		if w.err != nil {
			sum.Failures++
			if sum.FirstError == "" {
				sum.FirstError = w.err.Error()
			}
		}
		missing, extra := compareRevs(want[i], w.revs)
		sum.Expected += uint64(len(want[i]))
		sum.Received += uint64(len(w.revs))
		sum.Dropped += uint64(missing)
		sum.Unexpected += uint64(extra)
	}
	return sum, nil
}

func (c *fanClient) close() {
	c.cancel()
	c.wg.Wait()
}

// compareRevs counts the revisions of want (ascending) missing from got,
// and those of got that are not in want or repeat one (duplicates, or
// revisions of another device).
func compareRevs(want, got []int64) (missing, extra int) {
	seen := make(map[int64]bool, len(got))
	for _, r := range got {
		if seen[r] {
			extra++
		}
		seen[r] = true
	}
	for _, r := range want {
		if !seen[r] {
			missing++
		}
		delete(seen, r)
	}
	return missing, extra + len(seen)
}
