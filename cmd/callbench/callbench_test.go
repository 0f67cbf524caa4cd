package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/internal/benchkit"
	"callcontrold/internal/latency"
)

// TestMain runs the fan-out watchers' child mode when the test binary is
// re-executed as the child (TestSmoke's fan-out does that), and the tests
// otherwise.
func TestMain(m *testing.M) {
	if code, ok := childMode(); ok {
		os.Exit(code)
	}
	goleak.VerifyTestMain(m)
}

func TestCompareRevs(t *testing.T) {
	for _, c := range []struct {
		want, got      []int64
		missing, extra int
	}{
		{[]int64{1, 2, 3}, []int64{1, 2, 3}, 0, 0},
		{[]int64{1, 2, 3}, []int64{1, 3}, 1, 0},
		{[]int64{1, 2, 3}, []int64{1, 2, 2, 3, 9}, 0, 2},
		{nil, []int64{4}, 0, 1},
		{[]int64{5}, nil, 1, 0},
	} {
		m, e := compareRevs(c.want, c.got)
		if m != c.missing || e != c.extra {
			t.Errorf("compareRevs(%v, %v) = %d, %d; want %d, %d", c.want, c.got, m, e, c.missing, c.extra)
		}
	}
}

func TestParseFrame(t *testing.T) {
	ev := &callcontrolv1.CallEvent{Type: callcontrolv1.EventType_EVENT_TYPE_UPDATE, Call: &callcontrolv1.Call{Uid: 7, Device: "SIP/1"}}
	for _, c := range []struct {
		m      *callcontrolv1.WatchCallsResponse
		kind   protowire.Number
		rev    int64
		events int
	}{
		{&callcontrolv1.WatchCallsResponse{Frame: &callcontrolv1.WatchCallsResponse_Started{Started: &callcontrolv1.WatchStarted{HistoryWindow: 5, Revision: 42}}}, frameStarted, 42, 0},
		{&callcontrolv1.WatchCallsResponse{Frame: &callcontrolv1.WatchCallsResponse_Events{Events: &callcontrolv1.EventBatch{Revision: 1 << 40, ResumeToken: "x-1", Events: []*callcontrolv1.CallEvent{ev, ev}}}}, frameEvents, 1 << 40, 2},
		{noopFrame, frameProgress, 123456, 0},
	} {
		b, err := proto.Marshal(c.m)
		if err != nil {
			t.Fatal(err)
		}
		kind, rev, n, err := parseFrame(b)
		if err != nil || kind != c.kind || rev != c.rev || n != c.events {
			t.Errorf("parseFrame(%v) = %d, %d, %d, %v; want %d, %d, %d", c.m, kind, rev, n, err, c.kind, c.rev, c.events)
		}
	}
	if _, _, _, err := parseFrame([]byte{0x22, 0x05, 0x08}); err == nil {
		t.Error("truncated frame: no error")
	}
}

func TestParseEventFrame(t *testing.T) {
	const at = int64(1795000000123456789) // 19 digits, like today's UnixNano
	call := &callcontrolv1.Call{Uid: 7, Id: "bench-7", Device: "SIP/f0001", Name: strconv.FormatInt(at, 10), Number: "+19990000001"}
	other := &callcontrolv1.Call{Uid: 8, Name: "Remote party"}
	batch := func(calls ...*callcontrolv1.Call) *callcontrolv1.WatchCallsResponse {
		b := &callcontrolv1.EventBatch{Revision: 1234567, ResumeToken: "x-1234567"}
		for _, c := range calls {
			b.Events = append(b.Events, &callcontrolv1.CallEvent{Type: callcontrolv1.EventType_EVENT_TYPE_UPDATE, View: callcontrolv1.ViewChange_VIEW_CHANGE_STAYED, Call: c})
		}
		return &callcontrolv1.WatchCallsResponse{Frame: &callcontrolv1.WatchCallsResponse_Events{Events: b}}
	}
	for _, c := range []struct {
		m    *callcontrolv1.WatchCallsResponse
		kind protowire.Number
		rev  int64
		at   int64
	}{
		{batch(call), frameEvents, 1234567, at},
		{batch(call, other), frameEvents, 1234567, at},
		{batch(other, call), frameEvents, 1234567, 0}, // the first event's name only
		{batch(), frameEvents, 1234567, 0},
		{noopFrame, frameProgress, 0, 0},
	} {
		b, err := proto.Marshal(c.m)
		if err != nil {
			t.Fatal(err)
		}
		kind, rev, got, err := parseEventFrame(b)
		if err != nil || kind != c.kind || rev != c.rev || got != c.at {
			t.Errorf("parseEventFrame(%v) = %d, %d, %d, %v; want %d, %d, %d", c.m, kind, rev, got, err, c.kind, c.rev, c.at)
		}
	}
	if _, _, _, err := parseEventFrame([]byte{0x22, 0x05, 0x08}); err == nil {
		t.Error("truncated frame: no error")
	}
}

// TestLastExpected: the last revision a watcher waits for is the last
// one of its schedule (fanoutExpected), none when it has none.
func TestLastExpected(t *testing.T) {
	for _, filtered := range []int{0, 1, 5} {
		for n := int64(0); n <= 12; n++ {
			for i := range filtered + 2 {
				want := fanoutExpected(i, filtered, 100, n)
				got, ok := lastExpected(i, filtered, 100, n)
				if ok != (len(want) > 0) || ok && got != want[len(want)-1] {
					t.Errorf("filtered %d, n %d, watcher %d: %d, %v; want the last of %v", filtered, n, i, got, ok, want)
				}
			}
		}
	}
}

// TestFanoutExpected checks the schedule the watchers' side computes
// against the driver's (revision base+n+1 changes device n%devs).
func TestFanoutExpected(t *testing.T) {
	const base, n = 100, 23
	for _, filtered := range []int{0, 1, 5} {
		devs := fanoutDevs(filtered)
		committed := make([][]int64, devs)
		var all []int64
		for k := range int64(n) {
			committed[k%int64(devs)] = append(committed[k%int64(devs)], base+k+1)
			all = append(all, base+k+1)
		}
		for i := range filtered + 2 {
			want := all
			if i < filtered {
				want = committed[i]
			}
			if got := fanoutExpected(i, filtered, base, n); !slices.Equal(got, want) {
				t.Errorf("filtered %d, watcher %d: %v, want %v", filtered, i, got, want)
			}
		}
	}
	if got := fanoutExpected(7, 10, 0, 5); len(got) != 0 {
		t.Errorf("device never committed: %v", got)
	}
}

// TestFanoutChildFails checks that the child's failure reaches the parent
// with the child's stderr, and that nothing is left running.
func TestFanoutChildFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _, _, err := startFanChild(ctx, "127.0.0.1:1", fanoutConfig{filtered: 2, unfiltered: 1, conns: 1, watcherGC: watcherGCHeld, watcherWindow: defaultWatcherWindow})
	if err == nil || !strings.Contains(err.Error(), "open watch 0") {
		t.Fatalf("err = %v, want the child's open watch error", err)
	}
}

// TestWatcherInstrumentFlags: the fan-out's watcher settings default to a
// held collector and a 1 MiB window, and what grpc-go or the child would
// not take is refused at the command line.
func TestWatcherInstrumentFlags(t *testing.T) {
	c, err := parseFlags(nil, &bytes.Buffer{})
	if err != nil || c.fanout.watcherGC != watcherGCHeld || c.fanout.watcherWindow != 1<<20 || c.fanoutLarge.watcherWindow != 1<<20 {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
	for _, ok := range [][]string{{"--watcher-gc", "on"}, {"--watcher-window", "0"}, {"--watcher-window", "65535"}} {
		if _, err := parseFlags(ok, &bytes.Buffer{}); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range [][]string{{"--watcher-gc", "off"}, {"--watcher-window", "1024"}, {"--watcher-window", "-1"}, {"--watcher-window", "1000000000"}} {
		if _, err := parseFlags(bad, &bytes.Buffer{}); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if o := watcherWindowOpts(0); o != nil {
		t.Errorf("window 0: %d dial options, want none (grpc-go's dynamic window)", len(o))
	}
}

// TestStreamRoundsFlag: the streaming scenario alternates its kinds over
// 6 rounds unless told otherwise, and needs at least one.
func TestStreamRoundsFlag(t *testing.T) {
	c, err := parseFlags(nil, &bytes.Buffer{})
	if err != nil || c.stream.rounds != 6 {
		t.Errorf("defaults: %d rounds, %v; want 6", c.stream.rounds, err)
	}
	if c, err := parseFlags([]string{"--stream-rounds", "3"}, &bytes.Buffer{}); err != nil || c.stream.rounds != 3 {
		t.Errorf("--stream-rounds 3: %v, %v", c, err)
	}
	if _, err := parseFlags([]string{"--stream-rounds", "0"}, &bytes.Buffer{}); err == nil {
		t.Error("--stream-rounds 0: no error")
	}
}

func TestIdleConnsFlag(t *testing.T) {
	c, err := parseFlags([]string{"--idle-conns", "3, 7"}, &bytes.Buffer{})
	if err != nil || !slices.Equal(c.idle.conns, []int{3, 7}) {
		t.Errorf("--idle-conns 3,7: %v, %v", c, err)
	}
	for _, bad := range []string{"", "0", "x", "10,"} {
		if _, err := parseFlags([]string{"--idle-conns", bad}, &bytes.Buffer{}); err == nil {
			t.Errorf("--idle-conns %q: no error", bad)
		}
	}
}

func TestReportChecks(t *testing.T) {
	c, err := parseFlags([]string{"--smoke"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	r := newReport(c)
	r.Unary = &unaryResult{Ratio: 0.9, Capacity: 0.85}
	r.Stream = &streamResult{Ratio: 0.4}
	r.Fanout = &fanoutResult{fanoutKindResult: fanoutKindResult{Latency: latency.Summary{P99: 4.9}}}
	r.FanoutLarge = &fanoutResult{fanoutKindResult: fanoutKindResult{Dropped: 1, Latency: latency.Summary{P99: 4.9}}}
	r.Memory = &memoryResult{HeapPerCall: 1025}
	r.finish()
	var met []bool
	for _, c := range r.Checks {
		met = append(met, c.Met)
	}
	if want := []bool{true, false, false, true, false, false, true, false}; !slices.Equal(met, want) || r.AllMet {
		t.Errorf("checks met = %v (all %v), want %v", met, r.AllMet, want)
	}
}

// TestSmoke runs every scenario for a very short time on the real server
// and checks the report is complete; it measures nothing.
func TestSmoke(t *testing.T) {
	args := []string{"--smoke", "--watchers", "20", "--unfiltered", "2", "--rate", "500", "--calls", "300", "--concurrency", "8", "--streams", "2"}
	c, err := parseFlags(args, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var progress bytes.Buffer
	rep, err := run(ctx, c, &progress)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, progress.String())
	}
	if rep.Unary == nil || rep.Stream == nil || rep.Fanout == nil || rep.Idle == nil || rep.Memory == nil || rep.FanoutLarge == nil || rep.Replicas == nil || len(rep.Checks) != 12 {
		t.Fatalf("incomplete report: %+v", rep)
	}
	if rep.Unary.Noop.RPCs == 0 || rep.Unary.Control.RPCs == 0 {
		t.Errorf("unary: no RPCs: %+v", rep.Unary)
	}
	if u := rep.Unary; len(u.Rounds) != c.unary.rounds || u.Capacity <= 0 || u.Noop.Sched == nil || u.Control.Sched.BusyCores <= 0 {
		t.Errorf("unary: %d rounds (want %d), capacity %v, sched %+v, %+v", len(u.Rounds), c.unary.rounds, u.Capacity, u.Noop.Sched, u.Control.Sched)
	}
	// Each kind's transitions all reached its watcher (the scenario fails
	// otherwise), and were timed.
	if r := rep.Replicas; r.Single.Transitions == 0 || r.Replicas.Transitions == 0 || r.Single.Samples == 0 || r.Replicas.Samples == 0 {
		t.Errorf("replicas: %+v", r)
	}
	if rep.Stream.Noop.Messages == 0 || rep.Stream.Watch.Messages == 0 || rep.Stream.Events < rep.Stream.Watch.Messages {
		t.Errorf("streaming: %+v", rep.Stream)
	}
	// The rounds alternate which kind goes first, and the target checks
	// the median of their ratios.
	if s := rep.Stream; len(s.Rounds) != c.stream.rounds || s.Rounds[0].WatchFirst || !s.Rounds[1].WatchFirst {
		t.Errorf("streaming rounds: %+v (want %d, the second with WatchCalls first)", s.Rounds, c.stream.rounds)
	} else {
		var ratios []float64
		for _, rd := range s.Rounds {
			if rd.NoopPerSecond <= 0 || rd.WatchPerSecond <= 0 {
				t.Errorf("streaming round without messages: %+v", rd)
			}
			ratios = append(ratios, rd.Ratio)
		}
		if s.Ratio != benchkit.Median(ratios) || s.RatioOfTotals <= 0 {
			t.Errorf("streaming ratio %v, of totals %v; rounds' %v", s.Ratio, s.RatioOfTotals, ratios)
		}
	}
	if f := rep.Fanout; f.Commits == 0 || f.Expected == 0 || f.Received == 0 || f.Unexpected != 0 || f.Failures != 0 || f.WatcherProc != "child" || f.Latency.Max == 0 {
		t.Errorf("fan-out: %+v", f)
	}
	if f := rep.FanoutLarge; f.Filtered != 200 || f.Commits == 0 || f.Received == 0 || f.Unexpected != 0 || f.Failures != 0 || f.Latency.Max == 0 {
		t.Errorf("fan-out 10k (smoke: 200 filtered watchers): %+v", f)
	}
	// The no-op baseline ran in alternating segments, with the same
	// watchers and schedule: every watcher got exactly its revisions.
	for _, f := range []*fanoutResult{rep.Fanout, rep.FanoutLarge} {
		b := f.Baseline
		if b == nil || f.Rounds != 2 || b.Commits != f.Commits || b.Expected != f.Expected || b.Received != b.Expected || b.Dropped != 0 || b.Unexpected != 0 || b.Failures != 0 || b.Latency.Max == 0 || b.FrameBytes == 0 {
			t.Errorf("fan-out baseline: %+v (rounds %d), WatchCalls: commits %d, expected %d", b, f.Rounds, f.Commits, f.Expected)
		}
	}
	if p := rep.Idle.PIDs; len(p) != 2 || p[0] == p[1] || slices.Contains(p, os.Getpid()) || slices.Contains(p, 0) {
		t.Errorf("idle: servers in processes %v, want a fresh one for each round (this is %d)", p, os.Getpid())
	}
	if len(rep.Idle.Rounds) != 2 {
		t.Errorf("idle: %d rounds, want 2 (smoke: 2 and 20 connections)", len(rep.Idle.Rounds))
	}
	for _, rd := range rep.Idle.Rounds {
		// 200 streams hold a few hundred KB of heap in the server: the
		// reading must see them.
		if rd.Streams != 200 || rd.HeapPerStream <= 0 || rd.RSSStreams == 0 {
			t.Errorf("idle round: %+v", rd)
		}
	}
	if rep.Memory.Calls != 300 || rep.Memory.HeapAfter == 0 {
		t.Errorf("memory: %+v", rep.Memory)
	}
	if k := rep.Connect; k == nil || k.GRPC.RPCs == 0 || k.ConnectProto.RPCs == 0 || k.ConnectJSON.RPCs == 0 ||
		k.WatchGRPC.Messages == 0 || k.WatchConnectPB.Messages == 0 || k.WatchConnectJSON.Messages == 0 {
		t.Errorf("connect: %+v", k)
	}
	var out bytes.Buffer
	if err := rep.write(&out, ""); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	js := s[strings.Index(s, "\n{")+1:]
	var back report
	if err := json.Unmarshal([]byte(js), &back); err != nil {
		t.Fatalf("JSON summary does not parse: %v\n%s", err, s)
	}
	if !strings.Contains(s, "unary control/no-op rate") {
		t.Errorf("table lacks the checks:\n%s", s)
	}
}

// TestSmokeFanoutInProcess runs the fan-out scenario with the watchers in
// the test's own process (--fanout-inprocess), profiled.
func TestSmokeFanoutInProcess(t *testing.T) {
	dir := t.TempDir()
	c, err := parseFlags([]string{"--smoke", "--scenarios", "fanout", "--fanout-inprocess", "--watchers", "20", "--unfiltered", "2", "--rate", "500", "--profile", dir}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var progress bytes.Buffer
	rep, err := run(ctx, c, &progress)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, progress.String())
	}
	f := rep.Fanout
	if f == nil || f.WatcherProc != "in-process" || f.Commits == 0 || f.Expected == 0 || f.Received == 0 || f.Unexpected != 0 || f.Failures != 0 || f.Latency.Max == 0 {
		t.Errorf("fan-out: %+v", f)
	}
	// 20 filtered watchers see each revision once, the 2 unfiltered all.
	if f != nil && f.Expected != uint64(3*f.Commits) {
		t.Errorf("expected deliveries %d, want %d", f.Expected, 3*f.Commits)
	}
	// The measured window's allocation profiles (pprof -base start end).
	for _, name := range []string{"allocs-fanout-start.pprof", "allocs-fanout-end.pprof", "allocs-fanout.pprof", "cpu-fanout.pprof"} {
		if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.Size() == 0 {
			t.Errorf("profile %s: %v", name, err)
		}
	}
}

func TestQuartiles(t *testing.T) {
	rounds := func(v ...float64) []unaryRound {
		r := make([]unaryRound, len(v))
		for i, x := range v {
			r[i].Ratio = x
		}
		return r
	}
	ratio := func(r unaryRound) float64 { return r.Ratio }
	for _, tc := range []struct {
		in   []unaryRound
		want [3]float64
	}{
		{nil, [3]float64{}},
		{rounds(0.9), [3]float64{0.9, 0.9, 0.9}},
		{rounds(1.0, 0.8), [3]float64{0.85, 0.9, 0.95}},
		{rounds(0.7, 1.1, 0.9, 1.0, 0.8), [3]float64{0.8, 0.9, 1.0}},
	} {
		if got := quartiles(tc.in, ratio); got != tc.want {
			t.Errorf("quartiles(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
