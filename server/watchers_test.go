package server

import "testing"

// TestDrainStalledOwnClock: the drain cuts a send it saw under way at its
// own previous look, whatever the stall sweeper saw in between, and its
// looks do not count as the sweeper's.
func TestDrainStalledOwnClock(t *testing.T) {
	r := newWatchRegistry(0, 0, nil)
	ws := &watchStream{}
	r.streams[ws] = &stallState{}
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
