package replica

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"callcontrold/callstore"
)

// followRetry is how long the reader waits before trying again to read
// the log, or to find a snapshot that reaches it.
const followRetry = 500 * time.Millisecond

// follow applies the log to the store until ctx ends or the replica
// fails. It reads the log from the store's next revision with an ordered
// consumer; whenever the log no longer holds that revision (the replica
// joined after the stream dropped it, or fell behind the stream's
// retention), it first loads the newest snapshot (catchUp), then reads
// the tail after it.
func (n *Node) follow(ctx context.Context) {
	failing := false // logged once per streak of failures, not every retry
	for ctx.Err() == nil && n.Err() == nil {
		if err := n.catchUp(ctx); err != nil {
			return // ctx ended
		}
		cc, err := n.consume(ctx)
		if err != nil {
			if !failing {
				n.log.Warn("cannot read the log; retrying", "error", err)
				failing = true
			}
			sleep(ctx, followRetry)
			continue
		}
		if failing {
			n.log.Info("reading the log again", "revision", n.store.Revision()+1)
			failing = false
		}
		select {
		case <-ctx.Done():
		case <-n.failedc:
		case <-n.gapc:
			n.log.Warn("the log no longer holds the next revision this replica needs: loading a snapshot", "revision", n.store.Revision()+1)
		}
		cc.Stop()
	}
}

// consume starts an ordered consumer from the store's next revision. Its
// messages are applied while n.gen is the generation it started with: a
// gap ends the generation, so the consumer's later messages are ignored.
func (n *Node) consume(ctx context.Context) (jetstream.ConsumeContext, error) {
	gen := n.gen.Add(1)
	cons, err := n.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   uint64(n.store.Revision() + 1),
	})
	if err != nil {
		return nil, fmt.Errorf("replica: read the log: %w", err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) { n.onMessage(gen, msg) })
	if err != nil {
		return nil, fmt.Errorf("replica: read the log: %w", err)
	}
	return cc, nil
}

// onMessage applies one log message. The ordered consumer delivers the
// stream in order, so every message is the next revision, one already
// applied, or, if the stream dropped revisions before this replica read
// them, one beyond the next: a gap, which ends the consumer's generation
// and has follow load a snapshot.
func (n *Node) onMessage(gen uint64, msg jetstream.Msg) {
	if n.Err() != nil || n.gen.Load() != gen {
		return
	}
	meta, err := msg.Metadata()
	if err != nil {
		n.fail(fmt.Errorf("replica: log message without metadata: %w", err))
		return
	}
	rev := int64(meta.Sequence.Stream)
	if p := n.pipeline(); p != nil {
		p.resolved(rev) // the leader's own append: its pipeline applies it
	}
	if rev <= n.store.Revision() {
		return // applied already: the leader's own append, or a consumer restart
	}
	o, changes, err := decodeOp(msg.Data())
	if err != nil {
		n.fail(fmt.Errorf("replica: revision %d: %w", rev, err))
		return
	}
	n.applyMu.Lock()
	_, err = n.store.ApplyAt(rev, changes...)
	if err == nil {
		n.maxTerm = max(n.maxTerm, o.Term)
		n.requests.add(o.Request, rev, meta.Timestamp, changes)
	}
	n.applyMu.Unlock()
	switch {
	case errors.Is(err, callstore.ErrRevisionGap):
		if n.gen.CompareAndSwap(gen, gen+1) {
			select {
			case n.gapc <- struct{}{}:
			default:
			}
		}
		return
	case err != nil:
		n.fail(fmt.Errorf("replica: apply revision %d: %w", rev, err))
		return
	}
	n.m.applied(rev, meta.NumPending, meta.Timestamp)
	n.caughtUp(rev)
}

// caughtUp closes Ready once the store has reached the log as of Open.
func (n *Node) caughtUp(rev int64) {
	if rev >= n.target {
		n.readyOnce.Do(func() { close(n.ready) })
	}
}

// catchUp returns once the log holds the store's next revision, loading
// the newest snapshot first if it does not. Until a snapshot reaches the
// log's first retained revision (the leader writes one well before the
// stream drops the revisions after its newest, so this is a wait only
// right after a stream was trimmed by hand), it retries. It fails only
// when ctx ends.
func (n *Node) catchUp(ctx context.Context) error {
	warned := false
	for {
		first, err := n.firstRetained(ctx)
		if err == nil && first <= n.store.Revision()+1 {
			return nil
		}
		if err == nil {
			err = n.loadSnapshot(ctx, first)
			if err == nil {
				return nil
			}
		}
		if !warned {
			n.log.Warn("cannot catch up with the log yet; retrying", "revision", n.store.Revision(), "error", err)
			warned = true
		}
		if !sleep(ctx, followRetry) {
			return ctx.Err()
		}
	}
}

// firstRetained returns the oldest revision the log still holds (the
// revision after the last one when it holds none).
func (n *Node) firstRetained(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, setupAttemptTimeout)
	defer cancel()
	info, err := n.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("replica: stream %s: %w", n.cfg.Stream, err)
	}
	return retainedFrom(&info.State), nil
}

func retainedFrom(st *jetstream.StreamState) int64 {
	if st.Msgs == 0 {
		return int64(st.LastSeq) + 1
	}
	return int64(st.FirstSeq)
}

// loadSnapshot replaces the store with the newest snapshot, which must
// reach first, the log's oldest retained revision, so that the log holds
// every revision after it. The store's watchers end OUT_OF_RANGE: the
// revisions they were waiting for never reach this replica. A leader
// steps down first (its engine matched the old store).
func (n *Node) loadSnapshot(ctx context.Context, first int64) error {
	slot, rev, _, err := n.newestSnapshot(ctx)
	switch {
	case err != nil:
		return fmt.Errorf("replica: find the newest snapshot: %w", err)
	case rev+1 < first:
		return fmt.Errorf("replica: the log starts at revision %d and no snapshot reaches it (newest: %d); waiting for the leader to write one", first, rev)
	}
	s, calls, err := n.readSnapshot(ctx, slot)
	if err != nil {
		return err
	}
	n.stepDown("loading a snapshot", true)
	n.applyMu.Lock()
	err = n.store.Restore(s.Revision, calls, s.LastUID)
	if err == nil {
		n.maxTerm = max(n.maxTerm, s.Term)
	}
	n.applyMu.Unlock()
	if err != nil {
		return fmt.Errorf("replica: snapshot %s at revision %d: %w", slot, s.Revision, err)
	}
	n.m.snapshotsLoaded.Inc()
	n.log.Info("snapshot loaded", "revision", s.Revision, "legs", len(calls), "writer", s.Writer)
	n.caughtUp(s.Revision)
	return nil
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
