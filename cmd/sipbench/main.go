// Command sipbench is the SIP scenario of `make bench`: call setups per
// second through callcontrold's SIP switch against SIPp calling SIPp
// directly, in one run, on loopback.
//
// The two kinds run in turn, as --rounds pairs of short rounds (a direct
// round and a switch round each; the direct one first in even pairs, the
// switch one first in odd pairs), so that what the host takes from the
// machine minute to minute falls on both kinds alike. The ratio checked
// against the target is the median of the pairs' ratios.
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
// shows that leg up. Both kinds use the same scenarios, the same call
// count and the same concurrency (-l), and SIPp's rate is set far above
// what either reaches, so each round runs as fast as its calls complete.
// The switch is built and its callee devices registered once, before the
// first round; its watcher runs through all the rounds.
//
// A round's setups per second is SIPp's successful calls over the
// caller's own elapsed time. Failed calls are both SIPps' failed counts,
// summed over every round; the latency is over every switch round
// together. See docs/BENCHMARKS.md.
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
	rounds      int
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
	fs.IntVar(&c.calls, "calls", 4000, "calls of each kind (direct, through the switch), split over the rounds")
	fs.IntVar(&c.rounds, "rounds", 4, "pairs of rounds: a direct round and a switch round each, in turn")
	fs.IntVar(&c.concurrency, "concurrency", 8, "calls in progress at once (SIPp -l), both kinds")
	fs.IntVar(&c.devices, "devices", 16, "callee devices (and as many caller devices) the switch rounds spread their calls over")
	fs.BoolVar(&c.smoke, "smoke", false, "a few calls: checks the scenario runs (CI), measures nothing")
	fs.BoolVar(&c.strict, "strict", false, "exit with status 3 when a target is missed")
	fs.StringVar(&c.jsonFile, "json", "", "also write the JSON summary to `file`")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the rounds (this process: switch, server, watcher; next to idle in the direct rounds) to `file`")
	fs.StringVar(&c.allocsFile, "allocprofile", "", "write this process's allocation profile, taken after the last round, to `file` (pprof -sample_index=alloc_space; the direct rounds allocate next to nothing here)")
	if err := benchkit.ParseFlags(fs, args); err != nil {
		return nil, err
	}
	if c.smoke {
		c.calls, c.rounds, c.concurrency, c.devices = min(c.calls, 20), min(c.rounds, 2), min(c.concurrency, 2), min(c.devices, 4)
	}
	switch {
	case c.rounds < 1:
		return nil, errors.New("--rounds must be at least 1")
	case c.calls < c.rounds:
		return nil, errors.New("--calls must be at least --rounds (a call per round)")
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

// roundCalls is the calls of round i (0-based) of either kind: c.calls
// split over the rounds, the first rounds taking the remainder.
func (c *config) roundCalls(i int) int {
	n := c.calls / c.rounds
	if i < c.calls%c.rounds {
		n++
	}
	return n
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
	Command     string `json:"command"`
	Smoke       bool   `json:"smoke"`
	CPUs        int    `json:"num_cpu"`
	LoadBefore  string `json:"loadavg_before"`
	LoadAfter   string `json:"loadavg_after"`
	Calls       int    `json:"calls"` // of each kind, over all its rounds
	Concurrency int    `json:"concurrency"`
	Devices     int    `json:"devices"`
	// Direct and Switch are each kind's rounds summed: calls, caller
	// seconds, setups/s over them, and the steal over the kind's windows.
	Direct runResult `json:"direct"`
	Switch runResult `json:"switch"`
	// Rounds are the pairs of rounds, in the order they ran.
	Rounds []roundPair `json:"rounds"`
	// Ratio is the median of the pairs' ratios: the figure the target
	// checks. A ratio of the summed rates would follow whichever kind's
	// rounds the host slowed most; a pair's two rounds ran within seconds
	// of each other.
	Ratio       float64         `json:"ratio"`
	AnswerEvent latency.Summary `json:"answer_to_event"`
	Matched     int             `json:"answer_to_event_matched"`
	Unmatched   int             `json:"answer_to_event_unmatched"`
	// SwitchWork is this process's work (switch, server and watcher) over
	// the switch rounds, per successful call: the CPU figure is steadier
	// than setups/s when the SIPps and others share the processors.
	SwitchWork benchkit.WorkPerEvent `json:"switch_work_per_call"`
	LegsLeft   int                   `json:"legs_left"`
	Checks     benchkit.Checks       `json:"checks"`
	AllMet     bool                  `json:"all_met"`
	Watch      string                `json:"watch_error,omitempty"`
}

// roundPair is a direct round and a switch round that ran one right
// after the other.
type roundPair struct {
	First  string    `json:"first"` // "direct" or "switch"
	Direct runResult `json:"direct"`
	Switch runResult `json:"switch"`
	Ratio  float64   `json:"ratio"` // switch setups/s over direct setups/s
	// SwitchCPU is this process's CPU time per successful call over the
	// switch round, in µs.
	SwitchCPU float64 `json:"switch_cpu_us_per_call"`
	// DirectIdleCPU is this process's CPU time during the direct round,
	// in per cent of one processor: the switch's leftovers (sipgo's
	// transaction timers, the collector) competing with the two SIPps.
	DirectIdleCPU float64 `json:"direct_round_process_cpu_percent"`
	// SwitchGCs are the collections during the switch round, and
	// StackStart the stack size the runtime gave new goroutines at its
	// end (/gc/stack/starting-size, set at each collection from the
	// stacks it scanned): at 2 KiB every goroutine sipgo starts for a
	// message grows its stack by copying, at 4 KiB few do, and the CPU
	// per call moves by about 5 % with it (docs/BENCHMARKS.md, "Tenth
	// round: SIP rounds").
	SwitchGCs  uint64 `json:"switch_round_gc_cycles"`
	StackStart uint64 `json:"stack_starting_size_bytes"`
}

// runResult is one round's caller and callee counts, or a kind's rounds
// summed.
type runResult struct {
	Caller       sippStats `json:"caller"`
	Callee       sippStats `json:"callee"`
	SetupsPerSec float64   `json:"setups_per_sec"`
	FailedCalls  int       `json:"failed_calls"`
	// Steal is the machine's CPU time the hypervisor gave other guests
	// during the round (or the kind's rounds), in per cent (-1: unknown):
	// the ratio of two rounds means little when one of them had much more.
	Steal float64 `json:"steal_percent"`
	// steal is the /proc/stat ticks behind Steal, for the kind's sum.
	steal benchkit.CPUWindow
}

func (r *runResult) finish() {
	if r.Caller.Seconds > 0 {
		r.SetupsPerSec = float64(r.Caller.Successful) / r.Caller.Seconds
	}
	r.FailedCalls = r.Caller.Failed + r.Callee.Failed
	r.Steal = r.steal.StealPercent()
}

// add sums a round into a kind's totals.
func (r *runResult) add(o runResult) {
	r.Caller.Successful += o.Caller.Successful
	r.Caller.Failed += o.Caller.Failed
	r.Caller.Seconds += o.Caller.Seconds
	r.Callee.Successful += o.Callee.Successful
	r.Callee.Failed += o.Callee.Failed
	r.Callee.Seconds += o.Callee.Seconds
	r.steal = r.steal.Add(o.steal)
	r.finish()
}

// run measures the rounds in turn and fills the report.
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
	fmt.Fprintf(progress, "sipbench: registering %d callee devices with the switch...\n", c.devices)
	sw, err := startSwitch(ctx, c, dir, callsInf)
	if err != nil {
		return nil, fmt.Errorf("switch: %w", err)
	}
	defer sw.close()
	fmt.Fprintf(progress, "sipbench: %d pairs of rounds, SIPp → SIPp and SIPp → callcontrold → SIPp in turn, %d calls of each kind...\n", c.rounds, c.calls)
	stopProfile, err := benchkit.StartCPUProfile(c.cpuProfile)
	if err != nil {
		return nil, err
	}
	var switchWork benchkit.Work
	for i := range c.rounds {
		p, w, err := runRounds(ctx, c, i, dir, callsInf, sw)
		if err != nil {
			stopProfile()
			return rep, fmt.Errorf("pair %d: %w", i+1, err)
		}
		fmt.Fprintf(progress, "sipbench: pair %d: direct %.0f/s, switch %.0f/s, ratio %.3f\n", i+1, p.Direct.SetupsPerSec, p.Switch.SetupsPerSec, p.Ratio)
		rep.Rounds = append(rep.Rounds, p)
		rep.Direct.add(p.Direct)
		rep.Switch.add(p.Switch)
		switchWork = switchWork.Add(w)
	}
	stopProfile()
	rep.SwitchWork = benchkit.PerEvent(benchkit.Work{}, switchWork, uint64(rep.Switch.Caller.Successful))
	if c.allocsFile != "" {
		if err := benchkit.WriteProfile(c.allocsFile, "allocs", 0); err != nil {
			return rep, err
		}
	}
	sw.finish(rep)
	rep.LoadAfter = benchkit.LoadAvg()
	rep.finish()
	return rep, nil
}

// runRounds runs pair i: a direct round and a switch round, the direct
// one first when i is even. It returns the pair and this process's work
// over its switch round.
func runRounds(ctx context.Context, c *config, i int, dir, callsInf string, sw *switchRun) (roundPair, benchkit.Work, error) {
	p := roundPair{First: "direct"}
	if i%2 == 1 {
		p.First = "switch"
	}
	calls := c.roundCalls(i)
	var work benchkit.Work
	for j := range 2 {
		var err error
		if j == 0 == (p.First == "direct") {
			w0, t0 := benchkit.ReadWork(), time.Now()
			if p.Direct, err = runDirect(ctx, c, calls, i, dir, callsInf); err != nil {
				return p, work, fmt.Errorf("direct: %w", err)
			}
			if el := time.Since(t0); el > 0 {
				p.DirectIdleCPU = benchkit.Round3(100 * float64(benchkit.ReadWork().Sub(w0).CPU) / float64(el))
			}
			continue
		}
		w0, gc0 := benchkit.ReadWork(), readGCs()
		if p.Switch, err = sw.round(ctx, c, calls, i, dir); err != nil {
			return p, work, fmt.Errorf("switch: %w", err)
		}
		work = benchkit.ReadWork().Sub(w0)
		p.SwitchGCs, p.StackStart = readGCs()-gc0, benchkit.ReadMetrics("/gc/stack/starting-size:bytes").Uint64(0)
		if p.Switch.Caller.Successful > 0 {
			p.SwitchCPU = benchkit.Round3(float64(work.CPU.Nanoseconds()) / 1e3 / float64(p.Switch.Caller.Successful))
		}
		// The next round starts with no leg of this one left, so that a
		// callee device still busy cannot refuse its calls.
		waitLegsGone(sw.env, 10*time.Second)
	}
	if p.Direct.SetupsPerSec > 0 {
		p.Ratio = benchkit.Round3(p.Switch.SetupsPerSec / p.Direct.SetupsPerSec)
	}
	return p, work, nil
}

func readGCs() uint64 { return benchkit.ReadMetrics("/gc/cycles/total:gc-cycles").Uint64(0) }

// runTimeout bounds each SIPp run: generous, as the machine may be busy.
func runTimeout(calls int) time.Duration {
	return 30*time.Second + time.Duration(calls)*20*time.Millisecond
}

// calleeGrace is how long a callee may take to end after its caller
// did: its last BYE is answered a moment after the caller's last call
// ends, unless the machine is very busy.
const calleeGrace = 5 * time.Second

// runPair runs the callee (already started) and a caller of calls calls
// to remote, and returns both counts and the steal of the window.
func runPair(ctx context.Context, c *config, calls int, dir string, caller sippRun, uas *sippProc) (runResult, error) {
	defer uas.stop()
	caller.port, caller.calls, caller.rate, caller.limit, caller.timeout = mustPort(), calls, 100000, c.concurrency, runTimeout(calls)
	cpu0 := benchkit.ReadCPUTimes()
	uac, err := startSIPp(ctx, dir, caller)
	if err != nil {
		return runResult{}, err
	}
	var res runResult
	if res.Caller, err = uac.wait(); err != nil {
		return res, err
	}
	res.steal = cpu0.Window(benchkit.ReadCPUTimes())
	uas.finish(calleeGrace)
	if res.Callee, err = uas.wait(); err != nil {
		// A callee that timed out waiting usually means calls the caller
		// saw fail never reached it: say so.
		return res, fmt.Errorf("caller: %d successful, %d failed; callee: %w", res.Caller.Successful, res.Caller.Failed, err)
	}
	res.finish()
	return res, nil
}

func runDirect(ctx context.Context, c *config, calls, round int, dir, inf string) (runResult, error) {
	port := mustPort()
	uas, err := startSIPp(ctx, dir, sippRun{name: fmt.Sprintf("direct-callee-%d", round), scenario: "uas", port: port, calls: calls, timeout: runTimeout(calls)})
	if err != nil {
		return runResult{}, err
	}
	if err := uas.bound(); err != nil {
		uas.stop()
		return runResult{}, err
	}
	return runPair(ctx, c, calls, dir, sippRun{name: fmt.Sprintf("direct-caller-%d", round), scenario: "uac", remote: fmt.Sprintf("127.0.0.1:%d", port), inf: inf}, uas)
}

// switchRun is the switch with its callee devices registered (their
// contact is port, where each switch round's SIPp callee listens) and
// its watcher running, for all the switch rounds.
type switchRun struct {
	env         *switchEnv
	port        int
	callsInf    string
	cancelWatch context.CancelFunc
	watchDone   <-chan error
}

func startSwitch(ctx context.Context, c *config, dir, callsInf string) (*switchRun, error) {
	d, err := benchDirectory(c.devices)
	if err != nil {
		return nil, err
	}
	env, err := newSwitchEnv(d)
	if err != nil {
		return nil, err
	}
	s := &switchRun{env: env, port: mustPort(), callsInf: callsInf}
	if err := s.start(ctx, c, dir); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *switchRun) start(ctx context.Context, c *config, dir string) error {
	sipAddr := s.env.sw.Endpoint.Addr().String()
	var devices []string
	for i := range c.devices {
		u := calleeUser(i)
		devices = append(devices, "SIP/"+u)
		reg, err := startSIPp(ctx, dir, sippRun{name: "register-" + u, scenario: "register", remote: sipAddr, port: s.port, calls: 1, service: u, authUser: u, authPassword: password(u), timeout: 30 * time.Second})
		if err != nil {
			return err
		}
		if st, err := reg.wait(); err != nil || st.Successful != 1 {
			return fmt.Errorf("register %s: %v %+v", u, err, st)
		}
	}
	if err := s.env.waitRegistered(devices, 10*time.Second); err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	watchDone, err := s.env.watch(wctx, devices)
	if err != nil {
		cancel()
		return err
	}
	s.cancelWatch, s.watchDone = cancel, watchDone
	return nil
}

// round runs one switch round of calls calls.
func (s *switchRun) round(ctx context.Context, c *config, calls, round int, dir string) (runResult, error) {
	uas, err := startSIPp(ctx, dir, sippRun{name: fmt.Sprintf("switch-callee-%d", round), scenario: "uas", port: s.port, calls: calls, timeout: runTimeout(calls)})
	if err != nil {
		return runResult{}, err
	}
	if err := uas.bound(); err != nil {
		uas.stop()
		return runResult{}, err
	}
	caller := sippRun{name: fmt.Sprintf("switch-caller-%d", round), scenario: "uac_auth", remote: s.env.sw.Endpoint.Addr().String(), inf: s.callsInf, authUser: callerUser, authPassword: password(callerUser)}
	return runPair(ctx, c, calls, dir, caller, uas)
}

// finish reads the answers' latencies over all the switch rounds, ends
// the watcher and counts the legs left.
func (s *switchRun) finish(rep *report) {
	s.env.answers.settle(10 * time.Second)
	var h latency.Hist
	lat, unmatched := s.env.answers.pairs()
	for _, l := range lat {
		h.Record(l)
	}
	rep.AnswerEvent, rep.Matched, rep.Unmatched = h.Summary(), len(lat), unmatched
	s.cancelWatch()
	if err := <-s.watchDone; err != nil {
		rep.Watch = err.Error()
	}
	s.watchDone = nil
	rep.LegsLeft = waitLegsGone(s.env, 10*time.Second)
}

func (s *switchRun) close() {
	if s.cancelWatch != nil {
		s.cancelWatch()
		if s.watchDone != nil {
			<-s.watchDone
		}
	}
	s.env.close()
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
	var ratios []float64
	for _, p := range r.Rounds {
		ratios = append(ratios, p.Ratio)
	}
	r.Ratio = benchkit.Median(ratios)
	add := r.Checks.Add
	add("SIP call setups/s, switch/direct (median of the pairs)", r.Ratio, ">=", 0.5)
	add("SIP failed calls (all rounds)", float64(r.Direct.FailedCalls+r.Switch.FailedCalls), "<=", 0)
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
	fmt.Fprintf(w, "sipbench: %d CPUs, load average %s → %s; %d calls of each kind in %d pairs of rounds, %d at once, %d callee devices\n",
		r.CPUs, r.LoadBefore, r.LoadAfter, r.Calls, len(r.Rounds), r.Concurrency, r.Devices)
	if r.Smoke {
		fmt.Fprintln(w, "SMOKE RUN: a few calls; the figures mean nothing")
	}
	steal := func(pct float64) string { return strings.TrimPrefix(benchkit.StealText(pct), "steal ") }
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "pair\tfirst\tdirect setups/s\tsteal\tswitch setups/s\tsteal\tratio\tswitch µs CPU/call\tthis process in direct round\t")
	for i, p := range r.Rounds {
		fmt.Fprintf(tw, "%d\t%s\t%.0f\t%s\t%.0f\t%s\t%.3f\t%.1f\t%.1f %%\t\n", i+1, p.First, p.Direct.SetupsPerSec, steal(p.Direct.Steal), p.Switch.SetupsPerSec, steal(p.Switch.Steal), p.Ratio, p.SwitchCPU, p.DirectIdleCPU)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "all rounds\tsetups/s\tsuccessful\tfailed (caller+callee)\tcaller time (s)\tsteal\t")
	for _, x := range []struct {
		name string
		r    runResult
	}{{"direct SIPp → SIPp", r.Direct}, {"SIPp → switch → SIPp", r.Switch}} {
		fmt.Fprintf(tw, "%s\t%.0f\t%d\t%d\t%.3f\t%s\t\n", x.name, x.r.SetupsPerSec, x.r.Caller.Successful, x.r.FailedCalls, x.r.Caller.Seconds, steal(x.r.Steal))
	}
	_ = tw.Flush()
	a := r.AnswerEvent
	fmt.Fprintf(w, "ratio: median of the pairs' %.3f\n", r.Ratio)
	fmt.Fprintf(w, "200 OK → WatchCalls event (ms), all switch rounds: p50 %.3f, p99 %.3f, max %.3f, mean %.3f (%d answers, %d without event); legs left %d\n",
		a.P50, a.P99, a.Max, a.Mean, r.Matched, r.Unmatched, r.LegsLeft)
	sw := r.SwitchWork
	fmt.Fprintf(w, "this process (switch, server, watcher) per call through the switch: %.1f µs CPU, %.0f allocations, %.0f B allocated, %.1f goroutines created, %.1f write syscalls\n",
		sw.CPUMicros, sw.Allocs, sw.AllocBytes, sw.Goroutines, sw.Writes)
	var gcs, stacks []string
	for _, p := range r.Rounds {
		gcs, stacks = append(gcs, fmt.Sprint(p.SwitchGCs)), append(stacks, fmt.Sprint(p.StackStart))
	}
	fmt.Fprintf(w, "runtime, switch rounds: collections %s; new goroutines' stack at each round's end %s B\n\n", strings.Join(gcs, ", "), strings.Join(stacks, ", "))
	r.Checks.WriteTable(w)
	return benchkit.WriteJSON(w, r, file)
}
