package server_test

// The transport abuses that need no token, each against a server with
// small limits: a fresh, well-behaved client must still be served, and
// what the abuser holds on the server (goroutines, heap) must stay within
// a bound computed from the limits. Deadlines are liveness bounds only.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/server"
)

// rawH2 speaks just enough HTTP/2 to open gRPC streams and then misbehave.
// A reader goroutine discards the server's frames, counting the streams it
// ended (RST_STREAM, or trailers with END_STREAM) and answering PING acks
// on a channel, which is the barrier that says the server has processed
// every frame sent before the PING.
type rawH2 struct {
	t    *testing.T
	conn net.Conn
	fr   *http2.Framer
	next uint32

	pong chan struct{}
	done chan struct{}

	mu      sync.Mutex
	ended   map[uint32]bool
	refused int // RST_STREAM REFUSED_STREAM: the per-connection stream limit
}

func dialRawH2(t *testing.T, addr string) *rawH2 {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := &rawH2{t: t, conn: conn, fr: http2.NewFramer(conn, conn), next: 1,
		pong: make(chan struct{}, 1), done: make(chan struct{}), ended: map[uint32]bool{}}
	t.Cleanup(func() {
		conn.Close()
		<-r.done
	})
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := r.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	go r.read()
	return r
}

func (r *rawH2) read() {
	defer close(r.done)
	rd := http2.NewFramer(io.Discard, r.conn)
	rd.MaxHeaderListSize = 1 << 20
	for {
		f, err := rd.ReadFrame()
		if err != nil {
			return
		}
		r.mu.Lock()
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			r.ended[f.StreamID] = true
			if f.ErrCode == http2.ErrCodeRefusedStream {
				r.refused++
			}
		case *http2.HeadersFrame:
			if f.StreamEnded() {
				r.ended[f.StreamID] = true
			}
		case *http2.DataFrame:
			if f.StreamEnded() {
				r.ended[f.StreamID] = true
			}
		case *http2.PingFrame:
			if f.IsAck() {
				select {
				case r.pong <- struct{}{}:
				default:
				}
			}
		}
		r.mu.Unlock()
	}
}

// open sends the HEADERS of a ListCalls stream, with no token and no
// message; pad adds a header of that many bytes. Write errors are ignored:
// the server may close the connection, which is what some limits do.
func (r *rawH2) open(pad int) uint32 {
	var extra []hpack.HeaderField
	if pad > 0 {
		extra = append(extra, hpack.HeaderField{Name: "x-pad", Value: strings.Repeat("a", pad)})
	}
	return r.openCall("ListCalls", extra...)
}

// openWatch sends the HEADERS of a WatchCalls stream with demo-alice's
// token and no message: the handler runs, and waits for its request.
func (r *rawH2) openWatch() uint32 {
	return r.openCall("WatchCalls", hpack.HeaderField{Name: "authorization", Value: "Bearer demo-alice"})
}

// openCall sends the HEADERS of a stream of the CallControlService method
// with the extra header fields, and no message.
func (r *rawH2) openCall(method string, extra ...hpack.HeaderField) uint32 {
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range append([]hpack.HeaderField{
		{Name: ":method", Value: "POST"},
		{Name: ":scheme", Value: "http"},
		{Name: ":path", Value: "/" + callcontrolv1.CallControlService_ServiceDesc.ServiceName + "/" + method},
		{Name: ":authority", Value: "localhost"},
		{Name: "content-type", Value: "application/grpc"},
		{Name: "te", Value: "trailers"},
	}, extra...) {
		_ = enc.WriteField(f)
	}
	id := r.next
	r.next += 2
	b := block.Bytes()
	const chunk = 16 << 10
	first := b[:min(chunk, len(b))]
	b = b[len(first):]
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndHeaders: len(b) == 0}); err != nil {
		return id
	}
	for len(b) > 0 {
		c := b[:min(chunk, len(b))]
		b = b[len(c):]
		if err := r.fr.WriteContinuation(id, len(b) == 0, c); err != nil {
			return id
		}
	}
	return id
}

// sync returns once the server has processed every frame sent so far.
func (r *rawH2) sync() {
	r.t.Helper()
	if err := r.fr.WritePing(false, [8]byte{1}); err != nil {
		r.t.Fatalf("ping: %v", err)
	}
	select {
	case <-r.pong:
	case <-r.done:
		r.t.Fatal("the server closed the connection")
	case <-time.After(waitLimit):
		r.t.Fatal("no PING ack")
	}
}

func (r *rawH2) counts() (ended, refused int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ended), r.refused
}

// served checks that a fresh client, on a new connection, gets an answer.
func served(t *testing.T, h *harness) {
	t.Helper()
	c := h.dial("demo-alice")
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if _, err := c.calls.ListCalls(ctx, &callcontrolv1.ListCallsRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("a fresh client is not served: %v", err)
	}
}

// goroutinesAtMost waits (liveness bound) for the process to have at most
// n goroutines and fails with the count if it never does.
func goroutinesAtMost(t *testing.T, n int, why string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		got := runtime.NumGoroutine()
		if got <= n {
			t.Logf("%d goroutines, bound %d (%s)", got, n, why)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, want at most %d (%s)", got, n, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// limitHits returns callcontrold_transport_limit_hits_total{limit}.
func limitHits(t *testing.T, h *harness, limit string) float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "callcontrold_transport_limit_hits_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "limit" && l.GetValue() == limit {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// perConnGoroutines bounds the goroutines grpc runs per server connection
// (reader, writer, keepalive) plus the test's reader of a raw connection.
const perConnGoroutines = 5

// Streams that send HEADERS, no message and no token: each would hold a
// goroutine for as long as its client likes. The per-connection stream
// limit refuses the excess, and at most MaxPendingRequests wait for their
// message server-wide, a new one cancelling the oldest.
func TestAbuseHeadersWithoutMessage(t *testing.T) {
	const conns, streams, perConn, pending = 5, 100, 20, 30
	h := newHarness(t, withConfig(func(c *server.Config) {
		c.MaxConcurrentStreams = perConn
		c.MaxPendingRequests = pending
		c.RequestReadTimeout = -1 // only the cap: the timeout has its own test
	}))
	served(t, h) // the baseline includes one client connection
	base := runtime.NumGoroutine()
	var raws []*rawH2
	for range conns {
		r := dialRawH2(t, h.addr)
		for range streams {
			r.open(0)
		}
		r.sync()
		raws = append(raws, r)
	}
	served(t, h)
	refused := 0
	for _, r := range raws {
		_, n := r.counts()
		refused += n
	}
	if refused == 0 {
		t.Errorf("no stream refused with %d streams on connections limited to %d", streams, perConn)
	}
	if got := limitHits(t, h, "pending_requests"); got < conns*perConn-pending {
		t.Errorf("pending_requests limit hits = %v, want at least %d", got, conns*perConn-pending)
	}
	// Without the pending cap: conns*perConn stream goroutines.
	goroutinesAtMost(t, base+pending+(conns+1)*perConnGoroutines+10, "pending streams capped")
}

// Streaming calls with a token and no message: their handlers run and
// wait in their first read, and at most MaxPendingRequests of them wait,
// a new one ending the oldest's.
func TestAbuseStreamsWithoutMessage(t *testing.T) {
	const conns, perConn, pending = 4, 25, 10
	h := newHarness(t, withConfig(func(c *server.Config) {
		c.MaxPendingRequests = pending
		c.RequestReadTimeout = -1 // only the cap: the timeout has its own test
	}))
	served(t, h)
	base := runtime.NumGoroutine()
	for range conns {
		r := dialRawH2(t, h.addr)
		for range perConn {
			r.openWatch()
		}
		r.sync()
	}
	served(t, h)
	// A streaming call is admitted by its own handler's goroutine, which
	// a busy machine may run well after the transport took the stream.
	want := float64(conns*perConn - pending)
	waitFor(t, fmt.Sprintf("%v pending_requests limit hits", want), func() bool { return limitHits(t, h, "pending_requests") >= want })
	// A waiting stream holds its handler's goroutine and its read's; the
	// ended ones hold none.
	goroutinesAtMost(t, base+2*pending+(conns+1)*perConnGoroutines+10, "waiting streams capped")
}

// A stream whose request message never comes is cancelled after
// RequestReadTimeout: a unary call's (grpc waits for its message before
// any handler runs) and a streaming call's (its handler runs and waits in
// its first read).
func TestAbuseRequestReadTimeout(t *testing.T) {
	const streams = 20
	h := newHarness(t, withConfig(func(c *server.Config) { c.RequestReadTimeout = 100 * time.Millisecond }))
	r := dialRawH2(t, h.addr)
	for i := range streams {
		if i%2 == 0 {
			r.open(0)
		} else {
			r.openWatch()
		}
	}
	r.sync()
	deadline := time.Now().Add(waitLimit)
	for {
		if ended, _ := r.counts(); ended == streams {
			break
		}
		if time.Now().After(deadline) {
			ended, _ := r.counts()
			t.Fatalf("%d of %d streams without a request message ended", ended, streams)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := limitHits(t, h, "request_read_timeout"); got != streams {
		t.Errorf("request_read_timeout hits = %v, want %d", got, streams)
	}
	served(t, h)
}

// Thousands of TCP connections that never send a byte: at the cap, each
// new connection replaces the oldest silent one, so a real client (which
// speaks at once) gets in, and only MaxConnections handshakes are pending.
func TestAbuseIdleConnections(t *testing.T) {
	const maxConns = 20
	// A thousand, or as many as half the descriptor limit allows (each
	// connection costs this process a descriptor at both ends until the
	// server closes its end).
	idle := 1000
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < 2*uint64(idle)+200 {
		idle = int(lim.Cur/2) - 100
	}
	h := newHarness(t, withConfig(func(c *server.Config) {
		c.MaxConnections = maxConns
		c.ConnectionTimeout = time.Hour // only the cap frees them
	}))
	served(t, h)
	base := runtime.NumGoroutine()
	for range idle {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	// Connections are accepted in order: once the fresh client is served,
	// all the idle ones went through the listener.
	served(t, h)
	if got := limitHits(t, h, "silent_connection"); got < float64(idle-maxConns) {
		t.Errorf("silent_connection hits = %v, want at least %d", got, idle-maxConns)
	}
	// Without the cap: one handshake goroutine per idle connection.
	goroutinesAtMost(t, base+maxConns+2*perConnGoroutines+10, "connections capped")
}

// When every open connection has spoken, a new one is closed; it gets in
// once a slot is free.
func TestConnectionLimitRefuses(t *testing.T) {
	h := newHarness(t, withConfig(func(c *server.Config) { c.MaxConnections = 2 }))
	served(t, h)
	other := h.dial("demo-bob")
	if _, err := other.calls.ListCalls(h.ctx(), &callcontrolv1.ListCallsRequest{}); err != nil {
		t.Fatal(err)
	}
	third := h.dial("demo-admin")
	_, err := third.calls.ListCalls(h.ctx(), &callcontrolv1.ListCallsRequest{})
	statusOf(t, err, codes.Unavailable)
	if got := limitHits(t, h, "connections"); got < 1 {
		t.Errorf("connections hits = %v, want at least 1", got)
	}
	other.conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if _, err := third.calls.ListCalls(ctx, &callcontrolv1.ListCallsRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("not served once a slot is free: %v", err)
	}
}

// Streams with megabytes of headers: the header list limit (16 KiB by
// default) ends them at the framer, so the heap does not hold them.
func TestAbuseHugeHeaders(t *testing.T) {
	const conns, streams, pad = 4, 5, 1 << 20
	h := newHarness(t)
	served(t, h)
	before := heapInUse()
	var wg sync.WaitGroup
	for range conns {
		r := dialRawH2(t, h.addr)
		wg.Go(func() {
			for range streams {
				r.open(pad)
			}
		})
	}
	wg.Wait()
	served(t, h)
	after := heapInUse()
	// Held, the headers would be conns*streams*pad = 20 MiB.
	const bound = 8 << 20
	if after > before && after-before > bound {
		t.Errorf("heap grew by %d bytes under %d streams of %d-byte headers, want at most %d", after-before, conns*streams, pad, bound)
	}
	t.Logf("heap %d -> %d bytes", before, after)
}

// gauge returns a gauge of the server's registry.
func gauge(t *testing.T, h *harness, name string) float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

// A streaming call refused before it read its request (no token) and a
// unary call that completed leave nothing in the pending-request count.
func TestPendingRequestsForgetFinishedStreams(t *testing.T) {
	h := newHarness(t)
	anon := h.dial("")
	for range 20 {
		s, err := anon.calls.WatchCalls(h.ctx(), &callcontrolv1.WatchCallsRequest{})
		if err == nil {
			_, err = s.Recv()
		}
		statusOf(t, err, codes.Unauthenticated)
		_, err = anon.calls.ListCalls(h.ctx(), &callcontrolv1.ListCallsRequest{})
		statusOf(t, err, codes.Unauthenticated)
	}
	served(t, h)
	if got := gauge(t, h, "callcontrold_pending_requests"); got != 0 {
		t.Errorf("callcontrold_pending_requests = %v after every call ended, want 0", got)
	}
	if got := gauge(t, h, "callcontrold_connections"); got != 2 {
		t.Errorf("callcontrold_connections = %v with two clients, want 2", got)
	}
}
