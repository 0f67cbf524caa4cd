// Package gcpercent is the service's setting of the garbage collector's
// GOGC, shared by cmd/callcontrold and the load tools' in-process server
// (internal/benchserver), so that the benchmarks measure the collector as
// the service runs it.
package gcpercent

import "log/slog"

// Default is the service's GOGC when neither --gc-percent nor the GOGC
// environment variable says otherwise: twice the runtime's 100. The
// fan-out's latency tail is made of deliveries woken during a collection's
// mark phase; at 200 the collections are half as frequent, the p99
// commit→receive of the 1,000 + 10 and 10,000 + 10 fan-outs fell from
// 1.1–3.1 ms to 0.8–1.4 ms with the same CPU per event, for 8–16 % more
// RSS per live call and an idle stream's RSS within its run-to-run swing
// (docs/BENCHMARKS.md, "Sixth round: the fan-out's wake-ups").
const Default = 200

// Apply sets the garbage collector's GOGC to percent through set
// (debug.SetGCPercent), unless the environment sets GOGC: an operator's
// variable, which the runtime has read already, wins over the flag's
// default. GOMEMLIMIT, if set, still caps the heap.
func Apply(percent int, getenv func(string) string, set func(int) int, log *slog.Logger) {
	if v := getenv("GOGC"); v != "" {
		log.Info("garbage collector: GOGC from the environment", "GOGC", v)
		return
	}
	set(percent)
}
