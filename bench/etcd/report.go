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
	Setup   string           `json:"setup"`
	Started time.Time        `json:"started"`
	Seconds float64          `json:"seconds"`
	Peers   []*peerResult    `json:"peers"`
	Ratios  *ratios          `json:"ratios,omitempty"`
	Checks  benchkit.Checks  `json:"checks"`
	AllMet  bool             `json:"all_met"`
}

// ratios are callcontrold's figures divided by etcd's.
type ratios struct {
	EventsPerSec  float64 `json:"delivered_events_per_second"`
	P99           float64 `json:"p99_commit_to_receive"`
	CPUPerEvent   float64 `json:"server_cpu_per_delivered_event"`
	RSSPerStream  float64 `json:"idle_rss_per_stream"`
	HeapPerStream float64 `json:"idle_heap_per_stream"`
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
		Machine: benchkit.ReadMachine(),
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
	return benchkit.Round3(a / b)
}

func (r *report) finish() {
	r.Seconds = time.Since(r.Started).Round(100 * time.Millisecond).Seconds()
	r.Machine.Finish()
	r.Checks = nil
	add := r.Checks.Add
	cc, et := r.peer(peerCallcontrold), r.peer(peerEtcd)
	if cc != nil {
		add("callcontrold fan-out events missing", float64(cc.Fanout.Missing), "<=", 0)
		add("callcontrold idle stream RSS (bytes)", benchkit.Round3(cc.Idle.RSSPerStream), "<=", 8192)
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
	r.AllMet = r.Checks.AllMet()
}

func (r *report) table(w io.Writer) {
	fmt.Fprintln(w, r.Machine.Line("peerbench", r.Seconds))
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
	r.Checks.WriteTable(w)
}
