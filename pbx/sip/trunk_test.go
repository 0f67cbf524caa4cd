package sip

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	sipmsg "github.com/emiago/sipgo/sip"

	"callcontrold/callstore"
	"callcontrold/directory"
	"callcontrold/pbx"
	"callcontrold/pbx/pbxtest"
)

// trunkHost is the test trunk's address: another loopback address than
// the phones', since a trunk is recognised by its source address.
const trunkHost = "127.0.0.2"

// startTrunkSwitch starts a switch whose trunk is an in-process sipgo
// user agent on trunkHost: it rings on the switch's INVITEs until the
// test decides, and calls in from outside numbers.
func startTrunkSwitch(t *testing.T, dir *directory.Directory, store *callstore.Store, clock pbx.Clock) (*Switch, *softphone) {
	t.Helper()
	tr := newSoftphoneOn(t, netip.AddrPort{}, "trunk", trunkHost)
	sw, err := NewSwitch(dir, store, Config{Addr: "127.0.0.1:0", Engine: pbx.Options{Clock: clock}, Logger: quietLog(t),
		Trunk: &TrunkConfig{URI: fmt.Sprintf("sip:%s:%d", trunkHost, tr.port)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sw.Close(); err != nil {
			t.Errorf("switch close: %v", err)
		}
	})
	tr.sw = sw.Endpoint.Addr()
	return sw, tr
}

// trunkCallEnv is phoneCallEnv with a trunk.
func trunkCallEnv(t *testing.T) (*pbxtest.H, *Switch, map[string]*softphone, *softphone) {
	t.Helper()
	var sw *Switch
	var by map[string]*softphone
	var tr *softphone
	h := pbxtest.New(t, func(t *testing.T, dir *directory.Directory, store *callstore.Store, clock pbx.Clock) pbxtest.Env {
		sw, tr = startTrunkSwitch(t, dir, store, clock)
		by = registerAll(t, sw, dir)
		return pbxtest.Env{Engine: sw.Engine, Driver: &phones{t: t, sw: sw, store: store, by: by, trunk: tr}}
	})
	return h, sw, by, tr
}

// trunkDialog is the Call-ID of the trunk's dialog for the external
// party of a leg.
func (p *phones) trunkDialog(t testing.TB, uid int64) string {
	t.Helper()
	r, err := p.sw.RemoteOf(uid)
	if err != nil {
		t.Fatalf("call %d: %v", uid, err)
	}
	var id string
	until(t, "the trunk's dialog exists", func() bool {
		if d := p.sw.b.leg(remoteKey(r.ID)); d != nil {
			d.mu.Lock()
			id = d.callID
			d.mu.Unlock()
		}
		return id != ""
	})
	return id
}

// Inbound: the trunk calls an extension from a number. The legs are
// the ones ringing for (or queueing) the trunk's call, oldest first.
func (p *phones) Inbound(t testing.TB, from, name, ext string) []*callstore.Call {
	t.Helper()
	id, _ := p.trunk.callFrom(from, name, ext)
	var legs []*callstore.Call
	until(t, "the inbound call is routed", func() bool {
		d := p.sw.b.byCall(id)
		if d == nil || d.remoteID() == 0 {
			return false
		}
		calls, _ := p.store.List(nil, nil, 0, 0)
		legs = slices.DeleteFunc(calls, func(c *callstore.Call) bool {
			r, err := p.sw.RemoteOf(c.UID)
			return err != nil || r.ID != d.remoteID()
		})
		return len(legs) > 0
	})
	slices.SortFunc(legs, func(a, b *callstore.Call) int { return int(a.UID - b.UID) })
	return legs
}

// RemoteAnswer: the number the trunk rings answers.
func (p *phones) RemoteAnswer(t testing.TB, uid int64) {
	t.Helper()
	id := p.trunkDialog(t, uid)
	until(t, "the trunk rings", func() bool { p.trunk.mu.Lock(); defer p.trunk.mu.Unlock(); return p.trunk.ringing[id] != nil })
	p.trunk.answer(id)
	until(t, "the answer", func() bool { c, ok := p.store.Get(uid); return ok && c.NRState == callstore.NRUp })
}

// RemoteReject: the number the trunk rings refuses with the SIP status
// of the cause and the cause itself in a Reason header.
func (p *phones) RemoteReject(t testing.TB, uid int64, cause int32) {
	t.Helper()
	id := p.trunkDialog(t, uid)
	until(t, "the trunk rings", func() bool { p.trunk.mu.Lock(); defer p.trunk.mu.Unlock(); return p.trunk.ringing[id] != nil })
	p.trunk.refuseCause(id, cause)
	p.gone(t, uid)
}

// RemoteHangup: the external party hangs up: BYE when answered,
// CANCEL while its own call rings.
func (p *phones) RemoteHangup(t testing.TB, uid int64) {
	t.Helper()
	id := p.trunkDialog(t, uid)
	p.trunk.mu.Lock()
	_, ringingIn := p.trunk.pending[id]
	p.trunk.mu.Unlock()
	if ringingIn {
		if answered, _ := p.sw.b.byCall(id).state(); answered { // our 2xx is on its way to the trunk
			until(t, "the trunk got the answer", func() bool {
				p.trunk.mu.Lock()
				defer p.trunk.mu.Unlock()
				_, ringing := p.trunk.pending[id]
				return !ringing
			})
			ringingIn = false
		}
	}
	if ringingIn {
		p.trunk.abandon(id)
	} else {
		p.trunk.hangUp(id)
	}
	p.gone(t, uid)
}

// TestTrunkOutbound: an external number goes out through the trunk as
// an INVITE with the caller's description; the trunk's answer, refusal
// or silence becomes the leg's state and cause, and the API's hangup
// ends the trunk's dialog.
func TestTrunkOutbound(t *testing.T) {
	h, _, by, tr := trunkCallEnv(t)
	a := h.Dial("SIP/201", "+15550100")
	h.Expect("NEW SIP/201 dial/dial caller", "UPDATE SIP/201 ring/ring caller")
	id := h.D.(*phones).trunkDialog(t, a.UID)
	until(t, "the trunk rings", func() bool { tr.mu.Lock(); defer tr.mu.Unlock(); return tr.ringing[id] != nil })
	tr.mu.Lock()
	inv := tr.servers[id].InviteRequest
	tr.mu.Unlock()
	if inv.Recipient.User != "+15550100" || inv.From().Address.User != "201" || inv.From().DisplayName != "Alice Smith" {
		t.Errorf("the trunk got INVITE %s from %q <%s>", inv.Recipient.String(), inv.From().DisplayName, inv.From().Address.User)
	}
	if string(inv.Body()) != string(by["SIP/201"].sdp) {
		t.Errorf("the trunk was offered %q, want 201's description", inv.Body())
	}
	h.D.RemoteAnswer(t, a.UID)
	h.Expect("UPDATE SIP/201 up/up caller")
	if got := by["SIP/201"].reinvited(); got != string(tr.sdp) {
		t.Errorf("201 was re-INVITEd with %q, want the trunk's answer", got)
	}
	h.Hangup(a.UID)
	h.Expect("UPDATE SIP/201 dead/dead caller cause=16")
	until(t, "the trunk got BYE", func() bool { tr.mu.Lock(); defer tr.mu.Unlock(); return tr.servers[id] == nil })

	for _, c := range []struct {
		status int
		reason string
		cause  int32
	}{
		{486, "", pbx.CauseUserBusy}, {480, "", pbx.CauseNoAnswer}, {408, "", pbx.CauseNoAnswer},
		{603, "", pbx.CauseRejected}, {404, "", pbx.CauseUnallocated},
		{503, "Q.850;cause=34;text=\"congestion\"", 34}, {500, "SIP;cause=500, Q.850;cause=27", pbx.CauseOutOfOrder},
	} {
		a := h.Dial("SIP/201", "+15550101")
		h.Revs(2)
		id := h.D.(*phones).trunkDialog(t, a.UID)
		until(t, "the trunk rings", func() bool { tr.mu.Lock(); defer tr.mu.Unlock(); return tr.ringing[id] != nil })
		tr.refuseWith(id, c.status, c.reason)
		h.Expect(fmt.Sprintf("UPDATE SIP/201 dead/dead caller cause=%d", c.cause))
	}

	// Nobody answers: the ring timeout CANCELs the trunk's INVITE.
	a = h.Dial("SIP/201", "+15550102")
	h.Revs(2)
	id = h.D.(*phones).trunkDialog(t, a.UID)
	until(t, "the trunk rings", func() bool { tr.mu.Lock(); defer tr.mu.Unlock(); return tr.ringing[id] != nil })
	h.Clock.Advance(h.E.RingTimeout())
	h.Expect("UPDATE SIP/201 dead/dead caller cause=19")
	until(t, "the trunk got CANCEL", func() bool { tr.mu.Lock(); defer tr.mu.Unlock(); return tr.servers[id] == nil })
	h.Check()
}

// TestTrunkPhoneCallsOut: a phone's own INVITE to an external number is
// answered with the trunk's description; the far end's BYE (with a
// Reason) ends the phone's call.
func TestTrunkPhoneCallsOut(t *testing.T) {
	h, _, by, tr := trunkCallEnv(t)
	id, done := by["SIP/202"].call("+4420790001")
	h.Expect("NEW SIP/202 dial/dial caller", "UPDATE SIP/202 ring/ring caller")
	a := h.On("SIP/202")
	h.D.RemoteAnswer(t, a.UID)
	h.Expect("UPDATE SIP/202 up/up caller")
	if err := outcome(t, done); err != nil {
		t.Fatalf("202's INVITE: %v", err)
	}
	by["SIP/202"].mu.Lock()
	cli := by["SIP/202"].clients[id]
	by["SIP/202"].mu.Unlock()
	if got := string(cli.InviteResponse.Body()); got != string(tr.sdp) {
		t.Errorf("202 got %q, want the trunk's description", got)
	}
	h.D.RemoteHangup(t, a.UID)
	h.Expect("UPDATE SIP/202 dead/dead caller cause=16")
	h.Check()
}

// TestTrunkInbound: a call from the trunk rings the dialled extension
// with the trunk's description and the caller's number; the answer
// reaches the trunk with the phone's description; either side hangs up.
func TestTrunkInbound(t *testing.T) {
	h, _, by, tr := trunkCallEnv(t)
	id, done := tr.callFrom("+442079460001", "Carol Client", "202")
	h.Expect("NEW SIP/202 ring/ringing callee")
	b := h.On("SIP/202")
	if b.Label != "Carol Client" || b.Number != "+442079460001" {
		t.Errorf("inbound leg shows %q <%s>", b.Label, b.Number)
	}
	ph, pid := h.D.(*phones).dialogOf(t, b.UID)
	until(t, "202 rings", func() bool { ph.mu.Lock(); defer ph.mu.Unlock(); return ph.ringing[pid] != nil })
	ph.mu.Lock()
	offer := ph.servers[pid].InviteRequest.Body()
	ph.mu.Unlock()
	if string(offer) != string(tr.sdp) {
		t.Errorf("202 was offered %q, want the trunk's description", offer)
	}
	h.Answer("SIP/202")
	h.Expect("UPDATE SIP/202 up/up callee")
	if err := outcome(t, done); err != nil {
		t.Fatalf("the trunk's INVITE: %v", err)
	}
	tr.mu.Lock()
	answer := tr.clients[id].InviteResponse.Body()
	tr.mu.Unlock()
	if string(answer) != string(by["SIP/202"].sdp) {
		t.Errorf("the trunk got %q, want 202's description", answer)
	}
	h.Hangup(b.UID) // the API hangs up: BYE to the trunk
	h.Expect("UPDATE SIP/202 dead/dead callee cause=16")
	until(t, "the trunk got BYE", func() bool { tr.mu.Lock(); defer tr.mu.Unlock(); return tr.clients[id] == nil })

	// Nobody can take it: the trunk hears busy.
	_, done = tr.callFrom("+442079460001", "", "299")
	if got := statusOfErr(outcome(t, done)); got != sipmsg.StatusNotFound {
		t.Errorf("unknown extension: the trunk got %d, want 404", got)
	}
	_, done = tr.callFrom("anonymous", "", "202")
	if got := statusOfErr(outcome(t, done)); got != sipmsg.StatusForbidden {
		t.Errorf("no caller number: the trunk got %d, want 403", got)
	}
	h.Expect()
	h.Check()
}

// refuseWith answers a ringing call with a failure status and, when
// given, a Reason header.
func (p *softphone) refuseWith(id string, code int, reason string) {
	p.mu.Lock()
	srv, decide := p.servers[id], p.ringing[id]
	if decide == nil { // no longer ringing: cancelled, or decided already
		p.mu.Unlock()
		return
	}
	delete(p.ringing, id)
	delete(p.servers, id)
	p.mu.Unlock()
	var hdrs []sipmsg.Header
	if reason != "" {
		hdrs = append(hdrs, sipmsg.NewHeader("Reason", reason))
	}
	decide <- func() { _ = srv.Respond(code, "Refused", nil, hdrs...) }
}

// TestTrunkConfig: a trunk URI the switch cannot use is refused at start
// with what to fix, and the password never shows in the error.
func TestTrunkConfig(t *testing.T) {
	for _, c := range []struct{ uri, user, want string }{
		{"192.0.2.1", "", "want sip:host"},
		{"sips:192.0.2.1", "", "want sip:host"},
		{"sip:192.0.2.1;transport=ws", "", "udp or tcp"},
		{"sip:host.invalid", "", "cannot resolve"},
		{"sip:192.0.2.1", "", "a password needs a username"},
	} {
		_, err := newTrunk(t.Context(), TrunkConfig{URI: c.uri, Username: c.user, Password: "pw-never-shown"})
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "pw-never-shown") {
			t.Errorf("%s: got %v, want an error mentioning %q", c.uri, err, c.want)
		}
	}
	tr, err := newTrunk(t.Context(), TrunkConfig{URI: "sip:192.0.2.1;transport=TCP"})
	if err != nil || tr.dest != "192.0.2.1:5060" || tr.transport != "TCP" || !tr.owns("192.0.2.1:40000") || tr.owns("192.0.2.2:5060") {
		t.Errorf("trunk %+v, %v", tr, err)
	}
}
