package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/emptypb"

	"callcontrold/callstore"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/internal/benchkit"
	"callcontrold/internal/rawframe"
	"callcontrold/pbx"
)

type streamConfig struct {
	streams  int           // concurrent streams of each kind
	conns    int           // client connections they share
	duration time.Duration // measured time per kind, split over rounds
	rounds   int           // a phase of each kind per round, the first kind alternating
	warmup   time.Duration
	window   int64 // the traffic driver stays at most this many revisions ahead of the slowest watcher
	// profileDir non-empty: a CPU profile of each kind's measured time in
	// each round (cpu-stream-noop-R.pprof, cpu-stream-watch-R.pprof), so
	// that a WatchCalls frame's work can be set beside a no-op message's.
	profileDir string
	// watchProfile is the file of the watch phase's CPU profile (set per
	// round by runStream), or "".
	watchProfile string
}

// kindProfile is the file of one kind's CPU profile in one round, or ""
// when no profile was asked for.
func (cfg streamConfig) kindProfile(kind string, round int) string {
	if cfg.profileDir == "" {
		return ""
	}
	return filepath.Join(cfg.profileDir, fmt.Sprintf("cpu-stream-%s-%d.pprof", kind, round))
}

type streamKind struct {
	Messages  uint64  `json:"messages"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"messages_per_second"`
	// Work is this process's work (server, client and, for WatchCalls,
	// the traffic drivers and the switch) per message received, over the
	// measured time: on a busy machine the rates say who else ran, the
	// CPU per message still says what a message costs.
	Work *benchkit.WorkPerEvent `json:"work_per_message,omitempty"`
	work benchkit.Work          // summed over the rounds
}

type streamResult struct {
	Streams int        `json:"streams"`
	Conns   int        `json:"connections"`
	Noop    streamKind `json:"noop"`
	Watch   streamKind `json:"watch"`
	// Events is the number of call events in the watch frames (a frame is
	// one revision: one or several legs).
	Events         uint64  `json:"watch_events"`
	Commits        int64   `json:"commits"`
	CommitsPerSec  float64 `json:"commits_per_second"`
	EventsPerFrame float64 `json:"events_per_frame"`
	// Rounds are the rounds in the order they ran, each a no-op phase and
	// a WatchCalls phase (the no-op's first in even rounds, WatchCalls'
	// in odd ones).
	Rounds []streamRound `json:"rounds"`
	// Ratio is the median of the rounds' ratios (benchkit.Median), the
	// figure the target checks; RatioOfTotals the summed rates' ratio.
	Ratio         float64 `json:"ratio"`
	RatioOfTotals float64 `json:"ratio_of_totals"`
	// FrameBytes is the mean size of the frames the no-op stream repeats:
	// the frames of one traffic cycle, as a watch received them.
	FrameBytes      float64 `json:"noop_frame_bytes"`
	TrafficDrivers  int     `json:"traffic_drivers"`
	TrafficWindow   int64   `json:"traffic_window_revisions"`
	WatcherFailures int     `json:"watcher_failures"`
}

// streamRound is one round's two phases: each kind's messages/s, and
// WatchCalls' over the no-op's.
type streamRound struct {
	NoopPerSecond  float64 `json:"noop_messages_per_second"`
	WatchPerSecond float64 `json:"watch_messages_per_second"`
	Ratio          float64 `json:"ratio"`
	WatchFirst     bool    `json:"watch_first,omitempty"`
}

// roundRatios lists the rounds' ratios in the order they ran.
func (r *streamResult) roundRatios() string {
	var b strings.Builder
	for i, rd := range r.Rounds {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%.3f", rd.Ratio)
	}
	return b.String()
}

// runStream compares raw server streaming of a pre-built small message
// (the no-op stream) with WatchCalls: the same number of streams, each
// WatchCalls stream unfiltered (admin) while traffic drivers run the
// simulated switch's call flows (dial, answer, hold, retrieve, hang up:
// one- and two-leg revisions, as --demo-traffic makes) as fast as the
// watchers keep up. Delivered messages are frames received by the client.
// The kinds alternate over cfg.rounds rounds, each first in every other
// one, so that a neighbour's burst falls on both alike; the result's
// Ratio is the median of the rounds'.
func runStream(ctx context.Context, e *env, cfg streamConfig) (*streamResult, error) {
	conns, err := e.dialN(cfg.conns)
	if err != nil {
		return nil, err
	}
	res := &streamResult{Streams: cfg.streams, Conns: cfg.conns, TrafficDrivers: trafficPairs, TrafficWindow: cfg.window}
	frames, err := sampleFrames(ctx, e, conns[0])
	if err != nil {
		return nil, err
	}
	e.noop.setFrames(frames)
	for _, f := range frames {
		res.FrameBytes += float64(len(f)) / float64(len(frames))
	}
	per := cfg.duration / time.Duration(cfg.rounds)
	for round := range cfg.rounds {
		rd := streamRound{WatchFirst: round%2 == 1}
		noop := func() error {
			n, el, wk, err := noopStreams(ctx, conns, cfg.streams, cfg.warmup, per, cfg.kindProfile("noop", round))
			if err != nil {
				return err
			}
			res.Noop.Messages += n
			res.Noop.Seconds += el.Seconds()
			res.Noop.work = res.Noop.work.Add(wk)
			rd.NoopPerSecond = float64(n) / el.Seconds()
			return nil
		}
		watch := func() error {
			wcfg := cfg
			wcfg.watchProfile = cfg.kindProfile("watch", round)
			w, err := watchPhase(ctx, e, grpcWatchOpener(conns), wcfg, per)
			if err != nil {
				return err
			}
			res.Watch.Messages += w.frames
			res.Watch.Seconds += w.elapsed.Seconds()
			res.Watch.work = res.Watch.work.Add(w.work)
			res.Events += w.events
			res.Commits += w.commits
			res.WatcherFailures += w.failures
			rd.WatchPerSecond = float64(w.frames) / w.elapsed.Seconds()
			return nil
		}
		phases := []func() error{noop, watch}
		if rd.WatchFirst {
			phases = []func() error{watch, noop}
		}
		for _, phase := range phases {
			if err := phase(); err != nil {
				return nil, err
			}
		}
		if rd.NoopPerSecond > 0 {
			rd.Ratio = benchkit.Round3(rd.WatchPerSecond / rd.NoopPerSecond)
		}
		res.Rounds = append(res.Rounds, rd)
	}
	res.Noop.PerSecond = float64(res.Noop.Messages) / res.Noop.Seconds
	res.Watch.PerSecond = float64(res.Watch.Messages) / res.Watch.Seconds
	nw, ww := benchkit.PerEvent(benchkit.Work{}, res.Noop.work, res.Noop.Messages), benchkit.PerEvent(benchkit.Work{}, res.Watch.work, res.Watch.Messages)
	res.Noop.Work, res.Watch.Work = &nw, &ww
	res.CommitsPerSec = float64(res.Commits) / res.Watch.Seconds
	if res.Watch.Messages > 0 {
		res.EventsPerFrame = float64(res.Events) / float64(res.Watch.Messages)
	}
	res.RatioOfTotals = res.Watch.PerSecond / res.Noop.PerSecond
	ratios := make([]float64, len(res.Rounds))
	for i, rd := range res.Rounds {
		ratios[i] = rd.Ratio
	}
	res.Ratio = benchkit.Median(ratios)
	if res.WatcherFailures > 0 {
		return res, fmt.Errorf("stream: %d watchers failed", res.WatcherFailures)
	}
	return res, nil
}

// measure runs warmup, then reads count and the process's work before and
// after d, under a CPU profile written to profile if it is not "".
func measure(count *atomic.Uint64, warmup, d time.Duration, profile string) (uint64, time.Duration, benchkit.Work, error) {
	time.Sleep(warmup)
	stop, err := benchkit.StartCPUProfile(profile)
	if err != nil {
		return 0, 0, benchkit.Work{}, err
	}
	n0, w0, t0 := count.Load(), benchkit.ReadWork(), time.Now()
	time.Sleep(d)
	n, el, wk := count.Load()-n0, time.Since(t0), benchkit.ReadWork().Sub(w0)
	stop()
	return n, el, wk, nil
}

func noopStreams(ctx context.Context, conns []*grpc.ClientConn, streams int, warmup, d time.Duration, profile string) (uint64, time.Duration, benchkit.Work, error) {
	ctx, cancel := context.WithCancel(withToken(ctx, loadToken))
	defer cancel()
	var count atomic.Uint64
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for i := range streams {
		wg.Go(func() {
			s, err := rawframe.ServerStream(ctx, conns[i%len(conns)], noopStreamMethod, &emptypb.Empty{})
			var m rawframe.Msg
			for err == nil {
				if err = s.RecvMsg(&m); err == nil {
					var kind protowire.Number
					if kind, _, _, err = parseFrame(m.B); err == nil {
						err = mustKind(kind, frameEvents)
					}
					count.Add(1)
				}
			}
			if ctx.Err() == nil {
				errs <- fmt.Errorf("no-op stream: %w", err)
			}
		})
	}
	n, el, wk, perr := measure(&count, warmup, d, profile)
	cancel()
	wg.Wait()
	close(errs)
	return n, el, wk, errors.Join(perr, <-errs)
}

// watchStat is one watch phase.
type watchStat struct {
	frames, events uint64
	commits        int64
	elapsed        time.Duration
	work           benchkit.Work
	failures       int
}

const watchMethod = "/" + "callcontrol.v1.CallControlService" + "/WatchCalls"

// openWatch opens WatchCalls without a snapshot (the request must set
// skip_snapshot), receiving frames as bytes (rawframe.Recv), and reads the
// started frame; it returns the stream and the start revision.
func openWatch(ctx context.Context, cc *grpc.ClientConn, req *callcontrolv1.WatchCallsRequest) (grpc.ClientStream, int64, error) {
	return openWatchAt(ctx, cc, watchMethod, req)
}

// openWatchAt is openWatch on method: WatchCalls, or the no-op fan-out
// (noopFanoutMethod), which answers the same request with the same frames.
func openWatchAt(ctx context.Context, cc *grpc.ClientConn, method string, req *callcontrolv1.WatchCallsRequest) (grpc.ClientStream, int64, error) {
	if !req.GetSkipSnapshot() {
		return nil, 0, errors.New("openWatch: only without a snapshot")
	}
	s, err := rawframe.ServerStream(ctx, cc, method, req)
	if err != nil {
		return nil, 0, err
	}
	var m rawframe.Msg
	if err := s.RecvMsg(&m); err != nil {
		return nil, 0, err
	}
	kind, rev, _, err := parseFrame(m.B)
	if err == nil {
		err = mustKind(kind, frameStarted)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("watch: first frame: %w", err)
	}
	return s, rev, nil
}

// ended reports whether a stream's error is the end the client asked for.
func ended(ctx context.Context, err error) bool {
	return ctx.Err() != nil && (status.Code(err) == codes.Canceled || errors.Is(err, io.EOF) || errors.Is(err, context.Canceled))
}

// sampleFrames returns the frames an unfiltered watch receives for one
// traffic cycle (trafficCycle: 6 revisions, one frame each), encoded as
// the server sent them: the no-op stream repeats them, so that both kinds
// of stream send the same messages (sizes 159–445 bytes, 1.5 events a
// frame), and the comparison is of what WatchCalls does to make and
// deliver a frame, not of message sizes.
func sampleFrames(ctx context.Context, e *env, cc *grpc.ClientConn) ([][]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, _, err := openWatch(withToken(ctx, adminToken), cc, &callcontrolv1.WatchCallsRequest{SkipSnapshot: true})
	if err != nil {
		return nil, fmt.Errorf("sample frames: %w", err)
	}
	if err := trafficCycle(ctx, e, 0, func() {}); err != nil {
		return nil, err
	}
	var frames [][]byte
	var m rawframe.Msg
	for len(frames) < trafficRevisions {
		if err := s.RecvMsg(&m); err != nil {
			return nil, fmt.Errorf("sample frames: %w", err)
		}
		if kind, _, _, err := parseFrame(m.B); err != nil || kind != frameEvents {
			continue // a progress frame, say
		}
		frames = append(frames, bytes.Clone(m.B))
	}
	return frames, nil
}

// trafficRevisions is the revisions of one trafficCycle.
const trafficRevisions = 6

// trafficCycle runs one call through the simulated switch: the caller of
// pair i dials the callee's extension (2 revisions: the dialling leg, then
// routing with the callee ringing), the callee answers (both legs up), the
// caller holds and retrieves, and hangs up (both legs dead): 6 revisions,
// 4 of them changing two legs. pace is called before each operation.
func trafficCycle(ctx context.Context, e *env, i int, pace func()) error {
	pace()
	a, err := e.sim.Dial(ctx, trafficCaller(i), trafficExt(i), pbx.DialOptions{})
	if err != nil {
		return fmt.Errorf("traffic: dial: %w", err)
	}
	var b *callstore.Call
	for _, c := range e.store.ByDevice(trafficCallee(i)) {
		if c.State == callstore.StateRing {
			b = c
		}
	}
	if b == nil {
		return fmt.Errorf("traffic: %s is not ringing after the dial", trafficCallee(i))
	}
	pace()
	if _, _, err := e.sim.Talk(ctx, b.UID); err != nil {
		return fmt.Errorf("traffic: answer: %w", err)
	}
	pace()
	if _, _, err := e.sim.Hold(ctx, a.UID); err != nil {
		return fmt.Errorf("traffic: hold: %w", err)
	}
	pace()
	if _, _, err := e.sim.Talk(ctx, a.UID); err != nil {
		return fmt.Errorf("traffic: retrieve: %w", err)
	}
	pace()
	if _, err := e.sim.Hangup(ctx, a.UID); err != nil {
		return fmt.Errorf("traffic: hangup: %w", err)
	}
	return nil
}
