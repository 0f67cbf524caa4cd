package main

import (
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
	Command string        `json:"command"`
	Smoke   bool          `json:"smoke"`
	Machine machine       `json:"machine"`
	Setup   string        `json:"setup"`
	Started time.Time     `json:"started"`
	Seconds float64       `json:"seconds"`
	Peers   []*peerResult `json:"peers"`
	Ratios  *ratios       `json:"ratios,omitempty"`
	Checks  []check       `json:"checks"`
	AllMet  bool          `json:"all_met"`
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

// ratios are callcontrold's figures divided by etcd's.
type ratios struct {
	EventsPerSec  float64 `json:"delivered_events_per_second"`
	P99           float64 `json:"p99_commit_to_receive"`
	CPUPerEvent   float64 `json:"server_cpu_per_delivered_event"`
	RSSPerStream  float64 `json:"idle_rss_per_stream"`
	HeapPerStream float64 `json:"idle_heap_per_stream"`
}

// check is one target, met or missed.
type check struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Op     string  `json:"op"` // ">=" or "<="
	Target float64 `json:"target"`
	Met    bool    `json:"met"`
}

// setup says what is compared, in the output itself.
const setup = "each server in its own child process on loopback, writer inside it; " +
	"etcd v3.7.3 embedded, one member, fsync OFF (UnsafeNoFsync), raw gRPC Watch API, one stream per watcher; " +
	"callcontrold as cmd/callcontrold builds it (limits off, history 100,000 revisions), WatchCalls as admin"

func newReport(c *config) *report {
	return &report{
		Smoke:   c.smoke,
		Setup:   setup,
		Started: time.Now().UTC().Truncate(time.Second),
		Machine: machine{
			NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), CPU: cpuModel(),
			OS: runtime.GOOS, Arch: runtime.GOARCH, Go: runtime.Version(), LoadBefore: loadavg(),
		},
	}
}

func (r *report) peer(name string) *peerResult {
	for _, p := range r.Peers {
		if p.Name == name {
			return p
		}
	}
	return nil
}

func div(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return round3(a / b)
}

func round3(x float64) float64 { return float64(int64(x*1000+0.5)) / 1000 }

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
	cc, et := r.peer(peerCallcontrold), r.peer(peerEtcd)
	if cc != nil {
		add("callcontrold fan-out events missing", float64(cc.Fanout.Missing), "<=", 0)
		add("callcontrold idle stream RSS (bytes)", round3(cc.Idle.RSSPerStream), "<=", 8192)
	}
	if cc != nil && et != nil {
		cf, ef := cc.Fanout, et.Fanout
		r.Ratios = &ratios{
			EventsPerSec:  div(cf.EventsPerSec, ef.EventsPerSec),
			P99:           div(cf.Latency.P99, ef.Latency.P99),
			CPUPerEvent:   div(cf.CPUPerEventUS, ef.CPUPerEventUS),
			RSSPerStream:  div(cc.Idle.RSSPerStream, et.Idle.RSSPerStream),
			HeapPerStream: div(cc.Idle.HeapPerStream, et.Idle.HeapPerStream),
		}
		add("p99 commit→receive, callcontrold/etcd", r.Ratios.P99, "<=", 1)
		add("CPU per delivered event, callcontrold/etcd", r.Ratios.CPUPerEvent, "<=", 0.5)
		add("idle stream RSS, callcontrold/etcd", r.Ratios.RSSPerStream, "<=", 0.5)
	}
	r.AllMet = true
	for _, c := range r.Checks {
		r.AllMet = r.AllMet && c.Met
	}
}

func (r *report) table(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "peerbench: %d CPUs (GOMAXPROCS %d, %s), %s/%s, %s; load average %s → %s; %.1fs\n",
		m.NumCPU, m.GOMAXPROCS, m.CPU, m.OS, m.Arch, m.Go, m.LoadBefore, m.LoadAfter, r.Seconds)
	fmt.Fprintf(w, "setup: %s\n", r.Setup)
	if r.Smoke {
		fmt.Fprintln(w, "SMOKE RUN: tiny durations and sizes; the figures mean nothing")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "server\tchanges/s\tevents/s\tmissing\tp50 / p99 / max (ms)\tCPU s (µs/event)\tB/event\tidle streams\tRSS/stream\theap/stream\tgoroutines/stream\t")
	for _, p := range r.Peers {
		f, i := p.Fanout, p.Idle
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%d\t%.3f / %.3f / %.3f\t%.2f (%.2f)\t%.0f\t%d on %d conns\t%.0f B\t%.0f B\t%.2f\t\n",
			p.Name, f.Rate, f.EventsPerSec, f.Missing, f.Latency.P50, f.Latency.P99, f.Latency.Max,
			f.CPUSeconds, f.CPUPerEventUS, f.BytesPerEvent, i.Streams, i.Conns, i.RSSPerStream, i.HeapPerStream, i.GoroutinesEach)
	}
	if q := r.Ratios; q != nil {
		fmt.Fprintf(tw, "callcontrold/etcd\t\t%.3f\t\tp99 %.3f\tµs/event %.3f\t\t\t%.3f\t%.3f\t\t\n",
			q.EventsPerSec, q.P99, q.CPUPerEvent, q.RSSPerStream, q.HeapPerStream)
	}
	_ = tw.Flush()
	for _, p := range r.Peers {
		f := p.Fanout
		if f.Failures > 0 {
			fmt.Fprintf(w, "%s: %d watchers failed, first: %s\n", p.Name, f.Failures, f.FirstError)
		}
		if f.Rate < 0.95*f.TargetRate {
			fmt.Fprintf(w, "WARNING: %s committed %.0f changes/s of the %.0f asked (its writer could not keep up): the two servers did not carry the same load, compare with care\n",
				p.Name, f.Rate, f.TargetRate)
		}
	}
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
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
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
