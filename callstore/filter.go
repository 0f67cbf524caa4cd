package callstore

import (
	"cmp"
	"slices"
	"unsafe"
)

// Filter selects legs: AND across the non-empty fields, OR within a field.
// An empty field does not restrict. The zero Filter matches every leg.
type Filter struct {
	UIDs      []int64     // leg uid is one of these
	Devices   []string    // Call.Device is one of these
	Companies []string    // Call.DeviceCompany is one of these
	States    []State     // Call.State is one of these
	Types     []EventType // watch only: the event type is one of these; ignored by Matches and List
}

// Matches reports whether c matches every non-empty field of f except
// Types (an event property, not a leg property). A nil filter matches all.
func (f *Filter) Matches(c *Call) bool {
	if f == nil {
		return true
	}
	return (len(f.UIDs) == 0 || slices.Contains(f.UIDs, c.UID)) &&
		(len(f.Devices) == 0 || slices.Contains(f.Devices, c.Device)) &&
		(len(f.Companies) == 0 || slices.Contains(f.Companies, c.DeviceCompany)) &&
		(len(f.States) == 0 || slices.Contains(f.States, c.State))
}

// smallSet is the size up to which a linear scan beats a binary search.
const smallSet = 8

// set is a membership test compiled from a filter field: its distinct
// members, sorted (scanned while small, searched beyond). Empty means "no
// restriction". One slice and nothing else: every watcher holds three.
type set[K cmp.Ordered] []K

func newSet[K cmp.Ordered](ks []K) set[K] {
	if len(ks) == 0 {
		return nil
	}
	s := slices.Clone(ks)
	slices.Sort(s)
	return slices.Clip(slices.Compact(s))
}

func (s set[K]) empty() bool { return len(s) == 0 }

func (s set[K]) has(k K) bool {
	if len(s) > smallSet {
		_, ok := slices.BinarySearch(s, k)
		return ok
	}
	return slices.Contains(s, k)
}

// keys returns the distinct members, in ascending order. The slice is
// the set's own: read it, never modify it.
func (s set[K]) keys() []K { return s }

// matcher is a Filter plus a visibility predicate, compiled for the
// fan-out: it is immutable once built, so the committer and replaying
// consumers may use it concurrently.
type matcher struct {
	uids      set[int64]
	devices   set[string]
	companies set[string]
	states    uint32 // bit per State; 0 = any
	types     uint32 // bit per EventType; 0 = any
	visible   func(*Call) bool
}

// compile builds the matcher of f (nil: every leg) and visible. It is
// returned by value: a watcher holds its matcher in its own allocation.
func compile(f *Filter, visible func(*Call) bool) matcher {
	m := matcher{visible: visible}
	if f == nil {
		return m
	}
	m.uids = newSet(f.UIDs)
	m.devices = newSet(f.Devices)
	m.companies = newSet(f.Companies)
	for _, st := range f.States {
		m.states |= 1 << (st & 31)
	}
	for _, t := range f.Types {
		m.types |= 1 << (t & 31)
	}
	return m
}

// match reports whether c is in the view: filter (without Types) and
// visibility.
func (m *matcher) match(c *Call) bool {
	if m.states != 0 && m.states&(1<<(c.State&31)) == 0 {
		return false
	}
	if !m.uids.empty() && !m.uids.has(c.UID) {
		return false
	}
	if !m.devices.empty() && !m.devices.has(c.Device) {
		return false
	}
	if !m.companies.empty() && !m.companies.has(c.DeviceCompany) {
		return false
	}
	return m.visible == nil || m.visible(c)
}

// viewKey identifies a view among the matchers that restrict no uids,
// devices or companies (the broad ones): two such matchers with one key
// see every change alike: they restrict states and event types alike,
// and their visibility predicates are one func value (or both nil). The
// fan-out computes the events of such watchers once (broadView).
type viewKey struct {
	states, types uint32
	visible       unsafe.Pointer // funcPointer(visible)
}

// broadKey returns m's view key; m restricts no uids, devices or
// companies.
func (m *matcher) broadKey() viewKey {
	return viewKey{m.states, m.types, funcPointer(m.visible)}
}

// sameFunc reports whether f and g are one func value: the same function,
// or the same closure (one closure value, with the variables it
// captured). Go does not compare funcs; a func value is a pointer to its
// closure record (a shared, static one for a function that captures
// nothing), so equal pointers mean equal behaviour. Two closures made
// apart compare unequal even when they would agree: the fan-out then
// computes their events apart.
func sameFunc(f, g func(*Call) bool) bool { return funcPointer(f) == funcPointer(g) }

// funcPointer returns f's closure record (nil for a nil func): see sameFunc.
func funcPointer(f func(*Call) bool) unsafe.Pointer {
	return *(*unsafe.Pointer)(unsafe.Pointer(&f))
}

// event computes what the change at position idx of its commit means to
// this view; ok is false when the watcher does not hear of it. The fan-out
// and the history replay both use it, so they cannot disagree.
func (m *matcher) event(ch *histChange, idx int) (ev WatchEvent, ok bool) {
	if m.types != 0 && m.types&(1<<(ch.typ&31)) == 0 {
		return WatchEvent{}, false
	}
	wasIn := ch.prev != nil && m.match(ch.prev)
	isIn := m.match(ch.call)
	var v ViewChange
	switch {
	case wasIn && isIn:
		v = ViewStayed
	case isIn:
		v = ViewEntered
	case wasIn:
		v = ViewLeft
	default:
		return WatchEvent{}, false
	}
	return WatchEvent{Type: ch.typ, View: v, Call: ch.call, Xfer: ch.xfer, Index: idx}, true
}
