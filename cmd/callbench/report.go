package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"callcontrold/internal/benchkit"
)

// report is the JSON summary.
type report struct {
	Command string           `json:"command"`
	Smoke   bool             `json:"smoke"`
	Machine benchkit.Machine `json:"machine"`
	Started time.Time        `json:"started"`
	Seconds float64          `json:"seconds"`
	Unary   *unaryResult     `json:"unary,omitempty"`
	Stream  *streamResult    `json:"streaming,omitempty"`
	Connect *connectResult   `json:"connect,omitempty"`
	Fanout  *fanoutResult    `json:"fanout,omitempty"`
	// FanoutLarge is the fanout10k scenario (10,000 filtered watchers).
	FanoutLarge *fanoutResult   `json:"fanout_10k,omitempty"`
	Idle        *idleResult     `json:"idle,omitempty"`
	Replicas    *replicasResult `json:"replicas,omitempty"`
	Memory      *memoryResult   `json:"memory,omitempty"`
	Checks      benchkit.Checks `json:"checks"`
	AllMet      bool            `json:"all_met"`
}

func newReport(c *config) *report {
	return &report{
		Smoke:   c.smoke,
		Started: time.Now().UTC().Truncate(time.Second),
		Machine: benchkit.ReadMachine(),
	}
}

func (r *report) finish() {
	r.Seconds = time.Since(r.Started).Round(100 * time.Millisecond).Seconds()
	r.Machine.Finish()
	r.Checks = nil
	add := r.Checks.Add
	if u := r.Unary; u != nil {
		add("unary control/no-op rate", benchkit.Round3(u.Ratio), ">=", 0.9)
		add("unary control/no-op capacity (CPU per RPC, no-op/control)", benchkit.Round3(u.Capacity), ">=", 0.9)
	}
	if s := r.Stream; s != nil {
		add("WatchCalls/raw streaming messages/s (median of the rounds)", s.Ratio, ">=", 0.8)
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
			add(fmt.Sprintf("idle stream RSS, %d conns (bytes)", rd.Conns), benchkit.Round3(rd.RSSPerStream), "<=", 8192)
		}
	}
	if rp := r.Replicas; rp != nil {
		add("replicas: transitions/s through the R3 stream", benchkit.Round3(rp.Replicas.PerSecond), ">=", 5000)
		add("replicas: p99 RPC→follower's watcher (ms)", rp.Replicas.Latency.P99, "<=", 20)
	}
	if m := r.Memory; m != nil {
		add("heap per live call (bytes)", benchkit.Round3(m.HeapPerCall), "<=", 512)
	}
	r.AllMet = r.Checks.AllMet()
}

func (r *report) table(w io.Writer) {
	fmt.Fprintln(w, r.Machine.Line("callbench", r.Seconds))
	if r.Smoke {
		fmt.Fprintln(w, "SMOKE RUN: tiny durations and sizes; the figures mean nothing")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tmeasure\tbaseline (no-op)\tmeasured\tp50 / p99 (ms)\t")
	if u := r.Unary; u != nil {
		fmt.Fprintf(tw, "unary c=%d\tRPCs/s\t%.0f (p50 %.3f, p99 %.3f; %.2f µs CPU, %.1f allocs each)\t%.0f Hold+Talk (%.2f µs CPU, %.1f allocs each)\t%.3f / %.3f\t\n",
			u.Concurrency, u.Noop.PerSecond, u.Noop.Latency.P50, u.Noop.Latency.P99, u.Noop.Work.CPUMicros, u.Noop.Work.Allocs,
			u.Control.PerSecond, u.Control.Work.CPUMicros, u.Control.Work.Allocs, u.Control.Latency.P50, u.Control.Latency.P99)
		fmt.Fprintf(tw, "unary rounds\tcontrol/no-op\t%d rounds, each kind first in half; busy cores %.2f, collector %.2f µs per RPC\trate ratio median %.3f (quartiles %.3f, %.3f); CPU per RPC ratio median %.3f (%.3f, %.3f); busy cores %.2f, collector %.2f µs per RPC\t\t\n",
			len(u.Rounds), u.Noop.Sched.BusyCores, u.Noop.Sched.GCUsPerRPC, u.RoundRatios[1], u.RoundRatios[0], u.RoundRatios[2],
			u.RoundCPURatios[1], u.RoundCPURatios[0], u.RoundCPURatios[2], u.Control.Sched.BusyCores, u.Control.Sched.GCUsPerRPC)
	}
	if s := r.Stream; s != nil {
		fmt.Fprintf(tw, "streaming x%d\tmessages/s\t%.0f (WatchCalls frames of %.0f B; %.2f µs CPU, %.1f allocs each)\t%.0f WatchCalls frames (%.2f events each, %.0f commits/s; %.2f µs CPU, %.1f allocs, %.2f goroutines, %.2f writes each)\t\t\n",
			s.Streams, s.Noop.PerSecond, s.FrameBytes, s.Noop.Work.CPUMicros, s.Noop.Work.Allocs, s.Watch.PerSecond, s.EventsPerFrame, s.CommitsPerSec,
			s.Watch.Work.CPUMicros, s.Watch.Work.Allocs, s.Watch.Work.Goroutines, s.Watch.Work.Writes)
		fmt.Fprintf(tw, "streaming rounds	WatchCalls/no-op	%d rounds, each kind first in half	ratio median %.3f (of the summed rates %.3f); by round %s		\n",
			len(s.Rounds), s.Ratio, s.RatioOfTotals, s.roundRatios())
	}
	r.Connect.table(tw)
	for _, f := range []*fanoutResult{r.Fanout, r.FanoutLarge} {
		if f != nil {
			fmt.Fprintf(tw, "fan-out %d+%d\ttransitions/s\t%s\t%.0f (%d commits, %.0f deliveries/s, %d dropped, server per event: %.2f µs CPU, %.1f allocs, %.2f goroutines, %.2f writes; GC %d cycles, %.2f µs per event; watchers' GC %s, window %s; %s)\t%.3f / %.3f (max %.3f)\t\n",
				f.Filtered, f.Unfiltered, f.baselineText(), f.Rate, f.Commits, f.DeliveriesSec, f.Dropped, f.ServerWork.CPUMicros, f.ServerWork.Allocs, f.ServerWork.Goroutines, f.ServerWork.Writes, f.ServerGC.Cycles, f.ServerGC.CPUMicros, f.watcherGCText(), f.watcherWindowText(), benchkit.StealText(f.Steal), f.Latency.P50, f.Latency.P99, f.Latency.Max)
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
	r.Checks.WriteTable(w)
}

// watcherGCText is the watchers' collector for the table: its setting and,
// in a child, its collections in the measured window.
func (f *fanoutResult) watcherGCText() string {
	if f.WatcherGC == "in-process" {
		return "the server's (in-process)"
	}
	return fmt.Sprintf("%s, %d cycles, their CPU %.2f µs per event", f.WatcherGC, f.WatcherGCCycles, f.WatcherWork.CPUMicros)
}

// watcherWindowText is the watchers' flow-control window for the table.
func (f *fanoutResult) watcherWindowText() string {
	if f.WatcherWindow == 0 {
		return "dynamic (grpc-go's)"
	}
	return fmt.Sprintf("%d KiB", f.WatcherWindow>>10)
}

// baselineText is the no-op fan-out's figures for the table's baseline
// column.
func (f *fanoutResult) baselineText() string {
	b := f.Baseline
	if b == nil {
		return ""
	}
	return fmt.Sprintf("no-op fan-out: %d dropped, p50 / p99 %.3f / %.3f ms (max %.3f), server %.2f µs CPU, %.2f writes per event, frames of %.0f B (WatchCalls' %.0f B); %s",
		b.Dropped, b.Latency.P50, b.Latency.P99, b.Latency.Max, b.ServerWork.CPUMicros, b.ServerWork.Writes, b.FrameBytes, f.FrameBytes, benchkit.StealText(b.Steal))
}
