package callstore

// histChange is one change as committed: the new value and the live value
// it replaced (nil for EventNew), which is what a view transition needs.
type histChange struct {
	typ  EventType
	call *Call
	prev *Call
	xfer []XferLeg // shared, immutable
}

// histEntry is one committed revision. The first change is stored inline:
// most commits change one leg, and this saves an allocation per commit.
type histEntry struct {
	rev   int64
	first histChange
	rest  []histChange // changes 1..
}

func (e *histEntry) len() int { return 1 + len(e.rest) }

// at returns change i; the pointer is only valid while the caller holds
// the store's lock (a later push may overwrite or move the slot).
func (e *histEntry) at(i int) *histChange {
	if i == 0 {
		return &e.first
	}
	return &e.rest[i-1]
}

// history is a ring buffer of the last size revisions. Revision r lives in
// slot (r-base-1) % size; the buffer grows to size lazily, so a small
// store costs little. Every revision after base is pushed, in order, so
// the slots hold exactly revisions cur-len+1 .. cur.
type history struct {
	buf  []histEntry
	size int
	// base is the revision the history starts after: 0, or the revision a
	// Restore put the store at (the revisions before it were never here).
	base int64
	// floor is the oldest revision a watch may resume after, raised by
	// Compact when the log behind the store no longer holds the revisions
	// up to it, although the ring still does.
	floor int64
	// slab is where the entries' rest slices are carved from (rest).
	slab []histChange
}

// restSlab is how many changes one allocation of rest slices holds.
const restSlab = 64

// rest returns room for an entry's n changes after its first. Slices
// are carved out of slabs of restSlab changes, one allocation for many
// multi-change commits. A slab lives until the last entry carved from it
// is overwritten; push clears an overwritten entry's slots, so the
// values they named do not live as long.
func (h *history) rest(n int) []histChange {
	if len(h.slab)+n > cap(h.slab) {
		h.slab = make([]histChange, 0, max(n, restSlab))
	}
	l := len(h.slab)
	h.slab = h.slab[:l+n]
	return h.slab[l : l+n : l+n]
}

func (h *history) slot(rev int64) int { return int((rev - h.base - 1) % int64(h.size)) }

// push returns the slot for revision rev, the next revision, cleared.
func (h *history) push(rev int64) *histEntry {
	if len(h.buf) < h.size {
		h.buf = append(h.buf, histEntry{rev: rev})
		return &h.buf[len(h.buf)-1]
	}
	e := &h.buf[h.slot(rev)]
	clear(e.rest)
	*e = histEntry{rev: rev}
	return e
}

// oldest returns the oldest revision a watch can resume after, given the
// current revision: revisions oldest+1 .. cur are retained. A fresh store
// returns 0.
func (h *history) oldest(cur int64) int64 { return max(cur-int64(len(h.buf)), h.floor) }

// get returns revision rev, which the caller has checked is retained.
func (h *history) get(rev int64) *histEntry {
	e := &h.buf[h.slot(rev)]
	if e.rev != rev {
		panic("callstore: history slot holds another revision")
	}
	return e
}

// reset empties the history, which now starts after revision base.
func (h *history) reset(base int64) {
	clear(h.buf)
	h.buf = h.buf[:0]
	h.slab = nil
	h.base, h.floor = base, 0
}
