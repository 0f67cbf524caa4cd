package sip

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"

	"callcontrold/pbx"
)

// dialog is one leg's dialog with its phone: srv when the phone called
// the B2BUA (the leg is the caller's), cli when the B2BUA called it.
type dialog struct {
	b      *b2bua
	uid    int64
	device string

	srv   *sipgo.DialogServerSession
	srvTx sipmsg.ServerTransaction
	cli   *sipgo.DialogClientSession
	// final is closed once the phone's own INVITE got its final response:
	// sipgo ends a server transaction when its handler returns, so the
	// handler waits for it.
	final     chan struct{}
	finalOnce sync.Once
	// called is closed when a client dialog's INVITE transaction is over
	// (answered, refused, or cancelled and confirmed): close waits for it
	// after a CANCEL.
	called chan struct{}

	mu       sync.Mutex
	callID   string
	cancel   context.CancelFunc // cli, until answered: stops waiting and sends CANCEL
	local    []byte             // the phone's own session description
	gave     int64              // the leg whose description the phone last got
	answered bool               // the dialog is established (2xx sent or received)
	ended    bool               // the engine or the phone ended it
	refer    referState         // a transfer the phone asked for (refer.go)
	ringing  ringingState       // cli: the phone's early dialog, and an answer asked of it (answer.go)
	probe    pbx.Timer          // the next session probe of an established dialog (sessiontimer.go)
	slot     *slot              // the dialog's share of the limits (limits.go), given back when it ends
}

// signalTimeout bounds a BYE or re-INVITE transaction.
const signalTimeout = 32 * time.Second

func (d *dialog) finish() { d.finalOnce.Do(func() { close(d.final) }) }

func (d *dialog) state() (answered, ended bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.answered, d.ended
}

// end marks the dialog ended and forgets it; false if it already was.
func (d *dialog) end() bool {
	d.mu.Lock()
	was := d.ended
	d.ended = true
	d.stopProbe()
	d.mu.Unlock()
	d.slot.release()
	d.b.forget(d)
	return !was
}

// abandon stops waiting for the phone, without signalling (close).
func (d *dialog) abandon() {
	d.mu.Lock()
	cancel := d.cancel
	d.ended = true
	d.stopProbe()
	d.mu.Unlock()
	d.slot.release()
	if cancel != nil {
		cancel()
	}
	if d.srvTx != nil {
		d.srvTx.Terminate()
	}
}

// onInvite: a phone calls (no To tag), or re-INVITEs a call (hold).
func (b *b2bua) onInvite(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		b.onReinvite(req, tx)
		return
	}
	if b.trunk != nil && b.trunk.owns(req.Source()) {
		b.onTrunkInvite(req, tx)
		return
	}
	dev := b.reg.Authenticate(req, tx)
	if dev == nil {
		return // answered: challenged or refused
	}
	slot := b.admit(req, tx, dev)
	if slot == nil {
		return // answered: over a dialog limit
	}
	srv, err := b.dua.ReadInvite(req, tx)
	if err != nil {
		slot.release()
		respond(tx, req, sipmsg.StatusBadRequest, err.Error())
		return
	}
	d := &dialog{b: b, device: dev.Name, srv: srv, srvTx: tx, callID: req.CallID().Value(), local: req.Body(), final: make(chan struct{}), slot: slot}
	if err := srv.Respond(sipmsg.StatusTrying, "Trying", nil); err != nil {
		return
	}
	tx.OnCancel(func(*sipmsg.Request) {
		// sipgo answered CANCEL (200) and the INVITE (487).
		if d.end() {
			b.spawn(func() { _, err := b.e.HungUp(b.ctx, d.uid); b.report("cancel", err) })
		}
	})
	_, err = b.e.Originated(b.ctx, dev.Name, req.Recipient.User, func(uid int64) {
		d.uid = uid
		b.file(d)
	})
	if err != nil {
		d.end()
		code, reason := statusOf(err)
		_ = srv.Respond(code, reason, nil)
		return
	}
	select { // the INVITE's transaction lives as long as this handler
	case <-d.final:
	case <-srv.Context().Done(): // cancelled, or its transaction ended
	case <-b.ctx.Done():
	}
}

// onReinvite: a phone changes its session: hold (sendonly, inactive) or
// resume. It gets the other party's description back, mirrored.
func (b *b2bua) onReinvite(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	d := b.byCall(req.CallID().Value())
	if d == nil {
		respond(tx, req, sipmsg.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	held := holds(req.Body())
	d.mu.Lock()
	if len(req.Body()) > 0 {
		d.local = req.Body()
	}
	gave := d.gave
	d.mu.Unlock()
	sdp := blackHole(b.ep.Addr().Addr().String())
	if p := b.leg(gave); p != nil {
		p.mu.Lock()
		if p.local != nil {
			dir := "sendrecv"
			if held {
				dir = "recvonly"
			}
			sdp = withDirection(p.local, dir)
		}
		p.mu.Unlock()
	}
	res := sipmsg.NewSDPResponseFromRequest(req, sdp)
	if err := tx.Respond(res); err != nil || d.remote() != 0 {
		return // the engine keeps no hold state for an external party
	}
	b.spawn(func() { _, err := b.e.Held(b.ctx, d.uid, held); b.report("hold", err) })
}

func (b *b2bua) onAck(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	d := b.byCall(req.CallID().Value())
	if d == nil {
		d = b.acks.dialog(req) // the call ended while its answer's ACK was on its way
	}
	if d != nil && d.srv != nil {
		_ = d.srv.ReadAck(req, tx) // an ACK of a re-INVITE's answer does not match: nothing to do
	}
}

// onBye: a phone hangs up.
func (b *b2bua) onBye(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	d := b.byCall(req.CallID().Value())
	if d == nil {
		respond(tx, req, sipmsg.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	var err error
	if d.srv != nil {
		err = d.srv.ReadBye(req, tx)
	} else {
		err = d.cli.ReadBye(req, tx)
	}
	if err != nil {
		respond(tx, req, sipmsg.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	if d.end() {
		// On the handler's goroutine (the BYE is answered already): a
		// goroutine of its own would cost more than the engine's call.
		b.byeEvent(d, req)
	}
}

// onStrayCancel: a CANCEL that matched no INVITE in progress.
func (b *b2bua) onStrayCancel(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	respond(tx, req, sipmsg.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
}

func respond(tx sipmsg.ServerTransaction, req *sipmsg.Request, code int, reason string) {
	_ = tx.Respond(sipmsg.NewResponseFromRequest(req, code, reason, nil))
	if code >= 300 {
		awaitRefusalAck(tx, req)
	}
}

// awaitRefusalAck, after an INVITE was answered with a final refusal
// (3xx-6xx) on tx, waits for the phone's ACK of it, for the end of the
// transaction or for refusalAckWait; for other requests it returns at
// once. sipgo hands that ACK to whoever receives on tx.Acks(), and with
// nobody there it starts a goroutine that waits for a receiver until the
// transaction ends (Timer I, 5 s over UDP): one more goroutine per
// challenged INVITE, parked for 5 s, and thousands of small parked
// stacks make the runtime start every new goroutine on a smaller stack
// that it then grows by copying. The handler's goroutine takes the ACK
// instead, one round trip later.
func awaitRefusalAck(tx sipmsg.ServerTransaction, req *sipmsg.Request) {
	if !req.IsInvite() {
		return
	}
	t := time.NewTimer(refusalAckWait)
	defer t.Stop()
	select {
	case <-tx.Acks():
	case <-tx.Done():
	case <-t.C:
	}
}

// refusalAckWait bounds awaitRefusalAck: a phone's ACK comes a round
// trip after the refusal, or after the refusal's retransmissions (0.5,
// 1 and 2 s later over UDP) when it was lost. A source that never
// acknowledges (its transaction lasts 32 s) holds a handler no longer
// than this; an ACK later than this is left to sipgo, as before.
const refusalAckWait = 4 * time.Second

// Ring calls a phone for a callee leg, offering the caller's description.
func (b *b2bua) Ring(ctx context.Context, r pbx.Ring) {
	var sdp []byte
	var gave int64
	if from := b.leg(partyKey(r.From)); from != nil {
		from.mu.Lock()
		sdp, gave = from.local, from.uid
		from.mu.Unlock()
	}
	if sdp == nil {
		sdp = blackHole(b.ep.Addr().Addr().String())
	}
	b.invite(r.Leg, r.Name, r.Number, sdp, gave, false)
}

// Offhook rings the caller's own phone for a call the API dialled
// (click-to-dial), with the placeholder description; with autoAnswer it
// asks the phone to answer by itself.
func (b *b2bua) Offhook(ctx context.Context, leg pbx.LegRef, autoAnswer bool) {
	b.invite(leg, "Call", "callcontrold", blackHole(b.ep.Addr().Addr().String()), 0, autoAnswer)
}

// invite sends an INVITE to every binding of the device (fork.go) and
// waits, on its own goroutine, for the answer.
func (b *b2bua) invite(leg pbx.LegRef, name, number string, sdp []byte, gave int64, autoAnswer bool) {
	binds := b.reg.Bindings(leg.Device)
	if len(binds) == 0 {
		b.spawn(func() { _, err := b.e.Refused(b.ctx, leg.UID, pbx.CauseAbsent); b.report("ring", err) })
		return
	}
	dev, _ := b.dir.Device(leg.Device)
	slot, hit := b.limits.take(leg.Device, maxDialogs(dev), netip.Addr{})
	if hit != withinLimits { // the engine asked Refuse, but another call took the last one meanwhile
		b.spawn(func() { _, err := b.e.Refused(b.ctx, leg.UID, pbx.CauseUserBusy); b.report("ring", err) })
		return
	}
	reqs := make([]*sipmsg.Request, len(binds))
	for i, bind := range binds {
		reqs[i] = b.inviteTo(bind, name, number, sdp, autoAnswer)
	}
	ctx, cancel := context.WithCancel(b.ctx)
	d := &dialog{b: b, uid: leg.UID, device: leg.Device, gave: gave, cancel: cancel, called: make(chan struct{}), slot: slot}
	b.file(d)
	if !b.spawn(func() {
		defer close(d.called)
		defer cancel()
		if len(reqs) == 1 {
			d.call(ctx, reqs[0])
		} else {
			d.fork(ctx, reqs)
		}
	}) {
		cancel()
		close(d.called)
		d.end() // the switch is closing: give the dialog's share back
	}
}

// inviteTo builds the INVITE of one binding of a device.
func (b *b2bua) inviteTo(bind Binding, name, number string, sdp []byte, autoAnswer bool) *sipmsg.Request {
	req := sipmsg.NewRequest(sipmsg.INVITE, bind.Contact)
	b.ep.RouteTo(req, bind)
	host := b.ep.Addr().Addr().String()
	from := &sipmsg.FromHeader{DisplayName: name, Address: sipmsg.Uri{Scheme: "sip", User: number, Host: host}, Params: sipmsg.NewParams()}
	from.Params.Add("tag", sipmsg.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(&sipmsg.ToHeader{Address: sipmsg.Uri{Scheme: "sip", User: bind.Contact.User, Host: host}, Params: sipmsg.NewParams()})
	if autoAnswer {
		req.AppendHeader(sipmsg.NewHeader("Call-Info", "<sip:"+host+">;answer-after=0"))
		req.AppendHeader(sipmsg.NewHeader("Alert-Info", "<http://localhost>;info=alert-autoanswer"))
	}
	req.AppendHeader(sipmsg.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(sdp)
	return req
}

// call runs a client dialog's INVITE transaction to its end and reports
// the phone's answer or refusal to the engine.
func (d *dialog) call(ctx context.Context, req *sipmsg.Request) {
	b := d.b
	cli, err := b.dua.WriteInvite(ctx, req)
	if err != nil {
		d.refused(pbx.CauseOutOfOrder)
		return
	}
	d.mu.Lock()
	d.cli = cli
	d.callID = req.CallID().Value()
	if !d.ended {
		// Filed under d.mu: an end() that comes later forgets it under
		// this Call-ID, and one that came first keeps it unfiled.
		b.file(d)
	}
	d.mu.Unlock()
	err = waitAnswer(ctx, cli, d.answerOptions(req))
	var resErr *sipgo.ErrDialogResponse
	switch {
	case err == nil:
		d.mu.Lock()
		d.local, d.answered, d.cancel = cli.InviteResponse.Body(), true, nil
		ended := d.ended
		d.mu.Unlock()
		d.established(ended)
	case errors.As(err, &resErr):
		d.refused(responseCause(resErr.Res))
	case errors.Is(context.Cause(ctx), errNoAnswer): // CANCEL sent
		d.refused(pbx.CauseNoAnswer)
	case ctx.Err() != nil: // the engine ended the leg (CANCEL sent) or the switch closed
	default:
		d.refused(pbx.CauseNoAnswer)
	}
}

// established acknowledges the phone's answer to the dialog's INVITE
// and reports it, or hangs up when the engine ended the leg while the
// answer was on its way.
func (d *dialog) established(ended bool) {
	b := d.b
	if b.onAnswer != nil && d.remote() == 0 { // a phone's answer, not the trunk's
		b.onAnswer(d.uid, time.Now())
	}
	if err := d.cli.Ack(b.ctx); err != nil {
		b.log.Debug("sip: ACK failed", "device", d.device, "err", err)
	}
	if ended {
		b.bye(d)
		return
	}
	b.answeredEvent(d)
	b.startProbe(d)
}

// waitAnswer is cli.WaitAnswer, made safe: sipgo v1.7.3 dereferences a
// nil response when the CANCEL it sends ends without one (its
// transaction terminated as the endpoint closes), and a driver
// goroutine's panic would end the process.
func waitAnswer(ctx context.Context, cli *sipgo.DialogClientSession, opts sipgo.AnswerOptions) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("sip: waiting for the answer: %v", r)
		}
	}()
	return cli.WaitAnswer(ctx, opts)
}

func (d *dialog) refused(cause int32) {
	if d.end() {
		d.b.refusedEvent(d, cause)
	}
}

// Hangup ends a leg's dialog as its stage requires: a refusal of the
// phone's own INVITE, CANCEL of ours, or BYE.
func (b *b2bua) Hangup(_ context.Context, leg pbx.LegRef, cause int32) {
	d := b.leg(leg.UID)
	if d != nil && d.deferHangup(cause) {
		return // the REFER's handler ends it after its NOTIFYs
	}
	b.hangupDialog(d, cause)
}

// hangupDialog ends a phone's or the trunk's dialog.
func (b *b2bua) hangupDialog(d *dialog, cause int32) {
	if d == nil || !d.end() {
		return
	}
	d.mu.Lock()
	answered, cancel := d.answered, d.cancel
	d.mu.Unlock()
	switch {
	case answered && d.srv != nil:
		// A phone's own call: give's goroutine sends its 2xx and closes
		// final once the phone acknowledged it (or gave up waiting). The
		// BYE waits for that: RFC 3261 (section 15) sends no BYE before
		// the ACK, and sipgo's dialog cannot be answered and hung up at
		// once (its BYE reads the last response sent, which, read before
		// the 2xx went out, is the 100 Trying: it refused to send the BYE
		// and the phone kept the call).
		b.spawn(func() {
			<-d.final
			b.bye(d)
		})
	case answered:
		b.spawn(func() { b.bye(d) })
	case d.srv != nil:
		code, reason := statusOfCause(cause)
		b.spawn(func() {
			defer d.finish()
			_ = d.srv.Respond(code, reason, nil)
		})
	case cancel != nil:
		cancel() // WaitAnswer sends CANCEL
	}
}

func (b *b2bua) bye(d *dialog) {
	ctx, cancel := context.WithTimeout(b.ctx, signalTimeout)
	defer cancel()
	bye := b.inDialog(d, sipmsg.BYE)
	var err error
	if d.srv != nil {
		err = d.srv.WriteBye(ctx, bye)
	} else {
		err = d.cli.WriteBye(ctx, bye)
	}
	if err != nil {
		b.log.Debug("sip: BYE failed", "device", d.device, "err", err)
	}
}

// Bridge gives each phone the other's description: the answer to a
// phone's own INVITE, or a re-INVITE of an established dialog.
func (b *b2bua) Bridge(_ context.Context, x, y pbx.Party) {
	dx, dy := b.leg(partyKey(x)), b.leg(partyKey(y))
	if dx == nil || dy == nil {
		return // a park orbit or a queue: no media to exchange
	}
	b.give(dx, dy)
	b.give(dy, dx)
}

// give makes x's phone talk to y's.
func (b *b2bua) give(x, y *dialog) {
	y.mu.Lock()
	sdp := y.local
	y.mu.Unlock()
	x.mu.Lock()
	if sdp == nil || x.gave == y.uid && x.answered || x.ended {
		x.mu.Unlock()
		return
	}
	x.gave = y.uid
	first := x.srv != nil && !x.answered
	x.answered = true
	x.mu.Unlock()
	if first {
		acked := b.acks.await(x)
		if !b.spawn(func() {
			defer x.finish()
			defer acked()
			if err := x.srv.RespondSDP(sdp); err != nil {
				b.log.Debug("sip: answer not acknowledged", "device", x.device, "err", err)
				return
			}
			b.startProbe(x)
		}) {
			// The switch is closing: no answer goes out, and a BYE
			// already waiting for it (hangupDialog) must not wait on.
			acked()
			x.finish()
		}
		return
	}
	b.spawn(func() { b.reinvite(x, sdp) })
}

// Hold re-INVITEs the other party of a leg with the leg's description,
// sendonly while held, sendrecv when taken back.
func (b *b2bua) Hold(_ context.Context, leg pbx.LegRef, other pbx.Party, held bool) {
	x, o := b.leg(leg.UID), b.leg(partyKey(other))
	if x == nil || o == nil {
		return
	}
	x.mu.Lock()
	sdp := x.local
	x.mu.Unlock()
	if answered, ended := o.state(); sdp == nil || !answered || ended {
		return
	}
	dir := "sendrecv"
	if held {
		dir = "sendonly"
	}
	sdp = withDirection(sdp, dir)
	b.spawn(func() { b.reinvite(o, sdp) })
}

// reinvite sends an in-dialog INVITE with a new description and
// acknowledges the phone's answer.
func (b *b2bua) reinvite(d *dialog, sdp []byte) {
	ctx, cancel := context.WithTimeout(b.ctx, signalTimeout)
	defer cancel()
	req := b.inDialog(d, sipmsg.INVITE)
	req.AppendHeader(sipmsg.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(sdp)
	var res *sipmsg.Response
	var err error
	if d.srv != nil {
		res, err = d.srv.Do(ctx, req)
	} else {
		res, err = d.cli.Do(ctx, req)
	}
	if err != nil || !res.IsSuccess() {
		b.log.Debug("sip: re-INVITE failed", "device", d.device, "err", err)
		return
	}
	ack := sipmsg.NewRequest(sipmsg.ACK, req.Recipient)
	ack.AppendHeader(sipmsg.HeaderClone(req.From()))
	ack.AppendHeader(sipmsg.HeaderClone(res.To()))
	ack.AppendHeader(sipmsg.HeaderClone(req.CallID()))
	ack.AppendHeader(&sipmsg.CSeqHeader{SeqNo: req.CSeq().SeqNo, MethodName: sipmsg.ACK})
	ack.SetDestination(req.Destination())
	ack.SetTransport(req.Transport())
	ack.Laddr = req.Laddr
	if err := b.ep.Client().WriteRequest(ack); err != nil {
		b.log.Debug("sip: re-INVITE ACK failed", "device", d.device, "err", err)
	}
}

// inDialog starts a request inside a leg's dialog, to the phone's
// Contact; sipgo's dialog fills in the dialog's headers. Over UDP it
// leaves from the endpoint's own socket, as RouteTo does for the first
// INVITE: the phone knows that address, and no other socket is opened.
func (b *b2bua) inDialog(d *dialog, method sipmsg.RequestMethod) *sipmsg.Request {
	var target sipmsg.Uri
	var transport string
	if d.srv != nil {
		target, transport = d.srv.InviteRequest.Contact().Address, d.srv.InviteRequest.Transport()
	} else {
		target, transport = d.cli.InviteResponse.Contact().Address, d.cli.InviteRequest.Transport()
	}
	req := sipmsg.NewRequest(method, target)
	req.SetTransport(transport)
	if transport == "UDP" {
		req.Laddr = sipmsg.Addr{IP: b.ep.Addr().Addr().AsSlice(), Port: int(b.ep.Addr().Port())}
	}
	return req
}
