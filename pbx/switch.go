package pbx

import (
	"context"

	"callcontrold/callstore"
	"callcontrold/directory"
)

// DialOptions are the options of a device's dial(number, autohold,
// autoanswer).
type DialOptions struct {
	// AutoHold puts the device's calls that are up on hold first, in the
	// same revision as the new leg.
	AutoHold bool
	// AutoAnswer asks the handset to go off hook by itself when the PBX
	// rings it for the call (the driver's Offhook); the device must have
	// the answer feature. The simulated handset always goes off hook at
	// once, so there the flag only checks that it could.
	AutoAnswer bool
}

// Switch is what the server needs from a switch. Every method returns the
// legs as committed to the store ("as applied"), and one operation is one
// store revision. Errors wrap ErrNotFound, ErrInvalidArgument
// (ErrInvalidNumber, ErrInvalidTone), ErrNotSupported, ErrLimit, ErrClosed
// or are a *StateError (ErrBadState).
type Switch interface {
	// Dial originates a call from a device to an extension or an external
	// number and returns the new leg on that device.
	Dial(ctx context.Context, device, number string, opts DialOptions) (*callstore.Call, error)
	// Hold puts an up call on hold; changed is false if it was held.
	Hold(ctx context.Context, uid int64) (c *callstore.Call, changed bool, err error)
	// Talk answers a ringing incoming call or takes a held one off hold;
	// changed is false if it was up.
	Talk(ctx context.Context, uid int64) (c *callstore.Call, changed bool, err error)
	// Hangup ends the call (declines it if it rings in).
	Hangup(ctx context.Context, uid int64) (*callstore.Call, error)
	// Send redirects a ringing incoming (or queued) call to a number: old
	// is the ended leg, redirected the first new leg (nil if none, for
	// example an external destination).
	Send(ctx context.Context, uid int64, number string) (old, redirected *callstore.Call, err error)
	// Xfer blind-transfers the other party of the call to a number: c is
	// the transferrer's ended leg, transferred the other party's leg (nil
	// for an external party).
	Xfer(ctx context.Context, uid int64, number string) (c, transferred *callstore.Call, err error)
	// AtXfer bridges the other parties of two calls and ends both
	// (attended transfer).
	AtXfer(ctx context.Context, uid, targetUID int64) (c, target *callstore.Call, err error)
	// Mute mutes or unmutes a WebRTC call; changed is false if it already
	// was.
	Mute(ctx context.Context, uid int64, mute bool) (c *callstore.Call, changed bool, err error)
	// Dtmf sends one tone (0-9, *, #) on an up WebRTC call.
	Dtmf(ctx context.Context, uid int64, tone string) (*callstore.Call, error)
}

// Simulator drives the far end of the simulated driver (pbx/sim):
// external parties, which have no leg of their own.
type Simulator interface {
	// PlaceInbound places a call from an external number to an extension
	// and returns the legs it created (the queue's leg first, then every
	// ringing device). A destination where nothing can ring (all busy)
	// returns no legs and no error: the caller heard busy.
	PlaceInbound(ctx context.Context, fromNumber, fromName, toExtension string) ([]*callstore.Call, error)
	// AnswerRemote answers, as the external party, a call ringing out to
	// it.
	AnswerRemote(ctx context.Context, uid int64) (*callstore.Call, error)
	// RejectRemote rejects a call ringing out to the external party; cause
	// 0 means 21.
	RejectRemote(ctx context.Context, uid int64, cause int32) (*callstore.Call, error)
	// HangupRemote hangs up as the external party of the leg (ringing in
	// or out, or answered).
	HangupRemote(ctx context.Context, uid int64) (*callstore.Call, error)
	// SetNumberBehaviour sets how an external number handles calls to it;
	// it overrides the directory's rules.
	SetNumberBehaviour(number string, b Behaviour) error
}

// Behaviour is how an external number handles calls to it.
type Behaviour = directory.Behaviour

// The far-end actions, re-exported for callers of SetNumberBehaviour.
const (
	ActionAnswer   = directory.ActionAnswer
	ActionBusy     = directory.ActionBusy
	ActionNoAnswer = directory.ActionNoAnswer
	ActionReject   = directory.ActionReject
	ActionManual   = directory.ActionManual
)

// BLF is a device's busy lamp field, with the reference's values.
type BLF uint8

// The lamp states.
const (
	BLFIdle        BLF = 0
	BLFBusy        BLF = 1
	BLFRinging     BLF = 2
	BLFBusyRinging BLF = 3
)

// DeviceStatus is the registration health of a device.
type DeviceStatus uint8

// The statuses.
const (
	StatusUnknown DeviceStatus = iota
	StatusUp
	StatusDown
)

// DeviceState is the live state of a device.
type DeviceState struct {
	BLF    BLF
	Status DeviceStatus
}

// BLFOf derives the lamp from a device's live legs (as callstore.ByDevice
// returns them), so a reader of the store computes the same lamp as the
// switch: ringing while an incoming leg rings, busy while any other leg is
// live.
func BLFOf(calls []*callstore.Call) BLF {
	var busy, ringing bool
	for _, c := range calls {
		switch {
		case c.Dead():
		case c.NRState == callstore.NRRinging:
			ringing = true
		default:
			busy = true
		}
	}
	switch {
	case busy && ringing:
		return BLFBusyRinging
	case ringing:
		return BLFRinging
	case busy:
		return BLFBusy
	}
	return BLFIdle
}
