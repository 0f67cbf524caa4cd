// Package wirefield names the protobuf field numbers that code writes or
// reads by hand instead of through generated messages: the watch fan-out
// assembles WatchCallsResponse frames from cached event encodings
// (server), and the load client reads frames without unmarshalling them
// (cmd/callbench). Keeping the numbers here, in one place, lets one test
// check every one of them against the generated descriptors, so a field
// renumbered or retyped in the proto fails that test instead of producing
// frames that clients misread.
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

// The fields inside the frames, and down to a call's name (which the
// fan-out benchmark uses to carry its commit time).
const (
	StartedRevision  protowire.Number = 4 // WatchStarted.revision (int64)
	BatchRevision    protowire.Number = 1 // EventBatch.revision (int64)
	BatchResumeToken protowire.Number = 2 // EventBatch.resume_token (string)
	BatchEvents      protowire.Number = 3 // EventBatch.events (repeated CallEvent)
	ProgressRevision protowire.Number = 1 // Progress.revision (int64)
	EventCall        protowire.Number = 3 // CallEvent.call (Call)
	CallName         protowire.Number = 7 // Call.name (string)
)
