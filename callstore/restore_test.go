package callstore

import (
	"errors"
	"slices"
	"testing"
)

// churn commits n revisions on s: a leg is created on one of a few
// devices, then updated, then ended, so that legs stay live across many
// revisions. It returns the changes of each revision, for a follower.
func churn(t *testing.T, s *Store, n int) [][]Change {
	t.Helper()
	var log [][]Change
	var live []*Call
	for i := range n {
		var chs []Change
		switch {
		case len(live) < 3 || i%3 == 0:
			c := leg(s.NewUID(), []string{"SIP/1", "SIP/2", "SIP/3"}[i%3], "c", StateRing)
			live = append(live, c)
			chs = []Change{{Type: EventNew, Call: c}}
		case i%3 == 1:
			c := with(live[0], func(c *Call) { c.State = StateUp })
			live[0] = c
			chs = []Change{{Type: EventUpdate, Call: c}}
		default:
			c := with(live[0], func(c *Call) { c.State = StateDead })
			live = live[1:]
			chs = []Change{{Type: EventUpdate, Call: c}}
		}
		mustCommit(t, s, chs...)
		log = append(log, chs)
	}
	return log
}

func apply(t *testing.T, s *Store, from int64, log [][]Change) {
	t.Helper()
	for i, chs := range log {
		if _, err := s.ApplyAt(from+int64(i), chs...); err != nil {
			t.Fatalf("ApplyAt(%d): %v", from+int64(i), err)
		}
	}
}

func sameLive(t *testing.T, what string, got, want *Store) {
	t.Helper()
	g, gr := got.List(nil, nil, 0, 0)
	w, wr := want.List(nil, nil, 0, 0)
	if gr != wr || !slices.Equal(g, w) {
		t.Errorf("%s: %d legs %v at revision %d, want %d legs %v at %d", what, len(g), uids(g), gr, len(w), uids(w), wr)
	}
	for _, dev := range []string{"SIP/1", "SIP/2", "SIP/3"} {
		if g, w := got.ByDevice(dev), want.ByDevice(dev); !slices.Equal(g, w) {
			t.Errorf("%s: device %s has legs %v, want %v", what, dev, uids(g), uids(w))
		}
	}
}

// TestRestoreFromSnapshot: a follower that missed revisions takes a
// snapshot of the leader's store: its watchers end compacted (the
// revisions they missed never reach it), its live set, revision and uids
// match the leader's, and from there it follows the log with ApplyAt,
// its history resuming from the snapshot's revision on.
func TestRestoreFromSnapshot(t *testing.T) {
	const epoch = 7
	leader := New(Options{Epoch: epoch, HistorySize: 4})
	follower := New(Options{Epoch: epoch, HistorySize: 4})
	apply(t, follower, 1, churn(t, leader, 5))
	active, _, _, err := follower.Watch(WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer active.Close()
	var evicted []error
	lagging, _, _, err := follower.Watch(WatchRequest{Resume: true, Epoch: epoch, Revision: 2, Evicted: func(err error) { evicted = append(evicted, err) }})
	if err != nil {
		t.Fatal(err)
	}
	defer lagging.Close()

	churn(t, leader, 9) // revisions 6..14 never reach the follower
	calls, lastUID, rev := leader.Snapshot()
	if rev != 14 {
		t.Fatalf("Snapshot at revision %d, want 14", rev)
	}
	if err := follower.Restore(rev, calls, lastUID); err != nil {
		t.Fatal(err)
	}
	sameLive(t, "restored follower", follower, leader)
	if got := follower.NewUID(); got != lastUID+1 {
		t.Errorf("NewUID after Restore = %d, want %d", got, lastUID+1)
	}
	for name, w := range map[string]*Watcher{"active": active, "lagging": lagging} {
		batches, _, err := w.Drain(nil)
		var ce *CompactedError
		if !errors.As(err, &ce) || ce.Oldest != rev || len(batches) != 0 {
			t.Errorf("%s watcher after Restore: %d batches, %v; want none and a CompactedError at %d", name, len(batches), err, rev)
		}
	}
	if len(evicted) != 1 {
		t.Errorf("Evicted hook called %d times, want once", len(evicted))
	}
	if n := follower.Watchers(); n != 0 {
		t.Errorf("%d watchers registered after Restore, want 0", n)
	}
	if _, _, _, err := follower.Watch(WatchRequest{Resume: true, Epoch: epoch, Revision: rev - 1}); !errors.Is(err, ErrCompacted) {
		t.Errorf("resume before the snapshot: %v, want ErrCompacted", err)
	}
	resumed, _, _, err := follower.Watch(WatchRequest{Resume: true, Epoch: epoch, Revision: rev})
	if err != nil {
		t.Fatalf("resume at the snapshot's revision: %v", err)
	}
	defer resumed.Close()

	// While the ring grows again, a replay reads the slots from the new
	// base; then past the ring's size, so that its slots wrap.
	apply(t, follower, rev+1, churn(t, leader, 3))
	early, _, _, err := follower.Watch(WatchRequest{Resume: true, Epoch: epoch, Revision: rev})
	if err != nil {
		t.Fatal(err)
	}
	if b, _, err := early.Drain(nil); err != nil || len(b) != 3 || b[0].Revision != rev+1 {
		t.Errorf("replay of the first revisions after the snapshot: %d batches, %v; want 3 from %d", len(b), err, rev+1)
	}
	early.Close()
	apply(t, follower, rev+4, churn(t, leader, 8))
	sameLive(t, "follower after the tail", follower, leader)
	batches, _, err := resumed.Drain(nil)
	if err != nil || len(batches) != 11 {
		t.Fatalf("resumed watcher: %d batches, %v; want 11", len(batches), err)
	}
	for i, b := range batches {
		if b.Revision != rev+1+int64(i) {
			t.Fatalf("batch %d at revision %d, want %d", i, b.Revision, rev+1+int64(i))
		}
	}
	if got, want := follower.OldestRevision(), follower.Revision()-4; got != want {
		t.Errorf("OldestRevision = %d, want %d (the ring's 4)", got, want)
	}
	r2, _, _, err := follower.Watch(WatchRequest{Resume: true, Epoch: epoch, Revision: follower.Revision() - 4})
	if err != nil {
		t.Fatalf("resume at the oldest retained revision after the ring wrapped: %v", err)
	}
	if b, _, err := r2.Drain(nil); err != nil || len(b) != 4 {
		t.Errorf("replay from the wrapped ring: %d batches, %v; want 4", len(b), err)
	}
	r2.Close()
}

func TestRestoreRefuses(t *testing.T) {
	s := New(Options{})
	churn(t, s, 4)
	before, _, rev := s.Snapshot()
	a := leg(100, "SIP/1", "c", StateUp)
	cases := []struct {
		name  string
		rev   int64
		calls []*Call
	}{
		{"a revision not beyond the store's", rev, []*Call{a}},
		{"a nil leg", rev + 1, []*Call{a, nil}},
		{"a uid twice", rev + 1, []*Call{a, with(a, func(c *Call) { c.DeviceRef = &DeviceRef{Device: "SIP/2"} })}},
		{"a dead leg", rev + 1, []*Call{with(a, func(c *Call) { c.State = StateDead })}},
		{"a uid 0", rev + 1, []*Call{with(a, func(c *Call) { c.UID = 0 })}},
		{"a leg without a device", rev + 1, []*Call{with(a, func(c *Call) { c.DeviceRef = nil })}},
	}
	for _, tc := range cases {
		if err := s.Restore(tc.rev, tc.calls, 0); !errors.Is(err, ErrInvalidSnapshot) {
			t.Errorf("Restore with %s: %v, want ErrInvalidSnapshot", tc.name, err)
		}
		if after, _, r := s.Snapshot(); r != rev || !slices.Equal(after, before) {
			t.Fatalf("Restore with %s changed the store", tc.name)
		}
	}
}

// TestCompact: compacting ends the lagging watchers that still need a
// compacted revision and refuses tokens before it, and leaves the
// watchers that are not behind alone.
func TestCompact(t *testing.T) {
	s := New(Options{Epoch: 3})
	churn(t, s, 10)
	active, _, _, err := s.Watch(WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer active.Close()
	behind, _, _, err := s.Watch(WatchRequest{Resume: true, Epoch: 3, Revision: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer behind.Close()
	ahead, _, _, err := s.Watch(WatchRequest{Resume: true, Epoch: 3, Revision: 6})
	if err != nil {
		t.Fatal(err)
	}
	defer ahead.Close()

	s.Compact(5)
	if got := s.OldestRevision(); got != 5 {
		t.Errorf("OldestRevision after Compact(5) = %d, want 5", got)
	}
	var ce *CompactedError
	if _, _, err := behind.Drain(nil); !errors.As(err, &ce) || ce.Oldest != 5 {
		t.Errorf("watcher needing revision 3 after Compact(5): %v, want a CompactedError at 5", err)
	}
	if b, _, err := ahead.Drain(nil); err != nil || len(b) != 4 {
		t.Errorf("watcher needing revision 7 after Compact(5): %d batches, %v; want 4", len(b), err)
	}
	churn(t, s, 1)
	if b, _, err := active.Drain(nil); err != nil || len(b) != 1 {
		t.Errorf("active watcher after Compact(5): %d batches, %v; want 1", len(b), err)
	}
	if _, _, _, err := s.Watch(WatchRequest{Resume: true, Epoch: 3, Revision: 4}); !errors.As(err, &ce) || ce.Oldest != 5 {
		t.Errorf("resume at 4 after Compact(5): %v, want a CompactedError at 5", err)
	}
	s.Compact(3) // never goes back
	if got := s.OldestRevision(); got != 5 {
		t.Errorf("OldestRevision after Compact(3) = %d, want still 5", got)
	}
	s.Compact(1000) // beyond the store: up to its revision
	if got, want := s.OldestRevision(), s.Revision(); got != want {
		t.Errorf("OldestRevision after Compact(1000) = %d, want %d", got, want)
	}
}
