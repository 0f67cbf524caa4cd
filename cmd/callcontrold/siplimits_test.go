package main

import (
	"testing"
	"time"
)

// TestSIPLimitFlagsProbe: --sip-session-probe 0 means never, which the
// switch spells as a negative interval (its 0 is the default, 90s).
func TestSIPLimitFlagsProbe(t *testing.T) {
	for _, c := range []struct {
		flag, want time.Duration
	}{{0, -1}, {90 * time.Second, 90 * time.Second}, {time.Hour, time.Hour}} {
		s := sipLimitFlags{maxDialogsPerSource: 1, sessionProbe: c.flag}
		if err := s.validate(); err != nil {
			t.Errorf("%v: %v", c.flag, err)
		}
		if got := s.probe(); got != c.want {
			t.Errorf("--sip-session-probe %v: switch gets %v, want %v", c.flag, got, c.want)
		}
	}
}
