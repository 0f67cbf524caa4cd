package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"callcontrold/callstore"
	"callcontrold/internal/benchserver"
)

// The servers under test run in child processes, one at a time: this
// binary re-executed (os.Executable) with childEnv set to the peer's name,
// so that the CPU time and memory the parent reads from /proc belong to
// that server alone (and to its writer, which commits inside it, as a
// switch driver does inside callcontrold).
//
// Protocol (one line each way at a time; stdout carries nothing else):
//
//	child → parent: ready <addr>            serving on loopback
//	parent → child: drive <rate> <count> <devices>
//	                                        commit count changes at rate/s over devices
//	child → parent: driven <count> <ns>     done, in that many nanoseconds
//	parent → child: mem                     collect garbage, free to the OS, report
//	child → parent: mem <heap> <goroutines> runtime.MemStats.HeapAlloc
//	parent closes stdin                     the child shuts down and exits 0
//
// An error is one line "error <text>", after which the child exits 1.
const childEnv = "PEERBENCH_SERVER"

// server is one peer's side inside its child process.
type server interface {
	addr() string
	// put commits one change, writing the commit time (stamp) into the
	// leg's Name first; if writers() > 1 it runs concurrently and writes
	// into a copy.
	put(ch callstore.Change) error
	// newUID returns a fresh leg uid.
	newUID() int64
	// writers is how many puts the driver keeps in flight.
	writers() int
	close()
}

// startServer starts the named peer's server on a loopback port with its
// data (if any) under dir.
func startServer(name, dir string) (server, error) {
	switch name {
	case peerCallcontrold:
		return startCallcontrold()
	case peerEtcd:
		return startEtcd(dir)
	}
	return nil, fmt.Errorf("unknown server %q", name)
}

// childMain runs a child: it serves until stdin closes, answering the
// parent's commands.
func childMain(name string, stdin io.Reader, stdout io.Writer) int {
	dir, err := os.MkdirTemp("", "peerbench-")
	if err != nil {
		fmt.Fprintln(stdout, "error", err)
		return 1
	}
	defer os.RemoveAll(dir)
	s, err := startServer(name, dir)
	if err != nil {
		fmt.Fprintln(stdout, "error", err)
		return 1
	}
	defer s.close()
	fmt.Fprintln(stdout, "ready", s.addr())
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 4 && f[0] == "drive":
			rate, err1 := strconv.ParseFloat(f[1], 64)
			count, err2 := strconv.Atoi(f[2])
			devs, err3 := strconv.Atoi(f[3])
			if err1 != nil || err2 != nil || err3 != nil || rate <= 0 || count < 0 || devs < 1 || devs > fanoutDevices {
				fmt.Fprintln(stdout, "error bad drive command:", sc.Text())
				return 1
			}
			start := time.Now()
			if err := drive(s, rate, count, devs); err != nil {
				fmt.Fprintln(stdout, "error", err)
				return 1
			}
			fmt.Fprintln(stdout, "driven", count, time.Since(start).Nanoseconds())
		case len(f) == 1 && f[0] == "mem":
			// Return freed memory to the OS too, so that the resident set
			// the parent reads next is what is in use.
			runtime.GC()
			debug.FreeOSMemory()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			fmt.Fprintln(stdout, "mem", m.HeapAlloc, runtime.NumGoroutine())
		default:
			fmt.Fprintln(stdout, "error unknown command:", sc.Text())
			return 1
		}
	}
	return 0
}

// drive commits count changes at rate per second: change n moves the leg
// of device n%devs one step (ring → up → hold → up → dead, then a new
// leg). With several writers the changes are handed out in order to a pool
// of goroutines (a device's next change comes devs changes later, so they
// do not overtake each other in practice; etcd does not care anyway).
func drive(s server, rate float64, count, devs int) error {
	interval := time.Duration(float64(time.Second) / rate)
	legs := make([]benchserver.Leg, devs)
	var (
		work  chan callstore.Change
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	fail := func(err error) {
		errMu.Lock()
		defer errMu.Unlock()
		if first == nil {
			first = err
		}
	}
	failed := func() bool {
		errMu.Lock()
		defer errMu.Unlock()
		return first != nil
	}
	if w := s.writers(); w > 1 {
		work = make(chan callstore.Change, w)
		for range w {
			wg.Go(func() {
				for ch := range work {
					if err := s.put(ch); err != nil {
						fail(err)
					}
				}
			})
		}
	}
	due := time.Now()
	for n := 0; n < count && !failed(); n++ {
		if now := time.Now(); due.After(now) {
			time.Sleep(due.Sub(now))
		}
		due = due.Add(interval)
		d := n % devs
		ch := legs[d].Next(s.newUID, fanoutDevice(d))
		if work != nil {
			work <- ch
		} else if err := s.put(ch); err != nil {
			fail(err)
		}
	}
	if work != nil {
		close(work)
		wg.Wait()
	}
	return first
}

// stamp is the commit time written into a leg's Name just before it is
// committed: the receiver reads it back from the event.
func stamp() string { return strconv.FormatInt(time.Now().UnixNano(), 10) }
