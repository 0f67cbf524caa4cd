package callstore

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
)

// ViewChange says how an event moves a leg relative to a watcher's view
// (its Filter, without Types, and its visibility predicate).
type ViewChange uint8

// The view changes.
const (
	ViewUnspecified ViewChange = iota
	ViewEntered                // the leg was not in the view (or is new) and now is
	ViewStayed                 // the leg was and still is in the view (a dead leg's last event)
	ViewLeft                   // the leg was in the view and no longer is; the event carries the new value
)

var viewNames = [...]string{"unspecified", "entered", "stayed", "left"}

// String returns "entered", "stayed", "left" or "unspecified".
func (v ViewChange) String() string {
	if int(v) < len(viewNames) {
		return viewNames[v]
	}
	return "invalid"
}

// WatchEvent is one change as one watcher sees it.
type WatchEvent struct {
	Type  EventType  // EventNew, EventUpdate or EventTransfer
	View  ViewChange // how the change moves the leg in this watcher's view
	Call  *Call      // the value after the change (shared, immutable)
	Xfer  []XferLeg  // EventTransfer only (shared, immutable)
	Index int        // position of the change within its commit: (revision, Index, View) identifies an encoding
}

// Batch is all the events of one revision for one watcher; a revision is
// never split across batches.
type Batch struct {
	Revision int64        // the commit's revision: a valid resume token once handed out
	Events   []WatchEvent // this watcher's events of the commit, in change order; never empty; may be shared with other watchers: read only
}

// WatchRequest says what to watch and where to start.
type WatchRequest struct {
	Filter   Filter           // what to watch; Types restricts event types
	Visible  func(*Call) bool // visibility predicate (auth), nil = all; applied on top of Filter in the fan-out: must be cheap and safe for concurrent use
	Snapshot bool             // return the matching, visible live legs as of the start revision (ignored with Resume)
	Resume   bool             // resume after (Epoch, Revision): exactly the later events, no snapshot
	Epoch    uint64           // Resume: the token's epoch
	Revision int64            // Resume: the token's revision
	// Evicted, if set, is called once when the store itself ends the
	// watcher because the retained history passed the next revision it
	// needs (err is a *CompactedError). It runs on the committer with the
	// store locked, so it must be quick and must not call the store; it
	// exists so that a consumer blocked elsewhere (on a client that stopped
	// reading) can be interrupted.
	Evicted func(err error)
	// Ready, if set, is the channel the watcher signals (see
	// Watcher.Ready) instead of one of its own: it must have a buffer
	// (capacity 1 is enough; signals are coalesced, never block). A
	// consumer that also has wake-ups of its own signals them on the same
	// channel and waits on that one channel alone: a goroutine parked on
	// one channel holds one sudog, not one per channel. A receive then no
	// longer means that the watcher has something: Drain may return
	// nothing.
	Ready chan struct{}
}

// Watcher receives the events of one watch. One goroutine consumes it:
// wait on Ready, then Drain.
type Watcher struct {
	s       *Store
	ready   chan struct{}
	evicted func(error)
	m       matcher // in the watcher's own allocation: an idle watch is one object, not two

	// Guarded by s.mu (held for writing by the committer).
	seenChange uint64       // last change (s.changeSeq) this watcher was visited for
	touchRev   int64        // last revision this watcher got events in
	pendBuf    []WatchEvent // their window of the store's shared slab, or of own
	pendN      int32        // events for this watcher in the commit being fanned out
	lagIdx     int32        // position in s.laggers, -1 when not there
	lagKey     int64        // s.laggers' key: at most the watcher's next revision
	// own is a backlogged watcher's private slab: its queued windows are
	// carved from it, not from the store's shared slab, so that what it
	// pins is its own events (see fanoutLocked).
	own      []WatchEvent
	ownTotal int // events in its private slabs since its backlog began (see carveOwn)

	// backlog is set while the queue holds batches not yet drained: the
	// next batch will wait behind them. The committer reads it without
	// the watcher's lock; a stale value only moves where events are put.
	backlog    atomic.Bool
	registered bool  // guarded by s.mu
	pendOwn    bool  // guarded by s.mu: pendBuf is of a private slab (own, or a backlogged watcher's it shares), not the shared one
	lagging    bool  // guarded by mu
	smallTakes uint8 // guarded by mu: takes in a row that found the queue at most a quarter full (see takeLocked)

	drainMu sync.Mutex // one Drain at a time: replay must not run twice
	handed  int64      // guarded by drainMu: the progress the last Drain returned

	// Guarded by mu; lock order s.mu then mu. While lagging, the committer
	// leaves the watcher alone and Drain replays history from next.
	mu     sync.Mutex
	queue  []Batch
	next   int64 // lagging: the next revision to hand out
	err    error // non-nil once ended
	endRev int64 // ended: the progress at the end
}

var errUnbufferedReady = errors.New("callstore: WatchRequest.Ready must have a buffer")

// replayBudget bounds the revisions one Drain of a lagging watcher scans
// while holding the store's read lock, so catching up never stalls commits
// for long; the watcher re-signals Ready to continue.
const replayBudget = 4096

// Watch registers a watcher, atomically with its snapshot: the watcher
// gets exactly the events after startRev, no gap, no duplicate.
//
// Without Resume, startRev is the current revision and snapshot holds the
// matching, visible live legs at it (if req.Snapshot; in uid order). With
// Resume, startRev is req.Revision and the watcher first replays the
// retained events after it; errors: ErrEpoch for a token of another
// epoch, ErrFutureRevision beyond Revision(), *CompactedError (ErrCompacted)
// before OldestRevision(). ErrClosed once the store is closed.
func (s *Store) Watch(req WatchRequest) (w *Watcher, snapshot []*Call, startRev int64, err error) {
	if req.Ready != nil && cap(req.Ready) == 0 {
		return nil, nil, 0, errUnbufferedReady // its signals would be lost
	}
	w = &Watcher{
		s:       s,
		m:       compile(&req.Filter, req.Visible),
		ready:   req.Ready,
		evicted: req.Evicted,
		lagIdx:  -1,
	}
	if w.ready == nil {
		w.ready = make(chan struct{}, 1)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, 0, ErrClosed
	}
	cur := s.rev.Load()
	if req.Resume {
		switch oldest := s.hist.oldest(cur); {
		case req.Epoch != s.epoch:
			return nil, nil, 0, ErrEpoch
		case req.Revision > cur:
			return nil, nil, 0, ErrFutureRevision
		case req.Revision < oldest:
			return nil, nil, 0, &CompactedError{Oldest: oldest}
		}
		w.handed = req.Revision
		s.registerLocked(w)
		if req.Revision < cur {
			w.lagging, w.next = true, req.Revision+1
			s.nlag.Add(1)
			s.laggers.add(w, w.next)
			w.signal()
		}
		return w, nil, req.Revision, nil
	}
	if req.Snapshot {
		snapshot = s.listLocked(&w.m, 0, 0)
	}
	w.handed = cur
	s.registerLocked(w)
	return w, snapshot, cur, nil
}

// Ready returns a channel that receives (coalesced) when batches are
// queued or the watcher has ended, WatchRequest.Ready if it was set. Call
// Drain after each receive: a batch queued behind others that were not
// drained yet does not signal again (see push).
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

func (w *Watcher) signal() {
	select {
	case w.ready <- struct{}{}:
	default:
	}
}

// Drain appends every queued batch to dst, in revision order. progress is
// the revision up to which every matching event has now been handed out:
// a valid resume token even when nothing matched for a while. err is
// non-nil once the watcher has ended, after which no more batches come:
// ErrClosed, or a *CompactedError if it fell behind the retained history.
// Batches handed out with ErrClosed are still valid and precede the end.
// A *CompactedError comes alone, with the progress of the previous Drain:
// the consumer must start over from a snapshot, so the batches before the
// gap it fell into are worth nothing to it.
func (w *Watcher) Drain(dst []Batch) (batches []Batch, progress int64, err error) {
	w.drainMu.Lock()
	defer w.drainMu.Unlock()
	base := len(dst)
	dst, progress, err = w.drain(dst)
	if errors.Is(err, ErrCompacted) {
		clear(dst[base:])
		return dst[:base], w.handed, err
	}
	// Never behind what an earlier Drain handed out: a commit fans out
	// before it publishes its revision, so a batch can be taken (and sent)
	// while the store's revision still says the one before, and a progress
	// frame made from that revision would send a resuming client the batch
	// again.
	progress = max(progress, w.handed)
	w.handed = progress
	return dst, progress, err
}

func (w *Watcher) drain(dst []Batch) ([]Batch, int64, error) {
	// Every commit up to pub has finished its fan-out, so while the watcher
	// is active, everything up to pub is in the queue or handed out.
	pub := w.s.rev.Load()
	w.mu.Lock()
	dst, last := w.takeLocked(dst)
	if w.err != nil {
		defer w.mu.Unlock()
		return dst, w.endRev, w.err
	}
	if !w.lagging {
		w.mu.Unlock()
		return dst, max(pub, last), nil
	}
	w.mu.Unlock()
	return w.catchUp(dst)
}

// takeLocked moves the queue to dst; last is the revision of the last batch
// moved, or 0.
//
// The queue's array is kept for the next batches while it is in use. A
// large one (over queueKeep batches) goes after queueSmallTakes takes in
// a row that each found it at most a quarter full: the burst that grew it
// has passed (a quiet watch drains nothing at each progress frame, so it
// does not pin a burst's worth of memory for long). Dropping every large
// array at its first take instead made a watcher that stays a few
// hundred batches behind regrow its queue, batch by batch, after nearly
// every Drain.
func (w *Watcher) takeLocked(dst []Batch) ([]Batch, int64) {
	n := len(w.queue)
	var last int64
	if n > 0 {
		last = w.queue[n-1].Revision
		dst = append(dst, w.queue...)
		w.backlog.Store(false)
	}
	if n > cap(w.queue)/4 {
		w.smallTakes = 0
	} else if w.smallTakes++; cap(w.queue) > queueKeep && w.smallTakes >= queueSmallTakes {
		w.queue, w.smallTakes = nil, 0
		return dst, last
	}
	clear(w.queue)
	w.queue = w.queue[:0]
	return dst, last
}

const (
	// queueKeep is the size of queue array a watcher keeps however little
	// it holds.
	queueKeep = 256
	// queueSmallTakes is how many takes in a row find a larger array at
	// most a quarter full before the watcher lets it go.
	queueSmallTakes = 8
)

// catchUp replays the retained history for a lagging watcher, at most
// replayBudget revisions. Holding the store's read lock keeps commits out,
// so reaching the current revision and becoming active again is atomic:
// the next commit queues for the watcher, no gap, no duplicate.
func (w *Watcher) catchUp(dst []Batch) ([]Batch, int64, error) {
	s := w.s
	s.mu.RLock()
	w.mu.Lock()
	if w.err != nil || !w.lagging { // ended (or, defensively, active) meanwhile
		dst, last := w.takeLocked(dst)
		prog, err := max(s.rev.Load(), last), w.err
		if err != nil {
			prog = w.endRev
		}
		w.mu.Unlock()
		s.mu.RUnlock()
		return dst, prog, err
	}
	cur := s.rev.Load()
	if oldest := s.hist.oldest(cur); w.next-1 < oldest {
		w.err = &CompactedError{Oldest: oldest}
		w.endRev = w.next - 1
		w.lagging = false
		s.nlag.Add(-1)
		prog, err := w.endRev, w.err
		w.mu.Unlock()
		s.mu.RUnlock()
		s.mu.Lock()
		s.unregisterLocked(w)
		s.mu.Unlock()
		return dst, prog, err
	}
	r := w.next
	for end := min(cur, r+replayBudget-1); r <= end; r++ {
		e := s.hist.get(r)
		var evs []WatchEvent
		for i := range e.len() {
			if ev, ok := w.m.event(e.at(i), i); ok {
				evs = append(evs, ev)
			}
		}
		if len(evs) > 0 {
			dst = append(dst, Batch{Revision: r, Events: evs})
		}
	}
	w.next = r
	if r > cur {
		w.lagging = false
		s.nlag.Add(-1)
	} else {
		w.signal() // more to replay: come back
	}
	w.mu.Unlock()
	s.mu.RUnlock()
	return dst, r - 1, nil
}

// Close ends the watcher with ErrClosed and unregisters it. Idempotent.
func (w *Watcher) Close() {
	w.s.mu.Lock()
	w.s.endLocked(w, ErrClosed)
	w.s.mu.Unlock()
}

// Close ends every watcher with ErrClosed and refuses new ones (server
// drain). Commits and reads keep working.
func (s *Store) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for w := range s.watchers {
		s.endLocked(w, ErrClosed)
	}
}

// Watchers returns the number of registered watchers.
func (s *Store) Watchers() int { return int(s.nwatch.Load()) }

// Lagging returns the number of watchers currently catching up from
// history (including resumed watchers not yet caught up).
func (s *Store) Lagging() int { return int(s.nlag.Load()) }

// endLocked ends w with err (unless already ended) and unregisters it.
func (s *Store) endLocked(w *Watcher, err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
		if w.lagging {
			w.endRev = w.next - 1
			w.lagging = false
			s.nlag.Add(-1)
		} else {
			w.endRev = s.rev.Load() // s.mu is held: every commit so far is fanned out
		}
	}
	w.mu.Unlock()
	s.unregisterLocked(w)
	w.signal()
}

func (s *Store) registerLocked(w *Watcher) {
	w.registered = true
	s.watchers[w] = struct{}{}
	s.nwatch.Add(1)
	m := &w.m
	switch {
	case !m.uids.empty():
		for _, k := range m.uids.keys() {
			s.wUID[k] = append(s.wUID[k], w)
		}
	case !m.devices.empty():
		for _, k := range m.devices.keys() {
			s.wDev[k] = append(s.wDev[k], w)
		}
	case !m.companies.empty():
		for _, k := range m.companies.keys() {
			s.wComp[k] = append(s.wComp[k], w)
		}
	default:
		s.addBroad(w)
	}
}

// addBroad adds w to its broad view, making the view if it is the first.
func (s *Store) addBroad(w *Watcher) {
	k := w.m.broadKey()
	v := s.broadBy[k]
	if v == nil {
		v = &broadView{m: w.m, idx: len(s.broad)}
		s.broadBy[k] = v
		s.broad = append(s.broad, v)
	}
	v.ws = append(v.ws, w)
}

// removeBroad removes w from its broad view, and the view once empty.
func (s *Store) removeBroad(w *Watcher) {
	k := w.m.broadKey()
	v := s.broadBy[k]
	if v == nil {
		return
	}
	if v.ws = removeWatcher(v.ws, w); len(v.ws) > 0 {
		return
	}
	delete(s.broadBy, k)
	last := s.broad[len(s.broad)-1]
	s.broad[v.idx], last.idx = last, v.idx
	s.broad[len(s.broad)-1] = nil
	s.broad = s.broad[:len(s.broad)-1]
}

func removeWatcher(list []*Watcher, w *Watcher) []*Watcher {
	if i := slices.Index(list, w); i >= 0 {
		list[i] = list[len(list)-1]
		list[len(list)-1] = nil
		list = list[:len(list)-1]
	}
	return list
}

func unindex[K comparable](idx map[K][]*Watcher, keys []K, w *Watcher) {
	for _, k := range keys {
		if l := removeWatcher(idx[k], w); len(l) == 0 {
			delete(idx, k)
		} else {
			idx[k] = l
		}
	}
}

func (s *Store) unregisterLocked(w *Watcher) {
	if !w.registered {
		return
	}
	w.registered = false
	s.laggers.remove(w)
	delete(s.watchers, w)
	s.nwatch.Add(-1)
	m := &w.m
	switch {
	case !m.uids.empty():
		unindex(s.wUID, m.uids.keys(), w)
	case !m.devices.empty():
		unindex(s.wDev, m.devices.keys(), w)
	case !m.companies.empty():
		unindex(s.wComp, m.companies.keys(), w)
	default:
		s.removeBroad(w)
	}
}

// fanoutLocked queues the events of revision rev for every watcher they
// concern. Only the watchers indexed under the old or new value's uid,
// device or company, and the broad views, are visited. Each event is
// written once per window: into an indexed watcher's window (see window),
// or once per broad view for all its watchers (broadView.queue).
func (s *Store) fanoutLocked(e *histEntry) {
	rev, n := e.rev, e.len()
	for i := range n {
		ch := e.at(i)
		s.changeSeq++
		c, p := ch.call, ch.prev
		if len(s.wUID) > 0 {
			s.visit(s.wUID[c.UID], ch, i, rev, n)
		}
		if len(s.wDev) > 0 {
			s.visit(s.wDev[c.Device], ch, i, rev, n)
			if p != nil && p.Device != c.Device {
				s.visit(s.wDev[p.Device], ch, i, rev, n)
			}
		}
		if len(s.wComp) > 0 {
			s.visit(s.wComp[c.DeviceCompany], ch, i, rev, n)
			if p != nil && p.DeviceCompany != c.DeviceCompany {
				s.visit(s.wComp[p.DeviceCompany], ch, i, rev, n)
			}
		}
		for _, v := range s.broad {
			if ev, ok := v.m.event(ch, i); ok {
				v.evs = append(v.evs, ev)
			}
		}
	}
	for _, v := range s.broad {
		v.queue(s, rev)
	}
	for i, w := range s.touched {
		w.push(rev, w.pendBuf[:w.pendN:w.pendN]) // capacity ends at the length: appends never reach the next window
		w.pendBuf, w.pendN, w.pendOwn = nil, 0, false
		s.touched[i] = nil
	}
	s.touched = s.touched[:0]
}

// broadView is the broad watchers (no uid, device or company filter) of
// one view (viewKey: the unfiltered watches of every admin, say).
// The fan-out computes a change's event once per view, not once per
// watcher, and hands the view's watchers one window per commit: the
// per-watcher work of a revision is a queue append.
type broadView struct {
	m   matcher      // the view: its first watcher's matcher
	ws  []*Watcher   // its watchers, in no particular order
	idx int          // position in Store.broad
	evs []WatchEvent // scratch: the view's events in the commit being fanned out
}

// queue hands the view's events of revision rev, if any, to each of its
// watchers, and empties the scratch. The caught-up watchers share one
// window of the store's shared slab, the backlogged ones one of a private
// slab (the first backlogged watcher's own): what a stalled watcher pins
// stays events it was given, not a shared slab (see window).
func (v *broadView) queue(s *Store, rev int64) {
	seq := s.changeSeq
	if len(v.evs) == 0 {
		for _, w := range v.ws {
			w.seenChange = seq // visited (for the index's de-duplication, and tests)
		}
		return
	}
	var shared, own []WatchEvent
	for _, w := range v.ws {
		w.seenChange = seq
		if w.backlog.Load() {
			if own == nil {
				own = v.window(w.carveOwn(len(v.evs)))
			}
			w.push(rev, own)
			continue
		}
		if w.own != nil {
			w.own, w.ownTotal = nil, 0 // caught up, as in window
		}
		if shared == nil {
			shared = v.window(carve(&s.slab, len(v.evs)))
		}
		w.push(rev, shared)
	}
	clear(v.evs) // the scratch must not keep the calls alive
	v.evs = v.evs[:0]
}

// window copies the view's events of the commit into win, and returns it.
func (v *broadView) window(win []WatchEvent) []WatchEvent {
	copy(win, v.evs)
	return win
}

// window returns room for the events of the commit being fanned out to
// w: n, its number of changes, since a watcher gets at most one event per
// change (slots it does not fill stay unused).
//
// Windows are carved out of slabs of up to slabEvents events: one
// allocation per slab instead of one per batch. The store's shared slab
// serves the watchers that are caught up, across commits. A window keeps
// its whole slab alive while it is queued, so a watcher that is behind
// (batches already queued: this one will wait too) gets its window from
// its own slab instead; a stalled watcher then pins its own events, the
// slack of its own slab and at most the one shared slab of the batch it
// first fell behind on, not a shared slab per queued revision.
func (s *Store) window(w *Watcher, n int) []WatchEvent {
	if w.pendOwn = w.backlog.Load(); w.pendOwn {
		return w.carveOwn(n)
	}
	w.own, w.ownTotal = nil, 0 // caught up: its private slab goes with its last batch
	return carve(&s.slab, n)
}

// slabEvents bounds the events sharing one allocation in the fan-out.
const slabEvents = 16

// carve returns a window of n events at the end of *slab, first replacing
// *slab with a new slab of slabEvents (or n) when it has no room. The
// window's capacity ends at its length, so appends to it never reach the
// next window.
func carve(slab *[]WatchEvent, n int) []WatchEvent {
	if len(*slab)+n > cap(*slab) {
		*slab = make([]WatchEvent, 0, max(n, slabEvents))
	}
	l := len(*slab)
	*slab = (*slab)[:l+n]
	return (*slab)[l : l+n : l+n]
}

// carveOwn returns a window of n events from a backlogged watcher's
// private slab. The first slab of a backlog is the window alone: a
// watcher a commit behind usually catches up at once. If the backlog
// lasts, the slabs grow (2, 3, 6, 12, then slabEvents events: each about
// as large as the ones before it together): a busy consumer is often a
// commit or two behind for a moment, and a whole slabEvents slab for
// those, dropped with its slack once the watcher catches up, was a fifth
// of the bytes a fan-out allocated. A full slab is let go at once: the
// windows carved from it keep it while they are queued, and a watcher
// whose last events came while it was behind does not keep it after
// they are delivered (≈ 100 B of every such idle watch otherwise).
func (w *Watcher) carveOwn(n int) []WatchEvent {
	if len(w.own)+n > cap(w.own) {
		size := n
		if w.ownTotal > 0 {
			size = max(n, min(max(w.ownTotal, 2), slabEvents))
		}
		w.own = make([]WatchEvent, 0, size)
		w.ownTotal += cap(w.own)
	}
	win := carve(&w.own, n)
	if len(w.own) == cap(w.own) {
		w.own = nil
	}
	return win
}

// visit gives the change's event to each watcher of ws that hears of it,
// in the watcher's window for the commit. ws is an index's list: its
// watchers restrict uids, devices or companies, so no two of them are of
// one view (those are the broad views').
func (s *Store) visit(ws []*Watcher, ch *histChange, idx int, rev int64, n int) {
	for _, w := range ws {
		if w.seenChange == s.changeSeq {
			continue // reached through two index keys
		}
		w.seenChange = s.changeSeq
		ev, ok := w.m.event(ch, idx)
		if !ok {
			continue
		}
		if w.touchRev != rev {
			w.touchRev = rev
			s.touched = append(s.touched, w)
			w.pendBuf = s.window(w, n)
		}
		w.pendBuf[w.pendN] = ev
		w.pendN++
	}
}

// push queues one batch; called by the committer with s.mu held. A full
// queue turns the watcher lagging: the queued batches stay (they precede
// the gap) and Drain replays from rev onwards.
//
// Only the batch that finds the queue empty signals Ready: the consumer
// drains after each receive, and a drain takes the whole queue, so the
// batches queued behind it before that drain are taken by it, and the
// first one queued after it signals again. A watcher that stays behind
// (a busy stream takes a hundred batches or more per drain) is spared a
// channel operation per revision.
func (w *Watcher) push(rev int64, evs []WatchEvent) {
	w.mu.Lock()
	wake := true
	switch {
	case w.err != nil || w.lagging:
	case len(w.queue) >= w.s.qsize:
		w.lagging, w.next = true, rev
		w.s.nlag.Add(1)
		w.s.laggers.add(w, rev)
	default:
		wake = len(w.queue) == 0
		w.queue = append(w.queue, Batch{Revision: rev, Events: evs})
		if !w.backlog.Load() { // a store is a full barrier: pay it once per backlog
			w.backlog.Store(true)
		}
	}
	w.mu.Unlock()
	if wake {
		w.signal()
	}
}
