package replica

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"callcontrold/callstore"
	"callcontrold/pbx"
)

// leaseKey is the one key of the lease bucket.
const leaseKey = "leader"

// leaseValue is what the lease says about its holder.
type leaseValue struct {
	ID   string `json:"id"`
	Addr string `json:"addr"` // gRPC address followers forward to
}

// campaign renews the lease while leading and tries to take it while
// following, every quarter of its TTL, until ctx ends. A replica only
// campaigns once it has caught up with the log (Ready): a takeover then
// has only the tail to apply, well within the lease.
func (n *Node) campaign(ctx context.Context) {
	select {
	case <-n.ready:
	case <-ctx.Done():
		return
	}
	val, _ := json.Marshal(leaseValue{ID: n.cfg.ID, Addr: n.cfg.Advertise})
	tick := time.NewTicker(n.cfg.LeaseTTL / 4)
	defer tick.Stop()
	for {
		if n.Err() == nil {
			n.leaseStep(ctx, val)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// leaseStep renews (leading) or tries to take (following) the lease once.
func (n *Node) leaseStep(ctx context.Context, val []byte) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.LeaseTTL/4)
	defer cancel()
	sent := time.Now()
	n.mu.Lock()
	l := n.leading
	n.mu.Unlock()
	if l != nil {
		rev, err := n.kv.Update(ctx, leaseKey, val, l.rev)
		if err != nil {
			n.stepDown(fmt.Sprintf("lease renewal failed: %v", err), false)
			return
		}
		n.mu.Lock()
		if n.leading == l {
			l.rev, l.until = rev, sent.Add(n.cfg.LeaseTTL)
		}
		n.mu.Unlock()
		return
	}
	rev, err := n.kv.Create(ctx, leaseKey, val)
	if err == nil {
		n.takeOver(ctx, rev, sent)
		return
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		n.log.Debug("lease: cannot reach the bucket", "error", err)
		return
	}
	n.lookupLeader(ctx)
}

// lookupLeader reads the lease to learn who leads, while following.
func (n *Node) lookupLeader(ctx context.Context) {
	e, err := n.kv.Get(ctx, leaseKey)
	if err != nil {
		return
	}
	var lv leaseValue
	if json.Unmarshal(e.Value(), &lv) != nil {
		return
	}
	n.mu.Lock()
	if n.leading == nil {
		n.leaderID, n.leaderAddr = lv.ID, lv.Addr
	}
	n.mu.Unlock()
}

// takeOver starts a term: catch up with the log, build the engine, end
// the legs the previous leader held, then serve. If any step fails, the
// lease is released for another replica.
func (n *Node) takeOver(ctx context.Context, rev uint64, sent time.Time) {
	l := &leadership{term: rev, rev: rev, until: sent.Add(n.cfg.LeaseTTL)}
	p, err := n.startPipeline(l)
	if err != nil {
		n.log.Warn("lease taken but the log cannot be appended to: releasing it", "error", err)
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.LeaseTTL/4)
		defer cancel()
		_ = n.kv.Delete(ctx, leaseKey, jetstream.LastRevision(rev))
		return
	}
	l.log = p
	n.mu.Lock()
	n.leading, n.leaderID, n.leaderAddr = l, n.cfg.ID, n.cfg.Advertise
	n.mu.Unlock()
	n.log.Info("lease taken: catching up with the log", "term", rev)
	if err := n.startEngine(ctx, l); err != nil {
		n.stepDown(fmt.Sprintf("takeover failed: %v", err), true)
		return
	}
	n.m.leader.Set(1)
	n.m.leaderChanges.Inc()
	n.log.Info("leading", "term", rev, "revision", n.store.Revision())
}

func (n *Node) startEngine(ctx context.Context, l *leadership) error {
	info, err := n.stream.Info(ctx)
	if err != nil {
		return err
	}
	if err := n.waitApplied(ctx, int64(info.State.LastSeq)); err != nil {
		return err
	}
	eng, err := n.cfg.NewEngine(n.store, Log{
		Commit:        n.appender(l),
		CommitRequest: l.log.append,
		Sync:          func() error { return l.log.sync(context.Background()) },
		Bucket:        n.Bucket,
	})
	if err != nil {
		return err
	}
	n.mu.Lock()
	current := n.leading == l
	if current {
		l.engine = eng
	}
	n.mu.Unlock()
	if !current {
		eng.Close()
		return errors.New("lease lost during takeover")
	}
	if n.cfg.KeepBridges {
		adopted, err := eng.AdoptBridges()
		if err != nil {
			return err
		}
		if adopted > 0 {
			n.log.Info("took over the calls where two phones talk", "legs", adopted)
		}
	}
	ended, err := eng.EndForeignLegs(pbx.CauseTemporaryFailure)
	if err != nil {
		return err
	}
	if ended > 0 {
		n.log.Warn("ended the calls the previous leader held: their signalling died with it", "legs", ended, "cause", pbx.CauseTemporaryFailure)
	}
	// Serve only once the log holds the takeover's revisions: an append
	// has its own deadline, like any operation's.
	sctx, cancel := context.WithTimeout(context.Background(), n.cfg.AppendTimeout)
	defer cancel()
	if err := l.log.sync(sctx); err != nil {
		return err
	}
	n.mu.Lock()
	l.ready = n.leading == l
	n.mu.Unlock()
	return nil
}

// stepDown ends the current term, if any: the engine stops (operations in
// flight fail UNAVAILABLE) and, if release, the lease is deleted so that
// another replica need not wait for it to expire.
func (n *Node) stepDown(why string, release bool) {
	n.mu.Lock()
	l := n.leading
	n.leading, n.leaderID, n.leaderAddr = nil, "", ""
	n.mu.Unlock()
	if l == nil {
		return
	}
	n.m.leader.Set(0)
	n.log.Warn("stepping down", "term", l.term, "reason", why)
	l.log.close() // appends still in flight fail UNAVAILABLE
	if l.engine != nil {
		// Not here: the caller may be the engine's own commit, under the
		// engine's lock.
		n.closers.Add(1)
		go func() {
			defer n.closers.Done()
			l.engine.Close()
		}()
	}
	if release {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.LeaseTTL/4)
		defer cancel()
		if err := n.kv.Delete(ctx, leaseKey, jetstream.LastRevision(l.rev)); err != nil {
			n.log.Debug("lease: release failed; it will expire", "error", err)
		}
	}
}

// engine returns the engine while this replica leads and serves.
func (n *Node) engine() (Engine, error) {
	e, _, err := n.serving()
	return e, err
}

// serving returns the engine and its term's pipeline while this replica
// leads and serves.
func (n *Node) serving() (Engine, *pipeline, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if l := n.leading; l != nil && l.ready {
		return l.engine, l.log, nil
	}
	return nil, nil, fmt.Errorf("%w: %w", pbx.ErrUnavailable, errNotLeader)
}

// pipeline returns the current term's pipeline while this replica leads.
func (n *Node) pipeline() *pipeline {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.leading == nil {
		return nil
	}
	return n.leading.log
}

// Leading reports whether this replica leads (and serves) right now.
func (n *Node) Leading() bool {
	_, err := n.engine()
	return err == nil
}

// Leader returns the current leader's id and advertised address, as the
// lease last said ("" if unknown).
func (n *Node) Leader() (id, addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.leaderID, n.leaderAddr
}

// appender returns the engine's commit for term l: its pipeline's append.
func (n *Node) appender(l *leadership) func(...callstore.Change) (int64, error) {
	return func(changes ...callstore.Change) (int64, error) { return l.log.append(nil, changes...) }
}

// leaseMargin is how much of its lease a leader must have left to publish
// an append: an append reaches the stream well within it, so before any
// other replica can take the lease (which it can only once the lease
// expired) and append in its turn.
func (n *Node) leaseMargin() time.Duration { return n.cfg.LeaseTTL / 8 }
