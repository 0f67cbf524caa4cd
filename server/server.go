package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"callcontrold/auth"
	"callcontrold/callstore"
	"callcontrold/directory"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/pbx"
)

// Config tunes the server. The zero value of every field means its
// default (see withDefaults).
type Config struct {
	// WriteCoalesceWindow, if positive, holds back a connection's stream
	// messages written less than this after its last write, to go out
	// with what follows in one system call (writecoalesce.go); zero: off,
	// every write goes out at once. It trades latency on busy streams for
	// CPU: docs/DESIGN.md.
	WriteCoalesceWindow time.Duration
	// ProgressInterval: a watcher that received nothing for this long gets
	// a progress frame.
	ProgressInterval time.Duration
	// SnapshotChunkSize: calls per snapshot frame (frames stay far below
	// the 4 MB message limit).
	SnapshotChunkSize int
	// KeepaliveMinTime: clients pinging more often than this are told
	// GOAWAY (enforcement policy).
	KeepaliveMinTime time.Duration
	// KeepaliveTime / KeepaliveTimeout: the server pings idle connections.
	KeepaliveTime, KeepaliveTimeout time.Duration
	// MaxConnectionAge / Grace: connections are recycled so load spreads
	// across replicas behind a mesh; watchers resume with their token.
	MaxConnectionAge, MaxConnectionAgeGrace time.Duration
	// DrainRetryAfter and DrainRetryJitter: on shutdown every watcher is
	// told (RetryInfo) to come back after DrainRetryAfter plus a uniformly
	// random share of DrainRetryJitter, so a restart is not met by every
	// client at the same instant. Negative jitter: none.
	DrainRetryAfter, DrainRetryJitter time.Duration
	// DrainSendTimeout: while draining, a watch that stays in one send this
	// long (its client does not read) is cut instead of holding the drain.
	// Also how long an ended watch's stream served through ServeHTTP may
	// stay blocked in a write before it is reset (WithStreamAbort).
	DrainSendTimeout time.Duration

	// Transport limits (see limits.go). Zero means the default; negative
	// means no limit, except for ConnectionTimeout.
	//
	// MaxConnections: connections open at once; at the cap a new one
	// replaces the oldest that has not sent a byte, or is closed.
	MaxConnections int
	// MaxConcurrentStreams: streams per connection (HTTP/2 SETTINGS).
	MaxConcurrentStreams int
	// MaxHeaderListSize: bytes of request headers per stream.
	MaxHeaderListSize int
	// ConnectionTimeout: TLS and HTTP/2 handshake of a new connection.
	ConnectionTimeout time.Duration
	// MaxConnectionIdle: a connection without streams this long is closed
	// (GOAWAY; clients reconnect on their next call).
	MaxConnectionIdle time.Duration
	// RequestReadTimeout: a stream's request message must arrive within
	// this of its headers.
	RequestReadTimeout time.Duration
	// MaxPendingRequests: streams, server-wide, waiting for their request
	// message; a new one cancels the oldest.
	MaxPendingRequests int
	// MaxWatchers: WatchCalls streams open at once, server-wide (the
	// per-login cap is the Limiter's).
	MaxWatchers int
	// WatchSendTimeout: a watch whose frames wait this long to go out (its
	// client reads nothing, or too slowly to keep up) ends with
	// OUT_OF_RANGE.
	WatchSendTimeout time.Duration
	// IdempotencyTTL and IdempotencySize bound the request_id cache.
	IdempotencyTTL  time.Duration
	IdempotencySize int
	// TLS, if set, serves TLS (and mTLS when it requires client certs).
	TLS credentials.TransportCredentials
}

// Defaults of the transport and watch limits.
const (
	DefaultMaxConnections       = 4096
	DefaultMaxConcurrentStreams = 1000
	DefaultMaxHeaderListSize    = 16 << 10
	DefaultMaxPendingRequests   = 1024
	DefaultMaxWatchers          = 20000
	DefaultConnectionTimeout    = 10 * time.Second
	DefaultMaxConnectionIdle    = 15 * time.Minute
	DefaultRequestReadTimeout   = 10 * time.Second
	DefaultWatchSendTimeout     = 30 * time.Second
)

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ProgressInterval, 10*time.Second)
	def(&c.KeepaliveMinTime, 10*time.Second)
	def(&c.KeepaliveTime, 2*time.Minute)
	def(&c.KeepaliveTimeout, 20*time.Second)
	def(&c.MaxConnectionAge, 30*time.Minute)
	def(&c.MaxConnectionAgeGrace, 10*time.Minute)
	def(&c.DrainRetryAfter, time.Second)
	def(&c.DrainSendTimeout, time.Second)
	limit := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	limit(&c.MaxConnections, DefaultMaxConnections)
	limit(&c.MaxConcurrentStreams, DefaultMaxConcurrentStreams)
	limit(&c.MaxHeaderListSize, DefaultMaxHeaderListSize)
	limit(&c.MaxPendingRequests, DefaultMaxPendingRequests)
	limit(&c.MaxWatchers, DefaultMaxWatchers)
	def(&c.ConnectionTimeout, DefaultConnectionTimeout)
	unset := func(d *time.Duration, v time.Duration) { // negative stays: no limit
		if *d == 0 {
			*d = v
		}
	}
	unset(&c.DrainRetryJitter, 4*time.Second)
	unset(&c.MaxConnectionIdle, DefaultMaxConnectionIdle)
	unset(&c.RequestReadTimeout, DefaultRequestReadTimeout)
	unset(&c.WatchSendTimeout, DefaultWatchSendTimeout)
	def(&c.IdempotencyTTL, 10*time.Minute)
	if c.SnapshotChunkSize <= 0 {
		c.SnapshotChunkSize = 500
	}
	if c.IdempotencySize <= 0 {
		c.IdempotencySize = 10000
	}
	return c
}

// Deps are the parts the server wires together.
type Deps struct {
	Store     *callstore.Store
	Directory *directory.Directory
	Switch    pbx.Switch
	// Devices reports a device's live blf and status (nil: idle, unknown).
	Devices DeviceStater
	// Simulator is nil unless the switch is the simulated one; then
	// SimulatorService answers UNIMPLEMENTED.
	Simulator pbx.Simulator
	// Authenticate turns request metadata into a principal.
	Authenticate grpcauth.AuthFunc
	// Limiter enforces per-principal rate and watch limits (nil: none).
	Limiter *auth.Limiter
	Logger  *slog.Logger
	// Registry receives the server's metrics (nil: not registered).
	Registry prometheus.Registerer
	// TracerProvider records a span per RPC (nil: spans are not
	// recorded; see tracing.go).
	TracerProvider trace.TracerProvider
	// Forward, if set, runs on every unary call before authentication: a
	// replica forwards control RPCs to its leader there (package replica).
	Forward grpc.UnaryServerInterceptor
	// AwaitRevision, if set, waits until the store has applied a revision
	// (a replica's store follows the log): a resumed watch waits for its
	// token's revision first.
	AwaitRevision func(ctx context.Context, rev int64) error
	// Applied, if set, reports which revision of the log applied a
	// request (principal, method, request_id) under any leader: a retry
	// the request_id cache does not know is answered from that revision
	// instead of acting again (replay.go; a replica's Node.Applied).
	Applied func(principal, method, id string) (*pbx.Applied, bool)
}

// DeviceStater reports the live state of a device; the switch knows it.
type DeviceStater interface {
	DeviceState(name string) (pbx.DeviceState, error)
}

// Server is a ready-to-serve gRPC server.
type Server struct {
	cfg       Config
	grpc      *grpc.Server
	health    *health.Server
	log       *slog.Logger
	calls     *callService
	drain     chan struct{} // closed when the server starts shutting down
	stopped   chan struct{} // closed when Shutdown has returned
	once      sync.Once
	drainOnce sync.Once

	hits      *limitHit
	pending   *pendingRequests
	listeners limitListeners // capped listeners, for the gauge
}

// serviceNames are the services registered besides health and reflection,
// each with its own health status.
var serviceNames = []string{
	callcontrolv1.CallControlService_ServiceDesc.ServiceName,
	callcontrolv1.DeviceService_ServiceDesc.ServiceName,
	callcontrolv1.SimulatorService_ServiceDesc.ServiceName,
}

// New builds the gRPC server: interceptors, limits, keepalive, health,
// reflection and the services.
func New(cfg Config, d Deps) (*Server, error) {
	if d.Store == nil || d.Directory == nil || d.Switch == nil || d.Authenticate == nil {
		return nil, errors.New("server: Store, Directory, Switch and Authenticate are required")
	}
	cfg = cfg.withDefaults()
	log := d.Logger
	if log == nil {
		log = slog.Default()
	}
	log = withIdentity(log)
	s := &Server{cfg: cfg, log: log, health: health.NewServer(), drain: make(chan struct{}), stopped: make(chan struct{})}

	rpcMetrics := newRPCMetrics()
	m := newMetrics(d.Store)
	s.hits = newLimitHit(m, log)
	failures := &decodeFailures{}
	s.pending = &pendingRequests{max: cfg.MaxPendingRequests, timeout: cfg.RequestReadTimeout, hits: s.hits, failures: failures}
	m.addTransportGauges(s.listeners.open, s.pending.Pending)
	if d.Registry != nil {
		if err := d.Registry.Register(rpcMetrics); err != nil {
			return nil, fmt.Errorf("server: register rpc metrics: %w", err)
		}
		if err := m.register(d.Registry); err != nil {
			return nil, fmt.Errorf("server: register metrics: %w", err)
		}
	}

	logger := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		log.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	logOpts := []logging.Option{
		// The end of a call only, as streamChain does for streams.
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(codeToLevel),
	}
	recovered := func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "panic in handler", "panic", p)
		return internalError()
	}
	// Health and reflection need no token: probes and grpcurl's list must
	// work without one.
	needsAuth := func(service string) bool {
		return service != healthpb.Health_ServiceDesc.ServiceName &&
			!strings.HasPrefix(service, "grpc.reflection.")
	}

	authFn := authenticate(d.Authenticate, log)
	unary := []grpc.UnaryServerInterceptor{
		s.pending.unary,
		rpcMetrics.unary,
		identityUnary,
		logging.UnaryServerInterceptor(logger, logOpts...),
	}
	if d.Forward != nil {
		unary = append(unary, d.Forward)
	}
	unary = append(unary,
		selector.UnaryServerInterceptor(grpcauth.UnaryServerInterceptor(authFn),
			selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool { return needsAuth(c.Service) })),
		failures.unary(recovered),
	)
	// The same steps for streams, in one interceptor: every stream
	// interceptor would be a frame on each stream's goroutine for as long
	// as the stream lives, and an idle watch's frames decide its stack's
	// size (streamchain.go; docs/BENCHMARKS.md, "Idle streams").
	streams := &streamChain{
		pending: s.pending, metrics: rpcMetrics, logger: logger,
		authFn: authFn, needsAuth: needsAuth, recovered: recovered,
		callerTrace: d.TracerProvider == nil,
	}
	opts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(newFrameCodec(failures)),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.StreamInterceptor(streams.intercept),
		// Shutdown returns once every handler has: nothing of this server
		// runs (or keeps its memory) after it, and every call's end-of-call
		// log line and metrics are written by then.
		grpc.WaitForHandlers(true),
	}
	opts = append(opts, transportOptions(cfg, s.pending)...)
	if cfg.TLS != nil {
		creds := cfg.TLS
		if cfg.WriteCoalesceWindow > 0 {
			creds = coalescingCreds{creds, cfg.WriteCoalesceWindow}
		}
		opts = append(opts, grpc.Creds(creds))
	}
	// Before the chain above: the trace context interceptor runs first.
	opts = append(tracingOptions(d.TracerProvider), opts...)
	s.grpc = grpc.NewServer(opts...)

	s.calls = newCallService(cfg, d, log, m, s.drain)
	s.calls.watches = newWatchRegistry(cfg.MaxWatchers, cfg.WatchSendTimeout, cfg.ProgressInterval, s.drain, s.hits)
	reg := decodeRegistrar{s: s.grpc, failures: failures}
	callcontrolv1.RegisterCallControlServiceServer(reg, s.calls)
	callcontrolv1.RegisterDeviceServiceServer(reg, newDeviceService(d, s.calls.cv, log))
	callcontrolv1.RegisterSimulatorServiceServer(reg, newSimulatorService(d, s.calls))
	healthpb.RegisterHealthServer(reg, s.health)
	reflection.Register(reg)
	rpcMetrics.initialize(s.grpc)
	s.pending.streaming = streamingMethods(s.grpc)

	s.setServing(d.Simulator != nil)
	return s, nil
}

// setServing marks every service SERVING, the simulator only with one.
func (s *Server) setServing(simulator bool) {
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	for _, name := range serviceNames {
		st := healthpb.HealthCheckResponse_SERVING
		if name == callcontrolv1.SimulatorService_ServiceDesc.ServiceName && !simulator {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		s.health.SetServingStatus(name, st)
	}
}

// Serve accepts connections on lis until Shutdown, at most
// Config.MaxConnections at once; with Config.WriteCoalesceWindow, a busy
// connection's writes are coalesced (writecoalesce.go).
func (s *Server) Serve(lis net.Listener) error {
	l := s.LimitListener(lis)
	if s.cfg.WriteCoalesceWindow > 0 && s.cfg.TLS == nil {
		l = coalescingListener{l, s.cfg.WriteCoalesceWindow} // with TLS, coalescingCreds wraps the connection
	}
	return s.grpc.Serve(l)
}

// transportOptions are the grpc options of keepalive and of the
// transport limits (see limits.go).
func transportOptions(cfg Config, pending *pendingRequests) []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             cfg.KeepaliveMinTime,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:                  cfg.KeepaliveTime,
			Timeout:               cfg.KeepaliveTimeout,
			MaxConnectionAge:      cfg.MaxConnectionAge,
			MaxConnectionAgeGrace: cfg.MaxConnectionAgeGrace,
			MaxConnectionIdle:     max(cfg.MaxConnectionIdle, 0), // 0: grpc's infinity
		}),
		grpc.MaxRecvMsgSize(1 << 20), // requests are small; refuse floods early
		grpc.InTapHandle(pending.tap),
		grpc.ConnectionTimeout(cfg.ConnectionTimeout),
	}
	if cfg.MaxConcurrentStreams > 0 {
		opts = append(opts, grpc.MaxConcurrentStreams(uint32(cfg.MaxConcurrentStreams)))
	}
	if cfg.MaxHeaderListSize > 0 {
		opts = append(opts, grpc.MaxHeaderListSize(uint32(cfg.MaxHeaderListSize)))
	}
	return opts
}

// GRPC exposes the underlying server (tests register extra services).
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// Shutdown drains: health turns NOT_SERVING so load balancers move away,
// every watch gets a progress frame and ends with UNAVAILABLE + RetryInfo,
// in-flight unary calls finish. A watch whose client does not read is cut
// after DrainSendTimeout in one send, so it cannot hold the drain. If ctx
// ends first, remaining connections are closed hard.
func (s *Server) Shutdown(ctx context.Context) {
	s.once.Do(func() {
		defer close(s.stopped)
		defer s.pending.stop() // every handler has returned (WaitForHandlers)
		s.Drain()
		done := make(chan struct{})
		go func() {
			s.grpc.GracefulStop()
			close(done)
		}()
		tick := time.NewTicker(s.cfg.DrainSendTimeout)
		defer tick.Stop()
		for quiet := 0; ; {
			select {
			case <-done:
				return
			case <-tick.C:
				// With no handler left for a whole tick, what still holds
				// GracefulStop is a stream whose last frames and status wait
				// for a client that does not read: do not wait for it.
				if quiet++; s.pending.running.Load() > 0 {
					quiet = 0
				}
				if quiet >= 2 {
					s.log.Warn("drained: closing connections whose clients do not read")
					s.grpc.Stop()
					<-done
					return
				}
			case <-ctx.Done():
				s.log.Warn("graceful stop timed out; closing remaining connections")
				s.grpc.Stop()
				<-done
				return
			}
		}
	})
}

// Drain is the first step of Shutdown, on its own: health turns
// NOT_SERVING and every watch gets a progress frame and ends with
// UNAVAILABLE + RetryInfo, while connections stay open. A watch whose
// client does not read is cut after DrainSendTimeout in one send, by a
// goroutine that runs until no watch is left. The HTTP side calls Drain
// before Shutdown, because GracefulStop cancels the requests served
// through ServeHTTP at once, before their final frames.
func (s *Server) Drain() {
	s.drainOnce.Do(func() {
		s.health.Shutdown()
		close(s.drain)
		go s.cutStalledWatches()
	})
}

// cutStalledWatches cuts, every DrainSendTimeout, the watches found in the
// same send as at the previous tick, until no watch is left (a drain
// refuses new ones) or Shutdown has returned.
func (s *Server) cutStalledWatches() {
	tick := time.NewTicker(s.cfg.DrainSendTimeout)
	defer tick.Stop()
	for {
		select {
		case <-s.stopped:
			return
		case <-tick.C:
		}
		if s.calls.watches.Len() == 0 {
			return
		}
		s.calls.watches.cutStalled()
	}
}

// codeToLevel logs client-caused outcomes quietly and server faults loudly.
func codeToLevel(c codes.Code) logging.Level {
	switch c {
	case codes.OK, codes.Canceled, codes.NotFound, codes.InvalidArgument, codes.AlreadyExists,
		codes.FailedPrecondition, codes.OutOfRange, codes.Unauthenticated, codes.PermissionDenied,
		codes.ResourceExhausted:
		return logging.LevelInfo
	case codes.Unavailable, codes.DeadlineExceeded:
		return logging.LevelWarn
	default:
		return logging.LevelError
	}
}

// authenticate is f with its errors turned into statuses (the auth
// interceptor returns them as they are) and the principal recorded for
// the log lines (identity.go).
func authenticate(f grpcauth.AuthFunc, log *slog.Logger) grpcauth.AuthFunc {
	return recordIdentity(func(ctx context.Context) (context.Context, error) {
		actx, err := f(ctx)
		if err != nil {
			return nil, toStatus(ctx, log, err)
		}
		return actx, nil
	})
}
