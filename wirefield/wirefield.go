// Package wirefield names the protobuf field numbers that code writes or
// reads by hand instead of through generated messages: the watch fan-out
// assembles WatchCallsResponse frames from cached event encodings
// (server), writes each event's CallEvent straight from the store's leg
// (server's eventEncoder), and the load client reads frames without
// unmarshalling them (cmd/callbench). Keeping the numbers here, in one place, lets one test
// check every one of them against the generated descriptors, so a field
// renumbered or retyped in the proto fails that test instead of producing
// frames that clients misread. The package also holds the appenders
// that write a field in the wire format by hand (append.go), for the
// fan-out's events and for the replicas' log and snapshots.
package wirefield

import "google.golang.org/protobuf/encoding/protowire"

// WatchCallsResponse's frame oneof.
const (
	ResponseStarted     protowire.Number = 1 // WatchCallsResponse.started (WatchStarted)
	ResponseSnapshot    protowire.Number = 2 // WatchCallsResponse.snapshot (SnapshotChunk)
	ResponseSnapshotEnd protowire.Number = 3 // WatchCallsResponse.snapshot_end (SnapshotEnd)
	ResponseEvents      protowire.Number = 4 // WatchCallsResponse.events (EventBatch)
	ResponseProgress    protowire.Number = 5 // WatchCallsResponse.progress (Progress)
)

// The fields inside the frames.
const (
	StartedProgressInterval protowire.Number = 1 // WatchStarted.progress_interval (Duration)
	StartedHistoryWindow    protowire.Number = 2 // WatchStarted.history_window (int64)
	StartedOldestRevision   protowire.Number = 3 // WatchStarted.oldest_revision (int64)
	StartedRevision         protowire.Number = 4 // WatchStarted.revision (int64)
	SnapshotEndRevision     protowire.Number = 1 // SnapshotEnd.revision (int64)
	SnapshotEndResumeToken  protowire.Number = 2 // SnapshotEnd.resume_token (string)
	BatchRevision           protowire.Number = 1 // EventBatch.revision (int64)
	BatchResumeToken        protowire.Number = 2 // EventBatch.resume_token (string)
	BatchEvents             protowire.Number = 3 // EventBatch.events (repeated CallEvent)
	ProgressRevision        protowire.Number = 1 // Progress.revision (int64)
	ProgressResumeToken     protowire.Number = 2 // Progress.resume_token (string)
)

// The responses of the control RPCs on one call (HoldResponse,
// TalkResponse, MuteResponse, HangupResponse, DtmfResponse), which the
// server writes from the store's leg: the same numbers in each.
const (
	ControlCall           protowire.Number = 1 // <Control>Response.call (Call)
	ControlAlreadyApplied protowire.Number = 2 // HoldResponse, TalkResponse, MuteResponse.already_applied (bool)
)

// CallEvent.
const (
	EventType protowire.Number = 1 // CallEvent.type (EventType)
	EventView protowire.Number = 2 // CallEvent.view (ViewChange)
	EventCall protowire.Number = 3 // CallEvent.call (Call)
)

// Call. CallName is also where the fan-out benchmark carries its commit
// time.
const (
	CallUID           protowire.Number = 1  // Call.uid (int64)
	CallID            protowire.Number = 2  // Call.id (string)
	CallCID           protowire.Number = 3  // Call.cid (string)
	CallDevice        protowire.Number = 4  // Call.device (string)
	CallDeviceCompany protowire.Number = 5  // Call.device_company (string)
	CallLabel         protowire.Number = 6  // Call.label (string)
	CallName          protowire.Number = 7  // Call.name (string)
	CallNumber        protowire.Number = 8  // Call.number (string)
	CallQname         protowire.Number = 9  // Call.qname (string)
	CallQnumber       protowire.Number = 10 // Call.qnumber (string)
	CallStamp         protowire.Number = 11 // Call.stamp (Timestamp)
	CallStart         protowire.Number = 12 // Call.start (Timestamp)
	CallInq           protowire.Number = 13 // Call.inq (Timestamp)
	CallOutq          protowire.Number = 14 // Call.outq (Timestamp)
	CallQcall         protowire.Number = 15 // Call.qcall (CallRef)
	CallOwner         protowire.Number = 16 // Call.owner (Contact)
	CallOwnerID       protowire.Number = 17 // Call.owner_id (int64)
	CallCompany       protowire.Number = 18 // Call.company (string)
	CallDTMFString    protowire.Number = 19 // Call.dtmf_string (optional string)
	CallExtension     protowire.Number = 20 // Call.extension (Extension)
	CallCause         protowire.Number = 21 // Call.cause (int32)
	CallCauseTxt      protowire.Number = 22 // Call.cause_txt (string)
	CallParty         protowire.Number = 23 // Call.party (Party)
	CallFeatures      protowire.Number = 24 // Call.features (repeated Feature, packed)
	CallState         protowire.Number = 25 // Call.state (State)
	CallNRState       protowire.Number = 26 // Call.nr_state (NearEndState)
	CallJSState       protowire.Number = 27 // Call.js_state (JsState)
	CallJSInfo        protowire.Number = 28 // Call.js_info (JsInfo)
	CallXferData      protowire.Number = 29 // Call.xfer_data (XferData)
)

// The messages inside a Call (Contact is not here: the server encodes
// each owner's once, through the generated code).
const (
	RefUID            protowire.Number = 1 // CallRef.uid (int64)
	RefID             protowire.Number = 2 // CallRef.id (string)
	RefDevice         protowire.Number = 3 // CallRef.device (string)
	XferCalls         protowire.Number = 1 // XferData.calls (repeated CallRef)
	JSInfoState       protowire.Number = 1 // JsInfo.state (JsState)
	JSInfoEstablished protowire.Number = 2 // JsInfo.established (bool)
	JSInfoEnded       protowire.Number = 3 // JsInfo.ended (bool)
	JSInfoOnhold      protowire.Number = 4 // JsInfo.onhold (JsHold)
	JSInfoMuted       protowire.Number = 5 // JsInfo.muted (JsMuted)
	JSHoldLocal       protowire.Number = 1 // JsHold.local (bool)
	JSHoldRemote      protowire.Number = 2 // JsHold.remote (bool)
	JSMutedAudio      protowire.Number = 1 // JsMuted.audio (bool)
	JSMutedVideo      protowire.Number = 2 // JsMuted.video (bool)
	ExtensionNumber   protowire.Number = 1 // Extension.number (string)
	ExtensionCompany  protowire.Number = 2 // Extension.company (string)
	ExtensionType     protowire.Number = 3 // Extension.type (ExtensionType)
	ExtensionName     protowire.Number = 4 // Extension.name (string)
	TimestampSeconds  protowire.Number = 1 // google.protobuf.Timestamp.seconds (int64)
	TimestampNanos    protowire.Number = 2 // google.protobuf.Timestamp.nanos (int32)
	DurationSeconds   protowire.Number = 1 // google.protobuf.Duration.seconds (int64)
	DurationNanos     protowire.Number = 2 // google.protobuf.Duration.nanos (int32)
)
