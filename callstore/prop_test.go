package callstore

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"
)

// The property tests check every watcher against a model: the committed
// log, filtered by the watcher's predicate with the contract's view rules,
// computed here independently of the store's fan-out and replay.

var (
	propDevices   = []string{"SIP/1", "SIP/2", "SIP/3", "SIP/4"}
	propCompanies = []string{"acme", "default", "x"}
	propStates    = []State{StateDown, StateDial, StateRing, StateUp, StateHold, StatePark}
	propVisible   = []func(*Call) bool{
		nil,
		func(c *Call) bool { return c.DeviceCompany != "x" },
		func(c *Call) bool { return c.UID%2 == 0 },
	}
)

type logChange struct {
	typ        EventType
	call, prev *Call
}

// modelWatcher is what the test knows of one watcher.
type modelWatcher struct {
	w        *Watcher
	f        Filter
	vis      func(*Call) bool
	start    int64
	got      []Batch
	progress int64
	pending  int  // expected batches queued since the last Drain
	mayLag   bool // the watcher may legitimately fall behind the history
	ended    error
	evicted  error // the store ended it on its own (WatchRequest.Evicted)
}

type propModel struct {
	s     *Store
	hsize int
	qsize int
	live  map[int64]*Call
	log   [][]logChange // log[r-1] is revision r
	ws    []*modelWatcher
	// tokens of ended watchers, to resume from
	tokens []int64
}

func (m *propModel) oldest() int64 { return max(0, int64(len(m.log)-m.hsize)) }

func inView(f *Filter, vis func(*Call) bool, c *Call) bool {
	return c != nil && f.Matches(c) && (vis == nil || vis(c))
}

// expected returns the events of revision r for a watcher.
func expected(f *Filter, vis func(*Call) bool, r int64, chs []logChange) []ev {
	var out []ev
	for i, ch := range chs {
		if len(f.Types) > 0 && !slices.Contains(f.Types, ch.typ) {
			continue
		}
		was, is := inView(f, vis, ch.prev), inView(f, vis, ch.call)
		var v ViewChange
		switch {
		case was && is:
			v = ViewStayed
		case is:
			v = ViewEntered
		case was:
			v = ViewLeft
		default:
			continue
		}
		out = append(out, ev{r, ch.typ, v, ch.call.UID, ch.call.State, i})
	}
	return out
}

func (m *propModel) expectedRange(mw *modelWatcher, from, to int64) []ev {
	out := []ev{}
	for r := from; r <= to; r++ {
		out = append(out, expected(&mw.f, mw.vis, r, m.log[r-1])...)
	}
	return out
}

func genCall(t *rapid.T, uid int64, label string) *Call {
	return &Call{
		UID:       uid,
		ID:        fmt.Sprint("pbx-", uid),
		DeviceRef: &DeviceRef{Device: rapid.SampledFrom(propDevices).Draw(t, label+"device"), DeviceCompany: rapid.SampledFrom(propCompanies).Draw(t, label+"company")},
		State:     rapid.SampledFrom(propStates).Draw(t, label+"state"),
	}
}

func (m *propModel) commit(t *rapid.T) {
	n := rapid.IntRange(1, 3).Draw(t, "legs")
	overlay := map[int64]*Call{}
	cur := func(uid int64) *Call {
		if c, ok := overlay[uid]; ok {
			return c
		}
		return m.live[uid]
	}
	var chs []Change
	var lc []logChange
	for i := range n {
		var liveUIDs []int64
		for uid := range m.live {
			if cur(uid) != nil {
				liveUIDs = append(liveUIDs, uid)
			}
		}
		for uid, c := range overlay {
			if c != nil && m.live[uid] == nil {
				liveUIDs = append(liveUIDs, uid)
			}
		}
		slices.Sort(liveUIDs)
		kind := rapid.IntRange(0, 3).Draw(t, "kind")
		if len(liveUIDs) == 0 {
			kind = 0
		}
		var ch Change
		if kind == 0 {
			c := genCall(t, m.s.NewUID(), "new")
			if rapid.IntRange(0, 9).Draw(t, "bornDead") == 0 {
				c.State = StateDead
			}
			ch = Change{Type: EventNew, Call: c}
		} else {
			uid := rapid.SampledFrom(liveUIDs).Draw(t, "uid")
			c := *cur(uid)
			switch kind {
			case 1:
				c.State = rapid.SampledFrom(propStates).Draw(t, "state")
				ch = Change{Type: EventUpdate, Call: &c}
			case 2:
				c.DeviceRef = &DeviceRef{ // a DeviceRef is shared: replace it, never write through it
					Device:        rapid.SampledFrom(propDevices).Draw(t, "xdevice"),
					DeviceCompany: rapid.SampledFrom(propCompanies).Draw(t, "xcompany"),
				}
				ch = Change{Type: EventTransfer, Call: &c, Xfer: []XferLeg{{UID: uid, ID: c.ID}}}
			default:
				c.State = StateDead
				ch = Change{Type: EventUpdate, Call: &c}
			}
		}
		chs = append(chs, ch)
		lc = append(lc, logChange{ch.Type, ch.Call, cur(ch.Call.UID)})
		if ch.Call.Dead() {
			overlay[ch.Call.UID] = nil
		} else {
			overlay[ch.Call.UID] = ch.Call
		}
		_ = i
	}
	rev, err := m.s.Commit(chs...)
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if want := int64(len(m.log) + 1); rev != want {
		t.Fatalf("Commit revision = %d, want %d", rev, want)
	}
	m.log = append(m.log, lc)
	for uid, c := range overlay {
		if c == nil {
			delete(m.live, uid)
		} else {
			m.live[uid] = c
		}
	}
	for _, mw := range m.ws {
		if mw.ended == nil && len(expected(&mw.f, mw.vis, rev, lc)) > 0 {
			if mw.pending++; mw.pending > m.qsize {
				mw.mayLag = true
			}
		}
	}
}

func (m *propModel) invalidCommit(t *rapid.T) {
	before := m.s.Revision()
	_, err := m.s.Commit(
		Change{Type: EventNew, Call: &Call{UID: m.s.NewUID(), DeviceRef: &DeviceRef{Device: "SIP/1"}, State: StateRing}},
		Change{Type: EventUpdate, Call: &Call{UID: 1 << 40, State: StateUp}},
	)
	if !errors.Is(err, ErrInvalidChange) {
		t.Fatalf("invalid Commit = %v, want ErrInvalidChange", err)
	}
	if got := m.s.Revision(); got != before {
		t.Fatalf("Revision() = %d after a rejected commit, want %d", got, before)
	}
}

func genFilter(t *rapid.T) Filter {
	var f Filter
	if rapid.Bool().Draw(t, "hasUIDs") {
		f.UIDs = rapid.SliceOfN(rapid.Int64Range(1, 30), 1, 3).Draw(t, "uids")
	}
	if rapid.Bool().Draw(t, "hasDevices") {
		f.Devices = rapid.SliceOfN(rapid.SampledFrom(propDevices), 1, 2).Draw(t, "devices")
	}
	if rapid.Bool().Draw(t, "hasCompanies") {
		f.Companies = rapid.SliceOfN(rapid.SampledFrom(propCompanies), 1, 2).Draw(t, "companies")
	}
	if rapid.Bool().Draw(t, "hasStates") {
		f.States = rapid.SliceOfN(rapid.SampledFrom(append(propStates, StateDead)), 1, 3).Draw(t, "states")
	}
	if rapid.IntRange(0, 3).Draw(t, "hasTypes") == 0 {
		f.Types = rapid.SliceOfN(rapid.SampledFrom([]EventType{EventNew, EventUpdate, EventTransfer}), 1, 2).Draw(t, "types")
	}
	return f
}

func (m *propModel) watch(t *rapid.T) {
	mw := &modelWatcher{f: genFilter(t), vis: propVisible[rapid.IntRange(0, len(propVisible)-1).Draw(t, "visible")]}
	cur := int64(len(m.log))
	req := WatchRequest{Filter: mw.f, Visible: mw.vis, Evicted: func(err error) {
		if mw.evicted != nil || mw.ended != nil {
			t.Fatalf("Evicted called on a watcher already ended (%v, %v)", mw.evicted, mw.ended)
		}
		mw.evicted = err
	}}
	resume := rapid.Bool().Draw(t, "resume")
	if resume {
		req.Resume, req.Epoch = true, m.s.Epoch()
		if len(m.tokens) > 0 && rapid.Bool().Draw(t, "fromToken") {
			req.Revision = rapid.SampledFrom(m.tokens).Draw(t, "token")
		} else {
			req.Revision = rapid.Int64Range(m.oldest(), cur).Draw(t, "resumeRev")
		}
	} else {
		req.Snapshot = rapid.Bool().Draw(t, "snapshot")
	}
	w, snap, start, err := m.s.Watch(req)
	if resume && req.Revision < m.oldest() {
		var ce *CompactedError
		if !errors.As(err, &ce) || ce.Oldest != m.oldest() {
			t.Fatalf("Watch(resume %d) error = %v, want *CompactedError{Oldest: %d}", req.Revision, err, m.oldest())
		}
		return
	}
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	mw.w = w
	if resume {
		mw.start = req.Revision
		mw.mayLag = req.Revision < cur
	} else {
		mw.start = cur
	}
	if start != mw.start {
		t.Fatalf("Watch start = %d, want %d", start, mw.start)
	}
	mw.progress = mw.start
	if req.Snapshot && !resume {
		var want []int64
		for uid, c := range m.live {
			if inView(&mw.f, mw.vis, c) {
				want = append(want, uid)
			}
		}
		slices.Sort(want)
		if diff := cmp.Diff(want, uids(snap), cmp.Comparer(func(a, b []int64) bool { return slices.Equal(a, b) })); len(want)+len(snap) > 0 && diff != "" {
			t.Fatalf("snapshot (-want +got):\n%s", diff)
		}
	}
	m.ws = append(m.ws, mw)
}

func (m *propModel) pick(t *rapid.T) *modelWatcher {
	var live []*modelWatcher
	for _, mw := range m.ws {
		if mw.ended == nil {
			live = append(live, mw)
		}
	}
	if len(live) == 0 {
		t.Skip("no watcher")
	}
	return rapid.SampledFrom(live).Draw(t, "watcher")
}

func (m *propModel) drain(t *rapid.T) {
	mw := m.pick(t)
	n := len(mw.got)
	var err error
	var prog int64
	mw.got, prog, err = mw.w.Drain(mw.got)
	if prog < mw.progress || prog > int64(len(m.log)) {
		t.Fatalf("progress = %d, want in [%d, %d]", prog, mw.progress, len(m.log))
	}
	for i, b := range mw.got[n:] {
		if len(b.Events) == 0 {
			t.Fatalf("empty batch at %d", b.Revision)
		}
		prev := mw.start
		if n+i > 0 {
			prev = mw.got[n+i-1].Revision
		}
		if b.Revision <= prev || b.Revision > prog {
			t.Fatalf("batch revision %d after %d with progress %d", b.Revision, prev, prog)
		}
	}
	mw.progress = prog
	if diff := cmp.Diff(m.expectedRange(mw, mw.start+1, prog), flatten(mw.got)); diff != "" {
		t.Fatalf("watcher events up to %d (-want +got):\n%s", prog, diff)
	}
	if prog == int64(len(m.log)) {
		mw.pending, mw.mayLag = 0, false
	}
	if err != nil {
		var ce *CompactedError
		if !errors.As(err, &ce) {
			t.Fatalf("Drain error = %v, want nil or *CompactedError", err)
		}
		if !mw.mayLag {
			t.Fatalf("compacted a watcher that never overflowed its queue")
		}
		if ce.Oldest > m.oldest() || prog >= ce.Oldest || (mw.evicted == nil && ce.Oldest != m.oldest()) {
			t.Fatalf("CompactedError{Oldest: %d} at progress %d (evicted: %v), want progress < Oldest <= %d", ce.Oldest, prog, mw.evicted, m.oldest())
		}
		if mw.evicted != nil && !errors.Is(err, mw.evicted) && err.Error() != mw.evicted.Error() {
			t.Fatalf("Drain error %v, want the eviction's %v", err, mw.evicted)
		}
		mw.ended = err
		m.tokens = append(m.tokens, prog)
	}
}

func (m *propModel) close(t *rapid.T) {
	mw := m.pick(t)
	mw.w.Close()
	_, prog, err := mw.w.Drain(nil)
	if want := error(ErrClosed); mw.evicted != nil && !errors.Is(err, ErrCompacted) || mw.evicted == nil && !errors.Is(err, want) {
		t.Fatalf("Drain after Close = %v, want ErrClosed, or ErrCompacted once evicted (%v)", err, mw.evicted)
	}
	if prog < mw.progress {
		t.Fatalf("progress after Close = %d, want >= %d", prog, mw.progress)
	}
	mw.ended = err
	m.tokens = append(m.tokens, mw.progress)
}

func (m *propModel) check(t *rapid.T) {
	if got, want := m.s.Len(), len(m.live); got != want {
		t.Fatalf("Len() = %d, want %d", got, want)
	}
	if got, want := m.s.OldestRevision(), m.oldest(); got != want {
		t.Fatalf("OldestRevision() = %d, want %d", got, want)
	}
	n := 0
	for _, mw := range m.ws {
		if mw.evicted != nil && !mw.mayLag {
			t.Fatalf("the store evicted a watcher that never overflowed its queue: %v", mw.evicted)
		}
		if mw.ended == nil && mw.evicted == nil {
			n++
		}
	}
	if got := m.s.Watchers(); got != n {
		t.Fatalf("Watchers() = %d, want %d", got, n)
	}
}

func TestPropertyWatch(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := &propModel{
			hsize: rapid.IntRange(1, 12).Draw(t, "history"),
			qsize: rapid.IntRange(1, 4).Draw(t, "queue"),
			live:  map[int64]*Call{},
		}
		m.s = New(Options{HistorySize: m.hsize, WatcherQueue: m.qsize})
		defer m.s.Close()
		t.Repeat(map[string]func(*rapid.T){
			"commit":        m.commit,
			"commit2":       m.commit,
			"invalidCommit": m.invalidCommit,
			"watch":         m.watch,
			"drain":         m.drain,
			"close":         m.close,
			"":              m.check,
		})
		// Finally, every open watcher drains to the end and has seen exactly
		// its filtered log.
		for _, mw := range m.ws {
			for mw.ended == nil && mw.progress < int64(len(m.log)) {
				before := mw.progress
				m.drainOne(t, mw)
				if mw.ended == nil && mw.progress == before {
					t.Fatalf("Drain makes no progress at %d of %d", before, len(m.log))
				}
			}
		}
		if got := m.s.Lagging(); got != 0 {
			t.Fatalf("Lagging() = %d after every watcher caught up, want 0", got)
		}
	})
}

func (m *propModel) drainOne(t *rapid.T, mw *modelWatcher) {
	saved := m.ws
	m.ws = []*modelWatcher{mw}
	m.drain(t)
	m.ws = saved
}

// TestConcurrentWatchers runs committers and consumers concurrently (for
// the race detector) and checks each consumer's stream against the log
// afterwards: no gap, no duplicate, right views, even across lagging.
func TestConcurrentWatchers(t *testing.T) {
	s := New(Options{HistorySize: 100000, WatcherQueue: 3})
	type logged struct {
		rev int64
		chs []logChange
	}
	var (
		logMu sync.Mutex
		log   []logged
	)
	filters := []Filter{
		{},
		{Devices: []string{"SIP/1"}},
		{Companies: []string{"acme"}, States: []State{StateUp}},
		{UIDs: []int64{3, 5, 8}},
		{Types: []EventType{EventTransfer}},
	}
	type result struct {
		f     Filter
		start int64
		got   []Batch
		prog  int64
	}
	results := make([]*result, len(filters))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i, f := range filters {
		w, _, start, err := s.Watch(WatchRequest{Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		r := &result{f: f, start: start}
		results[i] = r
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.Close()
			for {
				select {
				case <-w.Ready():
				case <-stop:
					var err error
					r.got, r.prog, err = w.Drain(r.got)
					for err == nil && r.prog < s.Revision() {
						r.got, r.prog, err = w.Drain(r.got)
					}
					return
				}
				var err error
				if r.got, r.prog, err = w.Drain(r.got); err != nil {
					t.Errorf("Drain: %v", err)
					return
				}
			}
		}()
	}
	var cwg sync.WaitGroup
	var live sync.Map
	for g := range 2 {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for i := range 3000 {
				uid := int64(g*100 + i%50 + 1)
				c := &Call{UID: uid, DeviceRef: &DeviceRef{Device: propDevices[i%4], DeviceCompany: propCompanies[i%3]}, State: propStates[i%len(propStates)]}
				typ := EventUpdate
				if _, ok := live.Load(uid); !ok {
					typ = EventNew
				} else if i%7 == 0 {
					typ = EventTransfer
				} else if i%11 == 0 {
					c.State = StateDead
				}
				// Commit and log under one lock so the log order is the revision order.
				logMu.Lock()
				prev, _ := s.Get(uid)
				rev, err := s.Commit(Change{Type: typ, Call: c})
				if err != nil {
					logMu.Unlock()
					t.Errorf("Commit: %v", err)
					return
				}
				log = append(log, logged{rev, []logChange{{typ, c, prev}}})
				logMu.Unlock()
				if c.Dead() {
					live.Delete(uid)
				} else {
					live.Store(uid, true)
				}
			}
		}()
	}
	cwg.Wait()
	close(stop)
	wg.Wait()
	for _, r := range results {
		want := []ev{}
		for _, l := range log {
			if l.rev > r.start {
				want = append(want, expected(&r.f, nil, l.rev, l.chs)...)
			}
		}
		if r.prog != s.Revision() {
			t.Errorf("filter %+v: progress %d, want %d", r.f, r.prog, s.Revision())
		}
		if diff := cmp.Diff(want, flatten(r.got)); diff != "" {
			t.Errorf("filter %+v: events (-want +got):\n%s", r.f, diff)
		}
	}
}
