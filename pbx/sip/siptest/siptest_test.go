package siptest

import (
	"strings"
	"testing"
	"time"
)

// These tests check the helpers against each other, with no switch in
// between: baresip calls SIPp and SIPp calls baresip.

const eventWait = 15 * time.Second

func TestBaresipCallsSIPp(t *testing.T) {
	uas := StartSIPp(t, SIPpOptions{Scenario: UASAnswer, Pause: 200 * time.Millisecond})
	phone := StartBaresip(t, BaresipOptions{User: "201", Password: "unused"})
	if err := phone.Dial("sip:600@" + uas.Addr().String()); err != nil {
		t.Fatal(err)
	}
	if _, err := phone.WaitEvent(eventWait, "CALL_RINGING"); err != nil {
		t.Fatal(err)
	}
	ev, err := phone.WaitEvent(eventWait, "CALL_ESTABLISHED")
	if err != nil {
		t.Fatal(err)
	}
	if ev.Direction != "outgoing" || !strings.Contains(ev.PeerURI, "600@") || ev.ID == "" {
		t.Errorf("established %+v", ev)
	}
	// Hold and resume are re-INVITEs the UAS answers: baresip reports
	// the answer's SDP each time.
	for _, op := range []func() error{phone.Hold, phone.Resume} {
		if err := op(); err != nil {
			t.Fatal(err)
		}
		if _, err := phone.WaitEvent(eventWait, "CALL_REMOTE_SDP"); err != nil {
			t.Fatal(err)
		}
	}
	if err := phone.Hangup(); err != nil {
		t.Fatal(err)
	}
	if _, err := phone.WaitEvent(eventWait, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	if err := uas.Wait(); err != nil {
		t.Fatal(err)
	}
	if ok, failed, err := uas.Stats(); err != nil || ok != 1 || failed != 0 {
		t.Fatalf("SIPp stats: %d successful, %d failed, %v", ok, failed, err)
	}
}

// TestSIPpCallsSIPp is the direct baseline of a SIP benchmark: a SIPp
// caller and a SIPp callee, many calls at a rate.
func TestSIPpCallsSIPp(t *testing.T) {
	const calls = 20
	uas := StartSIPp(t, SIPpOptions{Scenario: UASAnswer, Calls: calls})
	uac := StartSIPp(t, SIPpOptions{Scenario: UAC, Remote: uas.Addr(), Service: "600", Calls: calls, Rate: 50, MaxConcurrent: 10})
	for _, s := range []*SIPp{uac, uas} {
		if err := s.Wait(); err != nil {
			t.Fatal(err)
		}
		if ok, failed, err := s.Stats(); err != nil || ok != calls || failed != 0 {
			t.Fatalf("SIPp stats: %d successful, %d failed, %v", ok, failed, err)
		}
	}
}

func TestSIPpCallsBaresip(t *testing.T) {
	phone := StartBaresip(t, BaresipOptions{User: "201", Password: "unused"})
	uac := StartSIPp(t, SIPpOptions{Scenario: UAC, Remote: phone.SIPAddr(), Service: "201", Pause: 300 * time.Millisecond})
	ev, err := phone.WaitEvent(eventWait, "CALL_INCOMING")
	if err != nil {
		t.Fatal(err)
	}
	if ev.Direction != "incoming" || !strings.Contains(ev.PeerURI, "sipp@") {
		t.Errorf("incoming %+v", ev)
	}
	if err := phone.Accept(); err != nil {
		t.Fatal(err)
	}
	if _, err := phone.WaitEvent(eventWait, "CALL_ESTABLISHED"); err != nil {
		t.Fatal(err)
	}
	// SIPp hangs up after its pause.
	if _, err := phone.WaitEvent(eventWait, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	if err := uac.Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestSIPpRefusals(t *testing.T) {
	for _, c := range []struct {
		scenario Scenario
		want     string
	}{
		{UASBusy, "486"},
		{UASReject, "603"},
	} {
		t.Run(string(c.scenario), func(t *testing.T) {
			uas := StartSIPp(t, SIPpOptions{Scenario: c.scenario, Pause: 100 * time.Millisecond})
			phone := StartBaresip(t, BaresipOptions{User: "201", Password: "unused"})
			if err := phone.Dial("sip:600@" + uas.Addr().String()); err != nil {
				t.Fatal(err)
			}
			ev, err := phone.WaitEvent(eventWait, "CALL_CLOSED")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(ev.Param, c.want) {
				t.Errorf("closed with %q, want %s", ev.Param, c.want)
			}
			if err := uas.Wait(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSIPpNoAnswer(t *testing.T) {
	uas := StartSIPp(t, SIPpOptions{Scenario: UASNoAnswer})
	phone := StartBaresip(t, BaresipOptions{User: "201", Password: "unused"})
	if err := phone.Dial("sip:600@" + uas.Addr().String()); err != nil {
		t.Fatal(err)
	}
	if _, err := phone.WaitEvent(eventWait, "CALL_RINGING"); err != nil {
		t.Fatal(err)
	}
	if err := phone.Hangup(); err != nil { // a CANCEL
		t.Fatal(err)
	}
	if _, err := phone.WaitEvent(eventWait, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	if err := uas.Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestBaresipAutoAnswer(t *testing.T) {
	phone := StartBaresip(t, BaresipOptions{User: "201", Password: "unused", AutoAnswer: true})
	uac := StartSIPp(t, SIPpOptions{Scenario: UAC, Remote: phone.SIPAddr(), Service: "201", Pause: 200 * time.Millisecond})
	if _, err := phone.WaitEvent(eventWait, "CALL_ESTABLISHED"); err != nil {
		t.Fatal(err)
	}
	if err := uac.Wait(); err != nil {
		t.Fatal(err)
	}
}

// TestBaresipTransfer: phone A calls phone B, then blind-transfers B to
// a SIPp callee: B gets the REFER, calls the target, and A hangs up.
func TestBaresipTransfer(t *testing.T) {
	target := StartSIPp(t, SIPpOptions{Scenario: UASAnswer})
	a := StartBaresip(t, BaresipOptions{User: "201", Password: "unused"})
	b := StartBaresip(t, BaresipOptions{User: "202", Password: "unused", AutoAnswer: true})
	if err := a.Dial("sip:202@" + b.SIPAddr().String()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.WaitEvent(eventWait, "CALL_ESTABLISHED"); err != nil {
		t.Fatal(err)
	}
	if err := a.Transfer("sip:600@" + target.Addr().String()); err != nil {
		t.Fatal(err)
	}
	ev, err := b.WaitEvent(eventWait, "TRANSFER")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ev.Param, "600@") {
		t.Errorf("transfer event %+v", ev)
	}
	if _, err := a.WaitEvent(eventWait, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	// B's new call to the target is answered; B then hangs up.
	ev, err = b.WaitEvent(eventWait, "CALL_ESTABLISHED")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ev.PeerURI, "600@") {
		t.Errorf("B established %+v, want the transfer target", ev)
	}
	if err := b.Hangup(); err != nil {
		t.Fatal(err)
	}
	if err := target.Wait(); err != nil {
		t.Fatal(err)
	}
}
