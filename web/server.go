package web

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc"
)

// Server is the HTTP listener's server: timeouts that protect it from
// slow or idle clients without cutting long streams, HTTP/1.1 and HTTP/2
// (h2c in cleartext, so gRPC clients can use the port too).
type Server struct {
	http   *http.Server
	lis    net.Listener
	tls    bool          // serves TLS (http.Server's TLSConfig is no guide: Serve sets one for HTTP/2)
	served chan struct{} // closed when Start's Serve returned; nil without Start
}

// Listen builds the handler for gs (see NewHandler) and listens on addr.
// With tlsConf, the server speaks TLS (HTTP/2 by ALPN) and requires
// client certificates if tlsConf does. Call Serve, then Shutdown.
func Listen(addr string, gs *grpc.Server, cfg Config, tlsConf *tls.Config) (*Server, error) {
	h, err := NewHandler(gs, cfg)
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http: listen on %s: %w", addr, err)
	}
	s := newServer(h, tlsConf)
	s.lis = lis
	if cfg.Transport != nil {
		applyLimits(s.http, cfg.Transport.ListenerLimits())
		s.lis = cfg.Transport.LimitListener(lis)
	}
	return s, nil
}

// Start listens on addr (see Listen), serves in the background, logging
// a failure of the listener to log, and logs the console's URL. Shutdown
// stops it.
func Start(addr string, gs *grpc.Server, cfg Config, tlsConf *tls.Config, log *slog.Logger) (*Server, error) {
	s, err := Listen(addr, gs, cfg, tlsConf)
	if err != nil {
		return nil, err
	}
	s.served = make(chan struct{})
	go func() {
		defer close(s.served)
		if err := s.Serve(); err != nil {
			log.Error("http server", "error", err)
		}
	}()
	log.Info("http: console, Connect, gRPC-Web and gRPC", "url", s.URL())
	return s, nil
}

// URL is the console's address, e.g. http://127.0.0.1:8080/.
func (s *Server) URL() string {
	scheme := "http"
	if s.tls {
		scheme = "https"
	}
	return scheme + "://" + s.lis.Addr().String() + "/"
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.lis.Addr() }

func newServer(h http.Handler, tlsConf *tls.Config) *Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	if tlsConf == nil {
		protocols.SetUnencryptedHTTP2(true)
	} else {
		tlsConf = tlsConf.Clone()
	}
	return &Server{tls: tlsConf != nil, http: &http.Server{
		Handler:   h,
		TLSConfig: tlsConf,
		Protocols: &protocols,
		// No ReadTimeout or WriteTimeout: they would end WatchCalls streams.
		// Request bodies and unary responses get per-request deadlines
		// instead (Config.BodyTimeout, UnaryWriteTimeout).
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}}
}

// Serve accepts connections until Shutdown; it returns nil after
// Shutdown.
func (s *Server) Serve() error {
	var err error
	if s.tls {
		err = s.http.ServeTLS(s.lis, "", "")
	} else {
		err = s.http.Serve(s.lis)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections and waits for requests in flight.
// drain is called first (the gRPC server's Drain): it ends the watch
// streams, which would otherwise keep their requests in flight until ctx
// ends. If ctx ends first, the remaining connections are closed.
func (s *Server) Shutdown(ctx context.Context, drain func()) {
	if drain != nil {
		drain()
	}
	if err := s.http.Shutdown(ctx); err != nil {
		_ = s.http.Close()
	}
	_ = s.lis.Close() // in case Serve never ran
	if s.served != nil {
		<-s.served
	}

}
