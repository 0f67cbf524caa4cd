package server

import (
	"context"
	"net"
	"sync"
	"time"
)

// Transport limits of another listener in front of the same server: the
// HTTP one of package web, whose requests reach grpc through ServeHTTP,
// past grpc's own transport and so past every limit grpc enforces and the
// InTapHandle that starts the request-read clock. That listener applies
// these itself, sharing the server's metric, log lines and pending-request
// budget.

// ListenerLimits are the values another listener applies itself (from
// Config, defaults filled in; zero or negative: none).
type ListenerLimits struct {
	MaxConcurrentStreams int           // streams per HTTP/2 connection
	MaxHeaderListSize    int           // bytes of request headers
	ConnectionTimeout    time.Duration // TLS handshake and first request headers
	MaxConnectionIdle    time.Duration // a connection without requests this long is closed
	RequestReadTimeout   time.Duration // the request message must arrive within this of the headers
}

// ListenerLimits returns the limits another listener must apply itself.
func (s *Server) ListenerLimits() ListenerLimits {
	return ListenerLimits{
		MaxConcurrentStreams: s.cfg.MaxConcurrentStreams,
		MaxHeaderListSize:    s.cfg.MaxHeaderListSize,
		ConnectionTimeout:    s.cfg.ConnectionTimeout,
		MaxConnectionIdle:    s.cfg.MaxConnectionIdle,
		RequestReadTimeout:   s.cfg.RequestReadTimeout,
	}
}

// LimitListener caps the connections open at once on l at MaxConnections,
// as Serve caps the gRPC listener's (each listener has a cap of its own;
// the connections gauge counts both).
func (s *Server) LimitListener(l net.Listener) net.Listener {
	l = newLimitListener(l, s.cfg.MaxConnections, s.hits)
	if ll, ok := l.(*limitListener); ok {
		s.listeners.add(ll)
	}
	return l
}

// AwaitRequest counts a request whose message has not arrived yet against
// MaxPendingRequests and RequestReadTimeout, together with the gRPC
// listener's streams. If the request is cancelled for a newer one, or its
// message is late, abort is called once, from another goroutine, with
// ErrPendingEvicted or ErrRequestReadTimeout: it must make the read of the
// message fail (a read deadline in the past, say). received must be called
// once the message has arrived or the wait has ended; abort is not called
// after it returns, provided abort is quick (it runs under a lock).
func (s *Server) AwaitRequest(ctx context.Context, method string, abort func(cause error)) (received func()) {
	var mu sync.Mutex
	done := false
	ctx, cancel := context.WithCancelCause(ctx)
	st := &streamCtl{ctx: ctx, cancel: func(cause error) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			abort(cause)
		}
		cancel(cause)
	}}
	s.pending.admit(st, method)
	return func() {
		s.pending.received(st)
		mu.Lock()
		done = true
		mu.Unlock()
		cancel(nil)
	}
}

// streamAbortKey carries the function that resets a stream served through
// ServeHTTP (see WithStreamAbort).
type streamAbortKey struct{}

// WithStreamAbort returns ctx carrying abort, for a request the HTTP
// listener hands to the grpc server's ServeHTTP. A write to such a stream
// blocks for as long as its client does not read, and neither cancelling
// the stream nor the handler's return unblocks it: when the server ends a
// watch stuck in a send (stalled, or cut by a drain) and the stream is
// still there DrainSendTimeout later, or a drain ends a watch and its
// stream is still there two DrainSendTimeouts later, it calls abort,
// which must reset the stream (an HTTP write deadline in the past). abort may be called from
// any goroutine, after the request has ended too.
func WithStreamAbort(ctx context.Context, abort func()) context.Context {
	return context.WithValue(ctx, streamAbortKey{}, abort)
}

func streamAbortOf(ctx context.Context) func() {
	f, _ := ctx.Value(streamAbortKey{}).(func())
	return f
}

// limitListeners are the capped listeners, for the connections gauge.
type limitListeners struct {
	mu sync.Mutex
	l  []*limitListener
}

func (ls *limitListeners) add(l *limitListener) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.l = append(ls.l, l)
}

// open is the number of connections holding a slot (-1: no cap).
func (ls *limitListeners) open() int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if len(ls.l) == 0 {
		return -1
	}
	n := 0
	for _, l := range ls.l {
		n += l.Open()
	}
	return n
}
