package server

import (
	"context"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// A request whose message does not decode is the client's fault, but
// grpc-go answers a codec failure INTERNAL, writes that status itself
// before the handler returns, and for a unary RPC does it before any
// interceptor runs: no log line or metric says who sent it, and it reads
// as a server bug. So the server's codec (codec.go) does not fail on a
// request: it records the failure here and lets the message through, and
// it is taken back inside the interceptor chain, after authentication,
// and answered INVALID_ARGUMENT (malformedRequest in errors.go) like any
// other refusal: by the innermost unary interceptor (decodeFailures.unary)
// instead of the handler, and by a stream's first read (decodeRegistrar
// wraps the stream handlers). A unary call refused before the innermost
// interceptor (no token, say) leaves its failure behind: the outermost one
// forgets it (pendingRequests.unary).
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

// unary is the innermost unary interceptor: a request that did not decode
// is answered here instead of calling the handler, and a panic in the
// handler becomes the error recovered makes of it (as streamChain's
// recovering does for streams). The check and the recovery are one
// interceptor, and no wrapper sits around each generated handler: every
// wrapper and interceptor is two more frames on each call's goroutine,
// which the runtime walks every time that goroutine's stack grows, and a
// closure or two allocated per call (docs/BENCHMARKS.md, "Sixth round").
func (f *decodeFailures) unary(recovered func(ctx context.Context, p any) error) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
		if err := f.received(req, nil); err != nil {
			return nil, err
		}
		defer func() {
			if p := recover(); p != nil {
				err = recovered(ctx, p)
			}
		}()
		return h(ctx, req)
	}
}

// decodeRegistrar registers services so that their requests' decode
// failures are let through to the chain: every request type is noted for
// the codec, and the stream handlers take the failure back at the first
// read.
type decodeRegistrar struct {
	s        *grpc.Server
	failures *decodeFailures
}

func (r decodeRegistrar) RegisterService(sd *grpc.ServiceDesc, impl any) {
	r.failures.wrap(sd)
	wrapped := *sd
	wrapped.Streams = make([]grpc.StreamDesc, len(sd.Streams))
	for i, st := range sd.Streams {
		if _, ok := impl.(*callService); ok && sd.ServiceName == callcontrolv1.CallControlService_ServiceDesc.ServiceName && st.StreamName == "WatchCalls" {
			st.Handler = watchCallsHandler // the generated one, its request pooled
		}
		st.Handler = r.stream(st.Handler)
		wrapped.Streams[i] = st
	}
	r.s.RegisterService(&wrapped, impl)
}

// GetServiceInfo lets reflection register through the registrar too.
func (r decodeRegistrar) GetServiceInfo() map[string]grpc.ServiceInfo { return r.s.GetServiceInfo() }

// stream checks the messages a stream receives; streams receive inside
// the interceptor chain already. The chain's own stream (chainStream)
// checks them itself, against its server's failures (streamMethod): a
// wrapper would be one more object an idle stream keeps for its life (24
// bytes).
func (r decodeRegistrar) stream(h grpc.StreamHandler) grpc.StreamHandler {
	return func(srv any, ss grpc.ServerStream) error {
		if _, ok := ss.(*chainStream); ok {
			return h(srv, ss)
		}
		return h(srv, decodeStream{ServerStream: ss, failures: r.failures})
	}
}

type decodeStream struct {
	grpc.ServerStream
	failures *decodeFailures
}

func (s decodeStream) RecvMsg(m any) error { return s.failures.received(m, s.ServerStream.RecvMsg(m)) }
