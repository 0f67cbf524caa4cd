package server_test

import (
	"testing"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// xfer_data names the legs of the new bridge, but only those the watcher
// may see: bob (user of acme) must not learn the uid, id and device of
// alice's leg on SIP/201 in company default (GetCall says NOT_FOUND), just
// as qcall is hidden from a viewer without access.
func TestXferDataHidesInvisibleCalls(t *testing.T) {
	h := newHarness(t)
	bob := h.watch("bob", &callcontrolv1.WatchCallsRequest{})
	bob.start()
	_, b1, _ := connect(h, "alice", "SIP/201", "202", "admin", "SIP/202")
	h.hold("admin", b1.GetUid())
	b2 := h.dialCall("admin", "SIP/202", "301")
	h.talk("bob", h.on("SIP/webrtc11").GetUid())
	if _, err := h.as("admin").calls.AtXfer(h.ctx(), &callcontrolv1.AtXferRequest{Uid: b1.GetUid(), TargetUid: b2.GetUid()}); err != nil {
		t.Fatal(err)
	}
	for _, b := range bob.until(h.store.Revision()) {
		for _, e := range b.GetEvents() {
			for _, ref := range e.GetCall().GetXferData().GetCalls() {
				if _, err := h.as("bob").calls.GetCall(h.ctx(), &callcontrolv1.GetCallRequest{Uid: ref.GetUid()}); err != nil {
					t.Errorf("r%d: bob's %s event names call %d on %s in xfer_data; GetCall: %v",
						b.GetRevision(), typeNames[e.GetType()], ref.GetUid(), ref.GetDevice(), err)
				}
			}
		}
	}
}
