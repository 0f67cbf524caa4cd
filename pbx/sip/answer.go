package sip

import (
	"context"
	"fmt"

	sipmsg "github.com/emiago/sipgo/sip"

	"callcontrold/directory"
	"callcontrold/pbx"
)

// Remote answer: the API's Talk on a ringing call of a phone whose
// directory entry says remote_answer: talk-event sends that phone a
// NOTIFY with "Event: talk" inside the ringing INVITE's early dialog
// (Broadsoft's convention; Polycom, Yealink and Cisco SPA phones follow
// it). The phone then answers the INVITE with its 200 as if its user
// had picked up, and that answer is reported as usual. A phone that
// refuses the NOTIFY (or never gets it) keeps ringing, and Talk fails at
// once with NOT_SUPPORTED saying so, as does every later Talk on that
// call: a second NOTIFY would need a CSeq above the one the dialog's BYE
// will carry (see notifyTalk). A phone that accepts the NOTIFY and still
// does not answer makes Talk wait until its deadline: nothing tells the
// switch that it will not.

// ringingState is what a client dialog knows of its phone before the
// answer. It lives under the dialog's lock.
type ringingState struct {
	// early is the phone's last provisional response with a To tag, and
	// invite the INVITE it answers (one of a fork's): they name the
	// early dialog a NOTIFY goes into.
	early  *sipmsg.Response
	invite *sipmsg.Request
	// answerAsked: Talk asked the phone to answer before its early dialog
	// existed; the NOTIFY goes out with the first provisional response.
	answerAsked bool
	// notified: the NOTIFY went out (once per call).
	notified bool
	// refused: why the NOTIFY failed (the phone's final response, or the
	// transport's error); every Talk is told.
	refused error
}

// CanAnswer: the phones whose directory entry says they answer a
// "NOTIFY Event: talk".
func (b *b2bua) CanAnswer(device string) bool {
	dev, ok := b.dir.Device(device)
	return ok && dev.SIP != nil && dev.SIP.RemoteAnswer == directory.RemoteAnswerTalkEvent
}

// Answer asks a ringing phone to answer: the NOTIFY now if its early
// dialog exists, else with its first provisional response.
func (b *b2bua) Answer(_ context.Context, leg pbx.LegRef) {
	d := b.leg(leg.UID)
	if d == nil || d.srv != nil {
		return // gone, or the phone's own call: nothing rings there
	}
	d.mu.Lock()
	d.ringing.answerAsked = true
	inv, early := d.takeEarly()
	refused := d.ringing.refused
	d.mu.Unlock()
	switch {
	case refused != nil:
		b.spawn(func() { b.answerFailed(d, refused) })
	case early != nil:
		b.spawn(func() { b.notifyTalk(d, inv, early) })
	}
}

// answerFailed remembers why the phone could not be told to answer and
// tells the engine, which fails the waiting Talk.
func (b *b2bua) answerFailed(d *dialog, err error) {
	d.mu.Lock()
	d.ringing.refused = err
	d.mu.Unlock()
	if ferr := b.e.AnswerFailed(b.ctx, d.uid, err); ferr != nil {
		b.log.Debug("sip: remote answer: failure not reported", "device", d.device, "error", ferr)
	}
}

// provisional is the AnswerOptions.OnResponse of a phone's INVITE: it
// keeps the early dialog, and sends the NOTIFY Talk asked for.
func (d *dialog) provisional(inv *sipmsg.Request, res *sipmsg.Response) error {
	if !res.IsProvisional() || res.StatusCode == sipmsg.StatusTrying {
		return nil
	}
	if to := res.To(); to == nil || !to.Params.Has("tag") {
		return nil
	}
	d.mu.Lock()
	d.ringing.early, d.ringing.invite = res, inv
	inv, early := d.takeEarly()
	d.mu.Unlock()
	if early != nil {
		d.b.spawn(func() { d.b.notifyTalk(d, inv, early) })
	}
	return nil
}

// takeEarly returns the early dialog's response when a NOTIFY is asked
// for and not sent yet, and marks it sent. The caller holds d.mu.
func (d *dialog) takeEarly() (*sipmsg.Request, *sipmsg.Response) {
	r := &d.ringing
	if !r.answerAsked || r.notified || r.early == nil || d.answered || d.ended {
		return nil, nil
	}
	r.notified = true
	return r.invite, r.early
}

// notifyTalk sends "NOTIFY Event: talk" in the early dialog of early:
// to the phone's Contact, with the INVITE's Call-ID and From and the
// phone's To tag, from where the INVITE left.
func (b *b2bua) notifyTalk(d *dialog, inv *sipmsg.Request, early *sipmsg.Response) {
	target := inv.Recipient
	if c := early.Contact(); c != nil {
		target = c.Address
	}
	req := sipmsg.NewRequest(sipmsg.NOTIFY, target)
	req.AppendHeader(sipmsg.HeaderClone(inv.From()))
	req.AppendHeader(sipmsg.HeaderClone(early.To()))
	req.AppendHeader(sipmsg.HeaderClone(inv.CallID()))
	// The dialog's next number: sipgo's own count of the dialog cannot be
	// advanced from here (building the request through it would read the
	// INVITE's responses while they arrive), so the dialog's next request
	// (BYE, re-INVITE) carries the same number, which RFC 3261 (12.2.2)
	// does not refuse: only a lower one is out of order.
	req.AppendHeader(&sipmsg.CSeqHeader{SeqNo: inv.CSeq().SeqNo + 1, MethodName: sipmsg.NOTIFY})
	req.AppendHeader(&b.dua.ContactHDR)
	req.AppendHeader(sipmsg.NewHeader("Event", "talk"))
	req.AppendHeader(sipmsg.NewHeader("Subscription-State", "terminated"))
	req.SetTransport(inv.Transport())
	req.SetDestination(inv.Destination())
	req.Laddr = inv.Laddr
	ctx, cancel := context.WithTimeout(b.ctx, signalTimeout)
	defer cancel()
	res, err := b.ep.Client().Do(ctx, req)
	switch {
	case err != nil:
		b.log.Warn("sip: remote answer: NOTIFY not delivered", "device", d.device, "error", err)
		b.answerFailed(d, fmt.Errorf("%w: %s did not take the request to answer (NOTIFY Event: talk: %v): answer on the phone",
			pbx.ErrNotSupported, d.device, err))
	case !res.IsSuccess():
		b.log.Warn("sip: remote answer refused by the phone (is its talk event enabled?)", "device", d.device, "status", res.StartLine())
		b.answerFailed(d, fmt.Errorf("%w: %s refused to answer remotely (NOTIFY Event: talk got %d %s): turn on the phone's talk event (remote answer), or answer on the phone",
			pbx.ErrNotSupported, d.device, res.StatusCode, res.Reason))
	}
}
