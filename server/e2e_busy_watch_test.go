package server_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/pbx"
	"callcontrold/server"
)

// A busy watch's events go out from a sender that waits for the next ones
// itself; when the traffic stops, the watch must be handed back to its
// handler (progress frames come again), and a drain in the middle of the
// traffic must still end it with everything up to its last progress
// frame, each revision once, then UNAVAILABLE.
func TestBusyWatchHandedBackAndDrained(t *testing.T) {
	h := newHarness(t, withConfig(func(c *server.Config) { c.ProgressInterval = 50 * time.Millisecond }))
	w := h.watch("admin", &callcontrolv1.WatchCallsRequest{})
	_, _, end := w.start()
	from := end.GetRevision()

	// A burst: every revision once, in order (admin sees every leg).
	traffic(t, h, 200)
	final := h.store.Revision()
	checkEveryRevision(t, w.until(final), from, final)

	// Quiet now: the next frame is progress, which only the handler sends.
	if p := w.mustNext().GetProgress(); p == nil || p.GetRevision() != final {
		t.Fatalf("after the burst: got %v, want progress at r%d", p, final)
	}

	// Traffic again, paced (a revision every few hundred µs keeps the
	// sender busy) and bounded (900 revisions stay well inside the
	// retained history, so the watch cannot fall past it), and a drain
	// while it runs.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 300 {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			a, err := h.sim.Dial(context.Background(), "SIP/201", "202", pbx.DialOptions{})
			if err == nil {
				_, err = h.sim.Hangup(context.Background(), a.UID)
			}
			if err != nil {
				return // the switch may refuse once the server drains
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()
	got := w.until(final + 30) // the sender is busy
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	h.srv.Shutdown(ctx)
	rest, err := w.end()
	statusOf(t, err, codes.Unavailable)
	if len(rest) == 0 {
		t.Fatal("no frame before the end")
	}
	p := rest[len(rest)-1].GetProgress()
	if p == nil {
		t.Fatalf("last frame %v, want progress", rest[len(rest)-1])
	}
	for _, m := range rest[:len(rest)-1] {
		if m.GetProgress() != nil {
			continue // a pause in the traffic on a busy machine
		}
		b := m.GetEvents()
		if b == nil {
			t.Fatalf("before the last progress: %v, want events and progress only", m)
		}
		got = append(got, b)
	}
	checkEveryRevision(t, got, final, p.GetRevision())
}

// checkEveryRevision checks that bs are the revisions from+1..to, each
// once, in order.
func checkEveryRevision(t *testing.T, bs []*callcontrolv1.EventBatch, from, to int64) {
	t.Helper()
	want := from + 1
	for _, b := range bs {
		if b.GetRevision() != want {
			t.Fatalf("got r%d, want r%d (revisions %d..%d)", b.GetRevision(), want, from+1, to)
		}
		want++
	}
	if want != to+1 {
		t.Fatalf("got revisions up to r%d, want up to r%d", want-1, to)
	}
}
