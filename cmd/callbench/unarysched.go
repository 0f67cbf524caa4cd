package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"callcontrold/internal/benchkit"
)

// schedWork is what a phase of the unary scenario got from the machine
// beside the work counters (benchkit.Work): how long it ran, how long its
// threads waited for a processor the kernel gave to someone else, and what
// the collector did meanwhile. Set beside the CPU per RPC these say
// whether a kind's lower rate is work (CPU per call) or idle time (fewer
// processors kept busy), and how much of the work is the collector's.
type schedWork struct {
	Elapsed  time.Duration
	CPU      time.Duration
	RunqWait time.Duration // threads' time runnable but not running (schedstat)
	GCCPU    float64       // the collector's CPU, seconds (the runtime's estimate)
	GCIdle   float64       // of which on processors that had nothing else to run
	GCCycles uint64
	// StackStart is the runtime's starting goroutine stack size (bytes),
	// which it sets at each collection from the stacks it scanned: a
	// handler goroutine (one per RPC) grows its stack from there. A
	// difference (sub) holds the reading at its end, with Phases 1; a sum
	// (add) sums them.
	StackStart uint64
	Phases     uint64
}

// readSched reads the counters now.
func readSched() schedWork {
	m := benchkit.ReadMetrics(
		"/cpu/classes/gc/total:cpu-seconds",
		"/cpu/classes/gc/mark/idle:cpu-seconds",
		"/gc/cycles/total:gc-cycles",
		"/gc/stack/starting-size:bytes",
	)
	return schedWork{
		Elapsed: time.Duration(time.Now().UnixNano()), CPU: benchkit.ProcessCPU(), RunqWait: runqWait(),
		GCCPU: m.Float64(0), GCIdle: m.Float64(1), GCCycles: m.Uint64(2), StackStart: m.Uint64(3),
	}
}

// runqWait sums the time this process's threads have spent waiting on a
// run queue (the second field of /proc/self/task/*/schedstat), or 0 where
// the system does not tell.
func runqWait() time.Duration {
	tasks, _ := filepath.Glob("/proc/self/task/*/schedstat")
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // the thread ended
		}
		if f := bytes.Fields(b); len(f) >= 2 {
			n, _ := strconv.ParseInt(string(f[1]), 10, 64)
			sum += n
		}
	}
	return time.Duration(sum)
}

func (s schedWork) sub(o schedWork) schedWork {
	return schedWork{
		Elapsed: s.Elapsed - o.Elapsed, CPU: s.CPU - o.CPU, RunqWait: s.RunqWait - o.RunqWait,
		GCCPU: s.GCCPU - o.GCCPU, GCIdle: s.GCIdle - o.GCIdle, GCCycles: s.GCCycles - o.GCCycles,
		StackStart: s.StackStart, Phases: 1,
	}
}

func (s schedWork) add(o schedWork) schedWork {
	return schedWork{
		Elapsed: s.Elapsed + o.Elapsed, CPU: s.CPU + o.CPU, RunqWait: s.RunqWait + o.RunqWait,
		GCCPU: s.GCCPU + o.GCCPU, GCIdle: s.GCIdle + o.GCIdle, GCCycles: s.GCCycles + o.GCCycles,
		StackStart: s.StackStart + o.StackStart, Phases: s.Phases + o.Phases,
	}
}

// unarySched is a kind's schedWork in the report.
type unarySched struct {
	// BusyCores is the process's CPU over the elapsed time: the
	// processors its client and server kept busy. A kind's rate is its
	// busy cores over its CPU per RPC, so the rate ratio of the kinds is
	// the ratio of their busy cores times the inverse ratio of their CPU
	// per RPC.
	BusyCores      float64 `json:"busy_cores"`
	RunqUsPerRPC   float64 `json:"runq_wait_us_per_rpc"` // threads waiting for a processor
	GCUsPerRPC     float64 `json:"gc_cpu_us_per_rpc"`
	GCIdleUsPerRPC float64 `json:"gc_idle_cpu_us_per_rpc"`
	GCCycles       uint64  `json:"gc_cycles"`
	StackStart     float64 `json:"stack_start_bytes_mean"` // at the phases' ends
}

func (s schedWork) perRPC(rpcs uint64) unarySched {
	if rpcs == 0 || s.Elapsed <= 0 {
		return unarySched{}
	}
	n := float64(rpcs)
	u := unarySched{
		BusyCores:      benchkit.Round3(s.CPU.Seconds() / s.Elapsed.Seconds()),
		RunqUsPerRPC:   benchkit.Round3(float64(s.RunqWait.Nanoseconds()) / 1e3 / n),
		GCUsPerRPC:     benchkit.Round3(s.GCCPU * 1e6 / n),
		GCIdleUsPerRPC: benchkit.Round3(s.GCIdle * 1e6 / n),
		GCCycles:       s.GCCycles,
	}
	if s.Phases > 0 {
		u.StackStart = benchkit.Round3(float64(s.StackStart) / float64(s.Phases))
	}
	return u
}
