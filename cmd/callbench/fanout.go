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
	// baseline: the no-op fan-out (noopfanout.go) runs too, with its own
	// watchers (the same filters, connections and process), in segments
	// that alternate with the WatchCalls fan-out's: rounds segments of
	// each kind over duration, each kind first in every other round, so
	// that what the host does to the machine falls on both alike.
	baseline bool
	rounds   int
	// profileDir non-empty: the child writes its CPU profile here
	// (cpu-<name>-watchers.pprof), and this process the allocation
	// profiles that bound the measured window (writeWindowAllocs).
	profileDir string
}

// fanoutKindResult is what one kind of fan-out (WatchCalls, or the no-op
// baseline) measured over its measured segments.
type fanoutKindResult struct {
	Rate          float64 `json:"transitions_per_second"`
	Commits       int64   `json:"commits"` // warm-up included
	Expected      uint64  `json:"expected_deliveries"`
	Received      uint64  `json:"received_deliveries"`
	Dropped       uint64  `json:"dropped"`
	Unexpected    uint64  `json:"unexpected"`
	Failures      int     `json:"watcher_failures"`
	FirstError    string  `json:"first_error,omitempty"`
	DeliveriesSec float64 `json:"deliveries_per_second"`
	// FrameBytes is the average event frame the watchers received.
	FrameBytes float64 `json:"frame_bytes"`
	// ServerWork is the work of this process (the server and the driver;
	// the watchers run in the child) from each measured segment's start
	// until every watcher has caught up, per delivered event: CPU time,
	// allocations, goroutines started. Less sensitive to a busy machine
	// than the latency: it counts work, not waiting. With
	// --fanout-inprocess it includes the watchers' side.
	ServerWork benchkit.WorkPerEvent `json:"server_work_per_event"`
	// ServerGC is the garbage collector's share of ServerWork.
	ServerGC fanoutGC        `json:"server_gc"`
	Latency  latency.Summary `json:"commit_to_receive"`
	// Steal is the machine's CPU time the hypervisor gave other guests
	// over the same segments, in per cent (-1: unknown): on a busy host
	// it is what the tail follows.
	Steal float64 `json:"steal_percent"`
}

type fanoutResult struct {
	Filtered    int     `json:"filtered_watchers"`
	Unfiltered  int     `json:"unfiltered_watchers"`
	Conns       int     `json:"connections"`
	WatcherProc string  `json:"watcher_process"` // "child" or "in-process"
	TargetRate  float64 `json:"target_transitions_per_second"`
	// The WatchCalls fan-out's figures (at the top level of the JSON, as
	// before the baseline existed).
	fanoutKindResult
	// Baseline is the no-op fan-out's, in the segments between (nil with
	// --fanout-baseline=false); Rounds is the segments of each kind.
	Baseline *fanoutKindResult `json:"baseline,omitempty"`
	Rounds   int               `json:"rounds"`
	// WatcherWindow is the watchers' flow-control window per stream in
	// bytes, 0 for grpc-go's dynamic window (watcherWindowOpts).
	WatcherWindow int `json:"watcher_window"`
	// WatcherWork is the watchers' process's work per delivered event,
	// both kinds and warm-up included (zero in-process: it is in
	// ServerWork).
	WatcherWork benchkit.WorkPerEvent `json:"watcher_work_per_event"`
	// WatcherGC is the watchers' process's collector setting ("held",
	// "on"; "in-process": the server's) and WatcherGCCycles the
	// collections it did from the driver's start to the end (see
	// fanout_child.go).
	WatcherGC       string `json:"watcher_gc"`
	WatcherGCCycles uint64 `json:"watcher_gc_cycles"`
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
// default client made 4,800–6,000 writes a second against ≈ 370 with a
// 1 MiB window, and the server spent 6.3–6.7 µs CPU per delivered event against
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
// process (fanClient) or in a child process (fanChild). It has one set of
// watchers per kind: WatchCalls' and, with the baseline, the no-op
// fan-out's.
type fanWatchers interface {
	// start says that latencies count from revision mark on for the
	// WatchCalls watchers and from noopMark on for the no-op ones.
	start(mark, noopMark int64) error
	// caughtUp says the driver committed n revisions after the WatchCalls
	// watchers' base and noopN after the no-op ones', and returns once
	// the watchers caught up (or gave up after a while), their streams
	// still open: what the server does to end them is not in the
	// measured window.
	caughtUp(n, noopN int64) error
	// finish stops the watchers and checks what they received.
	finish() (*fanSummary, error)
	close()
}

// fanSetSummary is what one set of watchers received.
type fanSetSummary struct {
	Expected   uint64          `json:"expected"`
	Received   uint64          `json:"received"`
	Dropped    uint64          `json:"dropped"`
	Unexpected uint64          `json:"unexpected"`
	Failures   int             `json:"failures"`
	FirstError string          `json:"first_error,omitempty"`
	Samples    uint64          `json:"latency_samples"`
	Latency    latency.Summary `json:"latency"`
	FrameBytes float64         `json:"frame_bytes"` // per event frame, on average
}

// fanSummary is what the watchers' side reports (a child prints it as one
// JSON line).
type fanSummary struct {
	WatchCalls fanSetSummary  `json:"watchcalls"`
	Baseline   *fanSetSummary `json:"baseline,omitempty"`
	// GC and GCCycles: the child's collector setting and its collections
	// between the driver's start and the watchers' last catching up.
	GC       string `json:"gc"`
	GCCycles uint64 `json:"gc_cycles"`
	// Work is the child's own work over the same window, per delivered
	// event: what the instrument took from the machine the server shares.
	Work benchkit.WorkPerEvent `json:"work_per_event"`
}

// fanKind is one kind of fan-out the driver commits to: the server's
// store, or the no-op hub. The schedule is per kind: its k-th change
// (from 0, warm-up included) is revision base+k+1 and changes device
// k%devs (fanoutExpected).
type fanKind struct {
	commit func(k int) error // commits change k, stamped with the time
	n      int               // changes committed
	// Over the measured segments: their changes, the time spent
	// committing them, this process's work until the watchers caught up,
	// its collector's, and the machine's CPU times (for the steal).
	commits  int
	elapsed  time.Duration
	work     benchkit.Work
	gcCycles uint64
	gcCPU    float64
	cpu      benchkit.CPUWindow
}

// run commits count changes at one per interval. A late start (the
// sleep overshot, or the process was not running) is made up at once, as
// a burst: each change is stamped when it is committed.
func (k *fanKind) run(count int, interval time.Duration) (time.Duration, error) {
	start := time.Now()
	due := start
	for range count {
		if now := time.Now(); due.After(now) {
			time.Sleep(due.Sub(now))
		}
		due = due.Add(interval)
		if err := k.commit(k.n); err != nil {
			return 0, err
		}
		k.n++
	}
	return time.Since(start), nil
}

// runFanout commits transitions straight to the store of a running server
// at a fixed rate while filtered watchers (one device each) and unfiltered
// ones stream them over gRPC; the driver is the store's only writer, so it
// knows each revision before committing it. Just before each commit it
// writes the wall-clock time (UnixNano, decimal) into the committed
// Call.Name: the receiver reads it back from the frame and measures
// receive − commit. With cfg.baseline the no-op fan-out's watchers run
// beside them and the driver alternates between the two kinds (see
// fanoutConfig). The watchers run in a child process (the same binary,
// re-executed: see fanout_child.go) unless cfg.inProcess. Every watcher's
// received revisions are compared with what was committed for its filter:
// a missing one is dropped.
func runFanout(ctx context.Context, e *env, cfg fanoutConfig) (*fanoutResult, error) {
	if cfg.filtered > fanoutDevices {
		return nil, fmt.Errorf("fanout: %d filtered watchers > %d devices", cfg.filtered, fanoutDevices)
	}
	var (
		ws          fanWatchers
		base, nbase int64
		err         error
	)
	proc := "child"
	if cfg.inProcess {
		proc = "in-process"
		var conns []*grpc.ClientConn
		if conns, err = e.dialN(cfg.conns, watcherWindowOpts(cfg.watcherWindow)...); err != nil {
			return nil, err
		}
		var c *fanClient
		c, base, nbase, err = startFanClient(ctx, conns, cfg.filtered, cfg.unfiltered, cfg.baseline)
		ws = c
	} else {
		ws, base, nbase, err = startFanChild(ctx, e.addr, cfg)
	}
	if err != nil {
		return nil, err
	}
	defer ws.close()
	if rev := e.store.Revision(); base != rev {
		return nil, fmt.Errorf("fanout: watchers started at revision %d, the store is at %d", base, rev)
	}
	hub := e.noop.fanoutHub()
	if rev := hub.revision(); cfg.baseline && nbase != rev {
		return nil, fmt.Errorf("fanout: no-op watchers started at revision %d, the hub is at %d", nbase, rev)
	}

	// The drivers: device d's leg moves ring → up → hold → up → dead, then
	// a new leg starts; one leg change per revision.
	devs := fanoutDevs(cfg.filtered)
	legs := make([]benchserver.Leg, devs)
	real := &fanKind{commit: func(k int) error {
		d := k % devs
		ch := legs[d].Next(e.store.NewUID, fanoutDevice(d))
		ch.Call.Name = strconv.FormatInt(time.Now().UnixNano(), 10)
		got, err := e.store.Commit(ch)
		if err != nil {
			return err
		}
		if want := base + int64(k) + 1; got != want {
			return fmt.Errorf("fanout: committed revision %d, expected %d: another writer?", got, want)
		}
		return nil
	}}
	kinds := []*fanKind{real}
	var noop *fanKind
	if cfg.baseline {
		noopLegs := make([]benchserver.Leg, devs)
		var uid int64
		newUID := func() int64 { uid++; return uid }
		noop = &fanKind{commit: func(k int) error {
			d := k % devs
			ch := noopLegs[d].Next(newUID, fanoutDevice(d))
			ch.Call.Name = strconv.FormatInt(time.Now().UnixNano(), 10)
			rev := nbase + int64(k) + 1
			frame, err := noopEventFrame(rev, ch)
			if err != nil {
				return err
			}
			return hub.publish(fanoutDevice(d), rev, frame)
		}}
		kinds = append(kinds, noop)
	}
	noopN := func() int64 {
		if noop == nil {
			return 0
		}
		return int64(noop.n)
	}

	rounds := 1
	if noop != nil {
		rounds = max(cfg.rounds, 1)
	}
	interval := time.Duration(float64(time.Second) / cfg.rate)
	warm := int(cfg.rate * cfg.warmup.Seconds())
	perSegment := max(int(cfg.rate*cfg.duration.Seconds())/rounds, 1)
	if err := ws.start(base+int64(warm)+1, nbase+int64(warm)+1); err != nil {
		return nil, err
	}
	// segment runs count changes of kind k and waits for the watchers;
	// measured, it adds the window's work to the kind's.
	segment := func(k *fanKind, count int, measured bool) error {
		w0, g0, c0 := benchkit.ReadWork(), readGC(), benchkit.ReadCPUTimes()
		d, err := k.run(count, interval)
		if err != nil {
			return err
		}
		if err := ws.caughtUp(int64(real.n), noopN()); err != nil {
			return err
		}
		if !measured {
			return nil
		}
		w1, g1, c1 := benchkit.ReadWork(), readGC(), benchkit.ReadCPUTimes()
		k.commits += count
		k.elapsed += d
		k.work = k.work.Add(w1.Sub(w0))
		k.gcCycles += g1.cycles - g0.cycles
		k.gcCPU += g1.cpu - g0.cpu
		k.cpu = k.cpu.Add(c0.Window(c1))
		return nil
	}
	// The warm-up: each kind's first changes, checked, not measured.
	for _, k := range kinds {
		if err := segment(k, warm, false); err != nil {
			return nil, err
		}
	}
	if err := writeWindowAllocs(cfg, "start"); err != nil {
		return nil, err
	}
	for r := range rounds {
		for i := range kinds {
			k := kinds[(i+r)%len(kinds)] // each kind first in every other round
			if err := segment(k, perSegment, true); err != nil {
				return nil, err
			}
		}
	}
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
		Filtered: cfg.filtered, Unfiltered: cfg.unfiltered, Conns: cfg.conns, WatcherProc: proc, TargetRate: cfg.rate,
		fanoutKindResult: real.result(sum.WatchCalls),
		Rounds:           rounds,
		WatcherWindow:    cfg.watcherWindow, WatcherGC: sum.GC, WatcherGCCycles: sum.GCCycles, WatcherWork: sum.Work,
	}
	if noop != nil && sum.Baseline != nil {
		b := noop.result(*sum.Baseline)
		res.Baseline = &b
	}
	// A watcher failure is reported, not fatal: a watcher that fell behind
	// the retained history (OUT_OF_RANGE) is part of what this scenario
	// measures.
	return res, nil
}

// result is the kind's figures, with what its watchers received.
func (k *fanKind) result(s fanSetSummary) fanoutKindResult {
	r := fanoutKindResult{
		Commits: int64(k.n), Expected: s.Expected, Received: s.Received, Dropped: s.Dropped, Unexpected: s.Unexpected,
		Failures: s.Failures, FirstError: s.FirstError, FrameBytes: s.FrameBytes, Latency: s.Latency, Steal: k.cpu.StealPercent(),
	}
	if k.elapsed > 0 {
		r.Rate = float64(k.commits) / k.elapsed.Seconds()
		r.DeliveriesSec = float64(s.Samples) / k.elapsed.Seconds()
	}
	// The measured segments' deliveries are the latency samples: every
	// event from the mark on carries its commit time.
	r.ServerWork = benchkit.PerEvent(benchkit.Work{}, k.work, s.Samples)
	r.ServerGC = gcPerEvent(gcReading{}, gcReading{cycles: k.gcCycles, cpu: k.gcCPU}, k.work.CPU, s.Samples)

	return r
}

// writeWindowAllocs writes this process's allocation profile as
// allocs-<scenario>-<at>.pprof when profiling: at "start", before the
// driver's first commit, and at "end", once the watchers caught up, so
// that `go tool pprof -sample_index=alloc_space -base
// allocs-fanout-start.pprof allocs-fanout-end.pprof` is what the server
// and the driver allocated in the measured window, which the work figures
// (alloc_bytes per event) count too; allocs-<scenario>.pprof counts from
// the start of the process (the directory's set-up, the watchers' opening).
// With the baseline, its segments are in the window too (and its
// allocations: noopEventFrame's, the hub's).
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
	s      grpc.ClientStream
	revs   []int64 // received revisions, in order
	last   atomic.Int64
	err    error
	bytes  int64 // of the event frames received
	frames int64
}

// fanSet is one kind's watchers: i < filtered watches fanoutDevice(i),
// the others everything.
type fanSet struct {
	method string // WatchCalls, or the no-op fan-out
	ws     []*fanWatcher
	base   int64        // the revision they started at
	mark   atomic.Int64 // latencies count from this revision on
	lat    latency.Hist
	n      int64 // revisions committed after base, as last told
}

// fanClient runs the fan-out watchers in this process: in the child, or in
// the benchmark's own process with --fanout-inprocess.
type fanClient struct {
	filtered int
	sets     []*fanSet // WatchCalls', then the no-op fan-out's if any
	cancel   context.CancelFunc
	wctx     context.Context
	wg       sync.WaitGroup
	told     bool // caughtUp was called
}

// startFanClient opens filtered watchers (watcher i on fanoutDevice(i))
// and unfiltered ones, as admin with skip_snapshot, round-robin over
// conns, with baseline the same again on the no-op fan-out, and returns
// once each has its started frame, with the revision each set started at
// (-1 for the baseline's without one).
func startFanClient(ctx context.Context, conns []*grpc.ClientConn, filtered, unfiltered int, baseline bool) (c *fanClient, base, noopBase int64, err error) {
	c = &fanClient{filtered: filtered}
	c.wctx, c.cancel = context.WithCancel(withToken(ctx, adminToken))
	methods := []string{watchMethod}
	if baseline {
		methods = append(methods, noopFanoutMethod)
	}
	for _, method := range methods {
		set := &fanSet{method: method, base: -1}
		set.mark.Store(1 << 62)
		for i := range filtered + unfiltered {
			req := &callcontrolv1.WatchCallsRequest{SkipSnapshot: true}
			if i < filtered {
				req.Filter = &callcontrolv1.CallFilter{Devices: []string{fanoutDevice(i)}}
			}
			s, rev, err := openWatchAt(c.wctx, conns[i%len(conns)], method, req)
			if err == nil && set.base >= 0 && rev != set.base {
				err = fmt.Errorf("started at revision %d, the others at %d", rev, set.base)
			}
			if err != nil {
				c.close()
				return nil, 0, 0, fmt.Errorf("open watch %d (%s): %w", i, method, err)
			}
			set.base = rev
			w := &fanWatcher{s: s}
			w.last.Store(rev)
			set.ws = append(set.ws, w)
		}
		c.sets = append(c.sets, set)
	}
	for _, set := range c.sets {
		for _, w := range set.ws {
			c.wg.Go(func() { c.recv(set, w) })
		}
	}
	noopBase = -1
	if baseline {
		noopBase = c.sets[1].base
	}
	return c, c.sets[0].base, noopBase, nil
}

func (c *fanClient) recv(set *fanSet, w *fanWatcher) {
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
		if rev >= set.mark.Load() && at > 0 {
			set.lat.Record(time.Duration(now - at))
		}
		w.bytes += int64(len(m.B))
		w.frames++
		w.revs = append(w.revs, rev)
		w.last.Store(rev)
	}
}

func (c *fanClient) start(mark, noopMark int64) error {
	c.sets[0].mark.Store(mark)
	if len(c.sets) > 1 {
		c.sets[1].mark.Store(noopMark)
	}
	return nil
}

// lastExpected returns the last revision watcher i of a set must have
// when n revisions were committed after base, and false if none.
func lastExpected(i, filtered int, base, n int64) (int64, bool) {
	if i >= filtered {
		return base + n, n > 0
	}
	step := int64(fanoutDevs(filtered))
	if int64(i) >= n {
		return 0, false
	}
	return base + int64(i) + (n-1-int64(i))/step*step + 1, true
}

func (c *fanClient) caughtUp(n, noopN int64) error {
	c.sets[0].n = n
	if len(c.sets) > 1 {
		c.sets[1].n = noopN
	}
	c.told = true
	// Let every watcher catch up (or give up after a while).
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && !c.allCaughtUp() {
		time.Sleep(time.Millisecond)
	}
	return nil
}

func (c *fanClient) allCaughtUp() bool {
	for _, set := range c.sets {
		for i, w := range set.ws {
			if last, ok := lastExpected(i, c.filtered, set.base, set.n); ok && w.last.Load() < last {
				return false
			}
		}
	}
	return true
}

func (c *fanClient) finish() (*fanSummary, error) {
	if !c.told {
		return nil, errors.New("fanout: finish before caughtUp")
	}
	c.cancel()
	c.wg.Wait()
	sum := &fanSummary{WatchCalls: c.sets[0].summary(c.filtered)}
	if len(c.sets) > 1 {
		b := c.sets[1].summary(c.filtered)
		sum.Baseline = &b
	}
	return sum, nil
}

// summary checks what the set's watchers received against the schedule.
func (set *fanSet) summary(filtered int) fanSetSummary {
	sum := fanSetSummary{Samples: set.lat.Count(), Latency: set.lat.Summary()}
	var bytes, frames int64
	for i, w := range set.ws {
		if w.err != nil {
			sum.Failures++
			if sum.FirstError == "" {
				sum.FirstError = w.err.Error()
			}
		}
		want := fanoutExpected(i, filtered, set.base, set.n)
		missing, extra := compareRevs(want, w.revs)
		sum.Expected += uint64(len(want))
		sum.Received += uint64(len(w.revs))
		sum.Dropped += uint64(missing)
		sum.Unexpected += uint64(extra)
		bytes += w.bytes
		frames += w.frames
	}
	if frames > 0 {
		sum.FrameBytes = benchkit.Round3(float64(bytes) / float64(frames))
	}
	return sum
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
