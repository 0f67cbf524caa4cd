package main

import (
	"io"
	"log/slog"
	"testing"
)

// TestApplyGCPercent: --gc-percent sets the collector's GOGC, unless the
// environment sets GOGC, which the runtime has applied and which wins.
func TestApplyGCPercent(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var set []int
	record := func(p int) int { set = append(set, p); return 100 }
	applyGCPercent(300, env{}.get, record, log)
	if len(set) != 1 || set[0] != 300 {
		t.Errorf("--gc-percent 300 set GOGC %v, want once to 300", set)
	}
	set = nil
	applyGCPercent(300, env{"GOGC": "150"}.get, record, log)
	if len(set) != 0 {
		t.Errorf("with the environment's GOGC set, GOGC was set to %v, want it left alone", set)
	}
}

// TestParseConfigGCPercent: the default, and a value that would turn the
// collector off or make no sense is refused.
func TestParseConfigGCPercent(t *testing.T) {
	c, err := parseConfig(nil, env{}.get, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.gcPercent != defaultGCPercent {
		t.Errorf("gc-percent = %d, want %d", c.gcPercent, defaultGCPercent)
	}
	for _, v := range []string{"0", "-1"} {
		if _, err := parseConfig([]string{"--gc-percent=" + v}, env{}.get, io.Discard); err == nil {
			t.Errorf("--gc-percent=%s accepted", v)
		}
	}
}
