package callstore

import "strconv"

// This file is the store's data model: what one leg of a call is, and what
// a committed change looks like. The values are plain data; the telephony
// rules that produce them live in package pbx, and the wire form in
// package server.

// State is the call state of the reference (call.state).
type State uint8

// The call states. StateUnspecified is never stored.
const (
	StateUnspecified State = iota
	StateDown
	StateDial
	StateRing
	StateUp
	StateHold
	StatePark
	StateDead
)

var stateNames = [...]string{"unspecified", "down", "dial", "ring", "up", "hold", "park", "dead"}

// String returns the reference's name of the state ("ring", "up", ...).
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "invalid"
}

// NRState is the near-end (Asterisk channel) state (call.nrState).
type NRState uint8

// The near-end states. NRUnspecified is never stored.
const (
	NRUnspecified NRState = iota
	NRDown
	NRDial
	NRRing // the line rings toward the PBX: the caller's side
	NRRinging
	NRUp
	NRHold
	NRPark
	NRDead
)

var nrStateNames = [...]string{"unspecified", "down", "dial", "ring", "ringing", "up", "hold", "park", "dead"}

// String returns the reference's name of the near-end state.
func (s NRState) String() string {
	if int(s) < len(nrStateNames) {
		return nrStateNames[s]
	}
	return "invalid"
}

// Party is the side of the call a leg is on (call.party).
type Party uint8

// The parties.
const (
	PartyUnspecified Party = iota
	PartyUnknown
	PartyCaller
	PartyCallee
)

// Features is a bit set of what the device can be told to do with the call
// right now (call.features).
type Features uint8

// The features.
const (
	FeatureHold Features = 1 << iota
	FeatureTalk
	FeatureAnswer
)

// JSState is the WebRTC session state (call.jsState). JSNone marks a leg
// on a device that is not WebRTC.
type JSState uint8

// The WebRTC session states.
const (
	JSNone JSState = iota
	JSUnknown
	JSTrying
	JSProgress
	JSConfirmed
	JSCancelled
	JSBusy
	JSRejected
	JSUnavailable
	JSTerminated
)

// JSInfo is the WebRTC session information (call.jsInfo); its state is
// Call.JSState.
type JSInfo struct {
	Established bool
	Ended       bool
	HoldLocal   bool
	HoldRemote  bool
	MutedAudio  bool
	MutedVideo  bool
}

// ExtensionType is what dialling an extension reaches.
type ExtensionType uint8

// The extension types.
const (
	ExtUnspecified ExtensionType = iota
	ExtDevice
	ExtRingAll
	ExtHunt
	ExtQueue
	ExtPark
)

// ExtensionRef is the extension a call was most recently received via.
type ExtensionRef struct {
	Number string
	Queue  *Queue // queue data (inq, outq, qname, qnumber, qcall); nil for calls never queued

	Company string
	Type    ExtensionType
	Name    string
}

// Queue is what a leg carries while it is, or was, in a queue. Most legs
// never are, so it lives behind a pointer and costs them 8 bytes. Like the
// Call that points at it, a committed Queue is immutable and may be shared
// by several committed values: copy it to change it.
type Queue struct {
	Name, Number string // qname, qnumber: the calling party while queued
	In, Out      int64  // inq, outq: entered / left the queue, epoch seconds; 0 if not yet
	CallUID      int64  // qcall: the agent's leg that answered, 0 if none
	CallID       string // PBX id of that leg (qcall outlives the leg it names)
	CallDevice   string // device of that leg: decides who may see the reference
}

// Call is one leg: one call on one device or in a queue. A *Call handed
// out by the store is immutable: a change commits a new value, so readers
// never see a half-applied change. Copy it (c2 := *c) to derive the next
// version.
type Call struct {
	UID int64  // API identifier, never reused in a process
	ID  string // PBX identifier (may be reused by the PBX)
	CID string // channel identifier on the device
	// The device the leg is on: Device, DeviceCompany, OwnerID and
	// OwnerLogin. Never nil in a stored Call; shared by the legs of a
	// device and immutable: to change them, point at another DeviceRef.
	*DeviceRef

	Label, Name, Number string // the other party

	StampMillis int64  // started, epoch ms
	StartMillis int64  // first answered, epoch ms; 0 until then
	Queue       *Queue // inq, outq, qname, qnumber, qcall; nil for a leg never queued (shared, immutable)

	Company   string        // target company of an inbound call
	DTMF      string        // collected DTMF digits
	Extension *ExtensionRef // received via, nil if undetermined (shared, immutable)
	PeerUID   int64         // leg this one is bridged to, 0 if none (internal to the switch)

	// The small fields last, together: 16 bytes without padding, so a
	// Call is 184 bytes and takes the 192-byte size class (one committed
	// value per live call; TestCallSize).
	Cause    int32 // Q.850 cause, only when dead; its text is CauseText()
	HasDTMF  bool  // DTMF was collected at least once (dtmfString non-null)
	Party    Party
	Features Features
	State    State
	NRState  NRState
	JSState  JSState
	JSInfo   JSInfo
}

// Dead reports whether the leg has ended.
func (c *Call) Dead() bool { return c.State == StateDead }

// DeviceRef is the device a leg is on, as its Call shows it. The legs of
// one device share one DeviceRef: 8 bytes in each Call instead of 56.
type DeviceRef struct {
	Device        string // device name, e.g. "SIP/201"
	DeviceCompany string // company of the device: visibility and filters
	OwnerID       int64  // contact id of the device's owner, 0 if none
	OwnerLogin    string // login of the device's owner, "" if none
}

// CauseText returns the text of the leg's cause (call.causeTxt), "" while
// it has none.
func (c *Call) CauseText() string {
	if c.Cause == 0 {
		return ""
	}
	return CauseText(c.Cause)
}

var causeTexts = map[int32]string{
	1: "Unallocated (unassigned) number", 3: "No route to destination",
	16: "Normal Clearing", 17: "User busy", 18: "No user responding",
	19: "User alerting, no answer", 20: "Subscriber absent", 21: "Call Rejected", 22: "Number changed",
	23: "Redirected to new destination", 26: "Answered elsewhere",
	27: "Destination out of order", 28: "Invalid number format",
	31: "Normal, unspecified", 34: "Circuit/channel congestion",
	38: "Network out of order", 41: "Temporary failure",
	42: "Switching equipment congestion", 127: "Interworking, unspecified",
}

// CauseText returns Asterisk's text for a Q.850 cause.
func CauseText(cause int32) string {
	if t, ok := causeTexts[cause]; ok {
		return t
	}
	return "Cause " + strconv.Itoa(int(cause))
}

// EventType is the reference's event name.
type EventType uint8

// The event types. A leg that ends is an EventUpdate with StateDead.
const (
	EventUnspecified EventType = iota
	EventNew
	EventUpdate
	EventTransfer
)

// XferLeg names one call of the bridge a transfer created (xfer_data).
type XferLeg struct {
	UID    int64
	ID     string
	Device string
}
