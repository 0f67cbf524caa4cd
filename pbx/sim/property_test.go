package sim

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"callcontrold/callstore"
	"callcontrold/directory"
	"callcontrold/pbx"
	"callcontrold/pbx/pbxtest"
	"pgregory.net/rapid"
)

// TestPropertyStoreNeverCorrupt drives random operations from random
// devices (and the far end, and the clock) and checks after every step
// that the store and the switch agree and every leg is sane; at the end,
// that every leg's event history is NEW, updates, exactly one DEAD.
func TestPropertyStoreNeverCorrupt(t *testing.T) {
	dir := directory.Demo()
	var phones []string
	for _, d := range dir.Devices() {
		if strings.HasPrefix(d.Name, "SIP/") {
			phones = append(phones, d.Name)
		}
	}
	numbers := []string{"+15550100", "+15550110", "+15550120", "+15550130", "+15550140", "+442079460001", "299", "x"}
	for _, x := range dir.Extensions() {
		numbers = append(numbers, x.Number)
	}
	rapid.Check(t, func(rt *rapid.T) {
		h := newHarness(t)
		ph := &propHarness{h: h, rt: rt}
		uid := func() int64 {
			calls, _ := h.store.List(nil, nil, 0, 1<<30)
			if len(calls) == 0 || rapid.Bool().Draw(rt, "stale") && rapid.IntRange(0, 9).Draw(rt, "p") == 0 {
				return rapid.Int64Range(1, 200).Draw(rt, "uid")
			}
			return rapid.SampledFrom(calls).Draw(rt, "call").UID
		}
		ops := map[string]func(*rapid.T){
			"dial": func(rt *rapid.T) {
				_, err := h.sim.Dial(h.ctx, rapid.SampledFrom(phones).Draw(rt, "dev"), rapid.SampledFrom(numbers).Draw(rt, "num"),
					pbx.DialOptions{AutoHold: rapid.Bool().Draw(rt, "autohold")})
				ph.allowed(err)
			},
			"inbound": func(rt *rapid.T) {
				_, err := h.sim.PlaceInbound(h.ctx, "+442079460002", "Ext", rapid.SampledFrom(numbers).Draw(rt, "ext"))
				ph.allowed(err)
			},
			"hold":   func(rt *rapid.T) { _, _, err := h.sim.Hold(h.ctx, uid()); ph.allowed(err) },
			"talk":   func(rt *rapid.T) { _, _, err := h.sim.Talk(h.ctx, uid()); ph.allowed(err) },
			"hangup": func(rt *rapid.T) { _, err := h.sim.Hangup(h.ctx, uid()); ph.allowed(err) },
			"send": func(rt *rapid.T) {
				_, _, err := h.sim.Send(h.ctx, uid(), rapid.SampledFrom(numbers).Draw(rt, "num"))
				ph.allowed(err)
			},
			"xfer": func(rt *rapid.T) {
				_, _, err := h.sim.Xfer(h.ctx, uid(), rapid.SampledFrom(numbers).Draw(rt, "num"))
				ph.allowed(err)
			},
			"atxfer": func(rt *rapid.T) { _, _, err := h.sim.AtXfer(h.ctx, uid(), uid()); ph.allowed(err) },
			"mute":   func(rt *rapid.T) { _, _, err := h.sim.Mute(h.ctx, uid(), rapid.Bool().Draw(rt, "m")); ph.allowed(err) },
			"dtmf":   func(rt *rapid.T) { _, err := h.sim.Dtmf(h.ctx, uid(), "5"); ph.allowed(err) },
			"answer-remote": func(rt *rapid.T) {
				_, err := h.sim.AnswerRemote(h.ctx, uid())
				ph.allowed(err)
			},
			"reject-remote": func(rt *rapid.T) {
				_, err := h.sim.RejectRemote(h.ctx, uid(), 0)
				ph.allowed(err)
			},
			"hangup-remote": func(rt *rapid.T) {
				_, err := h.sim.HangupRemote(h.ctx, uid())
				ph.allowed(err)
			},
			"advance": func(rt *rapid.T) {
				h.clock.Advance(time.Duration(rapid.IntRange(0, 40).Draw(rt, "secs")) * time.Second)
			},
		}
		steps := rapid.IntRange(1, 60).Draw(rt, "steps")
		names := []string{"dial", "inbound", "hold", "talk", "hangup", "send", "xfer", "atxfer", "mute", "dtmf", "answer-remote", "reject-remote", "hangup-remote", "advance"}
		for range steps {
			op := rapid.SampledFrom(names).Draw(rt, "op")
			ops[op](rt)
			ph.check()
		}
		// Ending every call leaves nothing behind.
		for _, c := range h.sim.liveCalls() {
			_, err := h.sim.Hangup(h.ctx, c.UID)
			ph.allowed(err)
		}
		h.clock.Advance(time.Hour)
		ph.check()
		if calls, _ := h.store.List(nil, nil, 0, 1<<30); len(calls) != 0 {
			rt.Fatalf("%d legs live after hanging up everything", len(calls))
		}
		if n := h.clock.Pending(); n != 0 {
			rt.Fatalf("%d timers pending with no calls", n)
		}
		ph.finish()
		h.w.Close()
		h.sim.Close()
	})
}

type propHarness struct {
	h       *harness
	rt      *rapid.T
	lastRev int64
	history map[int64][]callstore.WatchEvent
}

// allowed fails on errors no random sequence should produce.
func (p *propHarness) allowed(err error) {
	if err == nil {
		return
	}
	for _, ok := range []error{pbx.ErrNotFound, pbx.ErrInvalidArgument, pbx.ErrNotSupported, pbx.ErrBadState, pbx.ErrLimit} {
		if errors.Is(err, ok) {
			return
		}
	}
	p.rt.Fatalf("unexpected error: %v", err)
}

func (p *propHarness) check() {
	h, rt := p.h, p.rt
	if p.history == nil {
		p.history = map[int64][]callstore.WatchEvent{}
	}
	bs, _, err := h.w.Drain(nil)
	if err != nil {
		rt.Fatalf("drain: %v", err)
	}
	for _, b := range bs {
		if b.Revision <= p.lastRev {
			rt.Fatalf("revision %d after %d", b.Revision, p.lastRev)
		}
		p.lastRev = b.Revision
		seen := map[int64]bool{}
		for _, e := range b.Events {
			if seen[e.Call.UID] {
				rt.Fatalf("rev %d: leg %d twice in one revision", b.Revision, e.Call.UID)
			}
			seen[e.Call.UID] = true
			if e.Call.Dead() && (e.Call.Cause == 0 || e.Call.CauseText() == "") {
				rt.Fatalf("rev %d: leg %d dead without a cause", b.Revision, e.Call.UID)
			}
			if (e.Type == callstore.EventTransfer) != (len(e.Xfer) > 0) {
				rt.Fatalf("rev %d: leg %d: xfer data on a %v event", b.Revision, e.Call.UID, e.Type)
			}
			p.history[e.Call.UID] = append(p.history[e.Call.UID], e)
		}
	}
	// The store's live set and the engine's agree and are sane.
	if err := h.sim.Verify(); err != nil {
		rt.Fatal(err)
	}
}

// finish checks every leg's life: NEW first, exactly one DEAD, last.
func (p *propHarness) finish() {
	for uid, evs := range p.history {
		if evs[0].Type != callstore.EventNew {
			p.rt.Fatalf("leg %d: first event %v", uid, evs[0].Type)
		}
		for i, e := range evs {
			if i > 0 && e.Type == callstore.EventNew {
				p.rt.Fatalf("leg %d: NEW twice", uid)
			}
			if e.Call.Dead() != (i == len(evs)-1) {
				p.rt.Fatalf("leg %d: DEAD at %d of %d events", uid, i, len(evs))
			}
		}
	}
}

// harness runs the simulated switch over a real store with a fake clock
// and one unfiltered watcher.
type harness struct {
	ctx   context.Context
	sim   *Switch
	clock *pbx.FakeClock
	store *callstore.Store
	w     *callstore.Watcher
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	store := callstore.New(callstore.Options{HistorySize: 4096, WatcherQueue: 4096})
	clock := pbx.NewFakeClock(pbxtest.Epoch)
	sim := New(directory.Demo(), store, Options{Clock: clock, Logger: quietLogger()})
	w, _, _, err := store.Watch(callstore.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.Close()
		sim.Close()
	})
	return &harness{ctx: context.Background(), sim: sim, clock: clock, store: store, w: w}
}
