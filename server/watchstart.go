package server

import (
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"callcontrold/wirefield"
)

// The frames a watch sends by itself, encoded by hand as the frames of
// events are (watchencode.go): the started frame, the snapshot's end and
// the progress frames. Every watch sends the first two as it opens, and a
// quiet one a progress frame every ProgressInterval: through generated
// messages each was half a dozen small objects (the messages, the oneof's
// wrapper, the duration, the token's string, the marshalled bytes), all
// dropped once sent. What opening a watch allocates and drops leaves holes
// in the heap next to what the idle streams keep, so these are one
// allocation each (tokenFrames: two frames and their bytes).

// tokenFrameCap is room for a frame made by appendTokenFrame.
const tokenFrameCap = 48

// tokenFrames holds up to two hand-encoded frames in one allocation, and
// the list of a watch's first send (sendStart): a list of its own was one
// more small object dropped per open, in a size class idle streams keep
// objects in.
type tokenFrames struct {
	frames [2]rawFrame
	buf    [2 * tokenFrameCap]byte
	msgs   [3]any
}

// startedAndEnd returns the started frame and, unless end is 0, the
// frame made by appendTokenFrame(end, rev, token), sharing one allocation
// with msgs: an empty list with room for three frames (the started frame,
// a snapshot chunk and the snapshot's end).
func startedAndEnd(progressInterval time.Duration, historyWindow, oldest, rev int64, end protowire.Number, token resumeToken) (started, last *rawFrame, msgs []any) {
	t := &tokenFrames{}
	msgs = t.msgs[:0]
	b := appendStarted(t.buf[:0:tokenFrameCap], progressInterval, historyWindow, oldest, rev)
	t.frames[0].set(b)
	if end == 0 {
		return &t.frames[0], nil, msgs
	}
	b = appendTokenFrame(t.buf[tokenFrameCap:tokenFrameCap:2*tokenFrameCap], end, rev, token)
	t.frames[1].set(b)
	return &t.frames[0], &t.frames[1], msgs
}

// tokenFrame returns a frame made by appendTokenFrame.
func tokenFrame(kind protowire.Number, rev int64, token resumeToken) *rawFrame {
	return newRawFrame(appendTokenFrame(make([]byte, 0, tokenFrameCap), kind, rev, token))
}

// appendStarted appends WatchCallsResponse{started: WatchStarted{...}}.
func appendStarted(b []byte, progressInterval time.Duration, historyWindow, oldest, rev int64) []byte {
	b, frame := wirefield.OpenMessage(b, wirefield.ResponseStarted)
	// As durationpb.New: whole seconds, and the nanoseconds left, of the
	// same sign.
	secs := int64(progressInterval / time.Second)
	nanos := int64(progressInterval % time.Second)
	b, d := wirefield.OpenMessage(b, wirefield.StartedProgressInterval)
	b = wirefield.AppendInt(b, wirefield.DurationSeconds, secs)
	b = wirefield.AppendInt(b, wirefield.DurationNanos, nanos)
	b = wirefield.CloseMessage(b, d)
	b = wirefield.AppendInt(b, wirefield.StartedHistoryWindow, historyWindow)
	b = wirefield.AppendInt(b, wirefield.StartedOldestRevision, oldest)
	b = wirefield.AppendInt(b, wirefield.StartedRevision, rev)
	return wirefield.CloseMessage(b, frame)
}

// appendTokenFrame appends WatchCallsResponse{snapshot_end: SnapshotEnd{...}}
// (kind wirefield.ResponseSnapshotEnd) or {progress: Progress{...}}
// (wirefield.ResponseProgress): a revision and its resume token, fields
// 1 and 2 of either.
func appendTokenFrame(b []byte, kind protowire.Number, rev int64, token resumeToken) []byte {
	b, frame := wirefield.OpenMessage(b, kind)
	b = wirefield.AppendInt(b, wirefield.SnapshotEndRevision, rev)
	b = protowire.AppendTag(b, wirefield.SnapshotEndResumeToken, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(tokenLen))
	b = token.appendTo(b)
	return wirefield.CloseMessage(b, frame)
}
