package web

import (
	"context"
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"callcontrold/server"
)

// Transport limits on the HTTP port. Requests reach the gRPC server
// through its ServeHTTP, past grpc's own transport and every limit it
// enforces, so this side applies the same ones itself (see server's
// transport limits): the connection cap with silent-connection eviction
// (the server's listener), the pending-request budget and request-read
// timeout (shared with the gRPC port's streams), and net/http's
// equivalents of the rest (header size, handshake timeout, streams per
// HTTP/2 connection, idle connections).

// Transport is the gRPC server's side of the limits; *server.Server
// implements it.
type Transport interface {
	ListenerLimits() server.ListenerLimits
	LimitListener(net.Listener) net.Listener
	AwaitRequest(ctx context.Context, method string, abort func(cause error)) (received func())
}

// httpIdleTimeout closes an idle keep-alive connection: HTTP clients
// reconnect cheaply, so it is shorter than the gRPC port's idle limit
// (and never longer).
const httpIdleTimeout = 2 * time.Minute

// applyLimits sets hs's limits from lim.
func applyLimits(hs *http.Server, lim server.ListenerLimits) {
	hs.MaxHeaderBytes = lim.MaxHeaderListSize
	// Also the TLS handshake's limit (net/http uses the smallest of its
	// timeouts), and what an idle TCP connection gets before it is closed.
	hs.ReadHeaderTimeout = lim.ConnectionTimeout
	hs.IdleTimeout = httpIdleTimeout
	if lim.MaxConnectionIdle > 0 {
		hs.IdleTimeout = min(hs.IdleTimeout, lim.MaxConnectionIdle)
	}
	streams := lim.MaxConcurrentStreams
	if streams <= 0 {
		streams = math.MaxInt32 // none asked for; net/http's 0 means 250
	}
	hs.HTTP2 = &http.HTTP2Config{
		MaxConcurrentStreams: streams,
		// A frame is buffered whole before it is processed: 64 KiB is
		// plenty for 1 MiB messages, and what a stranger may make the
		// server hold per connection.
		MaxReadFrameSize: 64 << 10,
	}
}

// pendingBody is a request whose body is being read, counted against the
// server's pending-request budget. Aborted, its read fails at once.
type pendingBody struct {
	mu       sync.Mutex
	cause    error // why it was aborted
	received func()
}

// awaitBody starts counting r's body as pending; the caller must call
// done when the read has ended, and cause then says why it failed if the
// server aborted it. With no transport, nothing is counted.
func awaitBody(tr Transport, w http.ResponseWriter, r *http.Request) *pendingBody {
	pb := &pendingBody{}
	if tr == nil {
		return pb
	}
	rc := http.NewResponseController(w)
	pb.received = tr.AwaitRequest(r.Context(), r.URL.Path, func(cause error) {
		pb.mu.Lock()
		pb.cause = cause
		pb.mu.Unlock()
		// A deadline in the past fails the blocked read now (net/http
		// allows it from another goroutine while the handler runs, which
		// AwaitRequest guarantees).
		_ = rc.SetReadDeadline(time.Unix(1, 0))
	})
	return pb
}

func (pb *pendingBody) done() {
	if pb.received != nil {
		pb.received()
	}
}

func (pb *pendingBody) abortCause() error {
	pb.mu.Lock()
	defer pb.mu.Unlock()
	return pb.cause
}

// streamReset resets the HTTP stream of a server-streaming request when
// the gRPC server asks (server.WithStreamAbort): a write blocked on a
// client that does not read would otherwise hold the request, its
// connection and a drain for as long as the client stays connected.
type streamReset struct {
	mu    sync.Mutex
	ended bool
	rc    *http.ResponseController
}

func newStreamReset(w http.ResponseWriter) *streamReset {
	return &streamReset{rc: http.NewResponseController(w)}
}

// reset fails the stream's writes now, unless the request has ended (the
// ResponseWriter must not be touched after its handler returns).
func (s *streamReset) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		_ = s.rc.SetWriteDeadline(time.Unix(1, 0))
	}
}

func (s *streamReset) end() {
	s.mu.Lock()
	s.ended = true
	s.mu.Unlock()
}
