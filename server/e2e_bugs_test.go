package server_test

import (
	"os"
	"testing"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// knownBug skips a test that shows an open bug, so that the suite stays
// green; CALLCONTROLD_KNOWN_BUGS=1 runs it (and it fails until fixed).
func knownBug(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("CALLCONTROLD_KNOWN_BUGS") == "" {
		t.Skipf("known bug (run with CALLCONTROLD_KNOWN_BUGS=1): %s", what)
	}
}

// xfer_data names every leg of the new bridge, whoever watches: bob (user
// of acme) learns the uid, id and device of alice's leg on SIP/201 in
// company default, a call he may not see (GetCall says NOT_FOUND). qcall
// is hidden in that case; xfer_data should be too.
func TestBugXferDataNamesInvisibleCalls(t *testing.T) {
	knownBug(t, "xfer_data reveals calls the watcher may not see")
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
