package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"callcontrold/internal/benchkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// screen is the part of a SIPp final screen (-trace_screen) that stats
// reads, as SIPp 3.6 writes it.
const screen = `------------------------------ Scenario Screen -------- [1-9]: Change Screen --
  Call rate (length)   Port   Total-time  Total-calls  Remote-host
  10000.0(0 ms)/1.000s   25070      0.25 s          500  127.0.0.1:25060(UDP)
----------------------------- Statistics Screen ------- [1-9]: Change Screen --
  Start Time             | 2026-12-02	00:02:58.801721	1796169778.801721         
  Last Reset Time        | 2026-12-02	00:02:59.053513	1796169779.053513         
  Current Time           | 2026-12-02	00:02:59.053671	1796169779.053671         
-------------------------+---------------------------+--------------------------
  Counter Name           | Periodic value            | Cumulative value
  Successful call        |        0                  |      498                 
  Failed call            |        0                  |        2                 
`

func TestStats(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "uac_1_screen.log"), []byte(screen), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &sippProc{dir: dir}
	st, err := p.stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Successful != 498 || st.Failed != 2 || st.Seconds < 0.2519 || st.Seconds > 0.2520 {
		t.Errorf("got %+v, want 498 successful, 2 failed, 0.25195 s", st)
	}
	// A screen cut short (SIPp killed) has no counts: an error, not zeros.
	if err := os.WriteFile(filepath.Join(dir, "uac_1_screen.log"), []byte(screen[:400]), 0o600); err != nil {
		t.Fatal(err)
	}
	if st, err := p.stats(); err == nil {
		t.Errorf("truncated screen: got %+v, want an error", st)
	}
}

func TestFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string // error substring; "" for none
	}{
		{nil, ""},
		{[]string{"--smoke"}, ""},
		{[]string{"--calls", "0"}, "--calls"},
		{[]string{"--devices", "4", "--concurrency", "3"}, "--concurrency"},
		{[]string{"--devices", "4", "--concurrency", "2"}, ""},
		{[]string{"--rounds", "0"}, "--rounds"},
		{[]string{"--calls", "3", "--rounds", "4"}, "--calls"},
		{[]string{"extra"}, "unexpected"},
	} {
		_, err := parseFlags(c.args, io.Discard)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("parseFlags(%q) = %v, want error containing %q", c.args, err, c.want)
		}
	}
}

func TestReportChecks(t *testing.T) {
	// The ratio is the pairs' median: the third pair's direct round,
	// slowed by the host (ratio 2.333), does not move it.
	r := &report{Rounds: []roundPair{
		{Direct: runResult{SetupsPerSec: 2000}, Switch: runResult{SetupsPerSec: 1200}, Ratio: 0.6},
		{Direct: runResult{SetupsPerSec: 2000}, Switch: runResult{SetupsPerSec: 1000}, Ratio: 0.5},
		{Direct: runResult{SetupsPerSec: 600}, Switch: runResult{SetupsPerSec: 1400}, Ratio: 2.333},
		{Direct: runResult{SetupsPerSec: 2000}, Switch: runResult{SetupsPerSec: 1400}, Ratio: 0.7},
	}}
	r.Switch.FailedCalls = 1
	r.AnswerEvent.P99 = 4
	r.finish()
	got := map[string]bool{}
	for _, c := range r.Checks {
		got[c.Name] = c.Met
	}
	if r.Ratio != 0.65 || !got["SIP call setups/s, switch/direct (median of the pairs)"] || got["SIP failed calls (all rounds)"] || !got["SIP 200 OK → WatchCalls event p99 (ms)"] || r.AllMet || !r.broken() {
		t.Errorf("ratio %v, checks %v, all met %v, broken %v", r.Ratio, got, r.AllMet, r.broken())
	}
}

func TestRoundCalls(t *testing.T) {
	c := &config{calls: 10, rounds: 4}
	var got []int
	sum := 0
	for i := range c.rounds {
		got = append(got, c.roundCalls(i))
		sum += c.roundCalls(i)
	}
	if sum != 10 || got[0] != 3 || got[1] != 3 || got[2] != 2 || got[3] != 2 {
		t.Errorf("calls per round %v, want [3 3 2 2]", got)
	}
}

func TestRunResultAdd(t *testing.T) {
	var total runResult
	total.add(runResult{Caller: sippStats{Successful: 100, Failed: 1, Seconds: 1}, Callee: sippStats{Failed: 2}, steal: benchkit.CPUWindow{Total: 100, Stolen: 10}})
	total.add(runResult{Caller: sippStats{Successful: 300, Seconds: 1}, steal: benchkit.CPUWindow{Total: 300, Stolen: 10}})
	if total.Caller.Successful != 400 || total.SetupsPerSec != 200 || total.FailedCalls != 3 || total.Steal != 5 {
		t.Errorf("got %+v, want 400 calls, 200/s, 3 failed, steal 5 %%", total)
	}
	total.add(runResult{steal: benchkit.CPUWindow{Unknown: true}})
	if total.Steal != -1 {
		t.Errorf("steal with an unknown window: %v, want -1", total.Steal)
	}
}

func TestBenchDirectory(t *testing.T) {
	d, err := benchDirectory(3)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"SIP/2000", "SIP/2002", "SIP/" + callerUser} {
		dev, ok := d.Device(name)
		if !ok || dev.SIP == nil {
			t.Fatalf("%s: missing or without a SIP account", name)
		}
	}
	if dev, _ := d.Device("SIP/" + callerUser); dev.SIP.MaxDialogs != callerCalls {
		t.Errorf("caller max dialogs %d, want %d", dev.SIP.MaxDialogs, callerCalls)
	}
}

// TestSmokeRun runs the benchmark's smoke variant end to end (real SIPp
// processes, the in-process switch and its gRPC watcher, on loopback):
// every call of every round succeeds, every answer has its WatchCalls
// event, and no leg is left; the two pairs of rounds run in both orders.
// It checks the harness, not the figures.
func TestSmokeRun(t *testing.T) {
	c, err := parseFlags([]string{"--smoke"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := run(t.Context(), c, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Direct.Caller.Successful != c.calls || rep.Switch.Caller.Successful != c.calls || rep.Switch.Callee.Successful != c.calls {
		t.Errorf("successful calls: direct %d, switch %d (callee %d); want %d each", rep.Direct.Caller.Successful, rep.Switch.Caller.Successful, rep.Switch.Callee.Successful, c.calls)
	}
	if rep.broken() || rep.Matched != c.calls {
		t.Errorf("failed %d+%d, answers matched %d (want %d), unmatched %d, legs left %d, watch error %q",
			rep.Direct.FailedCalls, rep.Switch.FailedCalls, rep.Matched, c.calls, rep.Unmatched, rep.LegsLeft, rep.Watch)
	}
	if rep.Direct.SetupsPerSec <= 0 || rep.Switch.SetupsPerSec <= 0 || len(rep.Checks) == 0 {
		t.Errorf("no rates or checks: %+v", rep)
	}
	if len(rep.Rounds) != 2 || rep.Rounds[0].First != "direct" || rep.Rounds[1].First != "switch" {
		t.Fatalf("rounds %+v, want two pairs, direct first then switch first", rep.Rounds)
	}
	for i, p := range rep.Rounds {
		if p.Direct.Caller.Successful != c.roundCalls(i) || p.Switch.Caller.Successful != c.roundCalls(i) || p.Ratio <= 0 || p.SwitchCPU <= 0 {
			t.Errorf("pair %d: %+v, want %d calls of each kind, a ratio and the switch's CPU", i+1, p, c.roundCalls(i))
		}
	}
}

// TestCalleeFinish: a SIPp callee whose calls never come (its caller saw
// them fail) is asked to end once its grace is over, and its counts are
// read, rather than waiting for its -timeout and failing the round.
func TestCalleeFinish(t *testing.T) {
	port := mustPort()
	uas, err := startSIPp(t.Context(), t.TempDir(), sippRun{name: "idle-callee", scenario: "uas", port: port, calls: 5, timeout: runTimeout(5)})
	if err != nil {
		t.Fatal(err)
	}
	defer uas.stop()
	if err := uas.bound(); err != nil {
		t.Fatal(err)
	}
	uas.finish(100 * time.Millisecond)
	st, err := uas.wait()
	if err != nil {
		t.Fatal(err)
	}
	if st.Successful != 0 || st.Failed != 0 {
		t.Errorf("got %+v, want no call", st)
	}
}
