package main

import (
	"errors"
	"flag"
	"time"
)

// sipLimitFlags are the sip switch's bounds on calls and how it notices
// vanished phones (--switch sip); a device's own bound is its directory
// entry's sip.max_dialogs.
type sipLimitFlags struct {
	maxDialogsPerSource int
	sessionProbe        time.Duration
}

func addSIPLimitFlags(fs *flag.FlagSet, s *sipLimitFlags) {
	fs.IntVar(&s.maxDialogsPerSource, "sip-max-dialogs-per-source", 128, "sip switch: calls phones at one IP address may have started and not ended; over it an INVITE gets 503 with Retry-After")
	fs.DurationVar(&s.sessionProbe, "sip-session-probe", 90*time.Second, "sip switch: ask each phone of an established call this often, inside the call, whether it still has it (OPTIONS); one that says no or does not answer loses the call (cause 27). 0: never")
}

func (s *sipLimitFlags) validate() error {
	switch {
	case s.maxDialogsPerSource < 1:
		return errors.New("--sip-max-dialogs-per-source must be at least 1")
	case s.sessionProbe < 0 || s.sessionProbe > 0 && s.sessionProbe < 10*time.Second:
		return errors.New("--sip-session-probe must be 0 (never) or at least 10s")
	}
	return nil
}

// probe is the flag as sip.Config.SessionProbe takes it (negative: never).
func (s *sipLimitFlags) probe() time.Duration {
	if s.sessionProbe == 0 {
		return -1
	}
	return s.sessionProbe
}
