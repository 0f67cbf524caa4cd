// Package server is the gRPC face of callcontrold: it validates requests,
// authorizes them with package auth, hands them to the switch (package
// pbx) and streams the call store's changes (package callstore) to
// watchers. It holds no call state of its own.
//
// One function, New, builds the whole grpc.Server: interceptor chains in
// the order trace context → metrics → logging → auth → recovery (or the
// OpenTelemetry stats handler when tracing is on, tracing.go), keepalive
// enforcement, health (overall and per service), reflection and the three
// services, registered so that a request that does not decode is the
// client's INVALID_ARGUMENT (decode.go). errors.go is the one place where
// errors become status codes; identity.go puts the caller and the trace
// on every log line of a request.
package server
