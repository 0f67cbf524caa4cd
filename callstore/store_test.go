package callstore

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func leg(uid int64, dev, comp string, st State) *Call {
	return &Call{UID: uid, ID: "id", DeviceRef: &DeviceRef{Device: dev, DeviceCompany: comp}, State: st}
}

func with(c *Call, f func(*Call)) *Call {
	c2 := *c
	f(&c2)
	return &c2
}

func uids(cs []*Call) []int64 {
	out := []int64{}
	for _, c := range cs {
		out = append(out, c.UID)
	}
	return out
}

func mustCommit(t *testing.T, s *Store, chs ...Change) int64 {
	t.Helper()
	rev, err := s.Commit(chs...)
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return rev
}

func TestNewDefaults(t *testing.T) {
	s := New(Options{})
	if s.Epoch() == 0 {
		t.Errorf("Epoch() = 0, want non-zero")
	}
	if got, want := s.HistorySize(), DefaultHistorySize; got != want {
		t.Errorf("HistorySize() = %d, want %d", got, want)
	}
	if got := s.Revision(); got != 0 {
		t.Errorf("Revision() = %d, want 0", got)
	}
	if got := s.OldestRevision(); got != 0 {
		t.Errorf("OldestRevision() = %d, want 0", got)
	}
	if a, b := s.NewUID(), s.NewUID(); a != 1 || b != 2 {
		t.Errorf("NewUID() = %d, %d, want 1, 2", a, b)
	}
	if New(Options{}).Epoch() == s.Epoch() {
		t.Errorf("two stores share epoch %d", s.Epoch())
	}
}

func TestCommitErrors(t *testing.T) {
	s := New(Options{})
	mustCommit(t, s, Change{Type: EventNew, Call: leg(1, "SIP/1", "acme", StateRing)})
	tests := []struct {
		name    string
		changes []Change
	}{
		{"empty", nil},
		{"nil call", []Change{{Type: EventNew}}},
		{"zero uid", []Change{{Type: EventNew, Call: leg(0, "d", "c", StateRing)}}},
		{"negative uid", []Change{{Type: EventNew, Call: leg(-3, "d", "c", StateRing)}}},
		{"new of live uid", []Change{{Type: EventNew, Call: leg(1, "d", "c", StateRing)}}},
		{"update of unknown uid", []Change{{Type: EventUpdate, Call: leg(2, "d", "c", StateUp)}}},
		{"transfer of unknown uid", []Change{{Type: EventTransfer, Call: leg(2, "d", "c", StateUp)}}},
		{"unknown type", []Change{{Type: EventType(9), Call: leg(1, "d", "c", StateUp)}}},
		{"unspecified type", []Change{{Type: EventUnspecified, Call: leg(1, "d", "c", StateUp)}}},
		{"unspecified state", []Change{{Type: EventUpdate, Call: leg(1, "d", "c", StateUnspecified)}}},
		{"no device", []Change{{Type: EventNew, Call: &Call{UID: 7, State: StateRing}}}},
		{"update after dead in same commit", []Change{
			{Type: EventUpdate, Call: leg(1, "d", "c", StateDead)},
			{Type: EventUpdate, Call: leg(1, "d", "c", StateUp)},
		}},
		{"second change invalid", []Change{
			{Type: EventNew, Call: leg(5, "d", "c", StateRing)},
			{Type: EventUpdate, Call: leg(6, "d", "c", StateUp)},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rev, err := s.Commit(tt.changes...)
			if !errors.Is(err, ErrInvalidChange) {
				t.Errorf("Commit() = %d, %v, want ErrInvalidChange", rev, err)
			}
			if got := s.Revision(); got != 1 {
				t.Errorf("Revision() = %d after failed commit, want 1", got)
			}
			if got := s.Len(); got != 1 {
				t.Errorf("Len() = %d after failed commit, want 1", got)
			}
		})
	}
}

func TestCommitAndRead(t *testing.T) {
	s := New(Options{})
	a := leg(1, "SIP/1", "acme", StateRing)
	b := leg(2, "SIP/2", "acme", StateDial)
	c := leg(3, "SIP/1", "default", StateRing)
	if got := mustCommit(t, s, Change{Type: EventNew, Call: b}, Change{Type: EventNew, Call: a}); got != 1 {
		t.Fatalf("rev = %d, want 1", got)
	}
	mustCommit(t, s, Change{Type: EventNew, Call: c})
	a2 := with(a, func(c *Call) { c.State = StateUp })
	mustCommit(t, s, Change{Type: EventUpdate, Call: a2})
	if got, ok := s.Get(1); !ok || got != a2 {
		t.Errorf("Get(1) = %v, %v, want the updated value", got, ok)
	}
	if diff := cmp.Diff([]int64{1, 3}, uids(s.ByDevice("SIP/1"))); diff != "" {
		t.Errorf("ByDevice(SIP/1) uids (-want +got):\n%s", diff)
	}
	// Move leg 3 to another device, then kill leg 2 within one commit.
	c2 := with(c, func(c *Call) { c.DeviceRef = &DeviceRef{Device: "SIP/2", DeviceCompany: c.DeviceCompany} })
	b2 := with(b, func(c *Call) { c.State = StateDead })
	if got := mustCommit(t, s, Change{Type: EventTransfer, Call: c2, Xfer: []XferLeg{{UID: 3}}}, Change{Type: EventUpdate, Call: b2}); got != 4 {
		t.Errorf("rev = %d, want 4", got)
	}
	if _, ok := s.Get(2); ok {
		t.Errorf("Get(2) found a dead leg")
	}
	if got := s.Len(); got != 2 {
		t.Errorf("Len() = %d, want 2", got)
	}
	if diff := cmp.Diff([]int64{1}, uids(s.ByDevice("SIP/1"))); diff != "" {
		t.Errorf("ByDevice(SIP/1) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int64{3}, uids(s.ByDevice("SIP/2"))); diff != "" {
		t.Errorf("ByDevice(SIP/2) (-want +got):\n%s", diff)
	}
	// A leg born dead is never live.
	mustCommit(t, s, Change{Type: EventNew, Call: leg(9, "SIP/9", "acme", StateDead)})
	if _, ok := s.Get(9); ok {
		t.Errorf("Get(9) found a leg committed dead")
	}
}

func TestList(t *testing.T) {
	s := New(Options{})
	for i := int64(1); i <= 10; i++ {
		dev := "SIP/odd"
		if i%2 == 0 {
			dev = "SIP/even"
		}
		comp := "acme"
		if i > 5 {
			comp = "default"
		}
		mustCommit(t, s, Change{Type: EventNew, Call: leg(i, dev, comp, StateRing)})
	}
	mustCommit(t, s, Change{Type: EventUpdate, Call: leg(4, "SIP/even", "acme", StateDead)})
	mustCommit(t, s, Change{Type: EventUpdate, Call: leg(7, "SIP/odd", "default", StateUp)})
	tests := []struct {
		name    string
		f       *Filter
		visible func(*Call) bool
		after   int64
		limit   int
		want    []int64
	}{
		{"all", nil, nil, 0, 0, []int64{1, 2, 3, 5, 6, 7, 8, 9, 10}},
		{"page 1", nil, nil, 0, 4, []int64{1, 2, 3, 5}},
		{"page 2", nil, nil, 5, 4, []int64{6, 7, 8, 9}},
		{"after dead uid", nil, nil, 4, 2, []int64{5, 6}},
		{"after last", nil, nil, 10, 0, []int64{}},
		{"device", &Filter{Devices: []string{"SIP/even"}}, nil, 0, 0, []int64{2, 6, 8, 10}},
		{"device page", &Filter{Devices: []string{"SIP/even", "SIP/odd"}}, nil, 2, 3, []int64{3, 5, 6}},
		{"company and state", &Filter{Companies: []string{"default"}, States: []State{StateUp}}, nil, 0, 0, []int64{7}},
		{"uids", &Filter{UIDs: []int64{9, 4, 1, 9}}, nil, 0, 0, []int64{1, 9}},
		{"uids after", &Filter{UIDs: []int64{9, 4, 1}}, nil, 1, 0, []int64{9}},
		{"types ignored", &Filter{Types: []EventType{EventNew}}, nil, 8, 0, []int64{9, 10}},
		{"visible", nil, func(c *Call) bool { return c.DeviceCompany == "acme" }, 0, 0, []int64{1, 2, 3, 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, rev := s.List(tt.f, tt.visible, tt.after, tt.limit)
			if rev != 12 {
				t.Errorf("rev = %d, want 12", rev)
			}
			if diff := cmp.Diff(tt.want, uids(got)); diff != "" {
				t.Errorf("List uids (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFilterMatches(t *testing.T) {
	c := leg(7, "SIP/1", "acme", StateUp)
	tests := []struct {
		name string
		f    *Filter
		want bool
	}{
		{"nil", nil, true},
		{"zero", &Filter{}, true},
		{"uid hit", &Filter{UIDs: []int64{3, 7}}, true},
		{"uid miss", &Filter{UIDs: []int64{3}}, false},
		{"device hit", &Filter{Devices: []string{"SIP/1"}}, true},
		{"device miss", &Filter{Devices: []string{"SIP/2"}}, false},
		{"company hit", &Filter{Companies: []string{"x", "acme"}}, true},
		{"company miss", &Filter{Companies: []string{"default"}}, false},
		{"state hit", &Filter{States: []State{StateUp}}, true},
		{"state miss", &Filter{States: []State{StateRing, StateHold}}, false},
		{"and: one field misses", &Filter{Devices: []string{"SIP/1"}, States: []State{StateRing}}, false},
		{"types ignored", &Filter{Types: []EventType{EventNew}}, true},
	}
	for _, tt := range tests {
		if got := tt.f.Matches(c); got != tt.want {
			t.Errorf("%s: Matches() = %v, want %v", tt.name, got, tt.want)
		}
		if m := compile(tt.f, nil); m.match(c) != tt.want {
			t.Errorf("%s: compiled match() = %v, want %v", tt.name, !tt.want, tt.want)
		}
	}
}

// TestSetLargeAndSmall: a compiled filter field answers the same whether
// it is scanned (small) or searched (over smallSet members), duplicates
// and order of the filter notwithstanding, and its keys are its distinct
// members in ascending order.
func TestSetLargeAndSmall(t *testing.T) {
	for _, n := range []int{1, smallSet, smallSet + 1, 3 * smallSet} {
		var in []int64
		for i := n; i > 0; i-- {
			in = append(in, int64(2*i), int64(2*i)) // even numbers, each twice, descending
		}
		s := newSet(in)
		for k := int64(0); k <= int64(2*n+1); k++ {
			if want := k > 0 && k%2 == 0; s.has(k) != want {
				t.Errorf("n=%d: has(%d) = %v, want %v", n, k, !want, want)
			}
		}
		keys := s.keys()
		ascending := len(keys) == n
		for i := 1; i < len(keys); i++ {
			ascending = ascending && keys[i-1] < keys[i]
		}
		if !ascending {
			t.Errorf("n=%d: keys %v, want %d distinct members in ascending order", n, keys, n)
		}
	}
}
