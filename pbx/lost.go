package pbx

import (
	"context"

	"callcontrold/callstore"
)

// Lost reports that a driver lost the device of a leg: the phone
// vanished without hanging up (its registration lapsed or was removed,
// or it no longer knows the call). Unlike a hang-up, which ends an
// answered call with 16, the leg ends with cause whatever its state, and
// so does what cannot outlive it (its peer; a caller that only it rang),
// so that watchers see why the call ended. Drivers pass
// CauseOutOfOrder (27). The driver has already ended the leg's own
// signalling; the peer's is ended as usual.
func (e *Engine) Lost(ctx context.Context, uid int64, cause int32) (*callstore.Call, error) {
	return e.deviceEnded(ctx, uid, cause, func(t *tx, l *leg) {
		if l.ringing != nil {
			e.decline(t, l, cause)
		} else {
			e.kill(t, l, cause)
		}
	})
}
