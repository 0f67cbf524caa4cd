package sip

import "log/slog"

// LeaderSwitch is a Switch as a replica's leader runs it (package
// replica's Engine): it closes without an error to return, logging it
// instead, since a replica closes its engine as it steps down, on its
// own goroutine, with nobody to tell.
//
// A replica starts a Switch of its own when it takes the lease (the
// listener binds its --sip-addr then) and closes it when it steps down:
// only the leader speaks SIP. Its dialogs cannot move to another
// process, so a replica over the sip driver never adopts calls; the next
// leader ends every leg this one held with cause 41.
type LeaderSwitch struct {
	*Switch
	Log *slog.Logger // nil: slog.Default()
}

// Close closes the switch as Switch.Close does.
func (s LeaderSwitch) Close() {
	if err := s.Switch.Close(); err != nil {
		log := s.Log
		if log == nil {
			log = slog.Default()
		}
		log.Warn("sip switch close", "error", err)
	}
}
