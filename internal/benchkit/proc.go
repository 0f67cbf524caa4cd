package benchkit

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of /proc/<pid>/stat's CPU times: USER_HZ, 100 on
// every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// ProcCPU returns the user + system CPU time of process pid so far, from
// /proc/<pid>/stat (fields 14 and 15, after the parenthesised command).
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return 0, err
	}
	stime, err := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * clockTick, err
}

// ProcRSS returns the resident set (VmRSS) of process pid, from
// /proc/<pid>/status.
func ProcRSS(pid int) (uint64, error) { return readRSS(fmt.Sprintf("/proc/%d/status", pid)) }

// SelfRSS returns this process's resident set (VmRSS), or 0 where
// /proc/self/status cannot tell.
func SelfRSS() uint64 {
	n, err := readRSS("/proc/self/status")
	if err != nil {
		return 0
	}
	return n
}

func readRSS(status string) (uint64, error) {
	b, err := os.ReadFile(status)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in %s", status)
}
