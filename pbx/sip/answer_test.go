package sip

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"callcontrold/callstore"
	"callcontrold/directory"
	"callcontrold/pbx"
	"callcontrold/pbx/pbxtest"
)

// deskPhoneDemo is the demo directory with SIP/202 a desk phone that
// answers on "NOTIFY Event: talk".
func deskPhoneDemo(t testing.TB) *directory.Directory {
	t.Helper()
	y := string(directory.DemoYAML())
	const reception = "extension: \"202\", sip: {"
	if !strings.Contains(y, reception) {
		t.Fatal("the demo directory's SIP/202 entry changed: update deskPhoneDemo")
	}
	y = strings.Replace(y, reception, reception+"remote_answer: talk-event, ", 1)
	dir, err := directory.Parse([]byte(y), "desk-phone-demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// onNotifyTalk: a desk phone answers its ringing call on "NOTIFY Event:
// talk" (when it is one); other NOTIFYs go to onNotify.
func (p *softphone) onNotifyTalk(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	if !strings.EqualFold(headerValue(req, "Event"), "talk") {
		p.onNotify(req, tx)
		return
	}
	id := req.CallID().Value()
	p.mu.Lock()
	answers := p.answersTalk && p.ringing[id] != nil
	p.mu.Unlock()
	if !answers {
		_ = tx.Respond(sipmsg.NewResponseFromRequest(req, 489, "Bad Event", nil))
		return
	}
	_ = tx.Respond(sipmsg.NewResponseFromRequest(req, sipmsg.StatusOK, "OK", nil))
	p.answer(id)
}

func (p *softphone) setAnswersTalk(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answersTalk = on
}

// TestRemoteAnswer: Talk on a ringing desk phone that answers the talk
// event makes it answer (its own 200), with the events of a phone that
// picked up; a phone without remote answer is NOT_SUPPORTED and keeps
// ringing; a phone said to answer that refuses the NOTIFY keeps ringing,
// and Talk (every Talk on that call) fails NOT_SUPPORTED saying so
// instead of waiting for its deadline.
func TestRemoteAnswer(t *testing.T) {
	var by map[string]*softphone
	h := pbxtest.New(t, func(t *testing.T, _ *directory.Directory, store *callstore.Store, clock pbx.Clock) pbxtest.Env {
		dir := deskPhoneDemo(t)
		sw, tr := startTrunkSwitch(t, dir, store, clock)
		by = registerAll(t, sw, dir)
		return pbxtest.Env{Engine: sw.Engine, Driver: &phones{t: t, sw: sw, store: store, by: by, trunk: tr}}
	})
	a := h.Dial("SIP/201", "202")
	h.Revs(2)
	b := h.On("SIP/202")
	until(t, "202 rings", func() bool { p := by["SIP/202"]; p.mu.Lock(); defer p.mu.Unlock(); return len(p.ringing) == 1 })
	b = h.Talk(b.UID)
	h.Expect("UPDATE SIP/202 up/up callee | UPDATE SIP/201 up/up caller")
	if b.State != callstore.StateUp {
		t.Errorf("Talk returned %v, want up", b.State)
	}
	if got := by["SIP/201"].reinvited(); got != string(by["SIP/202"].sdp) {
		t.Errorf("201 got %q, want 202's answer", got)
	}
	h.Hangup(a.UID)
	h.Skip()

	h.Dial("SIP/201", "203") // no remote answer in the directory
	h.Revs(2)
	if _, _, err := h.E.Talk(h.Ctx, h.On("SIP/203").UID); !errors.Is(err, pbx.ErrNotSupported) {
		t.Errorf("Talk on 203: %v, want ErrNotSupported", err)
	}
	h.Expect()

	// 202's directory entry says it answers, but this time it refuses
	// (489 Bad Event). The deadline is only a bound on a broken switch.
	by["SIP/202"].setAnswersTalk(false)
	h.Dial("SIP/203", "202")
	h.Revs(2)
	b = h.On("SIP/202")
	ctx, cancel := context.WithTimeout(h.Ctx, 20*time.Second)
	defer cancel()
	for try := range 2 {
		_, _, err := h.E.Talk(ctx, b.UID)
		if !errors.Is(err, pbx.ErrNotSupported) || !strings.Contains(err.Error(), "489") {
			t.Errorf("Talk %d on a phone that refuses the NOTIFY: %v, want ErrNotSupported naming the 489", try+1, err)
		}
	}
	h.Expect()
	if c := h.Get(b.UID); c.NRState != callstore.NRRinging {
		t.Errorf("202 is %v after an ignored NOTIFY, want still ringing", c.NRState)
	}
	h.Hangup(b.UID)
	h.Expect("UPDATE SIP/202 dead/dead callee cause=21 | UPDATE SIP/203 dead/dead caller cause=21")
	h.Check()
}
