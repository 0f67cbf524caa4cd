package pbx

import (
	"context"
)

// Driver is a channel driver: it turns what the engine decided into
// signalling toward phones and the trunk, and reports signalling back
// through the engine's event methods ([Engine.Answered], [Engine.HungUp],
// [Engine.RemoteAnswered], ...).
//
// The engine calls the signalling methods in the order it decided them,
// one at a time, after it committed the operation and without holding its
// lock, so a driver may do network I/O in them and may report events back
// to the engine from inside them. They should start the signalling and
// return rather than wait for the far end: what the far end answers comes
// back as an event. The context is the engine's: it ends when the engine
// closes.
//
// Refuse, Status, CanAnswer and CanDtmf are different: the engine asks them while it holds
// its lock, so they must answer from memory at once and never call the
// engine.
type Driver interface {
	// Refuse says whether a target cannot be signalled at all right now
	// (an unregistered phone, a number the trunk always refuses): 0 if it
	// can, else the Q.850 cause the caller hears. It must not block.
	Refuse(t Target) int32
	// Status is the registration health of a device. It must not block.
	Status(device string) DeviceStatus
	// CanAnswer says whether a device can be told to answer a ringing
	// call (the API's Talk). It must not block.
	CanAnswer(device string) bool
	// CanDtmf says whether the driver carries the API's DTMF tones from a
	// device that is not a WebRTC phone (whose tones the engine always
	// takes). It must not block.
	CanDtmf(device string) bool

	// Offhook asks the device of a leg the API dialled to go off-hook
	// (click-to-dial: the caller's own phone rings first). The driver
	// reports [Engine.Answered] when it did, or [Engine.Refused].
	Offhook(ctx context.Context, leg LegRef, autoAnswer bool)
	// Ring makes a device ring for a new callee leg. The driver reports
	// [Engine.Answered] or [Engine.Refused].
	Ring(ctx context.Context, r Ring)
	// Answer asks a ringing phone to answer by itself (the API's Talk on
	// a ringing call); the driver reports [Engine.Answered], or
	// [Engine.AnswerFailed] when the phone could not be asked.
	Answer(ctx context.Context, leg LegRef)
	// Originate calls an external number over the trunk for a leg; the
	// driver reports [Engine.RemoteAnswered] or [Engine.RemoteEnded].
	Originate(ctx context.Context, o Originate)
	// Bridge connects two parties that now talk to each other (an answer,
	// a transfer, a pickup): the driver exchanges their media
	// descriptions. Remote parties have ID set, legs UID.
	Bridge(ctx context.Context, a, b Party)
	// Hold tells the other party of a leg that the leg put it on hold
	// (held) or took it back.
	Hold(ctx context.Context, leg LegRef, other Party, held bool)
	// Hangup ends the signalling of a leg with a cause (BYE, CANCEL or a
	// refusal, whichever fits the leg's stage). It is not called for a
	// leg its own device ended.
	Hangup(ctx context.Context, leg LegRef, cause int32)
	// HangupRemote ends the call of an external party with a cause. It is
	// not called for a party that ended the call itself.
	HangupRemote(ctx context.Context, id RemoteID, cause int32)
	// Dtmf sends one tone on an up leg.
	Dtmf(ctx context.Context, leg LegRef, tone string)
}

// RemoteID names an external party (the trunk side of a call) for as long
// as it is connected to the PBX. It is never reused.
type RemoteID int64

// LegRef names a leg to a driver.
type LegRef struct {
	UID    int64
	Device string
}

// Party is one end of a bridge: a leg, or an external party.
type Party struct {
	Leg    LegRef   // UID 0: not a leg
	Remote RemoteID // 0: not an external party
}

// Target is what the engine is about to signal: a device or an external
// number.
type Target struct {
	Device string // a device to ring
	Number string // or an external number to call
}

// Ring asks a driver to ring a device for a callee leg.
type Ring struct {
	Leg LegRef
	// From is who calls: a leg or an external party (zero for a queue's
	// music-on-hold leg ringing its agents).
	From Party
	// Name and Number identify the caller to the phone.
	Name, Number string
}

// Originate asks a driver to call an external number.
type Originate struct {
	Remote RemoteID
	Number string
	From   LegRef // the leg that calls
	// Name and Number identify the caller to the far end.
	CallerName, CallerNumber string
}

// signal is one driver call decided under the engine's lock and made
// after it is released (flush): which method, op, and its arguments. A
// value rather than a closure: an operation decides a few, and a closure
// each was an allocation each.
type signal struct {
	op     signalOp
	flag   bool     // offhook: auto answer; hold: held
	cause  int32    // hangup, hangupRemote
	leg    LegRef   // the leg signalled (ring: the ringing leg; originate: the calling one); not for bridge, hangupRemote
	remote RemoteID // hangupRemote, originate
	a, b   Party    // bridge: the two parties; ring: a calls; hold: b is the other party
	// ring: the caller; originate: the caller as the far end sees it.
	name, number string
	text         string // dtmf: the tone; originate: the number called
}

// signalOp names the Driver method a signal calls.
type signalOp uint8

// The signal ops: one per signalling method of Driver.
const (
	sigOffhook signalOp = iota + 1
	sigRing
	sigAnswer
	sigOriginate
	sigBridge
	sigHold
	sigHangup
	sigHangupRemote
	sigDtmf
)

// deliver makes the driver call.
func (s *signal) deliver(ctx context.Context, d Driver) {
	switch s.op {
	case sigOffhook:
		d.Offhook(ctx, s.leg, s.flag)
	case sigRing:
		d.Ring(ctx, Ring{Leg: s.leg, From: s.a, Name: s.name, Number: s.number})
	case sigAnswer:
		d.Answer(ctx, s.leg)
	case sigOriginate:
		d.Originate(ctx, Originate{Remote: s.remote, Number: s.text, From: s.leg, CallerName: s.name, CallerNumber: s.number})
	case sigBridge:
		d.Bridge(ctx, s.a, s.b)
	case sigHold:
		d.Hold(ctx, s.leg, s.b, s.flag)
	case sigHangup:
		d.Hangup(ctx, s.leg, s.cause)
	case sigHangupRemote:
		d.HangupRemote(ctx, s.remote, s.cause)
	case sigDtmf:
		d.Dtmf(ctx, s.leg, s.text)
	}
}

// flush delivers the signals queued by committed operations, in order and
// one at a time. Whichever goroutine finds no one delivering becomes the
// deliverer until the queue is empty; a driver that reports an event from
// inside a signal re-enters the engine, queues more, and returns at once:
// the outer loop delivers those next. The engine's lock is never held
// while a driver runs. With Options.Sync, signals wait until the
// revisions that decided them are stored; if that fails, they are
// dropped: the operations failed and the engine's owner closes it.
func (e *Engine) flush() {
	e.mu.Lock()
	if e.flushing {
		e.mu.Unlock()
		return
	}
	e.flushing = true
	for len(e.outbox) > 0 {
		out := e.outbox
		e.outbox, e.spare = e.spare, nil // the signals queued meanwhile go into the array delivered before
		e.mu.Unlock()
		if e.sync != nil {
			if err := e.sync(); err != nil {
				e.log.Warn("pbx: signals dropped: their operations were not stored", "signals", len(out), "err", err)
				out = nil
			}
		}
		for i := range out {
			out[i].deliver(e.ctx, e.drv)
		}
		clear(out)
		e.mu.Lock()
		e.spare = out[:0]
	}
	e.flushing = false
	e.mu.Unlock()
}
