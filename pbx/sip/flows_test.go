package sip

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"callcontrold/callstore"
	"callcontrold/directory"
	"callcontrold/pbx"
	"callcontrold/pbx/pbxtest"
)

// TestFlows runs the driver-agnostic flow table against the SIP switch,
// all of it: every phone of the demo directory is an in-process sipgo
// user agent registered on loopback (the browser phone SIP/webrtc11 too,
// flowsDemo; the desk phone SIP/202 answers the API's Talk), calls from
// outside are placed by a test trunk, and the external numbers behind
// that trunk are farEnds, which follow the directory's number rules on
// the test's clock.
func TestFlows(t *testing.T) { pbxtest.Run(t, newEnv) }

func newEnv(t *testing.T, _ *directory.Directory, store *callstore.Store, clock pbx.Clock) pbxtest.Env {
	dir := flowsDemo(t)
	sw, tr := startTrunkSwitch(t, dir, store, clock)
	far := &farEnds{dir: dir, clock: clock, trunk: tr, set: map[string]pbx.Behaviour{}, heard: map[string]bool{}}
	tr.mu.Lock()
	tr.rang = far.rang
	tr.mu.Unlock()
	return pbxtest.Env{Engine: sw.Engine, Driver: &phones{t: t, sw: sw, store: store, by: registerAll(t, sw, dir), trunk: tr, far: far}}
}

// defaultFarEnd is what an external number that no rule covers does, as
// the simulator's far ends do by default: it answers after 3 s.
var defaultFarEnd = pbx.Behaviour{Action: pbx.ActionAnswer, AnswerDelay: 3 * time.Second}

// farEnds are the external numbers behind the test trunk: each INVITE the
// switch sends there rings the number of its Request-URI, which then
// follows its behaviour (SetNumberBehaviour, else the directory's first
// matching rule, else defaultFarEnd) as the simulator's far ends do. The
// delays run on the engine's clock, started when the INVITE rings, so
// the flows move them with the test's clock and never wait for the wall
// clock; H.Advance first lets every INVITE on its way arrive (Settle).
//
//   - answer: 200 after the delay;
//   - busy: 486 at once (Reason: Q.850 cause 17);
//   - reject: a refusal after the delay with its cause (21 when none) in
//     a Reason header, as trunks say it (RFC 3326);
//   - no-answer: rings until the engine gives up on the ring timeout and
//     CANCELs (19);
//   - manual: rings until the flow answers, rejects or hangs up.
type farEnds struct {
	dir   *directory.Directory
	clock pbx.Clock
	trunk *softphone

	mu    sync.Mutex
	set   map[string]pbx.Behaviour // SetNumberBehaviour
	heard map[string]bool          // Call-IDs of the INVITEs that rang
}

func (f *farEnds) behaviour(number string) pbx.Behaviour {
	f.mu.Lock()
	defer f.mu.Unlock()
	if b, ok := f.set[number]; ok {
		return b
	}
	for _, r := range f.dir.ExternalRules() {
		if r.Match(number) {
			return r.Behaviour
		}
	}
	return defaultFarEnd
}

// rang: the switch's INVITE rings a number (the trunk's INVITE handler).
func (f *farEnds) rang(id string, req *sipmsg.Request) {
	b := f.behaviour(req.Recipient.User)
	switch b.Action {
	case pbx.ActionAnswer:
		f.clock.AfterFunc(b.AnswerDelay, func() { f.trunk.answer(id) })
	case pbx.ActionBusy:
		f.trunk.refuseCause(id, pbx.CauseUserBusy)
	case pbx.ActionReject:
		cause := b.Cause
		if cause == 0 {
			cause = pbx.CauseRejected
		}
		f.clock.AfterFunc(b.AnswerDelay, func() { f.trunk.refuseCause(id, cause) })
	}
	f.mu.Lock()
	f.heard[id] = true
	f.mu.Unlock()
}

func (f *farEnds) rung(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.heard[id]
}

// refuseCause is how a far end refuses with a cause: the SIP status of
// the cause and the cause itself in a Reason header.
func (p *softphone) refuseCause(id string, cause int32) {
	code, _ := statusOfCause(cause)
	p.refuseWith(id, code, fmt.Sprintf("Q.850;cause=%d", cause))
}

// flowsDemo is deskPhoneDemo with SIP credentials for the browser phone
// SIP/webrtc11 (extension 301): user webrtc11, password
// demo-sip-webrtc11, as a softphone registers.
//
// The demo directory gives the browser phone no sip block, so with the
// SIP driver it can never register and never rings (the engine refuses
// calls to it, cause 20). A browser phone is still a SIP user agent: it
// registers over SIP over WebSocket (RFC 7118) with an account like any
// phone's. The endpoint listens on UDP and TCP only, so the softphone
// that plays it registers over UDP; nothing the switch or the engine does
// with the device depends on the transport: the engine keeps the WebRTC
// session state (jsState, jsInfo, the keypad's tones, mute) itself, for
// any driver, and the B2BUA rings, bridges and holds it as any phone.
func flowsDemo(t testing.TB) *directory.Directory {
	t.Helper()
	y := string(directory.DemoYAML())
	const reception = "extension: \"202\", sip: {"
	const browser = "webrtc: true, features: [answer, hold, talk], extension: \"301\""
	if !strings.Contains(y, reception) || !strings.Contains(y, browser) {
		t.Fatal("the demo directory's SIP/202 or SIP/webrtc11 entry changed: update flowsDemo")
	}
	y = strings.Replace(y, reception, reception+"remote_answer: talk-event, ", 1)
	ha1 := directory.SIPHA1MD5("webrtc11", directory.DefaultSIPRealm, "demo-sip-webrtc11")
	y = strings.Replace(y, browser, browser+", sip: {ha1_md5: "+ha1+"}", 1)
	dir, err := directory.Parse([]byte(y), "flows-demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// startSIPSwitch starts a switch on loopback; it closes after the phones
// registered on it.

func startSIPSwitch(t *testing.T, dir *directory.Directory, store *callstore.Store, clock pbx.Clock) *Switch {
	t.Helper()
	sw, err := NewSwitch(dir, store, Config{Addr: "127.0.0.1:0", Engine: pbx.Options{Clock: clock}, Logger: quietLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sw.Close(); err != nil {
			t.Errorf("switch close: %v", err)
		}
	})
	return sw
}

// registerAll starts and registers a softphone for every SIP device.
func registerAll(t *testing.T, sw *Switch, dir *directory.Directory) map[string]*softphone {
	t.Helper()
	by := map[string]*softphone{}
	for _, dev := range dir.Devices() {
		if dev.SIP == nil {
			continue
		}
		p := newSoftphone(t, sw.Endpoint.Addr(), dev.SIP.Username)
		p.setAnswersTalk(dev.SIP.RemoteAnswer == directory.RemoteAnswerTalkEvent)
		p.register()
		by[dev.Name] = p
	}
	return by
}

// phones plays the flow table's phones with the softphones.
type phones struct {
	t     *testing.T
	sw    *Switch
	store *callstore.Store
	by    map[string]*softphone
	trunk *softphone // nil: no trunk
	far   *farEnds   // nil: the test drives the trunk's calls by hand
}

// until waits for the engine to apply what a phone did: a liveness
// bound, not a timing assertion.
func until(t testing.TB, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("the switch never applied: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// dialogOf returns the phone of a leg and the Call-ID of its dialog.
func (p *phones) dialogOf(t testing.TB, uid int64) (*softphone, string) {
	t.Helper()
	c, ok := p.store.Get(uid)
	if !ok {
		t.Fatalf("call %d is not live", uid)
	}
	var id string
	until(t, "the leg's dialog exists", func() bool {
		if d := p.sw.b.leg(uid); d != nil {
			d.mu.Lock()
			id = d.callID
			d.mu.Unlock()
		}
		return id != ""
	})
	ph := p.by[c.Device]
	if ph == nil {
		t.Fatalf("no phone for %s", c.Device)
	}
	return ph, id
}

func (p *phones) gone(t testing.TB, uid int64) {
	t.Helper()
	until(t, "the leg ended", func() bool { _, ok := p.store.Get(uid); return !ok })
}

func (p *phones) Answer(t testing.TB, uid int64) {
	t.Helper()
	ph, id := p.dialogOf(t, uid)
	until(t, "the phone rings", func() bool { ph.mu.Lock(); defer ph.mu.Unlock(); return ph.ringing[id] != nil })
	ph.answer(id)
	until(t, "the answer", func() bool { c, ok := p.store.Get(uid); return ok && c.NRState == callstore.NRUp })
}

func (p *phones) HangUp(t testing.TB, uid int64) {
	t.Helper()
	ph, id := p.dialogOf(t, uid)
	if c, _ := p.store.Get(uid); c.NRState == callstore.NRRinging {
		until(t, "the phone rings", func() bool { ph.mu.Lock(); defer ph.mu.Unlock(); return ph.ringing[id] != nil })
		ph.refuse(id, 603)
	} else {
		ph.hangUp(id)
	}
	p.gone(t, uid)
}

func (p *phones) Refuse(t testing.TB, uid int64, cause int32) {
	t.Helper()
	ph, id := p.dialogOf(t, uid)
	until(t, "the phone rings", func() bool { ph.mu.Lock(); defer ph.mu.Unlock(); return ph.ringing[id] != nil })
	code := map[int32]int{pbx.CauseUserBusy: 486, pbx.CauseNoAnswer: 480, pbx.CauseRejected: 603, pbx.CauseUnallocated: 404}[cause]
	if code == 0 {
		t.Fatalf("no SIP status for cause %d", cause)
	}
	ph.refuse(id, code)
	p.gone(t, uid)
}

func (p *phones) Hold(t testing.TB, uid int64, held bool) {
	t.Helper()
	ph, id := p.dialogOf(t, uid)
	ph.hold(id, held)
	want := callstore.NRUp
	if held {
		want = callstore.NRHold
	}
	until(t, "the hold", func() bool { c, ok := p.store.Get(uid); return ok && c.NRState == want })
}

func (p *phones) SetNumberBehaviour(t testing.TB, number string, b pbx.Behaviour) {
	t.Helper()
	if p.far == nil {
		t.Fatal("no far ends behind the trunk")
	}
	p.far.mu.Lock()
	defer p.far.mu.Unlock()
	p.far.set[number] = b
}

// Settle waits until every INVITE the switch sent the trunk for an
// external number rang there: a far end's delay starts when it rings.
// Calls from outside (the trunk's own INVITEs) have nothing to wait for.
func (p *phones) Settle(t testing.TB) {
	t.Helper()
	if p.far == nil {
		return
	}
	until(t, "the far ends heard of their calls", func() bool {
		calls, _ := p.store.List(nil, nil, 0, 0)
		for _, c := range calls {
			r, err := p.sw.RemoteOf(c.UID)
			if err != nil {
				continue // no external party
			}
			d := p.sw.b.leg(remoteKey(r.ID))
			if d == nil {
				return false // not signalled yet
			}
			d.mu.Lock()
			id := d.callID
			d.mu.Unlock()
			if id == "" {
				return false
			}
			p.trunk.mu.Lock()
			inbound := p.trunk.clients[id] != nil
			p.trunk.mu.Unlock()
			if !inbound && !p.far.rung(id) {
				return false
			}
		}
		return true
	})
}
