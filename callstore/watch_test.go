package callstore

import (
	"unsafe"

	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// ev is a WatchEvent reduced to what the tests compare.
type ev struct {
	Rev   int64
	Type  EventType
	View  ViewChange
	UID   int64
	State State
	Index int
}

func flatten(bs []Batch) []ev {
	out := []ev{}
	for _, b := range bs {
		for _, e := range b.Events {
			out = append(out, ev{b.Revision, e.Type, e.View, e.Call.UID, e.Call.State, e.Index})
		}
	}
	return out
}

func drainAll(t *testing.T, w *Watcher) ([]Batch, int64, error) {
	t.Helper()
	var all []Batch
	var prog int64
	var err error
	for range 1000 {
		n := len(all)
		all, prog, err = w.Drain(all)
		if err != nil || (len(all) == n && w.s.Lagging() == 0) {
			return all, prog, err
		}
	}
	t.Fatalf("Drain does not settle")
	return nil, 0, nil
}

func TestWatchViews(t *testing.T) {
	s := New(Options{})
	w, snap, start, err := s.Watch(WatchRequest{
		Filter:   Filter{Devices: []string{"SIP/1"}, States: []State{StateRing, StateUp, StateDead}},
		Snapshot: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if len(snap) != 0 || start != 0 {
		t.Errorf("Watch() snapshot %v at %d, want empty at 0", snap, start)
	}
	a := leg(1, "SIP/1", "acme", StateRing)
	mustCommit(t, s, Change{Type: EventNew, Call: a})                                                 // 1 entered
	mustCommit(t, s, Change{Type: EventUpdate, Call: with(a, func(c *Call) { c.State = StateUp })})   // 2 stayed
	mustCommit(t, s, Change{Type: EventUpdate, Call: with(a, func(c *Call) { c.State = StateHold })}) // 3 left (state)
	mustCommit(t, s, Change{Type: EventUpdate, Call: with(a, func(c *Call) { c.State = StatePark })}) // 4 not delivered
	mustCommit(t, s, Change{Type: EventNew, Call: leg(2, "SIP/2", "acme", StateRing)})                // 5 other device
	mustCommit(t, s, Change{Type: EventUpdate, Call: with(a, func(c *Call) { c.State = StateUp })},   // 6 entered
		Change{Type: EventTransfer, Call: leg(2, "SIP/1", "acme", StateUp)}) // 6 entered (moved in)
	mustCommit(t, s, Change{Type: EventTransfer, Call: leg(2, "SIP/3", "acme", StateUp)})             // 7 left (moved out)
	mustCommit(t, s, Change{Type: EventUpdate, Call: with(a, func(c *Call) { c.State = StateDead })}) // 8 stayed, dead
	mustCommit(t, s, Change{Type: EventNew, Call: leg(3, "SIP/1", "acme", StateDead)})                // 9 entered, born dead
	got, prog, err := drainAll(t, w)
	if err != nil {
		t.Fatal(err)
	}
	want := []ev{
		{1, EventNew, ViewEntered, 1, StateRing, 0},
		{2, EventUpdate, ViewStayed, 1, StateUp, 0},
		{3, EventUpdate, ViewLeft, 1, StateHold, 0},
		{6, EventUpdate, ViewEntered, 1, StateUp, 0},
		{6, EventTransfer, ViewEntered, 2, StateUp, 1},
		{7, EventTransfer, ViewLeft, 2, StateUp, 0},
		{8, EventUpdate, ViewStayed, 1, StateDead, 0},
		{9, EventNew, ViewEntered, 3, StateDead, 0},
	}
	if diff := cmp.Diff(want, flatten(got)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if len(got) != 7 {
		t.Errorf("got %d batches, want 7 (one per revision with events)", len(got))
	}
	if prog != 9 {
		t.Errorf("progress = %d, want 9", prog)
	}
}

func TestWatchTypesAndVisibility(t *testing.T) {
	s := New(Options{})
	w, _, _, err := s.Watch(WatchRequest{
		Filter:  Filter{Types: []EventType{EventTransfer}},
		Visible: func(c *Call) bool { return c.DeviceCompany == "acme" },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	mustCommit(t, s, Change{Type: EventNew, Call: leg(1, "SIP/1", "acme", StateRing)})
	mustCommit(t, s, Change{Type: EventTransfer, Call: leg(1, "SIP/2", "other", StateUp), Xfer: []XferLeg{{UID: 1, ID: "x"}}})
	mustCommit(t, s, Change{Type: EventTransfer, Call: leg(1, "SIP/2", "acme", StateUp)})
	got, prog, err := drainAll(t, w)
	if err != nil {
		t.Fatal(err)
	}
	want := []ev{{2, EventTransfer, ViewLeft, 1, StateUp, 0}, {3, EventTransfer, ViewEntered, 1, StateUp, 0}}
	if diff := cmp.Diff(want, flatten(got)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]XferLeg{{UID: 1, ID: "x"}}, got[0].Events[0].Xfer); diff != "" {
		t.Errorf("Xfer (-want +got):\n%s", diff)
	}
	if prog != 3 {
		t.Errorf("progress = %d, want 3", prog)
	}
}

func TestWatchProgressWithoutEvents(t *testing.T) {
	s := New(Options{})
	w, _, _, err := s.Watch(WatchRequest{Filter: Filter{UIDs: []int64{99}}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := int64(1); i <= 5; i++ {
		mustCommit(t, s, Change{Type: EventNew, Call: leg(i, "d", "c", StateRing)})
	}
	select {
	case <-w.Ready():
		t.Errorf("Ready fired for a watcher with no matching events")
	default:
	}
	got, prog, err := w.Drain(nil)
	if len(got) != 0 || prog != 5 || err != nil {
		t.Errorf("Drain() = %d batches, %d, %v, want 0, 5, nil", len(got), prog, err)
	}
}

// TestWatchOwnReadyChannel: a watcher given a Ready channel signals
// that one, for its events and its end, and refuses one without a
// buffer (its signals would be lost).
func TestWatchOwnReadyChannel(t *testing.T) {
	s := New(Options{})
	if _, _, _, err := s.Watch(WatchRequest{Ready: make(chan struct{})}); err == nil {
		t.Fatal("Watch with an unbuffered Ready channel succeeded, want an error")
	}
	ready := make(chan struct{}, 1)
	w, _, _, err := s.Watch(WatchRequest{Filter: Filter{UIDs: []int64{1}}, Ready: ready})
	if err != nil {
		t.Fatal(err)
	}
	if w.Ready() != (<-chan struct{})(ready) {
		t.Fatal("Ready() is not the channel the request gave")
	}
	mustCommit(t, s, Change{Type: EventNew, Call: leg(2, "d", "c", StateRing)})
	select {
	case <-ready:
		t.Fatal("signalled for an event the watcher does not match")
	default:
	}
	rev := mustCommit(t, s, Change{Type: EventNew, Call: leg(1, "d", "c", StateRing)})
	select {
	case <-ready:
	default:
		t.Fatal("not signalled for a matching event")
	}
	got, _, err := w.Drain(nil)
	if len(got) != 1 || got[0].Revision != rev || err != nil {
		t.Fatalf("Drain() = %v, %v, want one batch at %d", got, err, rev)
	}
	w.Close()
	select {
	case <-ready:
	default:
		t.Fatal("not signalled when closed")
	}
}

func TestWatchSnapshotAtomic(t *testing.T) {
	// Commits race with Watch; snapshot + events must rebuild the exact live set.
	s := New(Options{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := int64(1); i <= 2000; i++ {
			mustCommit(t, s, Change{Type: EventNew, Call: leg(i, "d", "c", StateRing)})
			if i%3 == 0 {
				mustCommit(t, s, Change{Type: EventUpdate, Call: leg(i-1, "d", "c", StateDead)})
			}
		}
	}()
	time.Sleep(time.Millisecond)
	w, snap, start, err := s.Watch(WatchRequest{Snapshot: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	wg.Wait()
	view := map[int64]bool{}
	for _, c := range snap {
		view[c.UID] = true
	}
	bs, _, err := drainAll(t, w)
	if err != nil {
		t.Fatal(err)
	}
	last := start
	for _, b := range bs {
		if b.Revision <= last {
			t.Fatalf("batch revision %d after %d", b.Revision, last)
		}
		last = b.Revision
		for _, e := range b.Events {
			switch {
			case e.Call.Dead():
				delete(view, e.Call.UID)
			case e.Type == EventNew && view[e.Call.UID]:
				t.Fatalf("duplicate NEW for %d at %d", e.Call.UID, b.Revision)
			default:
				view[e.Call.UID] = true
			}
		}
	}
	if got, want := len(view), s.Len(); got != want {
		t.Errorf("rebuilt view has %d legs, want %d", got, want)
	}
}

func TestWatchResume(t *testing.T) {
	s := New(Options{HistorySize: 4})
	for i := int64(1); i <= 6; i++ {
		mustCommit(t, s, Change{Type: EventNew, Call: leg(i, "d", "c", StateRing)})
	}
	if got := s.OldestRevision(); got != 2 {
		t.Fatalf("OldestRevision() = %d, want 2", got)
	}
	tests := []struct {
		name     string
		epoch    uint64
		rev      int64
		wantErr  error
		wantUIDs []int64
	}{
		{"at oldest", s.Epoch(), 2, nil, []int64{3, 4, 5, 6}},
		{"middle", s.Epoch(), 4, nil, []int64{5, 6}},
		{"at current", s.Epoch(), 6, nil, []int64{}},
		{"compacted", s.Epoch(), 1, &CompactedError{Oldest: 2}, nil},
		{"future", s.Epoch(), 7, ErrFutureRevision, nil},
		{"other epoch", s.Epoch() + 1, 4, ErrEpoch, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, snap, start, err := s.Watch(WatchRequest{Resume: true, Snapshot: true, Epoch: tt.epoch, Revision: tt.rev})
			if tt.wantErr != nil {
				var ce *CompactedError
				if want, ok := tt.wantErr.(*CompactedError); ok {
					if !errors.As(err, &ce) || *ce != *want || !errors.Is(err, ErrCompacted) {
						t.Errorf("Watch() error = %v, want %v", err, tt.wantErr)
					}
				} else if !errors.Is(err, tt.wantErr) {
					t.Errorf("Watch() error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if snap != nil || start != tt.rev {
				t.Errorf("Watch() = snapshot %v, start %d, want nil, %d", snap, start, tt.rev)
			}
			got, prog, err := drainAll(t, w)
			if err != nil || prog != 6 {
				t.Errorf("Drain() progress %d, err %v, want 6, nil", prog, err)
			}
			if diff := cmp.Diff(tt.wantUIDs, uids(callsOf(got))); diff != "" {
				t.Errorf("resumed events (-want +got):\n%s", diff)
			}
		})
	}
	if got := s.Watchers(); got != 0 {
		t.Errorf("Watchers() = %d after closing all, want 0", got)
	}
}

func callsOf(bs []Batch) []*Call {
	var out []*Call
	for _, b := range bs {
		for _, e := range b.Events {
			out = append(out, e.Call)
		}
	}
	return out
}

func TestWatchLaggingCatchesUp(t *testing.T) {
	s := New(Options{HistorySize: 100, WatcherQueue: 2})
	w, _, _, err := s.Watch(WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := int64(1); i <= 10; i++ {
		mustCommit(t, s, Change{Type: EventNew, Call: leg(i, "d", "c", StateRing)})
	}
	if got := s.Lagging(); got != 1 {
		t.Errorf("Lagging() = %d with a full queue, want 1", got)
	}
	got, prog, err := w.Drain(nil)
	if err != nil || prog != 10 {
		t.Errorf("Drain() progress %d, err %v, want 10, nil", prog, err)
	}
	if diff := cmp.Diff([]int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, uids(callsOf(got))); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if got := s.Lagging(); got != 0 {
		t.Errorf("Lagging() = %d after catching up, want 0", got)
	}
	mustCommit(t, s, Change{Type: EventNew, Call: leg(11, "d", "c", StateRing)})
	got, prog, err = w.Drain(nil)
	if err != nil || prog != 11 || len(got) != 1 || got[0].Revision != 11 {
		t.Errorf("Drain() after catch-up = %v, %d, %v, want revision 11 only", got, prog, err)
	}
}

func TestWatchLaggingCompacted(t *testing.T) {
	s := New(Options{HistorySize: 3, WatcherQueue: 1})
	var evicted []error
	w, _, _, err := s.Watch(WatchRequest{Evicted: func(err error) { evicted = append(evicted, err) }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Revision 1 is queued, 2 overflows the queue (the watcher needs 2
	// next), and commit 5 pushes revision 2 out of the 3 retained: the
	// store ends the watcher then, without waiting for a Drain.
	for i := int64(1); i <= 10; i++ {
		mustCommit(t, s, Change{Type: EventNew, Call: leg(i, "d", "c", StateRing)})
		if i == 5 && s.Watchers() != 0 {
			t.Fatalf("after commit 5: Watchers() = %d, want 0: the history passed the watcher", s.Watchers())
		}
	}
	var ce *CompactedError
	if len(evicted) != 1 || !errors.As(evicted[0], &ce) || ce.Oldest != 2 {
		t.Fatalf("Evicted hook got %v, want one *CompactedError{Oldest: 2}", evicted)
	}
	got, prog, err := w.Drain(nil)
	if !errors.As(err, &ce) || ce.Oldest != 2 {
		t.Fatalf("Drain() error = %v, want *CompactedError{Oldest: 2}", err)
	}
	if len(got) != 0 || prog != 0 {
		t.Errorf("Drain() = %d batches, progress %d, want none (the queued one is useless now), progress 0 (nothing handed out)", len(got), prog)
	}
	if s.Watchers() != 0 || s.Lagging() != 0 || len(s.laggers) != 0 {
		t.Errorf("Watchers() = %d, Lagging() = %d, laggers %d after compaction, want 0, 0, 0", s.Watchers(), s.Lagging(), len(s.laggers))
	}
	got, _, err = w.Drain(nil)
	if len(got) != 0 || !errors.As(err, &ce) {
		t.Errorf("second Drain() = %v, %v, want nothing and the same error", got, err)
	}
}

// A consumer that does Drain finds out itself when the history passed it
// between two commits' checks (here: a resumed watcher that starts out
// lagging, then drains once, partially): no batch comes with the error.
func TestWatchDrainCompactedDropsBatches(t *testing.T) {
	s := New(Options{HistorySize: 4, WatcherQueue: 1})
	for i := int64(1); i <= 3; i++ {
		mustCommit(t, s, Change{Type: EventNew, Call: leg(i, "d", "c", StateRing)})
	}
	w, _, _, err := s.Watch(WatchRequest{Resume: true, Epoch: s.Epoch(), Revision: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	mustCommit(t, s, Change{Type: EventNew, Call: leg(4, "d", "c", StateRing)})
	if s.Watchers() != 1 {
		t.Fatalf("Watchers() = %d, want 1: revision 1 is still retained", s.Watchers())
	}
	mustCommit(t, s, Change{Type: EventNew, Call: leg(5, "d", "c", StateRing)})
	got, _, err := w.Drain(nil)
	if !errors.Is(err, ErrCompacted) || len(got) != 0 {
		t.Errorf("Drain() = %d batches, %v, want none and ErrCompacted", len(got), err)
	}
}

// Many lagging watchers at different positions: each is ended exactly
// when the history passes it, those that caught up never are, and the
// heap never holds a watcher twice.
func TestEvictPassedManyLaggers(t *testing.T) {
	const history = 20
	s := New(Options{HistorySize: history, WatcherQueue: 1})
	var ws []*Watcher
	for range 30 {
		w, _, _, err := s.Watch(WatchRequest{})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		ws = append(ws, w)
		// Two commits per watcher: the second overflows its queue, so
		// watcher i lags needing revision 2i+2 (counting from 0).
		for range 2 {
			mustCommit(t, s, Change{Type: EventNew, Call: leg(s.NewUID(), "d", "c", StateRing)})
		}
		// Watchers 0, 3, 6, ... keep up.
		for j, w := range ws {
			if j%3 == 0 {
				for lagging := true; lagging; {
					if _, _, err := w.Drain(nil); err != nil {
						t.Fatalf("watcher %d: %v", j, err)
					}
					w.mu.Lock()
					lagging = w.lagging
					w.mu.Unlock()
				}
			}
		}
	}
	oldest := s.OldestRevision()
	for j, w := range ws {
		w.mu.Lock()
		ended := w.err != nil
		w.mu.Unlock()
		wantEnded := j%3 != 0 && int64(2*j+2) <= oldest
		if ended != wantEnded {
			t.Errorf("watcher %d (needs %d, oldest %d): ended %v, want %v", j, 2*j+2, oldest, ended, wantEnded)
		}
	}
	seen := map[*Watcher]bool{}
	for i, w := range s.laggers {
		if seen[w] || int(w.lagIdx) != i {
			t.Errorf("laggers[%d]: duplicate or wrong index %d", i, w.lagIdx)
		}
		seen[w] = true
	}
}

func TestStoreClose(t *testing.T) {
	s := New(Options{})
	w, _, _, err := s.Watch(WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	mustCommit(t, s, Change{Type: EventNew, Call: leg(1, "d", "c", StateRing)})
	s.Close()
	<-w.Ready()
	got, prog, err := w.Drain(nil)
	if !errors.Is(err, ErrClosed) || prog != 1 || len(got) != 1 {
		t.Errorf("Drain() = %d batches, %d, %v, want 1, 1, ErrClosed", len(got), prog, err)
	}
	if _, _, _, err := s.Watch(WatchRequest{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Watch() after Close = %v, want ErrClosed", err)
	}
	if _, err := s.Commit(Change{Type: EventNew, Call: leg(2, "d", "c", StateRing)}); err != nil {
		t.Errorf("Commit() after Close = %v, want nil", err)
	}
	w.Close()
	if s.Watchers() != 0 {
		t.Errorf("Watchers() = %d, want 0", s.Watchers())
	}
}

func TestWatcherCloseIdempotent(t *testing.T) {
	s := New(Options{})
	w, _, _, err := s.Watch(WatchRequest{Filter: Filter{Devices: []string{"a", "b"}, Companies: []string{"x"}}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Watchers() != 1 {
		t.Errorf("Watchers() = %d, want 1", s.Watchers())
	}
	w.Close()
	w.Close()
	if s.Watchers() != 0 || len(s.wDev) != 0 {
		t.Errorf("Watchers() = %d, device index %v after Close, want empty", s.Watchers(), s.wDev)
	}
	if _, _, err := w.Drain(nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Drain() after Close = %v, want ErrClosed", err)
	}
}

func TestStalledWatcherNeverBlocksCommits(t *testing.T) {
	s := New(Options{HistorySize: 50, WatcherQueue: 4})
	w, _, _, err := s.Watch(WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := int64(1); i <= 10000; i++ {
			mustCommit(t, s, Change{Type: EventNew, Call: leg(i, "d", "c", StateDead)})
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("commits blocked behind a stalled watcher")
	}
	if n := len(w.queue); n > 4 {
		t.Errorf("stalled watcher queued %d batches, want <= 4", n)
	}
}

func TestFanoutVisitsOnlyIndexedWatchers(t *testing.T) {
	s := New(Options{})
	byUID, _, _, _ := s.Watch(WatchRequest{Filter: Filter{UIDs: []int64{7}, Devices: []string{"SIP/1"}}})
	byDev, _, _, _ := s.Watch(WatchRequest{Filter: Filter{Devices: []string{"SIP/2"}}})
	byComp, _, _, _ := s.Watch(WatchRequest{Filter: Filter{Companies: []string{"other"}}})
	broad, _, _, _ := s.Watch(WatchRequest{Filter: Filter{States: []State{StateUp}}})
	defer func() {
		for _, w := range []*Watcher{byUID, byDev, byComp, broad} {
			w.Close()
		}
	}()
	mustCommit(t, s, Change{Type: EventNew, Call: leg(1, "SIP/9", "acme", StateRing)})
	s.mu.RLock()
	visited := map[string]bool{"uid": byUID.seenChange != 0, "device": byDev.seenChange != 0, "company": byComp.seenChange != 0, "broad": broad.seenChange != 0}
	s.mu.RUnlock()
	want := map[string]bool{"uid": false, "device": false, "company": false, "broad": true}
	if diff := cmp.Diff(want, visited); diff != "" {
		t.Errorf("watchers visited for an event on another uid/device/company (-want +got):\n%s", diff)
	}
	// LEFT needs the old value's device: moving a leg off SIP/2 reaches byDev.
	mustCommit(t, s, Change{Type: EventNew, Call: leg(2, "SIP/2", "acme", StateRing)})
	mustCommit(t, s, Change{Type: EventTransfer, Call: leg(2, "SIP/3", "acme", StateRing)})
	got, _, err := byDev.Drain(nil)
	want2 := []ev{{2, EventNew, ViewEntered, 2, StateRing, 0}, {3, EventTransfer, ViewLeft, 2, StateRing, 0}}
	if diff := cmp.Diff(want2, flatten(got)); err != nil || diff != "" {
		t.Errorf("device watcher events (-want +got):\n%s (err %v)", diff, err)
	}
}

func TestFanoutManyWatchersManyChanges(t *testing.T) {
	// More watchers than one slab holds, and several changes per commit.
	s := New(Options{})
	var ws []*Watcher
	for i := range 40 {
		f := Filter{}
		if i%2 == 1 {
			f.Devices = []string{"SIP/1"}
		}
		w, _, _, err := s.Watch(WatchRequest{Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		ws = append(ws, w)
	}
	mustCommit(t, s,
		Change{Type: EventNew, Call: leg(1, "SIP/1", "acme", StateRing)},
		Change{Type: EventNew, Call: leg(2, "SIP/2", "acme", StateRing)},
		Change{Type: EventUpdate, Call: leg(1, "SIP/1", "acme", StateUp)},
	)
	for i, w := range ws {
		got, _, err := w.Drain(nil)
		want := []ev{{1, EventNew, ViewEntered, 1, StateRing, 0}, {1, EventNew, ViewEntered, 2, StateRing, 1}, {1, EventUpdate, ViewStayed, 1, StateUp, 2}}
		if i%2 == 1 {
			want = []ev{want[0], want[2]}
		}
		if diff := cmp.Diff(want, flatten(got)); err != nil || diff != "" {
			t.Errorf("watcher %d (-want +got):\n%s (err %v)", i, diff, err)
		}
		if len(got) == 1 && cap(got[0].Events) != len(got[0].Events) {
			t.Errorf("watcher %d: events window has spare capacity %d > %d: appending would clobber another watcher", i, cap(got[0].Events), len(got[0].Events))
		}
	}
}

func TestStalledWatcherPinsOnlyItsOwnEvents(t *testing.T) {
	// A watcher that stops draining must not keep the other watchers'
	// events alive: once it is behind, its windows come from its own slab,
	// never from a slab shared with the watchers that keep up.
	s := New(Options{})
	stalled, _, _, err := s.Watch(WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	var live []*Watcher
	for range slabEvents - 1 {
		w, _, _, err := s.Watch(WatchRequest{})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		live = append(live, w)
	}
	const commits = 40
	// Every slab the store's shared windows came from: the store's
	// current slab after each commit (a commit of one change uses at most
	// one, and each is current at the end of some commit).
	type extent struct{ from, to uintptr }
	var shared []extent
	size := unsafe.Sizeof(WatchEvent{})
	for i := range commits {
		rev := mustCommit(t, s, Change{Type: EventNew, Call: leg(int64(i+1), "SIP/1", "acme", StateRing)})
		from := uintptr(unsafe.Pointer(unsafe.SliceData(s.slab)))
		if e := (extent{from, from + uintptr(cap(s.slab))*size}); len(shared) == 0 || shared[len(shared)-1] != e {
			shared = append(shared, e)
		}
		for _, w := range live {
			got, _, err := w.Drain(nil)
			if err != nil || len(got) != 1 || got[0].Revision != rev {
				t.Fatalf("live watcher at revision %d: %v, %v", rev, got, err)
			}
		}
	}
	got, _, err := stalled.Drain(nil)
	if err != nil || len(got) != commits {
		t.Fatalf("stalled watcher: %d batches, want %d (err %v)", len(got), commits, err)
	}
	for _, b := range got[1:] { // the first batch was cut before it fell behind
		at := uintptr(unsafe.Pointer(&b.Events[0]))
		for _, e := range shared {
			if at >= e.from && at < e.to {
				t.Fatalf("revision %d: the stalled watcher's window (%#x) is in a shared slab [%#x, %#x)", b.Revision, at, e.from, e.to)
			}
		}
	}
}

// TestWatchQueueArrayKeptWhileBehind: a watcher that stays a few hundred
// batches behind keeps its queue array from one Drain to the next (so
// queueing for it allocates nothing), and lets it go once it has caught up
// and stays so for queueSmallTakes Drains.
func TestWatchQueueArrayKeptWhileBehind(t *testing.T) {
	s := New(Options{})
	w, _, _, err := s.Watch(WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	uid := int64(0)
	commitN := func(n int) {
		for range n {
			uid++
			mustCommit(t, s, Change{Type: EventNew, Call: leg(uid, "d", "c", StateRing)})
		}
	}
	queueCap := func() int {
		w.mu.Lock()
		defer w.mu.Unlock()
		return cap(w.queue)
	}
	var dst []Batch
	drain := func(want int) {
		t.Helper()
		var err error
		if dst, _, err = w.Drain(dst[:0]); err != nil || len(dst) != want {
			t.Fatalf("Drain() = %d batches, %v, want %d, nil", len(dst), err, want)
		}
	}

	commitN(queueKeep + 100) // behind by more than queueKeep batches
	drain(queueKeep + 100)
	grown := queueCap()
	if grown <= queueKeep {
		t.Fatalf("queue array of %d batches after %d queued", grown, queueKeep+100)
	}
	commitN(queueKeep + 100)
	drain(queueKeep + 100)
	if got := queueCap(); got != grown {
		t.Errorf("queue array of %d batches after the second backlog, want the first one's %d kept", got, grown)
	}

	// Caught up: a few small Drains keep it, queueSmallTakes of them let
	// it go.
	for i := range queueSmallTakes {
		if got := queueCap(); got != grown {
			t.Fatalf("queue array of %d batches after %d small Drains, want %d kept", got, i, grown)
		}
		commitN(1)
		drain(1)
	}
	if got := queueCap(); got != 0 {
		t.Errorf("queue array of %d batches after %d small Drains, want it let go", got, queueSmallTakes)
	}
}

// TestDrainProgressNeverGoesBack: a commit fans out before it publishes
// its revision, so a Drain can take a batch newer than the store's
// revision; a later Drain that finds nothing must not report progress
// below that batch (a progress frame made from it would send a resuming
// client the batch again).
func TestDrainProgressNeverGoesBack(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	w, _, start, err := s.Watch(WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// The fan-out of revision start+1, its revision not yet published.
	next := start + 1
	w.push(next, []WatchEvent{{Type: EventNew, Call: &Call{UID: 1}}})
	got, progress, err := w.Drain(nil)
	if err != nil || len(got) != 1 || got[0].Revision != next || progress != next {
		t.Fatalf("first Drain: %d batches, progress %d, err %v; want the batch of r%d and progress %d", len(got), progress, err, next, next)
	}
	if _, progress, err = w.Drain(nil); err != nil || progress < next {
		t.Errorf("second Drain: progress %d, err %v; want at least %d (r%d was handed out)", progress, err, next, next)
	}
}

// TestWatcherSize guards an idle watch's memory: every open watch holds a
// Watcher, its matcher inside, in the 288-byte size class. Over 288 it
// takes the 320-byte class, where opening a stream also allocates and
// drops grpc's header fields: the holes those leave next to the watchers
// cost more than the 32 bytes. Keep per-watcher state that few watchers
// need elsewhere.
func TestWatcherSize(t *testing.T) {
	if got := unsafe.Sizeof(Watcher{}); got > 288 {
		t.Errorf("Watcher is %d bytes, want at most 288", got)
	}
}

func notX(c *Call) bool { return c.DeviceCompany != "x" }

// TestFanoutSharesWindowsOfOneView: watchers of one view next to each
// other in the fan-out (no uid, device or company filter, the same states
// and types, one visibility func value) share a window per commit,
// written once: the caught-up ones one of the shared slab, the
// backlogged ones one of a private slab (never the shared slab's: what a
// stalled watcher pins stays its own events); watchers of other views get
// their own; and every watcher gets exactly its events either way.
func TestFanoutSharesWindowsOfOneView(t *testing.T) {
	s := New(Options{})
	company := "x"
	closure := func(c *Call) bool { return c.DeviceCompany != company } // notX's behaviour, another func value
	reqs := []WatchRequest{
		{Visible: notX},    // 0: hosts the run 0–2
		{Visible: notX},    // 1: shares 0's; behind at revision 2: a private window
		{Visible: notX},    // 2: as 1, sharing 1's private window at revision 2
		{Visible: closure}, // 3: another func value: another run
		{Visible: closure}, // 4: shares 3's
		{Visible: notX, Filter: Filter{States: []State{StateUp}}}, // 5: another view
	}
	ws := make([]*Watcher, len(reqs))
	for i, r := range reqs {
		w, _, _, err := s.Watch(r)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		ws[i] = w
	}
	a, b := leg(1, "SIP/1", "default", StateRing), leg(2, "SIP/2", "x", StateRing)
	commits := [][]Change{
		{{Type: EventNew, Call: a}, {Type: EventNew, Call: b}},
		{{Type: EventUpdate, Call: with(a, func(c *Call) { c.State = StateUp })}, {Type: EventUpdate, Call: with(b, func(c *Call) { c.State = StateUp })}},
		{{Type: EventUpdate, Call: with(a, func(c *Call) { c.State = StateHold })}},
	}
	got := make([][]Batch, len(ws))
	for i, chs := range commits {
		mustCommit(t, s, chs...)
		for j, w := range ws {
			if (j == 1 || j == 2) && i == 0 {
				continue // backlogged at the second commit
			}
			bs, _, err := w.Drain(nil)
			if err != nil {
				t.Fatal(err)
			}
			got[j] = append(got[j], bs...)
		}
	}
	want := map[int][]ev{
		0: {{1, EventNew, ViewEntered, 1, StateRing, 0}, {2, EventUpdate, ViewStayed, 1, StateUp, 0}, {3, EventUpdate, ViewStayed, 1, StateHold, 0}},
		5: {{2, EventUpdate, ViewEntered, 1, StateUp, 0}, {3, EventUpdate, ViewLeft, 1, StateHold, 0}},
	}
	want[1], want[2], want[3], want[4] = want[0], want[0], want[0], want[0]
	for j := range ws {
		if diff := cmp.Diff(want[j], flatten(got[j])); diff != "" {
			t.Errorf("watcher %d (-want +got):\n%s", j, diff)
		}
	}
	same := func(x, y int, r int) bool { return &got[x][r].Events[0] == &got[y][r].Events[0] }
	for r := range got[0] {
		if !same(1, 2, r) {
			t.Errorf("revision %d: watchers 1 and 2 (one view, both caught up or both behind) got windows of their own, want one shared", r+1)
		}
		if behind := r == 1; same(0, 1, r) == behind {
			t.Errorf("revision %d: watcher 1 (behind: %v) shares watcher 0's window (caught up): %v", r+1, behind, !behind)
		}
	}
	for r := range got[3] {
		if !same(3, 4, r) {
			t.Errorf("revision %d: watchers 3 and 4 got windows of their own, want one shared", r+1)
		}
		if same(0, 3, r) {
			t.Errorf("revision %d: watchers of two func values share a window", r+1)
		}
	}
	if same(0, 5, 0) || same(0, 5, 1) {
		t.Errorf("watchers of two views share a window")
	}
}

func TestSameFunc(t *testing.T) {
	company := "acme"
	closure := func(c *Call) bool { return c.DeviceCompany != company }
	other := func(c *Call) bool { return c.DeviceCompany != company }
	for _, tt := range []struct {
		name string
		f, g func(*Call) bool
		want bool
	}{
		{"one function", notX, notX, true},
		{"one closure value", closure, closure, true},
		{"two closures", closure, other, false},
		{"function and closure", notX, closure, false},
		{"both nil", nil, nil, true},
		{"nil and not", nil, notX, false},
	} {
		if got := sameFunc(tt.f, tt.g); got != tt.want {
			t.Errorf("%s: sameFunc = %v, want %v", tt.name, got, tt.want)
		}
	}
}
