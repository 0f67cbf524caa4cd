package server

import (
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"
	"unsafe"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// TestDrainStalledOwnClock: the drain cuts a send it saw under way at its
// own previous look, whatever the stall sweeper saw in between, and its
// looks do not count as the sweeper's.
func TestDrainStalledOwnClock(t *testing.T) {
	r := newWatchRegistry(0, 0, 0, nil, nil)
	ws := &watchStream{}
	r.streams = append(r.streams, ws)
	ws.sendSeq.Add(1) // a send begins
	r.stalled(stallChecks)
	if got := r.drainStalled(); len(got) != 0 {
		t.Fatal("the drain cut a send at its first look, because the sweeper had seen it")
	}
	for range stallChecks {
		if got := r.drainStalled(); len(got) != 1 {
			t.Fatalf("the drain's second look: %d cut, want the send still under way", len(got))
		}
	}
	if got := r.stalled(stallChecks); len(got) != 0 {
		t.Fatal("the sweeper counted the drain's looks as its own")
	}
	ws.sendSeq.Add(1) // the send ends
	if got := r.drainStalled(); len(got) != 0 {
		t.Fatal("the drain cut a watch between sends")
	}
}

// TestStalledWatchCountedOnce: a watch the drain cuts stays registered
// until its handler returns, which a busy machine may delay past the next
// look; the cut counts once, and the first cause stays the watch's.
func TestStalledWatchCountedOnce(t *testing.T) {
	counted := map[string]int{}
	hits := &limitHit{
		count: func(limit string) { counted[limit]++ },
		log:   slog.New(slog.NewTextHandler(io.Discard, nil)), every: time.Hour,
		last: map[string]time.Time{}, left: map[string]int{},
	}
	r := newWatchRegistry(0, 0, 0, nil, hits)
	ws := &watchStream{wake: make(chan struct{}, 1)}
	r.streams = append(r.streams, ws)
	ws.sendSeq.Add(1) // a send begins, and never ends
	for range 4 {
		r.cutStalled()
	}
	if got := counted[limitWatchDrainStalled]; got != 1 {
		t.Errorf("%s counted %d times for one watch, want 1", limitWatchDrainStalled, got)
	}
	if got := ws.evictCause(); got != errDrainStalled {
		t.Errorf("cause %v, want %v", got, errDrainStalled)
	}
	ws.evict(errors.New("a later cause"))
	if got := ws.evictCause(); got != errDrainStalled {
		t.Errorf("cause after a second eviction %v, want the first, %v", got, errDrainStalled)
	}
}

// TestRegistryWakesQuietAndDrained: a progress tick wakes the watches
// whose last frames went out a progress interval ago or more, and only
// those; the drain wakes every watch.
func TestRegistryWakesQuietAndDrained(t *testing.T) {
	const interval = time.Minute // the ticker never fires in this test: ticks are called directly
	drain := make(chan struct{})
	r := newWatchRegistry(0, 0, interval, drain, nil)
	quiet := &watchStream{wake: make(chan struct{}, 1)}
	busy := &watchStream{wake: make(chan struct{}, 1)}
	now := time.Now()
	quiet.lastFrame.Store(int64(now.Sub(processStart) - interval))
	busy.lastFrame.Store(int64(now.Sub(processStart) - interval + time.Millisecond))
	for _, ws := range []*watchStream{quiet, busy} {
		if err := r.add(ws, 0); err != nil {
			t.Fatal(err)
		}
		defer r.remove(ws)
	}
	r.wakeQuiet(now)
	if len(quiet.wake) != 1 || len(busy.wake) != 0 {
		t.Fatalf("after a tick: quiet watch woken %d, busy one %d, want 1 and 0", len(quiet.wake), len(busy.wake))
	}
	<-quiet.wake
	close(drain) // the registry's goroutine wakes them all
	for _, ws := range []*watchStream{quiet, busy} {
		select {
		case <-ws.wake:
		case <-time.After(10 * time.Second):
			t.Fatal("a watch was not woken by the drain")
		}
	}
}

// TestRegistryEndsLingers: a linger tick wakes the lingering senders
// whose watches have been quiet for a linger, and only those; a sender
// that stopped lingering is not looked at.
func TestRegistryEndsLingers(t *testing.T) {
	r := newWatchRegistry(0, 0, 0, nil, nil)
	now := time.Now()
	watch := func(quiet time.Duration) *watchStream {
		ws := &watchStream{wake: make(chan struct{}, 1)}
		ws.lastFrame.Store(int64(now.Sub(processStart) - quiet))
		if err := r.add(ws, 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.remove(ws) })
		return ws
	}
	quiet := watch(r.linger)
	busy := watch(r.linger - time.Millisecond)
	done := watch(time.Hour) // quiet, but its sender is back with its handler
	for _, ws := range []*watchStream{quiet, busy, done} {
		r.lingerBegin(ws)
	}
	r.lingerEnd(done)
	if !r.wakeLingering(now) {
		t.Error("a linger tick with lingering senders reported none")
	}
	for _, c := range []struct {
		name string
		ws   *watchStream
		want int
	}{{"quiet", quiet, 1}, {"busy", busy, 0}, {"no longer lingering", done, 0}} {
		if got := len(c.ws.wake); got != c.want {
			t.Errorf("%s watch: %d wake-ups after a linger tick, want %d", c.name, got, c.want)
		}
	}
	for _, ws := range []*watchStream{quiet, busy} {
		r.lingerEnd(ws)
	}
	if r.wakeLingering(now) {
		t.Error("a linger tick with no lingering sender reported some: its ticker would run on")
	}
}

// TestDrainSparesSlowReaders: a send still under way at the drain's next
// look is cut only if none of its frames went out since: a slow reader
// keeps its watch (and gets its last progress frame), a stuck one does not.
func TestDrainSparesSlowReaders(t *testing.T) {
	r := newWatchRegistry(0, 0, 0, nil, nil)
	ws := &watchStream{}
	r.streams = append(r.streams, ws)
	ws.sendSeq.Add(1) // one long send begins
	r.drainStalled()
	for range 3 {
		ws.framesOut.Add(1) // a frame of it went out
		if got := r.drainStalled(); len(got) != 0 {
			t.Fatal("the drain cut a send whose frames are going out")
		}
	}
	if got := r.drainStalled(); len(got) != 1 {
		t.Fatalf("the drain cut %d watches, want the send whose frames stopped", len(got))
	}
}

// TestWatchStreamSize guards an idle stream's memory: every open watch
// holds a watchStream, in the 144-byte size class. Over 144 it takes the
// 160-byte class, where opening a stream also allocates and drops grpc's
// header fields: the holes those leave next to the watches cost more than
// the 16 bytes. Keep per-watch state that few watches need elsewhere (as
// watchBusy).
func TestWatchStreamSize(t *testing.T) {
	if got := unsafe.Sizeof(watchStream{}); got > 144 {
		t.Errorf("watchStream is %d bytes, want at most 144", got)
	}
}

// TestEvictionReachesAWaitingSend: an eviction wakes a handler waiting
// for a send that never ends with errSendAbandoned, a send cannot begin
// once the watch is evicted, and a send that ended first gives its result.
func TestEvictionReachesAWaitingSend(t *testing.T) {
	ws := &watchStream{wake: make(chan struct{}, 1)}
	sl := ws.beginSend()
	if sl == nil {
		t.Fatal("a send could not begin on a live watch")
	}
	sl.ch <- sendResult{} // a send that ended
	if r := ws.await(sl); r.err != nil || ws.slot.Load() != nil {
		t.Fatalf("await = %+v, slot %p; want the send's result and no slot", r, ws.slot.Load())
	}

	sl = ws.beginSend() // a send that never ends: its helper never posts
	done := make(chan sendResult)
	go func() { done <- ws.await(sl) }()
	ws.evict(errors.New("evicted"))
	select {
	case r := <-done:
		if r.err != errSendAbandoned {
			t.Fatalf("await after an eviction = %v, want errSendAbandoned", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the eviction did not reach the handler waiting for its send")
	}
	if ws.beginSend() != nil {
		t.Fatal("a send began on an evicted watch")
	}
	if len(ws.wake) != 1 {
		t.Fatal("the eviction did not wake the handler's loop")
	}
}

// TestOpenOnOwnStackRaisesPanics: a panic while a watch opens, on the
// goroutine openOnOwnStack runs it on, is raised again on the handler's
// (where the stream chain recovers it), every time: the pooled job that
// carried it is reused cleanly.
func TestOpenOnOwnStackRaisesPanics(t *testing.T) {
	var s *callService // openWatch panics on it
	for i := range 3 {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("open %d: the panic was not raised again", i)
				}
			}()
			s.openOnOwnStack(&callcontrolv1.WatchCallsRequest{}, nil, false)
		}()
	}
}

// TestRegistryRemove: the registry holds its watches in a slice, each
// knowing its place; removing one moves the last into its place, and a
// watch removed twice (or never added) leaves the others alone.
func TestRegistryRemove(t *testing.T) {
	r := newWatchRegistry(0, 0, 0, nil, nil)
	ws := make([]*watchStream, 4)
	for i := range ws {
		ws[i] = &watchStream{regIdx: -1}
		if err := r.add(ws[i], 0); err != nil {
			t.Fatal(err)
		}
	}
	check := func(want ...*watchStream) {
		t.Helper()
		if r.Len() != len(want) {
			t.Fatalf("%d watches registered, want %d", r.Len(), len(want))
		}
		for _, w := range want {
			if r.streams[w.regIdx] != w {
				t.Fatalf("a watch's place (%d) holds another watch", w.regIdx)
			}
		}
	}
	r.remove(ws[1])
	check(ws[0], ws[2], ws[3])
	if ws[1].regIdx != -1 {
		t.Errorf("a removed watch keeps its place %d", ws[1].regIdx)
	}
	r.remove(ws[1])
	r.remove(&watchStream{regIdx: 0})
	check(ws[0], ws[2], ws[3])
	r.remove(ws[3])
	r.remove(ws[0])
	check(ws[2])
	r.remove(ws[2])
	check()
}

// TestOpenOnOwnStackResetsPooledRequest: a request read into from
// watchRequests goes back reset once the open is done with it, a failed
// open included: a pooled request must not keep the last stream's filter
// or token alive.
func TestOpenOnOwnStackResetsPooledRequest(t *testing.T) {
	var s *callService // openWatch panics on it
	req := &callcontrolv1.WatchCallsRequest{ResumeToken: "t", Filter: &callcontrolv1.CallFilter{Devices: []string{"d"}}}
	func() {
		defer func() { _ = recover() }()
		s.openOnOwnStack(req, nil, true)
	}()
	if req.GetFilter() != nil || req.GetResumeToken() != "" {
		t.Error("a pooled request keeps what the open read from it")
	}
}
