package benchkit

import (
	"testing"
	"time"
)

var sink [][]byte

func TestWork(t *testing.T) {
	w0 := ReadWork()
	for range 1000 {
		sink = append(sink, make([]byte, 64))
	}
	w1 := ReadWork()
	d := w1.Sub(w0)
	// The runtime counts a P's allocations when its cache is flushed: a
	// few may not show yet, but most must.
	if d.Allocs < 500 || d.AllocBytes < 64*500 {
		t.Errorf("1,000 allocations of 64 B: counted %d, %d B", d.Allocs, d.AllocBytes)
	}
	if sum := w0.Add(d); sum != w1 {
		t.Errorf("Add(Sub) = %+v, want %+v", sum, w1)
	}
	from := Work{}
	to := Work{CPU: 3 * time.Microsecond, Allocs: 10, AllocBytes: 100, Goroutines: 1, Writes: 2}
	if got, want := PerEvent(from, to, 4), (WorkPerEvent{CPUMicros: 0.75, Allocs: 2.5, AllocBytes: 25, Goroutines: 0.25, Writes: 0.5}); got != want {
		t.Errorf("PerEvent = %+v, want %+v", got, want)
	}
	if got := PerEvent(from, to, 0); got != (WorkPerEvent{}) {
		t.Errorf("PerEvent over no event = %+v, want zero", got)
	}
	sink = nil
}
