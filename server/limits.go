package server

import (
	"container/list"
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/tap"
)

// Transport limits. None of the abuses they answer needs a token: a
// stranger can open TCP connections that never speak, streams that send
// HEADERS and never their request message, and header lists of many
// megabytes. Each limit bounds what such a client can hold, and when one
// bites it says so in a (rate-limited) log line and in
// callcontrold_transport_limit_hits_total{limit}.
//
// Enforced by grpc-go itself (SETTINGS advertised to clients; a
// well-behaved client never crosses them, so they are not counted here):
// MaxConcurrentStreams per connection, MaxHeaderListSize, the handshake
// ConnectionTimeout and MaxConnectionIdle.
//
// Enforced here:
//   - MaxConnections, by limitListener: at the cap, a new connection takes
//     the slot of the oldest connection that has not sent a byte yet (an
//     idle TCP connection costs the attacker nothing; a real client speaks
//     at once), or is closed when every open connection has spoken.
//   - RequestReadTimeout and MaxPendingRequests, by pendingRequests: a
//     stream must deliver its request message within the timeout of its
//     headers; and at most MaxPendingRequests streams, server-wide, may be
//     waiting for theirs, a new one cancelling the oldest. grpc reads a
//     unary request before any interceptor runs, so without this a
//     token-less stream would be held for as long as its client liked.

// The values of the limit label.
const (
	limitConnections       = "connections"       // a new connection refused: every open one has spoken
	limitSilentConnection  = "silent_connection" // a connection that never spoke closed for a new one
	limitPendingRequests   = "pending_requests"  // a stream still waiting for its request cancelled for a new one
	limitRequestReadTime   = "request_read_timeout"
	limitWatchersTotal     = "watchers_total"      // a watch refused: the server-wide cap
	limitWatchStalled      = "watch_stalled"       // a watch ended: its frames waited too long to go out
	limitWatchDrainStalled = "watch_drain_stalled" // a watch cut during a drain: it made no send progress
)

// limitHit counts a limit that bit and logs it, at most once per interval
// per limit, with the number of hits the log left out.
type limitHit struct {
	count func(limit string)
	log   *slog.Logger
	every time.Duration

	mu   sync.Mutex
	last map[string]time.Time
	left map[string]int
}

func newLimitHit(m *metrics, log *slog.Logger) *limitHit {
	return &limitHit{
		count: func(limit string) { m.limitHits.WithLabelValues(limit).Inc() },
		log:   log, every: 10 * time.Second,
		last: map[string]time.Time{}, left: map[string]int{},
	}
}

func (h *limitHit) hit(limit, msg string, args ...any) {
	h.count(limit)
	now := time.Now()
	h.mu.Lock()
	if now.Sub(h.last[limit]) < h.every {
		h.left[limit]++
		h.mu.Unlock()
		return
	}
	left := h.left[limit]
	h.last[limit], h.left[limit] = now, 0
	h.mu.Unlock()
	h.log.Warn(msg, append(args, "limit", limit, "suppressed_since_last_log", left)...)
}

// limitListener caps the connections open at once. See the package
// comment on transport limits.
type limitListener struct {
	net.Listener
	max  int
	hits *limitHit

	mu     sync.Mutex
	open   int       // connections holding a slot
	silent list.List // *limitConn that have not sent a byte, oldest first
}

func newLimitListener(l net.Listener, max int, hits *limitHit) net.Listener {
	if max <= 0 {
		return l
	}
	return &limitListener{Listener: l, max: max, hits: hits}
}

// Accept returns the next connection that gets a slot.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if lc := l.admit(c); lc != nil {
			return lc, nil
		}
	}
}

// Open returns the number of connections holding a slot.
func (l *limitListener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

func (l *limitListener) admit(c net.Conn) *limitConn {
	lc := &limitConn{Conn: c, l: l, counted: true}
	l.mu.Lock()
	var victim *limitConn
	if l.open >= l.max {
		front := l.silent.Front()
		if front == nil {
			l.mu.Unlock()
			// Counted before the close: a client that sees its connection
			// closed must find the hit counted.
			l.hits.hit(limitConnections, "connection limit reached: closed a new connection", "max_connections", l.max, "remote", c.RemoteAddr().String())
			_ = c.Close()
			return nil
		}
		// The new connection takes over the victim's slot.
		victim = l.silent.Remove(front).(*limitConn)
		victim.elem, victim.counted = nil, false
	} else {
		l.open++
	}
	lc.elem = l.silent.PushBack(lc)
	l.mu.Unlock()
	if victim != nil {
		l.hits.hit(limitSilentConnection, "connection limit reached: closed the oldest connection that never sent a byte", "max_connections", l.max, "remote", victim.RemoteAddr().String())
		_ = victim.Conn.Close()
	}
	return lc
}

// limitConn is a connection holding a slot of its limitListener.
type limitConn struct {
	net.Conn
	l     *limitListener
	heard atomic.Bool
	once  sync.Once

	elem    *list.Element // guarded by l.mu: in l.silent
	counted bool          // guarded by l.mu: holds a slot
}

func (c *limitConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && !c.heard.Load() {
		c.heard.Store(true)
		c.l.mu.Lock()
		if c.elem != nil {
			c.l.silent.Remove(c.elem)
			c.elem = nil
		}
		c.l.mu.Unlock()
	}
	return n, err
}

func (c *limitConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.elem != nil {
			c.l.silent.Remove(c.elem)
			c.elem = nil
		}
		if c.counted {
			c.counted = false
			c.l.open--
		}
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// Errors a stream's context is cancelled with (context.Cause), and that
// the abort function of AwaitRequest receives.
var (
	ErrRequestReadTimeout = errors.New("the request message did not arrive in time after the headers")
	ErrPendingEvicted     = errors.New("too many requests are waiting for their request message: this one waited longest")
)

// streamCtl is what the server keeps of a stream from its headers until
// its request message arrives: the cancel function of the stream's
// context, which grpc's InTapHandle lets the server derive. Cancelling it
// is the only way to end a stream whose handler grpc has not called yet
// (grpc reads a unary request before calling anything of ours).
type streamCtl struct {
	ctx    context.Context // the stream's, as the tap made it
	cancel context.CancelCauseFunc
	timer  *time.Timer
	read   atomic.Bool   // the request message arrived
	elem   *list.Element // guarded by pendingRequests.mu
}

type streamCtlKey struct{}

// streamCtlOf returns the stream's control, nil for a stream that did not
// come through the tap (a handler called by another transport).
func streamCtlOf(ctx context.Context) *streamCtl {
	st, _ := ctx.Value(streamCtlKey{}).(*streamCtl)
	return st
}

// pendingRequests tracks the streams whose request message has not
// arrived yet. See the package comment on transport limits.
type pendingRequests struct {
	max     int
	timeout time.Duration
	hits    *limitHit

	mu sync.Mutex
	l  list.List // *streamCtl, oldest first

	running atomic.Int64 // handlers running (a drain watches it)
}

// tap runs on every new stream, on the transport's goroutine, before the
// stream gets one of its own: it must be quick.
func (p *pendingRequests) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	st := &streamCtl{cancel: cancel}
	ctx = context.WithValue(ctx, streamCtlKey{}, st)
	st.ctx = ctx
	p.admit(st, info.FullMethodName)
	return ctx, nil
}

// admit puts st on the list, cancelling the oldest stream at the cap, and
// arms its read timeout. st.ctx and st.cancel must be set.
func (p *pendingRequests) admit(st *streamCtl, method string) {
	p.mu.Lock()
	var victim *streamCtl
	if p.max > 0 && p.l.Len() >= p.max {
		victim = p.l.Remove(p.l.Front()).(*streamCtl)
		victim.elem = nil
	}
	st.elem = p.l.PushBack(st)
	p.mu.Unlock()
	if victim != nil && victim.ctx.Err() == nil { // not a stream that ended meanwhile
		victim.cancel(ErrPendingEvicted)
		p.hits.hit(limitPendingRequests, "too many streams waiting for their request message: cancelled the oldest", "max_pending_requests", p.max)
	}
	if p.timeout > 0 {
		st.timer = time.AfterFunc(p.timeout, func() {
			if p.remove(st) && st.ctx.Err() == nil {
				st.cancel(ErrRequestReadTimeout)
				p.hits.hit(limitRequestReadTime, "a stream sent no request message in time: cancelled", "method", method, "timeout", p.timeout)
			}
		})
	}
}

// received marks st as having delivered its request.
func (p *pendingRequests) received(st *streamCtl) {
	if st.read.Load() || !st.read.CompareAndSwap(false, true) {
		return
	}
	p.remove(st)
	if st.timer != nil {
		st.timer.Stop()
		st.timer = nil // a stopped timer and its closure would stay as long as the stream
	}
}

// remove takes st off the list; false if it was not on it.
func (p *pendingRequests) remove(st *streamCtl) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st.elem == nil {
		return false
	}
	p.l.Remove(st.elem)
	st.elem = nil
	return true
}

// requestRead marks the stream of ctx as having delivered its request.
func (p *pendingRequests) requestRead(ctx context.Context) {
	if st := streamCtlOf(ctx); st != nil {
		p.received(st)
	}
}

// Pending returns the number of streams waiting for their request.
func (p *pendingRequests) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.l.Len()
}

// unary is the outermost unary interceptor: grpc has read the request by
// the time it runs.
func (p *pendingRequests) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	p.requestRead(ctx)
	p.running.Add(1)
	defer p.running.Add(-1)
	return h(ctx, req)
}

// stream is the outermost stream interceptor: a streaming handler reads
// its request itself, so the first RecvMsg marks it.
func (p *pendingRequests) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	p.running.Add(1)
	defer p.running.Add(-1)
	if streamCtlOf(ss.Context()) == nil {
		return h(srv, ss)
	}
	// A stream refused before it read its request (no token, say) is no
	// longer waiting for it either.
	defer p.requestRead(ss.Context())
	return h(srv, &firstRecvStream{ServerStream: ss, p: p})
}

type firstRecvStream struct {
	grpc.ServerStream
	p    *pendingRequests
	done bool
}

func (s *firstRecvStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if !s.done {
		s.done = true
		s.p.requestRead(s.ServerStream.Context())
	}
	return err
}
