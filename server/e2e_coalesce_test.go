package server_test

import (
	"context"
	"math/rand"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/server"
)

// With the connections' writes coalesced, watchers sharing a connection
// still get every revision in order, the same frames each, and unary
// calls are answered in between.
func TestCoalescedWritesDeliverEverything(t *testing.T) {
	h := newHarness(t, withConfig(func(c *server.Config) {
		c.WriteCoalesceWindow = time.Millisecond
		c.ProgressInterval = 20 * time.Millisecond
	}))
	a := h.watch("sysadmin", &callcontrolv1.WatchCallsRequest{})
	b := h.watch("sysadmin", &callcontrolv1.WatchCallsRequest{})
	a.start()
	b.start()
	randomTraffic(rand.New(rand.NewSource(testSeed(t))), h.sim, h.store, h.clock, 200)
	// A unary call on the watchers' connection is answered between their
	// frames.
	if _, err := h.as("sysadmin").calls.ListCalls(h.ctx(), &callcontrolv1.ListCallsRequest{}); err != nil {
		t.Fatalf("ListCalls beside the watches: %v", err)
	}
	randomTraffic(rand.New(rand.NewSource(testSeed(t)+1)), h.sim, h.store, h.clock, 50)
	final := h.store.Revision()
	got := a.until(final)
	other := b.until(final)
	if len(got) != len(other) {
		t.Fatalf("watchers got %d and %d batches", len(got), len(other))
	}
	last := int64(0)
	for i, batch := range got {
		if batch.GetRevision() <= last {
			t.Fatalf("batch %d at r%d after r%d", i, batch.GetRevision(), last)
		}
		last = batch.GetRevision()
		if !proto.Equal(batch, other[i]) {
			t.Fatalf("batch %d differs between the watchers", i)
		}
	}
	if last != final {
		t.Fatalf("last batch at r%d, want r%d", last, final)
	}
}

// A watch whose client stops reading must not hold back the frames of
// the other watches of its connection for good: a commit counts the
// stuck watch among the connection's watches still to send, and what the
// others wrote goes out after the window, and from then on at once.
func TestCoalescingStuckWatchDoesNotHoldBackItsConnection(t *testing.T) {
	h := newHarness(t, withConfig(func(c *server.Config) {
		c.WatchSendTimeout = time.Hour // not ended by the stall sweeper while the test runs
	}))
	c := h.dial("demo-admin", grpc.WithInitialWindowSize(64<<10))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stuck, err := c.calls.WatchCalls(ctx, &callcontrolv1.WatchCallsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // started, snapshot_end; then it reads nothing
		if _, err := stuck.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	live := h.watchOn(c, "live", &callcontrolv1.WatchCallsRequest{})
	live.start()
	traffic(t, h, 1500) // ≈ 4,500 revisions: far more than the stuck stream can have in flight (its 64 KiB window and grpc's 64 KiB write quota)
	if got := live.until(h.store.Revision()); len(got) == 0 {
		t.Fatal("the live watch got no events")
	}
	// The stuck watch's sender is now blocked. A small commit's frame for
	// the live watch, which the stuck one is counted beside, still comes.
	traffic(t, h, 1)
	live.until(h.store.Revision())
}
