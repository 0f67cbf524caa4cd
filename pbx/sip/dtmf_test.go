package sip

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"callcontrold/pbx"
)

// onInfo answers an INFO 200 and hands its body to the test.
func (p *softphone) onInfo(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	select {
	case p.infos <- req.ContentType().Value() + " " + string(req.Body()):
	default:
	}
	_ = tx.Respond(sipmsg.NewResponseFromRequest(req, sipmsg.StatusOK, "OK", nil))
}

// info sends an INFO in a call of the phone and returns the status.
func (p *softphone) info(id, contentType, body string) int {
	p.t.Helper()
	p.acked(id)
	p.mu.Lock()
	srv, cli := p.servers[id], p.clients[id]
	p.mu.Unlock()
	var target sipmsg.Uri
	switch {
	case srv != nil:
		target = srv.InviteRequest.Contact().Address
	case cli != nil:
		target = cli.InviteResponse.Contact().Address
	default:
		p.t.Fatalf("%s: no call %s", p.user, id)
	}
	req := sipmsg.NewRequest(sipmsg.INFO, target)
	req.AppendHeader(sipmsg.NewHeader("Content-Type", contentType))
	req.SetBody([]byte(body))
	ctx, cancel := p.ctx()
	defer cancel()
	var res *sipmsg.Response
	var err error
	if srv != nil {
		res, err = srv.Do(ctx, req)
	} else {
		res, err = cli.Do(ctx, req)
	}
	if err != nil {
		p.t.Fatalf("%s: INFO: %v", p.user, err)
	}
	return res.StatusCode
}

// gotInfo waits for the next INFO the phone receives.
func (p *softphone) gotInfo() string {
	p.t.Helper()
	select {
	case s := <-p.infos:
		return s
	case <-time.After(10 * time.Second):
		p.t.Fatalf("%s: no INFO", p.user)
		return ""
	}
}

func relay(tone string, ms int) string {
	return fmt.Sprintf("application/dtmf-relay Signal=%s\r\nDuration=%d\r\n", tone, ms)
}

// TestDtmf: the API's tones on a SIP phone's call reach the other phone
// as INFO, in order, and are collected on the leg; a phone's own INFO
// tones reach the other phone; an INFO that is not DTMF is refused, and
// one that does not carry the dialog's tag is not relayed.
func TestDtmf(t *testing.T) {
	h, sw, by, _ := trunkCallEnv(t)
	a, b := h.Connect("SIP/201", "202", "SIP/202")
	if _, err := h.E.Dtmf(h.Ctx, a.UID, "x"); !errors.Is(err, pbx.ErrInvalidTone) {
		t.Errorf("tone x: %v, want ErrInvalidTone", err)
	}
	for _, tone := range []string{"1", "#", "5"} {
		a = h.C(h.E.Dtmf(h.Ctx, a.UID, tone))
	}
	h.Expect("UPDATE SIP/201 up/up caller", "UPDATE SIP/201 up/up caller", "UPDATE SIP/201 up/up caller")
	if a.DTMF != "1#5" || !a.HasDTMF {
		t.Errorf("collected %q %v, want 1#5", a.DTMF, a.HasDTMF)
	}
	for _, tone := range []string{"1", "#", "5"} {
		if got := by["SIP/202"].gotInfo(); got != relay(tone, 160) {
			t.Errorf("202 got INFO %q, want %q", got, relay(tone, 160))
		}
	}

	_, id := h.D.(*phones).dialogOf(t, b.UID)
	reception := by["SIP/202"]
	if code := reception.info(id, "application/dtmf-relay", "Signal=9\r\nDuration=250\r\n"); code != 200 {
		t.Errorf("202's INFO got %d", code)
	}
	if got := by["SIP/201"].gotInfo(); got != relay("9", 250) {
		t.Errorf("201 got %q, want 202's tone 9", got)
	}
	if code := reception.info(id, "application/dtmf", "*"); code != 200 {
		t.Errorf("202's application/dtmf INFO got %d", code)
	}
	if got := by["SIP/201"].gotInfo(); got != relay("*", 160) {
		t.Errorf("201 got %q, want 202's tone *", got)
	}
	if code := reception.info(id, "application/x-foo", "hello"); code != sipmsg.StatusUnsupportedMediaType {
		t.Errorf("an INFO that is not DTMF got %d, want 415", code)
	}
	if code := reception.info(id, "application/dtmf-relay", "Signal=Z\r\n"); code != sipmsg.StatusUnsupportedMediaType {
		t.Errorf("tone Z got %d, want 415", code)
	}

	// An INFO with the call's Call-ID but not its tags is not relayed.
	conn, err := net.Dial("udp", sw.Endpoint.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	host := sw.Endpoint.Addr().String()
	body := "Signal=0\r\n"
	fmt.Fprintf(conn, "INFO sip:202@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKspoof\r\nFrom: <sip:202@127.0.0.1>;tag=spoof\r\nTo: <sip:x@%s>;tag=spoof2\r\nCall-ID: %s\r\nCSeq: 99 INFO\r\nMax-Forwards: 70\r\nContent-Type: application/dtmf-relay\r\nContent-Length: %d\r\n\r\n%s",
		host, conn.LocalAddr(), host, id, len(body), body)
	if code := reception.info(id, "application/dtmf-relay", "Signal=3\r\n"); code != 200 {
		t.Errorf("202's INFO got %d", code)
	}
	if got := by["SIP/201"].gotInfo(); got != relay("3", 160) {
		t.Errorf("201 got %q after a forged INFO, want only 202's tone 3", got)
	}
	h.Expect() // a phone's tones are relayed, not recorded
	h.Check()
}

// TestDtmfTrunk: a tone on a call out through the trunk reaches the
// trunk; tones on a call that is not up are refused.
func TestDtmfTrunk(t *testing.T) {
	h, _, _, tr := trunkCallEnv(t)
	a := h.Dial("SIP/201", "+15550100")
	h.Revs(2)
	if _, err := h.E.Dtmf(h.Ctx, a.UID, "1"); !errors.Is(err, pbx.ErrBadState) {
		t.Errorf("dtmf while ringing: %v, want ErrBadState", err)
	}
	h.D.RemoteAnswer(t, a.UID)
	h.Revs(1)
	h.C(h.E.Dtmf(h.Ctx, a.UID, "7"))
	if got := tr.gotInfo(); !strings.HasSuffix(got, "Signal=7\r\nDuration=160\r\n") {
		t.Errorf("the trunk got %q, want tone 7", got)
	}
	h.Check()
}
