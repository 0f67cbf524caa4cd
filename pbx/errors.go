package pbx

import (
	"errors"
	"fmt"
	"strings"

	"callcontrold/callstore"
)

// The switch's errors. Match them with errors.Is: every error a switch
// returns wraps one of these with detail.
var (
	// ErrNotFound: no live leg with that uid, or no such device.
	ErrNotFound = errors.New("pbx: not found")
	// ErrInvalidArgument: a malformed argument (the parent of
	// ErrInvalidNumber and ErrInvalidTone).
	ErrInvalidArgument = errors.New("pbx: invalid argument")
	// ErrInvalidNumber: a number that is malformed or leads nowhere.
	ErrInvalidNumber error = &childError{"pbx: invalid number", ErrInvalidArgument}
	// ErrInvalidTone: a DTMF tone that is not one of 0-9, * and #.
	ErrInvalidTone error = &childError{"pbx: invalid DTMF tone", ErrInvalidArgument}
	// ErrNotSupported: the device cannot do that (mute on a desk phone,
	// hold on a handset without the hold feature, dialling from a queue).
	ErrNotSupported = errors.New("pbx: not supported by the device")
	// ErrBadState: the leg's state does not allow the operation. The
	// error is a *StateError carrying the state and the allowed ones.
	ErrBadState = errors.New("pbx: operation not allowed in the call's state")
	// ErrLimit: the device already carries as many calls as it can.
	ErrLimit = errors.New("pbx: device has too many calls")
	// ErrClosed: the switch has been closed.
	ErrClosed = errors.New("pbx: switch closed")
	// ErrUnavailable: the switch cannot act right now (a replica lost its
	// log or its leadership); the operation was not applied: retry.
	ErrUnavailable = errors.New("pbx: switch unavailable")
)

// childError is a sentinel that also matches its parent, so the server
// can map a whole family (invalid arguments) with one errors.Is.
type childError struct {
	msg    string
	parent error
}

func (e *childError) Error() string { return e.msg }
func (e *childError) Unwrap() error { return e.parent }

// StateError says an operation is not allowed in the leg's state. It
// matches errors.Is(err, ErrBadState).
type StateError struct {
	Op      string            // "hold", "talk", ...
	UID     int64             // the leg
	State   callstore.State   // its state
	Allowed []callstore.State // states that allow the operation
	Detail  string            // why, when the state alone does not say
}

func (e *StateError) Error() string {
	allowed := make([]string, len(e.Allowed))
	for i, s := range e.Allowed {
		allowed[i] = s.String()
	}
	msg := fmt.Sprintf("pbx: %s: call %d is %s (allowed: %s)", e.Op, e.UID, e.State, strings.Join(allowed, ", "))
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// Is makes errors.Is(err, ErrBadState) true.
func (e *StateError) Is(target error) bool { return target == ErrBadState }

// Q.850 cause codes the switch uses.
const (
	CauseUnallocated      int32 = 1
	CauseNoRoute          int32 = 3
	CauseNormalClearing   int32 = 16
	CauseUserBusy         int32 = 17
	CauseNoUserResponding int32 = 18
	CauseNoAnswer         int32 = 19
	CauseAbsent           int32 = 20
	CauseRejected         int32 = 21
	CauseRedirected       int32 = 23
	CauseAnsweredElse     int32 = 26
	CauseOutOfOrder       int32 = 27
)

// CauseText returns Asterisk's text for a Q.850 cause (a leg's
// Call.CauseText).
func CauseText(cause int32) string { return callstore.CauseText(cause) }

// CheckCause refuses a cause that is not a Q.850 cause (1-127): a driver
// or the simulated far end must not end a leg with one.
func CheckCause(cause int32) error {
	if cause < 1 || cause > 127 {
		return fmt.Errorf("%w: cause %d is not a Q.850 cause", ErrInvalidArgument, cause)
	}
	return nil
}
