package pbx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"callcontrold/callstore"
	"callcontrold/directory"
)

// recorder is a driver that records what the engine signals and reports
// nothing by itself, unless a test sets a reaction: the engine's side of
// the contract, seen from a driver.
type recorder struct {
	mu    sync.Mutex
	log   []string
	react func(sig string) // called without the recorder's lock
	busy  map[string]bool  // numbers Refuse turns away
}

func (r *recorder) add(format string, args ...any) {
	sig := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.log = append(r.log, sig)
	react := r.react
	r.mu.Unlock()
	if react != nil {
		react(sig)
	}
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.log
	r.log = nil
	return out
}

func party(p Party) string {
	if p.Remote != 0 {
		return fmt.Sprintf("remote%d", p.Remote)
	}
	return p.Leg.Device
}

func (r *recorder) Refuse(t Target) int32 {
	if r.busy[t.Number] {
		return CauseUserBusy
	}
	return 0
}
func (r *recorder) Status(string) DeviceStatus { return StatusUp }
func (r *recorder) CanAnswer(string) bool      { return true }
func (r *recorder) CanDtmf(string) bool        { return false }
func (r *recorder) Offhook(_ context.Context, l LegRef, auto bool) {
	r.add("offhook %s auto=%v", l.Device, auto)
}
func (r *recorder) Ring(_ context.Context, g Ring) {
	r.add("ring %s from %s (%s <%s>)", g.Leg.Device, party(g.From), g.Name, g.Number)
}
func (r *recorder) Answer(_ context.Context, l LegRef) { r.add("answer %s", l.Device) }
func (r *recorder) Originate(_ context.Context, o Originate) {
	r.add("originate remote%d %s from %s", o.Remote, o.Number, o.From.Device)
}
func (r *recorder) Bridge(_ context.Context, a, b Party) { r.add("bridge %s %s", party(a), party(b)) }
func (r *recorder) Hold(_ context.Context, l LegRef, other Party, held bool) {
	r.add("hold %s toward %s held=%v", l.Device, party(other), held)
}
func (r *recorder) Hangup(_ context.Context, l LegRef, cause int32) {
	r.add("hangup %s cause=%d", l.Device, cause)
}
func (r *recorder) HangupRemote(_ context.Context, id RemoteID, cause int32) {
	r.add("hangup remote%d cause=%d", id, cause)
}
func (r *recorder) Dtmf(_ context.Context, l LegRef, tone string) {
	r.add("dtmf %s %s", l.Device, tone)
}

func newTestEngine(t *testing.T) (*Engine, *recorder, *FakeClock) {
	t.Helper()
	rec := &recorder{busy: map[string]bool{"+15550110": true}}
	clock := NewFakeClock(time.Unix(1_700_000_000, 0))
	e := NewEngine(directory.Demo(), callstore.New(callstore.Options{}), rec,
		Options{Clock: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(e.Close)
	return e, rec, clock
}

func expectSignals(t *testing.T, rec *recorder, want ...string) {
	t.Helper()
	if got := rec.take(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("signals:\ngot:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// okCall and okCalls fail the test on an error and return the value.
func okCall(t *testing.T) func(*callstore.Call, error) *callstore.Call {
	return func(c *callstore.Call, err error) *callstore.Call {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
}

func okCalls(t *testing.T) func([]*callstore.Call, error) []*callstore.Call {
	return func(c []*callstore.Call, err error) []*callstore.Call {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
}

// TestSignals: what the engine tells a driver in the basic flows, in
// order, and that an event a device reported is not echoed back to it.
func TestSignals(t *testing.T) {
	e, rec, _ := newTestEngine(t)
	ctx := context.Background()
	rec.react = func(sig string) {
		if strings.HasPrefix(sig, "offhook SIP/201") {
			okCall(t)(e.Answered(ctx, e.store.ByDevice("SIP/201")[0].UID))
		}
	}
	a := okCall(t)(e.Dial(ctx, "SIP/201", "202", DialOptions{AutoAnswer: true}))
	if a.State != callstore.StateRing {
		t.Fatalf("dial returned %v, want ring (the driver reported off hook at once)", a.State)
	}
	b := e.store.ByDevice("SIP/202")[0]
	expectSignals(t, rec, "offhook SIP/201 auto=true", "ring SIP/202 from SIP/201 (Alice Smith <201>)")
	okCall(t)(e.Answered(ctx, b.UID))
	expectSignals(t, rec, "bridge SIP/201 SIP/202")
	mustOK2[*callstore.Call](t)(e.Hold(ctx, a.UID))
	expectSignals(t, rec, "hold SIP/201 toward SIP/202 held=true")
	okCall(t)(e.Held(ctx, a.UID, false))
	expectSignals(t, rec, "hold SIP/201 toward SIP/202 held=false")
	okCall(t)(e.HungUp(ctx, b.UID))
	expectSignals(t, rec, "hangup SIP/201 cause=16") // not SIP/202: it hung up itself

	rec.react = nil
	x := okCall(t)(e.Originated(ctx, "SIP/203", "+15550100", nil))
	expectSignals(t, rec, "originate remote1 +15550100 from SIP/203")
	okCalls(t)(e.RemoteAnswered(ctx, 1))
	expectSignals(t, rec, "bridge remote1 SIP/203")
	okCall(t)(e.Hangup(ctx, x.UID))
	expectSignals(t, rec, "hangup SIP/203 cause=16", "hangup remote1 cause=16")

	busy := okCall(t)(e.Originated(ctx, "SIP/203", "+15550110", nil))
	if !busy.Dead() || busy.Cause != CauseUserBusy {
		t.Errorf("a number the driver refuses: %v cause %d, want dead 17", busy.State, busy.Cause)
	}
	expectSignals(t, rec, "hangup SIP/203 cause=17")

	id, calls := mustOK3[RemoteID, []*callstore.Call](t)(e.Inbound(ctx, "+442079460001", "Carol", "610"))
	if len(calls) != 3 {
		t.Fatalf("ring-all rang %d phones, want 3", len(calls))
	}
	rec.take()
	okCalls(t)(e.RemoteEnded(ctx, id, CauseNormalClearing))
	expectSignals(t, rec, "hangup SIP/201 cause=16", "hangup SIP/201_2 cause=16", "hangup SIP/202 cause=16")
	if err := e.Verify(); err != nil {
		t.Fatal(err)
	}
}

func mustOK2[T any](t *testing.T) func(T, bool, error) (T, bool) {
	return func(v T, ok bool, err error) (T, bool) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v, ok
	}
}

func mustOK3[A, B any](t *testing.T) func(A, B, error) (A, B) {
	return func(a A, b B, err error) (A, B) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return a, b
	}
}

// TestAsyncAnswer: Talk on a ringing phone returns the leg as answered
// when the driver reports the answer later, from another goroutine, and
// fails with the context's error when it never does (the phone rings on).
func TestAsyncAnswer(t *testing.T) {
	e, rec, _ := newTestEngine(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	defer wg.Wait()
	rec.react = func(sig string) {
		if strings.HasPrefix(sig, "offhook ") {
			uid := e.store.ByDevice("SIP/201")[0].UID
			wg.Add(1)
			go func() { defer wg.Done(); _, _ = e.Answered(ctx, uid) }()
		}
		if sig == "answer SIP/202" {
			uid := e.store.ByDevice("SIP/202")[0].UID
			wg.Add(1)
			go func() { defer wg.Done(); _, _ = e.Answered(ctx, uid) }()
		}
	}
	a := okCall(t)(e.Dial(ctx, "SIP/201", "202", DialOptions{}))
	if a.State != callstore.StateRing {
		t.Fatalf("dial returned %v, want ring", a.State)
	}
	b, changed := mustOK2[*callstore.Call](t)(e.Talk(ctx, e.store.ByDevice("SIP/202")[0].UID))
	if !changed || b.State != callstore.StateUp {
		t.Fatalf("talk returned %v (changed %v), want up", b.State, changed)
	}
	if got, _ := e.store.Get(b.UID); got != b {
		t.Error("talk did not return the committed value")
	}

	// From now on phones never answer. Under the recorder's lock: a report
	// from before (an Answered in flight) may still be delivering signals.
	rec.mu.Lock()
	rec.react = nil
	rec.mu.Unlock()
	c := okCall(t)(e.Originated(ctx, "SIP/203", "202", nil))
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, _, err := e.Talk(short, e.store.ByDevice("SIP/202")[1].UID)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("talk on a phone that never answers: %v, want DeadlineExceeded", err)
	}
	if got, _ := e.store.Get(c.UID); got.State != callstore.StateRing {
		t.Errorf("caller after a failed talk: %v, want ring", got.State)
	}
	short2, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel2()
	d, err := e.Dial(short2, "SIP/203", "201", DialOptions{})
	if err != nil || d.State != callstore.StateDial {
		t.Errorf("dial from a phone that does not go off hook: %v %v, want the leg in dial", d, err)
	}
}

// TestOffhookTimeout: a phone that never goes off hook for its
// click-to-dial call is given up after the ring timeout (19).
func TestOffhookTimeout(t *testing.T) {
	e, rec, clock := newTestEngine(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Dial does not wait for the phone
	if _, err := e.Dial(ctx, "SIP/201", "202", DialOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("dial with an ended context: %v", err)
	}
	a, err := e.dial(context.Background(), "SIP/201", "202", DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.cur.State != callstore.StateDial {
		t.Fatalf("leg in %v, want dial", a.cur.State)
	}
	rec.take()
	clock.Advance(e.ringTimeout)
	expectSignals(t, rec, "hangup SIP/201 cause=19")
	if calls := e.store.ByDevice("SIP/201"); len(calls) != 0 {
		t.Errorf("%d legs left", len(calls))
	}
}

// TestMarkWraps: the tx marks that tell which legs an operation touched
// wrap around after 2^32 operations; a leg last touched by the operation
// 2^32 operations before still counts as untouched.
func TestMarkWraps(t *testing.T) {
	e, _, _ := newTestEngine(t)
	ctx := context.Background()
	id, calls := mustOK3[RemoteID, []*callstore.Call](t)(e.Inbound(ctx, "+442079460001", "Carol", "610"))
	if len(calls) != 3 || e.mark != 1 {
		t.Fatalf("ring-all rang %d phones under mark %d, want 3 under mark 1", len(calls), e.mark)
	}
	e.mu.Lock()
	e.mark = math.MaxUint32 // the next operation's mark is 1 again
	e.mu.Unlock()
	okCalls(t)(e.RemoteEnded(ctx, id, CauseNormalClearing))
	if n := e.store.Len(); n != 0 {
		t.Errorf("%d legs still live after the caller hung up, want 0", n)
	}
	if err := e.Verify(); err != nil {
		t.Fatal(err)
	}
}

// TestLegIdentifiers: legID and channelID write what the format strings
// they replace wrote.
func TestLegIdentifiers(t *testing.T) {
	for _, seq := range []int64{0, 1, 0xabc, 0xffffffff, 0x123456789, math.MaxInt64} {
		if got, want := legID(1_700_000_000, seq), fmt.Sprintf("%d.%d", 1_700_000_000, seq); got != want {
			t.Errorf("legID(%d): got %q, want %q", seq, got, want)
		}
		dev := "SIP/201_" + strings.Repeat("x", int(seq%60))
		if got, want := channelID(dev, seq), fmt.Sprintf("%s-%08x", dev, seq); got != want {
			t.Errorf("channelID(%q, %d): got %q, want %q", dev, seq, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = legID(1_700_000_000, 42), channelID("SIP/201", 42) }); n != 2 {
		t.Errorf("legID and channelID allocate %v times, want 2 (their strings)", n)
	}
}
