package pbxtest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"callcontrold/callstore"
	"callcontrold/pbx"
)

// Flow is one call flow: API operations and phone or far-end actions,
// each with the revisions it must commit (events in commit order).
type Flow struct {
	Name string
	Run  func(h *H)
}

// Run runs every flow, each on a fresh engine, and verifies the engine
// against the store after each. Every driver plays every flow: the
// simulator's, and the SIP driver's harness with softphones for every
// phone (the browser phone too), a test trunk for calls from outside and
// far ends behind it that follow the number rules; so a flow is never
// skipped, and a driver that could not play one fails it.
func Run(t *testing.T, newEnv NewEnv) {
	for _, f := range Flows {
		t.Run(f.Name, func(t *testing.T) {
			h := New(t, newEnv)
			f.Run(h)
			h.Check()
		})
	}
}

// Flows are the flows of the call model, as clients see them.
var Flows = []Flow{
	{"internal call answered, caller hangs up", func(h *H) {
		a := h.Dial("SIP/201", "202")
		h.Expect(
			"NEW SIP/201 dial/dial caller",
			"UPDATE SIP/201 ring/ring caller | NEW SIP/202 ring/ringing callee")
		if a.State != callstore.StateRing || a.Label != "Reception" || a.Number != "202" {
			t := h.T
			t.Errorf("dial returned %v %q %q, want ring Reception 202", a.State, a.Label, a.Number)
		}
		b := h.On("SIP/202")
		if b.Name != "Alice Smith" || b.Number != "201" || b.Company != "default" || b.Extension == nil || b.Extension.Number != "202" {
			h.T.Errorf("callee leg: name %q number %q company %q ext %+v", b.Name, b.Number, b.Company, b.Extension)
		}
		if b.Features != callstore.FeatureAnswer || b.OwnerLogin != "admin" || b.OwnerID != 1 {
			h.T.Errorf("callee features %v owner %q/%d", b.Features, b.OwnerLogin, b.OwnerID)
		}
		b = h.AnswerCall(b.UID)
		h.Expect("UPDATE SIP/202 up/up callee | UPDATE SIP/201 up/up caller")
		if b.StartMillis != Epoch.UnixMilli() || b.PeerUID != a.UID || b.Features != callstore.FeatureHold {
			h.T.Errorf("answered: start %d peer %d features %v", b.StartMillis, b.PeerUID, b.Features)
		}
		a = h.Hangup(a.UID)
		h.Expect("UPDATE SIP/201 dead/dead caller cause=16 | UPDATE SIP/202 dead/dead callee cause=16")
		if a.CauseText() != "Normal Clearing" {
			h.T.Errorf("cause text %q", a.CauseText())
		}
		h.None("SIP/201")
		h.None("SIP/202")
	}},
	{"callee hangs up", func(h *H) {
		_, b := h.Connect("SIP/201", "202", "SIP/202")
		h.Hangup(b.UID)
		h.Expect("UPDATE SIP/202 dead/dead callee cause=16 | UPDATE SIP/201 dead/dead caller cause=16")
	}},
	{"caller abandons while ringing", func(h *H) {
		a := h.Dial("SIP/201", "202")
		h.Skip()
		h.Hangup(a.UID)
		h.Expect("UPDATE SIP/201 dead/dead caller cause=16 | UPDATE SIP/202 dead/dead callee cause=16")
	}},
	{"hold and talk", func(h *H) {
		a, b := h.Connect("SIP/201", "202", "SIP/202")
		a, changed, err := h.E.Hold(h.Ctx, a.UID)
		if err != nil || !changed || a.State != callstore.StateHold {
			h.T.Fatalf("hold: %v %v %v", a, changed, err)
		}
		// The held party's leg stays up: its value does not change.
		h.Expect("UPDATE SIP/201 hold/hold caller")
		// Holding a held call does nothing and says so.
		a2, changed, err := h.E.Hold(h.Ctx, a.UID)
		if err != nil || changed || a2 != a {
			h.T.Fatalf("hold again: changed %v err %v same %v", changed, err, a2 == a)
		}
		h.Expect()
		a = h.Talk(a.UID)
		h.Expect("UPDATE SIP/201 up/up caller")
		if _, changed, _ := h.E.Talk(h.Ctx, a.UID); changed {
			h.T.Error("talk on an up call changed it")
		}
		h.Expect()
		_ = b
	}},
	{"busy device", func(h *H) {
		// SIP/202 carries two calls (call waiting): a third caller hears busy.
		h.C(h.E.Dial(h.Ctx, "SIP/202", "+15550140", pbx.DialOptions{}))
		h.C(h.E.Dial(h.Ctx, "SIP/202", "+15550141", pbx.DialOptions{}))
		h.Skip()
		a := h.Dial("SIP/201", "202")
		h.Expect("NEW SIP/201 dial/dial caller", "UPDATE SIP/201 dead/dead caller cause=17")
		if a.CauseText() != "User busy" {
			h.T.Errorf("cause text %q", a.CauseText())
		}
	}},
	{"busy external number", func(h *H) {
		h.DialRefused("SIP/201", "+15550110")
		h.ExpectRefusedOut("SIP/201", pbx.CauseUserBusy)
	}},
	{"no answer: ring timeout", func(h *H) {
		h.Dial("SIP/201", "202")
		h.Skip()
		h.Advance(29 * time.Second)
		h.Expect()
		h.Advance(time.Second)
		h.Expect("UPDATE SIP/201 dead/dead caller cause=19 | UPDATE SIP/202 dead/dead callee cause=19")
	}},
	{"callee declines: reject", func(h *H) {
		h.Dial("SIP/201", "202")
		h.Skip()
		h.Hangup(h.On("SIP/202").UID)
		h.Expect("UPDATE SIP/202 dead/dead callee cause=21 | UPDATE SIP/201 dead/dead caller cause=21")
	}},
	{"external answers after its delay, then hangs up", func(h *H) {
		a := h.Dial("SIP/201", "+15550100")
		h.Expect("NEW SIP/201 dial/dial caller", "UPDATE SIP/201 ring/ring caller")
		if a.Label != "+15550100" || a.Company != "" {
			h.T.Errorf("label %q company %q", a.Label, a.Company)
		}
		h.Advance(3 * time.Second)
		h.Expect("UPDATE SIP/201 up/up caller")
		h.D.RemoteHangup(h.T, a.UID)
		h.Expect("UPDATE SIP/201 dead/dead caller cause=16")
	}},
	{"external rejects with a cause", func(h *H) {
		h.D.SetNumberBehaviour(h.T, "+4420790001", pbx.Behaviour{Action: pbx.ActionManual})
		a := h.Dial("SIP/201", "+4420790001")
		// Manual: rings until told, past any rule's delay (not past the
		// ring timeout: there a SIP switch gives up on the trunk's call).
		h.Advance(h.E.RingTimeout() - time.Second)
		h.Expect("NEW SIP/201 dial/dial caller", "UPDATE SIP/201 ring/ring caller")
		h.D.RemoteReject(h.T, a.UID, 34)
		h.Expect("UPDATE SIP/201 dead/dead caller cause=34")
		a = h.Last(a.UID)
		if a.CauseText() != "Circuit/channel congestion" {
			h.T.Errorf("cause text %q", a.CauseText())
		}
	}},
	{"external reject rule", func(h *H) {
		h.Dial("SIP/201", "+15550130")
		h.Skip()
		h.Advance(2 * time.Second)
		h.Expect("UPDATE SIP/201 dead/dead caller cause=21")
	}},
	{"external no-answer rule", func(h *H) {
		h.Dial("SIP/201", "+15550120")
		h.Skip()
		h.Advance(30 * time.Second)
		h.Expect("UPDATE SIP/201 dead/dead caller cause=19")
	}},
	{"manual external answered by the simulator", func(h *H) {
		a := h.Dial("SIP/201", "+15550140")
		h.Skip()
		h.D.RemoteAnswer(h.T, a.UID)
		a = h.Get(a.UID)
		h.Expect("UPDATE SIP/201 up/up caller")
		if a.State != callstore.StateUp {
			h.T.Errorf("state %v", a.State)
		}
	}},
	{"inbound to a device, answered, far end hangs up", func(h *H) {
		calls := h.Inbound("+442079460001", "Carol Client", "201")
		h.Expect("NEW SIP/201 ring/ringing callee")
		b := calls[0]
		if b.Label != "Carol Client" || b.Number != "+442079460001" || b.Company != "default" {
			h.T.Errorf("inbound leg %q %q %q", b.Label, b.Number, b.Company)
		}
		h.AnswerCall(b.UID)
		h.Expect("UPDATE SIP/201 up/up callee")
		h.D.RemoteHangup(h.T, b.UID)
		h.Expect("UPDATE SIP/201 dead/dead callee cause=16")
	}},
	{"inbound abandoned by the far end while ringing", func(h *H) {
		calls := h.Inbound("+442079460001", "", "610")
		h.Skip()
		h.D.RemoteHangup(h.T, calls[0].UID)
		h.Expect("UPDATE SIP/201 dead/dead callee cause=16 | UPDATE SIP/201_2 dead/dead callee cause=16 | UPDATE SIP/202 dead/dead callee cause=16")
	}},
	{"blind transfer", func(h *H) {
		a, b := h.Connect("SIP/201", "202", "SIP/202")
		x, p := h.CC(h.E.Xfer(h.Ctx, b.UID, "301"))
		h.Expect("UPDATE SIP/202 dead/dead callee cause=16 | TRANSFER SIP/201 ring/up caller xfer=2 | NEW SIP/webrtc11 ring/ringing callee")
		if x.State != callstore.StateDead || p.UID != a.UID || p.Label != "Bob Jones" || p.Number != "301" {
			h.T.Errorf("xfer returned %v, %d %q %q", x.State, p.UID, p.Label, p.Number)
		}
		c := h.On("SIP/webrtc11")
		if c.Label != "Alice Smith" || c.Company != "acme" || c.JSState != callstore.JSProgress {
			h.T.Errorf("transfer target leg %q %q %v", c.Label, c.Company, c.JSState)
		}
		h.AnswerCall(c.UID)
		h.Expect("UPDATE SIP/webrtc11 up/up callee | UPDATE SIP/201 up/up caller")
	}},
	{"attended transfer", func(h *H) {
		a, b1 := h.Connect("SIP/201", "202", "SIP/202")
		h.CB(h.E.Hold(h.Ctx, b1.UID))
		b2 := h.Dial("SIP/202", "301")
		c := h.Answer("SIP/webrtc11")
		h.Expect(
			"UPDATE SIP/202 hold/hold callee",
			"NEW SIP/202 dial/dial caller",
			"UPDATE SIP/202 ring/ring caller | NEW SIP/webrtc11 ring/ringing callee",
			"UPDATE SIP/webrtc11 up/up callee | UPDATE SIP/202 up/up caller")
		x1, x2 := h.CC(h.E.AtXfer(h.Ctx, b1.UID, b2.UID))
		h.Expect("UPDATE SIP/202 dead/dead callee cause=16 | UPDATE SIP/202 dead/dead caller cause=16 | TRANSFER SIP/201 up/up caller xfer=2 | TRANSFER SIP/webrtc11 up/up callee xfer=2")
		if !x1.Dead() || !x2.Dead() {
			h.T.Error("transferrer's legs not dead")
		}
		a, _ = h.Store.Get(a.UID)
		c, _ = h.Store.Get(c.UID)
		if a.PeerUID != c.UID || c.PeerUID != a.UID || a.Label != "Bob Jones" || c.Label != "Alice Smith" {
			h.T.Errorf("bridge: %d<->%d labels %q %q", a.PeerUID, c.PeerUID, a.Label, c.Label)
		}
	}},
	{"semi-attended transfer: the target still rings", func(h *H) {
		a, b1 := h.Connect("SIP/201", "202", "SIP/202")
		h.CB(h.E.Hold(h.Ctx, b1.UID))
		b2 := h.Dial("SIP/202", "301")
		h.Skip()
		// Either order: the ringing call may be the first argument.
		x1, x2 := h.CC(h.E.AtXfer(h.Ctx, b2.UID, b1.UID))
		h.Expect("UPDATE SIP/202 dead/dead caller cause=16 | UPDATE SIP/202 dead/dead callee cause=16 | TRANSFER SIP/201 ring/up caller xfer=2 | UPDATE SIP/webrtc11 ring/ringing callee")
		if !x1.Dead() || !x2.Dead() {
			h.T.Error("transferrer's legs not dead")
		}
		c := h.On("SIP/webrtc11")
		a, _ = h.Store.Get(a.UID)
		if a.Label != "Bob Jones" || c.Label != "Alice Smith" || c.Number != "201" {
			h.T.Errorf("while ringing: a sees %q, c sees %q <%s>", a.Label, c.Label, c.Number)
		}
		h.AnswerCall(c.UID)
		h.Expect("UPDATE SIP/webrtc11 up/up callee | UPDATE SIP/201 up/up caller")
		a, _ = h.Store.Get(a.UID)
		if a.PeerUID != c.UID {
			h.T.Errorf("after answer: a bridged to %d, want %d", a.PeerUID, c.UID)
		}
	}},
	{"semi-attended transfer to a ringing external number", func(h *H) {
		a, b1 := h.Connect("SIP/201", "202", "SIP/202")
		h.CB(h.E.Hold(h.Ctx, b1.UID))
		b2 := h.Dial("SIP/202", "+15550140") // manual: rings until driven
		h.Skip()
		h.CC(h.E.AtXfer(h.Ctx, b1.UID, b2.UID))
		h.Expect("UPDATE SIP/202 dead/dead callee cause=16 | UPDATE SIP/202 dead/dead caller cause=16 | TRANSFER SIP/201 ring/up caller xfer=1")
		h.D.RemoteAnswer(h.T, a.UID)
		a = h.Get(a.UID)
		h.Expect("UPDATE SIP/201 up/up caller")
		if a.Number != "+15550140" {
			h.T.Errorf("a talks to %q, want +15550140", a.Number)
		}
	}},
	{"atxfer of two ringing calls", func(h *H) {
		b1 := h.Dial("SIP/202", "201")
		b2 := h.Dial("SIP/202", "301")
		h.Skip()
		_, _, err := h.E.AtXfer(h.Ctx, b1.UID, b2.UID)
		if !errors.Is(err, pbx.ErrBadState) {
			h.T.Errorf("atxfer of two ringing calls: %v, want pbx.ErrBadState", err)
		}
		h.Expect()
	}},
	{"send a ringing inbound call", func(h *H) {
		calls := h.Inbound("+442079460001", "Carol", "202")
		h.Skip()
		old, nw := h.CC(h.E.Send(h.Ctx, calls[0].UID, "201"))
		h.Expect("UPDATE SIP/202 dead/dead callee cause=23 | NEW SIP/201 ring/ringing callee")
		if old.CauseText() != "Redirected to new destination" || nw == nil || nw.Label != "Carol" || nw.Extension.Number != "201" {
			h.T.Errorf("send: %q %+v", old.CauseText(), nw)
		}
	}},
	{"send an internal ringing call", func(h *H) {
		h.Dial("SIP/201", "202")
		h.Skip()
		_, nw := h.CC(h.E.Send(h.Ctx, h.On("SIP/202").UID, "301"))
		h.Expect("UPDATE SIP/202 dead/dead callee cause=23 | UPDATE SIP/201 ring/ring caller | NEW SIP/webrtc11 ring/ringing callee")
		if nw.Label != "Alice Smith" {
			h.T.Errorf("label %q", nw.Label)
		}
	}},
	{"park and pick up", func(h *H) {
		_, b := h.Connect("SIP/201", "202", "SIP/202")
		h.CC(h.E.Xfer(h.Ctx, b.UID, "701"))
		h.Expect("UPDATE SIP/202 dead/dead callee cause=16 | TRANSFER SIP/201 up/up caller xfer=2 | NEW Park/701 park/park callee")
		k := h.On("Park/701")
		if k.Label != "Alice Smith" || k.Extension.Number != "701" {
			h.T.Errorf("parked leg %q", k.Label)
		}
		// The orbit holds one call.
		c := h.Dial("SIP/202", "701")
		h.Expect(
			"NEW SIP/202 dial/dial caller",
			"UPDATE SIP/202 up/up caller | TRANSFER SIP/201 up/up caller xfer=2 | UPDATE Park/701 dead/dead callee cause=16")
		if c.Label != "Alice Smith" {
			h.T.Errorf("picked up %q", c.Label)
		}
		h.None("Park/701")
	}},
	{"pick up an empty orbit", func(h *H) {
		h.Dial("SIP/202", "702")
		h.Expect("NEW SIP/202 dial/dial caller", "UPDATE SIP/202 dead/dead caller cause=18")
	}},
	{"queue", func(h *H) {
		calls := h.Inbound("+442079460001", "Carol", "600")
		h.Expect("NEW Queue/q_600 up/up callee | NEW SIP/201 ring/ringing callee | NEW SIP/202 ring/ringing callee")
		q := calls[0]
		if q.Device != "Queue/q_600" || q.Queue == nil || q.Queue.In != Epoch.Unix() || q.Queue.Name != "Carol" || q.Queue.Number != "+442079460001" {
			h.T.Errorf("queue leg %+v", q)
		}
		m := h.On("SIP/202")
		if m.Queue == nil || m.Queue.In != q.Queue.In || m.Queue.Name != "Carol" || m.Label != "Carol" {
			h.T.Errorf("member leg %+v", m)
		}
		h.Advance(5 * time.Second)
		m = h.AnswerCall(m.UID)
		h.Expect("UPDATE SIP/202 up/up callee | UPDATE SIP/201 dead/dead callee cause=26 | UPDATE Queue/q_600 up/up callee")
		q, _ = h.Store.Get(q.UID)
		if q.Queue.Out != Epoch.Unix()+5 || q.Queue.CallUID != m.UID {
			h.T.Errorf("queue after answer: outq %d qcall %d", q.Queue.Out, q.Queue.CallUID)
		}
		h.Hangup(m.UID)
		h.Expect("UPDATE SIP/202 dead/dead callee cause=16 | UPDATE Queue/q_600 dead/dead callee cause=16")
	}},
	{"internal caller into a queue, nobody answers", func(h *H) {
		h.Dial("SIP/webrtc11", "650")
		h.Expect(
			"NEW SIP/webrtc11 dial/dial caller",
			"UPDATE SIP/webrtc11 up/up caller | NEW Queue/q_650 up/up callee | NEW SIP/302 ring/ringing callee")
		h.Advance(30 * time.Second)
		h.Expect("UPDATE Queue/q_650 dead/dead callee cause=19 | UPDATE SIP/302 dead/dead callee cause=19 | UPDATE SIP/webrtc11 dead/dead caller cause=19")
	}},
	{"ring-all: answered elsewhere", func(h *H) {
		h.Dial("SIP/203", "610")
		h.Expect(
			"NEW SIP/203 dial/dial caller",
			"UPDATE SIP/203 ring/ring caller | NEW SIP/201 ring/ringing callee | NEW SIP/201_2 ring/ringing callee | NEW SIP/202 ring/ringing callee")
		h.Answer("SIP/201_2")
		h.Expect("UPDATE SIP/201_2 up/up callee | UPDATE SIP/201 dead/dead callee cause=26 | UPDATE SIP/202 dead/dead callee cause=26 | UPDATE SIP/203 up/up caller")
		if a := h.On("SIP/203"); a.Label != "Alice Smith" {
			h.T.Errorf("caller sees %q", a.Label)
		}
	}},
	{"ring-all: one declines, the others ring on", func(h *H) {
		h.Inbound("+442079460001", "", "610")
		h.Skip()
		h.Hangup(h.On("SIP/202").UID)
		h.Expect("UPDATE SIP/202 dead/dead callee cause=21")
	}},
	{"hunt group steps through its members", func(h *H) {
		h.Inbound("+442079460001", "", "620")
		h.Expect("NEW SIP/202 ring/ringing callee")
		h.Advance(10 * time.Second)
		h.Expect("UPDATE SIP/202 dead/dead callee cause=19 | NEW SIP/201 ring/ringing callee")
		h.Hangup(h.On("SIP/201").UID) // declined: the next member at once
		h.Expect("UPDATE SIP/201 dead/dead callee cause=21 | NEW SIP/203 ring/ringing callee")
		h.Advance(10 * time.Second)
		h.Expect("UPDATE SIP/203 dead/dead callee cause=19")
	}},
	{"hunt group answered", func(h *H) {
		h.Dial("SIP/303", "670")
		h.Skip()
		h.Answer("SIP/302")
		h.Expect("UPDATE SIP/302 up/up callee | UPDATE SIP/303 up/up caller")
	}},
	{"webrtc mute and dtmf", func(h *H) {
		a := h.Dial("SIP/webrtc11", "+15550140")
		if a.JSState != callstore.JSProgress {
			h.T.Errorf("jsState ringing %v", a.JSState)
		}
		h.D.RemoteAnswer(h.T, a.UID)
		a = h.Get(a.UID)
		if a.JSState != callstore.JSConfirmed || !a.JSInfo.Established {
			h.T.Errorf("jsState up %v %+v", a.JSState, a.JSInfo)
		}
		h.Skip()
		a, changed, err := h.E.Mute(h.Ctx, a.UID, true)
		if err != nil || !changed || !a.JSInfo.MutedAudio {
			h.T.Fatalf("mute: %v %v", changed, err)
		}
		if _, changed, _ := h.E.Mute(h.Ctx, a.UID, true); changed {
			h.T.Error("mute twice changed")
		}
		h.C(h.E.Dtmf(h.Ctx, a.UID, "1"))
		a = h.C(h.E.Dtmf(h.Ctx, a.UID, "#"))
		h.Expect("UPDATE SIP/webrtc11 up/up caller", "UPDATE SIP/webrtc11 up/up caller", "UPDATE SIP/webrtc11 up/up caller")
		if a.DTMF != "1#" || !a.HasDTMF {
			h.T.Errorf("dtmf %q %v", a.DTMF, a.HasDTMF)
		}
		a = h.CB(h.E.Hold(h.Ctx, a.UID))
		if !a.JSInfo.HoldLocal || !a.JSInfo.MutedAudio {
			h.T.Errorf("jsInfo on hold %+v", a.JSInfo)
		}
		a = h.Hangup(a.UID)
		if a.JSState != callstore.JSTerminated || !a.JSInfo.Ended {
			h.T.Errorf("jsState dead %v %+v", a.JSState, a.JSInfo)
		}
	}},
	{"webrtc busy", func(h *H) {
		a := h.DialRefused("SIP/webrtc11", "+15550110")
		h.ExpectRefusedOut("SIP/webrtc11", pbx.CauseUserBusy)
		if a = h.Last(a.UID); a.JSState != callstore.JSBusy || !a.JSInfo.Ended {
			h.T.Errorf("jsState %v", a.JSState)
		}
	}},
	{"autohold", func(h *H) {
		a, _ := h.Connect("SIP/201", "202", "SIP/202")
		h.C(h.E.Dial(h.Ctx, "SIP/201", "+15550140", pbx.DialOptions{AutoHold: true}))
		h.Expect(
			"UPDATE SIP/201 hold/hold caller | NEW SIP/201 dial/dial caller",
			"UPDATE SIP/201 ring/ring caller")
		_ = a
	}},
	{"device lamp follows its calls", func(h *H) {
		st := func(dev string) pbx.BLF {
			s, err := h.E.DeviceState(dev)
			if err != nil {
				h.T.Fatal(err)
			}
			return s.BLF
		}
		if st("SIP/202") != pbx.BLFIdle {
			h.T.Error("not idle")
		}
		a := h.Dial("SIP/201", "202")
		if st("SIP/202") != pbx.BLFRinging || st("SIP/201") != pbx.BLFBusy {
			h.T.Errorf("ringing: %v %v", st("SIP/202"), st("SIP/201"))
		}
		h.Answer("SIP/202")
		h.Dial("SIP/203", "202")
		if st("SIP/202") != pbx.BLFBusyRinging {
			h.T.Errorf("busy+ringing: %v", st("SIP/202"))
		}
		if got := pbx.BLFOf(h.Store.ByDevice("SIP/202")); got != pbx.BLFBusyRinging {
			h.T.Errorf("BLFOf = %v", got)
		}
		h.Hangup(a.UID)
		if s, _ := h.E.DeviceState("Park/701"); s.Status != pbx.StatusUnknown {
			h.T.Errorf("park status %v", s.Status)
		}
		if s, _ := h.E.DeviceState("SIP/201"); s.Status != pbx.StatusUp || s.BLF != pbx.BLFIdle {
			h.T.Errorf("201 %+v", s)
		}
	}},
	{"blind transfer between desk phones", func(h *H) {
		a, b := h.Connect("SIP/201", "202", "SIP/202")
		h.CC(h.E.Xfer(h.Ctx, b.UID, "203"))
		h.Expect("UPDATE SIP/202 dead/dead callee cause=16 | TRANSFER SIP/201 ring/up caller xfer=2 | NEW SIP/203 ring/ringing callee")
		h.Answer("SIP/203")
		h.Expect("UPDATE SIP/203 up/up callee | UPDATE SIP/201 up/up caller")
		if a = h.Get(a.UID); a.PeerUID != h.On("SIP/203").UID {
			h.T.Errorf("a bridged to %d after the transfer", a.PeerUID)
		}
		h.D.HangUp(h.T, h.On("SIP/203").UID)
		h.Expect("UPDATE SIP/203 dead/dead callee cause=16 | UPDATE SIP/201 dead/dead caller cause=16")
	}},
	{"attended transfer between desk phones", func(h *H) {
		_, b1 := h.Connect("SIP/201", "202", "SIP/202")
		h.CB(h.E.Hold(h.Ctx, b1.UID))
		h.Skip()
		b2 := h.Dial("SIP/202", "203")
		h.Skip()
		h.Answer("SIP/203")
		h.Skip()
		h.CC(h.E.AtXfer(h.Ctx, b1.UID, b2.UID))
		h.Expect("UPDATE SIP/202 dead/dead callee cause=16 | UPDATE SIP/202 dead/dead caller cause=16 | TRANSFER SIP/201 up/up caller xfer=2 | TRANSFER SIP/203 up/up callee xfer=2")
		h.D.HangUp(h.T, h.On("SIP/201").UID)
		h.Expect("UPDATE SIP/201 dead/dead caller cause=16 | UPDATE SIP/203 dead/dead callee cause=16")
	}},
	{"semi-attended transfer between desk phones", func(h *H) {
		a, b1 := h.Connect("SIP/201", "202", "SIP/202")
		h.CB(h.E.Hold(h.Ctx, b1.UID))
		b2 := h.Dial("SIP/202", "203")
		h.Skip()
		h.CC(h.E.AtXfer(h.Ctx, b2.UID, b1.UID))
		h.Expect("UPDATE SIP/202 dead/dead caller cause=16 | UPDATE SIP/202 dead/dead callee cause=16 | TRANSFER SIP/201 ring/up caller xfer=2 | UPDATE SIP/203 ring/ringing callee")
		c := h.AnswerCall(h.On("SIP/203").UID)
		h.Expect("UPDATE SIP/203 up/up callee | UPDATE SIP/201 up/up caller")
		if a = h.Get(a.UID); a.PeerUID != c.UID || c.Label != "Alice Smith" {
			h.T.Errorf("after answer: 201 bridged to %d (want %d), 203 sees %q", a.PeerUID, c.UID, c.Label)
		}
	}},
	{"atxfer of two ringing calls between desk phones", func(h *H) {
		b1 := h.Dial("SIP/202", "201")
		b2 := h.Dial("SIP/202", "203")
		h.Skip()
		if _, _, err := h.E.AtXfer(h.Ctx, b1.UID, b2.UID); !errors.Is(err, pbx.ErrBadState) {
			h.T.Errorf("atxfer of two ringing calls: %v, want pbx.ErrBadState", err)
		}
		h.Expect()
		// The phones decline: the calls end by the phones' own signalling.
		h.D.HangUp(h.T, h.On("SIP/201").UID)
		h.D.HangUp(h.T, h.On("SIP/203").UID)
		h.Expect("UPDATE SIP/201 dead/dead callee cause=21 | UPDATE SIP/202 dead/dead caller cause=21",
			"UPDATE SIP/203 dead/dead callee cause=21 | UPDATE SIP/202 dead/dead caller cause=21")
	}},
	{"send a ringing call between desk phones", func(h *H) {
		a := h.Dial("SIP/201", "202")
		h.Skip()
		old, nw := h.CC(h.E.Send(h.Ctx, h.On("SIP/202").UID, "203"))
		h.Expect("UPDATE SIP/202 dead/dead callee cause=23 | UPDATE SIP/201 ring/ring caller | NEW SIP/203 ring/ringing callee")
		if old.CauseText() != "Redirected to new destination" || nw.Label != "Alice Smith" || nw.Extension.Number != "203" {
			h.T.Errorf("send: %q, new leg %q ext %+v", old.CauseText(), nw.Label, nw.Extension)
		}
		if a = h.Get(a.UID); a.Label != "Meeting room" {
			h.T.Errorf("the caller sees %q, want the new destination", a.Label)
		}
		h.AnswerCall(nw.UID)
		h.Expect("UPDATE SIP/203 up/up callee | UPDATE SIP/201 up/up caller")
	}},
	{"talk answers a ringing phone remotely", func(h *H) {
		h.Dial("SIP/201", "202")
		h.Skip()
		b := h.Talk(h.On("SIP/202").UID)
		h.Expect("UPDATE SIP/202 up/up callee | UPDATE SIP/201 up/up caller")
		if b.State != callstore.StateUp {
			h.T.Errorf("talk returned %v, want up", b.State)
		}
	}},
	{"phone hangs up an answered call", func(h *H) {
		a, _ := h.Connect("SIP/201", "202", "SIP/202")
		h.D.HangUp(h.T, a.UID)
		h.Expect("UPDATE SIP/201 dead/dead caller cause=16 | UPDATE SIP/202 dead/dead callee cause=16")
	}},
	{"phone abandons its call while it rings", func(h *H) {
		a := h.Dial("SIP/201", "202")
		h.Skip()
		h.D.HangUp(h.T, a.UID)
		h.Expect("UPDATE SIP/201 dead/dead caller cause=16 | UPDATE SIP/202 dead/dead callee cause=16")
	}},
	{"phone busy", func(h *H) {
		h.Dial("SIP/201", "202")
		h.Skip()
		h.D.Refuse(h.T, h.On("SIP/202").UID, pbx.CauseUserBusy)
		h.Expect("UPDATE SIP/202 dead/dead callee cause=17 | UPDATE SIP/201 dead/dead caller cause=17")
	}},
	{"phone declines", func(h *H) {
		h.Dial("SIP/201", "202")
		h.Skip()
		h.D.HangUp(h.T, h.On("SIP/202").UID)
		h.Expect("UPDATE SIP/202 dead/dead callee cause=21 | UPDATE SIP/201 dead/dead caller cause=21")
	}},
	{"phone holds and resumes", func(h *H) {
		a, b := h.Connect("SIP/201", "202", "SIP/202")
		h.D.Hold(h.T, b.UID, true)
		h.Expect("UPDATE SIP/202 hold/hold callee")
		if a = h.Get(a.UID); a.State != callstore.StateUp {
			h.T.Errorf("held party's leg is %v, want up", a.State)
		}
		h.D.Hold(h.T, b.UID, false)
		h.Expect("UPDATE SIP/202 up/up callee")
	}},
}

// DialRefused is Dial of a number whose far end refuses at once: the
// call it returns was the committed value when Dial returned, but the
// refusal may have ended it before the harness looks (a far end that
// answers the switch's INVITE at once), so only the error is checked.
func (h *H) DialRefused(dev, number string) *callstore.Call {
	h.T.Helper()
	a, err := h.E.Dial(h.Ctx, dev, number, pbx.DialOptions{})
	if err != nil {
		h.T.Fatalf("unexpected error: %v", err)
	}
	return a
}

// ExpectRefusedOut checks the revisions of a call from dev that the
// external number refuses with a cause: the caller's leg is created, and
// ends with the cause. A driver that knows the refusal before it signals
// (the simulator's busy numbers: Driver.Refuse) ends it at once; one that
// learns it from the far end's answer to its INVITE (the SIP trunk's 486)
// shows the leg ringing first, as the caller's phone hears ringback
// before the busy tone. Either is the call model; nothing else is.
func (h *H) ExpectRefusedOut(dev string, cause int32) {
	h.T.Helper()
	dial := fmt.Sprintf("NEW %s dial/dial caller", dev)
	ring := fmt.Sprintf("UPDATE %s ring/ring caller", dev)
	dead := fmt.Sprintf("UPDATE %s dead/dead caller cause=%d", dev, cause)
	got := h.Revs(2)
	if len(got) == 2 && got[1] == ring { // the refusal is still on its way
		got = append(got, h.Revs(1)...)
	}
	switch strings.Join(got, "\n") {
	case dial + "\n" + dead, dial + "\n" + ring + "\n" + dead:
	default:
		h.T.Errorf("revisions:\ngot:\n  %s\nwant:\n  %s\n(or with %q between)", strings.Join(got, "\n  "), dial+"\n  "+dead, ring)
	}
}

// Last returns the last value of a leg the harness saw in an event (dead
// legs included).
func (h *H) Last(uid int64) *callstore.Call {
	h.T.Helper()
	evs := h.events[uid]
	if len(evs) == 0 {
		h.T.Fatalf("no event seen for call %d", uid)
	}
	return evs[len(evs)-1].Call
}

// AnswerCall: the phone of a ringing leg answers it.
func (h *H) AnswerCall(uid int64) *callstore.Call {
	h.T.Helper()
	h.D.Answer(h.T, uid)
	return h.Get(uid)
}
