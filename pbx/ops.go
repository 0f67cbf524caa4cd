package pbx

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"callcontrold/callstore"
	"callcontrold/directory"
)

// begin takes the switch's lock for one operation.
func (s *Sim) begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	return nil
}

func (s *Sim) live(uid int64) (*leg, error) {
	l, ok := s.legs[uid]
	if !ok || l.dead || l.cur == nil {
		return nil, fmt.Errorf("%w: no live call %d", ErrNotFound, uid)
	}
	return l, nil
}

func stateErr(op string, l *leg, detail string, allowed ...callstore.State) error {
	return &StateError{Op: op, UID: l.c.UID, State: l.c.State, Allowed: allowed, Detail: detail}
}

// Dial originates a call from a phone. The new leg is committed first in
// state dial (with the legs AutoHold held), then routed in a second
// revision: the handset dials, then the PBX connects.
func (s *Sim) Dial(ctx context.Context, device, number string, opts DialOptions) (*callstore.Call, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	dev, ok := s.dir.Device(device)
	if !ok {
		return nil, fmt.Errorf("%w: no device %q", ErrNotFound, device)
	}
	if !isPhone(dev) {
		return nil, fmt.Errorf("%w: %s cannot dial", ErrNotSupported, dev.Name)
	}
	if opts.AutoAnswer && !dev.Features.Answer {
		return nil, fmt.Errorf("%w: %s cannot answer by itself (autoanswer)", ErrNotSupported, dev.Name)
	}
	d, err := s.resolve(number)
	if err != nil {
		return nil, err
	}
	if s.liveCount(dev.Name) >= s.maxCalls {
		return nil, fmt.Errorf("%w: %s has %d calls", ErrLimit, dev.Name, s.maxCalls)
	}
	t := newTx()
	if opts.AutoHold {
		var up []*leg
		for _, l := range s.byDev[dev.Name] {
			if !l.dead && l.c.State == callstore.StateUp {
				up = append(up, l)
			}
		}
		if len(up) > 0 && !dev.Features.Hold {
			return nil, fmt.Errorf("%w: %s cannot hold (autohold)", ErrNotSupported, dev.Name)
		}
		for _, l := range up {
			l.c.NRState = callstore.NRHold
			t.touch(l)
		}
	}
	a := s.newLeg(t, dev, callstore.PartyCaller)
	a.c.NRState = callstore.NRDial
	a.c.Number = number
	if err := s.commit(t); err != nil {
		return nil, err
	}
	t = newTx()
	s.route(t, origin{leg: a}, d, modeDial)
	if err := s.commit(t); err != nil {
		return nil, err
	}
	return a.cur, nil
}

// Hold puts an up call on hold. The held party's leg stays up (its
// bridged leg is on hold).
func (s *Sim) Hold(ctx context.Context, uid int64) (*callstore.Call, bool, error) {
	if err := s.begin(ctx); err != nil {
		return nil, false, err
	}
	defer s.mu.Unlock()
	l, err := s.live(uid)
	if err != nil {
		return nil, false, err
	}
	if !l.dev.Features.Hold {
		return nil, false, fmt.Errorf("%w: %s cannot hold", ErrNotSupported, l.dev.Name)
	}
	if l.c.State == callstore.StateHold {
		return l.cur, false, nil
	}
	if l.c.State != callstore.StateUp {
		return nil, false, stateErr("hold", l, "", callstore.StateUp, callstore.StateHold)
	}
	t := newTx()
	l.c.NRState = callstore.NRHold
	t.touch(l)
	if err := s.commit(t); err != nil {
		return nil, false, err
	}
	return l.cur, true, nil
}

// Talk answers a ringing incoming call or takes a held call off hold.
func (s *Sim) Talk(ctx context.Context, uid int64) (*callstore.Call, bool, error) {
	if err := s.begin(ctx); err != nil {
		return nil, false, err
	}
	defer s.mu.Unlock()
	l, err := s.live(uid)
	if err != nil {
		return nil, false, err
	}
	t := newTx()
	switch {
	case l.c.State == callstore.StateUp:
		return l.cur, false, nil
	case l.c.State == callstore.StateHold:
		if !l.dev.Features.Talk {
			return nil, false, fmt.Errorf("%w: %s cannot take a call off hold", ErrNotSupported, l.dev.Name)
		}
		l.c.NRState = callstore.NRUp
		t.touch(l)
	case l.ringing != nil:
		if !l.dev.Features.Answer {
			return nil, false, fmt.Errorf("%w: %s cannot answer remotely", ErrNotSupported, l.dev.Name)
		}
		s.answer(t, l)
	default:
		return nil, false, stateErr("talk", l, "only a ringing incoming call or a held call can be talked",
			callstore.StateRing, callstore.StateHold, callstore.StateUp)
	}
	if err := s.commit(t); err != nil {
		return nil, false, err
	}
	return l.cur, true, nil
}

// answer: x picks up. The other legs ringing for the same caller stop
// with 26; a queue records who took the call.
func (s *Sim) answer(t *tx, x *leg) {
	rg := x.ringing
	t.touch(x) // the answering leg's event comes first
	s.stop(rg.timer)
	others := slices.DeleteFunc(slices.Clone(rg.legs), func(l *leg) bool { return l == x })
	rg.legs, rg.rest = nil, nil
	x.ringing = nil
	for _, o := range others {
		o.ringing = nil
		s.kill(t, o, CauseAnsweredElse)
	}
	x.c.NRState = callstore.NRUp
	t.touch(x)
	switch {
	case rg.queue:
		q := rg.origin
		q.alerting = nil
		nq := *q.c.Queue // committed values share it: copy, never edit
		nq.Out = s.clock.Now().Unix()
		nq.CallUID, nq.CallID, nq.CallDevice = x.c.UID, x.c.ID, x.c.Device
		q.c.Queue = &nq
		q.qAgent, x.queue = x, q
		t.touch(q)
		if a := q.peer; a != nil {
			q.peer = nil
			a.peer, x.peer = x, a
			setParty(a, s.identOf(x))
			t.touch(a)
		} else if r := q.ext; r != nil {
			q.ext = nil
			x.ext, r.leg = r, x
		}
	case rg.origin != nil:
		a := rg.origin
		a.alerting = nil
		a.peer, x.peer = x, a
		answered(a)
		setParty(a, s.identOf(x))
		t.touch(a)
	default:
		x.ext, rg.rem.leg = rg.rem, x
		rg.rem.nr = callstore.NRUp
	}
}

// Hangup ends the call and the conversation it is part of (16). Hanging
// up a ringing incoming call declines it (21): the caller ends too unless
// another leg still rings for it, a hunt group has another member, or it
// waits in a queue.
func (s *Sim) Hangup(ctx context.Context, uid int64) (*callstore.Call, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	l, err := s.live(uid)
	if err != nil {
		return nil, err
	}
	t := newTx()
	if rg := l.ringing; rg != nil {
		s.kill(t, l, CauseRejected)
		if len(rg.legs) == 0 && !rg.queue {
			s.stop(rg.timer)
			if !(rg.ext.Type == directory.ExtensionHunt && s.huntNext(t, rg)) {
				o := rg.origin
				s.dissolve(t, rg, CauseRejected)
				if o != nil {
					s.kill(t, o, CauseRejected)
				}
			}
		}
	} else {
		s.kill(t, l, CauseNormalClearing)
	}
	if err := s.commit(t); err != nil {
		return nil, err
	}
	return l.cur, nil
}

// Send redirects a ringing incoming call, or a call waiting in a queue, to
// a number: the old legs end with 23 and the destination rings.
func (s *Sim) Send(ctx context.Context, uid int64, number string) (*callstore.Call, *callstore.Call, error) {
	if err := s.begin(ctx); err != nil {
		return nil, nil, err
	}
	defer s.mu.Unlock()
	l, err := s.live(uid)
	if err != nil {
		return nil, nil, err
	}
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
	d, err := s.resolve(number)
	if err != nil {
		return nil, nil, err
	}
	t := newTx()
	t.touch(l)
	var o origin
	m := modeSend
	if q != nil {
		o = origin{leg: q.peer, rem: q.ext}
		if q.peer != nil {
			q.peer.peer, q.peer = nil, nil
			m = modeXfer // the caller was bridged to the queue: it moves to a new bridge
		}
		if q.ext != nil {
			q.ext.leg, q.ext = nil, nil
		}
		s.kill(t, q, CauseRedirected) // and the agents ringing for it
	} else {
		rg := l.ringing
		o = origin{leg: rg.origin, rem: rg.rem}
		s.dissolve(t, rg, CauseRedirected)
	}
	legs := s.route(t, o, d, m)
	if err := s.commit(t); err != nil {
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

func (s *Sim) checkTransferable(op string, x *leg) error {
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
func (s *Sim) Xfer(ctx context.Context, uid int64, number string) (*callstore.Call, *callstore.Call, error) {
	if err := s.begin(ctx); err != nil {
		return nil, nil, err
	}
	defer s.mu.Unlock()
	x, err := s.live(uid)
	if err != nil {
		return nil, nil, err
	}
	if err := s.checkTransferable("xfer", x); err != nil {
		return nil, nil, err
	}
	d, err := s.resolve(number)
	if err != nil {
		return nil, nil, err
	}
	t := newTx()
	o := partyOf(x)
	s.kill(t, x, CauseNormalClearing)
	s.route(t, o, d, modeXfer)
	if err := s.commit(t); err != nil {
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
func (s *Sim) AtXfer(ctx context.Context, uid, targetUID int64) (*callstore.Call, *callstore.Call, error) {
	if err := s.begin(ctx); err != nil {
		return nil, nil, err
	}
	defer s.mu.Unlock()
	if uid == targetUID {
		return nil, nil, fmt.Errorf("%w: cannot bridge call %d to itself", ErrInvalidArgument, uid)
	}
	x1, err := s.live(uid)
	if err != nil {
		return nil, nil, err
	}
	x2, err := s.live(targetUID)
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
		if err := s.checkTransferable("atxfer", x); err != nil {
			return nil, nil, err
		}
	}
	if x1.peer == x2 {
		return nil, nil, fmt.Errorf("%w: calls %d and %d are already bridged to each other", ErrInvalidArgument, uid, targetUID)
	}
	t := newTx()
	t.touch(x1, x2) // the transferrer's legs end first in the revision, then the new bridge
	switch {
	case ringingOut(x2):
		s.handOver(t, x2, partyOf(x1))
	case ringingOut(x1):
		s.handOver(t, x1, partyOf(x2))
	default:
		p1, p2 := partyOf(x1), partyOf(x2)
		switch {
		case p1.leg != nil && p2.leg != nil:
			a, c := p1.leg, p2.leg
			a.peer, c.peer = c, a
			setParty(a, s.identOf(c))
			setParty(c, s.identOf(a))
			a.xfer = xferOf(a, c)
			c.xfer = a.xfer
			t.touch(a, c)
		case p1.leg != nil:
			bridgeRemote(t, p1.leg, p2.rem)
		case p2.leg != nil:
			bridgeRemote(t, p2.leg, p1.rem)
		} // two external parties: trunk to trunk, no leg remains
	}
	s.kill(t, x1, CauseNormalClearing)
	s.kill(t, x2, CauseNormalClearing)
	if err := s.commit(t); err != nil {
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
func (s *Sim) handOver(t *tx, x *leg, o origin) {
	if o.leg != nil {
		t.touch(o.leg) // its TRANSFER comes before the updates of what it rings
	}
	if rg := x.alerting; rg != nil {
		x.alerting = nil
		id := s.originIdent(o)
		rg.origin, rg.rem, rg.ident = o.leg, o.rem, id
		for _, l := range rg.legs {
			setParty(l, id)
			t.touch(l)
		}
		if a := o.leg; a != nil {
			a.alerting = rg
			setParty(a, ident{rg.ext.Name, rg.ext.Number})
			a.xfer = xferOf(append([]*leg{a}, rg.legs...)...)
			t.touch(a)
		} else {
			o.rem.nr = callstore.NRRing // an external caller now rings the group
		}
		return
	}
	r := x.ext // an external number still rings
	x.ext, r.leg = nil, nil
	if a := o.leg; a != nil {
		a.ext, r.leg = r, a
		setParty(a, ident{r.name, r.number})
		a.xfer = xferOf(a)
		t.touch(a)
		return
	}
	s.stop(r.timer) // trunk to trunk: the simulator's far end is done with it
}

func bridgeRemote(t *tx, a *leg, r *remote) {
	a.ext, r.leg = r, a
	setParty(a, ident{r.name, r.number})
	a.xfer = xferOf(a)
	t.touch(a)
}

// Mute mutes or unmutes a WebRTC call (jsInfo.muted.audio).
func (s *Sim) Mute(ctx context.Context, uid int64, mute bool) (*callstore.Call, bool, error) {
	if err := s.begin(ctx); err != nil {
		return nil, false, err
	}
	defer s.mu.Unlock()
	l, err := s.live(uid)
	if err != nil {
		return nil, false, err
	}
	if !l.dev.WebRTC {
		return nil, false, fmt.Errorf("%w: mute needs a WebRTC device, %s is not", ErrNotSupported, l.dev.Name)
	}
	if l.c.JSInfo.MutedAudio == mute {
		return l.cur, false, nil
	}
	t := newTx()
	l.c.JSInfo.MutedAudio = mute
	t.touch(l)
	if err := s.commit(t); err != nil {
		return nil, false, err
	}
	return l.cur, true, nil
}

// Dtmf sends one tone on an up WebRTC call; the tone is appended to the
// leg's collected DTMF string.
func (s *Sim) Dtmf(ctx context.Context, uid int64, tone string) (*callstore.Call, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	l, err := s.live(uid)
	if err != nil {
		return nil, err
	}
	if !l.dev.WebRTC {
		return nil, fmt.Errorf("%w: dtmf needs a WebRTC device, %s is not", ErrNotSupported, l.dev.Name)
	}
	if len(tone) != 1 || !strings.Contains("0123456789*#", tone) {
		return nil, fmt.Errorf("%w: %q (want one of 0-9, * or #)", ErrInvalidTone, tone)
	}
	if l.c.State != callstore.StateUp {
		return nil, stateErr("dtmf", l, "", callstore.StateUp)
	}
	t := newTx()
	l.c.DTMF += tone
	l.c.HasDTMF = true
	t.touch(l)
	if err := s.commit(t); err != nil {
		return nil, err
	}
	return l.cur, nil
}

// DeviceState returns the lamp and registration status of a device. The
// simulated phones are always registered; park orbits and queues have no
// registration (unknown).
func (s *Sim) DeviceState(name string) (DeviceState, error) {
	dev, ok := s.dir.Device(name)
	if !ok {
		return DeviceState{}, fmt.Errorf("%w: no device %q", ErrNotFound, name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	calls := make([]*callstore.Call, 0, len(s.byDev[name]))
	for _, l := range s.byDev[name] {
		if !l.dead && l.cur != nil {
			calls = append(calls, l.cur)
		}
	}
	st := DeviceState{BLF: BLFOf(calls), Status: StatusUnknown}
	if isPhone(dev) {
		st.Status = StatusUp
	}
	return st, nil
}

// PlaceInbound places a call from an external number to an extension.
func (s *Sim) PlaceInbound(ctx context.Context, fromNumber, fromName, toExtension string) ([]*callstore.Call, error) {
	if err := checkExternal(fromNumber); err != nil {
		return nil, fmt.Errorf("from: %w", err)
	}
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	x, ok := s.dir.Extension(toExtension)
	if !ok {
		return nil, fmt.Errorf("%w: %q is not an extension", ErrInvalidNumber, toExtension)
	}
	if x.Type == directory.ExtensionPark {
		return nil, fmt.Errorf("%w: park orbit %s cannot be called from outside", ErrInvalidNumber, x.Number)
	}
	t := newTx()
	r := &remote{name: fromName, number: fromNumber, nr: callstore.NRRing}
	legs := s.route(t, origin{rem: r}, dest{ext: x, number: toExtension}, modeInbound)
	if err := s.commit(t); err != nil {
		return nil, err
	}
	out := make([]*callstore.Call, 0, len(legs))
	for _, l := range legs {
		out = append(out, l.cur)
	}
	return out, nil
}

func (s *Sim) remoteOf(op string, l *leg) (*remote, error) {
	if l.ext == nil {
		return nil, stateErr(op, l, "no external party is being called on this call", callstore.StateRing)
	}
	return l.ext, nil
}

// AnswerRemote answers, as the external party, a call ringing out to it.
func (s *Sim) AnswerRemote(ctx context.Context, uid int64) (*callstore.Call, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	l, err := s.live(uid)
	if err != nil {
		return nil, err
	}
	r, err := s.remoteOf("answer-remote", l)
	if err != nil {
		return nil, err
	}
	if r.nr == callstore.NRUp {
		return l.cur, nil
	}
	t := newTx()
	s.stop(r.timer)
	s.remoteAnswer(t, r)
	if err := s.commit(t); err != nil {
		return nil, err
	}
	return l.cur, nil
}

// RejectRemote rejects, as the external party, a call ringing out to it.
func (s *Sim) RejectRemote(ctx context.Context, uid int64, cause int32) (*callstore.Call, error) {
	if cause == 0 {
		cause = CauseRejected
	}
	if cause < 1 || cause > 127 {
		return nil, fmt.Errorf("%w: cause %d is not a Q.850 cause", ErrInvalidArgument, cause)
	}
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	l, err := s.live(uid)
	if err != nil {
		return nil, err
	}
	r, err := s.remoteOf("reject-remote", l)
	if err != nil {
		return nil, err
	}
	if r.nr != callstore.NRRinging {
		return nil, stateErr("reject-remote", l, "the external party already answered", callstore.StateRing)
	}
	t := newTx()
	s.remoteEnd(t, r, cause)
	if err := s.commit(t); err != nil {
		return nil, err
	}
	return l.cur, nil
}

// HangupRemote hangs up as the external party of the leg: the leg (and
// whatever rings for the same external caller) ends with 16.
func (s *Sim) HangupRemote(ctx context.Context, uid int64) (*callstore.Call, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	l, err := s.live(uid)
	if err != nil {
		return nil, err
	}
	t := newTx()
	switch rg := l.ringing; {
	case l.ext != nil:
		s.kill(t, l, CauseNormalClearing)
	case rg != nil && rg.rem != nil:
		s.dissolve(t, rg, CauseNormalClearing)
	case rg != nil && rg.queue && rg.origin.ext != nil:
		s.kill(t, rg.origin, CauseNormalClearing)
	default:
		return nil, fmt.Errorf("%w: call %d has no external party", ErrNotFound, uid)
	}
	if err := s.commit(t); err != nil {
		return nil, err
	}
	return l.cur, nil
}

// SetNumberBehaviour sets how an external number handles calls to it.
func (s *Sim) SetNumberBehaviour(number string, b Behaviour) error {
	if err := checkExternal(number); err != nil {
		return err
	}
	if b.Action < directory.ActionAnswer || b.Action > directory.ActionManual {
		return fmt.Errorf("%w: unknown behaviour %d", ErrInvalidArgument, b.Action)
	}
	if b.AnswerDelay < 0 || b.Cause < 0 || b.Cause > 127 {
		return fmt.Errorf("%w: negative delay or bad cause", ErrInvalidArgument)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.behaviours[number] = b
	return nil
}

// liveCalls returns the committed values of the live legs, by uid.
func (s *Sim) liveCalls() []*callstore.Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*callstore.Call, 0, len(s.legs))
	for _, l := range s.legs {
		if !l.dead && l.cur != nil {
			out = append(out, l.cur)
		}
	}
	slices.SortFunc(out, func(a, b *callstore.Call) int { return int(a.UID - b.UID) })
	return out
}
