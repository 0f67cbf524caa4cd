// Package pbxtest runs the call flows of the PBX against any channel
// driver: each flow is a sequence of API operations (Dial, Talk, Hold,
// Xfer, ...) and of actions of the phones and far ends (a device answers,
// hangs up, is busy, puts its call on hold; an external number answers),
// each step with the store revisions it must commit. A driver's test
// supplies a [Driver] adapter that performs those actions through its own
// signalling; the same table then checks that every driver produces the
// same events for the same flow. Every driver plays every flow (none is
// skipped); where the drivers may differ within the call model, the flow
// says so and accepts both (ExpectRefusedOut: a busy number refused
// before or after the caller's leg rang).
package pbxtest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"callcontrold/callstore"
	"callcontrold/directory"
	"callcontrold/pbx"
)

// Driver performs the phones' and far ends' actions of a flow through a
// channel driver's own signalling, and returns once the engine applied
// them (a driver that reports asynchronously waits for it).
type Driver interface {
	// Answer: the device of a ringing leg answers it.
	Answer(t testing.TB, uid int64)
	// HangUp: the device of a leg hangs up (or declines it while it rings).
	HangUp(t testing.TB, uid int64)
	// Refuse: the device of a ringing leg refuses it with a cause (busy
	// 17, rejected 21, ...).
	Refuse(t testing.TB, uid int64, cause int32)
	// Hold: the phone of a leg puts its call on hold or takes it back.
	Hold(t testing.TB, uid int64, held bool)
	// Inbound places a call from an external number to an extension and
	// returns the legs it created.
	Inbound(t testing.TB, from, name, ext string) []*callstore.Call
	// RemoteAnswer, RemoteReject and RemoteHangup act as the external
	// party of a leg (a call out to a number, or in from one).
	RemoteAnswer(t testing.TB, uid int64)
	RemoteReject(t testing.TB, uid int64, cause int32)
	RemoteHangup(t testing.TB, uid int64)
	// SetNumberBehaviour sets an external number's behaviour. Calls to
	// external numbers reach far ends that follow it, else the
	// directory's number rules (answer after 3s, +15550110 busy,
	// +15550120 no answer, +15550130 rejects, +15550140 manual), else
	// answer after 3 s, their delays on the engine's clock.
	SetNumberBehaviour(t testing.TB, number string, b pbx.Behaviour)
	// Settle returns once every far end the driver signalled has heard
	// of its call, so that a far end which acts after a delay on the
	// engine's clock started waiting before the flow moves the clock
	// (H.Advance). A driver whose far ends start at once in Originate
	// has nothing to wait for.
	Settle(t testing.TB)
}

// Env is one engine under test: what NewEnv returns for each flow.
type Env struct {
	Engine *pbx.Engine
	Driver Driver
}

// NewEnv builds an engine over dir and store with the given clock, its
// driver and the adapter; it registers its own cleanup.
type NewEnv func(t *testing.T, dir *directory.Directory, store *callstore.Store, clock pbx.Clock) Env

// Epoch is the fake clock's start in every flow.
var Epoch = time.Unix(1_700_000_000, 0)

// H runs one flow: the engine over a real store with a fake clock, and
// one unfiltered watcher that records every revision.
type H struct {
	T      *testing.T
	Ctx    context.Context
	E      *pbx.Engine
	D      Driver
	Clock  *pbx.FakeClock
	Store  *callstore.Store
	w      *callstore.Watcher
	rev    int64
	events map[int64][]callstore.WatchEvent
}

// New returns a harness over the demo directory.
func New(t *testing.T, newEnv NewEnv) *H {
	t.Helper()
	store := callstore.New(callstore.Options{HistorySize: 4096, WatcherQueue: 4096})
	clock := pbx.NewFakeClock(Epoch)
	env := newEnv(t, directory.Demo(), store, clock)
	w, _, rev, err := store.Watch(callstore.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return &H{T: t, Ctx: context.Background(), E: env.Engine, D: env.Driver, Clock: clock, Store: store, w: w, rev: rev,
		events: map[int64][]callstore.WatchEvent{}}
}

func partyName(p callstore.Party) string {
	return [...]string{"?", "unknown", "caller", "callee"}[p]
}

// TypeNames are the event types as the flows spell them.
var TypeNames = [...]string{"?", "NEW", "UPDATE", "TRANSFER"}

// EvString is one event as the flows spell it:
// "TYPE device state/nrState party [cause=N] [xfer=N]".
func EvString(e callstore.WatchEvent) string {
	c := e.Call
	s := fmt.Sprintf("%s %s %s/%s %s", TypeNames[e.Type], c.Device, c.State, c.NRState, partyName(c.Party))
	if c.Dead() {
		s += fmt.Sprintf(" cause=%d", c.Cause)
	}
	if e.Type == callstore.EventTransfer {
		s += fmt.Sprintf(" xfer=%d", len(e.Xfer))
	}
	return s
}

// settle is how long a flow waits for revisions a driver reports
// asynchronously: a liveness bound, not a timing assertion.
const settle = 10 * time.Second

// Revs drains the watcher: one string per revision, events joined by
// " | ", waiting (up to a generous bound) until there are at least n. It
// checks that revisions strictly increase.
func (h *H) Revs(n int) []string {
	h.T.Helper()
	var out []string
	deadline := time.NewTimer(settle)
	defer deadline.Stop()
	for {
		bs, _, err := h.w.Drain(nil)
		if err != nil {
			h.T.Fatalf("drain: %v", err)
		}
		for _, b := range bs {
			if b.Revision <= h.rev {
				h.T.Fatalf("revision %d after %d", b.Revision, h.rev)
			}
			h.rev = b.Revision
			var evs []string
			for _, e := range b.Events {
				evs = append(evs, EvString(e))
				h.events[e.Call.UID] = append(h.events[e.Call.UID], e)
			}
			out = append(out, strings.Join(evs, " | "))
		}
		if len(out) >= n {
			return out
		}
		select {
		case <-h.w.Ready():
		case <-deadline.C:
			return out
		}
	}
}

// Expect checks the revisions committed since the last check.
func (h *H) Expect(want ...string) {
	h.T.Helper()
	got := h.Revs(len(want))
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		h.T.Errorf("revisions:\ngot:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// Advance moves the engine's clock once the driver's far ends heard of
// every call they were sent (Driver.Settle): a far end that answers
// after 3 s answers 3 s after it was rung, not after a message that was
// still on its way when the clock moved.
func (h *H) Advance(d time.Duration) {
	h.T.Helper()
	h.D.Settle(h.T)
	h.Clock.Advance(d)
}

// Skip drops the revisions committed so far.
func (h *H) Skip() { h.T.Helper(); h.Revs(0) }

// On returns the i-th live leg (by uid) on a device.
func (h *H) On(dev string, i ...int) *callstore.Call {
	h.T.Helper()
	calls := h.Store.ByDevice(dev)
	n := 0
	if len(i) > 0 {
		n = i[0]
	}
	if n >= len(calls) {
		h.T.Fatalf("no live leg #%d on %s (have %d)", n, dev, len(calls))
	}
	return calls[n]
}

// Get returns a live leg's current value.
func (h *H) Get(uid int64) *callstore.Call {
	h.T.Helper()
	c, ok := h.Store.Get(uid)
	if !ok {
		h.T.Fatalf("call %d is not live", uid)
	}
	return c
}

// None checks that a device has no live leg.
func (h *H) None(dev string) {
	h.T.Helper()
	if calls := h.Store.ByDevice(dev); len(calls) != 0 {
		h.T.Fatalf("%s has %d live legs, want none", dev, len(calls))
	}
}

// C fails the test on err and checks that a returned call is what the
// store holds (the "as applied" promise).
func (h *H) C(c *callstore.Call, err error) *callstore.Call {
	h.T.Helper()
	if err != nil {
		h.T.Fatalf("unexpected error: %v", err)
	}
	h.applied(c)
	return c
}

func (h *H) applied(c *callstore.Call) {
	h.T.Helper()
	if c != nil && !c.Dead() {
		if got, ok := h.Store.Get(c.UID); !ok || got != c {
			h.T.Fatalf("returned call %d is not the committed value", c.UID)
		}
	}
}

// CB is C for the operations that also say whether they changed anything.
func (h *H) CB(c *callstore.Call, _ bool, err error) *callstore.Call {
	h.T.Helper()
	return h.C(c, err)
}

// CC is C for the operations that return two legs.
func (h *H) CC(a, b *callstore.Call, err error) (*callstore.Call, *callstore.Call) {
	h.T.Helper()
	if err != nil {
		h.T.Fatalf("unexpected error: %v", err)
	}
	h.applied(a)
	h.applied(b)
	return a, b
}

// Dial dials from a device through the API.
func (h *H) Dial(dev, number string) *callstore.Call {
	h.T.Helper()
	return h.C(h.E.Dial(h.Ctx, dev, number, pbx.DialOptions{}))
}

// Talk is the API's Talk.
func (h *H) Talk(uid int64) *callstore.Call {
	h.T.Helper()
	return h.CB(h.E.Talk(h.Ctx, uid))
}

// Hangup is the API's Hangup.
func (h *H) Hangup(uid int64) *callstore.Call {
	h.T.Helper()
	return h.C(h.E.Hangup(h.Ctx, uid))
}

// Answer: the device's phone answers its ringing leg.
func (h *H) Answer(dev string, i ...int) *callstore.Call {
	h.T.Helper()
	uid := h.On(dev, i...).UID
	h.D.Answer(h.T, uid)
	return h.Get(uid)
}

// Connect sets up an answered internal call from dev to ext, answered by
// the phone of answerDev, and drains its events.
func (h *H) Connect(dev, ext, answerDev string) (a, b *callstore.Call) {
	h.T.Helper()
	a = h.Dial(dev, ext)
	h.Revs(2)
	b = h.Answer(answerDev)
	h.Revs(1)
	return h.Get(a.UID), b
}

// Check verifies the engine against the store.
func (h *H) Check() {
	h.T.Helper()
	if err := h.E.Verify(); err != nil {
		h.T.Fatal(err)
	}
}

// Inbound places a call from outside and checks the legs it returns.
func (h *H) Inbound(from, name, ext string) []*callstore.Call {
	h.T.Helper()
	calls := h.D.Inbound(h.T, from, name, ext)
	if len(calls) == 0 {
		h.T.Fatal("no legs")
	}
	for _, c := range calls {
		h.applied(c)
	}
	return calls
}
