package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// bearer sends "authorization: Bearer <token>" with every RPC.
type bearer struct {
	token string
	// secure: the connection is TLS. grpc-go refuses to use credentials
	// that require transport security on a plaintext connection; the
	// server's default is plaintext on loopback, so we only ask for it
	// when we have it and warn otherwise (see dial).
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.secure }

// tlsConfig builds the client TLS configuration: system roots or the CA
// file, plus a client certificate for mTLS.
func tlsConfig(g *globals) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if g.caFile != "" {
		pem, err := os.ReadFile(g.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s: no PEM certificates found", g.caFile)
		}
		cfg.RootCAs = pool
	}
	if g.certFile != "" || g.keyFile != "" {
		if g.certFile == "" || g.keyFile == "" {
			return nil, usageErrorf("--cert and --key go together")
		}
		cert, err := tls.LoadX509KeyPair(g.certFile, g.keyFile)
		if err != nil {
			return nil, fmt.Errorf("--cert/--key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// useTLS: --ca-file and --cert imply --tls.
func (g *globals) useTLS() bool { return g.tls || g.caFile != "" || g.certFile != "" }

// isLoopback reports whether addr (host:port) names this machine.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// dial opens a client connection. grpc.NewClient connects lazily, so a
// server that is down shows up as UNAVAILABLE on the first RPC.
func dial(g *globals, extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	if g.addr == "" {
		return nil, usageErrorf("--addr is empty")
	}
	opts := extra
	secure := g.useTLS()
	if secure {
		cfg, err := tlsConfig(g)
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	} else {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if tok := g.bearerToken(); tok != "" {
		if !secure && !isLoopback(g.addr) {
			fmt.Fprintf(g.stderr, "warning: sending the bearer token to %s without TLS (use --tls)\n", g.addr)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{token: tok, secure: secure}))
	}
	conn, err := grpc.NewClient(g.addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", g.addr, err)
	}
	return conn, nil
}

// usageError is a mistake on the command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

func isUsage(err error) bool {
	var u *usageError
	return errors.As(err, &u)
}
