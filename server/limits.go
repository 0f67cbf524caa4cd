package server

import (
	"container/list"
	"context"
	"errors"
	"fmt"
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
	lc := &limitConn{Conn: c, l: l, counted: true, ready: newReadyReader(c)}
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

// limitConn is a connection holding a slot of its limitListener. grpc
// reads the client's preface through Read and its frames through
// ReadOnReady (limitconn_read.go); other servers read through Read.
type limitConn struct {
	net.Conn
	l     *limitListener
	ready *readyReader // nil: not a plain socket
	heard atomic.Bool
	once  sync.Once

	elem    *list.Element // guarded by l.mu: in l.silent
	counted bool          // guarded by l.mu: holds a slot
}

func (c *limitConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.spoke()
	}
	return n, err
}

// spoke takes c off the silent list once it has sent a byte.
func (c *limitConn) spoke() {
	if c.heard.Load() {
		return
	}
	c.heard.Store(true)
	c.l.mu.Lock()
	if c.elem != nil {
		c.l.silent.Remove(c.elem)
		c.elem = nil
	}
	c.l.mu.Unlock()
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

// Errors a pending stream is ended with (a unary call's context is
// cancelled with them, see context.Cause), and that the abort function of
// AwaitRequest receives.
var (
	ErrRequestReadTimeout = errors.New("the request message did not arrive in time after the headers")
	ErrPendingEvicted     = errors.New("too many requests are waiting for their request message: this one waited longest")
)

// streamCtl is what the server keeps of a stream from its headers until
// its request message arrives: how to end the wait. It is its own entry in
// the pending list (prev, next), so admitting a stream allocates nothing
// more.
//
// A unary call's: the cancel function of the stream's context, which
// grpc's InTapHandle lets the server derive. Cancelling it is the only way
// to end a call whose handler grpc has not called yet (grpc reads a unary
// request before calling anything of ours).
//
// A streaming call's handler runs at once, and reads the request itself:
// its wait is ended by failing that first read (chainStream), so its
// context needs no cancel of its own. A context derived with a cancel
// stays for the stream's life, and on a WatchCalls stream that is ≈ 500
// bytes of heap (the child context, its Done channel, the map of children
// it puts on grpc's stream context) for a wait of a few microseconds. Its
// control comes from streamCtlPool and goes back once the request has
// arrived (release): opening a stream then allocates nothing here that a
// stream kept idle would find holes of next to its live objects.
type streamCtl struct {
	ctx      context.Context   // the stream's: Err says whether it ended meanwhile
	cancel   func(cause error) // a unary call's (or AwaitRequest's): ends the wait
	method   string            // for the log line
	deadline time.Time         // RequestReadTimeout after admission

	prev, next *streamCtl  // guarded by pendingRequests.mu: the pending list
	read       atomic.Bool // the request message arrived
	listed     bool        // guarded by pendingRequests.mu: on the pending list
	reading    bool        // the handler's: a firstRead goroutine may still use ss, m and readErr

	// A streaming call's: wake gets wokeAbort when its wait is aborted,
	// for cause, and wokeRead when its first read, on a goroutine of its
	// own (ss.RecvMsg(m)), returned readErr. Each is sent at most once
	// (an abort only by whoever took the control off the pending list),
	// so the buffer of two never blocks a sender.
	wake    chan byte
	cause   error
	ss      grpc.ServerStream
	m       any
	readErr error
}

// What a streaming call's control is woken with.
const (
	wokeRead byte = iota + 1
	wokeAbort
)

// streamCtlPool holds the controls of streaming calls whose wait ended
// with their request (release), their wake channel empty.
var streamCtlPool = sync.Pool{New: func() any { return &streamCtl{wake: make(chan byte, 2)} }}

// abort ends the wait, for cause. Called at most once, and only by whoever
// took st off the pending list.
func (st *streamCtl) abort(cause error) {
	if st.wake == nil {
		st.cancel(cause)
		return
	}
	st.cause = cause
	st.wake <- wokeAbort
}

type streamCtlKey struct{}

// streamCtlOf returns a unary call's control, nil for a call that did not
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
	// failures are the requests that did not decode: the innermost unary
	// interceptor takes a call's back, unary forgets the failure of a
	// call refused before it (decode.go). Nil: none recorded.
	failures *decodeFailures

	// streaming holds the full names of the streaming methods: the tap
	// leaves those to the stream interceptor. Written by New before the
	// server serves, only read afterwards.
	streaming map[string]bool

	mu    sync.Mutex
	l     ctlList     // oldest first, and so by deadline
	timer *time.Timer // runs expire; armed while the list is not empty
	armed bool        // the timer is armed (stopped once the list empties)

	running atomic.Int64 // handlers running (a drain watches it)
}

// tap runs on every new stream, on the transport's goroutine, before the
// stream gets one of its own: it must be quick. A unary call's context
// gets a cancel; a streaming call is left to the stream interceptor.
// (A streaming method registered after New, which the server does not
// know as one, gets a cancel too, and the interceptor keeps it.)
func (p *pendingRequests) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if p.streaming[info.FullMethodName] {
		return ctx, nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	st := &streamCtl{cancel: cancel}
	ctx = context.WithValue(ctx, streamCtlKey{}, st)
	st.ctx = ctx
	p.admit(st, info.FullMethodName)
	return ctx, nil
}

// admit puts st on the list, cancelling the oldest stream at the cap, and
// starts its read timeout. st.ctx and st.cancel must be set.
func (p *pendingRequests) admit(st *streamCtl, method string) {
	st.method = method
	st.deadline = time.Now().Add(p.timeout)
	p.mu.Lock()
	var victim *streamCtl
	if p.max > 0 && p.l.n >= p.max {
		victim = p.l.head
		p.l.remove(victim)
	}
	p.l.pushBack(st)
	if p.timeout > 0 && !p.armed {
		p.armed = true
		if p.timer == nil {
			p.timer = time.AfterFunc(p.timeout, p.expire)
		} else {
			p.timer.Reset(p.timeout)
		}
	}
	p.mu.Unlock()
	// Counted before the cancel: a client that sees its stream end must
	// find the hit counted.
	if victim != nil && victim.ctx.Err() == nil { // not a stream that ended meanwhile
		p.hits.hit(limitPendingRequests, "too many streams waiting for their request message: cancelled the oldest", "max_pending_requests", p.max)
		victim.abort(ErrPendingEvicted)
	}
}

// expire ends the waits past their deadline. One timer serves every
// pending stream: they all have the same timeout, so the list is in the
// order of their deadlines, and the timer is armed for the oldest's.
func (p *pendingRequests) expire() {
	now := time.Now()
	var late []*streamCtl
	p.mu.Lock()
	for st := p.l.head; st != nil; st = p.l.head {
		if wait := st.deadline.Sub(now); wait > 0 {
			p.timer.Reset(wait)
			break
		}
		p.l.remove(st)
		late = append(late, st)
	}
	p.armed = p.l.n > 0
	p.mu.Unlock()
	for _, st := range late {
		if st.ctx.Err() == nil { // not a stream that ended meanwhile (counted first, as above)
			p.hits.hit(limitRequestReadTime, "a stream sent no request message in time: cancelled", "method", st.method, "timeout", p.timeout)
			st.abort(ErrRequestReadTimeout)
		}
	}
}

// stop forgets every pending stream and stops the read timeout's timer.
// A stream that ended before its request came (a client that gave up)
// stays on the list until its deadline, and a stream's context carries
// the grpc server and so everything this server serves: once the server
// has stopped, nothing of it may stay reachable from the timer.
func (p *pendingRequests) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.timer != nil {
		p.timer.Stop()
	}
	p.armed = false
	for p.l.head != nil {
		p.l.remove(p.l.head)
	}
}

// received marks st as having delivered its request. It says whether it
// took st off the pending list itself: then nobody else holds st to abort
// its wait, now or later.
func (p *pendingRequests) received(st *streamCtl) (unlisted bool) {
	if st.read.Load() || !st.read.CompareAndSwap(false, true) {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if st.listed {
		p.l.remove(st)
		unlisted = true
	}
	if p.armed && p.l.n == 0 {
		// An armed timer is the runtime's, and holds p (and through its
		// metrics the server's store): it must not outlive the last wait.
		p.timer.Stop()
		p.armed = false
	}
	return unlisted
}

// ctlList is the pending list: the controls linked through their prev
// and next fields.
type ctlList struct {
	head, tail *streamCtl
	n          int
}

func (l *ctlList) pushBack(st *streamCtl) {
	st.prev, st.next, st.listed = l.tail, nil, true
	if l.tail != nil {
		l.tail.next = st
	} else {
		l.head = st
	}
	l.tail = st
	l.n++
}

// remove takes st, which must be listed, off the list.
func (l *ctlList) remove(st *streamCtl) {
	if st.prev != nil {
		st.prev.next = st.next
	} else {
		l.head = st.next
	}
	if st.next != nil {
		st.next.prev = st.prev
	} else {
		l.tail = st.prev
	}
	st.prev, st.next, st.listed = nil, nil, false
	l.n--
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
	return p.l.n
}

// unary is the outermost unary interceptor: grpc has read the request by
// the time it runs.
func (p *pendingRequests) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	p.requestRead(ctx)
	p.running.Add(1)
	defer p.running.Add(-1)
	resp, err := h(ctx, req)
	if p.failures != nil {
		_ = p.failures.take(req) // refused before the innermost interceptor took it back
	}
	return resp, err
}

// startRead counts s as pending until its first RecvMsg returns: a
// streaming handler reads its request itself. A stream served through
// ServeHTTP (it carries a stream abort: package web) is not counted here:
// that listener counts its requests itself (AwaitRequest).
func (s *chainStream) startRead(method string) {
	ctx := s.ServerStream.Context()
	st := streamCtlOf(ctx) // a method the tap did not know as streaming
	if st == nil {
		if streamAbortOf(ctx) != nil {
			return
		}
		st = streamCtlPool.Get().(*streamCtl)
		st.ctx = ctx
		s.m.pending.admit(st, method)
	}
	s.st = st
}

// readDone takes the stream off the pending list, once, and lets its
// control go: after the first read, an idle stream does not keep it. A
// stream refused before it read its request (no token, say) is no longer
// waiting for it either.
func (s *chainStream) readDone() {
	if st := s.st; st != nil {
		s.st = nil
		if s.m.pending.received(st) && st.wake != nil && !st.reading {
			st.release()
		}
	}
}

// release puts back in the pool a streaming call's control that nobody
// holds any more: it was taken off the pending list by received (so no
// abort is coming), and no first read's goroutine is left with it (so its
// wake channel is empty).
func (st *streamCtl) release() {
	st.ctx, st.method, st.deadline = nil, "", time.Time{}
	st.ss, st.m, st.readErr = nil, nil, nil
	st.read.Store(false)
	streamCtlPool.Put(st)
}

// firstRead reads a streaming call's request message into m, or fails
// once the wait is aborted. grpc's read cannot be interrupted but by
// cancelling the stream's context, which this stream has no cancel of: so
// it runs on a goroutine of its own, which the stream's end releases
// after an abort (the handler returns the abort's error, and grpc then
// ends the stream).
func (st *streamCtl) firstRead(ss grpc.ServerStream, m any) error {
	if st.wake == nil { // the tap's: cancelling the context ends the read
		return ss.RecvMsg(m)
	}
	select {
	case <-st.wake: // nothing reads yet: an abort
		return st.abortError()
	default:
	}
	st.ss, st.m, st.reading = ss, m, true
	goRun(st)
	if <-st.wake == wokeAbort {
		return st.abortError() // the goroutine keeps st until its read returns
	}
	err := st.readErr
	st.ss, st.m, st.readErr, st.reading = nil, nil, nil, false
	return err
}

// runJob is firstRead's goroutine (goRun).
func (st *streamCtl) runJob() {
	st.readErr = st.ss.RecvMsg(st.m)
	st.wake <- wokeRead
}

// abortError is what an aborted first read returns: the status a unary
// call's cancelled context gives (CANCELLED), whatever the cause.
func (st *streamCtl) abortError() error {
	return toStatusError(fmt.Errorf("%w: %w", context.Canceled, st.cause))
}

// streamingMethods returns the full names of the streaming methods s
// serves (pendingRequests.streaming).
func streamingMethods(s *grpc.Server) map[string]bool {
	m := map[string]bool{}
	for service, info := range s.GetServiceInfo() {
		for _, method := range info.Methods {
			if method.IsClientStream || method.IsServerStream {
				m["/"+service+"/"+method.Name] = true
			}
		}
	}
	return m
}
