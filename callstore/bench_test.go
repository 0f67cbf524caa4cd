package callstore

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"
)

// Run: go test -run x -bench . -benchmem ./callstore/
// Targets (docs/BENCHMARKS.md): >= 1M commits/s without watchers; per-event
// cost with 10,000 non-matching device watchers <= 1.5x the cost with 10;
// <= 1 KiB of heap per live call at 100k calls.

var benchExt = &ExtensionRef{Number: "200", Company: "acme", Type: ExtRingAll, Name: "Sales"}

// realisticCall builds a leg with field contents like the PBX's: unique
// identifiers and numbers, and its device's DeviceRef, shared by the
// device's legs (as the pbx package hands them out).
func realisticCall(uid int64, devices []*DeviceRef) *Call {
	return &Call{
		UID:         uid,
		ID:          "1732425600." + strconv.FormatInt(uid, 10),
		CID:         strconv.FormatInt(0x7f3a0000+uid, 16),
		DeviceRef:   devices[uid%int64(len(devices))],
		Label:       "Mobile",
		Name:        "Customer " + strconv.FormatInt(uid%5000, 10),
		Number:      "+4930" + strconv.FormatInt(5550000+uid, 10),
		StampMillis: 1732425600000 + uid,
		Company:     "acme",
		Extension:   benchExt,
		Party:       PartyCallee,
		Features:    FeatureHold | FeatureTalk,
		State:       StateUp,
		NRState:     NRUp,
	}
}

func benchDevices(n int) []*DeviceRef {
	d := make([]*DeviceRef, n)
	for i := range d {
		d[i] = &DeviceRef{Device: "SIP/" + strconv.Itoa(100+i), DeviceCompany: "acme", OwnerID: 1000 + int64(i%100), OwnerLogin: "alice"}
	}
	return d
}

// commitLoop commits b.N one-leg updates (a new value each time, as the
// pbx does) round-robin over the live legs.
func commitLoop(b *testing.B, s *Store, legs []*Call) {
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c := *legs[i]
		if c.State == StateUp {
			c.State = StateHold
		} else {
			c.State = StateUp
		}
		if _, err := s.Commit(Change{Type: EventUpdate, Call: &c}); err != nil {
			b.Fatal(err)
		}
		legs[i] = &c
		if i++; i == len(legs) {
			i = 0
		}
	}
}

func populate(b *testing.B, s *Store, n int, devices []*DeviceRef) []*Call {
	legs := make([]*Call, n)
	for i := range legs {
		legs[i] = realisticCall(s.NewUID(), devices)
		if _, err := s.Commit(Change{Type: EventNew, Call: legs[i]}); err != nil {
			b.Fatal(err)
		}
	}
	return legs
}

func BenchmarkCommitNoWatchers(b *testing.B) {
	s := New(Options{})
	legs := populate(b, s, 1000, benchDevices(100))
	commitLoop(b, s, legs)
}

// BenchmarkFanoutNonMatching commits on a device none of the watchers
// filters on (the watchers filter on SIP/w0.., the legs are on SIP/100..):
// with the index, the cost must not depend on the watcher count.
func BenchmarkFanoutNonMatching(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("watchers=%d", n), func(b *testing.B) {
			s := New(Options{})
			defer s.Close()
			legs := populate(b, s, 1000, benchDevices(100)) // SIP/100..SIP/199

			for i := range n {
				w, _, _, err := s.Watch(WatchRequest{Filter: Filter{Devices: []string{"SIP/w" + strconv.Itoa(i)}}})
				if err != nil {
					b.Fatal(err)
				}
				defer w.Close()
			}
			commitLoop(b, s, legs)
		})
	}
}

// BenchmarkFanoutMatching is the delivery path: 1,000 device watchers and
// 10 unfiltered ones (the fan-out scenario that docs/BENCHMARKS.md sets targets for), each commit
// matching one device watcher and the 10 broad ones, consumers drained
// inline every 64 commits. Reported per commit.
func BenchmarkFanoutMatching(b *testing.B) {
	s := New(Options{})
	defer s.Close()
	devices := benchDevices(1000)
	legs := populate(b, s, 2000, devices)
	var ws []*Watcher
	for i := range 1010 {
		f := Filter{}
		if i < 1000 {
			f.Devices = []string{devices[i].Device}
		}
		w, _, _, err := s.Watch(WatchRequest{Filter: f, Visible: func(c *Call) bool { return c.DeviceCompany == "acme" }})
		if err != nil {
			b.Fatal(err)
		}
		defer w.Close()
		ws = append(ws, w)
	}
	b.ReportAllocs()
	var buf []Batch
	i := 0
	for b.Loop() {
		c := *legs[i%len(legs)]
		c.State ^= StateUp ^ StateHold
		if _, err := s.Commit(Change{Type: EventUpdate, Call: &c}); err != nil {
			b.Fatal(err)
		}
		legs[i%len(legs)] = &c
		if i++; i%64 == 0 {
			for _, w := range ws {
				select {
				case <-w.Ready():
					buf, _, _ = w.Drain(buf[:0])
				default:
				}
			}
		}
	}
}

// BenchmarkHeapPerLiveCall measures the heap held per live leg with 100k
// live legs: the Call values and their strings, the live map, the device
// and uid indexes, and the history ring (default size) of the commits
// that created them.
func BenchmarkHeapPerLiveCall(b *testing.B) {
	const n = 100_000
	devices := benchDevices(20000)
	var perCall float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := New(Options{})
		for range n {
			if _, err := s.Commit(Change{Type: EventNew, Call: realisticCall(s.NewUID(), devices)}); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if s.Len() != n {
			b.Fatalf("Len() = %d, want %d", s.Len(), n)
		}
		perCall = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(s)
	}
	b.ReportMetric(perCall, "bytes/call")
}

// BenchmarkHeapPerStalledWatcher measures the heap a watcher that stopped
// draining pins with 1,000 one-event batches queued, while 15 other
// watchers of the same events keep up: the heap after a GC with it
// registered, minus the heap once it is closed and dropped. Its own events
// cost 1,000 x 56 B; anything well above that is other watchers' events
// kept alive by its windows.
func BenchmarkHeapPerStalledWatcher(b *testing.B) {
	const commits = 1000
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	var pinned float64
	for b.Loop() {
		s := New(Options{})
		stalled, _, _, err := s.Watch(WatchRequest{})
		if err != nil {
			b.Fatal(err)
		}
		var live []*Watcher
		for range 15 {
			w, _, _, err := s.Watch(WatchRequest{})
			if err != nil {
				b.Fatal(err)
			}
			live = append(live, w)
		}
		var buf []Batch
		dev := &DeviceRef{Device: "SIP/1", DeviceCompany: "acme"}
		for i := range commits {
			c := &Call{UID: int64(i + 1), DeviceRef: dev, State: StateRing}
			if _, err := s.Commit(Change{Type: EventNew, Call: c}); err != nil {
				b.Fatal(err)
			}
			for _, w := range live {
				buf, _, _ = w.Drain(buf[:0])
			}
		}
		clear(buf)
		with := heap()
		stalled.Close()
		stalled = nil
		without := heap()
		pinned = float64(with) - float64(without)
		s.Close()
	}
	b.ReportMetric(pinned, "bytes/stalled-watcher")
	b.ReportMetric(0, "ns/op")
}
