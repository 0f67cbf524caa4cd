// Package web is callcontrold's HTTP side. One listener serves the same
// gRPC services to browsers and plain HTTP clients, and the console that
// a person opens first:
//
//   - the Connect protocol (unary as a JSON or binary POST that curl can
//     send, server streaming for WatchCalls), gRPC-Web and gRPC (over
//     HTTP/2, TLS or cleartext), all transcoded by connectrpc.com/vanguard
//     into calls on the existing *grpc.Server. There is one set of
//     handlers: authentication, authorization, rate limits, validation,
//     errors with details, logging and metrics are the gRPC server's
//     interceptors, whichever protocol a request came in on;
//   - the console (console/ holds the TypeScript sources, dist/ the built
//     assets, embedded in the binary) at "/".
//
// In front of the transcoder sits a thin layer that turns the bad input
// vanguard would answer with a bare HTTP status (a wrong content type, an
// unknown method, a body over the limit) into a Connect error a person
// can read, and that applies CORS for the configured origins only.
//
// Shutdown order matters: the gRPC server's drain must end the watch
// streams (progress frame, then UNAVAILABLE with RetryInfo) before
// grpc.Server.GracefulStop runs, because GracefulStop cancels requests
// served through ServeHTTP at once. Server.Shutdown takes the drain
// function for that reason.
package web
