package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/internal/benchkit"
	"callcontrold/internal/latency"
	"callcontrold/internal/rawframe"
)

type unaryConfig struct {
	concurrency int
	conns       int
	duration    time.Duration // measured time per kind, split over rounds
	rounds      int           // no-op and control alternate this many times
	warmup      time.Duration
	// profileDir non-empty: a CPU profile per kind and round
	// (cpu-unary-<kind>-<round>.pprof), so that pprof's -diff_base can
	// set the two kinds side by side, and the mutex and block profiles of
	// the whole scenario (mutex-unary.pprof, block-unary.pprof).
	profileDir string
}

type unaryKind struct {
	RPCs      uint64          `json:"rpcs"`
	Errors    uint64          `json:"errors"`
	Seconds   float64         `json:"seconds"`
	PerSecond float64         `json:"rpcs_per_second"`
	Latency   latency.Summary `json:"latency"`
	// Work is this process's work (client and server) per RPC over the
	// measured time: the rates swing with whoever else runs on the
	// machine, the CPU and allocations per RPC much less.
	Work  *benchkit.WorkPerEvent `json:"work_per_rpc,omitempty"`
	work  benchkit.Work          // summed over the rounds
	Sched *unarySched            `json:"sched,omitempty"`
	sched schedWork
}

type unaryResult struct {
	Concurrency int       `json:"concurrency"`
	Conns       int       `json:"connections"`
	Noop        unaryKind `json:"noop"`
	Control     unaryKind `json:"control"`
	// Ratio is control RPCs/s over no-op RPCs/s (each of Hold and Talk is
	// one RPC).
	Ratio float64 `json:"ratio"`
	// Capacity is the no-op's CPU per RPC over control's: the rate ratio
	// the two kinds would have if they kept the same processors busy, as
	// they do on the target machine (both saturate it). On a shared
	// machine the processors a phase gets are the neighbours' doing, and
	// move the rate ratio by ±10 % from run to run; the CPU per RPC moves
	// much less (docs/BENCHMARKS.md, "Seventh round").
	Capacity float64 `json:"capacity_ratio"`
	// Rounds are each round's figures: the two kinds' phases of a round
	// ran one right after the other.
	Rounds []unaryRound `json:"rounds"`
	// RoundRatios and RoundCPURatios are the rounds' ratios' lower
	// quartile, median and upper quartile.
	RoundRatios    [3]float64 `json:"round_ratios"`
	RoundCPURatios [3]float64 `json:"round_cpu_ratios"`
}

// unaryRound is one round of the unary scenario.
type unaryRound struct {
	Ratio    float64 `json:"ratio"`     // control RPCs/s over no-op RPCs/s
	CPURatio float64 `json:"cpu_ratio"` // control CPU per RPC over no-op's
}

// perRPC is CPU microseconds per RPC (0 for no RPCs).
func perRPC(cpu time.Duration, n uint64) float64 {
	if n == 0 {
		return 0
	}
	return float64(cpu.Nanoseconds()) / 1e3 / float64(n)
}

// quartiles returns the lower quartile, median and upper quartile of f
// over rounds (interpolating between neighbours, as the median of an even
// count is the mean of the middle two).
func quartiles(rounds []unaryRound, f func(unaryRound) float64) [3]float64 {
	if len(rounds) == 0 {
		return [3]float64{}
	}
	v := make([]float64, len(rounds))
	for i, r := range rounds {
		v[i] = f(r)
	}
	slices.Sort(v)
	at := func(q float64) float64 {
		pos := q * float64(len(v)-1)
		i := int(pos)
		if i+1 >= len(v) {
			return v[i]
		}
		return benchkit.Round3(v[i] + (pos-float64(i))*(v[i+1]-v[i]))
	}
	return [3]float64{at(0.25), at(0.5), at(0.75)}
}

// runUnary measures the no-op unary RPC against the control pair (Hold
// then Talk on a call the load user owns), at the same concurrency over
// the same connections, alternating the two so that a noisy neighbour
// hits both alike.
func runUnary(ctx context.Context, e *env, cfg unaryConfig) (*unaryResult, error) {
	if cfg.concurrency > loadDevices {
		return nil, fmt.Errorf("unary: concurrency %d > %d load devices", cfg.concurrency, loadDevices)
	}
	conns, err := e.dialN(cfg.conns)
	if err != nil {
		return nil, err
	}
	uids := make([]int64, cfg.concurrency)
	for i := range uids {
		c, err := e.upCall(ctx, loadDevice(i))
		if err != nil {
			return nil, err
		}
		uids[i] = c.UID
	}
	ctx = withToken(ctx, loadToken)

	// Both kinds receive their responses as bytes (rawframe.Recv), so the
	// client's side of a call is the same code for both: the codec, and
	// the content-type it sends ("application/grpc+proto"), which the
	// server copies into its response headers.
	noop := func(cc *grpc.ClientConn, _ int64, h *latency.Hist, stop *atomic.Bool) (n, errs uint64) {
		in := &emptypb.Empty{}
		var raw rawframe.Msg
		for !stop.Load() {
			t := time.Now()
			err := cc.Invoke(ctx, noopUnaryMethod, in, &raw, rawframe.Recv)
			h.Record(time.Since(t))
			if n++; err != nil {
				errs++
			}
		}
		return n, errs
	}
	// Control responses carry a whole Call; like stream frames they are
	// received as bytes, so the in-process client does not spend the CPU
	// the server is measured on decoding them. Every checkEvery-th pair is
	// decoded and checked, so a wrong answer cannot pass unnoticed.
	const checkEvery = 1024
	control := func(cc *grpc.ClientConn, uid int64, h *latency.Hist, stop *atomic.Bool) (n, errs uint64) {
		var raw rawframe.Msg
		hold, talk := &callcontrolv1.HoldRequest{Uid: uid}, &callcontrolv1.TalkRequest{Uid: uid}
		for i := 0; !stop.Load(); i++ {
			t := time.Now()
			err := cc.Invoke(ctx, holdMethod, hold, &raw, rawframe.Recv)
			t2 := time.Now()
			h.Record(t2.Sub(t))
			if err == nil && i%checkEvery == 0 {
				err = checkControl(raw.B, &callcontrolv1.HoldResponse{}, callcontrolv1.State_STATE_HOLD)
			}
			if n++; err != nil {
				errs++
			}
			err = cc.Invoke(ctx, talkMethod, talk, &raw, rawframe.Recv)
			h.Record(time.Since(t2))
			if err == nil && i%checkEvery == 0 {
				err = checkControl(raw.B, &callcontrolv1.TalkResponse{}, callcontrolv1.State_STATE_UP)
			}
			if n++; err != nil {
				errs++
			}
		}
		return n, errs
	}
	type worker func(cc *grpc.ClientConn, uid int64, h *latency.Hist, stop *atomic.Bool) (n, errs uint64)
	phase := func(w worker, d time.Duration, h *latency.Hist) (n, errs uint64, elapsed time.Duration) {
		return runFor(cfg.concurrency, d, func(i int, stop *atomic.Bool) (n, errs uint64) {
			return w(conns[i%len(conns)], uids[i], h, stop)
		})
	}

	var scratch latency.Hist
	phase(noop, cfg.warmup, &scratch)
	phase(control, cfg.warmup, &scratch)
	res := &unaryResult{Concurrency: cfg.concurrency, Conns: cfg.conns}
	kinds := [2]worker{noop, control}
	err = cfg.alternate(res, func(kind int, d time.Duration, h *latency.Hist) (uint64, uint64, time.Duration) {
		return phase(kinds[kind], d, h)
	})
	if err != nil {
		return nil, err
	}
	res.Ratio = res.Control.PerSecond / res.Noop.PerSecond
	if c := res.Control.Work.CPUMicros; c > 0 {
		res.Capacity = res.Noop.Work.CPUMicros / c
	}
	if res.Noop.Errors+res.Control.Errors > 0 {
		return res, fmt.Errorf("unary: %d no-op and %d control RPCs failed", res.Noop.Errors, res.Control.Errors)
	}
	return res, nil
}

// alternate runs the no-op and control phases (run(0, …), run(1, …)) in turn,
// cfg.rounds times, and fills res with each kind's totals and each
// round's ratios. Odd rounds run control first: in any two rounds in a
// row each kind runs once first and once second (no-op, control,
// control, no-op, ...), so neither kind is always the one that follows
// the other.
func (cfg unaryConfig) alternate(res *unaryResult, run func(kind int, d time.Duration, h *latency.Hist) (n, errs uint64, elapsed time.Duration)) error {
	var hist [2]latency.Hist
	out := [2]*unaryKind{&res.Noop, &res.Control}
	per := cfg.duration / time.Duration(cfg.rounds)
	for round := range cfg.rounds {
		var n [2]uint64
		var el [2]time.Duration
		var w [2]benchkit.Work
		for j := range 2 {
			i := j ^ round&1
			stop, err := benchkit.StartCPUProfile(cfg.kindProfile(i == 0, round))
			if err != nil {
				return err
			}
			w0, s0 := benchkit.ReadWork(), readSched()
			var errs uint64
			n[i], errs, el[i] = run(i, per, &hist[i])
			out[i].sched = out[i].sched.add(readSched().sub(s0))
			w[i] = benchkit.ReadWork().Sub(w0)
			stop()
			out[i].work = out[i].work.Add(w[i])
			out[i].RPCs += n[i]
			out[i].Errors += errs
			out[i].Seconds += el[i].Seconds()
		}
		res.Rounds = append(res.Rounds, unaryRound{
			Ratio:    benchkit.Round3(float64(n[1]) / el[1].Seconds() / (float64(n[0]) / el[0].Seconds())),
			CPURatio: benchkit.Round3(perRPC(w[1].CPU, n[1]) / perRPC(w[0].CPU, n[0])),
		})
	}
	for i, k := range out {
		k.PerSecond = float64(k.RPCs) / k.Seconds
		k.Latency = hist[i].Summary()
		wk := benchkit.PerEvent(benchkit.Work{}, k.work, k.RPCs)
		k.Work = &wk
		sc := k.sched.perRPC(k.RPCs)
		k.Sched = &sc
	}
	res.RoundRatios = quartiles(res.Rounds, func(r unaryRound) float64 { return r.Ratio })
	res.RoundCPURatios = quartiles(res.Rounds, func(r unaryRound) float64 { return r.CPURatio })
	return nil
}

// kindProfile is the file of one kind's CPU profile in one round, or ""
// when no profile was asked for.
func (cfg unaryConfig) kindProfile(noop bool, round int) string {
	if cfg.profileDir == "" {
		return ""
	}
	kind := "control"
	if noop {
		kind = "noop"
	}
	return filepath.Join(cfg.profileDir, fmt.Sprintf("cpu-unary-%s-%d.pprof", kind, round))
}

// The control methods, invoked directly so that responses can arrive as
// bytes (rawframe.Recv).
const (
	holdMethod = "/callcontrol.v1.CallControlService/Hold"
	talkMethod = "/callcontrol.v1.CallControlService/Talk"
)

// checkControl decodes a Hold or Talk response and checks the call's state.
func checkControl(b []byte, resp interface {
	proto.Message
	GetCall() *callcontrolv1.Call
}, want callcontrolv1.State) error {
	if err := proto.Unmarshal(b, resp); err != nil {
		return err
	}
	if got := resp.GetCall().GetState(); got != want {
		return fmt.Errorf("unary: call %d is %v after the RPC, want %v", resp.GetCall().GetUid(), got, want)
	}
	return nil
}

// runFor runs work(i, stop) on n goroutines (i = 0..n-1) for d, then
// raises stop and waits for them: it returns the operations and errors
// they counted, and the time until the last one ended.
func runFor(n int, d time.Duration, work func(i int, stop *atomic.Bool) (ops, errs uint64)) (ops, errs uint64, elapsed time.Duration) {
	var stop atomic.Bool
	var wg sync.WaitGroup
	var tn, te atomic.Uint64
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			n, errs := work(i, &stop)
			tn.Add(n)
			te.Add(errs)
		})
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	return tn.Load(), te.Load(), time.Since(start)
}
