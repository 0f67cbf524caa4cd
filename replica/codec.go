package replica

import (
	"encoding/json"
	"fmt"
	"sync"

	"callcontrold/callstore"
	"callcontrold/pbx"
)

// opVersion is the version of the JSON log message format, the first
// one. A replica refuses a message of a version it does not know rather
// than guess at it; the binary format (wire.go) has versions of its own.
const opVersion = 1

// op is one log message: one engine operation, all its legs, as one
// revision. Changes is what the JSON format of version 1 holds; the
// binary format decodes into callstore.Changes directly. Either format
// is explicit, not the Go structs, so renaming a field in callstore
// cannot silently change what an old log means.
type op struct {
	V       int        `json:"v"`
	Leader  string     `json:"leader"` // replica id of the appender
	Term    uint64     `json:"term"`   // lease revision it held: grows with every new leader
	Changes []opChange `json:"changes"`
	// Request is the client request the operation carried out (it had a
	// request_id), in the binary format only; nil: none.
	Request *pbx.Request `json:"-"`
}

type opChange struct {
	Type callstore.EventType `json:"type"`
	Call opCall              `json:"call"`
	Xfer []opXfer            `json:"xfer,omitempty"`
}

type opXfer struct {
	UID    int64  `json:"uid"`
	ID     string `json:"id"`
	Device string `json:"device"`
}

type opCall struct {
	UID           int64              `json:"uid"`
	ID            string             `json:"id"`
	CID           string             `json:"cid,omitempty"`
	Device        string             `json:"device"`
	DeviceCompany string             `json:"device_company,omitempty"`
	OwnerID       int64              `json:"owner_id,omitempty"`
	OwnerLogin    string             `json:"owner_login,omitempty"`
	Label         string             `json:"label,omitempty"`
	Name          string             `json:"name,omitempty"`
	Number        string             `json:"number,omitempty"`
	StampMillis   int64              `json:"stamp_ms,omitempty"`
	StartMillis   int64              `json:"start_ms,omitempty"`
	Queue         *opQueue           `json:"queue,omitempty"`
	Company       string             `json:"company,omitempty"`
	DTMF          string             `json:"dtmf,omitempty"`
	HasDTMF       bool               `json:"has_dtmf,omitempty"`
	Extension     *opExtension       `json:"extension,omitempty"`
	Cause         int32              `json:"cause,omitempty"`
	CauseTxt      string             `json:"cause_txt,omitempty"` // written for older readers; a Call derives it from Cause
	Party         callstore.Party    `json:"party,omitempty"`
	Features      callstore.Features `json:"features,omitempty"`
	State         callstore.State    `json:"state"`
	NRState       callstore.NRState  `json:"nr_state"`
	JSState       callstore.JSState  `json:"js_state,omitempty"`
	JSInfo        opJSInfo           `json:"js_info"`
	PeerUID       int64              `json:"peer_uid,omitempty"`
}

type opExtension struct {
	Number  string                  `json:"number"`
	Queue   *opQueue                `json:"queue,omitempty"`
	Company string                  `json:"company,omitempty"`
	Type    callstore.ExtensionType `json:"type"`
	Name    string                  `json:"name,omitempty"`
}

type opQueue struct {
	Name       string `json:"name,omitempty"`
	Number     string `json:"number,omitempty"`
	In         int64  `json:"in,omitempty"`
	Out        int64  `json:"out,omitempty"`
	CallUID    int64  `json:"call_uid,omitempty"`
	CallID     string `json:"call_id,omitempty"`
	CallDevice string `json:"call_device,omitempty"`
}

type opJSInfo struct {
	Established bool `json:"established,omitempty"`
	Ended       bool `json:"ended,omitempty"`
	HoldLocal   bool `json:"hold_local,omitempty"`
	HoldRemote  bool `json:"hold_remote,omitempty"`
	MutedAudio  bool `json:"muted_audio,omitempty"`
	MutedVideo  bool `json:"muted_video,omitempty"`
}

// fromOpQueue keeps nil as nil: most legs are never queued.
func fromOpQueue(q *opQueue) *callstore.Queue {
	if q == nil {
		return nil
	}
	o := callstore.Queue(*q)
	return &o
}

// encodeOp writes a log message in the binary format (wire.go): the
// changes of one operation and the client request it carried out (nil:
// none).
func encodeOp(leader string, term uint64, req *pbx.Request, changes []callstore.Change) ([]byte, error) {
	return encodeOpBinary(leader, term, req, changes)
}

// decodeOp reads a log message in the binary format, or in the JSON
// format of version 1 that a log written before it holds.
func decodeOp(data []byte) (*op, []callstore.Change, error) {
	if binary, err := isBinary(data, "log message", opBinaryVersion); binary || err != nil {
		if err != nil {
			return nil, nil, err
		}
		return decodeOpBinary(data[2:])
	}
	return decodeOpJSON(data)
}

func decodeOpJSON(data []byte) (*op, []callstore.Change, error) {
	var o op
	if err := json.Unmarshal(data, &o); err != nil {
		return nil, nil, fmt.Errorf("replica: malformed log message: %w", err)
	}
	if o.V != opVersion {
		return nil, nil, fmt.Errorf("replica: log message version %d, this build reads %d (JSON) and %d (binary)", o.V, opVersion, opBinaryVersion)
	}
	changes := make([]callstore.Change, len(o.Changes))
	for i, oc := range o.Changes {
		changes[i] = callstore.Change{Type: oc.Type, Call: fromOpCall(&oc.Call)}
		for _, x := range oc.Xfer {
			changes[i].Xfer = append(changes[i].Xfer, callstore.XferLeg(x))
		}
	}
	return &o, changes, nil
}

// deviceRefs shares one callstore.DeviceRef per device among the calls
// this process decodes, as a leader's engine shares one per device: a
// follower holds no more per live call than its leader. Its size is the
// number of distinct devices (and owners) in the log.
var deviceRefs deviceRefCache

type deviceRefCache struct {
	mu sync.Mutex
	m  map[callstore.DeviceRef]*callstore.DeviceRef
}

// get returns the shared DeviceRef equal to v.
func (r *deviceRefCache) get(v callstore.DeviceRef) *callstore.DeviceRef {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.m[v]; ok {
		return p
	}
	if r.m == nil {
		r.m = make(map[callstore.DeviceRef]*callstore.DeviceRef)
	}
	p := &v
	r.m[v] = p
	return p
}

// fromOpCall converts a leg from its JSON log form; a log message and a
// snapshot write legs alike.
func fromOpCall(c *opCall) *callstore.Call {
	call := &callstore.Call{
		UID: c.UID, ID: c.ID, CID: c.CID,
		DeviceRef: deviceRefs.get(callstore.DeviceRef{Device: c.Device, DeviceCompany: c.DeviceCompany, OwnerID: c.OwnerID, OwnerLogin: c.OwnerLogin}),
		Label:     c.Label, Name: c.Name, Number: c.Number,
		StampMillis: c.StampMillis, StartMillis: c.StartMillis, Queue: fromOpQueue(c.Queue), Company: c.Company,
		DTMF: c.DTMF, HasDTMF: c.HasDTMF, Cause: c.Cause, Party: c.Party,
		Features: c.Features, State: c.State, NRState: c.NRState, JSState: c.JSState, JSInfo: callstore.JSInfo(c.JSInfo),
		PeerUID: c.PeerUID,
	}
	if x := c.Extension; x != nil {
		call.Extension = &callstore.ExtensionRef{Number: x.Number, Queue: fromOpQueue(x.Queue), Company: x.Company, Type: x.Type, Name: x.Name}
	}
	return call
}
