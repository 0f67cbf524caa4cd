package main

import (
	"context"
	"fmt"
	"path/filepath"
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
	Work *benchkit.WorkPerEvent `json:"work_per_rpc,omitempty"`
	work benchkit.Work          // summed over the rounds
}

type unaryResult struct {
	Concurrency int       `json:"concurrency"`
	Conns       int       `json:"connections"`
	Noop        unaryKind `json:"noop"`
	Control     unaryKind `json:"control"`
	// Ratio is control RPCs/s over no-op RPCs/s (each of Hold and Talk is
	// one RPC).
	Ratio float64 `json:"ratio"`
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

	var nh, ch latency.Hist
	var scratch latency.Hist
	phase(noop, cfg.warmup, &scratch)
	phase(control, cfg.warmup, &scratch)
	res := &unaryResult{Concurrency: cfg.concurrency, Conns: cfg.conns}
	per := cfg.duration / time.Duration(cfg.rounds)
	for round := range cfg.rounds {
		for _, k := range []struct {
			w   worker
			h   *latency.Hist
			out *unaryKind
		}{{noop, &nh, &res.Noop}, {control, &ch, &res.Control}} {
			stop, err := benchkit.StartCPUProfile(cfg.kindProfile(k.out == &res.Noop, round))
			if err != nil {
				return nil, err
			}
			w0 := benchkit.ReadWork()
			n, errs, el := phase(k.w, per, k.h)
			k.out.work = k.out.work.Add(benchkit.ReadWork().Sub(w0))
			stop()
			k.out.RPCs += n
			k.out.Errors += errs
			k.out.Seconds += el.Seconds()
		}
	}
	for _, k := range []struct {
		h   *latency.Hist
		out *unaryKind
	}{{&nh, &res.Noop}, {&ch, &res.Control}} {
		k.out.PerSecond = float64(k.out.RPCs) / k.out.Seconds
		k.out.Latency = k.h.Summary()
		w := benchkit.PerEvent(benchkit.Work{}, k.out.work, k.out.RPCs)
		k.out.Work = &w
	}
	res.Ratio = res.Control.PerSecond / res.Noop.PerSecond
	if res.Noop.Errors+res.Control.Errors > 0 {
		return res, fmt.Errorf("unary: %d no-op and %d control RPCs failed", res.Noop.Errors, res.Control.Errors)
	}
	return res, nil
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
