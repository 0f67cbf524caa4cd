package benchkit

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// CPUTimes is the machine's CPU time so far, in clock ticks, from the
// "cpu" line of /proc/stat: all of it, and steal, the part the
// hypervisor gave to other guests while this machine's processors had
// work. On a virtual machine whose host is busy, steal is why the same
// code runs slower or with a longer tail from one run to the next: a
// figure from such a run needs it beside it, as it needs the load
// average.
type CPUTimes struct {
	Total, Steal uint64
	OK           bool // false where /proc/stat cannot be read
}

// ReadCPUTimes returns the machine's CPU times now.
func ReadCPUTimes() CPUTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return CPUTimes{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return parseCPULine(line)
}

// parseCPULine reads "cpu user nice system idle iowait irq softirq steal
// guest guest_nice": guest time is already counted in user and nice, so
// the total is the first eight fields.
func parseCPULine(line string) CPUTimes {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return CPUTimes{}
	}
	var t CPUTimes
	for i, s := range f[1:9] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return CPUTimes{}
		}
		t.Total += v
		if i == 7 {
			t.Steal = v
		}
	}
	t.OK = true
	return t
}

// StealPercent returns the share of the machine's CPU time from t to
// later that was stolen, in per cent; -1 when it is unknown.
func (t CPUTimes) StealPercent(later CPUTimes) float64 {
	if !t.OK || !later.OK || later.Total <= t.Total || later.Steal < t.Steal {
		return -1
	}
	return Round3(100 * float64(later.Steal-t.Steal) / float64(later.Total-t.Total))
}

// CPUWindow is the machine's CPU ticks and the stolen ones over one
// window (CPUTimes.Window) or several added together (Add), so that the
// steal of a kind's rounds or segments, interleaved with another kind's,
// is taken over all of them.
type CPUWindow struct {
	Total, Stolen uint64
	Unknown       bool // a window's /proc/stat could not be read
}

// Window is the machine's CPU ticks from t to later.
func (t CPUTimes) Window(later CPUTimes) CPUWindow {
	if t.StealPercent(later) < 0 {
		return CPUWindow{Unknown: true}
	}
	return CPUWindow{Total: later.Total - t.Total, Stolen: later.Steal - t.Steal}
}

// Add returns the two windows together.
func (w CPUWindow) Add(o CPUWindow) CPUWindow {
	return CPUWindow{Total: w.Total + o.Total, Stolen: w.Stolen + o.Stolen, Unknown: w.Unknown || o.Unknown}
}

// StealPercent returns the share of the windows' CPU time that was
// stolen, in per cent; -1 when it is unknown.
func (w CPUWindow) StealPercent() float64 {
	if w.Unknown || w.Total == 0 {
		return -1
	}
	return Round3(100 * float64(w.Stolen) / float64(w.Total))
}

// StealText formats a StealPercent for a report line: "steal 4.4 %", or
// "steal ?" when unknown.
func StealText(pct float64) string {
	if pct < 0 {
		return "steal ?"
	}
	return fmt.Sprintf("steal %.1f %%", pct)
}
