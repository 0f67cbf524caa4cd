// Command sipbench is the SIP scenario of `make bench`: call setups per
// second through callcontrold's SIP switch against SIPp calling SIPp
// directly, in one run, on loopback.
//
//  1. direct: a SIPp caller (UAC) calls a SIPp callee (UAS) that rings
//     and answers at once; the caller hangs up as soon as it is answered.
//  2. switch: the same SIPp callee first registers as n directory
//     devices (digest auth); the same caller calls their extensions in
//     turn through the switch as one caller device (each INVITE
//     challenged with 407 and answered), so every call is two dialogs of
//     the B2BUA, routed by the engine and committed to the store. A
//     gRPC watcher (admin, filtered to the callee devices) runs beside it.
//
// The switch is callcontrold's, built in this process as cmd/callcontrold
// builds it with --switch sip (store, engine, B2BUA, registrar, auth,
// gRPC server on loopback), so the latency "200 OK → WatchCalls event"
// reads one clock: it runs from the moment the B2BUA has the callee's
// 2xx (sip.Config.OnAnswer) to the moment the watcher has the event that
// shows that leg up. Both runs use the same scenarios, the same call
// count and the same concurrency (-l), and SIPp's rate is set far above
// what either reaches, so each runs as fast as its calls complete.
//
// Setups per second is SIPp's successful calls over the caller's own
// elapsed time. Failed calls are both SIPps' failed counts. See
// docs/BENCHMARKS.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"callcontrold/internal/benchkit"
	"callcontrold/internal/freeport"
	"callcontrold/internal/latency"
)

type config struct {
	calls       int
	concurrency int
	devices     int
	smoke       bool
	strict      bool
	jsonFile    string
	cpuProfile  string
	allocsFile  string
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("sipbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	fs.IntVar(&c.calls, "calls", 4000, "calls of each run (direct, through the switch)")
	fs.IntVar(&c.concurrency, "concurrency", 8, "calls in progress at once (SIPp -l), both runs")
	fs.IntVar(&c.devices, "devices", 16, "callee devices (and as many caller devices) the switch run spreads its calls over")
	fs.BoolVar(&c.smoke, "smoke", false, "a few calls: checks the scenario runs (CI), measures nothing")
	fs.BoolVar(&c.strict, "strict", false, "exit with status 3 when a target is missed")
	fs.StringVar(&c.jsonFile, "json", "", "also write the JSON summary to `file`")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the switch run (this process: switch, server, watcher) to `file`")
	fs.StringVar(&c.allocsFile, "allocprofile", "", "write this process's allocation profile, taken after the switch run, to `file` (pprof -sample_index=alloc_space; the direct run allocates next to nothing here)")
	if err := benchkit.ParseFlags(fs, args); err != nil {
		return nil, err
	}
	if c.smoke {
		c.calls, c.concurrency, c.devices = min(c.calls, 20), min(c.concurrency, 2), min(c.devices, 4)
	}
	switch {
	case c.calls < 1:
		return nil, errors.New("--calls must be at least 1")
	case c.devices < 1 || c.devices > 999:
		return nil, errors.New("--devices must be 1..999")
	case c.concurrency < 1 || 2*c.concurrency > c.devices:
		// A device takes one call and a waiting one, and a call's legs
		// end a moment after SIPp saw its BYE answered: with fewer than
		// two devices per call in progress, a busy machine makes the
		// engine refuse some calls busy.
		return nil, errors.New("--concurrency must be 1..--devices/2")
	}
	return c, nil
}

func main() {
	c, err := parseFlags(os.Args[1:], os.Stderr)
	benchkit.ExitOnFlagError("sipbench", err)
	// sipgo logs a few lines of its own through the default logger (late
	// provisional responses under load): warnings and errors only.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := run(ctx, c, os.Stderr)
	if rep != nil {
		rep.Command = strings.TrimSpace("go run ./cmd/sipbench " + strings.Join(os.Args[1:], " "))
		if werr := rep.write(os.Stdout, c.jsonFile); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sipbench:", err)
		os.Exit(1)
	}
	if c.smoke && rep.broken() {
		// A smoke run measures nothing, but a call that failed, an answer
		// the watcher never saw or a leg left behind is a bug.
		fmt.Fprintln(os.Stderr, "sipbench: smoke run: calls failed, events missing or legs left")
		os.Exit(1)
	}
	if c.strict && !rep.AllMet {
		fmt.Fprintln(os.Stderr, "sipbench: targets missed")
		os.Exit(3)
	}
}

// report is the JSON summary.
type report struct {
	Command     string          `json:"command"`
	Smoke       bool            `json:"smoke"`
	CPUs        int             `json:"num_cpu"`
	LoadBefore  string          `json:"loadavg_before"`
	LoadAfter   string          `json:"loadavg_after"`
	Calls       int             `json:"calls"`
	Concurrency int             `json:"concurrency"`
	Devices     int             `json:"devices"`
	Direct      runResult       `json:"direct"`
	Switch      runResult       `json:"switch"`
	Ratio       float64         `json:"ratio"`
	AnswerEvent latency.Summary `json:"answer_to_event"`
	Matched     int             `json:"answer_to_event_matched"`
	Unmatched   int             `json:"answer_to_event_unmatched"`
	// SwitchWork is this process's work (switch, server and watcher) over
	// the switch run, per successful call: the CPU figure is steadier than
	// setups/s when the SIPps and others share the processors.
	SwitchWork benchkit.WorkPerEvent `json:"switch_work_per_call"`
	LegsLeft   int                   `json:"legs_left"`
	Checks     benchkit.Checks       `json:"checks"`
	AllMet     bool                  `json:"all_met"`
	Watch      string                `json:"watch_error,omitempty"`
}

// runResult is one run's caller and callee counts.
type runResult struct {
	Caller       sippStats `json:"caller"`
	Callee       sippStats `json:"callee"`
	SetupsPerSec float64   `json:"setups_per_sec"`
	FailedCalls  int       `json:"failed_calls"`
	// Steal is the machine's CPU time the hypervisor gave other guests
	// during the run, in per cent (-1: unknown): the ratio of two runs
	// means little when one of them had much more.
	Steal float64 `json:"steal_percent"`
}

func (r *runResult) finish() {
	if r.Caller.Seconds > 0 {
		r.SetupsPerSec = float64(r.Caller.Successful) / r.Caller.Seconds
	}
	r.FailedCalls = r.Caller.Failed + r.Callee.Failed
}

// run measures the direct baseline, then the switch, and fills the
// report.
func run(ctx context.Context, c *config, progress io.Writer) (*report, error) {
	rep := &report{Smoke: c.smoke, CPUs: runtime.NumCPU(), LoadBefore: benchkit.LoadAvg(), Calls: c.calls, Concurrency: c.concurrency, Devices: c.devices}
	dir, err := os.MkdirTemp("", "sipbench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	callsInf := filepath.Join(dir, "calls.csv")
	var calls []string
	for i := range c.devices {
		calls = append(calls, fmt.Sprintf("%s;%s", calleeUser(i), callerUser))
	}
	if err := writeInf(callsInf, calls); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "sipbench: direct, SIPp → SIPp, %d calls...\n", c.calls)
	cpu0 := benchkit.ReadCPUTimes()
	if rep.Direct, err = runDirect(ctx, c, dir, callsInf); err != nil {
		return rep, fmt.Errorf("direct: %w", err)
	}
	cpu1 := benchkit.ReadCPUTimes()
	rep.Direct.Steal = cpu0.StealPercent(cpu1)
	fmt.Fprintf(progress, "sipbench: through the switch, SIPp → callcontrold → SIPp, %d calls...\n", c.calls)
	if err := runSwitch(ctx, c, dir, callsInf, rep); err != nil {
		return rep, fmt.Errorf("switch: %w", err)
	}
	rep.Switch.Steal = cpu1.StealPercent(benchkit.ReadCPUTimes())
	rep.LoadAfter = benchkit.LoadAvg()
	rep.finish()
	return rep, nil
}

// runTimeout bounds each SIPp run: generous, as the machine may be busy.
func runTimeout(c *config) time.Duration {
	return 30*time.Second + time.Duration(c.calls)*20*time.Millisecond
}

// runPair runs the callee (already started) and a caller to remote, and
// returns both counts.
func runPair(ctx context.Context, c *config, dir string, caller sippRun, uas *sippProc) (runResult, error) {
	defer uas.stop()
	caller.port, caller.calls, caller.rate, caller.limit, caller.timeout = mustPort(), c.calls, 100000, c.concurrency, runTimeout(c)
	uac, err := startSIPp(ctx, dir, caller)
	if err != nil {
		return runResult{}, err
	}
	var res runResult
	if res.Caller, err = uac.wait(); err != nil {
		return res, err
	}
	if res.Callee, err = uas.wait(); err != nil {
		// A callee that timed out waiting usually means calls the caller
		// saw fail never reached it: say so.
		return res, fmt.Errorf("caller: %d successful, %d failed; callee: %w", res.Caller.Successful, res.Caller.Failed, err)
	}
	res.finish()
	return res, nil
}

func runDirect(ctx context.Context, c *config, dir, inf string) (runResult, error) {
	port := mustPort()
	uas, err := startSIPp(ctx, dir, sippRun{name: "direct-callee", scenario: "uas", port: port, calls: c.calls, timeout: runTimeout(c)})
	if err != nil {
		return runResult{}, err
	}
	if err := uas.bound(); err != nil {
		uas.stop()
		return runResult{}, err
	}
	return runPair(ctx, c, dir, sippRun{name: "direct-caller", scenario: "uac", remote: fmt.Sprintf("127.0.0.1:%d", port), inf: inf}, uas)
}

func runSwitch(ctx context.Context, c *config, dir, callsInf string, rep *report) error {
	d, err := benchDirectory(c.devices)
	if err != nil {
		return err
	}
	env, err := newSwitchEnv(d)
	if err != nil {
		return err
	}
	defer env.close()
	sipAddr := env.sw.Endpoint.Addr().String()
	port := mustPort()
	var devices []string
	for i := range c.devices {
		u := calleeUser(i)
		devices = append(devices, "SIP/"+u)
		reg, err := startSIPp(ctx, dir, sippRun{name: "register-" + u, scenario: "register", remote: sipAddr, port: port, calls: 1, service: u, authUser: u, authPassword: password(u), timeout: 30 * time.Second})
		if err != nil {
			return err
		}
		if st, err := reg.wait(); err != nil || st.Successful != 1 {
			return fmt.Errorf("register %s: %v %+v", u, err, st)
		}
	}
	if err := env.waitRegistered(devices, 10*time.Second); err != nil {
		return err
	}
	wctx, cancelWatch := context.WithCancel(ctx)
	defer cancelWatch()
	watchDone, err := env.watch(wctx, devices)
	if err != nil {
		return err
	}
	uas, err := startSIPp(ctx, dir, sippRun{name: "switch-callee", scenario: "uas", port: port, calls: c.calls, timeout: runTimeout(c)})
	if err != nil {
		return err
	}
	if err := uas.bound(); err != nil {
		uas.stop()
		return err
	}
	caller := sippRun{name: "switch-caller", scenario: "uac_auth", remote: sipAddr, inf: callsInf, authUser: callerUser, authPassword: password(callerUser)}
	stopProfile, err := benchkit.StartCPUProfile(c.cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	w0 := benchkit.ReadWork()
	if rep.Switch, err = runPair(ctx, c, dir, caller, uas); err != nil {
		return err
	}
	rep.SwitchWork = benchkit.PerEvent(w0, benchkit.ReadWork(), uint64(rep.Switch.Caller.Successful))
	if c.allocsFile != "" {
		if err := benchkit.WriteProfile(c.allocsFile, "allocs", 0); err != nil {
			return err
		}
	}
	env.answers.settle(10 * time.Second)
	var h latency.Hist
	lat, unmatched := env.answers.pairs()
	for _, l := range lat {
		h.Record(l)
	}
	rep.AnswerEvent, rep.Matched, rep.Unmatched = h.Summary(), len(lat), unmatched
	cancelWatch()
	if err := <-watchDone; err != nil {
		rep.Watch = err.Error()
	}
	rep.LegsLeft = waitLegsGone(env, 10*time.Second)
	return nil
}

// waitLegsGone waits (bounded) for the store to hold no live leg, and
// returns how many are left: every call ended, so none should be.
func waitLegsGone(env *switchEnv, limit time.Duration) int {
	deadline := time.Now().Add(limit)
	for {
		n := env.liveLegs()
		if n == 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustPort() int {
	p, err := freeport.Port()
	if err != nil {
		panic(err) // loopback without a free port: nothing can run
	}
	return p
}

func (r *report) finish() {
	if r.Direct.SetupsPerSec > 0 {
		r.Ratio = float64(int64(r.Switch.SetupsPerSec/r.Direct.SetupsPerSec*1000+0.5)) / 1000
	}
	add := r.Checks.Add
	add("SIP call setups/s, switch/direct", r.Ratio, ">=", 0.5)
	add("SIP failed calls (both runs)", float64(r.Direct.FailedCalls+r.Switch.FailedCalls), "<=", 0)
	add("SIP 200 OK → WatchCalls event p99 (ms)", r.AnswerEvent.P99, "<=", 5)
	add("answers without their WatchCalls event", float64(r.Unmatched), "<=", 0)
	add("legs left in the store", float64(r.LegsLeft), "<=", 0)
	r.AllMet = r.Checks.AllMet()
}

// broken says the run went wrong whatever the machine's speed.
func (r *report) broken() bool {
	return r.Direct.FailedCalls+r.Switch.FailedCalls > 0 || r.Unmatched > 0 || r.LegsLeft > 0 || r.Watch != ""
}

// write prints the table, then the JSON summary (also to file when set).
func (r *report) write(w io.Writer, file string) error {
	fmt.Fprintf(w, "sipbench: %d CPUs, load average %s → %s; %d calls per run, %d at once, %d callee devices\n",
		r.CPUs, r.LoadBefore, r.LoadAfter, r.Calls, r.Concurrency, r.Devices)
	if r.Smoke {
		fmt.Fprintln(w, "SMOKE RUN: a few calls; the figures mean nothing")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "run\tsetups/s\tsuccessful\tfailed (caller+callee)\tcaller time (s)\tsteal\t")
	for _, x := range []struct {
		name string
		r    runResult
	}{{"direct SIPp → SIPp", r.Direct}, {"SIPp → switch → SIPp", r.Switch}} {
		fmt.Fprintf(tw, "%s\t%.0f\t%d\t%d\t%.3f\t%s\t\n", x.name, x.r.SetupsPerSec, x.r.Caller.Successful, x.r.FailedCalls, x.r.Caller.Seconds, strings.TrimPrefix(benchkit.StealText(x.r.Steal), "steal "))
	}
	_ = tw.Flush()
	a := r.AnswerEvent
	fmt.Fprintf(w, "200 OK → WatchCalls event (ms): p50 %.3f, p99 %.3f, max %.3f, mean %.3f (%d answers, %d without event); legs left %d\n",
		a.P50, a.P99, a.Max, a.Mean, r.Matched, r.Unmatched, r.LegsLeft)
	sw := r.SwitchWork
	fmt.Fprintf(w, "this process (switch, server, watcher) per call through the switch: %.1f µs CPU, %.0f allocations, %.0f B allocated, %.1f goroutines created, %.1f write syscalls\n\n",
		sw.CPUMicros, sw.Allocs, sw.AllocBytes, sw.Goroutines, sw.Writes)
	r.Checks.WriteTable(w)
	return benchkit.WriteJSON(w, r, file)
}
