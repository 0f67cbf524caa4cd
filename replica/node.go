package replica

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"callcontrold/callstore"
)

// Node is one replica: it applies the log to its store, campaigns for the
// lease, and runs the engine while it leads.
type Node struct {
	cfg     Config
	log     *slog.Logger
	nc      *nats.Conn
	js      jetstream.JetStream
	stream  jetstream.Stream
	kv      jetstream.KeyValue
	snaps   jetstream.ObjectStore // the snapshots (snapshot.go)
	subject string
	created time.Time // the stream's creation: with its name, the epoch
	store   *callstore.Store
	m       *metrics

	// applyMu serializes applying revisions: the leader's own append (from
	// publish to ApplyAt) against the log reader, so a leader's store
	// always holds the very values its engine committed.
	applyMu sync.Mutex
	// maxTerm is the newest leader term in the log applied so far (guarded
	// by applyMu): a leader whose term is older has been replaced and must
	// not append, even if its own clock still trusts its lease.
	maxTerm uint64
	// requests indexes the requests the applied revisions carried out.
	requests *requestIndex

	ready     chan struct{} // closed once caught up with the log as of Open
	readyOnce sync.Once
	target    int64 // the log's last revision at Open

	gen     atomic.Uint64 // the log reader's generation (follow.go): a gap ends it
	gapc    chan struct{} // the reader met a gap: load a snapshot
	snapRev atomic.Int64  // the newest snapshot this replica knows of

	failed  atomic.Pointer[error] // the log could not be applied: this replica stopped applying
	failedc chan struct{}         // closed with failed

	mu         sync.Mutex
	leading    *leadership // nil while following
	leaderAddr string      // the leader's advertised address, "" if unknown
	leaderID   string

	fwd     forwarder
	closers sync.WaitGroup // engines being closed after a step-down

	stop context.CancelFunc
	done chan struct{} // closed once Run's goroutines have returned
}

// leadership is one term: the lease revision that won it and the engine
// that runs while it lasts.
type leadership struct {
	term   uint64 // lease revision at takeover: the log records it
	rev    uint64 // lease revision last written
	until  time.Time
	engine Engine
	log    *pipeline // the term's appends
	ready  bool      // engine built and foreign legs ended: serving
}

// Open connects to NATS, makes sure the log stream and the lease bucket
// exist, and returns a replica whose store carries the log's epoch. It
// does not apply the log yet: call Run.
func Open(ctx context.Context, cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, requests: newRequestIndex(cfg.RequestTTL, cfg.MaxRequests), log: cfg.Logger.With("replica", cfg.ID), subject: strings.ToLower(cfg.Stream) + ".ops",
		ready: make(chan struct{}), done: make(chan struct{}), failedc: make(chan struct{}), gapc: make(chan struct{}, 1)}
	if n.nc, err = n.connect(); err != nil {
		return nil, err
	}
	if err := n.setup(ctx); err != nil {
		n.nc.Close()
		return nil, err
	}
	opts := cfg.StoreOptions
	opts.Epoch = n.epoch()
	n.store = callstore.New(opts)
	n.m = newMetrics(n)
	if cfg.Registry != nil {
		if err := n.m.register(cfg.Registry); err != nil {
			n.nc.Close()
			return nil, err
		}
	}
	return n, nil
}

func (n *Node) connect() (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("callcontrold " + n.cfg.ID),
		nats.Timeout(n.cfg.ConnectTimeout),
		nats.MaxReconnects(-1), // a replica never gives up on its log
		// Nothing published while disconnected is sent later, on the next
		// connection: an append is delivered at once or not at all (see
		// pipeline).
		nats.ReconnectBufSize(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { n.log.Warn("NATS connection lost", "error", err) }),
		nats.ReconnectHandler(func(c *nats.Conn) { n.log.Info("NATS connection back", "server", c.ConnectedUrl()) }),
	}
	if n.cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(n.cfg.CredsFile))
	}
	if n.cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(n.cfg.TLSCA))
	}
	if n.cfg.TLSCert != "" {
		opts = append(opts, nats.ClientCert(n.cfg.TLSCert, n.cfg.TLSKey))
	}
	nc, err := nats.Connect(n.cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("replica: cannot reach NATS at %s: %w", n.cfg.URL, err)
	}
	return nc, nil
}

// setup finds the log stream and the lease bucket, creating them when
// they do not exist yet. Finding is a plain lookup, which any stream peer
// answers even while the cluster is busy (a node just restarted); an
// existing stream or bucket keeps the configuration it was created with.
func (n *Node) setup(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ConnectTimeout)
	defer cancel()
	js, err := jetstream.New(n.nc)
	if err != nil {
		return fmt.Errorf("replica: JetStream: %w", err)
	}
	n.js = js
	// A cluster that is starting too answers "no suitable peers" or times
	// out for a moment: retry until ConnectTimeout.
	err = retry(ctx, func(ctx context.Context) (err error) {
		n.stream, err = n.findOrCreateStream(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("replica: find or create stream %s (is JetStream enabled, with %d servers?): %w", n.cfg.Stream, n.cfg.Replicas, err)
	}
	var info *jetstream.StreamInfo
	err = retry(ctx, func(ctx context.Context) (err error) {
		info, err = n.stream.Info(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("replica: stream %s: %w", n.cfg.Stream, err)
	}
	if limited(&info.Config) && info.Config.Discard != jetstream.DiscardOld {
		return fmt.Errorf("replica: stream %s has limits but discards new messages when full: the log would refuse revisions; set its discard policy to old", n.cfg.Stream)
	}
	n.target = int64(info.State.LastSeq)
	n.created = info.Created
	err = retry(ctx, func(ctx context.Context) (err error) {
		n.snaps, err = n.findOrCreateSnapshots(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("replica: snapshot bucket: %w", err)
	}
	err = retry(ctx, func(ctx context.Context) (err error) {
		n.kv, err = n.findOrCreateBucket(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("replica: lease bucket: %w", err)
	}
	return nil
}

// retry calls f until it succeeds or ctx ends, and returns f's last error.
// Each attempt has its own short deadline: a JetStream API request that
// meets no answer (a node restarting, a meta leader being elected) would
// otherwise wait out the whole of ctx on its first try, and never be
// tried again once the cluster can answer.
func retry(ctx context.Context, f func(context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, setupAttemptTimeout)
		err := f(actx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// setupAttemptTimeout bounds one attempt of a setup request (retry).
const setupAttemptTimeout = 3 * time.Second

func (n *Node) findOrCreateStream(ctx context.Context) (jetstream.Stream, error) {
	st, err := n.js.Stream(ctx, n.cfg.Stream)
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return st, err
	}
	// With limits, the oldest revisions go: a replica that needs one
	// loads a snapshot instead (follow.go).
	st, err = n.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        n.cfg.Stream,
		Description: "callcontrold revision log: one message per revision",
		Subjects:    []string{n.subject},
		Storage:     jetstream.FileStorage,
		Replicas:    n.cfg.Replicas,
		Discard:     jetstream.DiscardOld,
		MaxMsgs:     n.cfg.MaxRevisions,
		MaxAge:      n.cfg.MaxAge,
		MaxBytes:    n.cfg.MaxBytes,
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) { // another replica created it meanwhile
		return n.js.Stream(ctx, n.cfg.Stream)
	}
	return st, err
}

func (n *Node) findOrCreateBucket(ctx context.Context) (jetstream.KeyValue, error) {
	bucket := n.cfg.Stream + "_LEASE"
	kv, err := n.js.KeyValue(ctx, bucket)
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return kv, err
	}
	kv, err = n.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "callcontrold leader lease",
		TTL:         n.cfg.LeaseTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    n.cfg.Replicas,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		return n.js.KeyValue(ctx, bucket)
	}
	return kv, err
}

// epoch derives the store's epoch from the stream's identity (name and
// creation time): every replica of one log agrees on it, and a log that
// is deleted and created again gets another, so old tokens are refused.
func (n *Node) epoch() uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%d", n.cfg.Stream, n.created.UnixNano())
	if e := h.Sum64(); e != 0 {
		return e
	}
	return 1
}

// Store is the replica's store: read it, watch it; only the log writes it.
func (n *Node) Store() *callstore.Store { return n.store }

// ID is the replica's name in the lease and the log.
func (n *Node) ID() string { return n.cfg.ID }

// Ready is closed once the store has applied the log as it stood at Open:
// report SERVING only then.
func (n *Node) Ready() <-chan struct{} { return n.ready }

// Err is non-nil once the replica stopped applying the log (a message it
// cannot apply): it then serves stale data and must be restarted.
func (n *Node) Err() error {
	if p := n.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// Run starts applying the log (loading a snapshot first if the log no
// longer holds its start), keeping the store within what the log retains,
// and campaigning for the lease; it returns at once. Close stops them.
func (n *Node) Run(ctx context.Context) error {
	ctx, n.stop = context.WithCancel(ctx)
	if n.target == 0 {
		n.readyOnce.Do(func() { close(n.ready) })
	}
	var wg sync.WaitGroup
	for _, f := range []func(context.Context){n.follow, n.maintain, n.campaign} {
		wg.Go(func() { f(ctx) })
	}
	go func() {
		wg.Wait()
		close(n.done)
	}()
	return nil
}

// Close steps down (releasing the lease so another replica takes over at
// once), stops reading the log and closes the NATS connection.
func (n *Node) Close() {
	if n.stop != nil {
		n.stop()
		<-n.done
	}
	n.stepDown("closing", true)
	n.closers.Wait()
	n.fwd.close()
	n.nc.Close()
	n.store.Close()
}

// Failed is closed when the replica stops applying the log (see Err):
// its owner reports NOT_SERVING then.
func (n *Node) Failed() <-chan struct{} { return n.failedc }

func (n *Node) fail(err error) {
	if n.failed.CompareAndSwap(nil, &err) {
		n.log.Error("replica stopped applying the log: restart it", "error", err)
		// Before Failed is closed: whoever sees it sees a replica that
		// no longer leads.
		n.stepDown("cannot apply the log", true)
		close(n.failedc)
	}
}

// waitApplied waits until the store has applied rev.
func (n *Node) waitApplied(ctx context.Context, rev int64) error {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for n.store.Revision() < rev {
		if err := n.Err(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// errNotLeader tells a caller there is nowhere to act right now.
var errNotLeader = errors.New("this replica does not lead")

// AwaitRevision waits until the store has applied rev (server.Deps).
func (n *Node) AwaitRevision(ctx context.Context, rev int64) error { return n.waitApplied(ctx, rev) }
