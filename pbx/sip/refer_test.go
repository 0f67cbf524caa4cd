package sip

import (
	"fmt"
	"strings"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"callcontrold/callstore"
)

// notice is one NOTIFY a softphone received.
type notice struct {
	callID, event, state, frag string
}

func (p *softphone) onNotify(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	n := notice{callID: req.CallID().Value(), event: headerValue(req, "Event"), state: headerValue(req, "Subscription-State"), frag: strings.TrimSpace(string(req.Body()))}
	select {
	case p.notifies <- n:
	default:
	}
	_ = tx.Respond(sipmsg.NewResponseFromRequest(req, sipmsg.StatusOK, "OK", nil))
}

// notified waits for the next NOTIFY the phone receives.
func (p *softphone) notified() notice {
	p.t.Helper()
	select {
	case n := <-p.notifies:
		return n
	case <-time.After(10 * time.Second):
		p.t.Fatalf("%s: no NOTIFY", p.user)
		return notice{}
	}
}

// refer sends a REFER inside one of the phone's calls with the given
// headers (Refer-To and others, "Name: value"), answering the digest
// challenge, and returns the final response.
func (p *softphone) refer(id string, headers ...string) *sipmsg.Response {
	p.t.Helper()
	p.mu.Lock()
	srv, cli := p.servers[id], p.clients[id]
	p.mu.Unlock()
	var target sipmsg.Uri
	switch {
	case srv != nil:
		p.acked(id)
		target = srv.InviteRequest.Contact().Address
	case cli != nil:
		target = cli.InviteResponse.Contact().Address
	default:
		p.t.Fatalf("%s: no call %s to transfer", p.user, id)
	}
	req := sipmsg.NewRequest(sipmsg.REFER, target)
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ": ")
		req.AppendHeader(sipmsg.NewHeader(name, value))
	}
	ctx, cancel := p.ctx()
	defer cancel()
	var res *sipmsg.Response
	var err error
	if srv != nil {
		res, err = srv.Do(ctx, req)
	} else {
		res, err = cli.Do(ctx, req)
	}
	if err == nil && res.StatusCode == sipmsg.StatusProxyAuthRequired {
		res, err = p.client.DoDigestAuth(ctx, req, res, sipgoAuth(p.user, "demo-sip-"+p.user))
	}
	if err != nil {
		p.t.Fatalf("%s: REFER: %v", p.user, err)
	}
	return res
}

// hungUpOn reports whether the switch ended the phone's call (its BYE
// came).
func (p *softphone) hungUpOn(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.servers[id] == nil && p.clients[id] == nil
}

// dialogTags are a phone's call's tags: its own and the switch's.
func (p *softphone) dialogTags(id string) (own, sw string) {
	p.t.Helper()
	p.acked(id) // our answer is written: its To tag is ours
	p.mu.Lock()
	defer p.mu.Unlock()
	if cli := p.clients[id]; cli != nil {
		own, _ = cli.InviteRequest.From().Params.Get("tag")
		sw, _ = cli.InviteResponse.To().Params.Get("tag")
		return own, sw
	}
	if srv := p.servers[id]; srv != nil {
		sw, _ = srv.InviteRequest.From().Params.Get("tag")
		own, _ = srv.InviteResponse.To().Params.Get("tag")
		return own, sw
	}
	p.t.Fatalf("%s: no call %s", p.user, id)
	return "", ""
}

// checkReferDone checks what the transferor's phone got after its REFER
// was accepted: the NOTIFYs (100 Trying, then the final status, which
// ends the subscription) and the BYE of the call it referred.
func checkReferDone(t *testing.T, p *softphone, id, final string) {
	t.Helper()
	n := p.notified()
	if n.callID != id || !strings.HasPrefix(n.event, "refer") || !strings.HasPrefix(n.state, "active") || n.frag != "SIP/2.0 100 Trying" {
		t.Errorf("first NOTIFY %+v, want 100 Trying in call %s, subscription active", n, id)
	}
	n = p.notified()
	if n.callID != id || !strings.HasPrefix(n.state, "terminated") || n.frag != final {
		t.Errorf("final NOTIFY %+v, want %q in call %s, subscription terminated", n, final, id)
	}
	until(t, "the switch hangs up the referred call", func() bool { return p.hungUpOn(id) })
}

// TestPhoneBlindTransfer: a phone REFERs its answered call to a number.
// The engine commits what the API's Xfer commits; the phone gets 202,
// the NOTIFYs and a BYE; the transferred phone gets the target's
// description once the target answers.
func TestPhoneBlindTransfer(t *testing.T) {
	h, sw, by := phoneCallEnv(t)
	a, b := h.Connect("SIP/201", "202", "SIP/202")
	by["SIP/201"].reinvited() // the click-to-dial caller's first bridge
	reception, id := h.D.(*phones).dialogOf(t, b.UID)
	res := reception.refer(id, fmt.Sprintf("Refer-To: <sip:203@%s>", sw.Endpoint.Addr()))
	if res.StatusCode != sipmsg.StatusAccepted {
		t.Fatalf("REFER: %d %s, want 202", res.StatusCode, res.Reason)
	}
	h.Expect("UPDATE SIP/202 dead/dead callee cause=16 | TRANSFER SIP/201 ring/up caller xfer=2 | NEW SIP/203 ring/ringing callee")
	checkReferDone(t, reception, id, "SIP/2.0 200 OK")
	c := h.Answer("SIP/203")
	h.Expect("UPDATE SIP/203 up/up callee | UPDATE SIP/201 up/up caller")
	if got := by["SIP/201"].reinvited(); got != string(by["SIP/203"].sdp) {
		t.Errorf("transferred phone re-INVITEd with %q, want 203's description", got)
	}
	if a = h.Get(a.UID); a.PeerUID != c.UID {
		t.Errorf("201 bridged to %d, want %d", a.PeerUID, c.UID)
	}
	h.Check()
}

// TestPhoneTransferWithoutSubscription: a REFER with "Refer-Sub: false"
// (RFC 4488) is carried out the same, answered 202 with Refer-Sub: false,
// and gets no NOTIFY: only the BYE of the referred call.
func TestPhoneTransferWithoutSubscription(t *testing.T) {
	h, sw, _ := phoneCallEnv(t)
	_, b := h.Connect("SIP/201", "202", "SIP/202")
	reception, id := h.D.(*phones).dialogOf(t, b.UID)
	res := reception.refer(id, fmt.Sprintf("Refer-To: <sip:203@%s>", sw.Endpoint.Addr()), "Refer-Sub: false")
	if res.StatusCode != sipmsg.StatusAccepted || headerOf(res, "Refer-Sub") != "false" {
		t.Fatalf("REFER: %d %s, Refer-Sub %q; want 202 with Refer-Sub: false", res.StatusCode, res.Reason, headerOf(res, "Refer-Sub"))
	}
	h.Expect("UPDATE SIP/202 dead/dead callee cause=16 | TRANSFER SIP/201 ring/up caller xfer=2 | NEW SIP/203 ring/ringing callee")
	until(t, "the switch hangs up the referred call", func() bool { return reception.hungUpOn(id) })
	if n := len(reception.notifies); n != 0 {
		t.Errorf("%d NOTIFYs, want none", n)
	}
	h.Answer("SIP/203")
	h.Expect("UPDATE SIP/203 up/up callee | UPDATE SIP/201 up/up caller")
	h.Check()
}

// headerOf is the value of a response's header, "" when absent.
func headerOf(res *sipmsg.Response, name string) string {
	if h := res.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

// TestPhoneAttendedTransfer: the phone holds its first call, calls the
// target itself, and REFERs the first call with Replaces naming the
// second: the engine commits what the API's AtXfer commits, the phone's
// two calls end with BYE, and the two remaining phones are re-INVITEd
// with each other's description.
func TestPhoneAttendedTransfer(t *testing.T) {
	h, sw, by := phoneCallEnv(t)
	a, b1 := h.Connect("SIP/201", "202", "SIP/202")
	by["SIP/201"].reinvited()
	reception, id1 := h.D.(*phones).dialogOf(t, b1.UID)
	h.D.Hold(t, b1.UID, true)
	h.Expect("UPDATE SIP/202 hold/hold callee")
	by["SIP/201"].reinvited() // sendonly toward the held party
	id2, done := reception.call("203")
	h.Expect("NEW SIP/202 dial/dial caller", "UPDATE SIP/202 ring/ring caller | NEW SIP/203 ring/ringing callee")
	c := h.Answer("SIP/203")
	if err := outcome(t, done); err != nil {
		t.Fatalf("the second call: %v", err)
	}
	h.Skip()
	own, other := reception.dialogTags(id2)
	replaces := strings.NewReplacer(";", "%3B", "=", "%3D", "@", "%40").Replace(fmt.Sprintf("%s;to-tag=%s;from-tag=%s", id2, other, own))
	res := reception.refer(id1, fmt.Sprintf("Refer-To: <sip:203@%s?Replaces=%s>", sw.Endpoint.Addr(), replaces))
	if res.StatusCode != sipmsg.StatusAccepted {
		t.Fatalf("REFER with Replaces: %d %s, want 202", res.StatusCode, res.Reason)
	}
	h.Expect("UPDATE SIP/202 dead/dead callee cause=16 | UPDATE SIP/202 dead/dead caller cause=16 | TRANSFER SIP/201 up/up caller xfer=2 | TRANSFER SIP/203 up/up callee xfer=2")
	checkReferDone(t, reception, id1, "SIP/2.0 200 OK")
	until(t, "the switch hangs up the consultation call", func() bool { return reception.hungUpOn(id2) })
	got := map[string]string{by["SIP/201"].reinvited(): "201", by["SIP/203"].reinvited(): "203"}
	if got[string(by["SIP/203"].sdp)] != "201" || got[string(by["SIP/201"].sdp)] != "203" {
		t.Errorf("re-INVITEs after the transfer %q: want each phone given the other's description", got)
	}
	if a, c = h.Get(a.UID), h.Get(c.UID); a.PeerUID != c.UID || c.PeerUID != a.UID {
		t.Errorf("bridge %d<->%d, want %d<->%d", a.PeerUID, c.PeerUID, c.UID, a.UID)
	}
	h.Check()
}

// TestPhoneReferRefused: REFERs that cannot be carried out get the right
// SIP error and change nothing: the store keeps the call as it was, and
// the call goes on.
func TestPhoneReferRefused(t *testing.T) {
	h, sw, by := phoneCallEnv(t)
	host := sw.Endpoint.Addr().String()
	ringID, ringDone := by["SIP/203"].call("201") // a call that rings: not transferable
	h.Revs(2)
	callee := h.On("SIP/201")
	_, b := h.Connect("SIP/201", "202", "SIP/202")
	reception, id := h.D.(*phones).dialogOf(t, b.UID)
	for _, tc := range []struct {
		name    string
		phone   *softphone
		id      string
		headers []string
		want    int
	}{
		{"unknown number", reception, id, []string{"Refer-To: <sip:299@" + host + ">"}, sipmsg.StatusNotFound},
		{"no Refer-To", reception, id, nil, sipmsg.StatusBadRequest},
		{"two Refer-To", reception, id, []string{"Refer-To: <sip:203@" + host + ">", "Refer-To: <sip:201@" + host + ">"}, sipmsg.StatusBadRequest},
		{"no number", reception, id, []string{"Refer-To: <sip:" + host + ">"}, sipmsg.StatusBadRequest},
		{"not a SIP URI", reception, id, []string{"Refer-To: <tel:+15550100>"}, 416},
		{"Replaces without tags", reception, id, []string{"Refer-To: <sip:203@" + host + "?Replaces=" + id + ">"}, sipmsg.StatusBadRequest},
		{"Replaces of an unknown call", reception, id, []string{"Refer-To: <sip:203@" + host + "?Replaces=nope%3Bto-tag%3Da%3Bfrom-tag%3Db>"}, sipmsg.StatusCallTransactionDoesNotExists},
		{"Replaces of another phone's call", reception, id, []string{"Refer-To: <sip:203@" + host + "?Replaces=" + ringID + "%3Bto-tag%3Da%3Bfrom-tag%3Db>"}, sipmsg.StatusCallTransactionDoesNotExists},
		{"the call itself", reception, id, []string{"Refer-To: <sip:203@" + host + "?Replaces=" + replacesOf(reception, id) + ">"}, sipmsg.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if res := tc.phone.refer(tc.id, tc.headers...); res.StatusCode != tc.want {
				t.Errorf("got %d %s, want %d", res.StatusCode, res.Reason, tc.want)
			}
			h.Expect() // nothing committed
		})
	}
	// The ringing caller knows no tag of the switch's yet: it makes one
	// up, as a confused or hostile phone could.
	req := referOutside(by["SIP/203"], sw, "t1", "Refer-To: <sip:202@"+host+">")
	cid := sipmsg.CallIDHeader(ringID)
	req.AppendHeader(&cid)
	if res := by["SIP/203"].send(req, true); res.StatusCode != sipmsg.StatusForbidden {
		t.Errorf("REFER of a ringing call: %d %s, want 403", res.StatusCode, res.Reason)
	}
	h.Expect()
	h.Check()
	// The call is as it was, and goes on.
	h.D.HangUp(t, b.UID)
	h.Expect("UPDATE SIP/202 dead/dead callee cause=16 | UPDATE SIP/201 dead/dead caller cause=16")
	if n := len(reception.notifies); n != 0 {
		t.Errorf("%d NOTIFYs after refused REFERs", n)
	}
	// The ringing phone declines: the call ends by the phones' own
	// signalling, with nothing left in flight.
	h.D.HangUp(t, callee.UID)
	if err := outcome(t, ringDone); statusOfErr(err) != 603 {
		t.Errorf("the ringing call ended with %v, want 603", err)
	}
	h.Skip()
	h.Check()
}

// replacesOf is the escaped Replaces value naming one of a phone's calls.
func replacesOf(p *softphone, id string) string {
	own, sw := p.dialogTags(id)
	return fmt.Sprintf("%s%%3Bto-tag%%3D%s%%3Bfrom-tag%%3D%s", id, sw, own)
}

// referOutside builds a REFER from a phone to the switch by hand, with
// a To tag when toTag is not "" (a new Call-ID: no dialog of the
// switch's).
func referOutside(p *softphone, sw *Switch, toTag string, headers ...string) *sipmsg.Request {
	host := sw.Endpoint.Addr()
	req := sipmsg.NewRequest(sipmsg.REFER, sipmsg.Uri{Scheme: "sip", User: "201", Host: host.Addr().String(), Port: int(host.Port())})
	from := &sipmsg.FromHeader{Address: sipmsg.Uri{Scheme: "sip", User: p.user, Host: "127.0.0.1"}, Params: sipmsg.NewParams()}
	from.Params.Add("tag", sipmsg.GenerateTagN(8))
	req.AppendHeader(from)
	to := &sipmsg.ToHeader{Address: sipmsg.Uri{Scheme: "sip", User: "201", Host: host.Addr().String()}, Params: sipmsg.NewParams()}
	if toTag != "" {
		to.Params.Add("tag", toTag)
	}
	req.AppendHeader(to)
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ": ")
		req.AppendHeader(sipmsg.NewHeader(name, value))
	}
	return req
}

// send sends a request outside any dialog and returns the final
// response; with auth it answers a digest challenge.
func (p *softphone) send(req *sipmsg.Request, auth bool) *sipmsg.Response {
	p.t.Helper()
	ctx, cancel := p.ctx()
	defer cancel()
	res, err := p.client.Do(ctx, req)
	if err == nil && auth && res.StatusCode == sipmsg.StatusProxyAuthRequired {
		res, err = p.client.DoDigestAuth(ctx, req, res, sipgoAuth(p.user, "demo-sip-"+p.user))
	}
	if err != nil {
		p.t.Fatalf("%s: %s: %v", p.user, req.Method, err)
	}
	return res
}

// TestReferOutsideACall: a REFER with no dialog, or naming a call that
// does not exist, or without credentials, is refused before anything
// happens.
func TestReferOutsideACall(t *testing.T) {
	h, sw, by := phoneCallEnv(t)
	p := by["SIP/202"]
	host := sw.Endpoint.Addr()
	to203 := "Refer-To: <sip:203@" + host.String() + ">"
	if res := p.send(referOutside(p, sw, "", to203), true); res.StatusCode != sipmsg.StatusForbidden {
		t.Errorf("REFER outside a dialog: %d, want 403", res.StatusCode)
	}
	if res := p.send(referOutside(p, sw, "t1", to203), true); res.StatusCode != sipmsg.StatusCallTransactionDoesNotExists {
		t.Errorf("REFER in no known dialog: %d, want 481", res.StatusCode)
	}
	_, b := h.Connect("SIP/201", "202", "SIP/202")
	_, id := h.D.(*phones).dialogOf(t, b.UID)
	p.acked(id)
	p.mu.Lock()
	srv := p.servers[id]
	p.mu.Unlock()
	req := sipmsg.NewRequest(sipmsg.REFER, srv.InviteRequest.Contact().Address)
	req.AppendHeader(sipmsg.NewHeader("Refer-To", "<sip:203@"+host.String()+">"))
	ctx, cancel := p.ctx()
	defer cancel()
	res, err := srv.Do(ctx, req) // no credentials
	if err != nil || res.StatusCode != sipmsg.StatusProxyAuthRequired {
		t.Errorf("REFER without credentials: %v %v, want 407", res, err)
	}
	h.Expect()
	if c := h.Get(b.UID); c.State != callstore.StateUp {
		t.Errorf("call is %v after refused REFERs, want up", c.State)
	}
	h.Check()
}

// TestPhoneTransferToBusyTarget: a blind transfer to a phone that
// cannot ring is carried out as the API's Xfer carries it out (the
// transferred party ends with 17), and the final NOTIFY says busy.
func TestPhoneTransferToBusyTarget(t *testing.T) {
	h, sw, by := phoneCallEnv(t)
	// 203 carries two calls (call waiting): it cannot ring for a third.
	_, done1 := by["SIP/203"].call("201")
	_, done2 := by["SIP/203"].call("303")
	h.Revs(4)
	if n := len(h.Store.ByDevice("SIP/203")); n != 2 {
		t.Fatalf("203 has %d calls, want 2", n)
	}
	callees := []int64{h.On("SIP/201").UID, h.On("SIP/303").UID}
	_, b := h.Connect("SIP/201", "202", "SIP/202")
	reception, id := h.D.(*phones).dialogOf(t, b.UID)
	if res := reception.refer(id, fmt.Sprintf("Refer-To: <sip:203@%s>", sw.Endpoint.Addr())); res.StatusCode != sipmsg.StatusAccepted {
		t.Fatalf("REFER: %d, want 202", res.StatusCode)
	}
	h.Expect("UPDATE SIP/202 dead/dead callee cause=16 | UPDATE SIP/201 dead/dead caller cause=17")
	checkReferDone(t, reception, id, "SIP/2.0 486 Busy Here")
	h.Check()
	for _, uid := range callees { // the phones decline: nothing left in flight
		h.D.HangUp(t, uid)
	}
	outcome(t, done1)
	outcome(t, done2)
}

// FuzzReferTo drives raw bytes through sipgo's parser into the REFER's
// Refer-To parsing: it never panics, refuses with 400 or 416 only, and
// what it accepts names a number or a complete Replaces.
func FuzzReferTo(f *testing.F) {
	head := "REFER sip:b2bua@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx\r\nFrom: <sip:202@h>;tag=a\r\nTo: <sip:201@h>;tag=b\r\nCall-ID: c\r\nCSeq: 2 REFER\r\n"
	end := "Content-Length: 0\r\n\r\n"
	f.Add([]byte(head + "Refer-To: <sip:203@127.0.0.1:5060>\r\n" + end))
	f.Add([]byte(head + "Refer-To: sip:203@h\r\n" + end))
	f.Add([]byte(head + "r: \"Room\" <sip:203@h;user=phone>\r\n" + end))
	f.Add([]byte(head + "Refer-To: <sip:203@h?Replaces=abc%40h%3Bto-tag%3D1%3Bfrom-tag%3D2>\r\n" + end))
	f.Add([]byte(head + "Refer-To: <sip:h?Replaces=abc;to-tag=1;from-tag=2&Require=replaces>\r\n" + end))
	f.Add([]byte(head + "Refer-To: <sip:203@h?Replaces=%zz>\r\n" + end))
	f.Add([]byte(head + "Refer-To: <tel:+15550100>\r\nRefer-To: <sip:1@h>\r\n" + end))
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := sipmsg.NewParser().ParseSIP(raw)
		if err != nil {
			return
		}
		req, ok := m.(*sipmsg.Request)
		if !ok {
			return
		}
		target, rerr := parseReferTo(req)
		switch {
		case rerr != nil:
			if rerr.code != sipmsg.StatusBadRequest && rerr.code != 416 {
				t.Fatalf("refused with %d for %q", rerr.code, raw)
			}
		case target.replaces != nil:
			if r := target.replaces; r.callID == "" || r.toTag == "" || r.fromTag == "" {
				t.Fatalf("incomplete Replaces %+v from %q", r, raw)
			}
		case target.number == "":
			t.Fatalf("no number from %q", raw)
		}
	})
}
