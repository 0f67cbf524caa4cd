package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// asStatus does for these tests what server/errors.go does for the
// service: an *AuthError leaves as UNAUTHENTICATED.
func asStatus(f grpcauth.AuthFunc) grpcauth.AuthFunc {
	return func(ctx context.Context) (context.Context, error) {
		ctx, err := f(ctx)
		if errors.Is(err, ErrUnauthenticated) {
			return nil, status.Error(codes.Unauthenticated, err.Error())
		}
		return ctx, err
	}
}

// startServer serves the health service on a real TCP listener behind the
// go-grpc-middleware auth interceptors, as the server package wires it.
// A second interceptor echoes the principal's login in the response
// header, proving the context reaches the handlers.
func startServer(t *testing.T, a *Authenticator, opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	echo := func(ctx context.Context) {
		if p, ok := FromContext(ctx); ok {
			grpc.SetHeader(ctx, metadata.Pairs("x-login", p.Login))
		}
	}
	opts = append(opts,
		grpc.ChainUnaryInterceptor(
			grpcauth.UnaryServerInterceptor(asStatus(a.Authenticate)),
			func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				echo(ctx)
				return h(ctx, req)
			}),
		grpc.ChainStreamInterceptor(
			grpcauth.StreamServerInterceptor(asStatus(a.Authenticate)),
			func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				echo(ss.Context())
				return h(srv, ss)
			}),
	)
	s := grpc.NewServer(opts...)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(s, hs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(lis)
	}()
	t.Cleanup(func() {
		hs.Shutdown() // ends open Watch streams
		s.Stop()
		<-done
	})
	return lis.Addr().String()
}

func dial(t *testing.T, addr string, creds credentials.TransportCredentials) healthpb.HealthClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	must(t, err)
	t.Cleanup(func() { conn.Close() })
	return healthpb.NewHealthClient(conn)
}

func TestAuthenticateOverGRPC(t *testing.T) {
	a := newJWTAuthenticator(t)
	k := newTestKeys(t)
	client := dial(t, startServer(t, a), insecure.NewCredentials())
	expired := validClaims()
	expired.exp = time.Now().Add(-time.Hour)
	tests := []struct {
		name      string
		auth      []string // authorization values; none means no metadata
		wantCode  codes.Code
		wantLogin string
		wantMsg   string // in the status message
	}{
		{"no token", nil, codes.Unauthenticated, "", "missing bearer token: set metadata authorization: Bearer <token>"},
		{"Basic", []string{"Basic eDp5"}, codes.Unauthenticated, "", "want \"Bearer <token>\""},
		{"empty bearer", []string{"Bearer  "}, codes.Unauthenticated, "", "empty bearer token"},
		{"unknown token", []string{"Bearer demo-mallory"}, codes.Unauthenticated, "", "unknown bearer token"},
		{"directory token", []string{"Bearer demo-alice"}, codes.OK, "alice", ""},
		{"valid JWT", []string{"Bearer " + k.ed.sign(t, validClaims())}, codes.OK, "carol", ""},
		{"expired JWT", []string{"Bearer " + k.rsa.sign(t, expired)}, codes.Unauthenticated, "", "JWT expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for _, v := range tt.auth {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", v)
			}
			var header metadata.MD
			_, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&header))
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("Check: got code %v (%v), want %v", got, err, tt.wantCode)
			}
			if msg := status.Convert(err).Message(); !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("Check: got message %q, want it to contain %q", msg, tt.wantMsg)
			}
			if tt.wantCode == codes.OK {
				if got := header.Get("x-login"); len(got) != 1 || got[0] != tt.wantLogin {
					t.Errorf("handler saw login %v, want %q", got, tt.wantLogin)
				}
			}

			// The same through the stream interceptor.
			stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
			must(t, err)
			resp, err := stream.Recv()
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("Watch: got code %v (%v), want %v", got, err, tt.wantCode)
			}
			if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("Watch: got status %v, want SERVING", resp.GetStatus())
			}
		})
	}
}

func TestMutualTLSOverGRPC(t *testing.T) {
	pki := newTestPKI(t)
	serverTLS, err := TLSConfig(pki.serverCert, pki.serverKey, pki.caCert)
	must(t, err)
	a := newJWTAuthenticator(t)
	addr := startServer(t, a, grpc.Creds(credentials.NewTLS(serverTLS)))

	roots := x509.NewCertPool()
	roots.AddCert(pki.ca)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer demo-bob")

	withCert := dial(t, addr, credentials.NewTLS(&tls.Config{
		RootCAs: roots, ServerName: "127.0.0.1", Certificates: []tls.Certificate{pki.client},
	}))
	if _, err := withCert.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("Check with a client certificate: %v", err)
	}

	withoutCert := dial(t, addr, credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}))
	if _, err := withoutCert.Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("Check without a client certificate: got %v, want code Unavailable (handshake refused)", err)
	}
}
