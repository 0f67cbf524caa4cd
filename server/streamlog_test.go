package server

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"callcontrold/auth"
	"callcontrold/directory"
)

// ctxStream is a stream whose handler gets another context.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

// alice is the caller the streams of these tests authenticate as.
var alice = &auth.Principal{Login: "alice", Role: directory.RoleUser}

// logLine is one line a logging.Logger was given.
type logLine struct {
	level  logging.Level
	msg    string
	fields logging.Fields
	login  string // the identity the line's context carries
}

// lineOf runs interceptor on a stream with ctx whose handler authenticates
// as alice and ends with err, and returns the line it logged.
func lineOf(t *testing.T, interceptor func(logging.Logger) grpc.StreamServerInterceptor, ctx context.Context, info *grpc.StreamServerInfo, err error) logLine {
	t.Helper()
	var lines []logLine
	logger := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		l := logLine{level: lvl, msg: msg, fields: fields}
		if p := identityOf(ctx); p != nil {
			l.login = p.Login
		}
		lines = append(lines, l)
	})
	authn := recordIdentity(func(ctx context.Context) (context.Context, error) { return auth.WithPrincipal(ctx, alice), nil })
	got := interceptor(logger)(nil, &ctxStream{ctx: ctx}, info, func(_ any, ss grpc.ServerStream) error {
		if _, aerr := authn(ss.Context()); aerr != nil {
			t.Fatal(aerr)
		}
		return err
	})
	if got != err {
		t.Errorf("interceptor returned %v, want the handler's %v", got, err)
	}
	if len(lines) != 1 {
		t.Fatalf("%d log lines, want 1: %v", len(lines), lines)
	}
	return lines[0]
}

// masked returns l with the values that depend on the clock replaced by
// "T" once they have been checked to parse.
func masked(t *testing.T, l logLine) logLine {
	t.Helper()
	f := append(logging.Fields(nil), l.fields...)
	for i := 0; i+1 < len(f); i += 2 {
		v, _ := f[i+1].(string)
		var err error
		switch f[i] {
		case "grpc.start_time", "grpc.request.deadline":
			_, err = time.Parse(time.RFC3339, v)
		case "grpc.time_ms":
			_, err = strconv.ParseFloat(v, 32)
		default:
			continue
		}
		if err != nil {
			t.Errorf("%s = %q: %v", f[i], v, err)
		}
		f[i+1] = "T"
	}
	l.fields = f
	return l
}

// A stream's line is the one go-grpc-middleware's logging interceptor
// writes (configured as server.go configures it for unary calls), field
// for field, level, message and the caller's identity included.
func TestStreamLogLineAsLogging(t *testing.T) {
	logged := func(logger logging.Logger) grpc.StreamServerInterceptor {
		inner := logging.StreamServerInterceptor(logger, logging.WithLogOnEvents(logging.FinishCall), logging.WithLevels(codeToLevel))
		// As the chain was: the slot outside logging's interceptor.
		return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return inner(srv, &ctxStream{ServerStream: ss, ctx: withIdentitySlot(ss.Context())}, info, h)
		}
	}
	ours := func(logger logging.Logger) grpc.StreamServerInterceptor {
		c := &streamChain{
			pending: &pendingRequests{}, metrics: newRPCMetrics(), logger: logger,
			authFn:    recordIdentity(func(ctx context.Context) (context.Context, error) { return auth.WithPrincipal(ctx, alice), nil }),
			needsAuth: func(string) bool { return true },
			recovered: func(context.Context, any) error { return internalError() },
		}
		return c.intercept
	}

	withPeer := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4711}})
	withDeadline, cancel := context.WithDeadline(withPeer, time.Now().Add(time.Hour))
	defer cancel()
	watch := &grpc.StreamServerInfo{FullMethod: "/callcontrol.v1.CallControlService/WatchCalls", IsServerStream: true}
	bidi := &grpc.StreamServerInfo{FullMethod: "/x.v1.S/Chat", IsClientStream: true, IsServerStream: true}
	for _, tc := range []struct {
		name string
		ctx  context.Context
		info *grpc.StreamServerInfo
		err  error
	}{
		{"ok", withPeer, watch, nil},
		{"eof", withPeer, watch, io.EOF},
		{"canceled", withPeer, watch, status.Error(codes.Canceled, "context canceled")},
		{"internal", withPeer, bidi, status.Error(codes.Internal, "boom")},
		{"plain error", withPeer, watch, errors.New("not a status")},
		{"deadline", withDeadline, watch, status.Error(codes.OutOfRange, "behind")},
		{"no peer", context.Background(), watch, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := masked(t, lineOf(t, logged, tc.ctx, tc.info, tc.err))
			got := masked(t, lineOf(t, ours, tc.ctx, tc.info, tc.err))
			if diff := cmp.Diff(want, got, cmp.AllowUnexported(logLine{})); diff != "" {
				t.Errorf("line differs from logging's (-logging +ours):\n%s", diff)
			}
			if got.login != "alice" {
				t.Errorf("line's context names %q, want alice", got.login)
			}
		})
	}
}
