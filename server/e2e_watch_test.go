package server_test

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"callcontrold/callstore"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/pbx"
	"callcontrold/pbx/sim"
	"callcontrold/server"
)

// testSeed is random per run, logged, and can be replayed with
// CALLCONTROLD_SEED.
func testSeed(t *testing.T) int64 {
	t.Helper()
	seed := time.Now().UnixNano()
	if s := os.Getenv("CALLCONTROLD_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("CALLCONTROLD_SEED: %v", err)
		}
	}
	t.Logf("seed %d (replay with CALLCONTROLD_SEED=%d)", seed, seed)
	return seed
}

// randomTraffic drives the simulated switch directly with random
// operations (most fail harmlessly on a state check) and returns when done.
func randomTraffic(rng *rand.Rand, sw *sim.Switch, store *callstore.Store, clock *pbx.FakeClock, ops int) {
	phones := []string{"SIP/201", "SIP/201_2", "SIP/202", "SIP/203", "SIP/webrtc11", "SIP/302", "SIP/303"}
	numbers := []string{"201", "202", "203", "301", "302", "303", "610", "620", "600", "650", "660", "670", "701", "703", "+15550140", "+15550100"}
	ctx := context.Background()
	for range ops {
		live, _ := store.List(&callstore.Filter{}, nil, 0, 0)
		var uid int64
		if len(live) > 0 {
			uid = live[rng.Intn(len(live))].UID
		}
		switch p := rng.Intn(100); {
		case p < 35 || uid == 0:
			_, _ = sw.Dial(ctx, phones[rng.Intn(len(phones))], numbers[rng.Intn(len(numbers))], pbx.DialOptions{})
		case p < 55:
			_, _, _ = sw.Talk(ctx, uid)
		case p < 65:
			_, _, _ = sw.Hold(ctx, uid)
		case p < 85:
			_, _ = sw.Hangup(ctx, uid)
		case p < 90:
			_, _, _ = sw.Xfer(ctx, uid, numbers[rng.Intn(len(numbers))])
		case p < 93:
			_, _ = sw.PlaceInbound(ctx, "+442079460001", "Carol", numbers[rng.Intn(9)])
		default:
			clock.Advance(time.Duration(rng.Intn(12)) * time.Second)
		}
	}
}

// applyView folds events into a view of live calls (by uid): a call that
// LEFT or died is no longer in it.
func applyView(view map[int64]*callcontrolv1.Call, bs []*callcontrolv1.EventBatch) {
	for _, b := range bs {
		for _, e := range b.GetEvents() {
			c := e.GetCall()
			if e.GetView() == callcontrolv1.ViewChange_VIEW_CHANGE_LEFT || c.GetState() == callcontrolv1.State_STATE_DEAD {
				delete(view, c.GetUid())
			} else {
				view[c.GetUid()] = c
			}
		}
	}
}

// A client that disconnects at random points and resumes with its last
// token ends with the same view, and the same events after the snapshot,
// as one that never disconnected; both agree with ListCalls at the end.
func TestResumeAtRandomPoints(t *testing.T) {
	rng := rand.New(rand.NewSource(testSeed(t)))
	views := []view{
		{login: "sysadmin"},
		{login: "bob"},
		{login: "alice", filter: &callcontrolv1.CallFilter{States: []callcontrolv1.State{callcontrolv1.State_STATE_UP, callcontrolv1.State_STATE_HOLD}}},
		{login: "acme-admin", filter: &callcontrolv1.CallFilter{EventTypes: []callcontrolv1.EventType{callcontrolv1.EventType_EVENT_TYPE_NEW, callcontrolv1.EventType_EVENT_TYPE_UPDATE}}},
	}
	h := newHarness(t, withConfig(func(c *server.Config) { c.ProgressInterval = 10 * time.Millisecond }))
	// Some calls exist before anyone watches: the snapshot is not empty.
	randomTraffic(rand.New(rand.NewSource(rng.Int63())), h.sim, h.store, h.clock, 60)

	type flaky struct {
		v        view
		ref      *watcher
		refSnap  []*callcontrolv1.Call
		snap     []*callcontrolv1.Call
		events   []*callcontrolv1.EventBatch
		token    string
		tokenRev int64
		cur      *watcher
		resumes  int
	}
	fs := make([]*flaky, len(views))
	for i, v := range views {
		f := &flaky{v: v}
		f.ref = h.watch(v.login, &callcontrolv1.WatchCallsRequest{Filter: v.filter})
		_, f.refSnap, _ = f.ref.start()
		f.cur = h.watch(v.login, &callcontrolv1.WatchCallsRequest{Filter: v.filter})
		_, f.snap, f.tokenRev = func() (*callcontrolv1.WatchStarted, []*callcontrolv1.Call, int64) {
			st, snap, end := f.cur.start()
			f.token = end.GetResumeToken()
			return st, snap, end.GetRevision()
		}()
		fs[i] = f
	}

	// Traffic and reconnections interleave: a few operations, then every
	// flaky client reads a few frames, drops its stream and resumes.
	trafficRNG := rand.New(rand.NewSource(rng.Int63()))
	final := int64(-1)
	for ops, finished := 0, 0; finished < len(fs); {
		if ops < 250 {
			n := trafficRNG.Intn(8)
			randomTraffic(trafficRNG, h.sim, h.store, h.clock, n)
			ops += n
		} else if final < 0 {
			final = h.store.Revision()
		}
		finished = 0
		for _, f := range fs {
			if final >= 0 && f.tokenRev >= final {
				finished++
				continue
			}
			// Read a random number of frames, then drop the connection
			// and resume with the last token seen.
			for n := rng.Intn(10); n > 0; n-- {
				m := f.cur.mustNext()
				r, tok, ok := frameRevision(m)
				if !ok {
					t.Fatalf("%s: unexpected frame %v", f.v.login, m)
				}
				if r < f.tokenRev {
					t.Fatalf("%s: frame at r%d after r%d", f.v.login, r, f.tokenRev)
				}
				if b := m.GetEvents(); b != nil {
					f.events = append(f.events, b)
				}
				f.token, f.tokenRev = tok, r
				if final >= 0 && r >= final {
					break
				}
			}
			f.cur.stop()
			f.cur = h.watch(f.v.login, &callcontrolv1.WatchCallsRequest{Filter: f.v.filter, ResumeToken: f.token})
			f.resumes++
			st := f.cur.mustNext().GetStarted()
			if st == nil || st.GetRevision() != f.tokenRev {
				t.Fatalf("%s: resumed at r%d, first frame %v", f.v.login, f.tokenRev, st)
			}
		}
	}
	for _, f := range fs {
		ref := f.ref.until(final)
		if d := diffLines(gotStrings(f.events), gotStrings(ref)); d != "" {
			t.Errorf("%s (%v): resumed %d times, events differ from the uninterrupted watcher:\n%s", f.v.login, f.v.filter, f.resumes, d)
		} else {
			for i := range ref {
				if !proto.Equal(f.events[i], ref[i]) {
					t.Errorf("%s: r%d differs:\nresumed       %v\nuninterrupted %v", f.v.login, ref[i].GetRevision(), f.events[i], ref[i])
				}
			}
		}
		got, want := map[int64]*callcontrolv1.Call{}, map[int64]*callcontrolv1.Call{}
		for _, c := range f.snap {
			got[c.GetUid()] = c
		}
		for _, c := range f.refSnap {
			want[c.GetUid()] = c
		}
		applyView(got, f.events)
		applyView(want, ref)
		if len(got) != len(want) {
			t.Errorf("%s: final views: resumed %d calls, uninterrupted %d", f.v.login, len(got), len(want))
		}
		for uid, c := range want {
			if !proto.Equal(got[uid], c) {
				t.Errorf("%s: call %d: resumed view %v, uninterrupted %v", f.v.login, uid, got[uid], c)
			}
		}
		list, err := h.as(f.v.login).calls.ListCalls(h.ctx(), &callcontrolv1.ListCallsRequest{Filter: f.v.filter, PageSize: 1000})
		if err != nil {
			t.Fatal(err)
		}
		// Without an event-type filter, the view is the live state:
		// ListCalls agrees (xfer_data only travels with TRANSFER events).
		if len(f.v.filter.GetEventTypes()) == 0 {
			if len(got) != len(list.GetCalls()) {
				t.Errorf("%s: final view has %d calls, ListCalls %d", f.v.login, len(got), len(list.GetCalls()))
			}
			for _, c := range list.GetCalls() {
				v := proto.Clone(got[c.GetUid()]).(*callcontrolv1.Call)
				if v != nil {
					v.XferData = nil
				}
				if !proto.Equal(v, c) {
					t.Errorf("%s: call %d: view %v, ListCalls %v", f.v.login, c.GetUid(), v, c)
				}
			}
		}
		t.Logf("%s: %d event frames, %d resumes, %d calls at the end", f.v.login, len(ref), f.resumes, len(list.GetCalls()))
	}
}

func TestResumeRefused(t *testing.T) {
	h := newHarness(t, withStore(callstore.Options{HistorySize: 4}))
	w := h.watch("alice", &callcontrolv1.WatchCallsRequest{})
	_, _, end := w.start()
	oldToken := end.GetResumeToken()

	t.Run("token of another server process", func(t *testing.T) {
		other := newHarness(t)
		w := h.watchOn(other.as("alice"), "alice@other", &callcontrolv1.WatchCallsRequest{ResumeToken: oldToken})
		_, err := w.end()
		st := statusOf(t, err, codes.OutOfRange)
		if ei := errorInfo(t, st); ei.GetReason() != "EPOCH_MISMATCH" {
			t.Errorf("reason %q, want EPOCH_MISMATCH", ei.GetReason())
		}
	})

	t.Run("revision older than the history", func(t *testing.T) {
		for range 5 {
			a, err := h.sim.Dial(context.Background(), "SIP/201", "202", pbx.DialOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := h.sim.Hangup(context.Background(), a.UID); err != nil {
				t.Fatal(err)
			}
		}
		w := h.watch("alice", &callcontrolv1.WatchCallsRequest{ResumeToken: oldToken})
		_, err := w.end()
		st := statusOf(t, err, codes.OutOfRange)
		ei := errorInfo(t, st)
		if got, want := ei.GetMetadata()["oldest_revision"], strconv.FormatInt(h.store.OldestRevision(), 10); got != want {
			t.Errorf("oldest_revision %q, want %q (%v)", got, want, ei)
		}
		// The oldest retained revision itself still resumes.
		st2, _, _ := h.watch("alice", &callcontrolv1.WatchCallsRequest{}).start()
		if st2.GetOldestRevision() != h.store.OldestRevision() || st2.GetHistoryWindow() != 4 {
			t.Errorf("started: oldest %d window %d, want %d 4", st2.GetOldestRevision(), st2.GetHistoryWindow(), h.store.OldestRevision())
		}
	})

	t.Run("malformed token", func(t *testing.T) {
		for _, tok := range []string{"not a token", "AAAA", oldToken + "x"} {
			w := h.watch("alice", &callcontrolv1.WatchCallsRequest{ResumeToken: tok})
			_, err := w.end()
			st := statusOf(t, err, codes.InvalidArgument)
			if f := badRequestFields(t, st); len(f) != 1 || f[0] != "resume_token" {
				t.Errorf("token %q: fields %v, want [resume_token]", tok, f)
			}
		}
	})
}

// A watcher of a quiet device hears progress frames; their tokens resume.
func TestProgressFrames(t *testing.T) {
	h := newHarness(t, withConfig(func(c *server.Config) { c.ProgressInterval = 50 * time.Millisecond }))
	quiet := &callcontrolv1.CallFilter{Devices: []string{"SIP/203"}}
	w := h.watch("alice", &callcontrolv1.WatchCallsRequest{Filter: quiet})
	m := w.mustNext()
	st := m.GetStarted()
	if st == nil || !proto.Equal(st.GetProgressInterval(), durationpb.New(50*time.Millisecond)) || st.GetHistoryWindow() != callstore.DefaultHistorySize {
		t.Fatalf("first frame %v, want started with the interval and history window", m)
	}
	if end := w.mustNext().GetSnapshotEnd(); end == nil {
		t.Fatal("no snapshot_end")
	}
	// Traffic elsewhere: nothing matches, the progress frames follow it.
	_, b, _ := connect(h, "alice", "SIP/201", "202", "admin", "SIP/202")
	h.hangup("admin", b.GetUid())
	final := h.store.Revision()
	var last *callcontrolv1.Progress
	progressFrames := 0
	for last == nil || last.GetRevision() < final {
		m := w.mustNext()
		p := m.GetProgress()
		if p == nil {
			t.Fatalf("got %v, want only progress frames", m)
		}
		if last != nil && p.GetRevision() < last.GetRevision() {
			t.Fatalf("progress went back from %d to %d", last.GetRevision(), p.GetRevision())
		}
		last = p
		progressFrames++
	}
	if last.GetRevision() != final || last.GetResumeToken() == "" {
		t.Fatalf("last progress %v, want r%d", last, final)
	}
	w.stop()

	// Resume from the progress token: nothing old, then the next match.
	r := h.watch("alice", &callcontrolv1.WatchCallsRequest{Filter: quiet, ResumeToken: last.GetResumeToken()})
	if st := r.mustNext().GetStarted(); st.GetRevision() != final {
		t.Fatalf("resumed at %d, want %d", st.GetRevision(), final)
	}
	h.dialCall("alice", "SIP/201", "203")
	for {
		m := r.mustNext()
		if p := m.GetProgress(); p != nil {
			continue
		}
		b := m.GetEvents()
		if b == nil || b.GetRevision() != final+2 || len(b.GetEvents()) != 1 || b.GetEvents()[0].GetCall().GetDevice() != "SIP/203" {
			t.Fatalf("after resume got %v, want r%d: NEW SIP/203", m, final+2)
		}
		break
	}
}

// Shutdown: every watcher gets a progress frame, then UNAVAILABLE with a
// RetryInfo.
func TestDrainEndsWatchers(t *testing.T) {
	h := newHarness(t)
	ws := map[string]*watcher{}
	for _, login := range logins {
		ws[login] = h.watch(login, &callcontrolv1.WatchCallsRequest{})
		ws[login].start()
	}
	ws["bob-quiet"] = h.watch("bob", &callcontrolv1.WatchCallsRequest{Filter: &callcontrolv1.CallFilter{Devices: []string{"SIP/303"}}})
	ws["bob-quiet"].start()
	connect(h, "alice", "SIP/201", "301", "bob", "SIP/webrtc11")
	final := h.store.Revision()

	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		h.srv.Shutdown(ctx)
	}()
	for name, w := range ws {
		rest, err := w.end()
		if len(rest) == 0 {
			t.Errorf("%s: no frame before the end", name)
		} else if p := rest[len(rest)-1].GetProgress(); p == nil || p.GetRevision() != final || p.GetResumeToken() == "" {
			t.Errorf("%s: last frame %v, want progress at r%d", name, rest[len(rest)-1], final)
		}
		st := statusOf(t, err, codes.Unavailable)
		ri, ok := detail[*errdetails.RetryInfo](st)
		if !ok || ri.GetRetryDelay().AsDuration() <= 0 {
			t.Errorf("%s: %v: RetryInfo %v", name, st.Message(), ri)
		}
	}
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Fatal("Shutdown did not return")
	}
}

// A watcher that stops reading while the switch commits far more than its
// queue never holds the switch up: it catches up from history if it can,
// and otherwise ends with OUT_OF_RANGE; what it did get is correct.
func TestSlowConsumer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		history int
	}{
		{"fell past the history", 64},
		{"caught up from the history", 100000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, withStore(callstore.Options{HistorySize: tc.history, WatcherQueue: 4}))
			// Small fixed flow-control windows (no BDP growth): the
			// server's sends block soon after the client stops reading.
			c := h.dial("demo-alice", grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stream, err := c.calls.WatchCalls(ctx, &callcontrolv1.WatchCallsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			for range 2 { // started, snapshot_end
				if _, err := stream.Recv(); err != nil {
					t.Fatal(err)
				}
			}
			const calls = 600
			committed := make(chan error, 1)
			go func() {
				for range calls {
					a, err := h.sim.Dial(context.Background(), "SIP/201", "202", pbx.DialOptions{})
					if err == nil {
						_, err = h.sim.Hangup(context.Background(), a.UID)
					}
					if err != nil {
						committed <- err
						return
					}
				}
				committed <- nil
			}()
			select {
			case err := <-committed:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(waitLimit):
				t.Fatal("commits blocked behind a watcher that does not read")
			}
			// Each round is three revisions: dial, ring, hang up.
			var want []string
			for i := range int64(calls) {
				a, b, r := 2*i+1, 2*i+2, 3*i+1
				want = append(want,
					fmt.Sprintf("r%d: NEW SIP/201 dial #%d entered", r, a),
					fmt.Sprintf("r%d: UPDATE SIP/201 ring #%d stayed | NEW SIP/202 ring #%d entered", r+1, a, b),
					fmt.Sprintf("r%d: UPDATE SIP/201 dead #%d stayed cause=16 | UPDATE SIP/202 dead #%d stayed cause=16", r+2, a, b))
			}
			final := h.store.Revision()
			if final != 3*calls {
				t.Fatalf("revision %d after %d calls, want %d", final, calls, 3*calls)
			}
			var got []*callcontrolv1.EventBatch
			for {
				m, err := stream.Recv()
				if err != nil {
					if tc.history >= 100000 {
						t.Fatalf("stream ended: %v", err)
					}
					st := statusOf(t, err, codes.OutOfRange)
					ei := errorInfo(t, st)
					if ei.GetMetadata()["oldest_revision"] == "" {
						t.Errorf("ErrorInfo %v without oldest_revision", ei)
					}
					break
				}
				r, _, ok := frameRevision(m)
				if !ok {
					t.Fatalf("unexpected frame %v", m)
				}
				if b := m.GetEvents(); b != nil {
					got = append(got, b)
				}
				if tc.history >= 100000 && r >= final {
					break
				}
			}
			gs := gotStrings(got)
			if len(gs) > len(want) {
				t.Fatalf("got %d frames, more than the %d committed", len(gs), len(want))
			}
			if d := diffLines(gs, want[:len(gs)]); d != "" {
				t.Errorf("frames before the end are wrong:\n%s", d)
			}
			if tc.history >= 100000 && len(gs) != len(want) {
				t.Errorf("caught up with %d of %d frames", len(gs), len(want))
			}
			if tc.history < 100000 && len(gs) == len(want) {
				t.Errorf("received all %d frames: the watcher never fell behind", len(gs))
			}
			t.Logf("%d of %d frames before the end", len(gs), len(want))
		})
	}
}

// A revision replayed after the legs it references have ended renders as
// it was committed: the queue call's qcall survives the agent's hangup
// (resume must yield exactly the events a connected watcher got).
func TestResumeKeepsReferencesToEndedCalls(t *testing.T) {
	h := newHarness(t)
	live := h.watch("admin", &callcontrolv1.WatchCallsRequest{})
	live.start()
	h.inbound("+442079460001", "Carol", "600")
	r1 := live.until(h.store.Revision())
	m := h.talk("admin", h.on("SIP/202").GetUid())
	r2 := live.until(h.store.Revision())
	q := r2[0].GetEvents()[2].GetCall()
	if q.GetDevice() != "Queue/q_600" || q.GetQcall().GetUid() != m.GetUid() {
		t.Fatalf("live watcher: queue event %v", q)
	}
	h.hangup("admin", m.GetUid())

	resumed := h.watch("admin", &callcontrolv1.WatchCallsRequest{ResumeToken: r1[0].GetResumeToken()})
	resumed.mustNext() // started
	got := resumed.until(r2[0].GetRevision())
	rq := got[0].GetEvents()[2].GetCall()
	if rq.GetQcall().GetUid() != m.GetUid() {
		t.Errorf("resumed watcher: r%d queue call qcall %v, the connected watcher got %v", got[0].GetRevision(), rq.GetQcall(), q.GetQcall())
	}
}

// skip_snapshot starts at the current revision: started, then only what
// happens afterwards.
func TestWatchSkipSnapshot(t *testing.T) {
	h := newHarness(t)
	a := h.dialCall("alice", "SIP/201", "202")
	rev := h.store.Revision()
	w := h.watch("bob", &callcontrolv1.WatchCallsRequest{SkipSnapshot: true})
	if st := w.mustNext().GetStarted(); st == nil || st.GetRevision() != rev {
		t.Fatalf("first frame %v, want started at r%d", st, rev)
	}
	h.hangup("alice", a.GetUid())            // invisible to bob
	h.dialCall("bob", "SIP/webrtc11", "302") // two revisions bob sees
	got := w.until(h.store.Revision())
	want := []string{
		fmt.Sprintf("r%d: NEW SIP/webrtc11 dial #3 entered", rev+2),
		fmt.Sprintf("r%d: UPDATE SIP/webrtc11 ring #3 stayed | NEW SIP/302 ring #4 entered", rev+3),
	}
	if d := diffLines(gotStrings(got), want); d != "" {
		t.Error(d)
	}
}

// TestResumeAwaitsRevision: on a replica (Deps.AwaitRevision set), a
// resumed watch first waits, bounded, for the store to reach its token's
// revision; a watch without a token does not wait.
func TestResumeAwaitsRevision(t *testing.T) {
	type call struct {
		rev         int64
		hasDeadline bool
	}
	calls := make(chan call, 4)
	h := newHarness(t, withAwaitRevision(func(ctx context.Context, rev int64) error {
		_, ok := ctx.Deadline()
		calls <- call{rev, ok}
		return nil
	}))
	h.dialCall("alice", "SIP/201", "202")
	_, _, end := h.watch("alice", &callcontrolv1.WatchCallsRequest{}).start()
	select {
	case c := <-calls:
		t.Fatalf("a watch without a resume token waited for revision %d", c.rev)
	default:
	}

	w := h.watch("alice", &callcontrolv1.WatchCallsRequest{ResumeToken: end.GetResumeToken()})
	if started := w.mustNext().GetStarted(); started == nil || started.GetRevision() != end.GetRevision() {
		t.Fatalf("resumed watch: first frame %v, want started at revision %d", started, end.GetRevision())
	}
	select {
	case c := <-calls:
		if c.rev != end.GetRevision() || !c.hasDeadline {
			t.Errorf("awaited revision %d (deadline %v), want %d with a deadline", c.rev, c.hasDeadline, end.GetRevision())
		}
	default:
		t.Fatal("the resumed watch started without awaiting its token's revision")
	}
}
