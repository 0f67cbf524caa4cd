package replica

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// snapshotPoll is how often the leader compares its revision with the
// newest snapshot's: a revision-count trigger is noticed within this.
const snapshotPoll = 100 * time.Millisecond

// maintain keeps the store's resumable range within what the log retains
// (every replica: a token older than the log is OUT_OF_RANGE everywhere,
// even where the store's history still holds it), and, while this
// replica leads, writes a snapshot when one is due. It runs until ctx
// ends.
func (n *Node) maintain(ctx context.Context) {
	tick := time.NewTicker(snapshotPoll)
	defer tick.Stop()
	var info *jetstream.StreamInfo
	var polled time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if time.Since(polled) >= n.cfg.LeaseTTL/4 {
			if i, err := n.streamInfo(ctx); err == nil {
				info, polled = i, time.Now()
				n.store.Compact(retainedFrom(&info.State) - 1)
			}
		}
		if !n.Leading() || !n.snapshotDue(info) {
			continue
		}
		// Another leader may have written one since this replica last
		// knew: ask the bucket before writing one more.
		if _, rev, _, err := n.newestSnapshot(ctx); err == nil && rev > n.snapRev.Load() {
			n.snapRev.Store(rev)
			if !n.snapshotDue(info) {
				continue
			}
		}
		rev, err := n.writeSnapshot(ctx)
		if err != nil {
			n.log.Warn("cannot write a snapshot; will retry", "error", err)
			continue
		}
		n.snapRev.Store(rev)
	}
}

func (n *Node) streamInfo(ctx context.Context) (*jetstream.StreamInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, setupAttemptTimeout)
	defer cancel()
	return n.stream.Info(ctx)
}

// snapshotDue: the store has moved SnapshotEvery revisions (at most half
// the stream's revision limit) past the newest snapshot this replica
// knows of, or, on a stream with limits, that
// snapshot is in the older half of what the stream retains. The second
// rule is what keeps a snapshot that reaches the log's first revision
// always there, whatever the limit (revisions, age or bytes): the leader
// writes a new one while the stream still holds every revision after the
// newest.
func (n *Node) snapshotDue(info *jetstream.StreamInfo) bool {
	rev, snap := n.store.Revision(), n.snapRev.Load()
	every := n.cfg.SnapshotEvery
	if info != nil && info.Config.MaxMsgs > 0 {
		every = min(every, max(info.Config.MaxMsgs/2, 1))
	}
	switch {
	case rev <= snap:
		return false
	case rev-snap >= every:
		return true
	case info == nil || !limited(&info.Config):
		return false
	}
	first, last := retainedFrom(&info.State), int64(info.State.LastSeq)
	return snap < first-1+(last-first+1)/2
}

// limited reports whether the stream drops old revisions.
func limited(c *jetstream.StreamConfig) bool {
	return c.MaxMsgs > 0 || c.MaxAge > 0 || c.MaxBytes > 0
}
