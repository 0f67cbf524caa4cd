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
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"

	"callcontrold/callstore"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/internal/benchkit"
	"callcontrold/internal/benchserver"
	"callcontrold/internal/rawframe"
	"callcontrold/wirefield"
)

// The idle scenario: what an idle WatchCalls stream costs the server.
// Streams filtered to one device each (device i%1,000), opened with their
// snapshot and left idle once it has arrived, over 10 and then 1,000
// client connections. The streams' client side runs in a child process
// (this binary re-executed with CALLBENCH_CHILD=idle-watchers), so the
// server's process (this one) holds only the server's side; its heap
// (after two collections) and resident set (VmRSS) are read before the
// connections, once they are up, and once every stream has its snapshot.
//
// Protocol (one line each way at a time):
//
//	parent starts:  callbench -addr A -streams N -conns C
//	child → parent: connected      every connection is ready
//	parent → child: open
//	child → parent: ready          every stream has its snapshot
//	parent closes stdin            the child closes everything and exits 0
const childIdle = "idle-watchers"

// The snapshot's WatchCallsResponse frames (see frame.go for the others).
const (
	frameSnapshot    = wirefield.ResponseSnapshot
	frameSnapshotEnd = wirefield.ResponseSnapshotEnd
)

// The idle scenario runs in a fresh process of its own (this binary
// re-executed with CALLBENCH_CHILD=idle-scenario, the server in it and its
// clients in a further child): the runtime never frees a goroutine's
// record (a heap object of ≈ 490 B) and hands an ended goroutine's to the
// next one started, and a scenario leaves partly used spans resident, so
// after the fan-outs (20,020 streams each) a new idle stream read as if
// its goroutine and part of its heap cost nothing: 7.5 KB per stream
// over 10 connections against 8.7 KB in a fresh process
// (docs/BENCHMARKS.md, "Tenth round: what an idle stream costs in a fresh
// process"). Each round (--idle-conns) runs in a process of its own: a
// second round in the same process would reuse the first's records.
const childIdleScenario = "idle-scenario"

// runIdleFresh runs each round of the idle scenario in a fresh process
// and returns their results.
func runIdleFresh(ctx context.Context, c *config) (*idleResult, error) {
	res := &idleResult{}
	for _, conns := range c.idle.conns {
		r, err := runIdleRoundFresh(ctx, c, conns)
		if err != nil {
			return nil, err
		}
		res.PIDs = append(res.PIDs, r.PIDs...)
		res.Rounds = append(res.Rounds, r.Rounds...)
	}
	return res, nil
}

// runIdleRoundFresh runs one round (conns connections) in a fresh process.
func runIdleRoundFresh(ctx context.Context, c *config, conns int) (*idleResult, error) {
	args := []string{"--scenarios", "idle", "--idle-streams", strconv.Itoa(c.idle.streams), "--idle-conns", strconv.Itoa(conns)}
	if c.profileDir != "" {
		args = append(args, "--profile", c.profileDir)
	}
	if c.smoke {
		args = append(args, "--smoke")
	}
	ch, err := benchkit.StartChild(ctx, "idle scenario's process", childEnv+"="+childIdleScenario, args, nil)
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	var res idleResult
	if err := ch.ReadJSON(10*time.Minute, &res); err != nil {
		return nil, err
	}
	if err := ch.Finish(time.Minute); err != nil {
		return nil, err
	}
	return &res, nil
}

// idleScenarioMain is that process: it runs the idle scenario alone, as
// callbench would with the same flags, and prints its result as one JSON
// line on stdout.
func idleScenarioMain(args []string, stdout, stderr io.Writer) int {
	c, err := parseFlags(args, stderr)
	if err == nil && (len(c.scenarios) != 1 || !c.scenarios["idle"]) {
		err = errors.New("the idle scenario's process runs --scenarios idle only")
	}
	var rep *report
	if err == nil {
		rep, err = run(context.Background(), c, stderr)
	}
	var b []byte
	if err == nil {
		b, err = json.Marshal(rep.Idle)
	}
	if err == nil {
		_, err = stdout.Write(append(b, '\n'))
	}
	if err != nil {
		fmt.Fprintln(stderr, "callbench idle scenario:", err)
		return 1
	}
	return 0
}

type idleConfig struct {
	profileDir string // non-empty: write heap-idle-<conns>{-connected,,-events}.pprof and goroutines-idle-<conns>{-connected,}.txt there
	streams    int
	conns      []int         // one round per connection count
	settle     time.Duration // after the streams are open, before the reading
}

// idleRound is one round: streams over conns connections.
type idleRound struct {
	Streams int `json:"streams"`
	Conns   int `json:"connections"`
	// The server's process memory before the connections, with them, and
	// with the streams too.
	HeapBase       uint64 `json:"heap_base_bytes"`
	StackConnected uint64 `json:"stack_connected_bytes"` // goroutine stacks (not in the heap)
	StackStreams   uint64 `json:"stack_streams_bytes"`
	// The goroutines' frames at rest (the stack the last collection
	// scanned): what decides a stack's size class. A stack shrinks to half
	// at a collection only while under a quarter of it is in use (the
	// runtime counts 800 bytes more than the frames).
	FramesConnected uint64 `json:"frames_connected_bytes"`
	FramesStreams   uint64 `json:"frames_streams_bytes"`
	HeapConnected   uint64 `json:"heap_connected_bytes"`
	HeapStreams     uint64 `json:"heap_streams_bytes"`
	RSSBase         uint64 `json:"rss_base_bytes"`
	RSSConnected    uint64 `json:"rss_connected_bytes"`
	RSSStreams      uint64 `json:"rss_streams_bytes"`
	// Per stream: the streams' own growth, and with the connections'
	// share (total growth / streams).
	HeapPerStream     float64 `json:"heap_bytes_per_stream"`
	StackPerStream    float64 `json:"stack_bytes_per_stream"`
	FramesPerStream   float64 `json:"frames_bytes_per_stream"`
	RSSPerStream      float64 `json:"rss_bytes_per_stream"`
	RSSPerStreamConns float64 `json:"rss_bytes_per_stream_with_connections"`
	Goroutines        int     `json:"server_goroutines"`
	OpenSeconds       float64 `json:"open_seconds"`
	// Collections that ran while the streams opened. What opening a
	// stream allocates and drops is free again only after a collection:
	// with none meanwhile, it sits between the streams' live objects, and
	// what of it the reading's collection frees stays as free space in
	// the spans they keep (heap/unused).
	GCsOpening uint32 `json:"gcs_while_opening"`
	// Collections while the connections were made. Goroutines start with
	// the stack size the last collection set (the average it scanned), so
	// with none meanwhile the connections' goroutines start with what the
	// round before left.
	GCsConnecting uint32 `json:"gcs_while_connecting"`
	// The stack new goroutines start with, as the base reading's
	// collection set it (/gc/stack/starting-size): 2 KiB, a connection's
	// writer grows to 4 KiB on its first stream's headers; 4 KiB, not.
	StackStartBase uint64 `json:"stack_starting_size_base_bytes"`
	// Then every stream gets events (a leg rings on its device and ends)
	// and is idle again: what it costs then. A handler whose stack grew
	// while it delivered keeps the larger stack for the stream's life.
	RSSPerStreamAfterEvents   float64 `json:"rss_bytes_per_stream_after_events"`
	StackPerStreamAfterEvents float64 `json:"stack_bytes_per_stream_after_events"`
	// Where the streams' resident memory goes: the growth of each of the
	// runtime's memory classes (/memory/classes/..., their names without
	// that prefix) from the connections' reading to the streams', per
	// stream. Objects in the heap, the free space in the heap's spans in
	// use (what size-class rounding and partly used spans cost), stacks,
	// and the runtime's own structures (span records, GC metadata).
	ClassesPerStream map[string]float64 `json:"memory_classes_per_stream"`
}

type idleResult struct {
	// PIDs are the processes the server ran in, one per round: each a
	// fresh one of its own (runIdleFresh), not callbench's.
	PIDs   []int       `json:"server_pids"`
	Rounds []idleRound `json:"rounds"`
}

// serverMemory collects garbage, returns freed memory to the OS (so that
// rounds start alike) and reads this process's heap, goroutine stacks,
// the frames in them at rest, and resident set.
func serverMemory() (heap, stack, frames, res uint64) {
	heap, stack, frames, res, _ = serverMemoryClasses()
	return heap, stack, frames, res
}

// serverMemoryClasses is serverMemory, with the runtime's memory classes
// (see memoryClasses) read at the same moment.
func serverMemoryClasses() (heap, stack, frames, res uint64, classes map[string]uint64) {
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	scanned := []metrics.Sample{{Name: "/gc/scan/stack:bytes"}}
	metrics.Read(scanned)
	if scanned[0].Value.Kind() == metrics.KindUint64 {
		frames = scanned[0].Value.Uint64()
	}
	return m.HeapAlloc, m.StackInuse, frames, benchkit.SelfRSS(), memoryClasses()
}

// numGC is the number of collections completed so far (from
// runtime/metrics: ReadMemStats would stop the world for it, and moved
// the connections' RSS reading by ≈ 20 KB per connection when it did).
func numGC() uint32 {
	return uint32(benchkit.ReadMetrics("/gc/cycles/total:gc-cycles").Uint64(0))
}

const memoryClassPrefix = "/memory/classes/"

// memoryClasses reads the runtime's memory classes, in bytes, by name
// without memoryClassPrefix and the unit ("heap/objects", "os-stacks",
// ...): the leaves that add up to what the runtime has mapped.
func memoryClasses() map[string]uint64 {
	var samples []metrics.Sample
	for _, d := range metrics.All() {
		if strings.HasPrefix(d.Name, memoryClassPrefix) && !strings.HasPrefix(d.Name, memoryClassPrefix+"total") {
			samples = append(samples, metrics.Sample{Name: d.Name})
		}
	}
	metrics.Read(samples)
	out := make(map[string]uint64, len(samples))
	for _, sm := range samples {
		if sm.Value.Kind() == metrics.KindUint64 {
			out[strings.TrimSuffix(strings.TrimPrefix(sm.Name, memoryClassPrefix), ":bytes")] = sm.Value.Uint64()
		}
	}
	return out
}

// classesPerStream is each class's growth from before to after, per
// stream; classes that did not move are left out.
func classesPerStream(before, after map[string]uint64, streams int) map[string]float64 {
	out := map[string]float64{}
	for name, v := range after {
		if d := float64(v) - float64(before[name]); d != 0 {
			out[name] = d / float64(streams)
		}
	}
	return out
}

func runIdle(ctx context.Context, e *env, cfg idleConfig) (*idleResult, error) {
	res := &idleResult{PIDs: []int{os.Getpid()}}
	for _, conns := range cfg.conns {
		r, err := idleOnce(ctx, e, cfg, conns)
		if err != nil {
			return nil, fmt.Errorf("%d streams over %d connections: %w", cfg.streams, conns, err)
		}
		res.Rounds = append(res.Rounds, *r)
		// The child is gone, but the server ends its streams on its own
		// time: wait for that, so that the next round (or scenario) starts
		// from the same memory.
		if err := waitNoWatchers(ctx, e); err != nil {
			return nil, err
		}
		debug.FreeOSMemory()
	}
	return res, nil
}

// waitNoWatchers waits until the server's store has no watcher left (30 s
// at most).
func waitNoWatchers(ctx context.Context, e *env) error {
	deadline := time.Now().Add(30 * time.Second)
	for e.store.Watchers() > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d watchers still registered 30s after their client exited", e.store.Watchers())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

func idleOnce(ctx context.Context, e *env, cfg idleConfig, conns int) (*idleRound, error) {
	r := &idleRound{Streams: cfg.streams, Conns: conns}
	r.HeapBase, _, _, r.RSSBase = serverMemory()
	gcsBase := numGC()
	r.StackStartBase = benchkit.ReadMetrics("/gc/stack/starting-size:bytes").Uint64(0)
	args := []string{"-addr", e.addr, "-streams", strconv.Itoa(cfg.streams), "-conns", strconv.Itoa(conns)}
	c, err := benchkit.StartChild(ctx, "idle watchers' process", childEnv+"="+childIdle, args, nil)
	if err != nil {
		return nil, err
	}
	// Its stdin closed, the child closes everything and exits.
	defer func() { _ = c.Finish(time.Minute) }()
	expect := func(want string) error {
		got, err := c.ReadLine(2 * time.Minute)
		if err == nil && got != want {
			c.Close()
			err = c.Err(fmt.Errorf("want %q, got %q", want, got))
		}
		return err
	}
	if err := expect("connected"); err != nil {
		return nil, err
	}
	r.GCsConnecting = numGC() - gcsBase
	var classesConnected, classesStreams map[string]uint64
	r.HeapConnected, r.StackConnected, r.FramesConnected, r.RSSConnected, classesConnected = serverMemoryClasses()
	if cfg.profileDir != "" {
		// The heap and the goroutines before the streams: what opening
		// the streams allocated and left shows against the profiles below.
		if err := benchkit.WriteProfile(filepath.Join(cfg.profileDir, fmt.Sprintf("heap-idle-%d-connected.pprof", conns)), "heap", 0); err != nil {
			return nil, err
		}
		if err := benchkit.WriteProfile(filepath.Join(cfg.profileDir, fmt.Sprintf("goroutines-idle-%d-connected.txt", conns)), "goroutine", 2); err != nil {
			return nil, err
		}
	}
	t, gcs := time.Now(), numGC()
	if err := c.Send("open"); err != nil {
		return nil, err
	}
	if err := expect("ready"); err != nil {
		return nil, err
	}
	r.OpenSeconds, r.GCsOpening = time.Since(t).Seconds(), numGC()-gcs
	select {
	case <-time.After(cfg.settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	r.HeapStreams, r.StackStreams, r.FramesStreams, r.RSSStreams, classesStreams = serverMemoryClasses()
	r.ClassesPerStream = classesPerStream(classesConnected, classesStreams, cfg.streams)
	r.Goroutines = runtime.NumGoroutine()
	if cfg.profileDir != "" {
		// The heap, and every goroutine's stack (the idle streams' handlers
		// are most of them: see what one costs).
		if err := benchkit.WriteProfile(filepath.Join(cfg.profileDir, fmt.Sprintf("heap-idle-%d.pprof", conns)), "heap", 0); err != nil {
			return nil, err
		}
		if err := benchkit.WriteProfile(filepath.Join(cfg.profileDir, fmt.Sprintf("goroutines-idle-%d.txt", conns)), "goroutine", 2); err != nil {
			return nil, err
		}
	}
	n := float64(cfg.streams)
	r.HeapPerStream = (float64(r.HeapStreams) - float64(r.HeapConnected)) / n
	r.StackPerStream = (float64(r.StackStreams) - float64(r.StackConnected)) / n
	r.FramesPerStream = (float64(r.FramesStreams) - float64(r.FramesConnected)) / n
	r.RSSPerStream = (float64(r.RSSStreams) - float64(r.RSSConnected)) / n
	r.RSSPerStreamConns = (float64(r.RSSStreams) - float64(r.RSSBase)) / n

	if err := ringEveryDevice(e, min(cfg.streams, spreadDevices)); err != nil {
		return nil, err
	}
	select {
	case <-time.After(cfg.settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	_, stack, _, rss := serverMemory()
	if cfg.profileDir != "" {
		// What the streams keep of their deliveries.
		if err := benchkit.WriteProfile(filepath.Join(cfg.profileDir, fmt.Sprintf("heap-idle-%d-events.pprof", conns)), "heap", 0); err != nil {
			return nil, err
		}
	}
	r.StackPerStreamAfterEvents = (float64(stack) - float64(r.StackConnected)) / n
	r.RSSPerStreamAfterEvents = (float64(rss) - float64(r.RSSConnected)) / n
	return r, nil
}

// ringEveryDevice commits, on each of the first devs fan-out devices, a
// leg that rings and then ends: two events for every idle stream, and
// the store as it was (no live leg left).
func ringEveryDevice(e *env, devs int) error {
	for d := range devs {
		var leg benchserver.Leg
		ring := leg.Next(e.store.NewUID, fanoutDevice(d))
		if _, err := e.store.Commit(ring); err != nil {
			return fmt.Errorf("idle: ring %s: %w", fanoutDevice(d), err)
		}
		dead := *ring.Call
		dead.State, dead.NRState, dead.Features, dead.Cause = callstore.StateDead, callstore.NRDead, 0, 16
		if _, err := e.store.Commit(callstore.Change{Type: callstore.EventUpdate, Call: &dead}); err != nil {
			return fmt.Errorf("idle: end %s: %w", fanoutDevice(d), err)
		}
	}
	return nil
}

// idleChildMain is the child: it opens the connections and, when told,
// the streams, then waits for its stdin to close.
func idleChildMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if err := idleChild(args, stdin, stdout); err != nil {
		fmt.Fprintln(stderr, "callbench idle watchers:", err)
		return 1
	}
	return 0
}

func idleChild(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("callbench idle watchers", flag.ContinueOnError)
	addr := fs.String("addr", "", "server address")
	streams := fs.Int("streams", 0, "streams")
	nconns := fs.Int("conns", 1, "client connections")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *addr == "" || fs.NArg() > 0 || *streams < 1 || *nconns < 1 {
		return errors.New("usage: -addr HOST:PORT -streams N -conns N")
	}
	ctx, cancel := context.WithCancel(withToken(context.Background(), adminToken))
	defer cancel()
	conns := make([]*grpc.ClientConn, *nconns)
	for i := range conns {
		cc, err := dialAddr(*addr)
		if err != nil {
			return err
		}
		defer cc.Close()
		conns[i] = cc
		if err := waitReady(ctx, cc); err != nil {
			return err
		}
	}
	sc := bufio.NewScanner(stdin)
	if _, err := fmt.Fprintln(stdout, "connected"); err != nil {
		return err
	}
	if !sc.Scan() || sc.Text() != "open" {
		return fmt.Errorf("want open, got %q (%v)", sc.Text(), sc.Err())
	}
	if err := openIdle(ctx, conns, *streams); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(stdout, "ready"); err != nil {
		return err
	}
	for sc.Scan() {
	}
	return nil
}

// waitReady connects cc and waits until it is ready (30 s at most).
func waitReady(ctx context.Context, cc *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cc.Connect()
	for s := cc.GetState(); s != connectivity.Ready; s = cc.GetState() {
		if !cc.WaitForStateChange(ctx, s) {
			return fmt.Errorf("connection not ready: %v", s)
		}
	}
	return nil
}

// openIdle opens n streams, stream i filtered to fanoutDevice(i%1000) on
// conns[i%len(conns)], each with its snapshot, a few at a time; it
// returns once every one has received its snapshot's end. The streams
// stay open (nobody reads them any more) until ctx ends.
func openIdle(ctx context.Context, conns []*grpc.ClientConn, n int) error {
	var next atomic.Int64
	errs := make([]error, 16)
	var wg sync.WaitGroup
	for w := range errs {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n && errs[w] == nil; i = int(next.Add(1) - 1) {
				errs[w] = openSnapshotWatch(ctx, conns[i%len(conns)], fanoutDevice(i%spreadDevices))
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func openSnapshotWatch(ctx context.Context, cc *grpc.ClientConn, device string) error {
	req := &callcontrolv1.WatchCallsRequest{Filter: &callcontrolv1.CallFilter{Devices: []string{device}}}
	s, err := rawframe.ServerStream(ctx, cc, watchMethod, req)
	if err != nil {
		return err
	}
	var m rawframe.Msg
	for {
		if err := s.RecvMsg(&m); err != nil {
			return fmt.Errorf("watch %s: %w", device, err)
		}
		kind, _, _, err := parseFrame(m.B)
		if err != nil {
			return err
		}
		switch kind {
		case frameSnapshotEnd:
			return nil
		case frameStarted, frameSnapshot:
		default:
			return fmt.Errorf("watch %s: frame %d before the snapshot's end", device, kind)
		}
	}
}

// idleSummary is the table's cell for the idle scenario.
func (r *idleResult) summary() string {
	var b strings.Builder
	for i, rd := range r.Rounds {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%d conns: RSS %.0f B/stream (%.0f with conns), heap %.0f, stacks %.0f (frames at rest %.0f), free in used spans %.0f, %d GCs while connecting, %d while opening; after events: RSS %.0f, stacks %.0f",
			rd.Conns, rd.RSSPerStream, rd.RSSPerStreamConns, rd.HeapPerStream, rd.StackPerStream, rd.FramesPerStream,
			rd.ClassesPerStream["heap/unused"], rd.GCsConnecting, rd.GCsOpening,
			rd.RSSPerStreamAfterEvents, rd.StackPerStreamAfterEvents)
	}
	return b.String()
}
