package server

import (
	"context"
	"time"

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

// awaitResume, for a WatchCalls with a resume token, first waits (bounded
// by resumeWait) until the store has reached the token's revision. A
// replica applies the shared log a little behind another: a token issued
// by a faster replica is then briefly "in the future" here, and a client
// must not be told to re-snapshot for that. In one process (no
// awaitRevision) it returns at once.
func (s *callService) awaitResume(ctx context.Context, rev int64) {
	if s.awaitRevision == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, resumeWait)
	defer cancel()
	_ = s.awaitRevision(ctx, rev) // on timeout the watch answers FUTURE_REVISION, as it should
}
