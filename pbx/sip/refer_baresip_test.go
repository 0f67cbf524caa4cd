package sip

import (
	"testing"
	"time"

	"callcontrold/callstore"
	"callcontrold/directory"
	"callcontrold/pbx"
	"callcontrold/pbx/pbxtest"
	"callcontrold/pbx/sip/siptest"
)

// TestBaresipRefer: a real phone (baresip) blind-transfers its call with
// REFER: the engine commits what the API's Xfer commits, and the target
// phone rings and answers.
func TestBaresipRefer(t *testing.T) {
	var sw *Switch
	h := pbxtest.New(t, func(t *testing.T, dir *directory.Directory, store *callstore.Store, clock pbx.Clock) pbxtest.Env {
		sw = startSIPSwitch(t, dir, store, clock)
		return pbxtest.Env{Engine: sw.Engine}
	})
	phone := func(user string, auto bool) *siptest.Baresip {
		p := siptest.StartBaresip(t, siptest.BaresipOptions{User: user, Password: "demo-sip-" + user, Registrar: sw.Endpoint.Addr(), AutoAnswer: auto})
		if _, err := p.WaitEvent(15*time.Second, "REGISTER_OK"); err != nil {
			t.Fatal(err)
		}
		return p
	}
	phone("201", true)
	reception, room := phone("202", false), phone("203", false)
	h.Dial("SIP/201", "202")
	if _, err := reception.WaitEvent(15*time.Second, "CALL_INCOMING"); err != nil {
		t.Fatal(err)
	}
	h.Skip()
	if err := reception.Accept(); err != nil {
		t.Fatal(err)
	}
	h.Expect("UPDATE SIP/202 up/up callee | UPDATE SIP/201 up/up caller")
	if err := reception.Transfer("sip:203@" + sw.Endpoint.Addr().String()); err != nil {
		t.Fatal(err)
	}
	h.Expect("UPDATE SIP/202 dead/dead callee cause=16 | TRANSFER SIP/201 ring/up caller xfer=2 | NEW SIP/203 ring/ringing callee")
	if _, err := room.WaitEvent(15*time.Second, "CALL_INCOMING"); err != nil {
		t.Fatal(err)
	}
	if err := room.Accept(); err != nil {
		t.Fatal(err)
	}
	h.Expect("UPDATE SIP/203 up/up callee | UPDATE SIP/201 up/up caller")
	if _, err := reception.WaitEvent(15*time.Second, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	h.Check()
}
