package pbx

import (
	"errors"
	"slices"
	"testing"
	"time"

	"callcontrold/callstore"
)

// The flows of call-model-notes.md, each step with the revisions it must
// commit (events in commit order).
func TestFlows(t *testing.T) {
	tests := []struct {
		name string
		run  func(h *harness)
	}{
		{"internal call answered, caller hangs up", func(h *harness) {
			a := h.dial("SIP/201", "202")
			h.expect(
				"NEW SIP/201 dial/dial caller",
				"UPDATE SIP/201 ring/ring caller | NEW SIP/202 ring/ringing callee")
			if a.State != callstore.StateRing || a.Label != "Reception" || a.Number != "202" {
				t := h.t
				t.Errorf("dial returned %v %q %q, want ring Reception 202", a.State, a.Label, a.Number)
			}
			b := h.on("SIP/202")
			if b.Name != "Alice Smith" || b.Number != "201" || b.Company != "default" || b.Extension == nil || b.Extension.Number != "202" {
				h.t.Errorf("callee leg: name %q number %q company %q ext %+v", b.Name, b.Number, b.Company, b.Extension)
			}
			if b.Features != callstore.FeatureAnswer || b.OwnerLogin != "admin" || b.OwnerID != 1 {
				h.t.Errorf("callee features %v owner %q/%d", b.Features, b.OwnerLogin, b.OwnerID)
			}
			b = h.talk(b.UID)
			h.expect("UPDATE SIP/202 up/up callee | UPDATE SIP/201 up/up caller")
			if b.StartMillis != epoch.UnixMilli() || b.PeerUID != a.UID || b.Features != callstore.FeatureHold {
				h.t.Errorf("answered: start %d peer %d features %v", b.StartMillis, b.PeerUID, b.Features)
			}
			a = h.hangup(a.UID)
			h.expect("UPDATE SIP/201 dead/dead caller cause=16 | UPDATE SIP/202 dead/dead callee cause=16")
			if a.CauseTxt != "Normal Clearing" {
				h.t.Errorf("cause text %q", a.CauseTxt)
			}
			h.none("SIP/201")
			h.none("SIP/202")
		}},
		{"callee hangs up", func(h *harness) {
			_, b := h.connect("SIP/201", "202", "SIP/202")
			h.hangup(b.UID)
			h.expect("UPDATE SIP/202 dead/dead callee cause=16 | UPDATE SIP/201 dead/dead caller cause=16")
		}},
		{"caller abandons while ringing", func(h *harness) {
			a := h.dial("SIP/201", "202")
			h.revs()
			h.hangup(a.UID)
			h.expect("UPDATE SIP/201 dead/dead caller cause=16 | UPDATE SIP/202 dead/dead callee cause=16")
		}},
		{"hold and talk", func(h *harness) {
			a, b := h.connect("SIP/201", "202", "SIP/202")
			a, changed, err := h.sim.Hold(h.ctx, a.UID)
			if err != nil || !changed || a.State != callstore.StateHold {
				h.t.Fatalf("hold: %v %v %v", a, changed, err)
			}
			// The held party's leg stays up: its value does not change.
			h.expect("UPDATE SIP/201 hold/hold caller")
			// Holding a held call does nothing and says so.
			a2, changed, err := h.sim.Hold(h.ctx, a.UID)
			if err != nil || changed || a2 != a {
				h.t.Fatalf("hold again: changed %v err %v same %v", changed, err, a2 == a)
			}
			h.expect()
			a = h.talk(a.UID)
			h.expect("UPDATE SIP/201 up/up caller")
			if _, changed, _ := h.sim.Talk(h.ctx, a.UID); changed {
				h.t.Error("talk on an up call changed it")
			}
			h.expect()
			_ = b
		}},
		{"busy device", func(h *harness) {
			// SIP/202 carries two calls (call waiting): a third caller hears busy.
			h.c(h.sim.Dial(h.ctx, "SIP/202", "+15550140", DialOptions{}))
			h.c(h.sim.Dial(h.ctx, "SIP/202", "+15550141", DialOptions{}))
			h.revs()
			a := h.dial("SIP/201", "202")
			h.expect("NEW SIP/201 dial/dial caller", "UPDATE SIP/201 dead/dead caller cause=17")
			if a.CauseTxt != "User busy" {
				h.t.Errorf("cause text %q", a.CauseTxt)
			}
		}},
		{"busy external number", func(h *harness) {
			h.dial("SIP/201", "+15550110")
			h.expect("NEW SIP/201 dial/dial caller", "UPDATE SIP/201 dead/dead caller cause=17")
		}},
		{"no answer: ring timeout", func(h *harness) {
			h.dial("SIP/201", "202")
			h.revs()
			h.clock.Advance(29 * time.Second)
			h.expect()
			h.clock.Advance(time.Second)
			h.expect("UPDATE SIP/201 dead/dead caller cause=19 | UPDATE SIP/202 dead/dead callee cause=19")
		}},
		{"callee declines: reject", func(h *harness) {
			h.dial("SIP/201", "202")
			h.revs()
			h.hangup(h.on("SIP/202").UID)
			h.expect("UPDATE SIP/202 dead/dead callee cause=21 | UPDATE SIP/201 dead/dead caller cause=21")
		}},
		{"external answers after its delay, then hangs up", func(h *harness) {
			a := h.dial("SIP/201", "+15550100")
			h.expect("NEW SIP/201 dial/dial caller", "UPDATE SIP/201 ring/ring caller")
			if a.Label != "+15550100" || a.Company != "" {
				h.t.Errorf("label %q company %q", a.Label, a.Company)
			}
			h.clock.Advance(3 * time.Second)
			h.expect("UPDATE SIP/201 up/up caller")
			h.c(h.sim.HangupRemote(h.ctx, a.UID))
			h.expect("UPDATE SIP/201 dead/dead caller cause=16")
		}},
		{"external rejects with a cause", func(h *harness) {
			if err := h.sim.SetNumberBehaviour("+4420790001", Behaviour{Action: ActionManual}); err != nil {
				h.t.Fatal(err)
			}
			a := h.dial("SIP/201", "+4420790001")
			h.clock.Advance(time.Hour) // manual: rings until told
			h.expect("NEW SIP/201 dial/dial caller", "UPDATE SIP/201 ring/ring caller")
			a = h.c(h.sim.RejectRemote(h.ctx, a.UID, 34))
			h.expect("UPDATE SIP/201 dead/dead caller cause=34")
			if a.CauseTxt != "Circuit/channel congestion" {
				h.t.Errorf("cause text %q", a.CauseTxt)
			}
		}},
		{"external reject rule", func(h *harness) {
			h.dial("SIP/201", "+15550130")
			h.revs()
			h.clock.Advance(2 * time.Second)
			h.expect("UPDATE SIP/201 dead/dead caller cause=21")
		}},
		{"external no-answer rule", func(h *harness) {
			h.dial("SIP/201", "+15550120")
			h.revs()
			h.clock.Advance(30 * time.Second)
			h.expect("UPDATE SIP/201 dead/dead caller cause=19")
		}},
		{"manual external answered by the simulator", func(h *harness) {
			a := h.dial("SIP/201", "+15550140")
			h.revs()
			a = h.c(h.sim.AnswerRemote(h.ctx, a.UID))
			h.expect("UPDATE SIP/201 up/up caller")
			if a.State != callstore.StateUp {
				h.t.Errorf("state %v", a.State)
			}
		}},
		{"inbound to a device, answered, far end hangs up", func(h *harness) {
			calls := h.c2(h.sim.PlaceInbound(h.ctx, "+442079460001", "Carol Client", "201"))
			h.expect("NEW SIP/201 ring/ringing callee")
			b := calls[0]
			if b.Label != "Carol Client" || b.Number != "+442079460001" || b.Company != "default" {
				h.t.Errorf("inbound leg %q %q %q", b.Label, b.Number, b.Company)
			}
			h.talk(b.UID)
			h.expect("UPDATE SIP/201 up/up callee")
			h.c(h.sim.HangupRemote(h.ctx, b.UID))
			h.expect("UPDATE SIP/201 dead/dead callee cause=16")
		}},
		{"inbound abandoned by the far end while ringing", func(h *harness) {
			calls := h.c2(h.sim.PlaceInbound(h.ctx, "+442079460001", "", "610"))
			h.revs()
			h.c(h.sim.HangupRemote(h.ctx, calls[0].UID))
			h.expect("UPDATE SIP/201 dead/dead callee cause=16 | UPDATE SIP/201_2 dead/dead callee cause=16 | UPDATE SIP/202 dead/dead callee cause=16")
		}},
		{"blind transfer", func(h *harness) {
			a, b := h.connect("SIP/201", "202", "SIP/202")
			x, p := h.cc(h.sim.Xfer(h.ctx, b.UID, "301"))
			h.expect("UPDATE SIP/202 dead/dead callee cause=16 | TRANSFER SIP/201 ring/up caller xfer=2 | NEW SIP/webrtc11 ring/ringing callee")
			if x.State != callstore.StateDead || p.UID != a.UID || p.Label != "Bob Jones" || p.Number != "301" {
				h.t.Errorf("xfer returned %v, %d %q %q", x.State, p.UID, p.Label, p.Number)
			}
			c := h.on("SIP/webrtc11")
			if c.Label != "Alice Smith" || c.Company != "acme" || c.JSState != callstore.JSProgress {
				h.t.Errorf("transfer target leg %q %q %v", c.Label, c.Company, c.JSState)
			}
			h.talk(c.UID)
			h.expect("UPDATE SIP/webrtc11 up/up callee | UPDATE SIP/201 up/up caller")
		}},
		{"attended transfer", func(h *harness) {
			a, b1 := h.connect("SIP/201", "202", "SIP/202")
			h.cb(h.sim.Hold(h.ctx, b1.UID))
			b2 := h.dial("SIP/202", "301")
			c := h.talk(h.on("SIP/webrtc11").UID)
			h.expect(
				"UPDATE SIP/202 hold/hold callee",
				"NEW SIP/202 dial/dial caller",
				"UPDATE SIP/202 ring/ring caller | NEW SIP/webrtc11 ring/ringing callee",
				"UPDATE SIP/webrtc11 up/up callee | UPDATE SIP/202 up/up caller")
			x1, x2 := h.cc(h.sim.AtXfer(h.ctx, b1.UID, b2.UID))
			h.expect("UPDATE SIP/202 dead/dead callee cause=16 | UPDATE SIP/202 dead/dead caller cause=16 | TRANSFER SIP/201 up/up caller xfer=2 | TRANSFER SIP/webrtc11 up/up callee xfer=2")
			if !x1.Dead() || !x2.Dead() {
				h.t.Error("transferrer's legs not dead")
			}
			a, _ = h.store.Get(a.UID)
			c, _ = h.store.Get(c.UID)
			if a.PeerUID != c.UID || c.PeerUID != a.UID || a.Label != "Bob Jones" || c.Label != "Alice Smith" {
				h.t.Errorf("bridge: %d<->%d labels %q %q", a.PeerUID, c.PeerUID, a.Label, c.Label)
			}
		}},
		{"semi-attended transfer: the target still rings", func(h *harness) {
			a, b1 := h.connect("SIP/201", "202", "SIP/202")
			h.cb(h.sim.Hold(h.ctx, b1.UID))
			b2 := h.dial("SIP/202", "301")
			h.revs()
			// Either order: the ringing call may be the first argument.
			x1, x2 := h.cc(h.sim.AtXfer(h.ctx, b2.UID, b1.UID))
			h.expect("UPDATE SIP/202 dead/dead caller cause=16 | UPDATE SIP/202 dead/dead callee cause=16 | TRANSFER SIP/201 ring/up caller xfer=2 | UPDATE SIP/webrtc11 ring/ringing callee")
			if !x1.Dead() || !x2.Dead() {
				h.t.Error("transferrer's legs not dead")
			}
			c := h.on("SIP/webrtc11")
			a, _ = h.store.Get(a.UID)
			if a.Label != "Bob Jones" || c.Label != "Alice Smith" || c.Number != "201" {
				h.t.Errorf("while ringing: a sees %q, c sees %q <%s>", a.Label, c.Label, c.Number)
			}
			h.talk(c.UID)
			h.expect("UPDATE SIP/webrtc11 up/up callee | UPDATE SIP/201 up/up caller")
			a, _ = h.store.Get(a.UID)
			if a.PeerUID != c.UID {
				h.t.Errorf("after answer: a bridged to %d, want %d", a.PeerUID, c.UID)
			}
		}},
		{"semi-attended transfer to a ringing external number", func(h *harness) {
			a, b1 := h.connect("SIP/201", "202", "SIP/202")
			h.cb(h.sim.Hold(h.ctx, b1.UID))
			b2 := h.dial("SIP/202", "+15550140") // manual: rings until driven
			h.revs()
			h.cc(h.sim.AtXfer(h.ctx, b1.UID, b2.UID))
			h.expect("UPDATE SIP/202 dead/dead callee cause=16 | UPDATE SIP/202 dead/dead caller cause=16 | TRANSFER SIP/201 ring/up caller xfer=1")
			a = h.c(h.sim.AnswerRemote(h.ctx, a.UID))
			h.expect("UPDATE SIP/201 up/up caller")
			if a.Number != "+15550140" {
				h.t.Errorf("a talks to %q, want +15550140", a.Number)
			}
		}},
		{"atxfer of two ringing calls", func(h *harness) {
			b1 := h.dial("SIP/202", "201")
			b2 := h.dial("SIP/202", "301")
			h.revs()
			_, _, err := h.sim.AtXfer(h.ctx, b1.UID, b2.UID)
			if !errors.Is(err, ErrBadState) {
				h.t.Errorf("atxfer of two ringing calls: %v, want ErrBadState", err)
			}
			h.expect()
		}},
		{"send a ringing inbound call", func(h *harness) {
			calls := h.c2(h.sim.PlaceInbound(h.ctx, "+442079460001", "Carol", "202"))
			h.revs()
			old, nw := h.cc(h.sim.Send(h.ctx, calls[0].UID, "201"))
			h.expect("UPDATE SIP/202 dead/dead callee cause=23 | NEW SIP/201 ring/ringing callee")
			if old.CauseTxt != "Redirected to new destination" || nw == nil || nw.Label != "Carol" || nw.Extension.Number != "201" {
				h.t.Errorf("send: %q %+v", old.CauseTxt, nw)
			}
		}},
		{"send an internal ringing call", func(h *harness) {
			h.dial("SIP/201", "202")
			h.revs()
			_, nw := h.cc(h.sim.Send(h.ctx, h.on("SIP/202").UID, "301"))
			h.expect("UPDATE SIP/202 dead/dead callee cause=23 | UPDATE SIP/201 ring/ring caller | NEW SIP/webrtc11 ring/ringing callee")
			if nw.Label != "Alice Smith" {
				h.t.Errorf("label %q", nw.Label)
			}
		}},
		{"park and pick up", func(h *harness) {
			_, b := h.connect("SIP/201", "202", "SIP/202")
			h.cc(h.sim.Xfer(h.ctx, b.UID, "701"))
			h.expect("UPDATE SIP/202 dead/dead callee cause=16 | TRANSFER SIP/201 up/up caller xfer=2 | NEW Park/701 park/park callee")
			k := h.on("Park/701")
			if k.Label != "Alice Smith" || k.Extension.Number != "701" {
				h.t.Errorf("parked leg %q", k.Label)
			}
			// The orbit holds one call.
			c := h.dial("SIP/202", "701")
			h.expect(
				"NEW SIP/202 dial/dial caller",
				"UPDATE SIP/202 up/up caller | TRANSFER SIP/201 up/up caller xfer=2 | UPDATE Park/701 dead/dead callee cause=16")
			if c.Label != "Alice Smith" {
				h.t.Errorf("picked up %q", c.Label)
			}
			h.none("Park/701")
		}},
		{"pick up an empty orbit", func(h *harness) {
			h.dial("SIP/202", "702")
			h.expect("NEW SIP/202 dial/dial caller", "UPDATE SIP/202 dead/dead caller cause=18")
		}},
		{"queue", func(h *harness) {
			calls := h.c2(h.sim.PlaceInbound(h.ctx, "+442079460001", "Carol", "600"))
			h.expect("NEW Queue/q_600 up/up callee | NEW SIP/201 ring/ringing callee | NEW SIP/202 ring/ringing callee")
			q := calls[0]
			if q.Device != "Queue/q_600" || q.Queue == nil || q.Queue.In != epoch.Unix() || q.Queue.Name != "Carol" || q.Queue.Number != "+442079460001" {
				h.t.Errorf("queue leg %+v", q)
			}
			m := h.on("SIP/202")
			if m.Queue == nil || m.Queue.In != q.Queue.In || m.Queue.Name != "Carol" || m.Label != "Carol" {
				h.t.Errorf("member leg %+v", m)
			}
			h.clock.Advance(5 * time.Second)
			m = h.talk(m.UID)
			h.expect("UPDATE SIP/202 up/up callee | UPDATE SIP/201 dead/dead callee cause=26 | UPDATE Queue/q_600 up/up callee")
			q, _ = h.store.Get(q.UID)
			if q.Queue.Out != epoch.Unix()+5 || q.Queue.CallUID != m.UID {
				h.t.Errorf("queue after answer: outq %d qcall %d", q.Queue.Out, q.Queue.CallUID)
			}
			h.hangup(m.UID)
			h.expect("UPDATE SIP/202 dead/dead callee cause=16 | UPDATE Queue/q_600 dead/dead callee cause=16")
		}},
		{"internal caller into a queue, nobody answers", func(h *harness) {
			h.dial("SIP/webrtc11", "650")
			h.expect(
				"NEW SIP/webrtc11 dial/dial caller",
				"UPDATE SIP/webrtc11 up/up caller | NEW Queue/q_650 up/up callee | NEW SIP/302 ring/ringing callee")
			h.clock.Advance(30 * time.Second)
			h.expect("UPDATE Queue/q_650 dead/dead callee cause=19 | UPDATE SIP/302 dead/dead callee cause=19 | UPDATE SIP/webrtc11 dead/dead caller cause=19")
		}},
		{"ring-all: answered elsewhere", func(h *harness) {
			h.dial("SIP/203", "610")
			h.expect(
				"NEW SIP/203 dial/dial caller",
				"UPDATE SIP/203 ring/ring caller | NEW SIP/201 ring/ringing callee | NEW SIP/201_2 ring/ringing callee | NEW SIP/202 ring/ringing callee")
			h.talk(h.on("SIP/201_2").UID)
			h.expect("UPDATE SIP/201_2 up/up callee | UPDATE SIP/201 dead/dead callee cause=26 | UPDATE SIP/202 dead/dead callee cause=26 | UPDATE SIP/203 up/up caller")
			if a := h.on("SIP/203"); a.Label != "Alice Smith" {
				h.t.Errorf("caller sees %q", a.Label)
			}
		}},
		{"ring-all: one declines, the others ring on", func(h *harness) {
			h.c2(h.sim.PlaceInbound(h.ctx, "+442079460001", "", "610"))
			h.revs()
			h.hangup(h.on("SIP/202").UID)
			h.expect("UPDATE SIP/202 dead/dead callee cause=21")
		}},
		{"hunt group steps through its members", func(h *harness) {
			h.c2(h.sim.PlaceInbound(h.ctx, "+442079460001", "", "620"))
			h.expect("NEW SIP/202 ring/ringing callee")
			h.clock.Advance(10 * time.Second)
			h.expect("UPDATE SIP/202 dead/dead callee cause=19 | NEW SIP/201 ring/ringing callee")
			h.hangup(h.on("SIP/201").UID) // declined: the next member at once
			h.expect("UPDATE SIP/201 dead/dead callee cause=21 | NEW SIP/203 ring/ringing callee")
			h.clock.Advance(10 * time.Second)
			h.expect("UPDATE SIP/203 dead/dead callee cause=19")
		}},
		{"hunt group answered", func(h *harness) {
			h.dial("SIP/303", "670")
			h.revs()
			h.talk(h.on("SIP/302").UID)
			h.expect("UPDATE SIP/302 up/up callee | UPDATE SIP/303 up/up caller")
		}},
		{"webrtc mute and dtmf", func(h *harness) {
			a := h.dial("SIP/webrtc11", "+15550140")
			if a.JSState != callstore.JSProgress {
				h.t.Errorf("jsState ringing %v", a.JSState)
			}
			a = h.c(h.sim.AnswerRemote(h.ctx, a.UID))
			if a.JSState != callstore.JSConfirmed || !a.JSInfo.Established {
				h.t.Errorf("jsState up %v %+v", a.JSState, a.JSInfo)
			}
			h.revs()
			a, changed, err := h.sim.Mute(h.ctx, a.UID, true)
			if err != nil || !changed || !a.JSInfo.MutedAudio {
				h.t.Fatalf("mute: %v %v", changed, err)
			}
			if _, changed, _ := h.sim.Mute(h.ctx, a.UID, true); changed {
				h.t.Error("mute twice changed")
			}
			h.c(h.sim.Dtmf(h.ctx, a.UID, "1"))
			a = h.c(h.sim.Dtmf(h.ctx, a.UID, "#"))
			h.expect("UPDATE SIP/webrtc11 up/up caller", "UPDATE SIP/webrtc11 up/up caller", "UPDATE SIP/webrtc11 up/up caller")
			if a.DTMF != "1#" || !a.HasDTMF {
				h.t.Errorf("dtmf %q %v", a.DTMF, a.HasDTMF)
			}
			a = h.cb(h.sim.Hold(h.ctx, a.UID))
			if !a.JSInfo.HoldLocal || !a.JSInfo.MutedAudio {
				h.t.Errorf("jsInfo on hold %+v", a.JSInfo)
			}
			a = h.hangup(a.UID)
			if a.JSState != callstore.JSTerminated || !a.JSInfo.Ended {
				h.t.Errorf("jsState dead %v %+v", a.JSState, a.JSInfo)
			}
		}},
		{"webrtc busy", func(h *harness) {
			a := h.dial("SIP/webrtc11", "+15550110")
			if a.JSState != callstore.JSBusy || !a.JSInfo.Ended {
				h.t.Errorf("jsState %v", a.JSState)
			}
		}},
		{"autohold", func(h *harness) {
			a, _ := h.connect("SIP/201", "202", "SIP/202")
			h.c(h.sim.Dial(h.ctx, "SIP/201", "+15550140", DialOptions{AutoHold: true}))
			h.expect(
				"UPDATE SIP/201 hold/hold caller | NEW SIP/201 dial/dial caller",
				"UPDATE SIP/201 ring/ring caller")
			_ = a
		}},
		{"device lamp follows its calls", func(h *harness) {
			st := func(dev string) BLF {
				s, err := h.sim.DeviceState(dev)
				if err != nil {
					h.t.Fatal(err)
				}
				return s.BLF
			}
			if st("SIP/202") != BLFIdle {
				h.t.Error("not idle")
			}
			a := h.dial("SIP/201", "202")
			if st("SIP/202") != BLFRinging || st("SIP/201") != BLFBusy {
				h.t.Errorf("ringing: %v %v", st("SIP/202"), st("SIP/201"))
			}
			h.talk(h.on("SIP/202").UID)
			h.dial("SIP/203", "202")
			if st("SIP/202") != BLFBusyRinging {
				h.t.Errorf("busy+ringing: %v", st("SIP/202"))
			}
			if got := BLFOf(h.store.ByDevice("SIP/202")); got != BLFBusyRinging {
				h.t.Errorf("BLFOf = %v", got)
			}
			h.hangup(a.UID)
			if s, _ := h.sim.DeviceState("Park/701"); s.Status != StatusUnknown {
				h.t.Errorf("park status %v", s.Status)
			}
			if s, _ := h.sim.DeviceState("SIP/201"); s.Status != StatusUp || s.BLF != BLFIdle {
				h.t.Errorf("201 %+v", s)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			tc.run(h)
			h.checkInvariants()
		})
	}
}

// c2 is c for PlaceInbound.
func (h *harness) c2(calls []*callstore.Call, err error) []*callstore.Call {
	h.t.Helper()
	if err != nil {
		h.t.Fatalf("unexpected error: %v", err)
	}
	if len(calls) == 0 {
		h.t.Fatal("no legs")
	}
	for _, c := range calls {
		h.applied(c)
	}
	return calls
}

func TestErrors(t *testing.T) {
	h := newHarness(t)
	a := h.dial("SIP/201", "202")
	b := h.on("SIP/202")
	var se *StateError
	_, _, err := h.sim.Hold(h.ctx, a.UID)
	if !errors.Is(err, ErrBadState) || !errors.As(err, &se) || se.State != callstore.StateRing || !slices.Contains(se.Allowed, callstore.StateUp) {
		t.Errorf("hold on ringing: %v", err)
	}
	if _, _, err := h.sim.Talk(h.ctx, a.UID); !errors.Is(err, ErrBadState) {
		t.Errorf("talk on own ringing call: %v", err)
	}
	if _, _, err := h.sim.Xfer(h.ctx, b.UID, "203"); !errors.Is(err, ErrBadState) {
		t.Errorf("xfer ringing: %v", err)
	}
	if _, _, err := h.sim.Send(h.ctx, a.UID, "203"); !errors.Is(err, ErrBadState) {
		t.Errorf("send caller leg: %v", err)
	}
	h.talk(b.UID)
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"unknown uid", second(h.sim.Hangup(h.ctx, 9999)), ErrNotFound},
		{"unknown device", second(h.sim.Dial(h.ctx, "SIP/999", "201", DialOptions{})), ErrNotFound},
		{"dial from a queue", second(h.sim.Dial(h.ctx, "Queue/q_600", "201", DialOptions{})), ErrNotSupported},
		{"autoanswer unsupported", second(h.sim.Dial(h.ctx, "SIP/203", "201", DialOptions{AutoAnswer: true})), ErrNotSupported},
		{"short unknown number", second(h.sim.Dial(h.ctx, "SIP/202", "299", DialOptions{})), ErrInvalidNumber},
		{"letters", second(h.sim.Dial(h.ctx, "SIP/202", "12a45", DialOptions{})), ErrInvalidNumber},
		{"empty", second(h.sim.Dial(h.ctx, "SIP/202", "", DialOptions{})), ErrInvalidNumber},
		{"invalid is an argument error", second(h.sim.Dial(h.ctx, "SIP/202", "+", DialOptions{})), ErrInvalidArgument},
		{"mute on a desk phone", third(h.sim.Mute(h.ctx, a.UID, true)), ErrNotSupported},
		{"dtmf on a desk phone", second(h.sim.Dtmf(h.ctx, a.UID, "1")), ErrNotSupported},
		{"xfer to a bad number", third2(h.sim.Xfer(h.ctx, a.UID, "x")), ErrInvalidNumber},
		{"atxfer with itself", third2(h.sim.AtXfer(h.ctx, a.UID, a.UID)), ErrInvalidArgument},
		{"atxfer of a bridged pair", third2(h.sim.AtXfer(h.ctx, a.UID, b.UID)), ErrInvalidArgument},
		{"answer-remote without one", second(h.sim.AnswerRemote(h.ctx, a.UID)), ErrBadState},
		{"hangup-remote without one", second(h.sim.HangupRemote(h.ctx, a.UID)), ErrNotFound},
		{"inbound to a park orbit", second(h.sim.PlaceInbound(h.ctx, "+4420794600", "", "701")), ErrInvalidNumber},
		{"inbound from a bad number", second(h.sim.PlaceInbound(h.ctx, "abc", "", "201")), ErrInvalidNumber},
		{"behaviour for an extension", h.sim.SetNumberBehaviour("201", Behaviour{Action: ActionBusy}), ErrInvalidNumber},
		{"behaviour unknown", h.sim.SetNumberBehaviour("+4420794600", Behaviour{}), ErrInvalidArgument},
		{"reject-remote bad cause", second(h.sim.RejectRemote(h.ctx, a.UID, 500)), ErrInvalidArgument},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	// None of the failures committed anything.
	h.revs()
	if _, _, err := h.sim.Hold(h.ctx, a.UID); err != nil {
		t.Fatal(err)
	}
	c := h.dial("SIP/webrtc11", "+15550140")
	if _, err := h.sim.Dtmf(h.ctx, c.UID, "12"); !errors.Is(err, ErrInvalidTone) || !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("bad tone: %v", err)
	}
	if _, err := h.sim.Dtmf(h.ctx, c.UID, "1"); !errors.Is(err, ErrBadState) {
		t.Errorf("dtmf while ringing: %v", err)
	}
	h.sim.Close()
	if _, err := h.sim.Hangup(h.ctx, a.UID); !errors.Is(err, ErrClosed) {
		t.Errorf("after close: %v", err)
	}
	if se.Error() == "" {
		t.Error("empty message")
	}
}

func second[T any](_ T, err error) error        { return err }
func third[T any](_ T, _ bool, err error) error { return err }
func third2[T any](_, _ T, err error) error     { return err }
