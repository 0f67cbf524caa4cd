package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"callcontrold/callstore"
	"callcontrold/directory"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/internal/benchserver"
	"callcontrold/internal/latency"
	"callcontrold/internal/natsembed"
	"callcontrold/internal/rawframe"
	"callcontrold/pbx/sim"
	"callcontrold/replica"
	"callcontrold/server"
)

// The replicas scenario: the control pair (Hold, Talk) at the unary
// scenario's concurrency, first against one process, then against the
// leader of two replicas sharing an R3 stream in a 3-node NATS cluster
// (embedded, loopback), with a WatchCalls stream on the other replica.
// Each RPC is one revision through the log; the latency is from sending
// the RPC to the follower's watcher receiving its event (in one process:
// to the process's own watcher), so it includes the append, the
// follower's apply and the watch fan-out.

type replicasConfig struct {
	concurrency int
	duration    time.Duration // measured time of each kind
	warmup      time.Duration
}

type replicasKind struct {
	Transitions uint64          `json:"transitions"`
	Errors      uint64          `json:"errors"`
	Seconds     float64         `json:"seconds"`
	PerSecond   float64         `json:"transitions_per_second"`
	Samples     uint64          `json:"samples"`
	Latency     latency.Summary `json:"rpc_to_watcher_ms"`
}

type replicasResult struct {
	Concurrency int          `json:"concurrency"`
	Single      replicasKind `json:"single"`
	// Replicas: the leader's RPCs, a follower's watcher.
	Replicas replicasKind `json:"replicas"`
	// Ratio is the replicas' transitions/s over one process's.
	Ratio float64 `json:"ratio"`
}

func runReplicas(ctx context.Context, e *env, cfg replicasConfig) (*replicasResult, error) {
	res := &replicasResult{Concurrency: cfg.concurrency}
	if cfg.concurrency > loadDevices {
		return nil, fmt.Errorf("replicas: concurrency %d > %d load devices", cfg.concurrency, loadDevices)
	}
	single, err := e.dial()
	if err != nil {
		return nil, err
	}
	if res.Single, err = replicaLoad(ctx, cfg, e.sim, single, single, nil); err != nil {
		return res, fmt.Errorf("one process: %w", err)
	}
	rs, err := startReplicas(e.dir)
	if err != nil {
		return res, err
	}
	defer rs.close()
	res.Replicas, err = replicaLoad(ctx, cfg, rs.leader.node.Switch(), rs.leader.conn, rs.follower.conn, func(ctx context.Context) error {
		return rs.follower.node.AwaitRevision(ctx, rs.leader.node.Store().Revision())
	})
	if res.Single.PerSecond > 0 {
		res.Ratio = res.Replicas.PerSecond / res.Single.PerSecond
	}
	return res, err
}

// replicaLoad sets up one up call per worker through sw, waits (caughtUp)
// until the watching side has applied that, opens the watch on watchConn,
// and runs the Hold/Talk pairs on rpcConn: warm-up, then the measured
// time.
func replicaLoad(ctx context.Context, cfg replicasConfig, sw switchSim, rpcConn, watchConn *grpc.ClientConn,
	caughtUp func(context.Context) error) (replicasKind, error) {
	var out replicasKind
	uids := make([]int64, cfg.concurrency)
	for i := range uids {
		c, err := upCall(ctx, sw, loadDevice(i))
		if err != nil {
			return out, err
		}
		uids[i] = c.UID
	}
	if caughtUp != nil {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := caughtUp(cctx)
		cancel()
		if err != nil {
			return out, fmt.Errorf("the watching replica did not catch up: %w", err)
		}
	}
	w, err := watchOps(ctx, watchConn, uids)
	if err != nil {
		return out, err
	}
	defer w.close()
	wctx := withToken(ctx, loadToken)
	phase := func(d time.Duration, measured bool) (n, errs uint64, el time.Duration) {
		return runFor(len(uids), d, func(i int, stop *atomic.Bool) (n, errs uint64) {
			return w.drive(wctx, rpcConn, uids[i], measured, stop)
		})
	}
	phase(cfg.warmup, false)
	n, errs, el := phase(cfg.duration, true)
	out.Transitions, out.Errors, out.Seconds = n, errs, el.Seconds()
	out.PerSecond = float64(n) / el.Seconds()
	if err := w.wait(n + w.warm.Load()); err != nil {
		return out, err
	}
	out.Samples, out.Latency = w.lat.Count(), w.lat.Summary()
	if errs > 0 {
		return out, fmt.Errorf("%d control RPCs failed", errs)
	}
	return out, nil
}

// opWatch pairs each control RPC with its event on a watcher: one worker
// per call, each RPC one revision of that call, so the k-th event of a
// call is its k-th RPC.
type opWatch struct {
	stream grpc.ServerStreamingClient[callcontrolv1.WatchCallsResponse]
	cancel context.CancelFunc
	done   chan struct{}
	err    error
	lat    latency.Hist
	warm   atomic.Uint64 // RPCs sent in the warm-up
	got    atomic.Uint64 // events received
	calls  map[int64]*opCall
}

// opCall is one worker's call: when each of its RPCs was sent.
type opCall struct {
	mu       sync.Mutex
	sent     []time.Time
	measured []bool
	seen     int
	held     bool // the worker's own: the call's state after its last RPC
}

func watchOps(ctx context.Context, cc *grpc.ClientConn, uids []int64) (*opWatch, error) {
	wctx, cancel := context.WithCancel(withToken(ctx, adminToken))
	s, err := callcontrolv1.NewCallControlServiceClient(cc).WatchCalls(wctx, &callcontrolv1.WatchCallsRequest{SkipSnapshot: true})
	if err != nil {
		cancel()
		return nil, err
	}
	if _, err := s.Recv(); err != nil { // started: the watch is registered
		cancel()
		return nil, err
	}
	w := &opWatch{stream: s, cancel: cancel, done: make(chan struct{}), calls: map[int64]*opCall{}}
	for _, uid := range uids {
		w.calls[uid] = &opCall{}
	}
	go w.recv()
	return w, nil
}

func (w *opWatch) recv() {
	defer close(w.done)
	for {
		f, err := w.stream.Recv()
		now := time.Now()
		if err != nil {
			w.err = err
			return
		}
		for _, ev := range f.GetEvents().GetEvents() {
			c := w.calls[ev.GetCall().GetUid()]
			if c == nil {
				continue
			}
			c.mu.Lock()
			if k := c.seen; k < len(c.sent) && c.measured[k] {
				w.lat.Record(now.Sub(c.sent[k]))
			}
			c.seen++
			c.mu.Unlock()
			w.got.Add(1)
		}
	}
}

// drive runs Hold, Talk, Hold, ... on call uid until stop: each RPC
// changes the call, so each is one revision and one event.
func (w *opWatch) drive(ctx context.Context, cc *grpc.ClientConn, uid int64, measured bool, stop *atomic.Bool) (n, errs uint64) {
	c := w.calls[uid]
	var raw rawframe.Msg
	hold, talk := &callcontrolv1.HoldRequest{Uid: uid}, &callcontrolv1.TalkRequest{Uid: uid}
	for !stop.Load() {
		method, req := holdMethod, any(hold)
		if c.held {
			method, req = talkMethod, talk
		}
		c.mu.Lock()
		c.sent = append(c.sent, time.Now())
		c.measured = append(c.measured, measured)
		c.mu.Unlock()
		err := cc.Invoke(ctx, method, req, &raw, rawframe.Recv)
		if err != nil {
			// Nothing to wait for: take the send back (one worker per call,
			// so it is the last one).
			c.mu.Lock()
			c.sent, c.measured = c.sent[:len(c.sent)-1], c.measured[:len(c.measured)-1]
			c.mu.Unlock()
			errs++
			continue
		}
		n++
		c.held = !c.held
		if !measured {
			w.warm.Add(1)
		}
	}
	return n, errs
}

// wait waits until the watcher received n events (bounded), then ends it.
func (w *opWatch) wait(n uint64) error {
	deadline := time.Now().Add(30 * time.Second)
	for w.got.Load() < n && time.Now().Before(deadline) {
		select {
		case <-w.done:
			return fmt.Errorf("watch ended after %d of %d events: %w", w.got.Load(), n, w.err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	if got := w.got.Load(); got < n {
		return fmt.Errorf("the watcher received %d of %d events", got, n)
	}
	return nil
}

func (w *opWatch) close() {
	w.cancel()
	<-w.done
}

// replicaServer is one callcontrold replica: its node and gRPC server on
// a loopback port, and a client connection to it.
type replicaServer struct {
	node *replica.Node
	srv  *benchserver.Server
	conn *grpc.ClientConn
}

type replicaSet struct {
	nats             *natsembed.Cluster
	leader, follower *replicaServer
}

// startReplicas starts the NATS cluster and two replicas; the first one
// started leads.
func startReplicas(dir *directory.Directory) (rs *replicaSet, err error) {
	rs = &replicaSet{}
	defer func() {
		if err != nil {
			rs.close()
		}
	}()
	if rs.nats, err = natsembed.Start(3); err != nil {
		return rs, err
	}
	if rs.leader, err = startReplica(dir, rs.nats.URL(), "leader"); err != nil {
		return rs, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for !rs.leader.node.Leading() {
		if time.Now().After(deadline) {
			return rs, errors.New("replicas: no replica took the lease")
		}
		time.Sleep(10 * time.Millisecond)
	}
	rs.follower, err = startReplica(dir, rs.nats.URL(), "follower")
	return rs, err
}

// startReplica builds a replica as callcontrold does with --nats (see
// newEnv for the benchmark's departures), and waits until it caught up.
func startReplica(dir *directory.Directory, url, id string) (r *replicaServer, err error) {
	log := benchserver.Logger()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r = &replicaServer{}
	defer func() {
		if err != nil {
			_ = lis.Close()
			r.close()
		}
	}()
	r.node, err = replica.Open(context.Background(), replica.Config{
		URL: url, Replicas: 3, ID: id, Advertise: lis.Addr().String(), Logger: log,
		NewEngine: func(store *callstore.Store, rlog replica.Log) (replica.Engine, error) {
			return sim.New(dir, store, sim.Options{Logger: log, Commit: rlog.Commit, Sync: rlog.Sync}), nil
		},
		KeepBridges: true,
	})
	if err != nil {
		return r, err
	}
	sw := r.node.Switch()
	r.srv, err = benchserver.New(server.Config{MaxConcurrentStreams: -1}, server.Deps{
		Store: r.node.Store(), Directory: dir, Switch: sw, Devices: sw, Simulator: sw, Logger: log,
		Forward: r.node.UnaryInterceptor(), AwaitRevision: r.node.AwaitRevision,
	})
	if err != nil {
		return r, err
	}
	if err := r.node.Run(context.Background()); err != nil {
		return r, err
	}
	r.srv.Serve(lis)
	select {
	case <-r.node.Ready():
	case <-time.After(30 * time.Second):
		return r, fmt.Errorf("replica %s did not catch up with the log", id)
	}
	r.conn, err = dialAddr(lis.Addr().String())
	return r, err
}

func (r *replicaServer) close() {
	if r == nil {
		return
	}
	if r.conn != nil {
		_ = r.conn.Close()
	}
	if r.srv != nil {
		r.srv.Close()
	}
	if r.node != nil {
		r.node.Close()
	}
}

func (rs *replicaSet) close() {
	rs.follower.close()
	rs.leader.close()
	if rs.nats != nil {
		rs.nats.Close()
	}
}
