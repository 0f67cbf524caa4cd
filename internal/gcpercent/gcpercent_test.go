package gcpercent

import (
	"io"
	"log/slog"
	"testing"
)

// TestApply: the percent given sets the collector's GOGC, unless the
// environment sets GOGC, which the runtime has applied and which wins.
func TestApply(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var set []int
	record := func(p int) int { set = append(set, p); return 100 }
	noEnv := func(string) string { return "" }
	Apply(300, noEnv, record, log)
	if len(set) != 1 || set[0] != 300 {
		t.Errorf("Apply(300) set GOGC %v, want once to 300", set)
	}
	set = nil
	Apply(300, func(k string) string {
		if k == "GOGC" {
			return "150"
		}
		return ""
	}, record, log)
	if len(set) != 0 {
		t.Errorf("with the environment's GOGC set, GOGC was set to %v, want it left alone", set)
	}
}
