package pbx

import "callcontrold/callstore"

// checkInvariants compares the switch's model with the store: the same
// live legs, links only between live legs, no timers left for dead ones.
func (h *harness) checkInvariants() {
	h.t.Helper()
	h.sim.mu.Lock()
	defer h.sim.mu.Unlock()
	n := 0
	for uid, l := range h.sim.legs {
		n++
		if l.dead || l.cur == nil {
			h.t.Fatalf("leg %d: dead or uncommitted leg kept", uid)
		}
		got, ok := h.store.Get(uid)
		if !ok || got != l.cur {
			h.t.Fatalf("leg %d: store holds %v, switch %v", uid, got, l.cur)
		}
		if *l.cur != l.c {
			h.t.Fatalf("leg %d: working value differs from the committed one", uid)
		}
		checkLeg(h, l)
	}
	if calls, _ := h.store.List(nil, nil, 0, 1<<30); len(calls) != n {
		h.t.Fatalf("store has %d live legs, switch %d", len(calls), n)
	}
}

func checkLeg(h *harness, l *leg) {
	h.t.Helper()
	live := func(x *leg) bool { return x != nil && !x.dead && h.sim.legs[x.c.UID] == x }
	c := l.cur
	if c.State == callstore.StateUnspecified || c.State == callstore.StateDead || c.NRState == callstore.NRUnspecified {
		h.t.Fatalf("leg %d: bad live state %v/%v", c.UID, c.State, c.NRState)
	}
	if c.Cause != 0 {
		h.t.Fatalf("leg %d: cause on a live leg", c.UID)
	}
	if l.peer != nil && (!live(l.peer) || l.peer.peer != l) {
		h.t.Fatalf("leg %d: bad peer link", c.UID)
	}
	if c.PeerUID != 0 {
		if _, ok := h.store.Get(c.PeerUID); !ok {
			h.t.Fatalf("leg %d: bridged to non-live %d", c.UID, c.PeerUID)
		}
	}
	if rg := l.ringing; rg != nil {
		if rg.origin != nil && !live(rg.origin) {
			h.t.Fatalf("leg %d: rings for a dead caller", c.UID)
		}
		found := false
		for _, x := range rg.legs {
			found = found || x == l
		}
		if !found {
			h.t.Fatalf("leg %d: not in its ringer", c.UID)
		}
	}
	if rg := l.alerting; rg != nil {
		for _, x := range rg.legs {
			if !live(x) || x.ringing != rg {
				h.t.Fatalf("leg %d: ringer holds a dead leg", c.UID)
			}
		}
	}
	if l.ext != nil && l.ext.leg != l {
		h.t.Fatalf("leg %d: remote link broken", c.UID)
	}
	if l.qAgent != nil && (!live(l.qAgent) || l.qAgent.queue != l) {
		h.t.Fatalf("leg %d: bad agent link", c.UID)
	}
	if l.queue != nil && (!live(l.queue) || l.queue.qAgent != l) {
		h.t.Fatalf("leg %d: bad queue link", c.UID)
	}
}
