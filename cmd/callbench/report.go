package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// report is the JSON summary.
type report struct {
	Command string         `json:"command"`
	Smoke   bool           `json:"smoke"`
	Machine machine        `json:"machine"`
	Started time.Time      `json:"started"`
	Seconds float64        `json:"seconds"`
	Unary   *unaryResult   `json:"unary,omitempty"`
	Stream  *streamResult  `json:"streaming,omitempty"`
	Connect *connectResult `json:"connect,omitempty"`
	Fanout  *fanoutResult  `json:"fanout,omitempty"`
	// FanoutLarge is the fanout10k scenario (10,000 filtered watchers).
	FanoutLarge *fanoutResult   `json:"fanout_10k,omitempty"`
	Idle        *idleResult     `json:"idle,omitempty"`
	Replicas    *replicasResult `json:"replicas,omitempty"`
	Memory      *memoryResult   `json:"memory,omitempty"`
	Checks      []check         `json:"checks"`
	AllMet      bool            `json:"all_met"`
}

type machine struct {
	NumCPU     int    `json:"num_cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPU        string `json:"cpu"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	Go         string `json:"go"`
	LoadBefore string `json:"loadavg_before"`
	LoadAfter  string `json:"loadavg_after"`
}

// check is one performance target (docs/BENCHMARKS.md lists them) and
// whether the run met it.
type check struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Op     string  `json:"op"` // ">=" or "<="
	Target float64 `json:"target"`
	Met    bool    `json:"met"`
}

func newReport(c *config) *report {
	return &report{
		Smoke:   c.smoke,
		Started: time.Now().UTC().Truncate(time.Second),
		Machine: machine{
			NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), CPU: cpuModel(),
			OS: runtime.GOOS, Arch: runtime.GOARCH, Go: runtime.Version(), LoadBefore: loadavg(),
		},
	}
}

func (r *report) finish() {
	r.Seconds = time.Since(r.Started).Round(100 * time.Millisecond).Seconds()
	r.Machine.LoadAfter = loadavg()
	r.Checks = nil
	add := func(name string, v float64, op string, target float64) {
		met := v >= target
		if op == "<=" {
			met = v <= target
		}
		r.Checks = append(r.Checks, check{Name: name, Value: v, Op: op, Target: target, Met: met})
	}
	if u := r.Unary; u != nil {
		add("unary control/no-op rate", round3(u.Ratio), ">=", 0.9)
	}
	if s := r.Stream; s != nil {
		add("WatchCalls/raw streaming messages/s", round3(s.Ratio), ">=", 0.8)
	}
	if f := r.Fanout; f != nil {
		add("fan-out events dropped", float64(f.Dropped), "<=", 0)
		add("fan-out p99 commit→receive (ms)", f.Latency.P99, "<=", 2)
	}
	if f := r.FanoutLarge; f != nil {
		add("fan-out 10k events dropped", float64(f.Dropped), "<=", 0)
		add("fan-out 10k p99 commit→receive (ms)", f.Latency.P99, "<=", 5)
	}
	if i := r.Idle; i != nil {
		for _, rd := range i.Rounds {
			add(fmt.Sprintf("idle stream RSS, %d conns (bytes)", rd.Conns), round3(rd.RSSPerStream), "<=", 8192)
		}
	}
	if rp := r.Replicas; rp != nil {
		add("replicas: transitions/s through the R3 stream", round3(rp.Replicas.PerSecond), ">=", 5000)
		add("replicas: p99 RPC→follower's watcher (ms)", rp.Replicas.Latency.P99, "<=", 20)
	}
	if m := r.Memory; m != nil {
		add("heap per live call (bytes)", round3(m.HeapPerCall), "<=", 512)
	}
	r.AllMet = true
	for _, c := range r.Checks {
		r.AllMet = r.AllMet && c.Met
	}
}

func round3(x float64) float64 { return float64(int64(x*1000+0.5)) / 1000 }

func (r *report) table(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "callbench: %d CPUs (GOMAXPROCS %d, %s), %s/%s, %s; load average %s → %s; %.1fs\n",
		m.NumCPU, m.GOMAXPROCS, m.CPU, m.OS, m.Arch, m.Go, m.LoadBefore, m.LoadAfter, r.Seconds)
	if r.Smoke {
		fmt.Fprintln(w, "SMOKE RUN: tiny durations and sizes; the figures mean nothing")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tmeasure\tbaseline (no-op)\tmeasured\tp50 / p99 (ms)\t")
	if u := r.Unary; u != nil {
		fmt.Fprintf(tw, "unary c=%d\tRPCs/s\t%.0f (p50 %.3f, p99 %.3f)\t%.0f Hold+Talk\t%.3f / %.3f\t\n",
			u.Concurrency, u.Noop.PerSecond, u.Noop.Latency.P50, u.Noop.Latency.P99, u.Control.PerSecond, u.Control.Latency.P50, u.Control.Latency.P99)
	}
	if s := r.Stream; s != nil {
		fmt.Fprintf(tw, "streaming x%d\tmessages/s\t%.0f (%.2f µs CPU each)\t%.0f WatchCalls frames (%.2f events each, %.0f commits/s; %.2f µs CPU, %.1f allocs, %.2f goroutines, %.2f writes each)\t\t\n",
			s.Streams, s.Noop.PerSecond, s.Noop.Work.CPUMicros, s.Watch.PerSecond, s.EventsPerFrame, s.CommitsPerSec,
			s.Watch.Work.CPUMicros, s.Watch.Work.Allocs, s.Watch.Work.Goroutines, s.Watch.Work.Writes)
	}
	r.Connect.table(tw)
	for _, f := range []*fanoutResult{r.Fanout, r.FanoutLarge} {
		if f != nil {
			fmt.Fprintf(tw, "fan-out %d+%d\ttransitions/s\t\t%.0f (%d commits, %.0f deliveries/s, %d dropped, server per event: %.2f µs CPU, %.1f allocs, %.2f goroutines, %.2f writes)\t%.3f / %.3f (max %.3f)\t\n",
				f.Filtered, f.Unfiltered, f.Rate, f.Commits, f.DeliveriesSec, f.Dropped, f.ServerWork.CPUMicros, f.ServerWork.Allocs, f.ServerWork.Goroutines, f.ServerWork.Writes, f.Latency.P50, f.Latency.P99, f.Latency.Max)
		}
	}
	if i := r.Idle; i != nil && len(i.Rounds) > 0 {
		fmt.Fprintf(tw, "idle x%d\tmemory/stream\t\t%s\t\t\n", i.Rounds[0].Streams, i.summary())
	}
	if rp := r.Replicas; rp != nil {
		fmt.Fprintf(tw, "replicas c=%d\ttransitions/s\t%.0f one process (watcher p50 %.3f, p99 %.3f)\t%.0f through R3, watched on a follower (%.2f× one process)\t%.3f / %.3f\t\n",
			rp.Concurrency, rp.Single.PerSecond, rp.Single.Latency.P50, rp.Single.Latency.P99, rp.Replicas.PerSecond, rp.Ratio, rp.Replicas.Latency.P50, rp.Replicas.Latency.P99)
	}
	if mm := r.Memory; mm != nil {
		fmt.Fprintf(tw, "memory\t%d live calls\t\theap %.0f B/call, RSS %.0f B/call (RSS %.0f MiB)\t\t\n",
			mm.Calls, mm.HeapPerCall, mm.RSSPerCall, float64(mm.RSSAfter)/(1<<20))
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tvalue\ttarget\tresult\t")
	for _, c := range r.Checks {
		res := "met"
		if !c.Met {
			res = "MISSED"
		}
		fmt.Fprintf(tw, "%s\t%g\t%s %g\t%s\t\n", c.Name, c.Value, c.Op, c.Target, res)
	}
	_ = tw.Flush()
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
