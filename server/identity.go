package server

import (
	"context"
	"log/slog"
	"sync/atomic"

	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"callcontrold/auth"
)

// The logging interceptor runs outside the auth interceptor (so that
// rejected calls are logged too), which means the context it logs with
// never sees the principal that auth adds further in. identitySlot bridges
// that: an interceptor outside logging puts an empty slot in the context,
// auth fills it, and identityHandler reads it when logging interceptor
// writes its line. (A unary call's: a stream's line is written by
// streamChain with the handler's context, which has the principal.)
type identitySlot struct {
	p atomic.Pointer[auth.Principal]
}

type identitySlotKey struct{}

func withIdentitySlot(ctx context.Context) context.Context {
	return context.WithValue(ctx, identitySlotKey{}, &identitySlot{})
}

func identityUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	return h(withIdentitySlot(ctx), req)
}

// identityOf returns the caller of a request context: from auth's value
// (handlers) or from the slot (interceptors outside auth).
func identityOf(ctx context.Context) *auth.Principal {
	if p, ok := auth.FromContext(ctx); ok {
		return p
	}
	if slot, ok := ctx.Value(identitySlotKey{}).(*identitySlot); ok {
		return slot.p.Load()
	}
	return nil
}

// identityHandler adds the caller's identity (auth.LogAttrs: the one set
// of keys) and the request's trace and span ids to every record logged
// with a request's context, by handlers and interceptors alike.
type identityHandler struct{ slog.Handler }

// The log keys of the request's trace (W3C ids in hex, as tracing
// backends show them).
const (
	logKeyTraceID = "trace_id"
	logKeySpanID  = "span_id"
)

// withIdentity wraps a logger's handler once.
func withIdentity(l *slog.Logger) *slog.Logger {
	if _, ok := l.Handler().(identityHandler); ok {
		return l
	}
	return slog.New(identityHandler{l.Handler()})
}

func (h identityHandler) Handle(ctx context.Context, r slog.Record) error {
	if p := identityOf(ctx); p != nil {
		r.AddAttrs(auth.LogAttrs(p)...)
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String(logKeyTraceID, sc.TraceID().String()), slog.String(logKeySpanID, sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h identityHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return identityHandler{h.Handler.WithAttrs(attrs)}
}

func (h identityHandler) WithGroup(name string) slog.Handler {
	return identityHandler{h.Handler.WithGroup(name)}
}

// recordIdentity wraps an AuthFunc so the principal it finds also lands in
// the slot that logging reads.
func recordIdentity(f grpcauth.AuthFunc) grpcauth.AuthFunc {
	return func(ctx context.Context) (context.Context, error) {
		ctx, err := f(ctx)
		if err != nil {
			return ctx, err
		}
		if p, ok := auth.FromContext(ctx); ok {
			if slot, ok := ctx.Value(identitySlotKey{}).(*identitySlot); ok {
				slot.p.Store(p)
			}
		}
		return ctx, nil
	}
}
