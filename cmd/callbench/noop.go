package main

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/server"
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
type noopServer interface {
	frames() []any
	fanoutHub() *noopHub
}

// noopImpl holds what the no-op stream sends: WatchCalls frames the
// stream scenario took from a real watch (setFrames), each encoded once
// and sent as it is, as the watch fan-out sends its shared frames; until
// then, noopFrame.
// hub is the no-op fan-out's (noopfanout.go).
type noopImpl struct {
	sample atomic.Pointer[[]any]
	hub    noopHub
}

func (n *noopImpl) fanoutHub() *noopHub { return &n.hub }

func (n *noopImpl) frames() []any {
	if f := n.sample.Load(); f != nil {
		return *f
	}
	return []any{noopFrame}
}

// setFrames makes the no-op stream send these encoded WatchCallsResponse
// frames, in turn.
func (n *noopImpl) setFrames(frames [][]byte) {
	out := make([]any, len(frames))
	for i, b := range frames {
		out[i] = server.Encoded(b)
	}
	n.sample.Store(&out)
}

// noopFrame is what the no-op stream sends until the stream scenario has
// given it frames of a real watch: a WatchCalls progress frame, the size
// of a typical heartbeat (31 bytes encoded).
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
		// Stream sends its frames in turn until the client goes away.
		Handler: func(srv any, stream grpc.ServerStream) error {
			if err := stream.RecvMsg(new(emptypb.Empty)); err != nil {
				return err
			}
			frames := srv.(noopServer).frames()
			for i := 0; ; i++ {
				if err := stream.SendMsg(frames[i%len(frames)]); err != nil {
					return nil // the client left
				}
			}
		},
	}, {
		StreamName:    "Fanout",
		ServerStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error {
			return serveNoopFanout(srv.(noopServer).fanoutHub(), stream)
		},
	}},
}

// registerNoop registers the no-op service on s.
func registerNoop(s *grpc.Server) *noopImpl {
	n := &noopImpl{}
	s.RegisterService(&noopDesc, n)
	return n
}
