package server_test

import (
	"testing"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// A held call that ends, seen through a state filter: the view is the
// filter applied to the call before and after the change, so a watch on
// HOLD sees the call LEAVE (with its DEAD value and cause), while a watch
// whose filter lets DEAD through (none, or HOLD and DEAD) sees it STAY.
// Either way the DEAD event is the call's last: a wallboard of held calls
// drops a call on LEFT or on DEAD, one rule for every filter.
func TestHeldCallEndsUnderStateFilter(t *testing.T) {
	h := newHarness(t)
	hold, dead := callcontrolv1.State_STATE_HOLD, callcontrolv1.State_STATE_DEAD
	watches := []struct {
		name   string
		states []callcontrolv1.State
		want   []string
	}{
		{"hold", []callcontrolv1.State{hold}, []string{"UPDATE SIP/201 hold #1 entered", "UPDATE SIP/201 dead #1 left cause=16"}},
		{"hold+dead", []callcontrolv1.State{hold, dead}, []string{"UPDATE SIP/201 hold #1 entered", "UPDATE SIP/201 dead #1 stayed cause=16"}},
		{"device", nil, []string{"UPDATE SIP/201 hold #1 stayed", "UPDATE SIP/201 dead #1 stayed cause=16"}},
	}
	ws := make([]*watcher, len(watches))
	for i, tc := range watches {
		ws[i] = h.watch("alice", &callcontrolv1.WatchCallsRequest{Filter: &callcontrolv1.CallFilter{Devices: []string{"SIP/201"}, States: tc.states}})
		ws[i].start()
	}
	a, _, _ := connect(h, "alice", "SIP/201", "301", "bob", "SIP/webrtc11")
	start := h.store.Revision()
	h.hold("alice", a.GetUid())
	h.hangup("alice", a.GetUid())
	final := h.store.Revision()
	for i, tc := range watches {
		var got []string
		for _, b := range ws[i].until(final) {
			if b.GetRevision() <= start {
				continue
			}
			for _, e := range b.GetEvents() {
				got = append(got, eventString(e.GetType(), e.GetView(), e.GetCall()))
			}
		}
		if d := diffLines(got, tc.want); d != "" {
			t.Errorf("%s: events after the call was up:\n%s", tc.name, d)
		}
	}
}
