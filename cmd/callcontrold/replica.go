package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"callcontrold/callstore"
	"callcontrold/directory"
	"callcontrold/pbx"
	"callcontrold/pbx/sim"
	"callcontrold/pbx/sip"
	"callcontrold/pbx/sip/sipkv"
	"callcontrold/replica"
	"callcontrold/server"
)

// replicaFlags turn the process into one replica of several (--nats).
type replicaFlags struct {
	url, creds, tlsCA, tlsCert, tlsKey string
	stream, id, advertise              string
	forwardCA                          string
	streamReplicas                     int
	leaseTTL                           time.Duration
	maxRevisions, maxBytes             int64
	maxAge                             time.Duration
	snapshotEvery                      int64
}

func addReplicaFlags(fs *flag.FlagSet, r *replicaFlags) {
	fs.StringVar(&r.url, "nats", "", "NATS `URL`(s), comma separated: run as one replica of several sharing a revision log in JetStream; empty: a single process")
	fs.StringVar(&r.creds, "nats-creds", "", "NATS credentials `file` (JWT and nkey)")
	fs.StringVar(&r.tlsCA, "nats-tls-ca", "", "CA `file` (PEM) that signed the NATS servers' certificates")
	fs.StringVar(&r.tlsCert, "nats-tls-cert", "", "client certificate `file` (PEM) for NATS mTLS; with --nats-tls-key")
	fs.StringVar(&r.tlsKey, "nats-tls-key", "", "client key `file` (PEM) for NATS mTLS")
	fs.StringVar(&r.stream, "nats-stream", "CALLCONTROLD", "JetStream stream `name` of the revision log (the lease bucket is NAME_LEASE)")
	fs.IntVar(&r.streamReplicas, "nats-replicas", 1, "replication factor of the stream and the lease bucket: 3 in a NATS cluster")
	fs.Int64Var(&r.maxRevisions, "nats-max-revisions", 0, "when creating the stream: keep at most this many revisions in it (0: no limit); a replica that needs an older one loads a snapshot")
	fs.DurationVar(&r.maxAge, "nats-max-age", 0, "when creating the stream: drop revisions older than this (0: no limit)")
	fs.Int64Var(&r.maxBytes, "nats-max-bytes", 0, "when creating the stream: keep at most this many bytes of revisions (0: no limit)")
	fs.Int64Var(&r.snapshotEvery, "snapshot-every", replica.DefaultSnapshotEvery, "the leader writes a snapshot of its store every this many revisions (and sooner when a limited stream needs it)")
	fs.DurationVar(&r.leaseTTL, "lease-ttl", 5*time.Second, "a leader that stops renewing its lease is replaced after about this long")
	fs.StringVar(&r.id, "replica-id", "", "this replica's name in the lease and the log (default: hostname and a random suffix)")
	fs.StringVar(&r.advertise, "advertise-addr", "", "gRPC `address` other replicas forward control RPCs to while this one leads (default: --addr)")
	fs.StringVar(&r.forwardCA, "forward-tls-ca", "", "with --tls-cert: CA `file` (PEM) that verifies the leader's certificate when forwarding (default: the system roots)")
}

func (r *replicaFlags) validate(c *config) error {
	if r.url == "" {
		return nil
	}
	var errs []error
	if c.demoTraffic > 0 {
		errs = append(errs, errors.New("--demo-traffic is not available with --nats"))
	}
	if (r.tlsCert == "") != (r.tlsKey == "") {
		errs = append(errs, errors.New("--nats-tls-cert and --nats-tls-key go together"))
	}
	if r.streamReplicas < 1 || r.streamReplicas > 5 {
		errs = append(errs, errors.New("--nats-replicas must be 1 to 5"))
	}
	if r.snapshotEvery <= 0 {
		errs = append(errs, errors.New("--snapshot-every must be positive"))
	}
	retention := replica.Config{MaxRevisions: r.maxRevisions, MaxAge: r.maxAge, MaxBytes: r.maxBytes, SnapshotEvery: r.snapshotEvery}
	if err := retention.CheckRetention(); err != nil {
		errs = append(errs, fmt.Errorf("--nats-max-revisions, --nats-max-age, --nats-max-bytes: %w", err))
	}
	if r.leaseTTL < 500*time.Millisecond {
		errs = append(errs, errors.New("--lease-ttl must be at least 500ms"))
	}
	return errors.Join(errs...)
}

// openReplica connects to NATS and returns the replica; its store is the
// process's store and its switch the server's.
func openReplica(ctx context.Context, c *config, dir *directory.Directory, log *slog.Logger, reg prometheus.Registerer) (*replica.Node, error) {
	r := c.replica
	advertise := r.advertise
	if advertise == "" {
		advertise = c.addr
	}
	creds, err := forwardCreds(c)
	if err != nil {
		return nil, err
	}
	cfg := replica.Config{
		ForwardCreds: creds,
		URL:          r.url, CredsFile: r.creds, TLSCA: r.tlsCA, TLSCert: r.tlsCert, TLSKey: r.tlsKey,
		Stream: r.stream, Replicas: r.streamReplicas, LeaseTTL: r.leaseTTL,
		MaxRevisions: r.maxRevisions, MaxAge: r.maxAge, MaxBytes: r.maxBytes, SnapshotEvery: r.snapshotEvery,
		ID: r.id, Advertise: advertise,
		StoreOptions: callstore.Options{HistorySize: c.historySize, WatcherQueue: c.watcherQueue},
		NewEngine:    replicaEngine(c, dir, log),
		DeviceStatus: func(string) pbx.DeviceStatus { return pbx.StatusUp }, // simulated phones are always registered
		KeepBridges:  true,                                                  // simulated phones keep no per-call state
		Logger:       log,
		Registry:     reg,
	}
	if c.switchKind != "sip" {
		return replica.Open(ctx, cfg)
	}
	// A SIP dialog cannot move: every call the dead leader held ends with
	// cause 41. A follower answers a phone's status from the
	// registrations the leader saves.
	var regs atomic.Pointer[sipkv.Store]
	cfg.KeepBridges = false
	cfg.DeviceStatus = func(device string) pbx.DeviceStatus {
		if dev, ok := dir.Device(device); !ok || dev.SIP == nil {
			return pbx.StatusUnknown
		}
		if s := regs.Load(); s != nil {
			return s.Status(device)
		}
		return pbx.StatusUnknown
	}
	node, err := replica.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if kv, err := node.Bucket(ctx, sipkv.Suffix); err != nil {
		log.Warn("replica: the sip registrations bucket is unreachable: a follower answers device status unknown", "error", err)
	} else {
		regs.Store(sipkv.New(kv, log))
	}
	return node, nil
}

// replicaEngine builds the switch a replica runs while it leads: the
// simulated one, or the sip switch listening at --sip-addr (started on
// each takeover, closed on stepping down), which loads the registrations
// the previous leader saved and saves its own.
func replicaEngine(c *config, dir *directory.Directory, log *slog.Logger) func(*callstore.Store, replica.Log) (replica.Engine, error) {
	return func(store *callstore.Store, rlog replica.Log) (replica.Engine, error) {
		opts := pbx.Options{RingTimeout: c.ringTimeout, Logger: log, Commit: rlog.Commit, CommitRequest: rlog.CommitRequest, Sync: rlog.Sync}
		if c.switchKind != "sip" {
			return sim.New(dir, store, sim.Options{RingTimeout: opts.RingTimeout, Logger: log,
				Commit: opts.Commit, CommitRequest: opts.CommitRequest, Sync: opts.Sync}), nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.replica.leaseTTL)
		defer cancel()
		kv, err := rlog.Bucket(ctx, sipkv.Suffix) // the registrations the previous leader saved
		if err != nil {
			return nil, fmt.Errorf("sip registrations bucket: %w", err)
		}
		scfg := sipConfig(c, opts, log)
		scfg.Bindings = sipkv.New(kv, log)
		sw, err := sip.NewSwitch(dir, store, scfg)
		if err != nil {
			return nil, fmt.Errorf("sip switch: %w", err)
		}
		return sip.LeaderSwitch{Switch: sw, Log: log}, nil
	}
}

// switchParts is what the server gets from the switch: one process's
// simulated switch, or a replica's view of the leader's.
type switchParts struct {
	store   *callstore.Store
	sw      pbx.Switch
	sim     pbx.Simulator
	devices server.DeviceStater
	forward grpc.UnaryServerInterceptor
	await   func(ctx context.Context, rev int64) error
	applied func(principal, method, id string) (*pbx.Applied, bool) // --nats only: the requests the log applied
	simSw   *sim.Switch                                             // single process only: demo traffic drives it
	node    *replica.Node                                           // --nats only
	close   func()
}

func newParts(ctx context.Context, c *config, dir *directory.Directory, log *slog.Logger, reg prometheus.Registerer) (*switchParts, error) {
	if c.replica.url == "" {
		store := callstore.New(callstore.Options{HistorySize: c.historySize, WatcherQueue: c.watcherQueue})
		sw, err := newSwitch(c, dir, store, log)
		if err != nil {
			store.Close()
			return nil, err
		}
		return &switchParts{store: store, sw: sw.Switch, sim: sw.simulator, devices: sw.devices, simSw: sw.sim,
			close: func() { sw.close(); store.Close() }}, nil
	}
	node, err := openReplica(ctx, c, dir, log, reg)
	if err != nil {
		return nil, err
	}
	rs := node.Switch()
	return &switchParts{store: node.Store(), sw: rs, sim: rs, devices: rs, forward: node.UnaryInterceptor(),
		await: node.AwaitRevision, applied: node.Applied, node: node, close: node.Close}, nil
}

// start makes a replica apply the log and campaign for the lease; the
// server reports NOT_SERVING until the replica has caught up.
func (p *switchParts) start(ctx context.Context, srv *server.Server, log *slog.Logger) error {
	if p.node == nil {
		return nil
	}
	srv.SetServing(false)
	if err := p.node.Run(ctx); err != nil {
		return err
	}
	log.Info("replica: catching up with the log before serving", "id", p.node.ID())
	go func() {
		select {
		case <-p.node.Ready():
			srv.SetServing(true)
			log.Info("replica: caught up; serving", "revision", p.node.Store().Revision())
		case <-ctx.Done():
			return
		}
		select {
		case <-p.node.Failed(): // the node logged why
			srv.SetServing(false)
		case <-ctx.Done():
		}
	}()
	return nil
}

// forwardCreds secures forwarding when the gRPC port serves TLS: the
// leader is verified with --forward-tls-ca (or the system roots), and with
// mTLS (--tls-client-ca) a replica presents its own --tls-cert, which the
// client CA must therefore accept. Without TLS forwarding is plaintext.
func forwardCreds(c *config) (credentials.TransportCredentials, error) {
	if c.tlsCert == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if f := c.replica.forwardCA; f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--forward-tls-ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--forward-tls-ca %s holds no PEM certificate", f)
		}
	}
	if c.tlsClientCA != "" {
		cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("forwarding client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return credentials.NewTLS(tc), nil
}
