package benchkit

import (
	"os"
	"runtime"
	"testing"
)

func TestProcReaders(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc readers: Linux only")
	}
	// /proc/<pid>/stat counts in ticks of 10 ms: a short test may read 0.
	if cpu, err := ProcCPU(os.Getpid()); err != nil || cpu < 0 {
		t.Errorf("ProcCPU = %v, %v", cpu, err)
	}
	if cpu := ProcessCPU(); cpu <= 0 {
		t.Errorf("ProcessCPU = %v, want a positive time", cpu)
	}
	rss, err := ProcRSS(os.Getpid())
	if err != nil || rss == 0 {
		t.Errorf("ProcRSS = %d, %v", rss, err)
	}
	if self := SelfRSS(); self == 0 {
		t.Error("SelfRSS = 0")
	}
	if _, err := ProcRSS(-1); err == nil {
		t.Error("ProcRSS(-1): no error")
	}
	if _, err := ProcCPU(-1); err == nil {
		t.Error("ProcCPU(-1): no error")
	}
}
