// Package benchserver builds callcontrold's gRPC server inside a load
// tool's own process (cmd/callbench, cmd/sipbench, the peer benchmark in
// bench/etcd), the way cmd/callcontrold builds it: the authenticator on
// the directory's bearer tokens, the interceptor chain and every service
// (server.New), serving on a loopback port, and the service's default
// GOGC (internal/gcpercent) unless the environment sets one: the
// collector's cadence is part of the fan-out's latency tail. The
// benchmarks measure the service, not its limits or its log output, so
// the rate and watch limits are off and the logs are discarded at the
// default level (info), which still has the logging interceptor format
// every finished call.
//
// The caller builds what it measures (the store and the switch: simulated,
// SIP or a replica's) and closes it after Close.
package benchserver

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"callcontrold/auth"
	"callcontrold/internal/gcpercent"
	"callcontrold/server"
)

// Logger is the benchmarks' logger: discarded, at level info.
func Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// Server is callcontrold's gRPC server and its authenticator.
type Server struct {
	srv   *server.Server
	authn *auth.Authenticator
	addr  string
	serve chan error
}

// New builds the server from d as cmd/callcontrold does, filling in what
// every benchmark sets alike: Authenticate (bearer tokens of d.Directory),
// Limiter (no limits), Registry (a registry of its own) and, if nil,
// Logger (see Logger), and sets the process's GOGC as cmd/callcontrold
// does. It does not serve yet: register more services on
// GRPC first if needed, then call Serve or ServeLoopback.
func New(cfg server.Config, d server.Deps) (*Server, error) {
	if d.Directory == nil {
		return nil, errors.New("benchserver: no directory")
	}
	if d.Logger == nil {
		d.Logger = Logger()
	}
	gcpercent.Apply(gcpercent.Default, os.Getenv, debug.SetGCPercent, d.Logger)
	s := &Server{}
	var err error
	s.authn, err = auth.NewAuthenticator(context.Background(), auth.Config{Tokens: d.Directory, Logger: d.Logger})
	if err != nil {
		return nil, err
	}
	d.Authenticate = s.authn.Authenticate
	d.Limiter = auth.NewLimiter(auth.LimitConfig{})
	d.Registry = prometheus.NewRegistry()
	if s.srv, err = server.New(cfg, d); err != nil {
		_ = s.authn.Close()
		return nil, err
	}
	return s, nil
}

// GRPC is the grpc.Server the services are registered on.
func (s *Server) GRPC() *grpc.Server { return s.srv.GRPC() }

// ServeLoopback serves on a new listener at 127.0.0.1 (a free port).
func (s *Server) ServeLoopback() error {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s.Serve(lis)
	return nil
}

// Serve serves on lis until Close.
func (s *Server) Serve(lis net.Listener) {
	s.addr = lis.Addr().String()
	s.serve = make(chan error, 1)
	go func() { s.serve <- s.srv.Serve(lis) }()
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.addr }

// Close shuts the server down (its streams are given 5 s to end), then
// the authenticator.
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	s.srv.Shutdown(ctx)
	cancel()
	if s.serve != nil {
		<-s.serve
	}
	_ = s.authn.Close()
}
