package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"callcontrold/internal/benchkit"
	"callcontrold/internal/rawframe"
	"callcontrold/wirefield"
)

// sample is one reading of the server.
type sample struct {
	At         time.Duration
	RSS        uint64 // VmRSS of the server's process
	Heap       uint64 // go_memstats_heap_alloc_bytes (live and not yet collected)
	Live       uint64 // live heap after the last collection: the GC's goal ÷ (1 + GOGC/100)
	Stacks     uint64 // go_memstats_stack_inuse_bytes: goroutine stacks, not in the heap
	Goroutines int
	Revision   int64
	Watchers   int // registered in the store
	Lagging    int // catching up from history
	LiveCalls  int
	LagFast    int64 // revisions behind, worst fast unfiltered watcher
	LagSlow    int64 // revisions behind, worst slow watcher
	Frames     uint64
}

func takeSample(ctx context.Context, srv *server, ws *watchers, at time.Duration) (sample, error) {
	m, err := srv.metrics(ctx, "go_memstats_heap_alloc_bytes", "go_memstats_next_gc_bytes", "go_gc_gogc_percent", "go_memstats_stack_inuse_bytes", "go_goroutines", "callcontrold_store_revisions_total",
		"callcontrold_watchers", "callcontrold_lagging_watchers", "callcontrold_live_calls")
	if err != nil {
		return sample{}, err
	}
	rss, err := benchkit.ProcRSS(srv.cmd.Process.Pid)
	if err != nil {
		return sample{}, err
	}
	s := sample{
		At: at, RSS: rss, Heap: uint64(m["go_memstats_heap_alloc_bytes"]),
		Live:       uint64(m["go_memstats_next_gc_bytes"] * 100 / (100 + max(m["go_gc_gogc_percent"], 0))),
		Stacks:     uint64(m["go_memstats_stack_inuse_bytes"]),
		Goroutines: int(m["go_goroutines"]), Revision: int64(m["callcontrold_store_revisions_total"]),
		Watchers: int(m["callcontrold_watchers"]), Lagging: int(m["callcontrold_lagging_watchers"]),
		LiveCalls: int(m["callcontrold_live_calls"]), Frames: ws.frames(),
	}
	s.LagFast, s.LagSlow = ws.lags(s.Revision)
	return s, nil
}

// clock shows a sample's time since the start as m:ss.s.
func clock(d time.Duration) string {
	d = d.Round(100 * time.Millisecond)
	return fmt.Sprintf("%d:%04.1f", int(d.Minutes()), (d % time.Minute).Seconds())
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func (s sample) line() string {
	return fmt.Sprintf("  %s: RSS %.1f MiB, heap %.1f MiB (live %.1f), stacks %.1f MiB, %d goroutines, revision %d, %d live calls, %d watchers (%d lagging), lag fast %d / slow %d revisions",
		clock(s.At), mib(s.RSS), mib(s.Heap), mib(s.Live), mib(s.Stacks), s.Goroutines, s.Revision, s.LiveCalls, s.Watchers, s.Lagging, s.LagFast, s.LagSlow)
}

func printTable(w io.Writer, samples []sample) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "time\tRSS MiB\theap MiB\tlive MiB\tstacks MiB\tgoroutines\trevision\trev/s\tlive calls\twatchers\tlagging\tlag fast\tlag slow\tframes/s\t")
	var prev sample
	for i, s := range samples {
		var revRate, frameRate float64
		if i > 0 {
			dt := (s.At - prev.At).Seconds()
			if dt > 0 {
				revRate, frameRate = float64(s.Revision-prev.Revision)/dt, float64(s.Frames-prev.Frames)/dt
			}
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%d\t%.0f\t%d\t%d\t%d\t%d\t%d\t%.0f\t\n", clock(s.At), mib(s.RSS), mib(s.Heap), mib(s.Live), mib(s.Stacks), s.Goroutines,
			s.Revision, revRate, s.LiveCalls, s.Watchers, s.Lagging, s.LagFast, s.LagSlow, frameRate)
		prev = s
	}
	_ = tw.Flush()
}

type verdict struct {
	flat bool
	text string
}

// judge decides whether memory stayed flat. The first 30% of the samples
// are the warm-up (live calls, the history ring and the slow watchers'
// queues grow to their bounds) and are left out; of the rest, the mean RSS and heap of
// the last third must be at most limit (a fraction) above those of the
// first third, and the goroutines of the last third at most 5% (+10) above.
// The heap judged is the live heap after the last collection (what
// heap_alloc swings around, without the garbage).
// A leak grows with time; a steady state only wobbles around its mean.
// It needs 6 samples after the warm-up.
func judge(samples []sample, limit float64) verdict {
	rest := samples[len(samples)*3/10:]
	if len(rest) < 6 {
		return verdict{text: fmt.Sprintf("memory: not judged (%d samples after the warm-up, 6 needed)", len(rest))}
	}
	third := len(rest) / 3
	first, last := rest[:third], rest[len(rest)-third:]
	mean := func(ss []sample, f func(sample) float64) float64 {
		var t float64
		for _, s := range ss {
			t += f(s)
		}
		return t / float64(len(ss))
	}
	var fails []string
	var parts []string
	for _, m := range []struct {
		name  string
		f     func(sample) float64
		limit float64
		slack float64
	}{
		{"RSS", func(s sample) float64 { return float64(s.RSS) }, limit, 0},
		{"live heap", func(s sample) float64 { return float64(s.Live) }, limit, 0},
		{"goroutines", func(s sample) float64 { return float64(s.Goroutines) }, 0.05, 10},
	} {
		a, b := mean(first, m.f), mean(last, m.f)
		growth := 0.0
		if a > 0 {
			growth = (b - a) / a
		}
		parts = append(parts, fmt.Sprintf("%s %+.1f%%", m.name, 100*growth))
		if b > a*(1+m.limit)+m.slack {
			fails = append(fails, m.name)
		}
	}
	text := fmt.Sprintf("memory: last third vs first third after the warm-up (%d samples each): %s (limits: RSS and live heap +%.0f%%, goroutines +5%% +10)",
		third, strings.Join(parts, ", "), 100*limit)
	if len(fails) > 0 {
		return verdict{text: text + ": NOT FLAT (" + strings.Join(fails, ", ") + ")"}
	}
	return verdict{flat: true, text: text + ": flat"}
}

// frameRevision returns the revision a WatchCallsResponse frame carries:
// WatchStarted.revision, EventBatch.revision or Progress.revision; ok is
// false for the snapshot's frames and for a frame that does not parse.
func frameRevision(b []byte) (rev int64, ok bool) {
	kind, inner, err := rawframe.Oneof(b)
	field, carries := revisionField[kind]
	if err != nil || !carries {
		return 0, false
	}
	v, err := rawframe.VarintField(inner, field)
	return int64(v), err == nil
}

// revisionField is, for each frame that carries a revision, its field.
var revisionField = map[protowire.Number]protowire.Number{
	wirefield.ResponseStarted:  wirefield.StartedRevision,
	wirefield.ResponseEvents:   wirefield.BatchRevision,
	wirefield.ResponseProgress: wirefield.ProgressRevision,
}
