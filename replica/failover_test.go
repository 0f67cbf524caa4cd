package replica

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// TestFailover runs three NATS nodes and three replicas with traffic and
// watchers on every replica, kills the leader replica, kills a NATS node,
// restarts both, and then checks every watcher's history against the
// stream: each is a gap-free, duplicate-free run of the one log, across
// resumes on other replicas; and every control RPC that succeeded is in
// the log.
func TestFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-node cluster failover takes about a minute")
	}
	nc := startNATSCluster(t, 3)
	url := nc.url()
	ids := []string{"r0", "r1", "r2"}
	rs := make([]*testReplica, 3)
	for i, id := range ids {
		rs[i] = startReplica(t, url, id)
	}
	cl := &cluster{rs: rs}
	first := waitLeader(t, rs...)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { // also when a check below ends the test early
		cancel()
		wg.Wait()
	}()
	var watchers []*watchLog
	for i := range rs { // two watchers per replica
		for range 2 {
			w := &watchLog{home: i}
			watchers = append(watchers, w)
			wg.Add(1)
			go func() { defer wg.Done(); w.run(ctx, cl) }()
		}
	}
	ok := &okLog{}
	traffic := []struct{ device, number string }{{"SIP/201", "203"}, {"SIP/201_2", "202"}, {"SIP/202", "303"}}
	owners := []string{"alice", "alice", "admin"}
	for i := range rs {
		wg.Add(1)
		go func() { defer wg.Done(); dialLoop(ctx, cl, i, owners[i], traffic[i].device, traffic[i].number, ok) }()
	}

	waitRevision(t, first, 20)
	// 1. The leader replica dies: no step-down, its lease must expire.
	dead := slices.Index(rs, first)
	cl.stop(dead, false)
	second := waitLeader(t, rs...)
	waitRevision(t, second, first.lastRev+20)
	// 2. One NATS node dies; the stream (R3) keeps a quorum.
	nc.kill(1)
	waitRevision(t, second, second.node.Store().Revision()+20)
	// 3. Both come back: the replica catches up before it serves.
	nc.restart(1)
	cl.start(t, dead, url, ids[dead])
	// A watcher resumes on the rejoined replica from an early token.
	original := len(watchers)
	rejoined := &watchLog{home: dead, token: watchers[0].firstToken, start: watchers[0].firstRev}
	watchers = append(watchers, rejoined)
	wg.Add(1)
	go func() { defer wg.Done(); rejoined.run(ctx, cl) }()
	waitRevision(t, second, second.node.Store().Revision()+20)
	for deadline := time.Now().Add(30 * time.Second); rejoined.got.Load() < 10; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the watcher resumed on the rejoined replica got %d batches", rejoined.got.Load())
		}
	}

	cancel()
	wg.Wait()
	log := readLog(t, url)
	for _, r := range cl.live() {
		waitRevision(t, r, int64(len(log)))
	}
	checkLog(t, log)
	for i, w := range watchers {
		checkWatcher(t, fmt.Sprintf("watcher %d (home r%d, resumed %d times)", i, w.home, w.resumes), w, log)
	}
	checkOK(t, ok, log)
	for i, w := range watchers[:original] {
		if w.home == dead && w.resumes == 0 {
			t.Errorf("watcher %d was on the dead replica r%d but never resumed elsewhere", i, dead)
		}
	}
	terms := map[uint64]bool{}
	for _, e := range log {
		terms[e.term] = true
	}
	if len(terms) < 2 {
		t.Errorf("the log has %d leader terms, want at least 2 (a takeover)", len(terms))
	}
	t.Logf("log: %d revisions; %d successful control RPCs; leaders %s then %s", len(log), len(ok.calls), first.id, second.id)
}

// cluster is the test's replicas, some of which may be down.
type cluster struct {
	mu sync.Mutex
	rs []*testReplica // nil while down
}

func (c *cluster) get(i int) *testReplica {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rs[i]
}

func (c *cluster) live() []*testReplica {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*testReplica
	for _, r := range c.rs {
		if r != nil {
			out = append(out, r)
		}
	}
	return out
}

func (c *cluster) stop(i int, clean bool) {
	c.mu.Lock()
	r := c.rs[i]
	c.rs[i] = nil
	c.mu.Unlock()
	r.lastRev = r.node.Store().Revision()
	r.stop(clean)
}

func (c *cluster) start(t *testing.T, i int, url, id string) {
	r := startReplica(t, url, id)
	c.mu.Lock()
	c.rs[i] = r
	c.mu.Unlock()
}

func waitRevision(t *testing.T, r *testReplica, rev int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := r.node.AwaitRevision(ctx, rev); err != nil {
		t.Fatalf("replica %s stuck at revision %d, waiting for %d: %v", r.id, r.node.Store().Revision(), rev, err)
	}
}

// logEntry is one revision of the stream: "uid:state" per change.
type logEntry struct {
	rev     int64
	term    uint64
	leader  string
	request string // method/request_id of the request the revision applied, if any
	changes []string
}

// openLog opens the log stream at url for a test's own reads, with its
// state now; done closes the connection.
func openLog(t *testing.T, url string) (ctx context.Context, st jetstream.Stream, info *jetstream.StreamInfo, done func()) {
	t.Helper()
	conn, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	done = func() {
		cancel()
		conn.Close()
	}
	js, err := jetstream.New(conn)
	if err == nil {
		st, err = js.Stream(ctx, "CALLCONTROLD")
	}
	if err == nil {
		info, err = st.Info(ctx)
	}
	if err != nil {
		done()
		t.Fatal(err)
	}
	return ctx, st, info, done
}

func readLog(t *testing.T, url string) []logEntry {
	t.Helper()
	ctx, st, info, done := openLog(t, url)
	defer done()
	var out []logEntry
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("revision %d: %v", seq, err)
		}
		o, changes, err := decodeOp(m.Data)
		if err != nil {
			t.Fatalf("revision %d: %v", seq, err)
		}
		e := logEntry{rev: int64(seq), term: o.Term, leader: o.Leader}
		if r := o.Request; r != nil {
			e.request = r.Method + "/" + r.ID
		}
		for _, ch := range changes {
			e.changes = append(e.changes, fmt.Sprintf("%d:%s", ch.Call.UID, ch.Call.State))
		}
		out = append(out, e)
	}
	return out
}

// checkLog: terms never go back along the log, so two leaders never
// interleave in it.
func checkLog(t *testing.T, log []logEntry) {
	t.Helper()
	for i := 1; i < len(log); i++ {
		if log[i].term < log[i-1].term {
			t.Errorf("revision %d by %s (term %d) follows revision %d of term %d: two leaders interleaved", log[i].rev, log[i].leader, log[i].term, log[i-1].rev, log[i-1].term)
		}
	}
}

// watchLog is one admin watcher's history, kept across resumes.
type watchLog struct {
	home    int
	start   int64 // the revision the first watch started at
	batches []logEntry
	token   string
	resumes int
	// The token and revision of the first batch: another watcher resumes
	// from it on the rejoined replica.
	firstToken string
	firstRev   int64
	got        atomic.Int64 // batches received, for the test to wait on
	err        error        // an error no client should get (not UNAVAILABLE)
}

// run watches from the home replica, and on any break resumes with its
// last token on the next live replica, until ctx ends.
func (w *watchLog) run(ctx context.Context, cl *cluster) {
	for i := w.home; ctx.Err() == nil; i = (i + 1) % 3 {
		r := cl.get(i)
		if r == nil {
			continue
		}
		err := w.watch(ctx, r)
		if ctx.Err() != nil {
			return
		}
		if c := status.Code(err); c != codes.Unavailable && c != codes.Canceled {
			w.err = err
			return
		}
		w.resumes++
		time.Sleep(20 * time.Millisecond)
	}
}

func (w *watchLog) watch(ctx context.Context, r *testReplica) error {
	wctx, cancel := context.WithCancel(as("admin"))
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	defer cancel()
	req := &callcontrolv1.WatchCallsRequest{ResumeToken: w.token, SkipSnapshot: true}
	stream, err := r.calls().WatchCalls(wctx, req)
	if err != nil {
		return err
	}
	for {
		f, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return status.Error(codes.Unavailable, "stream ended")
			}
			return err
		}
		switch {
		case f.GetStarted() != nil && w.token == "":
			w.start = f.GetStarted().GetRevision()
		case f.GetEvents() != nil:
			b := f.GetEvents()
			e := logEntry{rev: b.GetRevision()}
			for _, ev := range b.GetEvents() {
				st := strings.ToLower(strings.TrimPrefix(ev.GetCall().GetState().String(), "STATE_"))
				e.changes = append(e.changes, fmt.Sprintf("%d:%s", ev.GetCall().GetUid(), st))
			}
			w.batches = append(w.batches, e)
			w.got.Add(1)
			w.token = b.GetResumeToken()
			if w.firstToken == "" {
				w.firstToken, w.firstRev = w.token, e.rev
			}
		case f.GetProgress() != nil:
			w.token = f.GetProgress().GetResumeToken()
		}
	}
}

func checkWatcher(t *testing.T, name string, w *watchLog, log []logEntry) {
	t.Helper()
	if w.err != nil {
		t.Errorf("%s: %v", name, w.err)
	}
	if len(w.batches) < 10 {
		t.Errorf("%s: only %d batches", name, len(w.batches))
	}
	next := w.start + 1
	for _, b := range w.batches {
		if b.rev != next {
			t.Errorf("%s: got revision %d, want %d (gap or duplicate)", name, b.rev, next)
			return
		}
		if b.rev > int64(len(log)) {
			t.Errorf("%s: revision %d is not in the log (%d revisions)", name, b.rev, len(log))
			return
		}
		if want := log[b.rev-1].changes; !slices.Equal(b.changes, want) {
			t.Errorf("%s: revision %d: got %v, the log has %v", name, b.rev, b.changes, want)
			return
		}
		next++
	}
}

// okLog records "uid:state" of every call a control RPC returned with
// success.
type okLog struct {
	mu    sync.Mutex
	calls []string
}

func (o *okLog) add(c *callcontrolv1.Call) {
	st := strings.ToLower(strings.TrimPrefix(c.GetState().String(), "STATE_"))
	o.mu.Lock()
	o.calls = append(o.calls, fmt.Sprintf("%d:%s", c.GetUid(), st))
	o.mu.Unlock()
}

func checkOK(t *testing.T, ok *okLog, log []logEntry) {
	t.Helper()
	in := map[string]bool{}
	for _, e := range log {
		for _, c := range e.changes {
			in[c] = true
		}
	}
	for _, c := range ok.calls {
		if !in[c] {
			t.Errorf("a control RPC returned call %s with success, but the log never had it", c)
		}
	}
	if len(ok.calls) < 20 {
		t.Errorf("only %d control RPCs succeeded", len(ok.calls))
	}
}

// dialLoop dials from device and hangs up, over and over, on replica i
// (or the next live one), until ctx ends; it keeps retrying the hangup of
// calls a failover interrupted.
func dialLoop(ctx context.Context, cl *cluster, i int, login, device, number string, ok *okLog) {
	var open []int64
	for n := 0; ctx.Err() == nil; n++ {
		r := cl.get(i)
		for j := 1; r == nil; j++ {
			r = cl.get((i + j) % 3)
		}
		cc := r.calls()
		rctx, rcancel := context.WithTimeout(as(login), 10*time.Second) // no RPC may stall the loop
		open = slices.DeleteFunc(open, func(uid int64) bool {
			resp, err := cc.Hangup(rctx, &callcontrolv1.HangupRequest{Uid: uid})
			if err == nil {
				ok.add(resp.GetCall())
			}
			return err == nil || status.Code(err) == codes.NotFound
		})
		resp, err := cc.Dial(rctx, &callcontrolv1.DialRequest{Device: device, Number: number, RequestId: fmt.Sprintf("%s-%d", device, n)})
		rcancel()
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		ok.add(resp.GetCall())
		open = append(open, resp.GetCall().GetUid())
		time.Sleep(5 * time.Millisecond)
	}
}
