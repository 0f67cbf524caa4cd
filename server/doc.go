// Package server is the gRPC face of callcontrold: it validates requests,
// authorizes them with package auth, hands them to the switch (package
// pbx) and streams the call store's changes (package callstore) to
// watchers. It holds no call state of its own.
//
// One function, New, builds the whole grpc.Server: interceptor chains in
// the order metrics → logging → auth → recovery, keepalive enforcement,
// health (overall and per service), reflection and the three services.
// errors.go is the one place where domain errors become status codes.
package server
