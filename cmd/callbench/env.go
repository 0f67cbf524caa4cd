package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"callcontrold/callstore"
	"callcontrold/directory"
	"callcontrold/internal/benchserver"
	"callcontrold/pbx"
	"callcontrold/pbx/sim"
	"callcontrold/server"
)

// The benchmark directory's logins and their bearer tokens. The load user
// owns the devices the control RPCs act on; the admin watches.
const (
	loadToken  = "bench-load"
	adminToken = "bench-admin"
	// extNumber is an external number whose far end does nothing by itself
	// (behaviour manual): the benchmark answers it with AnswerRemote.
	extNumber = "+19990000001"
)

// sizes of the benchmark directory.
const (
	loadDevices    = 60    // SIP/load00..: owned by "load", one per unary worker
	trafficPairs   = 4     // SIP/ta0/SIP/tb0..: caller and callee of the traffic driver
	fanoutDevices  = 10000 // SIP/f0000..: one filtered watcher each (fanout10k: all of them)
	spreadDevices  = 1000  // the idle and memory scenarios spread their streams and legs over the first 1,000
	memCallsPerDev = 100   // memory scenario: legs per spread device
)

func loadDevice(i int) string    { return fmt.Sprintf("SIP/load%02d", i) }
func fanoutDevice(i int) string  { return fmt.Sprintf("SIP/f%04d", i) }
func trafficCaller(i int) string { return trafficNames[i].caller }
func trafficCallee(i int) string { return trafficNames[i].callee }
func trafficExt(i int) string    { return trafficNames[i].ext }

// trafficNames are the traffic pairs' device names and the callee's
// extension, made once: the traffic drivers run in the server's process,
// and their own work counts in what a WatchCalls frame costs.
var trafficNames = func() (n [trafficPairs]struct{ caller, callee, ext string }) {
	for i := range n {
		n[i].caller, n[i].callee, n[i].ext = fmt.Sprintf("SIP/ta%d", i), fmt.Sprintf("SIP/tb%d", i), fmt.Sprintf("%d", 4000+i)
	}
	return n
}()

func tokenHash(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// benchDirectoryYAML is the directory every scenario runs on: the demo's
// shape (company default, an admin and a plain user) with enough devices
// for 50 concurrent controllers, 10,000 device-filtered watchers and 100k
// live legs. Ring timeout is long so that nothing the benchmark leaves
// ringing times out in the middle of a measurement.
func benchDirectoryYAML() []byte {
	var b strings.Builder
	feat := "features: [answer, hold, talk]"
	fmt.Fprintf(&b, "ring_timeout: 1h\ncompanies:\n  - {name: default, display_name: Default company}\n")
	fmt.Fprintf(&b, "users:\n")
	fmt.Fprintf(&b, "  - {id: 1, login: admin, name: Bench admin, role: admin, company: default, token_sha256: [%s]}\n", tokenHash(adminToken))
	fmt.Fprintf(&b, "  - {id: 2, login: load, name: Load user, role: user, company: default, token_sha256: [%s]}\n", tokenHash(loadToken))
	fmt.Fprintf(&b, "devices:\n")
	for i := range loadDevices {
		fmt.Fprintf(&b, "  - {name: %s, display_name: Load line %d, company: default, owner: load, %s}\n", loadDevice(i), i, feat)
	}
	for i := range trafficPairs {
		fmt.Fprintf(&b, "  - {name: %s, display_name: Traffic caller %d, company: default, owner: load, %s}\n", trafficCaller(i), i, feat)
		fmt.Fprintf(&b, "  - {name: %s, display_name: Traffic callee %d, company: default, owner: load, %s, extension: \"%s\"}\n", trafficCallee(i), i, feat, trafficExt(i))
	}
	for i := range fanoutDevices {
		fmt.Fprintf(&b, "  - {name: %s, display_name: Fan-out line %d, company: default, owner: load, %s}\n", fanoutDevice(i), i, feat)
	}
	fmt.Fprintf(&b, "extensions:\n")
	for i := range trafficPairs {
		fmt.Fprintf(&b, "  - {number: \"%s\", company: default, name: Traffic callee %d, type: device, members: [%s]}\n", trafficExt(i), i, trafficCallee(i))
	}
	fmt.Fprintf(&b, "external:\n  - {pattern: \"+1999*\", behaviour: manual}\n")
	return []byte(b.String())
}

// env is one in-process server: the real store, simulated switch,
// authenticator, interceptor chain and services of callcontrold
// (benchserver), plus the no-op baseline service on the same grpc.Server,
// serving on a loopback TCP listener.
type env struct {
	dir   *directory.Directory
	store *callstore.Store
	sim   *sim.Switch
	srv   *benchserver.Server
	noop  *noopImpl // the no-op baseline service
	addr  string
	conns []*grpc.ClientConn
}

type envOptions struct {
	maxCallsPerDevice int // 0: the simulator's default
}

func newEnv(dir *directory.Directory, opts envOptions) (*env, error) {
	e := &env{dir: dir}
	// As callcontrold builds it, with benchserver's changes (limits off,
	// logs discarded at level info) and one more: the streams per
	// connection are not capped (the fan-out scenario puts up to 10,010
	// watches on two connections; a real client that does so must raise
	// --max-concurrent-streams too).
	log := benchserver.Logger()
	e.store = callstore.New(callstore.Options{})
	e.sim = sim.New(dir, e.store, sim.Options{MaxCallsPerDevice: opts.maxCallsPerDevice, Logger: log})
	var err error
	e.srv, err = benchserver.New(server.Config{MaxConcurrentStreams: -1}, server.Deps{
		Store:     e.store,
		Directory: dir,
		Switch:    e.sim,
		Devices:   e.sim,
		Simulator: e.sim,
		Logger:    log,
	})
	if err != nil {
		e.close()
		return nil, err
	}
	e.noop = registerNoop(e.srv.GRPC())
	if err := e.srv.ServeLoopback(); err != nil {
		e.close()
		return nil, err
	}
	e.addr = e.srv.Addr()
	return e, nil
}

// dial opens a client connection to the env's server; close closes it.
func (e *env) dial(opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	cc, err := dialAddr(e.addr, opts...)
	if err != nil {
		return nil, err
	}
	e.conns = append(e.conns, cc)
	return cc, nil
}

// dialAddr opens a plaintext client connection to a server on loopback,
// with opts after the credentials.
func dialAddr(addr string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
}

// dialN opens n client connections to the env's server, with opts.
func (e *env) dialN(n int, opts ...grpc.DialOption) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, n)
	for i := range conns {
		cc, err := e.dial(opts...)
		if err != nil {
			return nil, err
		}
		conns[i] = cc
	}
	return conns, nil
}

func (e *env) close() {
	for _, cc := range e.conns {
		_ = cc.Close()
	}
	if e.srv != nil {
		e.srv.Close()
	}
	if e.sim != nil {
		e.sim.Close()
	}
	if e.store != nil {
		e.store.Close()
	}
}

// withToken returns ctx carrying the bearer token on every call.
func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// upCall places an outgoing call from device to the manual external number
// and answers it as the far end: one live, up leg on device.
func (e *env) upCall(ctx context.Context, device string) (*callstore.Call, error) {
	return upCall(ctx, e.sim, device)
}

// switchSim is a switch the benchmark also drives as the far end: one
// process's simulated switch, or a replica's.
type switchSim interface {
	pbx.Switch
	pbx.Simulator
}

// upCall is env.upCall on any switchSim.
func upCall(ctx context.Context, sw switchSim, device string) (*callstore.Call, error) {
	c, err := sw.Dial(ctx, device, extNumber, pbx.DialOptions{})
	if err != nil {
		return nil, fmt.Errorf("dial from %s: %w", device, err)
	}
	c, err = sw.AnswerRemote(ctx, c.UID)
	if err != nil {
		return nil, fmt.Errorf("answer %s: %w", device, err)
	}
	if c.State != callstore.StateUp {
		return nil, fmt.Errorf("call on %s is %v after the far end answered", device, c.State)
	}
	return c, nil
}
