package benchkit

import (
	"fmt"
	"os"
	"runtime"
	"strings"
)

// Machine is what a report says of the machine it ran on: every figure
// from a shared machine needs its load average beside it.
type Machine struct {
	NumCPU     int    `json:"num_cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPU        string `json:"cpu"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	Go         string `json:"go"`
	LoadBefore string `json:"loadavg_before"`
	LoadAfter  string `json:"loadavg_after"`
	// Steal is the share of the machine's CPU time the hypervisor gave
	// other guests over the run, in per cent (-1: unknown; see CPUTimes).
	Steal float64 `json:"steal_percent"`

	cpu0 CPUTimes
}

// ReadMachine describes this machine, with the load average now as
// LoadBefore; Finish completes it at the run's end.
func ReadMachine() Machine {
	return Machine{
		NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), CPU: CPUModel(),
		OS: runtime.GOOS, Arch: runtime.GOARCH, Go: runtime.Version(), LoadBefore: LoadAvg(),
		cpu0: ReadCPUTimes(),
	}
}

// Finish records the load average now as LoadAfter, and the steal since
// ReadMachine.
func (m *Machine) Finish() {
	m.LoadAfter = LoadAvg()
	m.Steal = m.cpu0.StealPercent(ReadCPUTimes())
}

// Line is the report's first line: tool, the machine, the load average
// before and after, the steal over the run, and the run's duration.
func (m Machine) Line(tool string, seconds float64) string {
	return fmt.Sprintf("%s: %d CPUs (GOMAXPROCS %d, %s), %s/%s, %s; load average %s → %s; %s; %.1fs",
		tool, m.NumCPU, m.GOMAXPROCS, m.CPU, m.OS, m.Arch, m.Go, m.LoadBefore, m.LoadAfter, StealText(m.Steal), seconds)
}

// CPUModel returns the first "model name" of /proc/cpuinfo, or "unknown".
func CPUModel() string {
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

// LoadAvg returns the 1, 5 and 15 minute load averages of /proc/loadavg
// ("0.52 0.61 0.70"), or "?" where there is none.
func LoadAvg() string {
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
