package main

import (
	"bytes"
	"os"
	"runtime/metrics"
	"strconv"
	"time"

	"callcontrold/internal/benchkit"
)

// work is what this process has done so far, by counters that a busy
// machine does not move: a scenario's figures per event from two readings
// say what the code costs even when the latency says mostly who else was
// running.
type work struct {
	cpu        time.Duration // user + system CPU time (processCPU)
	allocs     uint64        // heap objects allocated
	allocBytes uint64        // heap bytes allocated
	goroutines uint64        // goroutines created
	writes     uint64        // write system calls (Linux: /proc/self/io), sockets included
}

var workMetrics = []string{"/gc/heap/allocs:objects", "/gc/heap/allocs:bytes", "/sched/goroutines-created:goroutines"}

func readWork() work {
	s := make([]metrics.Sample, len(workMetrics))
	for i, name := range workMetrics {
		s[i].Name = name
	}
	metrics.Read(s)
	u := func(i int) uint64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return s[i].Value.Uint64()
	}
	return work{cpu: benchkit.ProcessCPU(), allocs: u(0), allocBytes: u(1), goroutines: u(2), writes: writeSyscalls()}
}

// writeSyscalls returns the write system calls this process has made, or 0
// where /proc/self/io is not there.
func writeSyscalls() uint64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("syscw: ")); ok {
			n, _ := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
			return n
		}
	}
	return 0
}

func (w work) add(o work) work {
	return work{cpu: w.cpu + o.cpu, allocs: w.allocs + o.allocs, allocBytes: w.allocBytes + o.allocBytes, goroutines: w.goroutines + o.goroutines, writes: w.writes + o.writes}
}

func (w work) sub(o work) work {
	return work{cpu: w.cpu - o.cpu, allocs: w.allocs - o.allocs, allocBytes: w.allocBytes - o.allocBytes, goroutines: w.goroutines - o.goroutines, writes: w.writes - o.writes}
}

// workPerEvent is the work between two readings divided by the events
// delivered.
type workPerEvent struct {
	CPUMicros  float64 `json:"cpu_us"`
	Allocs     float64 `json:"allocs"`
	AllocBytes float64 `json:"alloc_bytes"`
	Goroutines float64 `json:"goroutines_created"`
	Writes     float64 `json:"write_syscalls"`
}

func perEvent(from, to work, events uint64) workPerEvent {
	if events == 0 {
		return workPerEvent{}
	}
	d, n := to.sub(from), float64(events)
	return workPerEvent{
		CPUMicros:  benchkit.Round3(float64(d.cpu.Nanoseconds()) / 1e3 / n),
		Allocs:     benchkit.Round3(float64(d.allocs) / n),
		AllocBytes: benchkit.Round3(float64(d.allocBytes) / n),
		Goroutines: benchkit.Round3(float64(d.goroutines) / n),
		Writes:     benchkit.Round3(float64(d.writes) / n),
	}
}
