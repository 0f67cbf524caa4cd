package server

import (
	"context"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// A request whose message does not decode is the client's fault, but
// grpc-go answers a codec failure INTERNAL, writes that status itself
// before the handler returns, and for a unary RPC does it before any
// interceptor runs: no log line or metric says who sent it, and it reads
// as a server bug. So the server's codec (codec.go) does not fail on a
// request: it records the failure here and lets the message through, and
// the handlers of every service, wrapped by decodeRegistrar, take it back
// and answer INVALID_ARGUMENT (malformedRequest in errors.go) from inside
// the interceptor chain, after authentication, like any other refusal.
//
// Only the request types of services registered through decodeRegistrar
// are let through: a service registered on the grpc.Server directly
// keeps grpc-go's behaviour, and no failure is recorded that no handler
// would take back.
type decodeFailures struct {
	types   sync.Map     // request message full name → struct{}: the wrapped ones
	pending atomic.Int64 // entries in m: the common case (none) costs one load
	m       sync.Map     // request message (a pointer) → its decode error
}

// record keeps err for msg and reports whether it did: only for the
// request types of wrapped services.
func (f *decodeFailures) record(msg any, err error) bool {
	m, ok := msg.(proto.Message)
	if !ok {
		return false
	}
	if _, wrapped := f.types.Load(m.ProtoReflect().Descriptor().FullName()); !wrapped {
		return false
	}
	f.m.Store(msg, err)
	f.pending.Add(1)
	return true
}

// wrap notes the request types of the service sd names, so that the codec
// lets their decode failures through to the wrapped handlers.
func (f *decodeFailures) wrap(sd *grpc.ServiceDesc) {
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(sd.ServiceName))
	if err != nil {
		return // not a registered proto service: grpc-go's behaviour
	}
	sv, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return
	}
	for i := range sv.Methods().Len() {
		f.types.Store(sv.Methods().Get(i).Input().FullName(), struct{}{})
	}
}

// take returns and forgets the decode failure of msg, if any.
func (f *decodeFailures) take(msg any) error {
	if f.pending.Load() == 0 {
		return nil
	}
	v, ok := f.m.LoadAndDelete(msg)
	if !ok {
		return nil
	}
	f.pending.Add(-1)
	return v.(error)
}

// received returns the outcome of reading msg: err from the stream, or
// the decode failure the codec recorded.
func (f *decodeFailures) received(msg any, err error) error {
	if err != nil {
		return err
	}
	if derr := f.take(msg); derr != nil {
		return malformedRequest(derr)
	}
	return nil
}

// decodeRegistrar registers services with handlers that take back their
// requests' decode failures.
type decodeRegistrar struct {
	s        *grpc.Server
	failures *decodeFailures
}

func (r decodeRegistrar) RegisterService(sd *grpc.ServiceDesc, impl any) {
	r.failures.wrap(sd)
	wrapped := *sd
	wrapped.Methods = make([]grpc.MethodDesc, len(sd.Methods))
	for i, m := range sd.Methods {
		m.Handler = r.unary(m.Handler)
		wrapped.Methods[i] = m
	}
	wrapped.Streams = make([]grpc.StreamDesc, len(sd.Streams))
	for i, st := range sd.Streams {
		st.Handler = r.stream(st.Handler)
		wrapped.Streams[i] = st
	}
	r.s.RegisterService(&wrapped, impl)
}

// GetServiceInfo lets reflection register through the registrar too.
func (r decodeRegistrar) GetServiceInfo() map[string]grpc.ServiceInfo { return r.s.GetServiceInfo() }

// unary lets a generated unary handler run its interceptors even when the
// request did not decode: the chain then ends in a handler that returns
// the failure instead of calling the service method.
func (r decodeRegistrar) unary(h grpc.MethodHandler) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
		var decodeErr error
		held := func(m any) error {
			if err := dec(m); err != nil {
				return err // grpc-go has answered already (a message over the size limit, say)
			}
			decodeErr = r.failures.received(m, nil)
			return nil
		}
		chain := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if decodeErr != nil {
				handler = func(context.Context, any) (any, error) { return nil, decodeErr }
			}
			if ic == nil {
				return handler(ctx, req)
			}
			return ic(ctx, req, info, handler)
		}
		return h(srv, ctx, held, chain)
	}
}

// stream checks the messages a stream receives; streams receive inside
// the interceptor chain already.
func (r decodeRegistrar) stream(h grpc.StreamHandler) grpc.StreamHandler {
	return func(srv any, ss grpc.ServerStream) error {
		return h(srv, decodeStream{ServerStream: ss, failures: r.failures})
	}
}

type decodeStream struct {
	grpc.ServerStream
	failures *decodeFailures
}

func (s decodeStream) RecvMsg(m any) error { return s.failures.received(m, s.ServerStream.RecvMsg(m)) }
