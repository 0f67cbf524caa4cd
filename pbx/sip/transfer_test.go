package sip

import (
	"testing"
	"time"
)

// The flow table checks the events of the API's Xfer, AtXfer and Send
// over SIP; these tests check the signalling behind them: the far
// parties are reconnected inside the B2BUA (each phone gets the other's
// session description), the transferrer's dialogs end with BYE, and a
// redirected call CANCELs the phone that rang.

// offered returns the session description a phone was offered in the
// INVITE of one of its ringing calls.
func (p *softphone) offered(id string) string {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	srv := p.servers[id]
	if srv == nil {
		p.t.Fatalf("%s: no call %s from the switch", p.user, id)
	}
	return string(srv.InviteRequest.Body())
}

// cancelled waits for the CANCEL of one of the phone's ringing calls.
func (p *softphone) cancelled(id string) {
	p.t.Helper()
	select {
	case got := <-p.cancels:
		if got != id {
			p.t.Errorf("%s: CANCEL of %s, want %s", p.user, got, id)
		}
	case <-time.After(10 * time.Second):
		p.t.Fatalf("%s: no CANCEL", p.user)
	}
}

// exchanged checks that two phones were re-INVITEd with each other's
// description (in either order).
func exchanged(t *testing.T, x, y *softphone) {
	t.Helper()
	if got := x.reinvited(); got != string(y.sdp) {
		t.Errorf("%s re-INVITEd with %q, want %s's description", x.user, got, y.user)
	}
	if got := y.reinvited(); got != string(x.sdp) {
		t.Errorf("%s re-INVITEd with %q, want %s's description", y.user, got, x.user)
	}
}

// TestSendSignalling: Send CANCELs the phone that rang and rings the new
// target with the caller's description; the caller gets the target's
// once it answers.
func TestSendSignalling(t *testing.T) {
	h, _, by := phoneCallEnv(t)
	h.Dial("SIP/201", "202")
	h.Skip()
	_, id202 := h.D.(*phones).dialogOf(t, h.On("SIP/202").UID)
	_, nw := h.CC(h.E.Send(h.Ctx, h.On("SIP/202").UID, "203"))
	h.Skip()
	by["SIP/202"].cancelled(id202)
	_, id203 := h.D.(*phones).dialogOf(t, nw.UID)
	until(t, "203 rings", func() bool {
		by["SIP/203"].mu.Lock()
		defer by["SIP/203"].mu.Unlock()
		return by["SIP/203"].ringing[id203] != nil
	})
	if got := by["SIP/203"].offered(id203); got != string(by["SIP/201"].sdp) {
		t.Errorf("the new target was offered %q, want the caller's description", got)
	}
	h.AnswerCall(nw.UID)
	h.Skip()
	if got := by["SIP/201"].reinvited(); got != string(by["SIP/203"].sdp) {
		t.Errorf("the caller was re-INVITEd with %q, want 203's description", got)
	}
	h.Check()
}

// TestAtXferSignalling: the API's AtXfer ends both of the transferrer's
// dialogs with BYE and gives each remaining phone the other's
// description.
func TestAtXferSignalling(t *testing.T) {
	h, _, by := phoneCallEnv(t)
	_, b1 := h.Connect("SIP/201", "202", "SIP/202")
	by["SIP/201"].reinvited()
	h.CB(h.E.Hold(h.Ctx, b1.UID))
	by["SIP/201"].reinvited() // sendonly
	b2 := h.Dial("SIP/202", "203")
	h.Skip()
	h.Answer("SIP/203")
	by["SIP/202"].reinvited() // its click-to-dial call gets 203's description
	h.Skip()
	reception, id1 := h.D.(*phones).dialogOf(t, b1.UID)
	_, id2 := h.D.(*phones).dialogOf(t, b2.UID)
	h.CC(h.E.AtXfer(h.Ctx, b1.UID, b2.UID))
	h.Skip()
	until(t, "the transferrer's calls end", func() bool { return reception.hungUpOn(id1) && reception.hungUpOn(id2) })
	exchanged(t, by["SIP/201"], by["SIP/203"])
	h.Check()
}

// TestSemiAttendedSignalling: AtXfer while the target still rings: the
// transferrer's dialogs end at once, and the two remaining phones get
// each other's description when the target answers.
func TestSemiAttendedSignalling(t *testing.T) {
	h, _, by := phoneCallEnv(t)
	_, b1 := h.Connect("SIP/201", "202", "SIP/202")
	by["SIP/201"].reinvited()
	h.CB(h.E.Hold(h.Ctx, b1.UID))
	by["SIP/201"].reinvited()
	b2 := h.Dial("SIP/202", "203")
	h.Skip()
	reception, id1 := h.D.(*phones).dialogOf(t, b1.UID)
	_, id2 := h.D.(*phones).dialogOf(t, b2.UID)
	h.CC(h.E.AtXfer(h.Ctx, b1.UID, b2.UID))
	h.Skip()
	until(t, "the transferrer's calls end", func() bool { return reception.hungUpOn(id1) && reception.hungUpOn(id2) })
	h.AnswerCall(h.On("SIP/203").UID)
	h.Skip()
	exchanged(t, by["SIP/201"], by["SIP/203"])
	h.Check()
}
