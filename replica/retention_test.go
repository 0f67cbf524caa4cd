package replica

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"callcontrold/directory"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// limitedLog is the test's retention: a stream of at most 100 revisions
// and a snapshot every 40.
func limitedLog(c *Config) { c.MaxRevisions, c.SnapshotEvery = 100, 40 }

// TestRetention runs a leader and two followers over a stream limited to
// 100 revisions. Follower b loses its only NATS server while the log
// moves 250 revisions on; follower c is stopped meanwhile and started
// again. Both come back through the newest snapshot and the tail: their
// stores equal the leader's. b's watcher, which cannot continue across
// the revisions b never saw, ends OUT_OF_RANGE (REVISION_COMPACTED) and
// re-snapshots; a watcher on the leader goes on throughout. Every
// watcher's events are checked against the leader's watcher, which is
// checked gap-free from revision 1 and against what the stream retains;
// a token older than the stream is refused on every replica, a newer one
// resumes on every replica.
func TestRetention(t *testing.T) {
	nc := startNATSCluster(t, 3)
	a := startReplicaWith(t, nc.url(), "a", limitedLog)
	waitLeader(t, a)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ref := startWatch(ctx, a, "")
	b := startReplicaWith(t, nc.nodeURL(2), "b", limitedLog)
	c := startReplicaWith(t, nc.url(), "c", limitedLog)
	wb := startWatch(ctx, b, "")
	keepTalking(t, a)
	moveLog(t, a, 30)
	waitRevision(t, b, a.node.Store().Revision())
	oldToken := ref.waitToken(t, 5)

	c.stop(true)
	nc.kill(2) // b's only NATS server: b falls behind while it runs
	behind := b.node.Store().Revision()
	moveLog(t, a, 250)
	if first := firstRetained(t, nc.url()); first <= behind+1 {
		t.Fatalf("the stream starts at revision %d: it still holds what b needs (%d), the test moved too little", first, behind+1)
	}
	nc.restart(2)
	c = startReplicaWith(t, nc.url(), "c", limitedLog) // joins from the newest snapshot
	last := a.node.Store().Revision()
	waitRevision(t, b, last)
	waitRevision(t, c, last)
	for _, r := range []*testReplica{b, c} {
		sameStore(t, r, a)
		if got := testutil.ToFloat64(r.node.m.snapshotsLoaded); got != 1 {
			t.Errorf("replica %s loaded %v snapshots, want 1", r.id, got)
		}
	}
	if got := testutil.ToFloat64(a.node.m.snapshotsWritten); got < 1 {
		t.Errorf("the leader wrote %v snapshots", got)
	}

	// b's watcher missed what b missed: OUT_OF_RANGE, and re-snapshots.
	wb.checkCompacted(t, "b's watcher")
	wb2 := startWatch(ctx, b, "")
	wb2.waitStarted(t)
	// A token older than the stream is refused everywhere, even on the
	// leader, whose own history still holds it.
	for _, r := range []*testReplica{a, b, c} {
		w := startWatch(ctx, r, oldToken)
		w.checkCompacted(t, "a token at revision 5 on "+r.id)
	}
	// A token the stream still holds resumes everywhere.
	recent := ref.waitToken(t, a.node.Store().Revision())
	var resumed []*watch
	for _, r := range []*testReplica{a, b, c} {
		resumed = append(resumed, startWatch(ctx, r, recent))
	}
	moveLog(t, a, 20)
	end := a.node.Store().Revision()
	ref.waitToken(t, end)
	log := ref.checkRun(t, "the leader's watcher", nil)
	if log[0].rev != 1 || log[len(log)-1].rev < end {
		t.Fatalf("the leader's watcher saw revisions %d..%d, want 1..%d", log[0].rev, log[len(log)-1].rev, end)
	}
	checkRetained(t, nc.url(), log)
	checkWatchSnapshot(t, wb2, log)
	wb.checkRun(t, "b's watcher before its gap", log)
	for i, w := range append(resumed, wb2) {
		w.waitToken(t, end)
		w.checkRun(t, fmt.Sprintf("watcher %d", i), log)
	}
}

// nodeURL is node i's client URL alone.
func (c *natsCluster) nodeURL(i int) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.opts[i].Port)
}

// keepTalking sets up a call between two phones that stays up: every
// snapshot then has live legs in it.
func keepTalking(t *testing.T, r *testReplica) {
	t.Helper()
	if _, err := r.calls().Dial(as("alice"), &callcontrolv1.DialRequest{Device: "SIP/201_2", Number: "202"}); err != nil {
		t.Fatal(err)
	}
	legs := r.node.Store().ByDevice("SIP/202")
	if len(legs) != 1 {
		t.Fatalf("SIP/202 has %d legs", len(legs))
	}
	if _, err := r.calls().Talk(as("admin"), &callcontrolv1.TalkRequest{Uid: legs[0].UID}); err != nil {
		t.Fatal(err)
	}
}

// moveLog dials and hangs up on the leader r until the log has moved at
// least n revisions on. An operation may meet UNAVAILABLE while the NATS
// cluster elects a new stream leader (a node was just killed): it is
// retried, the way a client would.
func moveLog(t *testing.T, r *testReplica, n int64) {
	t.Helper()
	target := r.node.Store().Revision() + n
	deadline := time.Now().Add(60 * time.Second)
	retry := func(what string, err error) {
		t.Helper()
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var open int64 // a dialled call whose hangup failed
	for r.node.Store().Revision() < target || open != 0 {
		if open != 0 {
			_, err := r.calls().Hangup(as("alice"), &callcontrolv1.HangupRequest{Uid: open})
			switch status.Code(err) {
			case codes.OK, codes.NotFound: // NotFound: a new term ended it
				open = 0
			default:
				retry("Hangup", err)
			}
			continue
		}
		resp, err := r.calls().Dial(as("alice"), &callcontrolv1.DialRequest{Device: "SIP/201", Number: "203"})
		if err != nil {
			retry("Dial", err)
			continue
		}
		open = resp.GetCall().GetUid()
	}
}

// sameStore waits until r's store is at leader's revision and checks they
// hold the same legs.
func sameStore(t *testing.T, r, leader *testReplica) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got, gotUID, grev := r.node.Store().Snapshot()
		want, _, wrev := leader.node.Store().Snapshot()
		if grev == wrev {
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("replica %s at revision %d (-leader +replica):\n%s", r.id, grev, d)
			}
			if len(got) == 0 {
				t.Errorf("replica %s: no live legs: the test's call is gone", r.id)
			}
			if maxUID := leader.node.Store().LastUID(); gotUID < maxUID {
				t.Errorf("replica %s would hand out uid %d, the leader has used up to %d", r.id, gotUID+1, maxUID)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s at revision %d, the leader at %d", r.id, grev, wrev)
		}
	}
}

// checkWatchSnapshot: w's snapshot holds the legs live at its revision,
// as the events of log (a run from revision 1) leave them.
func checkWatchSnapshot(t *testing.T, w *watch, log []logEntry) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	live := map[int64]string{}
	for _, e := range log[:w.start] {
		for _, ch := range e.changes {
			var uid int64
			var state string
			if _, err := fmt.Sscanf(strings.Replace(ch, ":", " ", 1), "%d %s", &uid, &state); err != nil {
				t.Fatalf("revision %d: change %q: %v", e.rev, ch, err)
			}
			if state == "dead" {
				delete(live, uid)
			} else {
				live[uid] = ch
			}
		}
	}
	var got []string
	for _, c := range w.snapshot {
		got = append(got, fmt.Sprintf("%d:%s", c.GetUid(), strings.ToLower(strings.TrimPrefix(c.GetState().String(), "STATE_"))))
	}
	want := slices.Sorted(maps.Values(live))
	slices.Sort(got)
	if len(want) == 0 || !slices.Equal(got, want) {
		t.Errorf("the re-snapshot at revision %d holds %v; the log leaves %v live", w.start, got, want)
	}
}

func firstRetained(t *testing.T, url string) int64 {
	t.Helper()
	info := streamInfo(t, url)
	return retainedFrom(&info.State)
}

func streamInfo(t *testing.T, url string) *jetstream.StreamInfo {
	t.Helper()
	_, _, info, done := openLog(t, url)
	done()
	return info
}

// checkRetained compares what the stream retains with log, the leader's
// watcher's run.
func checkRetained(t *testing.T, url string, log []logEntry) {
	t.Helper()
	ctx, st, info, done := openLog(t, url)
	defer done()
	if info.Config.MaxMsgs != 100 || info.State.Msgs > 100 {
		t.Errorf("the stream holds %d messages with a limit of %d, want at most 100", info.State.Msgs, info.Config.MaxMsgs)
	}
	for seq := info.State.FirstSeq; seq <= min(info.State.LastSeq, uint64(len(log))); seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("revision %d: %v", seq, err)
		}
		_, changes, err := decodeOp(m.Data)
		if err != nil {
			t.Fatalf("revision %d: %v", seq, err)
		}
		var got []string
		for _, ch := range changes {
			got = append(got, fmt.Sprintf("%d:%s", ch.Call.UID, ch.Call.State))
		}
		if !slices.Equal(log[seq-1].changes, got) {
			t.Fatalf("the stream's revision %d is %v; the leader's watcher did not see it so", seq, got)
		}
	}
}

// watch is one WatchCalls stream, recorded until it ends.
type watch struct {
	mu       sync.Mutex
	start    int64
	snapshot []*callcontrolv1.Call
	batches  []logEntry
	tokens   map[int64]string // revision → the token of its batch or progress frame
	err      error
	done     chan struct{}
}

// startWatch watches r as admin: from token, or from a snapshot if token
// is "".
func startWatch(ctx context.Context, r *testReplica, token string) *watch {
	w := &watch{tokens: map[int64]string{}, done: make(chan struct{}), start: -1}
	stream, err := r.calls().WatchCalls(withAdmin(ctx), &callcontrolv1.WatchCallsRequest{ResumeToken: token})
	if err != nil {
		w.err = err
		close(w.done)
		return w
	}
	go func() {
		defer close(w.done)
		for {
			f, err := stream.Recv()
			if err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
				return
			}
			w.record(f)
		}
	}()
	return w
}

func withAdmin(ctx context.Context) context.Context {
	out := as("admin")
	ctx, cancel := context.WithCancel(out)
	context.AfterFunc(ctx, cancel)
	return ctx
}

func (w *watch) record(f *callcontrolv1.WatchCallsResponse) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case f.GetStarted() != nil:
		w.start = f.GetStarted().GetRevision()
	case f.GetSnapshot() != nil:
		w.snapshot = append(w.snapshot, f.GetSnapshot().GetCalls()...)
	case f.GetSnapshotEnd() != nil:
		w.tokens[f.GetSnapshotEnd().GetRevision()] = f.GetSnapshotEnd().GetResumeToken()
	case f.GetEvents() != nil:
		b := f.GetEvents()
		e := logEntry{rev: b.GetRevision()}
		for _, ev := range b.GetEvents() {
			st := strings.ToLower(strings.TrimPrefix(ev.GetCall().GetState().String(), "STATE_"))
			e.changes = append(e.changes, fmt.Sprintf("%d:%s", ev.GetCall().GetUid(), st))
		}
		w.batches = append(w.batches, e)
		w.tokens[e.rev] = b.GetResumeToken()
	case f.GetProgress() != nil:
		w.tokens[f.GetProgress().GetRevision()] = f.GetProgress().GetResumeToken()
	}
}

// waitToken waits until w has a token at rev, and returns it.
func (w *watch) waitToken(t *testing.T, rev int64) string {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		w.mu.Lock()
		tok, err := w.tokens[rev], w.err
		w.mu.Unlock()
		switch {
		case tok != "":
			return tok
		case err != nil:
			t.Fatalf("the watch ended before revision %d: %v", rev, err)
		case time.Now().After(deadline):
			t.Fatalf("no token at revision %d", rev)
		}
	}
}

func (w *watch) waitStarted(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		w.mu.Lock()
		ok, err := len(w.tokens) > 0, w.err
		w.mu.Unlock()
		switch {
		case ok:
			return
		case err != nil:
			t.Fatalf("the watch ended at once: %v", err)
		case time.Now().After(deadline):
			t.Fatal("the watch sent no snapshot")
		}
	}
}

// checkCompacted: the watch ended OUT_OF_RANGE, REVISION_COMPACTED.
func (w *watch) checkCompacted(t *testing.T, name string) {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: still open, want OUT_OF_RANGE", name)
	}
	st := status.Convert(w.err)
	if st.Code() != codes.OutOfRange {
		t.Fatalf("%s: ended with %v, want OUT_OF_RANGE", name, w.err)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == "REVISION_COMPACTED" && info.GetMetadata()["oldest_revision"] != "" {
			return
		}
	}
	t.Errorf("%s: %v carries no REVISION_COMPACTED ErrorInfo with the oldest revision", name, w.err)
}

// checkRun checks that w's batches are one gap-free, duplicate-free run
// of revisions from its start, each as in log (if not nil), and returns
// them.
func (w *watch) checkRun(t *testing.T, name string, log []logEntry) []logEntry {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil && status.Code(w.err) != codes.OutOfRange && !errors.Is(w.err, io.EOF) {
		t.Errorf("%s: %v", name, w.err)
	}
	if len(w.batches) == 0 {
		t.Fatalf("%s: no events", name)
	}
	next := w.start + 1
	for _, b := range w.batches {
		if b.rev != next {
			t.Fatalf("%s: got revision %d, want %d (gap or duplicate)", name, b.rev, next)
		}
		if log != nil && (b.rev > int64(len(log)) || !slices.Equal(log[b.rev-1].changes, b.changes)) {
			t.Fatalf("%s: revision %d is %v, not as the leader's watcher saw it", name, b.rev, b.changes)
		}
		next++
	}
	return slices.Clone(w.batches)
}

func TestRetentionConfig(t *testing.T) {
	base := replicaConfig("nats://127.0.0.1:1", "x", "127.0.0.1:1", directory.Demo())
	cases := []struct {
		name string
		set  func(*Config)
		want string
	}{
		{"negative revisions", func(c *Config) { c.MaxRevisions = -1 }, "negative"},
		{"negative snapshot interval", func(c *Config) { c.SnapshotEvery = -1 }, "negative"},
		{"too few revisions", func(c *Config) { c.MaxRevisions = 10 }, "at least 100"},
		{"too short an age", func(c *Config) { c.MaxAge = time.Second }, "at least 1m"},
		{"too few bytes", func(c *Config) { c.MaxBytes = 1000 }, "at least 1048576"},
	}
	for _, tc := range cases {
		cfg := base
		tc.set(&cfg)
		if _, err := cfg.withDefaults(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	cfg, err := base.withDefaults()
	if err != nil || cfg.SnapshotEvery != DefaultSnapshotEvery {
		t.Errorf("defaults: SnapshotEvery %d, %v; want %d", cfg.SnapshotEvery, err, DefaultSnapshotEvery)
	}
}
