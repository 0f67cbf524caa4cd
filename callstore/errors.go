package callstore

import (
	"errors"
	"fmt"
)

// Errors returned by the store. Test them with errors.Is; they may be
// wrapped with detail.
var (
	// ErrCompacted: the requested revision is older than the retained
	// history, or the watcher fell behind it. The concrete error is a
	// *CompactedError naming the oldest resumable revision.
	ErrCompacted = errors.New("callstore: revision compacted")
	// ErrEpoch: a resume token from another store epoch (another process).
	ErrEpoch = errors.New("callstore: resume token from another store epoch")
	// ErrFutureRevision: a resume revision beyond the current revision.
	ErrFutureRevision = errors.New("callstore: resume revision is in the future")
	// ErrClosed: the watcher or the store was closed.
	ErrClosed = errors.New("callstore: closed")
	// ErrInvalidChange: Commit was given changes it cannot apply.
	ErrInvalidChange = errors.New("callstore: invalid change")
	// ErrRevisionGap: ApplyAt was given a revision beyond the next one.
	ErrRevisionGap = errors.New("callstore: revision gap")
	// ErrInvalidSnapshot: Restore was given a snapshot it cannot apply.
	ErrInvalidSnapshot = errors.New("callstore: invalid snapshot")
)

// CompactedError is the concrete ErrCompacted: Oldest is the oldest
// revision a watch can resume after right now.
type CompactedError struct {
	Oldest int64
}

// Error implements error.
func (e *CompactedError) Error() string {
	return fmt.Sprintf("callstore: revision compacted; oldest resumable revision is %d", e.Oldest)
}

// Is makes errors.Is(err, ErrCompacted) true.
func (e *CompactedError) Is(target error) bool { return target == ErrCompacted }
