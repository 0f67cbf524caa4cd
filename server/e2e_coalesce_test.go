package server_test

import (
	"math/rand"
	"testing"
	"time"

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
