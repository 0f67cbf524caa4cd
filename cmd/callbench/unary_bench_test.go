package main

import (
	"context"
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
	c, err := e.upCall(b.Context(), loadDevice(0))
	if err != nil {
		b.Fatal(err)
	}
	ctx := withToken(context.Background(), loadToken)

	b.Run("noop", func(b *testing.B) {
		in := &emptypb.Empty{}
		var raw rawframe.Msg
		b.ReportAllocs()
		for b.Loop() {
			if err := cc.Invoke(ctx, noopUnaryMethod, in, &raw, rawframe.Recv); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("control", func(b *testing.B) {
		var raw rawframe.Msg
		hold, talk := &callcontrolv1.HoldRequest{Uid: c.UID}, &callcontrolv1.TalkRequest{Uid: c.UID}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			method, req := holdMethod, any(hold)
			if i%2 == 1 {
				method, req = talkMethod, talk
			}
			if err := cc.Invoke(ctx, method, req, &raw, rawframe.Recv); err != nil {
				b.Fatal(err)
			}
		}
	})
}
