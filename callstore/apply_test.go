package callstore

import (
	"errors"
	"testing"
)

// TestApplyAtFollowsLog: a follower applying a leader's revisions in order
// ends with the same live set, revision and watcher stream as the leader.
func TestApplyAtFollowsLog(t *testing.T) {
	const epoch = 0xfeed
	leader, follower := New(Options{Epoch: epoch}), New(Options{Epoch: epoch})
	if got := follower.Epoch(); got != epoch {
		t.Fatalf("Epoch() = %#x, want %#x", got, epoch)
	}
	w, _, _, err := follower.Watch(WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	a := leg(leader.NewUID(), "SIP/1", "c", StateDial)
	b := leg(leader.NewUID(), "SIP/2", "c", StateRing)
	log := [][]Change{
		{{Type: EventNew, Call: a}, {Type: EventNew, Call: b}},
		{{Type: EventUpdate, Call: with(a, func(c *Call) { c.State = StateUp })}},
		{{Type: EventUpdate, Call: with(a, func(c *Call) { c.State = StateDead })}, {Type: EventUpdate, Call: with(b, func(c *Call) { c.State = StateDead })}},
	}
	for i, chs := range log {
		rev := mustCommit(t, leader, chs...)
		applied, err := follower.ApplyAt(rev, chs...)
		if err != nil || !applied {
			t.Fatalf("op %d: ApplyAt(%d) = %v, %v; want true, nil", i, rev, applied, err)
		}
		// The same revision again (the log read back after a direct apply)
		// is skipped.
		if applied, err := follower.ApplyAt(rev, chs...); err != nil || applied {
			t.Fatalf("op %d: second ApplyAt(%d) = %v, %v; want false, nil", i, rev, applied, err)
		}
	}
	if got, want := follower.Revision(), leader.Revision(); got != want {
		t.Errorf("follower Revision() = %d, want %d", got, want)
	}
	if n := follower.Len(); n != 0 {
		t.Errorf("follower Len() = %d, want 0", n)
	}
	if got := follower.NewUID(); got != b.UID+1 {
		t.Errorf("follower NewUID() = %d, want %d (past every applied uid)", got, b.UID+1)
	}
	batches, _, err := w.Drain(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(batches) != len(log) {
		t.Fatalf("watcher got %d batches, want %d", len(batches), len(log))
	}
	for i, bt := range batches {
		if bt.Revision != int64(i+1) || len(bt.Events) != len(log[i]) {
			t.Errorf("batch %d: revision %d with %d events, want %d with %d", i, bt.Revision, len(bt.Events), i+1, len(log[i]))
		}
	}
	// Resume works across the two stores: same epoch, same revisions.
	w2, _, _, err := follower.Watch(WatchRequest{Resume: true, Epoch: leader.Epoch(), Revision: 1})
	if err != nil {
		t.Fatalf("resume on follower with leader's token: %v", err)
	}
	w2.Close()
}

func TestApplyAtErrors(t *testing.T) {
	s := New(Options{})
	a := leg(1, "SIP/1", "c", StateRing)
	if _, err := s.ApplyAt(2, Change{Type: EventNew, Call: a}); !errors.Is(err, ErrRevisionGap) {
		t.Errorf("ApplyAt(2) on an empty store: err = %v, want ErrRevisionGap", err)
	}
	if _, err := s.ApplyAt(1, Change{Type: EventUpdate, Call: a}); !errors.Is(err, ErrInvalidChange) {
		t.Errorf("ApplyAt(update of a leg that is not live): err = %v, want ErrInvalidChange", err)
	}
	if _, err := s.ApplyAt(1); !errors.Is(err, ErrInvalidChange) {
		t.Errorf("ApplyAt(no changes): err = %v, want ErrInvalidChange", err)
	}
	if s.Revision() != 0 || s.Len() != 0 {
		t.Errorf("a refused ApplyAt changed the store: revision %d, %d legs", s.Revision(), s.Len())
	}
}

func TestCheckMatchesCommit(t *testing.T) {
	s := New(Options{})
	a := leg(1, "SIP/1", "c", StateRing)
	cases := []struct {
		name    string
		changes []Change
		ok      bool
	}{
		{"new", []Change{{Type: EventNew, Call: a}}, true},
		{"update of a leg that is not live", []Change{{Type: EventUpdate, Call: a}}, false},
		{"nil call", []Change{{Type: EventNew}}, false},
		{"none", nil, false},
	}
	for _, tc := range cases {
		err := s.Check(tc.changes...)
		if (err == nil) != tc.ok {
			t.Errorf("%s: Check = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if s.Revision() != 0 {
			t.Fatalf("%s: Check committed", tc.name)
		}
	}
	mustCommit(t, s, Change{Type: EventNew, Call: a})
	if err := s.Check(Change{Type: EventNew, Call: a}); !errors.Is(err, ErrInvalidChange) {
		t.Errorf("Check(new of a live leg) = %v, want ErrInvalidChange", err)
	}
}
