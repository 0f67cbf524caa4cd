package callstore

import (
	"cmp"
	"fmt"
	"slices"
)

// LastUID returns the last uid NewUID handed out or ApplyAt or Restore saw:
// a snapshot of the store records it, so that a store restored from the
// snapshot never hands out a uid the log already used.
func (s *Store) LastUID() int64 { return s.uid.Load() }

// Snapshot returns every live leg, in uid order, and LastUID, all as of
// revision rev: what Restore needs to rebuild the store at rev.
func (s *Store) Snapshot() (calls []*Call, lastUID, rev int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	all := compile(nil, nil)
	return s.listLocked(&all, 0, 0), s.uid.Load(), s.rev.Load()
}

// Restore replaces the store's contents with calls, the live legs of a
// shared log as of revision rev (a snapshot of another store of the same
// log): the way a replica catches up when the revisions between its own
// and rev are no longer in the log, so ApplyAt cannot take it there. rev
// must be beyond Revision(). NewUID continues past lastUID and every uid
// in calls.
//
// The revisions between the old revision and rev never reach this store,
// so no watch can continue across them: every watcher ends with a
// *CompactedError (its Evicted hook is called), and the history starts
// afresh at rev: a token before rev is refused with ErrCompacted, a token
// at rev or after resumes. Restore fails with ErrInvalidSnapshot, and
// changes nothing, for a rev not beyond Revision(), a nil call, a uid <= 0
// or repeated, or a leg whose state is unspecified or dead.
func (s *Store) Restore(rev int64, calls []*Call, lastUID int64) error {
	if err := checkSnapshot(calls); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.rev.Load(); rev <= cur {
		return fmt.Errorf("%w: revision %d is not beyond the store's %d", ErrInvalidSnapshot, rev, cur)
	}
	compacted := &CompactedError{Oldest: rev}
	for w := range s.watchers {
		s.endLocked(w, compacted)
		if w.evicted != nil {
			w.evicted(compacted)
		}
	}
	s.live = make(map[int64]*Call, len(calls))
	s.byDev = make(map[string][]int64)
	s.order = uidOrder{ids: make([]int64, 0, len(calls))}
	for _, c := range slices.SortedFunc(slices.Values(calls), func(a, b *Call) int { return cmp.Compare(a.UID, b.UID) }) {
		s.applyLocked(nil, c)
		lastUID = max(lastUID, c.UID)
	}
	if lastUID > s.uid.Load() {
		s.uid.Store(lastUID)
	}
	s.hist.reset(rev)
	s.rev.Store(rev)
	return nil
}

// checkSnapshot checks what Restore can check before taking the lock.
func checkSnapshot(calls []*Call) error {
	seen := make(map[int64]bool, len(calls))
	for i, c := range calls {
		switch {
		case c == nil:
			return fmt.Errorf("%w: leg %d: nil", ErrInvalidSnapshot, i)
		case c.UID <= 0:
			return fmt.Errorf("%w: leg %d: uid %d", ErrInvalidSnapshot, i, c.UID)
		case seen[c.UID]:
			return fmt.Errorf("%w: leg %d: uid %d appears twice", ErrInvalidSnapshot, i, c.UID)
		case c.State == StateUnspecified || c.State == StateDead:
			return fmt.Errorf("%w: leg %d: uid %d is not live (state %s)", ErrInvalidSnapshot, i, c.UID, c.State)
		case c.DeviceRef == nil:
			return fmt.Errorf("%w: leg %d: uid %d: no device", ErrInvalidSnapshot, i, c.UID)
		}
		seen[c.UID] = true
	}
	return nil
}

// Compact makes the revisions up to rev unresumable, as the log behind a
// replica's store drops them: a watch can then resume only after rev
// (older tokens get a *CompactedError naming the oldest resumable
// revision), and a lagging watcher that still needs a revision up to rev
// ends with one, as if the history ring had passed it. A watcher that is
// not behind is not affected. rev beyond Revision() compacts up to
// Revision(); compacting never goes back.
func (s *Store) Compact(rev int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rev = min(rev, s.rev.Load())
	if rev <= s.hist.floor {
		return
	}
	s.hist.floor = rev
	if len(s.laggers) > 0 {
		s.evictPassedLocked(s.hist.oldest(s.rev.Load()))
	}
}
