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

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
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
	// DrainRetryAfter is the RetryInfo delay sent to watchers on shutdown.
	DrainRetryAfter time.Duration
	// IdempotencyTTL and IdempotencySize bound the request_id cache.
	IdempotencyTTL  time.Duration
	IdempotencySize int
	// TLS, if set, serves TLS (and mTLS when it requires client certs).
	TLS credentials.TransportCredentials
}

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
	once      sync.Once
	drainOnce sync.Once
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
	s := &Server{cfg: cfg, log: log, health: health.NewServer(), drain: make(chan struct{})}

	rpcMetrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	m := newMetrics(d.Store)
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
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(codeToLevel),
	}
	recoverOpts := []recovery.Option{recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "panic in handler", "panic", p)
		return internalError()
	})}
	// Health and reflection need no token: probes and grpcurl's list must
	// work without one.
	needsAuth := selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
		return c.Service != healthpb.Health_ServiceDesc.ServiceName &&
			!strings.HasPrefix(c.Service, "grpc.reflection.")
	})

	failures := &decodeFailures{}
	authFn := authenticate(d.Authenticate, log)
	opts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(newFrameCodec(failures)),
		grpc.ChainUnaryInterceptor(
			rpcMetrics.UnaryServerInterceptor(),
			identityUnary,
			logging.UnaryServerInterceptor(logger, logOpts...),
			selector.UnaryServerInterceptor(grpcauth.UnaryServerInterceptor(authFn), needsAuth),
			recovery.UnaryServerInterceptor(recoverOpts...),
		),
		grpc.ChainStreamInterceptor(
			rpcMetrics.StreamServerInterceptor(),
			identityStream,
			logging.StreamServerInterceptor(logger, logOpts...),
			selector.StreamServerInterceptor(grpcauth.StreamServerInterceptor(authFn), needsAuth),
			recovery.StreamServerInterceptor(recoverOpts...),
		),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             cfg.KeepaliveMinTime,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:                  cfg.KeepaliveTime,
			Timeout:               cfg.KeepaliveTimeout,
			MaxConnectionAge:      cfg.MaxConnectionAge,
			MaxConnectionAgeGrace: cfg.MaxConnectionAgeGrace,
		}),
		grpc.MaxRecvMsgSize(1 << 20), // requests are small; refuse floods early
	}
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(cfg.TLS))
	}
	// Before the chains above: the trace context interceptor runs first.
	opts = append(tracingOptions(d.TracerProvider), opts...)
	s.grpc = grpc.NewServer(opts...)

	s.calls = newCallService(cfg, d, log, m, s.drain)
	reg := decodeRegistrar{s: s.grpc, failures: failures}
	callcontrolv1.RegisterCallControlServiceServer(reg, s.calls)
	callcontrolv1.RegisterDeviceServiceServer(reg, newDeviceService(d, s.calls.cv, log))
	callcontrolv1.RegisterSimulatorServiceServer(reg, newSimulatorService(d, s.calls))
	healthpb.RegisterHealthServer(reg, s.health)
	reflection.Register(reg)
	rpcMetrics.InitializeMetrics(s.grpc)

	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	for _, name := range serviceNames {
		st := healthpb.HealthCheckResponse_SERVING
		if name == callcontrolv1.SimulatorService_ServiceDesc.ServiceName && d.Simulator == nil {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		s.health.SetServingStatus(name, st)
	}
	return s, nil
}

// Serve accepts connections on lis until Shutdown.
func (s *Server) Serve(lis net.Listener) error { return s.grpc.Serve(lis) }

// GRPC exposes the underlying server (tests register extra services).
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// Shutdown drains: health turns NOT_SERVING so load balancers move away,
// every watch gets a progress frame and ends with UNAVAILABLE + RetryInfo,
// in-flight unary calls finish. If ctx ends first, remaining connections
// are closed hard.
func (s *Server) Shutdown(ctx context.Context) {
	s.once.Do(func() {
		s.Drain()
		done := make(chan struct{})
		go func() {
			s.grpc.GracefulStop()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			s.log.Warn("graceful stop timed out; closing remaining connections")
			s.grpc.Stop()
			<-done
		}
	})
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

// Drain is the first step of Shutdown, on its own: health turns
// NOT_SERVING and every watch gets a progress frame and ends with
// UNAVAILABLE + RetryInfo, while connections stay open. The HTTP side
// calls it before Shutdown, because GracefulStop cancels the requests
// served through ServeHTTP at once, before their final frames.
func (s *Server) Drain() {
	s.drainOnce.Do(func() {
		s.health.Shutdown()
		close(s.drain)
	})
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
