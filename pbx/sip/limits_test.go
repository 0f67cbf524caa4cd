package sip

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"

	"callcontrold/callstore"
	"callcontrold/directory"
	"callcontrold/pbx"
	"callcontrold/pbx/pbxtest"
)

// limitEnv is a switch on the demo directory with SIP/201 limited to
// one dialog (sip.max_dialogs: 1), configured by cfg, and softphones for
// every SIP device.
func limitEnv(t *testing.T, cfg Config) (*pbxtest.H, *Switch, map[string]*softphone) {
	t.Helper()
	yaml := string(directory.DemoYAML())
	const entry = "sip: {ha1_md5: 5a10e04f56fe24ea598014d27d412e24}"
	if !strings.Contains(yaml, entry) {
		t.Fatal("the demo directory's SIP/201 entry changed: update the test")
	}
	dir, err := directory.Parse([]byte(strings.Replace(yaml, entry, "sip: {ha1_md5: 5a10e04f56fe24ea598014d27d412e24, max_dialogs: 1}", 1)), "limits test")
	if err != nil {
		t.Fatal(err)
	}
	var sw *Switch
	var by map[string]*softphone
	h := pbxtest.New(t, func(t *testing.T, _ *directory.Directory, store *callstore.Store, clock pbx.Clock) pbxtest.Env {
		cfg.Addr, cfg.Engine.Clock, cfg.Logger, cfg.SessionProbe = "127.0.0.1:0", clock, quietLog(t), -1
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

// callAs places a phone's call answering the challenge with password,
// and returns the final response's error (nil: answered).
func callAs(t *testing.T, p *softphone, number, password string) error {
	t.Helper()
	req := sipmsg.NewRequest(sipmsg.INVITE, sipmsg.Uri{Scheme: "sip", User: number, Host: p.sw.Addr().String(), Port: int(p.sw.Port())})
	from := &sipmsg.FromHeader{Address: sipmsg.Uri{Scheme: "sip", User: p.user, Host: "127.0.0.1"}, Params: sipmsg.NewParams()}
	from.Params.Add("tag", sipmsg.GenerateTagN(8))
	req.AppendHeader(from)
	req.AppendHeader(sipmsg.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(p.sdp)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err := p.dua.WriteInvite(ctx, req)
	if err != nil {
		t.Fatalf("%s: INVITE: %v", p.user, err)
	}
	defer cli.Close()
	return cli.WaitAnswer(ctx, sipgo.AnswerOptions{Username: p.user, Password: password})
}

// refusal checks that err is a final response code with a Retry-After.
func refusal(t *testing.T, err error, code int) {
	t.Helper()
	var re *sipgo.ErrDialogResponse
	if !errors.As(err, &re) || re.Res.StatusCode != code {
		t.Fatalf("INVITE ended with %v, want %d", err, code)
	}
	if re.Res.GetHeader("Retry-After") == nil {
		t.Errorf("%d without Retry-After", code)
	}
}

// TestDeviceDialogLimit: a device at its sip.max_dialogs cannot start
// another call (486, Retry-After, nothing in the store) nor be rung for
// one (the caller hears busy, 17); once its call ends it can again.
func TestDeviceDialogLimit(t *testing.T) {
	h, sw, by := limitEnv(t, Config{})
	callerID, _ := talking(t, h, by) // SIP/201 → 202: 201's one dialog
	refusal(t, callAs(t, by["SIP/201"], "203", "demo-sip-201"), sipmsg.StatusBusyHere)
	h.Expect() // nothing reached the engine
	_, done := by["SIP/203"].call("201")
	h.Expect("NEW SIP/203 dial/dial caller", "UPDATE SIP/203 dead/dead caller cause=17")
	if err := outcome(t, done); statusOfErr(err) != sipmsg.StatusBusyHere {
		t.Errorf("a call to the full device ended with %v, want 486", err)
	}
	if dev, src := sw.LimitRefusals(); dev != 1 || src != 0 {
		t.Errorf("refusals: %d device, %d source; want 1, 0", dev, src)
	}
	h.D.HangUp(t, h.On("SIP/202").UID) // the callee's phone sends BYE
	h.Expect("UPDATE SIP/202 dead/dead callee cause=16 | UPDATE SIP/201 dead/dead caller cause=16")
	// The engine commits the hangup before it signals the switch, which
	// gives 201's dialog back before it sends the BYE: a phone calls
	// again once its call ended on its side, not when the store says so.
	byeReached(t, by["SIP/201"], callerID)
	_, done = by["SIP/201"].call("203")
	h.Expect("NEW SIP/201 dial/dial caller", "UPDATE SIP/201 ring/ring caller | NEW SIP/203 ring/ringing callee")
	h.Hangup(h.On("SIP/201").UID)
	h.Skip()
	_ = outcome(t, done)
	h.Check()
}

// TestSourceDialogLimit: calls started from one address are bounded
// whatever their devices: over MaxDialogsPerSource an INVITE gets 503
// with Retry-After, and nothing reaches the store.
func TestSourceDialogLimit(t *testing.T) {
	h, sw, by := limitEnv(t, Config{MaxDialogsPerSource: 1})
	talking(t, h, by) // 201's call, from 127.0.0.1
	refusal(t, callAs(t, by["SIP/203"], "202", "demo-sip-203"), sipmsg.StatusServiceUnavailable)
	h.Expect()
	if dev, src := sw.LimitRefusals(); dev != 0 || src != 1 {
		t.Errorf("refusals: %d device, %d source; want 0, 1", dev, src)
	}
}

// TestInviteAuthFailuresLimited: an INVITE is challenged (407), a wrong
// answer is refused (403), and a source that keeps guessing is refused
// with Retry-After even with the right password, before anything reaches
// the engine.
func TestInviteAuthFailuresLimited(t *testing.T) {
	h, _, by := limitEnv(t, Config{Registrar: RegistrarConfig{Auth: AuthConfig{FailureBurst: 2, FailureRefill: time.Hour}}})
	for range 2 {
		if err := callAs(t, by["SIP/203"], "202", "wrong"); statusOfErr(err) != sipmsg.StatusForbidden {
			t.Fatalf("wrong password: %v, want 403", err)
		}
	}
	refusal(t, callAs(t, by["SIP/203"], "202", "demo-sip-203"), sipmsg.StatusForbidden)
	h.Expect()
	h.Check()
}
