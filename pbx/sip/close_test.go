package sip

import (
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"callcontrold/callstore"
	"callcontrold/directory"
)

// TestCloseEndsUnansweredInvites: closing the switch while it rings a
// phone for a phone's call sends that phone CANCEL (it stops ringing
// now, not at its own timeout), and the caller's own unanswered INVITE
// gets 503 rather than silence.
func TestCloseEndsUnansweredInvites(t *testing.T) {
	dir := directory.Demo()
	store := callstore.New(callstore.Options{})
	t.Cleanup(store.Close)
	sw, err := NewSwitch(dir, store, Config{Addr: "127.0.0.1:0", Logger: quietLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = sw.Close()
		}
	})
	by := registerAll(t, sw, dir)
	callee := by["SIP/202"]
	_, done := by["SIP/201"].call("202")
	var ringing string
	until(t, "SIP/202 rings", func() bool {
		callee.mu.Lock()
		defer callee.mu.Unlock()
		for id := range callee.ringing {
			ringing = id
		}
		return ringing != ""
	})
	if err := sw.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	closed = true
	select {
	case id := <-callee.cancels:
		if id != ringing {
			t.Errorf("CANCEL for call %s, want the ringing %s", id, ringing)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the ringing phone got no CANCEL")
	}
	if err := outcome(t, done); statusOfErr(err) != sipmsg.StatusServiceUnavailable {
		t.Errorf("the caller's INVITE ended with %v, want 503", err)
	}
}
