package pbx

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"callcontrold/callstore"
	"callcontrold/directory"
)

// harness runs the simulated switch over a real store with a fake clock
// and one unfiltered watcher that records every revision.
type harness struct {
	t     *testing.T
	ctx   context.Context
	sim   *Sim
	clock *FakeClock
	store *callstore.Store
	w     *callstore.Watcher
	rev   int64
}

var epoch = time.Unix(1_700_000_000, 0)

func newHarness(t *testing.T) *harness {
	t.Helper()
	store := callstore.New(callstore.Options{HistorySize: 4096, WatcherQueue: 4096})
	clock := NewFakeClock(epoch)
	sim := NewSim(directory.Demo(), store, SimOptions{Clock: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	w, _, rev, err := store.Watch(callstore.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.Close()
		sim.Close()
	})
	return &harness{t: t, ctx: context.Background(), sim: sim, clock: clock, store: store, w: w, rev: rev}
}

func partyName(p callstore.Party) string {
	return [...]string{"?", "unknown", "caller", "callee"}[p]
}

var typeNames = [...]string{"?", "NEW", "UPDATE", "TRANSFER"}

// evString is one event as the tests spell it:
// "TYPE device state/nrState party [cause=N] [xfer=N]".
func evString(e callstore.WatchEvent) string {
	c := e.Call
	s := fmt.Sprintf("%s %s %s/%s %s", typeNames[e.Type], c.Device, c.State, c.NRState, partyName(c.Party))
	if c.Dead() {
		s += fmt.Sprintf(" cause=%d", c.Cause)
	}
	if e.Type == callstore.EventTransfer {
		s += fmt.Sprintf(" xfer=%d", len(e.Xfer))
	}
	return s
}

// revs drains the watcher: one string per revision, events joined by
// " | ". It also checks that revisions strictly increase.
func (h *harness) revs() []string {
	h.t.Helper()
	bs, _, err := h.w.Drain(nil)
	if err != nil {
		h.t.Fatalf("drain: %v", err)
	}
	var out []string
	for _, b := range bs {
		if b.Revision <= h.rev {
			h.t.Fatalf("revision %d after %d", b.Revision, h.rev)
		}
		h.rev = b.Revision
		var evs []string
		for _, e := range b.Events {
			evs = append(evs, evString(e))
		}
		out = append(out, strings.Join(evs, " | "))
	}
	return out
}

// expect checks the revisions committed since the last call.
func (h *harness) expect(want ...string) {
	h.t.Helper()
	got := h.revs()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		h.t.Errorf("revisions:\ngot:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// on returns the i-th live leg (by uid) on a device.
func (h *harness) on(dev string, i ...int) *callstore.Call {
	h.t.Helper()
	calls := h.store.ByDevice(dev)
	n := 0
	if len(i) > 0 {
		n = i[0]
	}
	if n >= len(calls) {
		h.t.Fatalf("no live leg #%d on %s (have %d)", n, dev, len(calls))
	}
	return calls[n]
}

func (h *harness) none(dev string) {
	h.t.Helper()
	if calls := h.store.ByDevice(dev); len(calls) != 0 {
		h.t.Fatalf("%s has %d live legs, want none", dev, len(calls))
	}
}

// c fails the test on err and checks that a returned call is what the
// store holds (the "as applied" promise).
func (h *harness) c(c *callstore.Call, err error) *callstore.Call {
	h.t.Helper()
	if err != nil {
		h.t.Fatalf("unexpected error: %v", err)
	}
	h.applied(c)
	return c
}

func (h *harness) applied(c *callstore.Call) {
	h.t.Helper()
	if c != nil && !c.Dead() {
		if got, ok := h.store.Get(c.UID); !ok || got != c {
			h.t.Fatalf("returned call %d is not the committed value", c.UID)
		}
	}
}

// cb is c for the operations that also say whether they changed anything.
func (h *harness) cb(c *callstore.Call, _ bool, err error) *callstore.Call {
	h.t.Helper()
	return h.c(c, err)
}

// cc is c for the operations that return two legs.
func (h *harness) cc(a, b *callstore.Call, err error) (*callstore.Call, *callstore.Call) {
	h.t.Helper()
	if err != nil {
		h.t.Fatalf("unexpected error: %v", err)
	}
	h.applied(a)
	h.applied(b)
	return a, b
}

func (h *harness) dial(dev, number string) *callstore.Call {
	h.t.Helper()
	return h.c(h.sim.Dial(h.ctx, dev, number, DialOptions{}))
}

func (h *harness) talk(uid int64) *callstore.Call {
	h.t.Helper()
	return h.cb(h.sim.Talk(h.ctx, uid))
}

func (h *harness) hangup(uid int64) *callstore.Call {
	h.t.Helper()
	return h.c(h.sim.Hangup(h.ctx, uid))
}

// connect sets up an answered internal call from dev to ext, answered on
// answerDev, and drains its events.
func (h *harness) connect(dev, ext, answerDev string) (a, b *callstore.Call) {
	h.t.Helper()
	a = h.dial(dev, ext)
	b = h.talk(h.on(answerDev).UID)
	h.revs()
	a, _ = h.store.Get(a.UID)
	return a, b
}
