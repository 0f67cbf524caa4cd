package replica

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"callcontrold/callstore"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/pbx"
)

// dyingLeader is a seam into a leader's unary calls that plays its death
// around a request: a request_id starting with "lost-" is applied (the
// handler returns once the log acknowledged and applied it) and its
// answer is kept here instead of sent, as when the leader dies right
// after the append; one starting with "unsent-" never reaches the
// switch, as when the leader dies before it acts. The client sees
// UNAVAILABLE either way and retries.
type dyingLeader struct {
	mu   sync.Mutex
	lost map[string]any // request_id → the answer the client never got
}

func (d *dyingLeader) wrap(next grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		r, ok := req.(interface{ GetRequestId() string })
		if !ok {
			return next(ctx, req, info, handler)
		}
		id := r.GetRequestId()
		switch {
		case strings.HasPrefix(id, "unsent-"):
			return nil, status.Error(codes.Unavailable, "test: the leader died before it acted")
		case strings.HasPrefix(id, "lost-"):
			resp, err := next(ctx, req, info, handler)
			if err != nil {
				return nil, err
			}
			// The answer as its client would have read it: a control
			// response leaves the handler as bytes (its fields are the
			// message's unknown fields until it is marshalled).
			if resp, err = onWire(resp); err != nil {
				return nil, status.Errorf(codes.Internal, "test: the answer does not go through the wire: %v", err)
			}
			d.mu.Lock()
			d.lost[id] = resp
			d.mu.Unlock()
			return nil, status.Error(codes.Unavailable, "test: the leader died before it answered")
		}
		return next(ctx, req, info, handler)
	}
}

// onWire returns m marshalled and decoded again, as a client reads it.
func onWire(m any) (any, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a message", m)
	}
	b, err := proto.Marshal(pm)
	if err != nil {
		return nil, err
	}
	out := pm.ProtoReflect().New().Interface()
	return out, proto.Unmarshal(b, out)
}

func (d *dyingLeader) answer(id string) any {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lost[id]
}

// TestRetryAfterFailover: requests the leader applied but never answered
// (it died right after the log took them: a Hold, a Dial, a Xfer),
// retried with the same request_id on the next leader, get the first
// answer (a Dial: its call) and are in the log once; a request the dead
// leader never acted on is applied once by the next; a request_id reused
// for another request is refused, before and after its retry.
func TestRetryAfterFailover(t *testing.T) {
	nc := startNATSCluster(t, 3)
	d := &dyingLeader{lost: map[string]any{}}
	a := startReplicaForward(t, nc.url(), "a", nil, d.wrap)
	waitLeader(t, a)
	b := startReplica(t, nc.url(), "b")
	keepTalking(t, a) // SIP/201_2 talks to SIP/202: the next leader keeps it
	caller := a.node.Store().ByDevice("SIP/201_2")[0].UID

	hold := &callcontrolv1.HoldRequest{Uid: caller, RequestId: "lost-hold"}
	if _, err := a.calls().Hold(as("alice"), hold); status.Code(err) != codes.Unavailable {
		t.Fatalf("Hold through the dying leader: %v, want the answer lost (UNAVAILABLE)", err)
	}
	dial := &callcontrolv1.DialRequest{Device: "SIP/201", Number: "203", RequestId: "lost-dial"}
	if _, err := a.calls().Dial(as("alice"), dial); status.Code(err) != codes.Unavailable {
		t.Fatalf("Dial through the dying leader: %v, want the answer lost (UNAVAILABLE)", err)
	}
	// bob talks to the acme front desk and blind-transfers it to 303.
	bobs, err := a.calls().Dial(as("bob"), &callcontrolv1.DialRequest{Device: "SIP/webrtc11", Number: "302"})
	if err != nil {
		t.Fatal(err)
	}
	desk := a.node.Store().ByDevice("SIP/302")[0].UID
	if _, err := a.calls().Talk(as("acme-admin"), &callcontrolv1.TalkRequest{Uid: desk}); err != nil {
		t.Fatal(err)
	}
	xfer := &callcontrolv1.XferRequest{Uid: bobs.GetCall().GetUid(), Number: "303", RequestId: "lost-xfer"}
	if _, err := a.calls().Xfer(as("bob"), xfer); status.Code(err) != codes.Unavailable {
		t.Fatalf("Xfer through the dying leader: %v, want the answer lost (UNAVAILABLE)", err)
	}
	talk := &callcontrolv1.TalkRequest{Uid: caller, RequestId: "unsent-talk"}
	if _, err := a.calls().Talk(as("alice"), talk); status.Code(err) != codes.Unavailable {
		t.Fatalf("Talk through the dying leader: %v, want UNAVAILABLE", err)
	}
	a.stop(false) // the leader dies
	waitLeader(t, b)

	got, err := b.calls().Hold(as("alice"), hold)
	if err != nil {
		t.Fatalf("Hold retried on the next leader: %v", err)
	}
	if want := d.answer("lost-hold").(*callcontrolv1.HoldResponse); !proto.Equal(got, want) {
		t.Errorf("Hold retried on the next leader answers\n%v\nthe first answer was\n%v", got, want)
	}
	gotXfer, err := b.calls().Xfer(as("bob"), xfer)
	if err != nil {
		t.Fatalf("Xfer retried on the next leader: %v", err)
	}
	if want := d.answer("lost-xfer").(*callcontrolv1.XferResponse); !proto.Equal(gotXfer, want) || want.GetTransferredCall() == nil {
		t.Errorf("Xfer retried on the next leader answers\n%v\nthe first answer was\n%v", gotXfer, want)
	}
	// The same request_id for another request is refused, as the
	// request_id cache refuses it, and not remembered as the answer to
	// the request_id: the original request's retry after it still gets
	// its answer.
	otherDial := &callcontrolv1.DialRequest{Device: "SIP/201", Number: "202", RequestId: "lost-dial"}
	if _, err := b.calls().Dial(as("alice"), otherDial); !isReason(err, codes.InvalidArgument, "REQUEST_ID_REUSED") {
		t.Errorf("Dial with a reused request_id on the next leader: %v, want INVALID_ARGUMENT REQUEST_ID_REUSED", err)
	}
	gotDial, err := b.calls().Dial(as("alice"), dial)
	if err != nil {
		t.Fatalf("Dial retried on the next leader: %v", err)
	}
	if want := d.answer("lost-dial").(*callcontrolv1.DialResponse); gotDial.GetCall().GetUid() != want.GetCall().GetUid() {
		t.Errorf("Dial retried on the next leader answers call %d, the first answer was call %d", gotDial.GetCall().GetUid(), want.GetCall().GetUid())
	}
	for range 2 { // the first try never acted: the next leader does, once
		resp, err := b.calls().Talk(as("alice"), talk)
		if err != nil || resp.GetCall().GetState() != callcontrolv1.State_STATE_UP || resp.GetAlreadyApplied() {
			t.Fatalf("Talk on the next leader: %v, %v; want the call up, applied now", resp, err)
		}
	}
	// Refused too once the request_id cache holds the original.
	other := &callcontrolv1.HoldRequest{Uid: caller + 1, RequestId: "lost-hold"}
	_, err = b.calls().Hold(as("alice"), other)
	if !isReason(err, codes.InvalidArgument, "REQUEST_ID_REUSED") {
		t.Errorf("Hold with a reused request_id on the next leader: %v, want INVALID_ARGUMENT REQUEST_ID_REUSED", err)
	}

	counts := map[string]int{}
	for _, e := range readLog(t, nc.url()) {
		if e.request != "" {
			counts[e.request]++
		}
	}
	for _, r := range []string{"Hold/lost-hold", "Dial/lost-dial", "Xfer/lost-xfer", "Talk/unsent-talk"} {
		if counts[r] != 1 {
			t.Errorf("the log holds %s %d times, want once (all: %v)", r, counts[r], counts)
		}
	}
}

// isReason reports whether err is a status with code c and ErrorInfo
// reason.
func isReason(err error, c codes.Code, reason string) bool {
	st := status.Convert(err)
	if st.Code() != c {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == reason {
			return true
		}
	}
	return false
}

// TestRequestIndexBounds: the index keeps a request for the TTL after its
// revision's time and at most max of them, the oldest going first; the
// first revision that applied a request stays its answer.
func TestRequestIndexBounds(t *testing.T) {
	x := newRequestIndex(time.Minute, 2)
	t0 := time.Now()
	req := func(id string) *pbx.Request { return &pbx.Request{Principal: "alice", Method: "Hold", ID: id} }
	x.add(req("1"), 1, t0, []callstore.Change{newLeg(1)})
	x.add(req("1"), 5, t0, []callstore.Change{newLeg(5)})
	if a, ok := x.lookup("alice", "Hold", "1"); !ok || a.Revision != 1 || a.Changes[0].Call.UID != 1 {
		t.Fatalf("lookup 1: %+v, %v; want revision 1", a, ok)
	}
	if _, ok := x.lookup("bob", "Hold", "1"); ok {
		t.Error("another principal's request_id found")
	}
	if _, ok := x.lookup("alice", "Talk", "1"); ok {
		t.Error("another method's request_id found")
	}
	x.add(nil, 2, t0, []callstore.Change{newLeg(2)}) // a revision without a request
	x.add(req("3"), 3, t0, nil)
	x.add(req("4"), 4, t0, nil) // over the bound: 1 goes
	if _, ok := x.lookup("alice", "Hold", "1"); ok {
		t.Error("the oldest request outlived the bound")
	}
	if _, ok := x.lookup("alice", "Hold", "4"); !ok {
		t.Error("the newest request is missing")
	}
	x.add(req("6"), 6, t0.Add(2*time.Minute), nil) // 3 and 4 are past their TTL
	if _, ok := x.lookup("alice", "Hold", "3"); ok {
		t.Error("a request outlived its TTL")
	}
	if len(x.order) != 1 || len(x.entries) != 1 {
		t.Errorf("the index holds %d, %d entries after the TTL, want 1", len(x.order), len(x.entries))
	}
	old := newRequestIndex(time.Minute, 10)
	old.add(req("7"), 7, t0.Add(-2*time.Minute), nil) // applied long ago (a replica catching up)
	if _, ok := old.lookup("alice", "Hold", "7"); ok {
		t.Error("a request whose revision is older than the TTL is answered")
	}
}
