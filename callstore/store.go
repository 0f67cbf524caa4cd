package callstore

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
)

// Options configures a Store. Zero values take the defaults.
type Options struct {
	HistorySize  int // revisions retained for resume; default 10000
	WatcherQueue int // batches a watcher may have queued before it is treated as lagging; default 1024
	// Epoch names the history the store's revisions belong to; 0: random.
	// A single process takes a random one, so a token from before a
	// restart is refused. Replicas that apply one shared log (ApplyAt)
	// derive it from the log's identity, so a token resumes on any of them.
	Epoch uint64
}

// The defaults of Options.
const (
	DefaultHistorySize  = 10000
	DefaultWatcherQueue = 1024
)

// Store is the revisioned set of live legs. All methods are safe for
// concurrent use.
type Store struct {
	epoch uint64
	qsize int

	uid    atomic.Int64 // last allocated uid
	rev    atomic.Int64 // last committed revision; stored under mu after the fan-out
	nwatch atomic.Int64 // registered watchers
	nlag   atomic.Int64 // lagging watchers

	mu   sync.RWMutex
	live map[int64]*Call
	// byDev holds the uids of the live legs per device, ascending: uids
	// rather than the values, so that a commit updating a leg on the same
	// device (most of them) leaves it alone; readers take the values from
	// live.
	byDev  map[string][]int64
	order  uidOrder
	hist   history
	closed bool

	// Watcher indexes, guarded by mu. A watcher sits in exactly one of
	// them: under each uid of its filter if it has uids, else under each
	// device, else under each company, else in its broad view.
	wUID      map[int64][]*Watcher
	wDev      map[string][]*Watcher
	wComp     map[string][]*Watcher
	broad     []*broadView           // the views of the watchers in none of the indexes
	broadBy   map[viewKey]*broadView // the same, by view
	watchers  map[*Watcher]struct{}
	changeSeq uint64       // numbers the changes of all commits, for de-duplicating index hits
	laggers   lagHeap      // lagging watchers by the next revision they need
	touched   []*Watcher   // scratch: watchers with events in the commit being fanned out
	slab      []WatchEvent // the shared slab the caught-up watchers' windows are carved from (window)
}

// New returns an empty store with a fresh random epoch.
func New(opts Options) *Store {
	if opts.HistorySize <= 0 {
		opts.HistorySize = DefaultHistorySize
	}
	if opts.WatcherQueue <= 0 {
		opts.WatcherQueue = DefaultWatcherQueue
	}
	s := &Store{
		qsize:    opts.WatcherQueue,
		live:     make(map[int64]*Call),
		byDev:    make(map[string][]int64),
		hist:     history{size: opts.HistorySize},
		wUID:     make(map[int64][]*Watcher),
		wDev:     make(map[string][]*Watcher),
		wComp:    make(map[string][]*Watcher),
		broadBy:  make(map[viewKey]*broadView),
		watchers: make(map[*Watcher]struct{}),
		epoch:    opts.Epoch,
	}
	for s.epoch == 0 {
		s.epoch = rand.Uint64()
	}
	return s
}

// Epoch returns the store's epoch: Options.Epoch, or random per New; never 0. A resume token
// is (Epoch, revision); a token of another epoch is refused.
func (s *Store) Epoch() uint64 { return s.epoch }

// Revision returns the last committed revision (0 initially).
func (s *Store) Revision() int64 { return s.rev.Load() }

// OldestRevision returns the oldest revision a watch can resume after:
// tokens with a revision >= OldestRevision() (and <= Revision()) are
// resumable. A fresh store returns 0.
func (s *Store) OldestRevision() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.hist.oldest(s.rev.Load())
}

// HistorySize returns how many revisions the store retains for resume.
func (s *Store) HistorySize() int { return s.hist.size }

// NewUID allocates a fresh leg uid: 1, 2, 3, ... never reused by this store.
func (s *Store) NewUID() int64 { return s.uid.Add(1) }

// Get returns the live leg uid.
func (s *Store) Get(uid int64) (*Call, bool) {
	s.mu.RLock()
	c, ok := s.live[uid]
	s.mu.RUnlock()
	return c, ok
}

// ByDevice returns the live legs on device, in uid order.
func (s *Store) ByDevice(device string) []*Call {
	s.mu.RLock()
	defer s.mu.RUnlock()
	uids := s.byDev[device]
	if uids == nil {
		return nil
	}
	calls := make([]*Call, len(uids))
	for i, uid := range uids {
		calls[i] = s.live[uid]
	}
	return calls
}

// Len returns the number of live legs.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.live)
}

// List returns the live legs that match f (ignoring f.Types) and visible
// (nil: all), with uid > afterUID, in ascending uid order, at most limit
// of them (limit <= 0: no limit), all read at revision rev.
func (s *Store) List(f *Filter, visible func(*Call) bool, afterUID int64, limit int) (calls []*Call, rev int64) {
	m := compile(f, visible)
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.listLocked(&m, afterUID, limit), s.rev.Load()
}

func (s *Store) listLocked(m *matcher, afterUID int64, limit int) []*Call {
	full := func(out []*Call) bool { return limit > 0 && len(out) >= limit }
	var out []*Call
	switch {
	case !m.uids.empty():
		for _, uid := range m.uids.keys() { // in ascending order
			if c := s.live[uid]; uid > afterUID && c != nil && m.match(c) {
				if out = append(out, c); full(out) {
					break
				}
			}
		}
	case !m.devices.empty():
		for _, d := range m.devices.keys() {
			for _, uid := range s.byDev[d] {
				if c := s.live[uid]; uid > afterUID && m.match(c) {
					out = append(out, c)
				}
			}
		}
		slices.SortFunc(out, func(a, b *Call) int { return cmp.Compare(a.UID, b.UID) })
		if limit > 0 && len(out) > limit {
			clear(out[limit:])
			out = out[:limit]
		}
	default:
		ids := s.order.ids
		i, found := s.order.search(afterUID)
		if found {
			i++
		}
		for ; i < len(ids); i++ {
			if ids[i] < 0 {
				continue
			}
			if c := s.live[ids[i]]; m.match(c) {
				if out = append(out, c); full(out) {
					break
				}
			}
		}
	}
	return out
}

// Change is one leg's change within a commit.
type Change struct {
	Type EventType // EventNew, EventUpdate or EventTransfer
	Call *Call     // the new immutable value (the caller must not modify it afterwards)
	Xfer []XferLeg // EventTransfer only: the bridge the transfer created (copied)
}

// Commit applies all changes atomically as one revision and returns it.
// Changes apply in order; a later change may update a leg an earlier one
// created. It fails with ErrInvalidChange, wrapped with detail, and
// applies nothing, for: no changes, a nil Call, a UID <= 0, EventNew for a
// live uid, EventUpdate or EventTransfer of a uid that is not live, an
// unknown event type, or StateUnspecified. A leg committed with StateDead
// is delivered once to watchers and then removed from the live set.
// Commit never blocks on watchers.
func (s *Store) Commit(changes ...Change) (int64, error) {
	if err := checkChanges(changes); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkLiveLocked(changes); err != nil {
		return 0, err
	}
	rev := s.rev.Load() + 1
	s.commitLocked(rev, changes)
	return rev, nil
}

// Check reports whether Commit would accept changes now, without applying
// them: the error Commit would return, or nil. A replica that appends an
// operation to a shared log checks it first, so the log never holds an
// operation that no store can apply.
func (s *Store) Check(changes ...Change) error {
	if err := checkChanges(changes); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.checkLiveLocked(changes)
}

// ApplyAt applies changes as revision rev, which a shared log assigned:
// the way a replica applies that log, in order, to its own store. rev must
// be the next revision, Revision()+1; a rev at or below Revision() was
// applied already (the leader applies its own append as soon as the log
// acknowledges it, and then reads it back from the log) and is skipped:
// applied is false and nothing changes. A rev beyond the next one fails
// with ErrRevisionGap. The changes are checked as by Commit. ApplyAt also
// moves NewUID past every uid in changes, so a replica that later leads
// never hands out a uid the log already holds.
func (s *Store) ApplyAt(rev int64, changes ...Change) (applied bool, err error) {
	if err := checkChanges(changes); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch cur := s.rev.Load(); {
	case rev <= cur:
		return false, nil
	case rev > cur+1:
		return false, fmt.Errorf("%w: got revision %d after %d", ErrRevisionGap, rev, cur)
	}
	if err := s.checkLiveLocked(changes); err != nil {
		return false, err
	}
	for i := range changes {
		if uid := changes[i].Call.UID; uid > s.uid.Load() {
			s.uid.Store(uid) // NewUID is only used by the leader, which applies before it allocates
		}
	}
	s.commitLocked(rev, changes)
	return true, nil
}

// CheckChanges checks what Commit checks without the live set (uids,
// event types, states). A replica's leader with operations in flight
// checks the live set itself: as those operations will leave it.
func CheckChanges(changes ...Change) error { return checkChanges(changes) }

// checkChanges checks what can be checked without the live set.
func checkChanges(changes []Change) error {
	if len(changes) == 0 {
		return fmt.Errorf("%w: no changes", ErrInvalidChange)
	}
	for i := range changes {
		ch := &changes[i]
		switch {
		case ch.Call == nil:
			return fmt.Errorf("%w: change %d: nil call", ErrInvalidChange, i)
		case ch.Call.UID <= 0:
			return fmt.Errorf("%w: change %d: uid %d", ErrInvalidChange, i, ch.Call.UID)
		case ch.Type != EventNew && ch.Type != EventUpdate && ch.Type != EventTransfer:
			return fmt.Errorf("%w: change %d: unknown event type %d", ErrInvalidChange, i, ch.Type)
		case ch.Call.State == StateUnspecified:
			return fmt.Errorf("%w: change %d: uid %d: unspecified state", ErrInvalidChange, i, ch.Call.UID)
		case ch.Call.DeviceRef == nil:
			return fmt.Errorf("%w: change %d: uid %d: no device", ErrInvalidChange, i, ch.Call.UID)
		}
	}
	return nil
}

// commitLocked applies checked changes as revision rev, the next one, and
// fans them out.
func (s *Store) commitLocked(rev int64, changes []Change) {
	e := s.hist.push(rev)
	if len(changes) > 1 {
		e.rest = s.hist.rest(len(changes) - 1)
	}
	for i := range changes {
		ch := &changes[i]
		c := ch.Call
		prev := s.live[c.UID]
		hc := e.at(i)
		*hc = histChange{typ: ch.Type, call: c, prev: prev}
		if ch.Type == EventTransfer && len(ch.Xfer) > 0 {
			hc.xfer = slices.Clone(ch.Xfer)
		}
		s.applyLocked(prev, c)
	}
	if len(s.watchers) > 0 {
		s.fanoutLocked(e)
	}
	if len(s.laggers) > 0 {
		s.evictPassedLocked(s.hist.oldest(rev))
	}
	s.rev.Store(rev)
}

// checkLiveLocked checks each change against the live set as the earlier
// changes of the same commit leave it.
func (s *Store) checkLiveLocked(changes []Change) error {
	for i := range changes {
		c := changes[i].Call
		_, live := s.live[c.UID]
		for j := i - 1; j >= 0; j-- { // commits are small: quadratic is cheapest
			if changes[j].Call.UID == c.UID {
				live = changes[j].Call.State != StateDead
				break
			}
		}
		if changes[i].Type == EventNew {
			if live {
				return fmt.Errorf("%w: change %d: new leg %d is already live", ErrInvalidChange, i, c.UID)
			}
		} else if !live {
			return fmt.Errorf("%w: change %d: leg %d is not live", ErrInvalidChange, i, c.UID)
		}
	}
	return nil
}

// applyLocked replaces prev (nil if none) by c in the live set and indexes.
func (s *Store) applyLocked(prev, c *Call) {
	dead := c.State == StateDead
	if prev != nil && (dead || prev.Device != c.Device) {
		s.devRemove(prev)
	}
	switch {
	case dead:
		if prev != nil {
			delete(s.live, c.UID)
			s.order.remove(c.UID)
		}
	case prev == nil:
		s.live[c.UID] = c
		s.order.insert(c.UID)
		s.devAdd(c)
	default:
		s.live[c.UID] = c
		if prev.Device != c.Device {
			s.devAdd(c)
		}
	}
}

func (s *Store) devAdd(c *Call) {
	list := s.byDev[c.Device]
	i, _ := slices.BinarySearch(list, c.UID)
	s.byDev[c.Device] = slices.Insert(list, i, c.UID)
}

func (s *Store) devRemove(c *Call) {
	list := s.byDev[c.Device]
	i, ok := slices.BinarySearch(list, c.UID)
	if !ok {
		return
	}
	// An emptied list stays, so the device's next leg is added without
	// allocating: a store holds the legs of a PBX's devices, whose number
	// is bounded by its directory.
	s.byDev[c.Device] = slices.Delete(list, i, i+1)
}
