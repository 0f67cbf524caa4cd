package replica

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"callcontrold/callstore"
	"callcontrold/directory"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/pbx"
)

// TestOpenUnreachable: with no NATS at the URL, Open fails at once with
// an error that names the URL.
func TestOpenUnreachable(t *testing.T) {
	url := "nats://127.0.0.1:1"
	cfg := replicaConfig(url, "x", "127.0.0.1:1", directory.Demo())
	cfg.ConnectTimeout = 2 * time.Second
	_, err := Open(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), url) {
		t.Fatalf("Open with no NATS: err = %v, want one naming %s", err, url)
	}
}

// TestNATSLost: when every NATS server goes away, control RPCs fail with
// UNAVAILABLE and apply nothing; a watch on the replica goes on; when
// NATS is back, a leader serves again and the watch resumes with its
// token, with no gap.
func TestNATSLost(t *testing.T) {
	nc := startNATSCluster(t, 3)
	r := startReplica(t, nc.url(), "solo")
	waitLeader(t, r)
	calls := r.calls()
	if _, err := calls.Dial(as("alice"), &callcontrolv1.DialRequest{Device: "SIP/201", Number: "202"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(as("admin"))
	defer cancel()
	stream, err := calls.WatchCalls(ctx, &callcontrolv1.WatchCallsRequest{SkipSnapshot: true})
	if err != nil {
		t.Fatal(err)
	}
	f, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	before := r.node.Store().Revision()
	if got := f.GetStarted().GetRevision(); got != before {
		t.Fatalf("watch started at %d, store at %d", got, before)
	}

	for i := range nc.servers {
		nc.kill(i)
	}
	dctx, dcancel := context.WithTimeout(as("alice"), 30*time.Second)
	_, err = calls.Dial(dctx, &callcontrolv1.DialRequest{Device: "SIP/201", Number: "203"})
	dcancel()
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Dial with NATS gone: %v, want UNAVAILABLE", err)
	}
	if got := r.node.Store().Revision(); got != before {
		t.Errorf("store moved from %d to %d while NATS was gone", before, got)
	}
	// The watch is still there: reads and watches are local.
	if _, err := calls.ListCalls(as("admin"), &callcontrolv1.ListCallsRequest{}); err != nil {
		t.Errorf("ListCalls with NATS gone: %v", err)
	}

	for i := range nc.servers {
		nc.restart(i)
	}
	nc.waitMetaLeader()
	waitLeader(t, r)
	// The new term ends the legs the old one held (cause 41), and the
	// watch, still open, sees it as the next revision.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		f, err := stream.Recv()
		if err != nil {
			t.Fatalf("watch broke: %v", err)
		}
		if b := f.GetEvents(); b != nil {
			if b.GetRevision() != before+1 {
				t.Fatalf("first revision after the outage is %d, want %d", b.GetRevision(), before+1)
			}
			for _, ev := range b.GetEvents() {
				if ev.GetCall().GetCause() != 41 {
					t.Errorf("leg %d ended with cause %d, want 41", ev.GetCall().GetUid(), ev.GetCall().GetCause())
				}
			}
			return
		}
	}
	t.Fatal("no revision after NATS came back")
}

// TestDeposedLeaderCannotAppend: a leader that was replaced while its own
// clock still trusts its lease cannot append: neither at a sequence the
// new leader took (the stream refuses it) nor after the new leader's
// revisions (the replica saw a newer term). The log's terms never go back.
func TestDeposedLeaderCannotAppend(t *testing.T) {
	nc := startNATSCluster(t, 3)
	a := startReplica(t, nc.url(), "a")
	waitLeader(t, a)
	if _, err := a.calls().Dial(as("alice"), &callcontrolv1.DialRequest{Device: "SIP/201", Number: "202"}); err != nil {
		t.Fatal(err)
	}
	// a stops renewing (a stalled process) and its lease goes: b takes
	// over and ends a's calls, while a still holds its old term.
	a.node.stop()
	<-a.node.done
	a.node.mu.Lock()
	old := a.node.leading
	old.until = time.Now().Add(time.Hour) // a's clock trusts its lease
	a.node.mu.Unlock()
	appendOld := a.node.appender(old)
	if err := a.node.kv.Purge(context.Background(), leaseKey); err != nil {
		t.Fatal(err)
	}
	b := startReplica(t, nc.url(), "b")
	waitLeader(t, b)
	waitRevision(t, b, 2) // the dial, then b's end of a's calls
	waitRevision(t, a, 2)

	c := &callstore.Call{UID: 1000, ID: "x", DeviceRef: &callstore.DeviceRef{Device: "SIP/202"}, State: callstore.StateRing, NRState: callstore.NRRinging}
	// Refused at once (the replica saw the newer term) or by the stream
	// (it expects a revision that is no longer the last): either way the
	// operation fails UNAVAILABLE.
	_, err := appendOld(callstore.Change{Type: callstore.EventNew, Call: c})
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = old.log.sync(ctx)
		cancel()
	}
	if !errors.Is(err, pbx.ErrUnavailable) {
		t.Fatalf("the deposed leader's append: %v, want ErrUnavailable", err)
	}
	log := readLog(t, nc.url())
	checkLog(t, log)
	for _, e := range log {
		if slices.Contains(e.changes, "1000:ring") {
			t.Errorf("revision %d holds the deposed leader's append", e.rev)
		}
	}
}

// TestCorruptLogStopsReplica: a message no replica can apply stops the
// replica (Failed, Err) and ends its term; it does not apply anything
// after it.
func TestCorruptLogStopsReplica(t *testing.T) {
	nc := startNATSCluster(t, 3)
	r := startReplica(t, nc.url(), "r")
	waitLeader(t, r)
	conn, err := nats.Connect(nc.url())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Publish(r.node.subject, []byte("not an operation")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.node.Failed():
	case <-time.After(30 * time.Second):
		t.Fatal("the replica applied past a corrupt message")
	}
	if err := r.node.Err(); err == nil || !strings.Contains(err.Error(), "malformed") {
		t.Errorf("Err() = %v, want the malformed message named", err)
	}
	if r.node.Leading() {
		t.Error("a replica that cannot apply the log still leads")
	}
	if _, err := r.calls().Dial(as("alice"), &callcontrolv1.DialRequest{Device: "SIP/201", Number: "202"}); status.Code(err) != codes.Unavailable {
		t.Errorf("Dial on the stopped replica: %v, want UNAVAILABLE", err)
	}
}

// TestTakeoverKeepsTalkingCalls: when the leader dies, the call between
// two phones that were talking goes on under the new leader, which can
// control it; the call that was still ringing ends with cause 41.
func TestTakeoverKeepsTalkingCalls(t *testing.T) {
	nc := startNATSCluster(t, 3)
	a := startReplica(t, nc.url(), "a")
	waitLeader(t, a)
	b := startReplica(t, nc.url(), "b")
	caller, err := b.calls().Dial(as("alice"), &callcontrolv1.DialRequest{Device: "SIP/201", Number: "202"})
	if err != nil {
		t.Fatal(err)
	}
	legs := b.node.Store().ByDevice("SIP/202")
	if len(legs) != 1 {
		t.Fatalf("SIP/202 has %d legs", len(legs))
	}
	if _, err := b.calls().Talk(as("admin"), &callcontrolv1.TalkRequest{Uid: legs[0].UID}); err != nil {
		t.Fatal(err)
	}
	ringing, err := b.calls().Dial(as("alice"), &callcontrolv1.DialRequest{Device: "SIP/201_2", Number: "203"})
	if err != nil {
		t.Fatal(err)
	}
	a.stop(false) // the leader dies
	waitLeader(t, b)
	st := b.node.Store()
	if c, ok := st.Get(caller.GetCall().GetUid()); !ok || c.State != callstore.StateUp {
		t.Fatalf("the talking call after the takeover: %v, %v; want up", c, ok)
	}
	if _, ok := st.Get(ringing.GetCall().GetUid()); ok {
		t.Errorf("the ringing call %d outlived its leader", ringing.GetCall().GetUid())
	}
	resp, err := b.calls().Hold(as("alice"), &callcontrolv1.HoldRequest{Uid: caller.GetCall().GetUid()})
	if err != nil || resp.GetCall().GetState() != callcontrolv1.State_STATE_HOLD {
		t.Fatalf("Hold on the kept call under the new leader: %v, %v", resp, err)
	}
}
