package replica

import (
	"encoding/json"
	"fmt"

	"callcontrold/callstore"
)

// The JSON formats of version 1 are no longer written, but a log or a
// snapshot bucket written before the binary format holds them: these
// write them as the code of version 1 did, so that tests check they are
// still read.

// encodeOpJSON writes a log message in the JSON format of version 1.
func encodeOpJSON(leader string, term uint64, changes []callstore.Change) ([]byte, error) {
	o := op{V: opVersion, Leader: leader, Term: term, Changes: make([]opChange, len(changes))}
	for i, ch := range changes {
		if ch.Call == nil || ch.Call.DeviceRef == nil {
			return nil, fmt.Errorf("replica: change %d: a call without a device", i)
		}
		o.Changes[i] = opChange{Type: ch.Type, Call: toOpCall(ch.Call)}
		for _, x := range ch.Xfer {
			o.Changes[i].Xfer = append(o.Changes[i].Xfer, opXfer(x))
		}
	}
	return json.Marshal(&o)
}

// encodeSnapshotJSON writes a snapshot in the JSON format of version 1.
func encodeSnapshotJSON(s *snapshot, calls []*callstore.Call) ([]byte, error) {
	s.V = snapshotVersion
	s.Calls = make([]opCall, len(calls))
	for i, c := range calls {
		s.Calls[i] = toOpCall(c)
	}
	return json.Marshal(s)
}

// toOpCall converts a leg to its JSON log form, as version 1 wrote it.
func toOpCall(c *callstore.Call) opCall {
	oc := opCall{
		UID: c.UID, ID: c.ID, CID: c.CID, Device: c.Device, DeviceCompany: c.DeviceCompany,
		OwnerID: c.OwnerID, OwnerLogin: c.OwnerLogin, Label: c.Label, Name: c.Name, Number: c.Number,
		StampMillis: c.StampMillis, StartMillis: c.StartMillis, Queue: toOpQueue(c.Queue), Company: c.Company,
		DTMF: c.DTMF, HasDTMF: c.HasDTMF, Cause: c.Cause, CauseTxt: c.CauseText(), Party: c.Party,
		Features: c.Features, State: c.State, NRState: c.NRState, JSState: c.JSState, JSInfo: opJSInfo(c.JSInfo),
		PeerUID: c.PeerUID,
	}
	if x := c.Extension; x != nil {
		oc.Extension = &opExtension{Number: x.Number, Queue: toOpQueue(x.Queue), Company: x.Company, Type: x.Type, Name: x.Name}
	}
	return oc
}

// toOpQueue keeps nil as nil: most legs are never queued.
func toOpQueue(q *callstore.Queue) *opQueue {
	if q == nil {
		return nil
	}
	o := opQueue(*q)
	return &o
}
