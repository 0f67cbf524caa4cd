// Command callcontrold serves the Call API of an IP PBX over gRPC. With no
// flags it runs on localhost:50051 with the embedded demo directory and the
// simulated switch; see --help for everything else.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/credentials"

	"callcontrold/auth"
	"callcontrold/directory"
	"callcontrold/internal/gcpercent"
	"callcontrold/internal/telemetry"
	"callcontrold/pbx/sim"
	"callcontrold/server"
	"callcontrold/web"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "callcontrold:", err)
		os.Exit(1)
	}
}

func newLogger(c *config, out io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.logLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(out, opts))
	}
	return slog.New(slog.NewTextHandler(out, opts))
}

// isLoopback reports whether a listen address only accepts local
// connections. An empty host listens everywhere.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// run is the whole life of the process: read the settings, build the
// parts, serve until SIGINT/SIGTERM, drain.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	gcpercent.Apply(cfg.gcPercent, getenv, debug.SetGCPercent, log)
	dir, err := loadDirectory(cfg, log)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	parts, err := newParts(ctx, cfg, dir, log, reg)
	if err != nil {
		return err
	}
	defer parts.close()
	authn, err := newAuthenticator(ctx, cfg, dir, log)
	if err != nil {
		return err
	}
	defer authn.Close()
	tp, stopTracing, err := startTracing(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stopTracing()

	srv, tlsConf, err := newServer(cfg, server.Deps{
		Store:         parts.store,
		Directory:     dir,
		Switch:        parts.sw,
		Devices:       parts.devices,
		Simulator:     parts.sim,
		Forward:       parts.forward,
		AwaitRevision: parts.await,
		Applied:       parts.applied,
		Authenticate:  authn.Authenticate,
		Limiter: auth.NewLimiter(auth.LimitConfig{
			ControlRPS: cfg.controlRPS, ControlBurst: cfg.controlBurst,
			ReadRPS: cfg.readRPS, ReadBurst: cfg.readBurst,
			MaxWatchesPerPrincipal: cfg.maxWatches,
		}),
		Logger:         log,
		Registry:       reg,
		TracerProvider: tp,
	})
	if err != nil {
		return err
	}
	if err := parts.start(ctx, srv, log); err != nil {
		return err
	}

	lis, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.addr, err)
	}
	metricsSrv, err := serveMetrics(cfg.metricsAddr, reg, log)
	if err != nil {
		lis.Close()
		return err
	}
	var webSrv *web.Server
	if cfg.httpAddr != "" {
		webCfg := web.Config{AllowedOrigins: strings.Split(cfg.httpCORSOrigins, ","), Transport: srv}
		if webSrv, err = web.Start(cfg.httpAddr, srv.GRPC(), webCfg, tlsConf, log); err != nil {
			lis.Close()
			return err
		}
	}
	startDemoTraffic(ctx, cfg.demoTraffic, parts.simSw, log)
	return serveUntilDone(ctx, cfg, srv, lis, webSrv, metricsSrv, log)
}

// loadDirectory reads --directory, or returns the demo directory, which
// is refused on a non-loopback address unless --allow-demo-public.
func loadDirectory(cfg *config, log *slog.Logger) (*directory.Directory, error) {
	if cfg.directoryFile != "" {
		return directory.Load(cfg.directoryFile)
	}
	for _, addr := range []string{cfg.addr, cfg.httpAddr} {
		if addr == "" || isLoopback(addr) {
			continue
		}
		if !cfg.allowDemoPublic {
			return nil, fmt.Errorf("refusing to serve the demo directory on %s: its tokens are public; listen on a loopback address, pass --directory, or --allow-demo-public", addr)
		}
		log.Warn("serving the demo directory on a non-loopback address: its tokens (demo-<login>) are public", "addr", addr)
	}
	if cfg.switchKind == "sip" && !isLoopback(cfg.sipAddr) && !cfg.allowDemoPublic {
		return nil, fmt.Errorf("refusing to take SIP registrations for the demo directory on %s: its SIP passwords are public; use a loopback --sip-addr, pass --directory, or --allow-demo-public", cfg.sipAddr)
	}
	return directory.Demo(), nil
}

// newAuthenticator verifies the directory's tokens, and JWTs when a JWKS
// is configured (fetching a JWKS URL may take up to 30 s at start).
func newAuthenticator(ctx context.Context, cfg *config, dir *directory.Directory, log *slog.Logger) (*auth.Authenticator, error) {
	authCfg := auth.Config{Tokens: dir, Logger: log}
	if cfg.jwksFile != "" || cfg.jwksURL != "" {
		authCfg.JWT = &auth.JWTConfig{JWKSFile: cfg.jwksFile, JWKSURL: cfg.jwksURL, Issuer: cfg.jwtIssuer, Audience: cfg.jwtAudience}
	}
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return auth.NewAuthenticator(startCtx, authCfg)
}

// newServer builds the gRPC server from the settings; tlsConf (nil
// without TLS) is for the HTTP side too.
func newServer(cfg *config, deps server.Deps) (srv *server.Server, tlsConf *tls.Config, err error) {
	srvCfg := serverConfig(cfg)
	if cfg.tlsCert != "" {
		if tlsConf, err = auth.TLSConfig(cfg.tlsCert, cfg.tlsKey, cfg.tlsClientCA); err != nil {
			return nil, nil, err
		}
		srvCfg.TLS = credentials.NewTLS(tlsConf)
	}
	srv, err = server.New(srvCfg, deps)
	return srv, tlsConf, err
}

// serverConfig maps the settings onto server.Config. A limit of 0 on the
// command line means "none", which server.Config spells as negative (its
// zero value means "the default").
func serverConfig(cfg *config) server.Config {
	none := func(v int) int {
		if v == 0 {
			return -1
		}
		return v
	}
	noneD := func(d time.Duration) time.Duration {
		if d == 0 {
			return -1
		}
		return d
	}
	return server.Config{
		ProgressInterval:     cfg.progressInterval,
		WriteCoalesceWindow:  cfg.writeCoalesce,
		MaxConnectionAge:     cfg.maxConnectionAge,
		DrainRetryAfter:      cfg.drainRetryAfter,
		DrainRetryJitter:     noneD(cfg.drainRetryJitter),
		MaxConnections:       none(cfg.maxConnections),
		MaxConcurrentStreams: none(cfg.maxConcurrentStreams),
		MaxHeaderListSize:    cfg.maxHeaderListSize,
		ConnectionTimeout:    cfg.connectionTimeout,
		MaxConnectionIdle:    noneD(cfg.maxConnectionIdle),
		RequestReadTimeout:   noneD(cfg.requestReadTimeout),
		MaxPendingRequests:   none(cfg.maxPendingRequests),
		MaxWatchers:          none(cfg.maxWatchesTotal),
		WatchSendTimeout:     noneD(cfg.watchSendTimeout),
	}
}

// serveMetrics serves /metrics on addr; nil, nil when addr is empty.
func serveMetrics(addr string, reg *prometheus.Registry, log *slog.Logger) (*http.Server, error) {
	if addr == "" {
		return nil, nil
	}
	mlis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(mlis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "error", err)
		}
	}()
	log.Info("metrics", "addr", mlis.Addr().String(), "path", "/metrics")
	return srv, nil
}

// startDemoTraffic runs --demo-traffic calls per second until ctx ends.
func startDemoTraffic(ctx context.Context, rate float64, sw *sim.Switch, log *slog.Logger) {
	if rate <= 0 {
		return
	}
	go func() {
		if err := sim.RunTraffic(ctx, sw, rate, nil); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("demo traffic stopped", "error", err)
		}
	}()
	log.Info("demo traffic", "calls_per_second", rate)
}

// serveUntilDone serves until ctx ends (a signal), then drains for at
// most --shutdown-timeout.
func serveUntilDone(ctx context.Context, cfg *config, srv *server.Server, lis net.Listener, webSrv *web.Server, metricsSrv *http.Server, log *slog.Logger) error {
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(lis) }()
	log.Info("serving", "addr", lis.Addr().String(), "tls", cfg.tlsCert != "", "mtls", cfg.tlsClientCA != "",
		"directory", directoryName(cfg), "switch", cfg.switchKind, "otlp_endpoint", cfg.otlpEndpoint)

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: draining watchers and in-flight calls", "timeout", cfg.shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
	defer cancel()
	if webSrv != nil {
		webSrv.Shutdown(sctx, srv.Drain) // its watch streams end before GracefulStop
	}
	srv.Shutdown(sctx)
	if metricsSrv != nil {
		_ = metricsSrv.Shutdown(sctx)
	}
	<-serveErr
	log.Info("stopped")
	return nil
}

func directoryName(c *config) string {
	if c.directoryFile == "" {
		return "embedded demo"
	}
	return strings.TrimSpace(c.directoryFile)
}

// startTracing sets up the tracer provider of --otlp-endpoint (a no-op one
// without it); stop flushes the spans still batched.
func startTracing(ctx context.Context, cfg *config, log *slog.Logger) (tp trace.TracerProvider, stop func(), err error) {
	tp, shutdown, err := telemetry.Tracing(ctx, "callcontrold", cfg.otlpEndpoint)
	if err != nil {
		return nil, nil, err
	}
	return tp, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(sctx); err != nil {
			log.Warn("tracing: flushing spans", "error", err)
		}
	}, nil
}
