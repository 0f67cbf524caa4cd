package replica

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"callcontrold/auth"
	"callcontrold/callstore"
	"callcontrold/directory"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/pbx"
	"callcontrold/pbx/sim"
	"callcontrold/server"
)

// testLog is quiet unless REPLICA_TEST_LOG is set.
func testLog() *slog.Logger {
	if os.Getenv("REPLICA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testReplica is one callcontrold replica: a node and its gRPC server on
// a loopback port.
type testReplica struct {
	id      string
	node    *Node
	srv     *server.Server
	addr    string
	done    chan struct{}
	conn    *grpc.ClientConn
	lastRev int64 // store revision when stopped
}

// replicaConfig is the configuration every test replica shares.
func replicaConfig(url, id, advertise string, dir *directory.Directory) Config {
	return Config{
		URL: url, Replicas: 3, LeaseTTL: time.Second, AppendTimeout: 3 * time.Second, ConnectTimeout: 30 * time.Second,
		ID: id, Advertise: advertise, Logger: testLog().With("node", id),
		NewEngine: func(store *callstore.Store, log Log) (Engine, error) {
			return sim.New(dir, store, sim.Options{Commit: log.Commit, CommitRequest: log.CommitRequest, Sync: log.Sync, Logger: testLog()}), nil
		},
		DeviceStatus: func(string) pbx.DeviceStatus { return pbx.StatusUp },
		KeepBridges:  true,
	}
}

// startReplica opens a replica and serves it on a fresh loopback port.
func startReplica(t *testing.T, url, id string) *testReplica {
	t.Helper()
	return startReplicaWith(t, url, id, nil)
}

// startReplicaWith is startReplica with configure (if not nil) applied to
// the replica's configuration.
func startReplicaWith(t *testing.T, url, id string, configure func(*Config)) *testReplica {
	t.Helper()
	return startReplicaForward(t, url, id, configure, nil)
}

// startReplicaForward is startReplicaWith with the replica's forwarding
// interceptor wrapped by wrap (if not nil): a test's seam into every
// unary call the replica serves, before it forwards or acts.
func startReplicaForward(t *testing.T, url, id string, configure func(*Config), wrap func(grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor) *testReplica {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dir := directory.Demo()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := replicaConfig(url, id, lis.Addr().String(), dir)
	cfg.Registry = prometheus.NewRegistry() // registering checks the metrics' names and help
	if configure != nil {
		configure(&cfg)
	}
	node, err := Open(ctx, cfg)
	if err != nil {
		lis.Close()
		t.Fatalf("replica %s: %v", id, err)
	}
	authn, err := auth.NewAuthenticator(ctx, auth.Config{Tokens: dir, Logger: testLog()})
	if err != nil {
		t.Fatal(err)
	}
	sw := node.Switch()
	forward := node.UnaryInterceptor()
	if wrap != nil {
		forward = wrap(forward)
	}
	srv, err := server.New(server.Config{ProgressInterval: 200 * time.Millisecond}, server.Deps{
		Store: node.Store(), Directory: dir, Switch: sw, Devices: sw, Simulator: sw,
		Authenticate: authn.Authenticate, Logger: testLog(), Forward: forward, AwaitRevision: node.AwaitRevision,
		Applied: node.Applied,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := &testReplica{id: id, node: node, srv: srv, addr: lis.Addr().String(), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		_ = srv.Serve(lis)
	}()
	r.conn, err = grpc.NewClient(r.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.stop(true) })
	select {
	case <-node.Ready():
	case <-time.After(30 * time.Second):
		t.Fatalf("replica %s did not catch up", id)
	}
	return r
}

// stop shuts the replica down; clean releases the lease, else it is a
// crash: the lease stays until it expires.
func (r *testReplica) stop(clean bool) {
	if r.node == nil {
		return
	}
	_ = r.conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	r.srv.Shutdown(ctx) // watchers end UNAVAILABLE and resume elsewhere
	cancel()
	<-r.done
	if clean {
		r.node.Close()
	} else {
		r.node.crash()
	}
	r.node = nil
}

// crash stops the replica as a dying process would: no step-down, no
// lease release, the connection to NATS simply gone.
func (n *Node) crash() {
	n.stop()
	<-n.done
	n.nc.Close() // appends fail from here on; the lease expires
	n.stepDown("crashed", false)
	n.closers.Wait()
	n.fwd.close()
	n.store.Close()
}

func as(login string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer demo-"+login)
}

func (r *testReplica) calls() callcontrolv1.CallControlServiceClient {
	return callcontrolv1.NewCallControlServiceClient(r.conn)
}

// waitLeader waits until one of rs leads and returns it.
func waitLeader(t *testing.T, rs ...*testReplica) *testReplica {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range rs {
			if r != nil && r.node != nil && r.node.Leading() {
				return r
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no replica leads")
	return nil
}
