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
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/credentials"

	"callcontrold/auth"
	"callcontrold/callstore"
	"callcontrold/directory"
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

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)

	var dir *directory.Directory
	if cfg.directoryFile == "" {
		dir = directory.Demo()
		for _, addr := range []string{cfg.addr, cfg.httpAddr} {
			if addr == "" || isLoopback(addr) {
				continue
			}
			if !cfg.allowDemoPublic {
				return fmt.Errorf("refusing to serve the demo directory on %s: its tokens are public; listen on a loopback address, pass --directory, or --allow-demo-public", addr)
			}
			log.Warn("serving the demo directory on a non-loopback address: its tokens (demo-<login>) are public", "addr", addr)
		}
	} else if dir, err = directory.Load(cfg.directoryFile); err != nil {
		return err
	}

	store := callstore.New(callstore.Options{HistorySize: cfg.historySize, WatcherQueue: cfg.watcherQueue})
	defer store.Close()
	sw := sim.New(dir, store, sim.Options{RingTimeout: cfg.ringTimeout})
	defer sw.Close()

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	authCfg := auth.Config{Tokens: dir, Logger: log}
	if cfg.jwksFile != "" || cfg.jwksURL != "" {
		authCfg.JWT = &auth.JWTConfig{JWKSFile: cfg.jwksFile, JWKSURL: cfg.jwksURL, Issuer: cfg.jwtIssuer, Audience: cfg.jwtAudience}
	}
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	authn, err := auth.NewAuthenticator(startCtx, authCfg)
	cancel()
	if err != nil {
		return err
	}
	defer authn.Close()

	tp, stopTracing, err := startTracing(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stopTracing()

	srvCfg := server.Config{ProgressInterval: cfg.progressInterval, MaxConnectionAge: cfg.maxConnectionAge}
	var tlsConf *tls.Config
	if cfg.tlsCert != "" {
		if tlsConf, err = auth.TLSConfig(cfg.tlsCert, cfg.tlsKey, cfg.tlsClientCA); err != nil {
			return err
		}
		srvCfg.TLS = credentials.NewTLS(tlsConf)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := server.New(srvCfg, server.Deps{
		Store:        store,
		Directory:    dir,
		Switch:       sw,
		Devices:      sw,
		Simulator:    sw,
		Authenticate: authn.Authenticate,
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

	lis, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.addr, err)
	}
	var metricsSrv *http.Server
	if cfg.metricsAddr != "" {
		mlis, err := net.Listen("tcp", cfg.metricsAddr)
		if err != nil {
			lis.Close()
			return fmt.Errorf("metrics: listen on %s: %w", cfg.metricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := metricsSrv.Serve(mlis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", "error", err)
			}
		}()
		log.Info("metrics", "addr", mlis.Addr().String(), "path", "/metrics")
	}

	var webSrv *web.Server
	if cfg.httpAddr != "" {
		webCfg := web.Config{AllowedOrigins: strings.Split(cfg.httpCORSOrigins, ",")}
		if webSrv, err = web.Start(cfg.httpAddr, srv.GRPC(), webCfg, tlsConf, log); err != nil {
			lis.Close()
			return err
		}
	}

	if cfg.demoTraffic > 0 {
		go func() {
			if err := sim.RunTraffic(ctx, sw, cfg.demoTraffic, nil); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("demo traffic stopped", "error", err)
			}
		}()
		log.Info("demo traffic", "calls_per_second", cfg.demoTraffic)
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(lis) }()
	log.Info("serving", "addr", lis.Addr().String(), "tls", cfg.tlsCert != "", "mtls", cfg.tlsClientCA != "",
		"directory", directoryName(cfg), "switch", "simulated", "otlp_endpoint", cfg.otlpEndpoint)

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

func directoryName(c *config) string {
	if c.directoryFile == "" {
		return "embedded demo"
	}
	return strings.TrimSpace(c.directoryFile)
}
