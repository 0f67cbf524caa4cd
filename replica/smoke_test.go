package replica

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// TestForwardedDial: a Dial sent to a follower runs on the leader, the
// follower answers once its own store has it, and both stores agree.
func TestForwardedDial(t *testing.T) {
	nc := startNATSCluster(t, 3)
	a := startReplica(t, nc.url(), "a")
	b := startReplica(t, nc.url(), "b")
	leader := waitLeader(t, a, b)
	follower := a
	if leader == a {
		follower = b
	}
	resp, err := follower.calls().Dial(as("alice"), &callcontrolv1.DialRequest{Device: "SIP/201", Number: "202"})
	if err != nil {
		t.Fatalf("Dial on the follower: %v", err)
	}
	uid := resp.GetCall().GetUid()
	got, err := follower.calls().GetCall(as("alice"), &callcontrolv1.GetCallRequest{Uid: uid})
	if err != nil {
		t.Fatalf("GetCall on the follower right after: %v", err)
	}
	if got.GetCall().GetState() != resp.GetCall().GetState() {
		t.Errorf("follower has call %d in state %v, the leader answered %v", uid, got.GetCall().GetState(), resp.GetCall().GetState())
	}
	if lr, fr := leader.node.Store().Revision(), follower.node.Store().Revision(); lr != fr {
		t.Errorf("leader at revision %d, follower at %d", lr, fr)
	}
	metrics := []struct {
		name      string
		got, want float64
	}{
		{"leader's leader gauge", testutil.ToFloat64(leader.node.m.leader), 1},
		{"follower's leader gauge", testutil.ToFloat64(follower.node.m.leader), 0},
		{"follower's forwarded OK", testutil.ToFloat64(follower.node.m.forwarded.WithLabelValues("OK")), 1},
		{"follower's applied revision", testutil.ToFloat64(follower.node.m.revision), float64(follower.node.Store().Revision())},
		{"follower's lag in revisions", testutil.ToFloat64(follower.node.m.lagRevisions), 0},
	}
	for _, m := range metrics {
		if m.got != m.want {
			t.Errorf("%s = %v, want %v", m.name, m.got, m.want)
		}
	}
	var h dto.Metric
	if err := leader.node.m.appendSeconds.Write(&h); err != nil || int64(h.GetHistogram().GetSampleCount()) != leader.node.Store().Revision() {
		t.Errorf("leader's append latency samples = %d (%v), want %d: it appended every revision", h.GetHistogram().GetSampleCount(), err, leader.node.Store().Revision())
	}
}
