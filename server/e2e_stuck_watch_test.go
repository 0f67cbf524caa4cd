package server_test

// Watches whose client stops reading: they must end promptly with
// OUT_OF_RANGE and free what they held on the server, count against a
// server-wide cap, and never hold a drain for its whole timeout.

import (
	"context"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"callcontrold/callstore"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/pbx"
	"callcontrold/server"
)

// stuckWatch opens an unfiltered admin watch on its own connection with
// small fixed flow-control windows (no BDP growth), reads its started and
// snapshot_end frames, and then reads nothing: the server's sends block
// once about 64 KiB are in flight.
func stuckWatch(t *testing.T, h *harness) callcontrolv1.CallControlService_WatchCallsClient {
	t.Helper()
	c := h.dial("demo-admin", grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := c.calls.WatchCalls(ctx, &callcontrolv1.WatchCallsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	return stream
}

// traffic makes that many short calls through the switch: three revisions
// each (dial, ring, hang up), two legs.
func traffic(t *testing.T, h *harness, calls int) {
	t.Helper()
	for range calls {
		a, err := h.sim.Dial(context.Background(), "SIP/201", "202", pbx.DialOptions{})
		if err == nil {
			_, err = h.sim.Hangup(context.Background(), a.UID)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// waitFor polls cond until it holds (liveness bound) and fails with what.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readToEnd reads a stream to its end and returns the event frames read
// and the end.
func readToEnd(t *testing.T, s callcontrolv1.CallControlService_WatchCallsClient) (events int, err error) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			m, e := s.Recv()
			if e != nil {
				err = e
				return
			}
			if m.GetEvents() != nil {
				events++
			}
		}
	}()
	select {
	case <-done:
		return events, err
	case <-time.After(waitLimit):
		t.Fatal("the stream did not end")
		return 0, nil
	}
}

// A watch stuck in one send for WatchSendTimeout ends with OUT_OF_RANGE
// (WATCH_STALLED), and the server frees it before the client reads again.
func TestStalledWatchersEvicted(t *testing.T) {
	const n = 10
	h := newHarness(t, withConfig(func(c *server.Config) { c.WatchSendTimeout = 200 * time.Millisecond }))
	before := heapInUse()
	var streams []callcontrolv1.CallControlService_WatchCallsClient
	for range n {
		streams = append(streams, stuckWatch(t, h))
	}
	traffic(t, h, 300)
	waitFor(t, "the stalled watchers are unregistered from the store", func() bool { return h.store.Watchers() == 0 })
	after := heapInUse()
	// What may stay per watch until its client reads: the flow-control
	// window and grpc's write quota of the stream (64 KiB each) and the
	// client connection's buffers; the retained history is shared.
	const perWatch, slack = 256 << 10, 4 << 20
	if after > before && after-before > n*perWatch+slack {
		t.Errorf("heap grew by %d bytes with %d evicted watches, want at most %d", after-before, n, n*perWatch+slack)
	}
	if got := limitHits(t, h, "watch_stalled"); got != n {
		t.Errorf("watch_stalled hits = %v, want %d", got, n)
	}
	for i, s := range streams {
		events, err := readToEnd(t, s)
		st := statusOf(t, err, codes.OutOfRange)
		ei := errorInfo(t, st)
		if ei.GetReason() != "WATCH_STALLED" || ei.GetMetadata()["oldest_revision"] == "" || ei.GetMetadata()["send_timeout"] != "200ms" {
			t.Errorf("watch %d: ErrorInfo %v, want reason WATCH_STALLED with oldest_revision and send_timeout 200ms", i, ei)
		}
		if events == 0 {
			t.Errorf("watch %d: no event frame before the end", i)
		}
	}
}

// A watch the retained history has passed ends at once, from the commit
// that passed it, without waiting for its client to read: the client then
// gets what was already in flight and OUT_OF_RANGE, not a backlog of
// queued batches first.
func TestWatcherPassedByHistoryEvicted(t *testing.T) {
	const n = 5
	h := newHarness(t,
		withStore(callstore.Options{HistorySize: 64}),
		withConfig(func(c *server.Config) { c.WatchSendTimeout = -1 }))
	var streams []callcontrolv1.CallControlService_WatchCallsClient
	for range n {
		streams = append(streams, stuckWatch(t, h))
	}
	// Enough revisions for what is in flight, a full queue and the history.
	const calls = 1500
	traffic(t, h, calls)
	waitFor(t, "the passed watchers are unregistered from the store", func() bool { return h.store.Watchers() == 0 })
	for i, s := range streams {
		events, err := readToEnd(t, s)
		st := statusOf(t, err, codes.OutOfRange)
		if ei := errorInfo(t, st); ei.GetReason() != "REVISION_COMPACTED" || ei.GetMetadata()["oldest_revision"] == "" {
			t.Errorf("watch %d: ErrorInfo %v, want REVISION_COMPACTED with oldest_revision", i, ei)
		}
		// The store queues up to 1,024 batches per watcher: the client
		// gets what the transport had in flight, never that backlog.
		if events >= callstore.DefaultWatcherQueue {
			t.Errorf("watch %d: %d event frames before OUT_OF_RANGE, want fewer than the %d-batch queue", i, events, callstore.DefaultWatcherQueue)
		}
		t.Logf("watch %d: %d of %d revisions' frames, then %v", i, events, 3*calls, st.Message())
	}
}

// The server-wide watcher cap refuses a watch with RESOURCE_EXHAUSTED,
// an ErrorInfo and a RetryInfo; a slot frees when a watch ends.
func TestWatcherCap(t *testing.T) {
	h := newHarness(t, withConfig(func(c *server.Config) { c.MaxWatchers = 3 }))
	var ws []*watcher
	for _, login := range []string{"admin", "alice", "bob"} {
		w := h.watch(login, &callcontrolv1.WatchCallsRequest{})
		w.start()
		ws = append(ws, w)
	}
	refused := h.watch("sysadmin", &callcontrolv1.WatchCallsRequest{})
	_, err := refused.end()
	st := statusOf(t, err, codes.ResourceExhausted)
	if ei := errorInfo(t, st); ei.GetReason() != "WATCHER_LIMIT" || ei.GetMetadata()["max_watchers"] != "3" {
		t.Errorf("ErrorInfo %v, want WATCHER_LIMIT with max_watchers 3", ei)
	}
	if ri, ok := detail[*errdetails.RetryInfo](st); !ok || ri.GetRetryDelay().AsDuration() <= 0 {
		t.Errorf("RetryInfo %v, want a positive delay", ri)
	}
	ws[0].stop()
	waitFor(t, "a slot frees", func() bool { return h.store.Watchers() == 2 })
	h.watch("sysadmin", &callcontrolv1.WatchCallsRequest{}).start()
}

// A drain does not wait for watches whose client stopped reading: with a
// context that never ends, Shutdown still returns, the well-behaved
// watchers get UNAVAILABLE with a jittered RetryInfo, the stuck ones end
// too.
func TestDrainDoesNotWaitForStuckWatchers(t *testing.T) {
	const retry, jitter = 300 * time.Millisecond, 700 * time.Millisecond
	h := newHarness(t, withConfig(func(c *server.Config) {
		c.WatchSendTimeout = -1 // only the drain may cut them
		c.DrainSendTimeout = 50 * time.Millisecond
		c.DrainRetryAfter, c.DrainRetryJitter = retry, jitter
	}))
	var stuck []callcontrolv1.CallControlService_WatchCallsClient
	for range 5 {
		stuck = append(stuck, stuckWatch(t, h))
	}
	var good []*watcher
	for _, login := range []string{"alice", "bob"} {
		w := h.watch(login, &callcontrolv1.WatchCallsRequest{})
		w.start()
		good = append(good, w)
	}
	traffic(t, h, 300)
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.srv.Shutdown(context.Background())
	}()
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Fatal("Shutdown waits for watchers that do not read")
	}
	for _, w := range good {
		_, err := w.end()
		st := statusOf(t, err, codes.Unavailable)
		ri, ok := detail[*errdetails.RetryInfo](st)
		if d := ri.GetRetryDelay().AsDuration(); !ok || d < retry || d >= retry+jitter {
			t.Errorf("%s: RetryInfo %v, want a delay in [%v, %v)", w.name, ri, retry, retry+jitter)
		}
	}
	for _, s := range stuck {
		_, err := readToEnd(t, s)
		statusOf(t, err, codes.Unavailable)
	}
	if got := limitHits(t, h, "watch_drain_stalled"); got < 1 {
		t.Errorf("watch_drain_stalled hits = %v, want at least 1", got)
	}
}

// A client that reads, but more slowly than the switch commits, is not
// served ever older data: once its frames wait longer than
// WatchSendTimeout to go out, the watch ends with WATCH_STALLED, although
// the retained history still holds everything it missed.
func TestSlowReaderEvicted(t *testing.T) {
	h := newHarness(t,
		withStore(callstore.Options{HistorySize: 1 << 22}), // the history never passes it here
		withConfig(func(c *server.Config) { c.WatchSendTimeout = time.Second }))
	s := stuckWatch(t, h)
	stop := make(chan struct{})
	trafficDone := make(chan struct{})
	go func() {
		defer close(trafficDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			a, err := h.sim.Dial(context.Background(), "SIP/201", "202", pbx.DialOptions{})
			if err == nil {
				_, err = h.sim.Hangup(context.Background(), a.UID)
			}
			if err != nil {
				t.Error(err)
				return
			}
		}
	}()
	defer func() {
		close(stop)
		<-trafficDone
	}()
	end := make(chan error, 1)
	go func() {
		for {
			if _, err := s.Recv(); err != nil {
				end <- err
				return
			}
			// About a frame per millisecond: far slower than the switch, yet
			// each single frame goes out well within the timeout (the
			// client's window opens every 16 KiB read).
			time.Sleep(time.Millisecond)
		}
	}()
	select {
	case err := <-end:
		st := statusOf(t, err, codes.OutOfRange)
		if ei := errorInfo(t, st); ei.GetReason() != "WATCH_STALLED" {
			t.Errorf("ErrorInfo %v, want WATCH_STALLED", ei)
		}
		t.Logf("ended at revision %d of the store (history %d): %v", h.store.Revision(), h.store.HistorySize(), st.Message())
	case <-time.After(waitLimit):
		t.Fatal("a reader slower than the switch was never ended")
	}
}
