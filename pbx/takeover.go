package pbx

import (
	"fmt"

	"callcontrold/callstore"
)

// CauseTemporaryFailure (Q.850 41) ends the legs a failed switch held.
const CauseTemporaryFailure int32 = 41

// EndForeignLegs ends, in one revision, every live leg of the store that
// this engine did not create, with cause, and returns how many it ended.
//
// A replica that takes over from a dead leader calls it on its fresh
// engine before serving. Those legs' signalling lived in the dead
// process: a SIP dialog cannot move to another process, and a simulated
// handset's timers died with it. So rather than leave legs that nothing
// can end, the new leader ends them with a clear cause (41, temporary
// failure) and watchers see every one of them end.
func (e *Engine) EndForeignLegs(cause int32) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return 0, ErrClosed
	}
	live, _ := e.store.List(nil, nil, 0, 0)
	var changes []callstore.Change
	for _, c := range live {
		if _, ours := e.legs[c.UID]; ours {
			continue
		}
		changes = append(changes, callstore.Change{Type: callstore.EventUpdate, Call: ended(c, cause)})
	}
	if len(changes) == 0 {
		return 0, nil
	}
	if _, err := e.put(nil, changes...); err != nil {
		return 0, fmt.Errorf("pbx: end foreign legs: %w", err)
	}
	return len(changes), nil
}

// ended is c as it ends with cause, rendered as render renders a dead leg.
func ended(c *callstore.Call, cause int32) *callstore.Call {
	n := *c
	n.State, n.NRState, n.Features, n.PeerUID = callstore.StateDead, callstore.NRDead, 0, 0
	n.Cause = cause
	if n.JSState != callstore.JSNone {
		n.JSState = callstore.JSUnavailable
		if n.JSInfo.Established {
			n.JSState = callstore.JSTerminated
		}
		n.JSInfo.Ended, n.JSInfo.HoldLocal, n.JSInfo.HoldRemote = true, false, false
	}
	return &n
}

// AdoptBridges takes over, from the store, every call that is simply two
// phones talking: two live legs on phones of the directory, each up or on
// hold, bridged to each other (PeerUID both ways). The engine then
// controls them as if it had set them up: hold, talk, transfer, hang up.
// It returns how many legs it adopted; EndForeignLegs ends the rest.
//
// Only a driver whose calls need no signalling state in the process that
// set them up can continue them: the simulated handsets can, a SIP
// dialog cannot (its dialog state died with the process that held it),
// so a replica over the sip driver does not call this. Ringing calls,
// queues, parked calls and external parties are not adopted: they hang
// on timers and far ends the dead process owned.
func (e *Engine) AdoptBridges() (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return 0, ErrClosed
	}
	live, _ := e.store.List(nil, nil, 0, 0)
	byUID := make(map[int64]*callstore.Call, len(live))
	for _, c := range live {
		byUID[c.UID] = c
	}
	adopted := 0
	for _, c := range live {
		p := byUID[c.PeerUID]
		if c.UID > c.PeerUID || p == nil || p.PeerUID != c.UID || e.legs[c.UID] != nil || e.legs[p.UID] != nil {
			continue // each pair once, from its lower uid
		}
		a, b := e.adoptable(c), e.adoptable(p)
		if a == nil || b == nil {
			continue
		}
		a.peer, b.peer = b, a
		for _, l := range []*leg{a, b} {
			e.legs[l.c.UID] = l
			e.byDev[l.dev.Name] = append(e.byDev[l.dev.Name], l)
		}
		adopted += 2
	}
	return adopted, nil
}

// adoptable returns the engine's leg for c if c is a talking phone leg
// whose committed value the engine renders unchanged, else nil.
func (e *Engine) adoptable(c *callstore.Call) *leg {
	dev, ok := e.dir.Device(c.Device)
	if !ok || !isPhone(dev) {
		return nil
	}
	if st := c.State; (st != callstore.StateUp && st != callstore.StateHold) ||
		(c.NRState != callstore.NRUp && c.NRState != callstore.NRHold) || c.Queue != nil {
		return nil
	}
	return &leg{c: c, cur: c, dev: dev, established: true} // c is cur outside an operation
}
