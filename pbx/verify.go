package pbx

import (
	"errors"
	"fmt"

	"callcontrold/callstore"
)

// Verify checks the engine's model against the store: the same live legs,
// each leg's committed value the store's, links only between live legs,
// no timer left for a dead leg. It returns the first disagreement. Tests
// call it after every step; it is cheap enough for a debug endpoint.
func (e *Engine) Verify() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for uid, l := range e.legs {
		if l.dead || l.cur == nil {
			return fmt.Errorf("leg %d: dead or uncommitted leg kept", uid)
		}
		if got, ok := e.store.Get(uid); !ok || got != l.cur {
			return fmt.Errorf("leg %d: store holds %v, engine %v", uid, got, l.cur)
		}
		if l.c != l.cur {
			return fmt.Errorf("leg %d: a working copy outlived its operation", uid)
		}
		if err := e.verifyLeg(l); err != nil {
			return fmt.Errorf("leg %d: %w", uid, err)
		}
	}
	for l := range e.offHooks {
		if e.legs[l.c.UID] != l {
			return fmt.Errorf("leg %d: off-hook wait kept for a leg the engine forgot", l.c.UID)
		}
	}
	for l := range e.changed {
		if e.legs[l.c.UID] != l {
			return fmt.Errorf("leg %d: change wait kept for a leg the engine forgot", l.c.UID)
		}
	}
	for l := range e.answerFailed {
		if e.legs[l.c.UID] != l {
			return fmt.Errorf("leg %d: failed answer request kept for a leg the engine forgot", l.c.UID)
		}
	}
	if calls, _ := e.store.List(nil, nil, 0, 0); len(calls) != len(e.legs) {
		return fmt.Errorf("store has %d live legs, engine %d", len(calls), len(e.legs))
	}
	for id, r := range e.remotes {
		switch {
		case r.leg == nil && r.ringer == nil:
			return fmt.Errorf("external party %d: neither a leg nor a group, yet kept", id)
		case r.leg != nil && (r.leg.dead || r.leg.ext != r):
			return fmt.Errorf("external party %d: link to leg %d broken", id, r.leg.c.UID)
		case r.ringer != nil && r.ringer.rem != r:
			return fmt.Errorf("external party %d: link to its group broken", id)
		}
	}
	return nil
}

func (e *Engine) verifyLeg(l *leg) error {
	live := func(x *leg) bool { return x != nil && !x.dead && e.legs[x.c.UID] == x }
	c := l.cur
	switch {
	case c.State == callstore.StateUnspecified || c.State == callstore.StateDead || c.NRState == callstore.NRUnspecified || c.NRState == callstore.NRDead:
		return fmt.Errorf("bad live state %v/%v", c.State, c.NRState)
	case c.Cause != 0:
		return errors.New("cause on a live leg")
	case l.peer != nil && (!live(l.peer) || l.peer.peer != l):
		return errors.New("bad peer link")
	case l.ext != nil && (l.ext.leg != l || e.remotes[l.ext.id] != l.ext):
		return errors.New("remote link broken")
	case l.qAgent != nil && (!live(l.qAgent) || l.qAgent.queue != l):
		return errors.New("bad agent link")
	case l.queue != nil && (!live(l.queue) || l.queue.qAgent != l):
		return errors.New("bad queue link")
	case c.Queue != nil && c.Queue.CallUID != 0 && !isQueue(l.dev):
		return errors.New("qcall on a non-queue leg")
	}
	if c.PeerUID != 0 {
		if _, ok := e.store.Get(c.PeerUID); !ok {
			return fmt.Errorf("bridged to non-live %d", c.PeerUID)
		}
	}
	if rg := l.ringing; rg != nil {
		if rg.origin != nil && !live(rg.origin) {
			return errors.New("rings for a dead caller")
		}
		found := false
		for _, x := range rg.legs {
			found = found || x == l
		}
		if !found {
			return errors.New("not in its ringer")
		}
	}
	if rg := l.alerting; rg != nil {
		for _, x := range rg.legs {
			if !live(x) || x.ringing != rg {
				return errors.New("its ringer holds a dead leg")
			}
		}
	}
	return nil
}
