package server

import (
	"context"
	"sync/atomic"

	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"

	"callcontrold/auth"
)

// The logging interceptor runs outside the auth interceptor (so that
// rejected calls are logged too), which means the context it logs with
// never sees the principal that auth adds further in. identitySlot bridges
// that: an interceptor outside logging puts an empty slot in the context,
// auth fills it, and logging reads it when the call finishes.
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

func identityStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return h(srv, &ctxStream{ServerStream: ss, ctx: withIdentitySlot(ss.Context())})
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

// identityFields gives the logging interceptor the caller's identity.
func identityFields(ctx context.Context) logging.Fields {
	if slot, ok := ctx.Value(identitySlotKey{}).(*identitySlot); ok {
		if p := slot.p.Load(); p != nil {
			return logging.Fields{"login", p.Login, "role", p.Role.String()}
		}
	}
	return nil
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
