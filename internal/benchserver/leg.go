package benchserver

import (
	"strconv"
	"time"

	"callcontrold/callstore"
)

// Leg is one device's leg as the fan-out benchmarks (cmd/callbench's and
// the peer benchmark's) move it straight in the store, the way a switch
// commits: a new ringing leg, then up, hold, up, dead, and a new leg
// again. Its zero value has no leg yet.
type Leg struct {
	call *callstore.Call
	step int
}

// Next returns the leg's next change on device, a new leg taking its uid
// from newUID, and keeps it as the leg's state: the caller may still fill
// in the change's Call (the benchmarks write the commit time into Name)
// before it commits it.
func (l *Leg) Next(newUID func() int64, device string) callstore.Change {
	ch := l.next(newUID, device)
	l.call = ch.Call
	if ch.Call.State == callstore.StateDead {
		l.call = nil
	}
	return ch
}

func (l *Leg) next(newUID func() int64, device string) callstore.Change {
	now := time.Now()
	if l.call == nil {
		uid := newUID()
		l.step = 0
		return callstore.Change{Type: callstore.EventNew, Call: &callstore.Call{
			UID: uid, ID: "bench-" + strconv.FormatInt(uid, 10), CID: "c" + strconv.FormatInt(uid, 10),
			DeviceRef: &callstore.DeviceRef{Device: device, DeviceCompany: "default", OwnerID: 2, OwnerLogin: "load"},
			Name:      "Remote party", Number: "+19990000001", StampMillis: now.UnixMilli(),
			Party: callstore.PartyCallee, Features: callstore.FeatureAnswer,
			State: callstore.StateRing, NRState: callstore.NRRinging,
		}}
	}
	n := *l.call
	l.step++
	switch l.step {
	case 1, 3:
		n.State, n.NRState, n.Features = callstore.StateUp, callstore.NRUp, callstore.FeatureHold
		if n.StartMillis == 0 {
			n.StartMillis = now.UnixMilli()
		}
	case 2:
		n.State, n.NRState, n.Features = callstore.StateHold, callstore.NRHold, callstore.FeatureTalk
	default:
		n.State, n.NRState, n.Features = callstore.StateDead, callstore.NRDead, 0
		n.Cause = 16
	}
	return callstore.Change{Type: callstore.EventUpdate, Call: &n}
}
