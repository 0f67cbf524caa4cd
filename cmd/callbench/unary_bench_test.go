package main

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/types/known/emptypb"

	"callcontrold/directory"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/internal/rawframe"
)

// BenchmarkUnaryRPC is the unary scenario one RPC at a time, client and
// server in this process as in callbench: the no-op RPC, and Hold and Talk
// alternately on one up call (an op is one RPC). On a busy machine the
// wall-clock ns/op swings; the allocations per op, and the instructions
// per op under cachegrind (docs/BENCHMARKS.md, "Sixth round"), do not.
//
// The c50 variants are callbench's concurrency: 50 callers at once (with
// GOMAXPROCS=1, 50 goroutines), each on its own call as there, so that
// what a call costs because others run between its steps (a colder
// cache, a deeper transport queue) counts too.
func BenchmarkUnaryRPC(b *testing.B) {
	dir, err := directory.Parse(benchDirectoryYAML(), "callbench directory")
	if err != nil {
		b.Fatal(err)
	}
	e, err := newEnv(dir, envOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer e.close()
	cc, err := e.dial()
	if err != nil {
		b.Fatal(err)
	}
	const callers = 50
	uids := make([]int64, callers)
	for i := range uids {
		c, err := e.upCall(b.Context(), loadDevice(i))
		if err != nil {
			b.Fatal(err)
		}
		uids[i] = c.UID
	}
	ctx := withToken(context.Background(), loadToken)

	noop := func(b *testing.B, next func() bool) {
		in := &emptypb.Empty{}
		var raw rawframe.Msg
		for next() {
			if err := cc.Invoke(ctx, noopUnaryMethod, in, &raw, rawframe.Recv); err != nil {
				b.Error(err)
				return
			}
		}
	}
	control := func(b *testing.B, uid int64, next func() bool) {
		var raw rawframe.Msg
		hold, talk := &callcontrolv1.HoldRequest{Uid: uid}, &callcontrolv1.TalkRequest{Uid: uid}
		for i := 0; next(); i++ {
			method, req := holdMethod, any(hold)
			if i%2 == 1 {
				method, req = talkMethod, talk
			}
			if err := cc.Invoke(ctx, method, req, &raw, rawframe.Recv); err != nil {
				b.Error(err)
				return
			}
		}
	}
	b.Run("noop", func(b *testing.B) {
		b.ReportAllocs()
		noop(b, b.Loop)
	})
	b.Run("control", func(b *testing.B) {
		b.ReportAllocs()
		control(b, uids[0], b.Loop)
	})
	b.Run("noop-c50", func(b *testing.B) {
		b.ReportAllocs()
		onCallers(b, callers, func(_ int, next func() bool) { noop(b, next) })
	})
	b.Run("control-c50", func(b *testing.B) {
		b.ReportAllocs()
		onCallers(b, callers, func(i int, next func() bool) { control(b, uids[i], next) })
	})
}

// onCallers runs b.N ops on n goroutines at once: body(i, next) on the
// i-th, where next reports whether to do one more op.
func onCallers(b *testing.B, n int, body func(i int, next func() bool)) {
	var left atomic.Int64
	left.Store(int64(b.N))
	next := func() bool { return left.Add(-1) >= 0 }
	var wg sync.WaitGroup
	b.ResetTimer()
	for i := range n {
		wg.Go(func() { body(i, next) })
	}
	wg.Wait()
}
