package sim

import (
	"context"
	"testing"
	"time"

	"callcontrold/callstore"
	"callcontrold/directory"
	"callcontrold/pbx"
	"callcontrold/pbx/pbxtest"
)

// TestTraffic runs the generator on the fake clock for ten simulated
// minutes and checks that it produced every kind of flow and left the
// store consistent.
func TestTraffic(t *testing.T) {
	h := newHarness(t)
	g := newTraffic(h.sim, 5, h.clock)
	counts := map[string]int{}
	for range 6000 { // 10 minutes in ticks
		h.clock.Advance(trafficTick)
		if err := g.tick(h.ctx); err != nil {
			t.Fatal(err)
		}
		bs, _, err := h.w.Drain(nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bs {
			for _, e := range b.Events {
				counts[pbxtest.TypeNames[e.Type]]++
				counts[e.Call.State.String()]++
				if e.Call.Dead() {
					counts[pbx.CauseText(e.Call.Cause)]++
				}
			}
		}
	}
	if err := h.sim.Verify(); err != nil {
		t.Fatal(err)
	}
	t.Logf("events: %v", counts)
	for _, want := range []string{"NEW", "UPDATE", "TRANSFER", "ring", "up", "hold", "park", "dead",
		"Normal Clearing", "Answered elsewhere", "User alerting, no answer"} {
		if counts[want] == 0 {
			t.Errorf("no %q in ten minutes of traffic: %v", want, counts)
		}
	}
}

// TestRunTraffic runs the generator on the real clock briefly and checks
// that it stops with its context.
func TestRunTraffic(t *testing.T) {
	store := callstore.New(callstore.Options{})
	sim := New(directory.Demo(), store, Options{Logger: quietLogger()})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := RunTraffic(ctx, sim, 50, nil); err != nil {
		t.Fatal(err)
	}
	if store.Revision() == 0 {
		t.Error("no traffic")
	}
	sim.Close()
}
