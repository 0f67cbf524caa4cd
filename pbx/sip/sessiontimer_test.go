package sip

import (
	"testing"
	"time"

	"callcontrold/callstore"
	"callcontrold/directory"
	"callcontrold/pbx"
	"callcontrold/pbx/pbxtest"
)

// lostCallEnv is phoneCallEnv with the switch configured by cfg (its
// address, clock and logger are the test's); the registrar reads the
// engine's fake clock.
func lostCallEnv(t *testing.T, cfg Config) (*pbxtest.H, *Switch, map[string]*softphone) {
	t.Helper()
	var sw *Switch
	var by map[string]*softphone
	h := pbxtest.New(t, func(t *testing.T, dir *directory.Directory, store *callstore.Store, clock pbx.Clock) pbxtest.Env {
		cfg.Addr, cfg.Engine.Clock, cfg.Logger = "127.0.0.1:0", clock, quietLog(t)
		cfg.Registrar.Now, cfg.Registrar.SweepInterval = clock.Now, 10*time.Millisecond
		var err error
		sw, err = NewSwitch(dir, store, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := sw.Close(); err != nil {
				t.Errorf("switch close: %v", err)
			}
		})
		by = registerAll(t, sw, dir)
		return pbxtest.Env{Engine: sw.Engine, Driver: &phones{t: t, sw: sw, store: store, by: by}}
	})
	return h, sw, by
}

// talking sets up 201 → 202, answered, and returns the Call-IDs of the
// caller's and the callee's dialogs.
func talking(t *testing.T, h *pbxtest.H, by map[string]*softphone) (callerID, calleeID string) {
	t.Helper()
	callerID, done := by["SIP/201"].call("202")
	h.Expect("NEW SIP/201 dial/dial caller", "UPDATE SIP/201 ring/ring caller | NEW SIP/202 ring/ringing callee")
	_, calleeID = h.D.(*phones).dialogOf(t, h.On("SIP/202").UID)
	h.Answer("SIP/202")
	h.Expect("UPDATE SIP/202 up/up callee | UPDATE SIP/201 up/up caller")
	if err := outcome(t, done); err != nil {
		t.Fatalf("caller's INVITE: %v", err)
	}
	by["SIP/202"].acked(calleeID)
	if sw := h.D.(*phones).sw; sw.b.probe.every > 0 {
		probesScheduled(t, sw, h.On("SIP/201").UID, h.On("SIP/202").UID)
	}
	return callerID, calleeID
}

// probesScheduled waits until the legs' dialogs each have their next
// probe scheduled on the fake clock, so that advancing it sends them.
func probesScheduled(t *testing.T, sw *Switch, uids ...int64) {
	t.Helper()
	until(t, "the session probes are scheduled", func() bool {
		for _, uid := range uids {
			d := sw.b.leg(uid)
			if d == nil {
				return false
			}
			d.mu.Lock()
			ok := d.probe != nil
			d.mu.Unlock()
			if !ok {
				return false
			}
		}
		return true
	})
}

// byeReached waits for the phone to get the switch's BYE for a call.
func byeReached(t *testing.T, p *softphone, id string) {
	t.Helper()
	until(t, p.user+" got the BYE", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.servers[id] == nil && p.clients[id] == nil
	})
}

// TestUnregisterEndsCalls: a phone that unregisters its last binding in
// the middle of a call has lost it: both legs end with cause 27, and the
// other phone gets a BYE.
func TestUnregisterEndsCalls(t *testing.T) {
	h, _, by := lostCallEnv(t, Config{SessionProbe: -1})
	callerID, _ := talking(t, h, by)
	by["SIP/202"].unregister()
	h.Expect("UPDATE SIP/202 dead/dead callee cause=27 | UPDATE SIP/201 dead/dead caller cause=27")
	byeReached(t, by["SIP/201"], callerID)
	h.Check()
}

// TestRegistrationExpiryEndsCalls: a phone that stops refreshing its
// registration (it vanished) loses its calls when the binding expires.
func TestRegistrationExpiryEndsCalls(t *testing.T) {
	h, sw, by := lostCallEnv(t, Config{SessionProbe: -1})
	callerID, _ := talking(t, h, by)
	// The softphones registered for 600 s: the caller refreshes half way,
	// the callee does not.
	h.Clock.Advance(300 * time.Second)
	by["SIP/201"].register()
	h.Clock.Advance(301 * time.Second)
	until(t, "SIP/202 is down", func() bool { return !sw.Registrar.Up("SIP/202") })
	h.Expect("UPDATE SIP/202 dead/dead callee cause=27 | UPDATE SIP/201 dead/dead caller cause=27")
	byeReached(t, by["SIP/201"], callerID)
	if !sw.Registrar.Up("SIP/201") {
		t.Error("the caller's refreshed registration lapsed too")
	}
	h.Check()
}

// TestSessionProbeEndsForgottenCall: a phone that is still registered
// but forgot the call (it restarted) answers the switch's in-dialog
// OPTIONS with 481: its leg and the peer's end with cause 27, and the
// other phone gets a BYE. (Whether the other phone's own probe goes out
// before its BYE is a race: it is not looked at.)
func TestSessionProbeEndsForgottenCall(t *testing.T) {
	h, _, by := lostCallEnv(t, Config{})
	callerID, calleeID := talking(t, h, by)
	if !by["SIP/202"].forget(calleeID) {
		t.Fatal("the callee's phone does not have the call")
	}
	h.Clock.Advance(defaultSessionProbe)
	select {
	case got := <-by["SIP/202"].probes:
		if got != 481 {
			t.Errorf("the callee answered the probe %d, want 481", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the callee was never probed")
	}
	h.Expect("UPDATE SIP/202 dead/dead callee cause=27 | UPDATE SIP/201 dead/dead caller cause=27")
	byeReached(t, by["SIP/201"], callerID)
	h.Check()
}

// TestSessionProbeKeepsLiveCall: phones that answer the probe keep their
// call, and are probed again one interval later.
func TestSessionProbeKeepsLiveCall(t *testing.T) {
	h, sw, by := lostCallEnv(t, Config{})
	talking(t, h, by)
	uids := []int64{h.On("SIP/201").UID, h.On("SIP/202").UID}
	for round := range 2 {
		h.Clock.Advance(defaultSessionProbe)
		for _, p := range []*softphone{by["SIP/201"], by["SIP/202"]} {
			select {
			case got := <-p.probes:
				if got != 200 {
					t.Errorf("round %d: %s answered %d", round, p.user, got)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("round %d: %s was never probed", round, p.user)
			}
		}
		// The next probe is scheduled once the answer is in: wait for it.
		probesScheduled(t, sw, uids...)
	}
	h.Expect() // no revision: the call is still up
	if c := h.On("SIP/202"); c.State != callstore.StateUp {
		t.Errorf("callee leg is %s, want up", c.State)
	}
}

// TestSessionProbeEndsSilentPhone: a phone that no longer answers at all
// (it went away without unregistering) is given up after ProbeTimeout.
func TestSessionProbeEndsSilentPhone(t *testing.T) {
	h, _, by := lostCallEnv(t, Config{ProbeTimeout: 200 * time.Millisecond})
	callerID, _ := talking(t, h, by)
	callee := by["SIP/202"]
	callee.mu.Lock()
	callee.deaf = true
	callee.mu.Unlock()
	h.Clock.Advance(defaultSessionProbe)
	h.Expect("UPDATE SIP/202 dead/dead callee cause=27 | UPDATE SIP/201 dead/dead caller cause=27")
	byeReached(t, by["SIP/201"], callerID)
	h.Check()
}

// TestUnregisterWhileRinging: a ringing phone that unregisters cannot
// answer: its leg ends with 27, and so does the caller that only it
// rang, whose INVITE gets 502 (RFC 3398 for cause 27).
func TestUnregisterWhileRinging(t *testing.T) {
	h, _, by := lostCallEnv(t, Config{SessionProbe: -1})
	_, done := by["SIP/201"].call("202")
	h.Expect("NEW SIP/201 dial/dial caller", "UPDATE SIP/201 ring/ring caller | NEW SIP/202 ring/ringing callee")
	h.D.(*phones).dialogOf(t, h.On("SIP/202").UID) // the switch's INVITE is out
	by["SIP/202"].unregister()
	h.Expect("UPDATE SIP/202 dead/dead callee cause=27 | UPDATE SIP/201 dead/dead caller cause=27")
	if err := outcome(t, done); statusOfErr(err) != 502 {
		t.Errorf("the caller's INVITE ended with %v, want 502", err)
	}
	h.Check()
}
