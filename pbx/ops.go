package pbx

import (
	"context"
	"fmt"
	"strings"

	"callcontrold/callstore"
	"callcontrold/directory"
	"callcontrold/internal/echo"
)

// begin takes the switch's lock for one operation.
func (e *Engine) begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	e.req = RequestFrom(ctx)
	return nil
}

// end releases the lock taken by begin and delivers what the operation
// signalled.
func (e *Engine) end() {
	e.req = nil
	e.mu.Unlock()
	e.flush()
}

// await waits, without the lock, until done(l) holds (checked under the
// lock after each of l's commits) or ctx ends: the operations whose
// effect the driver reports wait so for it. Close ends the wait with
// ErrClosed: no report comes from a closed engine's driver (a replica
// that steps down closes its engine while operations wait).
func (e *Engine) await(ctx context.Context, l *leg, done func(*leg) bool) error {
	for {
		e.mu.Lock()
		if done(l) || l.dead {
			e.mu.Unlock()
			return nil
		}
		ch, ok := e.changed[l]
		if !ok {
			ch = make(chan struct{})
			e.changed[l] = ch
		}
		e.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-e.ctx.Done():
			return ErrClosed
		}
	}
}

// beginOn is begin for an operation on what find looks up under the
// lock (a live leg, an external party): if find fails, the lock is
// released again; otherwise the caller defers end.
func (e *Engine) beginOn(ctx context.Context, find func() error) error {
	if err := e.begin(ctx); err != nil {
		return err
	}
	if err := find(); err != nil {
		e.end()
		return err
	}
	return nil
}

// beginLeg is beginOn for the live leg uid.
func (e *Engine) beginLeg(ctx context.Context, uid int64) (l *leg, err error) {
	err = e.beginOn(ctx, func() (err error) { l, err = e.live(uid); return err })
	return l, err
}

// beginRemote is beginOn for the external party id.
func (e *Engine) beginRemote(ctx context.Context, id RemoteID) (r *remote, err error) {
	err = e.beginOn(ctx, func() (err error) { r, err = e.remote(id); return err })
	return r, err
}

func (e *Engine) live(uid int64) (*leg, error) {
	l, ok := e.legs[uid]
	if !ok || l.dead || l.cur == nil {
		return nil, fmt.Errorf("%w: no live call %d", ErrNotFound, uid)
	}
	return l, nil
}

func stateErr(op string, l *leg, detail string, allowed ...callstore.State) error {
	return &StateError{Op: op, UID: l.c.UID, State: l.c.State, Allowed: allowed, Detail: detail}
}

// Dial originates a call from a phone: click-to-dial. The new leg is
// committed first in state dial (with the legs AutoHold held) and its
// device is asked to go off hook; once the driver reports it did, the leg
// is routed in a second revision. Dial returns the leg as routed, or as
// it stands (still dial) if ctx ends first: the call goes on either way,
// and the ring timeout bounds the wait for the device.
func (e *Engine) Dial(ctx context.Context, device, number string, opts DialOptions) (*callstore.Call, error) {
	a, err := e.dial(ctx, device, number, opts)
	if err != nil {
		return nil, err
	}
	if err := e.await(ctx, a, func(l *leg) bool { return e.offHooks[l] == nil }); err != nil {
		e.log.Debug("pbx: dial returns before the device went off hook", "uid", a.c.UID, "err", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return a.cur, nil
}

func (e *Engine) dial(ctx context.Context, device, number string, opts DialOptions) (*leg, error) {
	if err := e.begin(ctx); err != nil {
		return nil, err
	}
	defer e.end()
	dev, d, err := e.checkDial(device, number, opts)
	if err != nil {
		return nil, err
	}
	t := e.newTx()
	if err := e.autoHold(t, dev, opts.AutoHold); err != nil {
		return nil, err
	}
	a := e.newLeg(t, dev, callstore.PartyCaller)
	a.w().NRState = callstore.NRDial
	a.w().Number = number
	oh := &offHook{dest: d, timer: engineTimer{leg: a}}
	e.offHooks[a] = oh
	e.start(&oh.timer, e.ringTimeout)
	t.signal(signal{op: sigOffhook, leg: a.ref(), flag: opts.AutoAnswer})
	if err := e.commit(t); err != nil {
		return nil, err
	}
	return a, nil
}

// checkDial checks that a device may dial a number now.
func (e *Engine) checkDial(device, number string, opts DialOptions) (*directory.Device, dest, error) {
	dev, ok := e.dir.Device(device)
	if !ok {
		return nil, dest{}, fmt.Errorf("%w: no device %s", ErrNotFound, echo.Quote(device))
	}
	if !isPhone(dev) {
		return nil, dest{}, fmt.Errorf("%w: %s cannot dial", ErrNotSupported, dev.Name)
	}
	if opts.AutoAnswer && !dev.Features.Answer {
		return nil, dest{}, fmt.Errorf("%w: %s cannot answer by itself (autoanswer)", ErrNotSupported, dev.Name)
	}
	d, err := e.resolve(number)
	if err != nil {
		return nil, dest{}, err
	}
	if e.liveCount(dev.Name) >= e.maxCalls {
		return nil, dest{}, fmt.Errorf("%w: %s has %d calls", ErrLimit, dev.Name, e.maxCalls)
	}
	return dev, d, nil
}

// autoHold puts the device's up calls on hold for a new call.
func (e *Engine) autoHold(t *tx, dev *directory.Device, on bool) error {
	if !on {
		return nil
	}
	var up []*leg
	for _, l := range e.byDev[dev.Name] {
		if !l.dead && l.c.State == callstore.StateUp {
			up = append(up, l)
		}
	}
	if len(up) > 0 && !dev.Features.Hold {
		return fmt.Errorf("%w: %s cannot hold (autohold)", ErrNotSupported, dev.Name)
	}
	for _, l := range up {
		e.hold(t, l, true)
	}
	return nil
}

// hold moves a leg's near end on or off hold and tells its other party.
func (e *Engine) hold(t *tx, l *leg, held bool) {
	l.w().NRState = callstore.NRUp
	if held {
		l.w().NRState = callstore.NRHold
	}
	t.touch(l)
	var other Party
	switch {
	case l.peer != nil:
		other = Party{Leg: l.peer.ref()}
	case l.ext != nil:
		other = Party{Remote: l.ext.id}
	default:
		return
	}
	t.signal(signal{op: sigHold, leg: l.ref(), b: other, flag: held})
}

// Hold puts an up call on hold. The held party's leg stays up (its
// bridged leg is on hold).
func (e *Engine) Hold(ctx context.Context, uid int64) (*callstore.Call, bool, error) {
	l, err := e.beginLeg(ctx, uid)
	if err != nil {
		return nil, false, err
	}
	defer e.end()
	if !l.dev.Features.Hold {
		return nil, false, fmt.Errorf("%w: %s cannot hold", ErrNotSupported, l.dev.Name)
	}
	if l.c.State == callstore.StateHold {
		return l.cur, false, nil
	}
	if l.c.State != callstore.StateUp {
		return nil, false, stateErr("hold", l, "", callstore.StateUp, callstore.StateHold)
	}
	t := e.newTx()
	e.hold(t, l, true)
	if err := e.commit(t); err != nil {
		return nil, false, err
	}
	return l.cur, true, nil
}

// Talk answers a ringing incoming call or takes a held call off hold. A
// ringing phone is asked to answer (the driver's Answer) and Talk returns
// once the driver reported that it did, or that the phone could not be
// asked ([Engine.AnswerFailed]), or when ctx ends (errors: the phone
// still rings).
func (e *Engine) Talk(ctx context.Context, uid int64) (*callstore.Call, bool, error) {
	l, c, changed, err := e.talk(ctx, uid)
	if l == nil {
		return c, changed, err
	}
	if err := e.await(ctx, l, func(l *leg) bool { return l.ringing == nil || e.answerFailed[l] != nil }); err != nil {
		return nil, false, fmt.Errorf("pbx: talk: %s did not answer call %d: %w", l.dev.Name, uid, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.answerFailed[l]; err != nil {
		delete(e.answerFailed, l)
		if !l.dead && l.ringing != nil {
			return nil, false, fmt.Errorf("pbx: talk: call %d still rings: %w", uid, err)
		}
	}
	if l.dead {
		return nil, false, &StateError{Op: "talk", UID: uid, State: callstore.StateDead,
			Allowed: []callstore.State{callstore.StateRing, callstore.StateHold, callstore.StateUp},
			Detail:  "the call ended before the phone answered"}
	}
	return l.cur, true, nil
}

// talk applies Talk, or asks the phone to answer and returns its leg for
// Talk to wait on.
func (e *Engine) talk(ctx context.Context, uid int64) (*leg, *callstore.Call, bool, error) {
	l, err := e.beginLeg(ctx, uid)
	if err != nil {
		return nil, nil, false, err
	}
	defer e.end()
	switch {
	case l.c.State == callstore.StateUp:
		return nil, l.cur, false, nil
	case l.c.State == callstore.StateHold:
		if !l.dev.Features.Talk {
			return nil, nil, false, fmt.Errorf("%w: %s cannot take a call off hold", ErrNotSupported, l.dev.Name)
		}
		t := e.newTx()
		e.hold(t, l, false)
		if err := e.commit(t); err != nil {
			return nil, nil, false, err
		}
		return nil, l.cur, true, nil
	case l.ringing != nil:
		if !l.dev.Features.Answer || !e.drv.CanAnswer(l.dev.Name) {
			return nil, nil, false, fmt.Errorf("%w: %s cannot answer remotely", ErrNotSupported, l.dev.Name)
		}
		delete(e.answerFailed, l) // a failure reported to an earlier Talk
		e.outbox = append(e.outbox, signal{op: sigAnswer, leg: l.ref()})
		return l, nil, false, nil
	}
	return nil, nil, false, stateErr("talk", l, "only a ringing incoming call or a held call can be talked",
		callstore.StateRing, callstore.StateHold, callstore.StateUp)
}

// answer: x picks up. The other legs ringing for the same caller stop
// with 26; a queue records who took the call.
func (e *Engine) answer(t *tx, x *leg) {
	rg := x.ringing
	t.touch(x) // the answering leg's event comes first
	e.stop(&rg.timer)
	legs := rg.legs
	rg.legs, rg.rest = nil, nil
	x.ringing = nil
	for _, o := range legs {
		if o != x {
			o.ringing = nil
			e.kill(t, o, CauseAnsweredElse)
		}
	}
	x.w().NRState = callstore.NRUp
	t.touch(x)
	switch {
	case rg.queue:
		q := rg.origin
		q.alerting = nil
		nq := *q.c.Queue // committed values share it: copy, never edit
		nq.Out = e.clock.Now().Unix()
		nq.CallUID, nq.CallID, nq.CallDevice = x.c.UID, x.c.ID, x.c.Device
		q.w().Queue = &nq
		q.qAgent, x.queue = x, q
		t.touch(q)
		e.rebridge(t, q, x, false)
	case rg.origin != nil:
		a := rg.origin
		a.alerting = nil
		a.peer, x.peer = x, a
		answered(a)
		setParty(a, e.identOf(x))
		t.touch(a)
		bridged(t, Party{Leg: a.ref()}, Party{Leg: x.ref()})
	default:
		r := rg.rem
		x.ext, r.leg, r.ringer = r, x, nil
		r.nr = callstore.NRUp
		bridged(t, Party{Remote: r.id}, Party{Leg: x.ref()})
	}
}

// Hangup ends the call and the conversation it is part of (16). Hanging
// up a ringing incoming call declines it (21): the caller ends too unless
// another leg still rings for it, a hunt group has another member, or it
// waits in a queue.
func (e *Engine) Hangup(ctx context.Context, uid int64) (*callstore.Call, error) {
	l, err := e.beginLeg(ctx, uid)
	if err != nil {
		return nil, err
	}
	defer e.end()
	t := e.newTx()
	e.hangup(t, l, CauseRejected)
	if err := e.commit(t); err != nil {
		return nil, err
	}
	return l.cur, nil
}

// hangup ends a leg: an answered one with 16, a ringing incoming one is
// declined with the given cause.
func (e *Engine) hangup(t *tx, l *leg, declined int32) {
	if l.ringing != nil {
		e.decline(t, l, declined)
		return
	}
	e.kill(t, l, CauseNormalClearing)
}

// decline ends a ringing incoming leg with cause. The caller ends too,
// with the same cause, unless another leg still rings for it, a hunt
// group has another member, or it waits in a queue.
func (e *Engine) decline(t *tx, l *leg, cause int32) {
	rg := l.ringing
	e.kill(t, l, cause)
	if len(rg.legs) > 0 || rg.queue {
		return
	}
	e.stop(&rg.timer)
	if rg.ext.Type == directory.ExtensionHunt && e.huntNext(t, rg) {
		return
	}
	o := rg.origin
	e.dissolve(t, rg, cause)
	if o != nil {
		e.kill(t, o, cause)
	}
}

// Send redirects a ringing incoming call, or a call waiting in a queue, to
// a number: the old legs end with 23 and the destination rings.
func (e *Engine) Send(ctx context.Context, uid int64, number string) (*callstore.Call, *callstore.Call, error) {
	l, err := e.beginLeg(ctx, uid)
	if err != nil {
		return nil, nil, err
	}
	defer e.end()
	var q *leg
	switch {
	case l.ringing != nil && l.ringing.queue:
		q = l.ringing.origin
	case strings.HasPrefix(l.dev.Name, "Queue/") && l.qAgent == nil:
		q = l
	case l.ringing != nil:
	default:
		return nil, nil, stateErr("send", l, "only a ringing incoming call or a queued call can be sent", callstore.StateRing)
	}
	d, err := e.resolve(number)
	if err != nil {
		return nil, nil, err
	}
	t := e.newTx()
	t.touch(l)
	var o origin
	m := modeSend
	if q != nil {
		o = origin{leg: q.peer, rem: q.ext}
		if q.peer != nil {
			q.peer.peer, q.peer = nil, nil
			m = modeXfer // the caller was bridged to the queue: it moves to a new bridge
		}
		if r := q.ext; r != nil {
			r.leg, q.ext = nil, nil
			t.detach(r, CauseRedirected)
		}
		e.kill(t, q, CauseRedirected) // and the agents ringing for it
	} else {
		rg := l.ringing
		o = origin{leg: rg.origin, rem: rg.rem}
		e.dissolve(t, rg, CauseRedirected)
	}
	legs := e.route(t, o, d, m)
	if err := e.commit(t); err != nil {
		return nil, nil, err
	}
	var redirected *callstore.Call
	if len(legs) > 0 {
		redirected = legs[0].cur
	}
	return l.cur, redirected, nil
}

// partyOf unlinks and returns the other party of an answered leg.
func partyOf(x *leg) origin {
	switch {
	case x.peer != nil:
		p := x.peer
		x.peer, p.peer = nil, nil
		return origin{leg: p}
	case x.ext != nil:
		r := x.ext
		x.ext, r.leg = nil, nil
		return origin{rem: r}
	}
	return origin{}
}

// rebridge bridges the other party of from (a leg or an external party)
// to to instead; with transfer, the party's leg gets a TRANSFER event
// naming the new bridge.
func (e *Engine) rebridge(t *tx, from, to *leg, transfer bool) {
	switch o := partyOf(from); {
	case o.leg != nil:
		p := o.leg
		p.peer, to.peer = to, p
		setParty(p, e.identOf(to))
		if transfer {
			t.transfer(p, xferOf(p, to))
		}
		t.touch(p)
		bridged(t, Party{Leg: p.ref()}, Party{Leg: to.ref()})
	case o.rem != nil:
		to.ext, o.rem.leg = o.rem, to
		bridged(t, Party{Remote: o.rem.id}, Party{Leg: to.ref()})
	}
}

func (e *Engine) checkTransferable(op string, x *leg) error {
	if x.c.State != callstore.StateUp && x.c.State != callstore.StateHold {
		return stateErr(op, x, "", callstore.StateUp, callstore.StateHold)
	}
	if x.peer == nil && x.ext == nil {
		return stateErr(op, x, "the call has no other party to transfer", callstore.StateUp, callstore.StateHold)
	}
	if x.peer != nil && !isPhone(x.peer.dev) {
		return fmt.Errorf("%w: the other party of call %d is on %s", ErrNotSupported, x.c.UID, x.peer.dev.Name)
	}
	if !isPhone(x.dev) {
		return fmt.Errorf("%w: %s cannot transfer", ErrNotSupported, x.dev.Name)
	}
	return nil
}

// Xfer blind-transfers the other party to a number: the transferrer's leg
// ends (16) and the other party's leg gets a TRANSFER event and rings the
// destination (state ring with nrState still up).
func (e *Engine) Xfer(ctx context.Context, uid int64, number string) (*callstore.Call, *callstore.Call, error) {
	x, err := e.beginLeg(ctx, uid)
	if err != nil {
		return nil, nil, err
	}
	defer e.end()
	if err := e.checkTransferable("xfer", x); err != nil {
		return nil, nil, err
	}
	d, err := e.resolve(number)
	if err != nil {
		return nil, nil, err
	}
	t := e.newTx()
	o := partyOf(x)
	e.kill(t, x, CauseNormalClearing)
	e.route(t, o, d, modeXfer)
	if err := e.commit(t); err != nil {
		return nil, nil, err
	}
	var p *callstore.Call
	if o.leg != nil {
		p = o.leg.cur
	}
	return x.cur, p, nil
}

// AtXfer bridges the other parties of two calls (attended transfer) and
// ends both calls, in one revision; each remaining leg gets a TRANSFER
// event naming the new bridge. One of the two calls may still be ringing
// out (semi-attended transfer: the transferrer gives up before the target
// answers): the other party then takes over the ringing, hears it (state
// ring, nrState up, as after a blind transfer) and is bridged when the
// target answers.
func (e *Engine) AtXfer(ctx context.Context, uid, targetUID int64) (*callstore.Call, *callstore.Call, error) {
	if err := e.begin(ctx); err != nil {
		return nil, nil, err
	}
	defer e.end()
	if uid == targetUID {
		return nil, nil, fmt.Errorf("%w: cannot bridge call %d to itself", ErrInvalidArgument, uid)
	}
	x1, err := e.live(uid)
	if err != nil {
		return nil, nil, err
	}
	x2, err := e.live(targetUID)
	if err != nil {
		return nil, nil, err
	}
	if ringingOut(x1) && ringingOut(x2) {
		return nil, nil, stateErr("atxfer", x2, "both calls still ring: one of them must be answered", callstore.StateUp, callstore.StateHold)
	}
	for _, x := range []*leg{x1, x2} {
		if ringingOut(x) {
			if !isPhone(x.dev) {
				return nil, nil, fmt.Errorf("%w: %s cannot transfer", ErrNotSupported, x.dev.Name)
			}
			continue
		}
		if err := e.checkTransferable("atxfer", x); err != nil {
			return nil, nil, err
		}
	}
	if x1.peer == x2 {
		return nil, nil, fmt.Errorf("%w: calls %d and %d are already bridged to each other", ErrInvalidArgument, uid, targetUID)
	}
	t := e.newTx()
	t.touch(x1, x2) // the transferrer's legs end first in the revision, then the new bridge
	switch {
	case ringingOut(x2):
		e.handOver(t, x2, partyOf(x1))
	case ringingOut(x1):
		e.handOver(t, x1, partyOf(x2))
	default:
		p1, p2 := partyOf(x1), partyOf(x2)
		switch {
		case p1.leg != nil && p2.leg != nil:
			a, c := p1.leg, p2.leg
			a.peer, c.peer = c, a
			setParty(a, e.identOf(c))
			setParty(c, e.identOf(a))
			x := xferOf(a, c)
			t.transfer(a, x)
			t.transfer(c, x)
			t.touch(a, c)
			bridged(t, Party{Leg: a.ref()}, Party{Leg: c.ref()})
		case p1.leg != nil:
			bridgeRemote(t, p1.leg, p2.rem)
		case p2.leg != nil:
			bridgeRemote(t, p2.leg, p1.rem)
		default: // two external parties: trunk to trunk, no leg remains
			t.detach(p1.rem, CauseNormalClearing)
			t.detach(p2.rem, CauseNormalClearing)
		}
	}
	e.kill(t, x1, CauseNormalClearing)
	e.kill(t, x2, CauseNormalClearing)
	if err := e.commit(t); err != nil {
		return nil, nil, err
	}
	return x1.cur, x2.cur, nil
}

// ringingOut reports whether x is a calling leg whose destination still
// rings (a device, a group, or an external number).
func ringingOut(x *leg) bool {
	return x.alerting != nil || x.ext != nil && x.ext.nr == callstore.NRRinging
}

// handOver gives what x rings to o (the other party of the transferrer's
// other call), before x ends: the ringing legs now ring for o and show o
// as the caller; o hears the ringing and gets a TRANSFER event.
func (e *Engine) handOver(t *tx, x *leg, o origin) {
	if o.leg != nil {
		t.touch(o.leg) // its TRANSFER comes before the updates of what it rings
	}
	if rg := x.alerting; rg != nil {
		x.alerting = nil
		id := e.originIdent(o)
		rg.origin, rg.rem, rg.ident = o.leg, o.rem, id
		for _, l := range rg.legs {
			setParty(l, id)
			t.touch(l)
		}
		if a := o.leg; a != nil {
			a.alerting = rg
			setParty(a, ident{rg.ext.Name, rg.ext.Number})
			t.transfer(a, xferOf(append([]*leg{a}, rg.legs...)...))
			t.touch(a)
		} else {
			o.rem.nr = callstore.NRRing // an external caller now rings the group
			o.rem.ringer = rg
		}
		return
	}
	r := x.ext // an external number still rings
	x.ext, r.leg = nil, nil
	if a := o.leg; a != nil {
		a.ext, r.leg = r, a
		setParty(a, ident{r.name, r.number})
		t.transfer(a, xferOf(a))
		t.touch(a)
		return
	}
	t.detach(r, CauseNormalClearing) // trunk to trunk: no leg remains
	t.detach(o.rem, CauseNormalClearing)
}

func bridgeRemote(t *tx, a *leg, r *remote) {
	a.ext, r.leg = r, a
	setParty(a, ident{r.name, r.number})
	t.transfer(a, xferOf(a))
	t.touch(a)
	bridged(t, Party{Remote: r.id}, Party{Leg: a.ref()})
}

// Mute mutes or unmutes a WebRTC call (jsInfo.muted.audio).
func (e *Engine) Mute(ctx context.Context, uid int64, mute bool) (*callstore.Call, bool, error) {
	l, err := e.beginLeg(ctx, uid)
	if err != nil {
		return nil, false, err
	}
	defer e.end()
	if !l.dev.WebRTC {
		return nil, false, fmt.Errorf("%w: mute needs a WebRTC device, %s is not", ErrNotSupported, l.dev.Name)
	}
	if l.c.JSInfo.MutedAudio == mute {
		return l.cur, false, nil
	}
	t := e.newTx()
	l.w().JSInfo.MutedAudio = mute
	t.touch(l)
	if err := e.commit(t); err != nil {
		return nil, false, err
	}
	return l.cur, true, nil
}

// Dtmf sends one tone on an up call of a WebRTC device, or of a device
// whose driver carries tones (CanDtmf); the tone is appended to the leg's
// collected DTMF string.
func (e *Engine) Dtmf(ctx context.Context, uid int64, tone string) (*callstore.Call, error) {
	l, err := e.beginLeg(ctx, uid)
	if err != nil {
		return nil, err
	}
	defer e.end()
	if !l.dev.WebRTC && !e.drv.CanDtmf(l.dev.Name) {
		return nil, fmt.Errorf("%w: %s cannot send tones (WebRTC devices can, and SIP phones behind the sip switch)", ErrNotSupported, l.dev.Name)
	}
	if len(tone) != 1 || !strings.Contains("0123456789*#", tone) {
		return nil, fmt.Errorf("%w: %s (want one of 0-9, * or #)", ErrInvalidTone, echo.Quote(tone))
	}
	if l.c.State != callstore.StateUp {
		return nil, stateErr("dtmf", l, "", callstore.StateUp)
	}
	t := e.newTx()
	l.w().DTMF += tone
	l.w().HasDTMF = true
	t.touch(l)
	t.signal(signal{op: sigDtmf, leg: l.ref(), text: tone})
	if err := e.commit(t); err != nil {
		return nil, err
	}
	return l.cur, nil
}

// DeviceState returns the lamp and registration status of a device: the
// lamp from its legs, the status from the driver (park orbits and queues
// have no registration: unknown).
func (e *Engine) DeviceState(name string) (DeviceState, error) {
	dev, ok := e.dir.Device(name)
	if !ok {
		return DeviceState{}, fmt.Errorf("%w: no device %s", ErrNotFound, echo.Quote(name))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	calls := make([]*callstore.Call, 0, len(e.byDev[name]))
	for _, l := range e.byDev[name] {
		if !l.dead && l.cur != nil {
			calls = append(calls, l.cur)
		}
	}
	st := DeviceState{BLF: BLFOf(calls), Status: StatusUnknown}
	if isPhone(dev) {
		st.Status = e.drv.Status(name)
	}
	return st, nil
}
