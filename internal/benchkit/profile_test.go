package benchkit

import (
	"os"
	"path/filepath"
	"testing"
)

func TestProfiles(t *testing.T) {
	dir := t.TempDir()
	stop, err := StartCPUProfile("")
	if err != nil {
		t.Fatal(err)
	}
	stop()
	cpu := filepath.Join(dir, "cpu.pprof")
	if stop, err = StartCPUProfile(cpu); err != nil {
		t.Fatal(err)
	}
	stop()
	heap := filepath.Join(dir, "heap.pprof")
	if err := WriteProfile(heap, "heap", 0); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{cpu, heap} {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v, %v; want a profile", f, st, err)
		}
	}
	missing := filepath.Join(dir, "no such dir", "p")
	if _, err := StartCPUProfile(missing); err == nil {
		t.Error("StartCPUProfile into a missing directory: no error")
	}
	if err := WriteProfile(missing, "heap", 0); err == nil {
		t.Error("WriteProfile into a missing directory: no error")
	}
}
