package pbx_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"callcontrold/callstore"
	"callcontrold/directory"
	"callcontrold/pbx"
	"callcontrold/pbx/sim"
)

// Run: go test -run x -bench Transition -benchmem ./pbx/
//
// BenchmarkTransition is the switch's traffic of callbench's stream
// scenario without gRPC: one op is one call through the engine, the
// simulated driver and the store (dial, answer, hold, retrieve, hang up:
// 6 revisions, 4 of them changing two legs), with 0 or 10 unfiltered
// watchers drained after each call (behind by up to 6 revisions, as a
// busy consumer), or after each operation ("caught up": as callbench's
// watchers mostly are). ns/rev is the cost of one revision.
func BenchmarkTransition(b *testing.B) {
	for _, bc := range []struct {
		name     string
		watchers int
		eachOp   bool
	}{{"watchers=0", 0, false}, {"watchers=10", 10, false}, {"watchers=10,caught-up", 10, true}} {
		b.Run(bc.name, func(b *testing.B) {
			sw, store := benchSwitch(b)
			ws := make([]*callstore.Watcher, bc.watchers)
			for i := range ws {
				w, _, _, err := store.Watch(callstore.WatchRequest{})
				if err != nil {
					b.Fatal(err)
				}
				defer w.Close()
				ws[i] = w
			}
			var buf []callstore.Batch
			drain := func() {
				for _, w := range ws {
					var err error
					if buf, _, err = w.Drain(buf[:0]); err != nil {
						b.Fatal(err)
					}
				}
			}
			eachOp := func() {}
			if bc.eachOp {
				eachOp = drain
			}
			ctx := context.Background()
			rev0 := store.Revision()
			b.ReportAllocs()
			for b.Loop() {
				if err := benchCall(ctx, sw, store, eachOp); err != nil {
					b.Fatal(err)
				}
				drain()
			}
			revs := store.Revision() - rev0
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(revs), "ns/rev")
		})
	}
}

// benchSwitch returns a simulated switch with a caller and a callee that
// has extension 4000, as callbench's traffic pairs.
func benchSwitch(b *testing.B) (*sim.Switch, *callstore.Store) {
	const yaml = `ring_timeout: 1h
companies:
  - {name: default, display_name: Default}
users:
  - {id: 1, login: load, name: Load user, role: user, company: default}
devices:
  - {name: SIP/ta0, display_name: Caller, company: default, owner: load, features: [answer, hold, talk]}
  - {name: SIP/tb0, display_name: Callee, company: default, owner: load, features: [answer, hold, talk], extension: "4000"}
extensions:
  - {number: "4000", company: default, name: Callee, type: device, members: [SIP/tb0]}
`
	dir, err := directory.Parse([]byte(strings.TrimSpace(yaml)+"\n"), "bench directory")
	if err != nil {
		b.Fatal(err)
	}
	store := callstore.New(callstore.Options{})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sw := sim.New(dir, store, sim.Options{Logger: log})
	b.Cleanup(sw.Close)
	return sw, store
}

// benchCall is callbench's trafficCycle: one call from SIP/ta0 to 4000;
// after runs after each operation.
func benchCall(ctx context.Context, sw *sim.Switch, store *callstore.Store, after func()) error {
	a, err := sw.Dial(ctx, "SIP/ta0", "4000", pbx.DialOptions{})
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	after()
	callee := store.ByDevice("SIP/tb0")
	if len(callee) != 1 || callee[0].State != callstore.StateRing {
		return fmt.Errorf("SIP/tb0 has %d legs after the dial, want one ringing", len(callee))
	}
	if _, _, err := sw.Talk(ctx, callee[0].UID); err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	after()
	if _, _, err := sw.Hold(ctx, a.UID); err != nil {
		return fmt.Errorf("hold: %w", err)
	}
	after()
	if _, _, err := sw.Talk(ctx, a.UID); err != nil {
		return fmt.Errorf("retrieve: %w", err)
	}
	after()
	if _, err := sw.Hangup(ctx, a.UID); err != nil {
		return fmt.Errorf("hangup: %w", err)
	}
	after()
	return nil
}
