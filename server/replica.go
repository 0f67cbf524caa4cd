package server

import (
	"context"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// SetServing sets the health of the server and of its call and device
// services: a replica reports NOT_SERVING until it has caught up with the
// log. After Shutdown it changes nothing (health stays NOT_SERVING).
func (s *Server) SetServing(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(callcontrolv1.CallControlService_ServiceDesc.ServiceName, st)
	s.health.SetServingStatus(callcontrolv1.DeviceService_ServiceDesc.ServiceName, st)
}

// resumeWait bounds how long a resumed watch waits for this process's
// store to reach the token's revision.
const resumeWait = 5 * time.Second

// awaitResume returns a stream interceptor that, for a WatchCalls with a
// resume token, first waits (bounded by resumeWait) until await says the
// store has reached the token's revision. A replica applies the shared
// log a little behind another: a token issued by a faster replica is
// then briefly "in the future" here, and a client must not be told to
// re-snapshot for that. Without await (one process) it only passes on.
func awaitResume(await func(ctx context.Context, rev int64) error) grpc.StreamServerInterceptor {
	watch := "/" + callcontrolv1.CallControlService_ServiceDesc.ServiceName + "/WatchCalls"
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if info.FullMethod != watch {
			return h(srv, ss)
		}
		return h(srv, &resumeStream{ServerStream: ss, await: await})
	}
}

// resumeStream waits for the store after receiving the WatchCalls request.
type resumeStream struct {
	grpc.ServerStream
	await func(ctx context.Context, rev int64) error
	seen  bool
}

func (s *resumeStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil || s.seen {
		return err
	}
	s.seen = true
	req, ok := m.(*callcontrolv1.WatchCallsRequest)
	if !ok || req.GetResumeToken() == "" {
		return nil
	}
	if t, err := parseResumeToken(req.GetResumeToken()); err == nil {
		ctx, cancel := context.WithTimeout(s.Context(), resumeWait)
		_ = s.await(ctx, t.Revision) // on timeout the watch answers FUTURE_REVISION, as it should
		cancel()
	}
	return nil
}
