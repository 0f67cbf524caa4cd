package benchkit

import (
	"bytes"
	"os"
	"runtime/metrics"
	"strconv"
	"time"
)

// Work is what this process has done so far, by counters that a busy
// machine does not move: a scenario's figures per event from two readings
// say what the code costs even when the latency says mostly who else was
// running.
type Work struct {
	CPU        time.Duration // user + system CPU time (ProcessCPU)
	Allocs     uint64        // heap objects allocated
	AllocBytes uint64        // heap bytes allocated
	Goroutines uint64        // goroutines created
	Writes     uint64        // write system calls (Linux: /proc/self/io), sockets included
}

// ReadWork reads this process's work counters.
func ReadWork() Work {
	m := ReadMetrics("/gc/heap/allocs:objects", "/gc/heap/allocs:bytes", "/sched/goroutines-created:goroutines")
	return Work{CPU: ProcessCPU(), Allocs: m.Uint64(0), AllocBytes: m.Uint64(1), Goroutines: m.Uint64(2), Writes: writeSyscalls()}
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

// Add returns the sum of w and o (work of several rounds).
func (w Work) Add(o Work) Work {
	return Work{CPU: w.CPU + o.CPU, Allocs: w.Allocs + o.Allocs, AllocBytes: w.AllocBytes + o.AllocBytes, Goroutines: w.Goroutines + o.Goroutines, Writes: w.Writes + o.Writes}
}

// Sub returns w less o: the work between reading o and reading w.
func (w Work) Sub(o Work) Work {
	return Work{CPU: w.CPU - o.CPU, Allocs: w.Allocs - o.Allocs, AllocBytes: w.AllocBytes - o.AllocBytes, Goroutines: w.Goroutines - o.Goroutines, Writes: w.Writes - o.Writes}
}

// WorkPerEvent is the work between two readings divided by the events
// delivered.
type WorkPerEvent struct {
	CPUMicros  float64 `json:"cpu_us"`
	Allocs     float64 `json:"allocs"`
	AllocBytes float64 `json:"alloc_bytes"`
	Goroutines float64 `json:"goroutines_created"`
	Writes     float64 `json:"write_syscalls"`
}

// PerEvent is the work from reading from to reading to, per event.
func PerEvent(from, to Work, events uint64) WorkPerEvent {
	if events == 0 {
		return WorkPerEvent{}
	}
	d, n := to.Sub(from), float64(events)
	return WorkPerEvent{
		CPUMicros:  Round3(float64(d.CPU.Nanoseconds()) / 1e3 / n),
		Allocs:     Round3(float64(d.Allocs) / n),
		AllocBytes: Round3(float64(d.AllocBytes) / n),
		Goroutines: Round3(float64(d.Goroutines) / n),
		Writes:     Round3(float64(d.Writes) / n),
	}
}

// Metrics is one reading of the runtime's metrics (runtime/metrics), in
// the order of the names asked for.
type Metrics []metrics.Sample

// ReadMetrics reads the named runtime metrics at one moment.
func ReadMetrics(names ...string) Metrics {
	m := make(Metrics, len(names))
	for i, name := range names {
		m[i].Name = name
	}
	metrics.Read(m)
	return m
}

// Uint64 is the i-th metric's value, 0 if the runtime has no such metric
// of kind uint64.
func (m Metrics) Uint64(i int) uint64 {
	if m[i].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return m[i].Value.Uint64()
}

// Float64 is the i-th metric's value, 0 if the runtime has no such
// metric of kind float64.
func (m Metrics) Float64(i int) float64 {
	if m[i].Value.Kind() != metrics.KindFloat64 {
		return 0
	}
	return m[i].Value.Float64()
}
