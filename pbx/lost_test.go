package pbx

import (
	"context"
	"testing"

	"callcontrold/callstore"
)

// TestLost: a leg whose phone vanished ends with the driver's cause even
// when it was answered (a hang-up would say 16), its peer too, and only
// the peer's signalling is ended; a ringing leg that is lost ends the
// caller that only it rang, with the same cause. A bad cause is refused
// and changes nothing.
func TestLost(t *testing.T) {
	e, rec, _ := newTestEngine(t)
	ctx := context.Background()
	a := okCall(t)(e.Originated(ctx, "SIP/201", "202", nil))
	b := e.store.ByDevice("SIP/202")[0]
	okCall(t)(e.Answered(ctx, b.UID))
	rec.take()
	if _, err := e.Lost(ctx, b.UID, 0); err == nil {
		t.Error("Lost with cause 0: no error")
	}
	if c, _ := e.store.Get(b.UID); c == nil || c.Dead() {
		t.Fatal("a refused Lost ended the leg")
	}
	lost := okCall(t)(e.Lost(ctx, b.UID, CauseOutOfOrder))
	if !lost.Dead() || lost.Cause != CauseOutOfOrder {
		t.Errorf("lost leg: %v cause %d, want dead 27", lost.State, lost.Cause)
	}
	expectSignals(t, rec, "hangup SIP/201 cause=27") // not SIP/202: its driver ended it
	if c := e.store.ByDevice("SIP/201"); len(c) != 0 {
		t.Errorf("the peer %d is still live", a.UID)
	}

	okCall(t)(e.Originated(ctx, "SIP/203", "202", nil))
	ringing := e.store.ByDevice("SIP/202")[0]
	if ringing.State != callstore.StateRing {
		t.Fatalf("callee is %v, want ring", ringing.State)
	}
	rec.take()
	caller := e.store.ByDevice("SIP/203")[0]
	okCall(t)(e.Lost(ctx, ringing.UID, CauseOutOfOrder))
	expectSignals(t, rec, "hangup SIP/203 cause=27")
	if c := e.store.ByDevice("SIP/203"); len(c) != 0 {
		t.Errorf("the caller %d, which only the lost phone rang, is still live", caller.UID)
	}
	if err := e.Verify(); err != nil {
		t.Fatal(err)
	}
}
