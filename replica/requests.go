package replica

import (
	"sync"
	"time"

	"callcontrold/callstore"
	"callcontrold/pbx"
)

// requestIndex remembers, from the log this replica applied, which
// revision applied each client request that carried a request_id: the
// request's principal, method and request_id, its fingerprint, and the
// legs the revision left. Every replica keeps one, so that a leader that
// takes over answers a retry of a request the dead leader applied from
// the log, instead of applying it a second time (see doc.go).
//
// Entries live for Config.RequestTTL after their revision's time, and at
// most Config.MaxRequests are kept (the oldest revisions go first):
// memory stays bounded however busy the switch is.
type requestIndex struct {
	ttl time.Duration
	max int

	mu      sync.Mutex
	entries map[requestKey]*requestEntry
	order   []*requestEntry // in the order applied (revision order)
}

type requestKey struct{ principal, method, id string }

type requestEntry struct {
	key     requestKey
	applied pbx.Applied
	at      time.Time
}

func newRequestIndex(ttl time.Duration, max int) *requestIndex {
	return &requestIndex{ttl: ttl, max: max, entries: map[requestKey]*requestEntry{}}
}

// add records that revision rev, of time at, applied req with changes.
func (x *requestIndex) add(req *pbx.Request, rev int64, at time.Time, changes []callstore.Change) {
	if req == nil {
		return
	}
	e := &requestEntry{key: requestKey{req.Principal, req.Method, req.ID}, at: at,
		applied: pbx.Applied{Revision: rev, Fingerprint: req.Fingerprint, Changes: changes}}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.expireLocked(at)
	if _, dup := x.entries[e.key]; dup {
		return // the first revision that applied the request is its answer
	}
	x.entries[e.key] = e
	x.order = append(x.order, e)
	for len(x.order) > x.max {
		x.dropOldestLocked()
	}
}

// lookup returns the revision that applied the request, if one did
// within the TTL.
func (x *requestIndex) lookup(principal, method, id string) (*pbx.Applied, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e, ok := x.entries[requestKey{principal, method, id}]
	if !ok || time.Since(e.at) > x.ttl {
		return nil, false
	}
	a := e.applied
	return &a, true
}

func (x *requestIndex) expireLocked(now time.Time) {
	for len(x.order) > 0 && now.Sub(x.order[0].at) > x.ttl {
		x.dropOldestLocked()
	}
}

func (x *requestIndex) dropOldestLocked() {
	e := x.order[0]
	x.order[0] = nil
	x.order = x.order[1:]
	if x.entries[e.key] == e {
		delete(x.entries, e.key)
	}
}

// Applied reports the revision of the log that applied the request
// principal sent to method with request_id id, if one did within
// Config.RequestTTL and this replica has applied it (the server's Deps.Applied).
func (n *Node) Applied(principal, method, id string) (*pbx.Applied, bool) {
	return n.requests.lookup(principal, method, id)
}
