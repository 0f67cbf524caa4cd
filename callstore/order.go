package callstore

import "slices"

// uidOrder keeps the live uids in ascending order for List's pagination.
// uids are allocated increasingly, so insertion is almost always an
// append. A removed uid is left as a tombstone (stored negated, so the
// slice stays sorted by absolute value) and the slice is compacted once
// tombstones are half of it: amortised O(1) per removal, O(log n) to find.
type uidOrder struct {
	ids  []int64
	dead int
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// search returns the position of the first entry with |id| >= uid.
func (o *uidOrder) search(uid int64) (int, bool) {
	return slices.BinarySearchFunc(o.ids, uid, func(e, t int64) int {
		switch a := abs(e); {
		case a < t:
			return -1
		case a > t:
			return 1
		}
		return 0
	})
}

func (o *uidOrder) insert(uid int64) {
	if n := len(o.ids); n == 0 || abs(o.ids[n-1]) < uid {
		o.ids = append(o.ids, uid)
		return
	}
	i, found := o.search(uid)
	if found { // a tombstone of the same uid
		if o.ids[i] < 0 {
			o.ids[i] = uid
			o.dead--
		}
		return
	}
	o.ids = slices.Insert(o.ids, i, uid)
}

func (o *uidOrder) remove(uid int64) {
	i, found := o.search(uid)
	if !found || o.ids[i] < 0 {
		return
	}
	o.ids[i] = -uid
	o.dead++
	if o.dead > 64 && 2*o.dead > len(o.ids) {
		o.ids = slices.DeleteFunc(o.ids, func(v int64) bool { return v < 0 })
		o.dead = 0
	}
}
