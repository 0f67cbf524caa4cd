package main

import (
	"io"
	"testing"

	"callcontrold/internal/gcpercent"
)

// TestParseConfigGCPercent: the default, and a value that would turn the
// collector off or make no sense is refused.
func TestParseConfigGCPercent(t *testing.T) {
	c, err := parseConfig(nil, env{}.get, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.gcPercent != gcpercent.Default {
		t.Errorf("gc-percent = %d, want %d", c.gcPercent, gcpercent.Default)
	}
	for _, v := range []string{"0", "-1"} {
		if _, err := parseConfig([]string{"--gc-percent=" + v}, env{}.get, io.Discard); err == nil {
			t.Errorf("--gc-percent=%s accepted", v)
		}
	}
}
