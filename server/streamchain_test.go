package server

import (
	"context"
	"errors"
	"slices"
	"testing"
	"unsafe"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"callcontrold/auth"
)

// The chain's steps around a streaming handler: authentication (skipped
// where not needed), panic recovery, the counters and the log line.
func TestStreamChainSteps(t *testing.T) {
	errNoToken := status.Error(codes.Unauthenticated, "no token")
	var codesLogged []string
	c := &streamChain{
		pending: &pendingRequests{},
		metrics: newRPCMetrics(),
		logger: logging.LoggerFunc(func(ctx context.Context, _ logging.Level, _ string, fields ...any) {
			login := ""
			if p := identityOf(ctx); p != nil {
				login = p.Login
			}
			for i := 0; i+1 < len(fields); i += 2 {
				if fields[i] == "grpc.code" {
					codesLogged = append(codesLogged, fields[i+1].(string)+" "+login)
				}
			}
		}),
		authFn: recordIdentity(func(ctx context.Context) (context.Context, error) {
			if ctx.Value(tokenKey{}) == nil {
				return nil, errNoToken
			}
			return auth.WithPrincipal(ctx, alice), nil
		}),
		needsAuth: func(service string) bool { return service != "open.Service" },
		recovered: func(context.Context, any) error { return internalError() },
	}
	info := func(method string) *grpc.StreamServerInfo {
		return &grpc.StreamServerInfo{FullMethod: method, IsServerStream: true}
	}
	withToken := context.WithValue(context.Background(), tokenKey{}, true)

	// Authenticated: the handler's context carries the principal.
	err := c.intercept(nil, &ctxStream{ctx: withToken}, info("/s.Service/Watch"), func(_ any, ss grpc.ServerStream) error {
		if p, ok := auth.FromContext(ss.Context()); !ok || p != alice {
			t.Errorf("handler's principal %v, want alice", p)
		}
		return nil
	})
	if err != nil {
		t.Errorf("authenticated stream: %v", err)
	}
	// No token: the handler does not run.
	err = c.intercept(nil, &ctxStream{ctx: context.Background()}, info("/s.Service/Watch"), func(any, grpc.ServerStream) error {
		t.Error("handler ran without authentication")
		return nil
	})
	if !errors.Is(err, errNoToken) {
		t.Errorf("no token: got %v, want %v", err, errNoToken)
	}
	// A service that needs none, and a handler that panics.
	err = c.intercept(nil, &ctxStream{ctx: context.Background()}, info("/open.Service/Watch"), func(any, grpc.ServerStream) error {
		panic("boom")
	})
	if status.Code(err) != codes.Internal {
		t.Errorf("panicking handler: got %v, want INTERNAL", err)
	}

	// The lines name the caller where authentication passed.
	if want := []string{"OK alice", "Unauthenticated ", "Internal "}; !slices.Equal(codesLogged, want) {
		t.Errorf("logged codes and callers %q, want %q", codesLogged, want)
	}
	if got := testutil.ToFloat64(c.metrics.started.WithLabelValues("server_stream", "s.Service", "Watch")); got != 2 {
		t.Errorf("grpc_server_started_total{s.Service} = %v, want 2", got)
	}
	if got := testutil.ToFloat64(c.metrics.handled.WithLabelValues("server_stream", "open.Service", "Watch", "Internal")); got != 1 {
		t.Errorf("grpc_server_handled_total{Internal} = %v, want 1", got)
	}
	if n := c.pending.Pending(); n != 0 {
		t.Errorf("%d streams still pending after their handlers returned", n)
	}
}

type tokenKey struct{}

// TestChainStreamSize: an idle stream keeps its chainStream for its life;
// it stays in the 48-byte size class, decode failures included (the
// wrapper decodeRegistrar would otherwise add is 24 more bytes).
func TestChainStreamSize(t *testing.T) {
	if size := unsafe.Sizeof(chainStream{}); size > 48 {
		t.Errorf("chainStream is %d bytes, want at most 48", size)
	}
}
