package server_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"callcontrold/callstore"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/server"
)

// flowWatchers are the watches open during every flow: each login
// unfiltered, plus filtered views that make calls enter and leave.
var flowWatchers = []struct {
	name string
	view view
}{
	{"admin", view{login: "admin"}},
	{"sysadmin", view{login: "sysadmin"}},
	{"acme-admin", view{login: "acme-admin"}},
	{"alice", view{login: "alice"}},
	{"bob", view{login: "bob"}},
	// A state filter: hold makes a call LEAVE, talk makes it ENTER again.
	{"alice up-only", view{login: "alice", filter: &callcontrolv1.CallFilter{States: []callcontrolv1.State{callcontrolv1.State_STATE_UP}}}},
	// Ringing and dead: a dead call that was up ENTERS with state dead.
	{"acme-admin ring|dead", view{login: "acme-admin", filter: &callcontrolv1.CallFilter{States: []callcontrolv1.State{callcontrolv1.State_STATE_RING, callcontrolv1.State_STATE_DEAD}}}},
	// A company filter on top of the sys-admin's "see everything".
	{"sysadmin acme", view{login: "sysadmin", filter: &callcontrolv1.CallFilter{Companies: []string{"acme"}}}},
	// A company filter bob may not widen: default stays invisible.
	{"bob default", view{login: "bob", filter: &callcontrolv1.CallFilter{Companies: []string{"default", "acme"}}}},
	// Devices and event types.
	{"admin SIP/201 new|transfer", view{login: "admin", filter: &callcontrolv1.CallFilter{
		Devices:    []string{"SIP/201", "SIP/webrtc11"},
		EventTypes: []callcontrolv1.EventType{callcontrolv1.EventType_EVENT_TYPE_NEW, callcontrolv1.EventType_EVENT_TYPE_TRANSFER},
	}}},
}

// flowString is an event in the notation of pbx's flow tests, without
// uids: "TRANSFER SIP/201 up xfer=2".
func flowString(e *callcontrolv1.CallEvent) string {
	c := e.GetCall()
	s := fmt.Sprintf("%s %s %s", typeNames[e.GetType()], c.GetDevice(), stateNames[c.GetState()])
	if c.GetCause() != 0 {
		s += fmt.Sprintf(" cause=%d", c.GetCause())
	}
	if xd := c.GetXferData(); xd != nil {
		s += fmt.Sprintf(" xfer=%d", len(xd.GetCalls()))
	}
	return s
}

func flowStrings(bs []*callcontrolv1.EventBatch) []string {
	var out []string
	for _, b := range bs {
		var evs []string
		for _, e := range b.GetEvents() {
			evs = append(evs, flowString(e))
		}
		out = append(out, strings.Join(evs, " | "))
	}
	return out
}

// connect: caller dials number from device, callee answers on its device.
// Three revisions: dial, ring, answer.
func connect(h *harness, caller, device, number, callee, calleeDevice string) (a, b *callcontrolv1.Call, revs []string) {
	h.t.Helper()
	a = h.dialCall(caller, device, number)
	b = h.talk(callee, h.on(calleeDevice).GetUid())
	return a, b, []string{
		"NEW " + device + " dial",
		"UPDATE " + device + " ring | NEW " + calleeDevice + " ring",
		"UPDATE " + calleeDevice + " up | UPDATE " + device + " up",
	}
}

// flowResult is what a flow expects the admin's unfiltered watcher to see
// (one line per revision), and optional checks on every watcher's batches.
type flowResult struct {
	admin []string
	check func(t *testing.T, got map[string][]*callcontrolv1.EventBatch)
}

// The call flows of the simulated switch (answer, hold, mute and dtmf,
// transfers, send, ring-all, hunt, queue, park), driven through the API by the
// owning users while every login watches. Each watcher must see exactly
// its share of the store's revisions (the visibility table, its filter),
// with the right event types and view changes, in revision order, one frame
// per revision; the admin's frames must also match the flow step by step.
func TestFlowsWatchedByEveryLogin(t *testing.T) {
	flows := []struct {
		name string
		run  func(h *harness) flowResult
	}{
		{"internal call: answer, hold, talk, hangup", func(h *harness) flowResult {
			a, b, revs := connect(h, "alice", "SIP/201", "202", "admin", "SIP/202")
			if b.GetState() != callcontrolv1.State_STATE_UP || b.GetName() != "Alice Smith" {
				h.t.Errorf("answered call: %v", b)
			}
			r := h.hold("alice", a.GetUid())
			if r.GetAlreadyApplied() || r.GetCall().GetState() != callcontrolv1.State_STATE_HOLD {
				h.t.Errorf("hold: %v", r)
			}
			if r := h.hold("alice", a.GetUid()); !r.GetAlreadyApplied() {
				h.t.Errorf("second hold: already_applied false")
			}
			h.talk("alice", a.GetUid())
			h.hold("admin", b.GetUid())
			h.talk("admin", b.GetUid())
			end := h.hangup("alice", a.GetUid())
			if end.GetState() != callcontrolv1.State_STATE_DEAD || end.GetCause() != 16 || end.GetCauseTxt() != "Normal Clearing" {
				h.t.Errorf("hangup returned %v", end)
			}
			return flowResult{admin: append(revs,
				"UPDATE SIP/201 hold",
				"UPDATE SIP/201 up",
				"UPDATE SIP/202 hold",
				"UPDATE SIP/202 up",
				"UPDATE SIP/201 dead cause=16 | UPDATE SIP/202 dead cause=16")}
		}},
		{"cross-company call to a WebRTC phone: mute and dtmf", func(h *harness) flowResult {
			a, b, revs := connect(h, "alice", "SIP/201", "301", "bob", "SIP/webrtc11")
			m, err := h.as("bob").calls.Mute(h.ctx(), &callcontrolv1.MuteRequest{Uid: b.GetUid(), Mute: true})
			if err != nil || m.GetAlreadyApplied() || !m.GetCall().GetJsInfo().GetMuted().GetAudio() {
				h.t.Fatalf("mute: %v %v", m, err)
			}
			m, err = h.as("bob").calls.Mute(h.ctx(), &callcontrolv1.MuteRequest{Uid: b.GetUid(), Mute: true})
			if err != nil || !m.GetAlreadyApplied() {
				h.t.Fatalf("mute again: %v %v", m, err)
			}
			var d *callcontrolv1.DtmfResponse
			for _, tone := range []string{"5", "#"} {
				if d, err = h.as("bob").calls.Dtmf(h.ctx(), &callcontrolv1.DtmfRequest{Uid: b.GetUid(), Tone: tone}); err != nil {
					h.t.Fatal(err)
				}
			}
			if d.GetCall().DtmfString == nil || d.GetCall().GetDtmfString() != "5#" {
				h.t.Errorf("dtmf_string %v, want 5#", d.GetCall().DtmfString)
			}
			if c := d.GetCall(); c.GetJsState() != callcontrolv1.JsState_JS_STATE_CONFIRMED || !c.GetJsInfo().GetEstablished() {
				h.t.Errorf("WebRTC leg js %v %v", c.GetJsState(), c.GetJsInfo())
			}
			h.hangup("bob", b.GetUid())
			_ = a
			return flowResult{admin: append(revs,
				"UPDATE SIP/webrtc11 up",
				"UPDATE SIP/webrtc11 up",
				"UPDATE SIP/webrtc11 up",
				"UPDATE SIP/webrtc11 dead cause=16 | UPDATE SIP/201 dead cause=16")}
		}},
		{"blind transfer", func(h *harness) flowResult {
			a, b, revs := connect(h, "alice", "SIP/201", "202", "admin", "SIP/202")
			r, err := h.as("admin").calls.Xfer(h.ctx(), &callcontrolv1.XferRequest{Uid: b.GetUid(), Number: "301"})
			if err != nil {
				h.t.Fatal(err)
			}
			if r.GetCall().GetState() != callcontrolv1.State_STATE_DEAD || r.GetTransferredCall().GetUid() != a.GetUid() ||
				r.GetTransferredCall().GetLabel() != "Bob Jones" {
				h.t.Errorf("xfer returned %v", r)
			}
			c := h.talk("bob", h.on("SIP/webrtc11").GetUid())
			h.hangup("alice", a.GetUid())
			return flowResult{
				admin: append(revs,
					"UPDATE SIP/202 dead cause=16 | TRANSFER SIP/201 ring xfer=2 | NEW SIP/webrtc11 ring",
					"UPDATE SIP/webrtc11 up | UPDATE SIP/201 up",
					"UPDATE SIP/201 dead cause=16 | UPDATE SIP/webrtc11 dead cause=16"),
				check: func(t *testing.T, got map[string][]*callcontrolv1.EventBatch) {
					xd := got["admin"][3].GetEvents()[1].GetCall().GetXferData()
					want := []*callcontrolv1.CallRef{{Uid: a.GetUid(), Id: a.GetId(), Device: "SIP/201"}, {Uid: c.GetUid(), Id: c.GetId(), Device: "SIP/webrtc11"}}
					if !proto.Equal(xd, &callcontrolv1.XferData{Calls: want}) {
						t.Errorf("xfer_data %v, want %v", xd, want)
					}
				},
			}
		}},
		{"attended transfer", func(h *harness) flowResult {
			a, b1, revs := connect(h, "alice", "SIP/201", "202", "admin", "SIP/202")
			h.hold("admin", b1.GetUid())
			b2 := h.dialCall("admin", "SIP/202", "301")
			c := h.talk("bob", h.on("SIP/webrtc11").GetUid())
			r, err := h.as("admin").calls.AtXfer(h.ctx(), &callcontrolv1.AtXferRequest{Uid: b1.GetUid(), TargetUid: b2.GetUid()})
			if err != nil {
				h.t.Fatal(err)
			}
			if r.GetCall().GetState() != callcontrolv1.State_STATE_DEAD || r.GetTargetCall().GetState() != callcontrolv1.State_STATE_DEAD {
				h.t.Errorf("atxfer returned %v", r)
			}
			h.hangup("bob", c.GetUid())
			return flowResult{
				admin: append(revs,
					"UPDATE SIP/202 hold",
					"NEW SIP/202 dial",
					"UPDATE SIP/202 ring | NEW SIP/webrtc11 ring",
					"UPDATE SIP/webrtc11 up | UPDATE SIP/202 up",
					"UPDATE SIP/202 dead cause=16 | UPDATE SIP/202 dead cause=16 | TRANSFER SIP/201 up xfer=2 | TRANSFER SIP/webrtc11 up xfer=2",
					"UPDATE SIP/webrtc11 dead cause=16 | UPDATE SIP/201 dead cause=16"),
				check: func(t *testing.T, got map[string][]*callcontrolv1.EventBatch) {
					evs := got["admin"][7].GetEvents()
					want := &callcontrolv1.XferData{Calls: []*callcontrolv1.CallRef{
						{Uid: a.GetUid(), Id: a.GetId(), Device: "SIP/201"}, {Uid: c.GetUid(), Id: c.GetId(), Device: "SIP/webrtc11"}}}
					for _, e := range evs[2:] {
						if !proto.Equal(e.GetCall().GetXferData(), want) {
							t.Errorf("%s: xfer_data %v, want %v", e.GetCall().GetDevice(), e.GetCall().GetXferData(), want)
						}
					}
					// Each remaining party now shows the other as remote.
					if evs[2].GetCall().GetLabel() != "Bob Jones" || evs[3].GetCall().GetLabel() != "Alice Smith" {
						t.Errorf("labels after atxfer: %q, %q", evs[2].GetCall().GetLabel(), evs[3].GetCall().GetLabel())
					}
				},
			}
		}},
		{"send a ringing inbound call (admin) to another company's phone", func(h *harness) flowResult {
			in := h.inbound("+442079460001", "Carol", "202")
			r, err := h.as("admin").calls.Send(h.ctx(), &callcontrolv1.SendRequest{Uid: in[0].GetUid(), Number: "302"})
			if err != nil {
				h.t.Fatal(err)
			}
			if r.GetCall().GetCause() != 23 || r.GetCall().GetCauseTxt() != "Redirected to new destination" ||
				r.GetNewCall().GetDevice() != "SIP/302" || r.GetNewCall().GetLabel() != "Carol" {
				h.t.Errorf("send returned %v", r)
			}
			h.talk("acme-admin", r.GetNewCall().GetUid())
			h.hangup("acme-admin", r.GetNewCall().GetUid())
			return flowResult{admin: []string{
				"NEW SIP/202 ring",
				"UPDATE SIP/202 dead cause=23 | NEW SIP/302 ring",
				"UPDATE SIP/302 up",
				"UPDATE SIP/302 dead cause=16",
			}}
		}},
		{"ring-all: answered elsewhere", func(h *harness) flowResult {
			h.inbound("+442079460001", "", "610")
			h.talk("alice", h.on("SIP/201_2").GetUid())
			h.hangup("alice", h.on("SIP/201_2").GetUid())
			// An acme ring-all dialled by bob, answered by acme-admin.
			h.dialCall("bob", "SIP/webrtc11", "660")
			h.talk("acme-admin", h.on("SIP/302").GetUid())
			h.hangup("bob", h.on("SIP/webrtc11").GetUid())
			return flowResult{admin: []string{
				"NEW SIP/201 ring | NEW SIP/201_2 ring | NEW SIP/202 ring",
				"UPDATE SIP/201_2 up | UPDATE SIP/201 dead cause=26 | UPDATE SIP/202 dead cause=26",
				"UPDATE SIP/201_2 dead cause=16",
				"NEW SIP/webrtc11 dial",
				"UPDATE SIP/webrtc11 ring | NEW SIP/302 ring | NEW SIP/303 ring",
				"UPDATE SIP/302 up | UPDATE SIP/303 dead cause=26 | UPDATE SIP/webrtc11 up",
				"UPDATE SIP/webrtc11 dead cause=16 | UPDATE SIP/302 dead cause=16",
			}}
		}},
		{"hunt group steps to the next member", func(h *harness) flowResult {
			h.inbound("+442079460001", "", "620")
			h.clock.Advance(10 * time.Second) // 202 does not answer in its step
			b := h.talk("alice", h.on("SIP/201").GetUid())
			h.hangup("alice", b.GetUid())
			return flowResult{admin: []string{
				"NEW SIP/202 ring",
				"UPDATE SIP/202 dead cause=19 | NEW SIP/201 ring",
				"UPDATE SIP/201 up",
				"UPDATE SIP/201 dead cause=16",
			}}
		}},
		{"queue", func(h *harness) flowResult {
			in := h.inbound("+442079460001", "Carol", "600")
			q := in[0]
			if q.GetDevice() != "Queue/q_600" || q.GetQname() != "Carol" || q.GetInq() == nil {
				h.t.Errorf("queue leg %v", q)
			}
			h.clock.Advance(5 * time.Second)
			m := h.talk("admin", h.on("SIP/202").GetUid())
			h.hangup("admin", m.GetUid())
			return flowResult{
				admin: []string{
					"NEW Queue/q_600 up | NEW SIP/201 ring | NEW SIP/202 ring",
					"UPDATE SIP/202 up | UPDATE SIP/201 dead cause=26 | UPDATE Queue/q_600 up",
					"UPDATE SIP/202 dead cause=16 | UPDATE Queue/q_600 dead cause=16",
				},
				check: func(t *testing.T, got map[string][]*callcontrolv1.EventBatch) {
					for _, who := range []string{"admin", "alice"} {
						qc := got[who][1].GetEvents()[2].GetCall()
						if qc.GetQcall().GetUid() != m.GetUid() || qc.GetQcall().GetDevice() != "SIP/202" || qc.GetOutq() == nil {
							t.Errorf("%s: queue call after answer: qcall %v outq %v", who, qc.GetQcall(), qc.GetOutq())
						}
						mc := got[who][1].GetEvents()[0].GetCall()
						if mc.GetInq() == nil || mc.GetQname() != "Carol" {
							t.Errorf("%s: agent leg inq %v qname %q", who, mc.GetInq(), mc.GetQname())
						}
					}
				},
			}
		}},
		{"park and pick up", func(h *harness) flowResult {
			a, b, revs := connect(h, "alice", "SIP/201", "202", "admin", "SIP/202")
			if _, err := h.as("admin").calls.Xfer(h.ctx(), &callcontrolv1.XferRequest{Uid: b.GetUid(), Number: "701"}); err != nil {
				h.t.Fatal(err)
			}
			k := h.on("Park/701")
			if k.GetState() != callcontrolv1.State_STATE_PARK || k.GetLabel() != "Alice Smith" {
				h.t.Errorf("parked leg %v", k)
			}
			c := h.dialCall("admin", "SIP/202", "701")
			if c.GetState() != callcontrolv1.State_STATE_UP || c.GetLabel() != "Alice Smith" {
				h.t.Errorf("pickup returned %v", c)
			}
			h.hangup("alice", a.GetUid())
			return flowResult{admin: append(revs,
				"UPDATE SIP/202 dead cause=16 | TRANSFER SIP/201 up xfer=2 | NEW Park/701 park",
				"NEW SIP/202 dial",
				"UPDATE SIP/202 up | TRANSFER SIP/201 up xfer=2 | UPDATE Park/701 dead cause=16",
				"UPDATE SIP/201 dead cause=16 | UPDATE SIP/202 dead cause=16")}
		}},
	}
	for _, fl := range flows {
		t.Run(fl.name, func(t *testing.T) {
			h := newHarness(t, withConfig(func(c *server.Config) { c.ProgressInterval = 20 * time.Millisecond }))
			tr := h.truth()
			ws := make([]*watcher, len(flowWatchers))
			starts := make([]int64, len(flowWatchers))
			for i, fw := range flowWatchers {
				ws[i] = h.watch(fw.view.login, &callcontrolv1.WatchCallsRequest{Filter: fw.view.filter})
				st, snap, end := ws[i].start()
				if len(snap) != 0 || end.GetResumeToken() == "" {
					t.Fatalf("%s: snapshot of %d calls, token %q", fw.name, len(snap), end.GetResumeToken())
				}
				if !proto.Equal(st.GetProgressInterval(), durationpb.New(20*time.Millisecond)) {
					t.Errorf("%s: progress_interval %v", fw.name, st.GetProgressInterval())
				}
				starts[i] = st.GetRevision()
			}
			res := fl.run(h)
			final := tr.collect()
			got := map[string][]*callcontrolv1.EventBatch{}
			for i, fw := range flowWatchers {
				got[fw.name] = ws[i].until(final)
			}
			if d := diffLines(flowStrings(got["admin"]), res.admin); d != "" {
				t.Errorf("admin's frames do not follow the flow:\n%s", d)
			}
			for i, fw := range flowWatchers {
				want := tr.expect(fw.view, starts[i])
				if d := diffLines(gotStrings(got[fw.name]), wantStrings(want)); d != "" {
					t.Errorf("%s sees the wrong events:\n%s", fw.name, d)
					continue
				}
				checkContents(t, fw.name, fw.view.login, got[fw.name], want)
			}
			if res.check != nil && !t.Failed() {
				res.check(t, got)
			}
		})
	}
}

// checkContents compares the calls a watcher received with the store's
// values, field by field (the wire form of callstore.Call).
func checkContents(t *testing.T, name, login string, got []*callcontrolv1.EventBatch, want []expBatch) {
	t.Helper()
	for i, b := range got {
		if b.GetResumeToken() == "" {
			t.Errorf("%s: r%d without a resume token", name, b.GetRevision())
		}
		for j, e := range b.GetEvents() {
			g, w := e.GetCall(), want[i].events[j].call
			owner := ""
			if g.GetOwner() != nil {
				owner = g.GetOwner().GetLogin()
			}
			type fields struct {
				ID, CID, Device, DevCompany, Label, Name, Number, Company, CauseTxt, Owner string
				Party, NR, JS                                                              int32
				OwnerID                                                                    int64
				Stamp, Start                                                               int64
			}
			gf := fields{g.GetId(), g.GetCid(), g.GetDevice(), g.GetDeviceCompany(), g.GetLabel(), g.GetName(), g.GetNumber(), g.GetCompany(), g.GetCauseTxt(), owner,
				int32(g.GetParty()), int32(g.GetNrState()), int32(g.GetJsState()), g.GetOwnerId(), tsMillis(g.GetStamp().AsTime(), g.GetStamp() != nil), tsMillis(g.GetStart().AsTime(), g.GetStart() != nil)}
			wf := fields{w.ID, w.CID, w.Device, w.DeviceCompany, w.Label, w.Name, w.Number, w.Company, w.CauseText(), w.OwnerLogin,
				int32(w.Party), int32(w.NRState), int32(w.JSState), w.OwnerID, w.StampMillis, w.StartMillis}
			if gf != wf {
				t.Errorf("%s: r%d event %d: call\n got %+v\nwant %+v", name, b.GetRevision(), j, gf, wf)
			}
			if w.Queue != nil && w.Queue.CallUID != 0 && login != "bob" && login != "acme-admin" && g.GetQcall().GetUid() != w.Queue.CallUID && w.State != callstore.StateDead {
				t.Errorf("%s: r%d event %d: qcall %v, want uid %d", name, b.GetRevision(), j, g.GetQcall(), w.Queue.CallUID)
			}
		}
	}
}

func tsMillis(t time.Time, set bool) int64 {
	if !set {
		return 0
	}
	return t.UnixMilli()
}
