package main

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// The no-op baseline: a hand-written service (no protoc) registered on the
// same grpc.Server as the real services, so it runs through the same
// interceptor chain (metrics, identity, logging, auth, recovery), codec
// and transport, and is called with the same bearer token.
const (
	noopService      = "callbench.v1.NoopService"
	noopUnaryMethod  = "/" + noopService + "/Unary"
	noopStreamMethod = "/" + noopService + "/Stream"
)

// noopServer is the handler type of the no-op service.
type noopServer interface{ noop() }

type noopImpl struct{}

func (noopImpl) noop() {}

// noopFrame is the small pre-built message the no-op stream repeats: a
// WatchCalls progress frame, the size of a typical heartbeat (31 bytes encoded).
var noopFrame = &callcontrolv1.WatchCallsResponse{Frame: &callcontrolv1.WatchCallsResponse_Progress{Progress: &callcontrolv1.Progress{
	Revision:    123456,
	ResumeToken: "a1b2c3d4e5f60718-123456",
}}}

var noopDesc = grpc.ServiceDesc{
	ServiceName: noopService,
	HandlerType: (*noopServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Unary",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(emptypb.Empty)
			if err := dec(in); err != nil {
				return nil, err
			}
			handler := func(context.Context, any) (any, error) { return &emptypb.Empty{}, nil }
			if interceptor == nil {
				return handler(ctx, in)
			}
			return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: noopUnaryMethod}, handler)
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Stream",
		ServerStreams: true,
		// Stream sends noopFrame until the client goes away.
		Handler: func(_ any, stream grpc.ServerStream) error {
			if err := stream.RecvMsg(new(emptypb.Empty)); err != nil {
				return err
			}
			for {
				if err := stream.SendMsg(noopFrame); err != nil {
					return nil // the client left
				}
			}
		},
	}},
}

func registerNoop(s *grpc.Server) { s.RegisterService(&noopDesc, noopImpl{}) }
