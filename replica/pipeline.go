package replica

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"callcontrold/callstore"
	"callcontrold/pbx"
)

// maxInFlight bounds the appends a leader has published and the stream
// has not acknowledged yet. An engine commit that finds the pipeline full
// waits for the oldest to be acknowledged: the engine then runs at the
// log's pace instead of queueing without bound.
const maxInFlight = 256

// pipeline is one term's appends to the log: the engine's commits are
// published as they come, several in flight, and applied to the store in
// revision order as the stream acknowledges them.
//
// Each append is published with the revision it must get: the expected
// last sequence is the previous append's, which the stream checks for
// appends in flight too. Acks are taken in order by one goroutine (run);
// the first failure or timeout fails the pipeline: that append and every
// later one are reported failed (UNAVAILABLE) and the term ends. An
// append reported failed may still be in the log (its ack was lost):
// then every replica applies it from the log, as any other revision.
//
// A later append can only be stored right after its predecessor's
// sequence; the pipeline also keeps it from being stored after a
// predecessor that was lost, in another leader's place. All of a term's
// appends go over one connection, which delivers them in order or loses
// a tail of them: publishes are never buffered across a reconnect (the
// connection has no reconnect buffer, the publisher no retries), and an
// append while older ones are in flight on a connection since replaced
// ends the term. And an append is only published while the lease has
// more than leaseMargin left: another leader can only take the lease,
// and append, after it expired.
type pipeline struct {
	n *Node
	l *leadership
	// pub publishes this term's appends: its own JetStream context, so
	// that the acks a failed term never got are dropped with it.
	pub jetstream.JetStream

	mu sync.Mutex
	// queue holds the appends published and not yet resolved, in
	// revision order.
	queue []*inFlight
	// last is the revision of the newest append published (0: none).
	last int64
	// conn counts the connection's reconnects when the oldest append in
	// flight was published: appends in flight are all on one connection.
	conn uint64
	// maxInFlight bounds the queue (the constant; tests lower it).
	maxInFlight int
	// live is whether a leg is live once the appends in flight are
	// applied, for the legs they touch: checking a new append against
	// the store alone would miss them. rev is the newest append that
	// touched the leg; the entry goes when that append is resolved.
	live map[int64]liveAfter
	// done is the newest revision this pipeline applied to the store.
	done int64
	// err is the failure that ended the pipeline: every append after
	// done fails with it.
	err error
	// changed is closed, and replaced, whenever done, err or queue
	// changes: appends waiting for room and the log reader wait on it.
	changed chan struct{}
	// waiters are the operations waiting for a revision (wait): each is
	// woken once, when done reaches its revision or the pipeline fails,
	// not on every ack.
	waiters []revWaiter

	kick chan struct{} // an append was queued: run looks at the queue
	stop chan struct{} // closed by close: the term is over
	once sync.Once
}

type inFlight struct {
	rev     int64
	req     *pbx.Request
	changes []callstore.Change
	ack     jetstream.PubAckFuture
	sent    time.Time
}

type revWaiter struct {
	rev int64
	ch  chan struct{}
}

type liveAfter struct {
	live bool
	rev  int64
}

// startPipeline starts term l's pipeline; close ends it.
func (n *Node) startPipeline(l *leadership) (*pipeline, error) {
	// The pipeline bounds what it publishes at maxInFlight: the client's
	// own bound is never the one that stalls a publish.
	pub, err := jetstream.New(n.nc, jetstream.WithPublishAsyncMaxPending(2*maxInFlight))
	if err != nil {
		return nil, err
	}
	p := &pipeline{n: n, l: l, pub: pub, maxInFlight: maxInFlight, live: map[int64]liveAfter{}, changed: make(chan struct{}),
		kick: make(chan struct{}, 1), stop: make(chan struct{})}
	n.closers.Add(1)
	go func() {
		defer n.closers.Done()
		defer pub.CleanupPublisher()
		p.run()
	}()
	return p, nil
}

// errTermOver fails the appends still in flight when a term ends.
var errTermOver = errors.New("the term ended before the log acknowledged the operation")

// append is the engine's commit (pbx.Options.Commit), called under the
// engine's lock, so appends are published in the engine's order. It
// checks the changes against the store and the appends in flight,
// publishes them, and returns the revision the stream will give them;
// the stream has not acknowledged them yet: sync and wait report that.
func (p *pipeline) append(req *pbx.Request, changes ...callstore.Change) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.queue) >= p.maxInFlight && p.err == nil {
		ch := p.changed
		p.mu.Unlock()
		stopped := false
		select {
		case <-ch:
		case <-p.stop:
			stopped = true
		}
		p.mu.Lock()
		if stopped {
			p.failLocked(errTermOver)
		}
	}
	if p.err != nil {
		return 0, fmt.Errorf("%w: %w; not appended", pbx.ErrUnavailable, p.err)
	}
	if err := p.check(changes); err != nil {
		return 0, err
	}
	expected, err := p.next()
	if err != nil {
		return 0, err
	}
	rev := expected + 1
	data, err := encodeOp(p.n.cfg.ID, p.l.term, req, changes)
	if err != nil {
		return 0, err
	}
	ack, err := p.pub.PublishAsync(p.n.subject, data,
		jetstream.WithExpectLastSequence(uint64(expected)), jetstream.WithRetryAttempts(0))
	if err != nil {
		p.endTermLocked(fmt.Errorf("append failed: %w", err))
		return 0, fmt.Errorf("%w: the log did not take the operation: %w", pbx.ErrUnavailable, err)
	}
	p.queue = append(p.queue, &inFlight{rev: rev, req: req, changes: changes, ack: ack, sent: time.Now()})
	p.last = rev
	for i := range changes {
		c := changes[i].Call
		p.live[c.UID] = liveAfter{live: c.State != callstore.StateDead, rev: rev}
	}
	select {
	case p.kick <- struct{}{}:
	default:
	}
	return rev, nil
}

// next returns the revision the next append must follow, after checking
// that this term may still append: its lease has more than leaseMargin
// left on this replica's clock, no newer term is in the log this replica
// applied, and the appends in flight went over the connection this one
// takes. With appends in flight, the next one follows the newest of them.
func (p *pipeline) next() (int64, error) {
	n, l := p.n, p.l
	n.mu.Lock()
	valid := n.leading == l && time.Now().Before(l.until.Add(-n.leaseMargin()))
	n.mu.Unlock()
	if !valid {
		p.endTermLocked(errors.New("the lease lapsed"))
		return 0, fmt.Errorf("%w: the lease lapsed; not appended", pbx.ErrUnavailable)
	}
	n.applyMu.Lock()
	newer := n.maxTerm > l.term
	expected := n.store.Revision()
	n.applyMu.Unlock()
	if newer {
		p.endTermLocked(errors.New("a newer leader has appended"))
		return 0, fmt.Errorf("%w: another replica leads now; not appended", pbx.ErrUnavailable)
	}
	conn := n.nc.Stats().Reconnects
	if len(p.queue) == 0 {
		p.conn = conn
		return expected, nil
	}
	if conn != p.conn {
		p.endTermLocked(errors.New("the connection to NATS was replaced with appends in flight"))
		return 0, fmt.Errorf("%w: the connection to the log was lost; not appended", pbx.ErrUnavailable)
	}
	return p.last, nil
}

// check is the store's Check, with the legs the appends in flight touch
// as those appends leave them: the log never holds an operation that no
// store can apply.
func (p *pipeline) check(changes []callstore.Change) error {
	if len(p.live) == 0 {
		return p.n.store.Check(changes...)
	}
	if err := callstore.CheckChanges(changes...); err != nil { // what needs no live set
		return err
	}
	for i := range changes {
		c := changes[i].Call
		var live bool
		if a, ok := p.live[c.UID]; ok {
			live = a.live
		} else {
			_, live = p.n.store.Get(c.UID)
		}
		for j := i - 1; j >= 0; j-- {
			if changes[j].Call.UID == c.UID {
				live = changes[j].Call.State != callstore.StateDead
				break
			}
		}
		switch {
		case changes[i].Type == callstore.EventNew && live:
			return fmt.Errorf("%w: change %d: new leg %d is already live", callstore.ErrInvalidChange, i, c.UID)
		case changes[i].Type != callstore.EventNew && !live:
			return fmt.Errorf("%w: change %d: leg %d is not live", callstore.ErrInvalidChange, i, c.UID)
		}
	}
	return nil
}

// run takes the acks in revision order and applies each acknowledged
// append to the store, until the pipeline fails or the term ends.
func (p *pipeline) run() {
	for {
		p.mu.Lock()
		var head *inFlight
		if p.err == nil && len(p.queue) > 0 {
			head = p.queue[0]
		}
		failed := p.err != nil
		p.mu.Unlock()
		if failed {
			return
		}
		if head == nil {
			select {
			case <-p.kick:
				continue
			case <-p.stop:
				p.fail(errTermOver)
				return
			}
		}
		if err := p.settle(head); err != nil {
			p.fail(err)
			p.n.stepDown(err.Error(), false)
			return
		}
	}
}

// settle waits for one append's ack and applies it.
func (p *pipeline) settle(a *inFlight) error {
	timer := time.NewTimer(p.n.cfg.AppendTimeout - time.Since(a.sent))
	defer timer.Stop()
	var ack *jetstream.PubAck
	select {
	case ack = <-a.ack.Ok():
	case err := <-a.ack.Err():
		return fmt.Errorf("append of revision %d failed: %w", a.rev, err)
	case <-timer.C:
		return fmt.Errorf("append of revision %d: no acknowledgement within %v", a.rev, p.n.cfg.AppendTimeout)
	case <-p.stop:
		return errTermOver
	}
	if int64(ack.Sequence) != a.rev {
		return fmt.Errorf("append of revision %d stored as %d", a.rev, ack.Sequence)
	}
	p.n.m.appendSeconds.Observe(time.Since(a.sent).Seconds())
	n := p.n
	n.applyMu.Lock()
	_, err := n.store.ApplyAt(a.rev, a.changes...)
	if err == nil {
		n.maxTerm = max(n.maxTerm, p.l.term)
		n.requests.add(a.req, a.rev, time.Now(), a.changes)
	}
	n.applyMu.Unlock()
	if err != nil {
		err = fmt.Errorf("replica: apply own revision %d: %w", a.rev, err)
		n.fail(err)
		return err
	}
	p.mu.Lock()
	if len(p.queue) > 0 && p.queue[0] == a { // else failed meanwhile: queue dropped
		p.queue = p.queue[1:]
	}
	p.done = a.rev
	for i := range a.changes {
		if uid := a.changes[i].Call.UID; p.live[uid].rev == a.rev {
			delete(p.live, uid)
		}
	}
	p.broadcastLocked()
	p.mu.Unlock()
	return nil
}

// endTermLocked fails the pipeline and steps down: the engine may have
// decided a transition the log never took, so it no longer matches the
// store.
func (p *pipeline) endTermLocked(err error) {
	p.failLocked(err)
	p.n.stepDown(err.Error(), false)
}

func (p *pipeline) fail(err error) {
	p.mu.Lock()
	p.failLocked(err)
	p.mu.Unlock()
}

// failLocked ends the pipeline with err: no append after done will be
// applied by it (the log reader applies whatever the stream did store).
func (p *pipeline) failLocked(err error) {
	if p.err != nil {
		return
	}
	p.err = err
	p.queue, p.live = nil, map[int64]liveAfter{}
	p.broadcastLocked()
}

func (p *pipeline) broadcastLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
	kept := p.waiters[:0]
	for _, w := range p.waiters {
		if w.rev <= p.done || p.err != nil {
			close(w.ch)
		} else {
			kept = append(kept, w)
		}
	}
	clear(p.waiters[len(kept):])
	p.waiters = kept
}

// close ends the term's pipeline: appends still in flight fail.
func (p *pipeline) close() { p.once.Do(func() { close(p.stop) }) }

// sync waits until every append published so far is acknowledged and
// applied (pbx.Options.Sync): the engine calls it before it delivers
// those operations' signals to the driver, and the switch before it
// answers an operation.
func (p *pipeline) sync(ctx context.Context) error {
	p.mu.Lock()
	upTo := p.last
	p.mu.Unlock()
	return p.wait(ctx, upTo)
}

// wait waits until this pipeline applied rev, or failed before it.
func (p *pipeline) wait(ctx context.Context, rev int64) error {
	p.mu.Lock()
	if p.done < rev && p.err == nil {
		ch := make(chan struct{})
		p.waiters = append(p.waiters, revWaiter{rev: rev, ch: ch})
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err() // the waiter stays until rev is resolved
		}
		p.mu.Lock()
	}
	defer p.mu.Unlock()
	if p.done < rev {
		return fmt.Errorf("%w: %w", pbx.ErrUnavailable, p.err)
	}
	return nil
}

// resolved waits until rev is no longer an append of this pipeline in
// flight: the log reader, which meets the leader's own appends too, lets
// the pipeline apply them (with the very values the engine committed)
// and applies only what the pipeline did not.
func (p *pipeline) resolved(rev int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.err == nil && len(p.queue) > 0 && rev >= p.queue[0].rev && rev <= p.last {
		ch := p.changed
		p.mu.Unlock()
		<-ch
		p.mu.Lock()
	}
}
