package pbx

import (
	"context"
	"fmt"
	"slices"

	"callcontrold/callstore"
	"callcontrold/directory"
	"callcontrold/internal/echo"
)

// The methods in this file are how a driver reports signalling. Each is
// one operation: it takes the engine's lock, decides, commits at most one
// revision, and delivers the resulting signals. An event about a leg or
// party that is already gone (a race between the phone and the engine)
// returns an error wrapping ErrNotFound and changes nothing; drivers
// usually just log it.

// Answered reports that the device of a leg went off hook: it answered a
// ringing incoming call, or it picked up for a call the API dialled from
// it (which the engine then routes).
func (e *Engine) Answered(ctx context.Context, uid int64) (*callstore.Call, error) {
	l, err := e.beginLeg(ctx, uid)
	if err != nil {
		return nil, err
	}
	defer e.end()
	t := e.newTx()
	oh := e.offHooks[l]
	switch {
	case l.ringing != nil:
		e.answer(t, l)
	case oh != nil:
		delete(e.offHooks, l)
		e.stop(&oh.timer)
		e.route(t, origin{leg: l}, oh.dest, modeDial)
	default:
		return l.cur, nil // already answered
	}
	if err := e.commit(t); err != nil {
		return nil, err
	}
	return l.cur, nil
}

// AnswerFailed reports that a ringing phone the driver's Answer was
// for could not be told to answer: it refused the request, or never got
// it. err says why and wraps one of the engine's errors (the server maps
// it); the Talk waiting for the answer returns it at once, and the call
// goes on ringing. Nothing is committed.
func (e *Engine) AnswerFailed(ctx context.Context, uid int64, err error) error {
	l, lerr := e.beginLeg(ctx, uid)
	if lerr != nil {
		return lerr
	}
	defer e.end()
	if l.ringing == nil {
		return nil // answered, or no longer ringing: nothing waits
	}
	e.answerFailed[l] = err
	e.signalChanged(l)
	return nil
}

// HungUp reports that the device of a leg hung up: an answered call ends
// with 16, a ringing incoming one is declined (21).
func (e *Engine) HungUp(ctx context.Context, uid int64) (*callstore.Call, error) {
	return e.Refused(ctx, uid, CauseRejected)
}

// Refused reports that the device of a leg refused or dropped it with a
// cause (busy 17, no answer 19, rejected 21, ...). An answered call ends
// with 16 whatever the cause.
func (e *Engine) Refused(ctx context.Context, uid int64, cause int32) (*callstore.Call, error) {
	return e.deviceEnded(ctx, uid, cause, func(t *tx, l *leg) {
		if e.offHooks[l] != nil {
			e.kill(t, l, cause) // the device refused to go off hook for its own call
		} else {
			e.hangup(t, l, cause)
		}
	})
}

// deviceEnded is Refused and Lost: the device of leg uid ended it with
// cause, so the driver is not told to (quiet); end ends the leg and what
// goes with it, in one revision.
func (e *Engine) deviceEnded(ctx context.Context, uid int64, cause int32, end func(t *tx, l *leg)) (*callstore.Call, error) {
	if err := CheckCause(cause); err != nil {
		return nil, err
	}
	l, err := e.beginLeg(ctx, uid)
	if err != nil {
		return nil, err
	}
	defer e.end()
	t := e.newTx()
	l.quiet = true
	end(t, l)
	if err := e.commit(t); err != nil {
		return nil, err
	}
	return l.cur, nil
}

// Held reports that a phone put its call on hold (held) or took it back.
// The other party is told, as for the API's Hold and Talk.
func (e *Engine) Held(ctx context.Context, uid int64, held bool) (*callstore.Call, error) {
	l, err := e.beginLeg(ctx, uid)
	if err != nil {
		return nil, err
	}
	defer e.end()
	if held == (l.c.NRState == callstore.NRHold) {
		return l.cur, nil
	}
	if l.c.State != callstore.StateUp && l.c.State != callstore.StateHold {
		return nil, stateErr("hold", l, "the phone holds or resumes only an answered call", callstore.StateUp, callstore.StateHold)
	}
	t := e.newTx()
	e.hold(t, l, held)
	if err := e.commit(t); err != nil {
		return nil, err
	}
	return l.cur, nil
}

// Originated reports that a phone dialled a number (it sent the call to
// the PBX off hook already): the leg is committed in state dial, then
// routed in a second revision, as for Dial. bind (if not nil) learns the
// new leg's uid before anything about it is signalled, so the driver can
// file the phone's dialog under it; it runs under the engine's lock and
// must neither block nor call the engine.
func (e *Engine) Originated(ctx context.Context, device, number string, bind func(uid int64)) (*callstore.Call, error) {
	if err := e.begin(ctx); err != nil {
		return nil, err
	}
	defer e.end()
	dev, d, err := e.checkDial(device, number, DialOptions{})
	if err != nil {
		return nil, err
	}
	t := e.newTx()
	a := e.newLeg(t, dev, callstore.PartyCaller)
	a.w().NRState = callstore.NRDial
	a.w().Number = number
	if bind != nil {
		bind(a.c.UID)
	}
	if err := e.commit(t); err != nil {
		return nil, err
	}
	t = e.newTx()
	e.route(t, origin{leg: a}, d, modeDial)
	if err := e.commit(t); err != nil {
		return nil, err
	}
	return a.cur, nil
}

// Inbound reports a call from an external number over the trunk to an
// extension. It returns the external party's id and the legs it created
// (the queue's leg first, then every ringing device). A destination where
// nothing can ring (all busy) returns no legs and no error: the party was
// ended with 17, and the driver told so. fromName is stored as valid
// UTF-8 of at most MaxCallerNameLen bytes, whatever the far end sent.
func (e *Engine) Inbound(ctx context.Context, fromNumber, fromName, toExtension string) (RemoteID, []*callstore.Call, error) {
	return e.InboundBind(ctx, fromNumber, fromName, toExtension, nil)
}

// InboundBind is Inbound for a driver that must know the external
// party's id before anything about it is signalled (a SIP trunk's call
// is ringing phones with its session description): bind (if not nil)
// learns it first. Like Originated's, it runs under the engine's lock
// and must neither block nor call the engine.
func (e *Engine) InboundBind(ctx context.Context, fromNumber, fromName, toExtension string, bind func(RemoteID)) (RemoteID, []*callstore.Call, error) {
	if err := CheckExternal(fromNumber); err != nil {
		return 0, nil, fmt.Errorf("from: %w", err)
	}
	fromName = callerName(fromName)
	if err := e.begin(ctx); err != nil {
		return 0, nil, err
	}
	defer e.end()
	x, ok := e.dir.Extension(toExtension)
	if !ok {
		return 0, nil, fmt.Errorf("%w: %s is not an extension", ErrInvalidNumber, echo.Quote(toExtension))
	}
	if x.Type == directory.ExtensionPark {
		return 0, nil, fmt.Errorf("%w: park orbit %s cannot be called from outside", ErrInvalidNumber, x.Number)
	}
	t := e.newTx()
	r := e.newRemote(fromName, fromNumber, callstore.NRRing)
	r.inbound = true
	if bind != nil {
		bind(r.id)
	}
	legs := e.route(t, origin{rem: r}, dest{ext: x, number: toExtension}, modeInbound)
	if err := e.commit(t); err != nil {
		return 0, nil, err
	}
	out := make([]*callstore.Call, 0, len(legs))
	for _, l := range legs {
		out = append(out, l.cur)
	}
	return r.id, out, nil
}

// RemoteAnswered reports that an external number the engine called
// answered. It returns the legs the revision changed, in commit order;
// answering twice changes nothing.
func (e *Engine) RemoteAnswered(ctx context.Context, id RemoteID) ([]*callstore.Call, error) {
	r, err := e.beginRemote(ctx, id)
	if err != nil {
		return nil, err
	}
	defer e.end()
	if r.nr != callstore.NRRinging || r.leg == nil {
		return nil, nil
	}
	t := e.newTx()
	r.nr = callstore.NRUp
	answered(r.leg)
	t.touch(r.leg)
	bridged(t, Party{Remote: r.id}, Party{Leg: r.leg.ref()})
	err = e.commit(t)
	return slices.Clone(t.committed), err // t is the engine's, reused
}

// RemoteEnded reports that an external party ended its call with a cause:
// it hung up (16), or refused a call to it (busy 17, rejected 21, ...).
// The leg it talks to or rings ends with that cause, or every leg ringing
// for it. It returns the legs the revision changed, in commit order.
func (e *Engine) RemoteEnded(ctx context.Context, id RemoteID, cause int32) ([]*callstore.Call, error) {
	if err := CheckCause(cause); err != nil {
		return nil, err
	}
	r, err := e.beginRemote(ctx, id)
	if err != nil {
		return nil, err
	}
	defer e.end()
	t := e.newTx()
	r.quiet = true
	switch {
	case r.leg != nil:
		e.kill(t, r.leg, cause)
	case r.ringer != nil:
		e.dissolve(t, r.ringer, cause)
	}
	t.detach(r, cause)
	err = e.commit(t)
	return slices.Clone(t.committed), err // t is the engine's, reused
}

func (e *Engine) remote(id RemoteID) (*remote, error) {
	r, ok := e.remotes[id]
	if !ok {
		return nil, fmt.Errorf("%w: no external party %d", ErrNotFound, id)
	}
	return r, nil
}

// RemoteInfo is what the engine knows of the external party of a leg.
type RemoteInfo struct {
	ID           RemoteID
	Name, Number string
	// Inbound: the party called the PBX; otherwise the PBX called it.
	Inbound bool
	// Attached: the leg itself talks to the party or calls it (rather
	// than ringing for it, or for the queue it waits in).
	Attached bool
	// NRState is the party's own state: ring (calling in), ringing (being
	// called) or up.
	NRState callstore.NRState
}

// RemoteOf returns the external party of a live leg: the one it talks to
// or calls, the one ringing it, or the caller of the queue it rings for.
func (e *Engine) RemoteOf(uid int64) (RemoteInfo, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	l, err := e.live(uid)
	if err != nil {
		return RemoteInfo{}, err
	}
	var r *remote
	switch rg := l.ringing; {
	case l.ext != nil:
		r = l.ext
	case rg != nil && rg.rem != nil:
		r = rg.rem
	case rg != nil && rg.queue && rg.origin.ext != nil:
		r = rg.origin.ext
	default:
		return RemoteInfo{}, fmt.Errorf("%w: call %d has no external party", ErrNotFound, uid)
	}
	return RemoteInfo{ID: r.id, Name: r.name, Number: r.number, Inbound: r.inbound, Attached: l.ext == r, NRState: r.nr}, nil
}
