package web_test

// Transport abuse against the HTTP port, none of which needs a token:
// under each, with small configured limits, a fresh client is served and
// the server's goroutines and heap stay under a bound computed from the
// limits. CALLCONTROLD_TEST_LIMITS_OFF=1 runs every test with the limit
// it exercises turned off (or above the abuse), to show that each then
// fails.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/pbx"
)

// limitsOff is set to show that the tests below fail without their limit.
var limitsOff = os.Getenv("CALLCONTROLD_TEST_LIMITS_OFF") != ""

// goroutineSlack covers the goroutines that come and go besides the
// abuse: the fresh client's, timers, the runtime's.
const goroutineSlack = 40

// served checks that a fresh client, on a new connection, gets a unary
// call answered (waitLimit is only the liveness bound).
func served(t *testing.T, h *harness) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: waitLimit}
	status, _, body := h.doWith(hc, servicePath+"ListCalls", "demo-alice")
	if status != http.StatusOK {
		t.Fatalf("fresh client: ListCalls answered %d %s", status, body)
	}
}

func (h *harness) doWith(hc *http.Client, path, token string) (int, http.Header, string) {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.base+path, strings.NewReader("{}"))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		h.t.Fatalf("fresh client: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// goroutinesUnder waits until the process runs at most bound goroutines.
func goroutinesUnder(t *testing.T, bound int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for runtime.NumGoroutine() > bound {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, want at most %d", runtime.NumGoroutine(), bound)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// limitHits reads callcontrold_transport_limit_hits_total{limit}.
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

// waitHits waits (liveness bound) until the limit has bitten at least
// want times: the server counts an abuser only once it has read it, which
// may be after a well-behaved client was served.
func waitHits(t *testing.T, h *harness, limit string, want float64) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		got := limitHits(t, h, limit)
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s hits = %v, want at least %v", limit, got, want)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawConns opens n TCP connections to the HTTP port, closed at cleanup.
func rawConns(t *testing.T, h *harness, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range n {
		c, err := net.DialTimeout("tcp", h.web.Addr().String(), waitLimit)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	return conns
}

// TestIdleConnectionsCapped: TCP connections that never send a byte take
// at most MaxConnections slots; each new connection replaces the oldest.
func TestIdleConnectionsCapped(t *testing.T) {
	const maxConns, abusers = 16, 300
	h := newHarness(t, func(c *harnessConfig) {
		c.server.MaxConnections = maxConns
		c.server.ConnectionTimeout = time.Minute // only the cap cuts them
		if limitsOff {
			c.server.MaxConnections = -1
		}
	})
	base := runtime.NumGoroutine()
	rawConns(t, h, abusers)
	// Every abuser in first: a fresh client among connections still
	// arriving would be the oldest for some of them.
	waitHits(t, h, "silent_connection", abusers-maxConns)
	served(t, h)
	// A connection is served by one goroutine while it says nothing.
	goroutinesUnder(t, base+maxConns+goroutineSlack)
}

// h2cPendingStreams opens an HTTP/2 connection (prior knowledge) and
// starts streams of a unary call that send HEADERS and never their body.
// A goroutine discards what the server sends, until cleanup.
func h2cPendingStreams(t *testing.T, h *harness, streams int) {
	t.Helper()
	c := rawConns(t, h, 1)[0]
	go func() { _, _ = io.Copy(io.Discard, c) }()
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hdr bytes.Buffer
	enc := hpack.NewEncoder(&hdr)
	for i := range streams {
		hdr.Reset()
		for _, f := range [][2]string{
			{":method", "POST"}, {":scheme", "http"}, {":authority", h.web.Addr().String()},
			{":path", servicePath + "ListCalls"}, {"content-type", "application/json"},
		} {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: hdr.Bytes(), EndHeaders: true})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestPendingH2StreamsBounded: HTTP/2 streams that send headers and no
// body are at most MaxPendingRequests server-wide; a new one cancels the
// oldest.
func TestPendingH2StreamsBounded(t *testing.T) {
	const maxPending, conns, streams = 16, 4, 100
	h := newHarness(t, func(c *harnessConfig) {
		c.server.MaxPendingRequests = maxPending
		c.server.MaxConcurrentStreams = streams
		c.server.RequestReadTimeout = time.Minute // only the cap cuts them
		c.web.BodyTimeout = time.Minute
		if limitsOff {
			c.server.MaxPendingRequests = -1
		}
	})
	base := runtime.NumGoroutine()
	for range conns {
		h2cPendingStreams(t, h, streams)
	}
	// Every abuser's stream in first: the server reads their headers
	// after the writes above return, and a fresh request among the last
	// of them would be the oldest pending for the ones after it.
	waitHits(t, h, "pending_requests", conns*streams-maxPending)
	served(t, h)
	// Per connection: its reader here, and the server's serve and read
	// loops; per pending stream: its handler.
	goroutinesUnder(t, base+conns*3+maxPending+goroutineSlack)
}

// bodylessRequest is an HTTP/1.1 unary call that announces a body and
// never sends it.
func bodylessRequest(h *harness) string {
	return "POST " + servicePath + "ListCalls HTTP/1.1\r\nHost: " + h.web.Addr().String() +
		"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
}

// TestPendingHTTP1BodiesBounded: the same over HTTP/1.1, where each
// waiting request holds a connection: a cancelled one is answered and its
// connection closed.
func TestPendingHTTP1BodiesBounded(t *testing.T) {
	const maxPending, abusers = 16, 200
	h := newHarness(t, func(c *harnessConfig) {
		c.server.MaxPendingRequests = maxPending
		c.server.RequestReadTimeout = time.Minute
		c.web.BodyTimeout = time.Minute
		if limitsOff {
			c.server.MaxPendingRequests = -1
		}
	})
	base := runtime.NumGoroutine()
	for _, c := range rawConns(t, h, abusers) {
		if _, err := io.WriteString(c, bodylessRequest(h)); err != nil {
			t.Fatal(err)
		}
	}
	waitHits(t, h, "pending_requests", abusers-maxPending) // every abuser in first, as above
	served(t, h)
	goroutinesUnder(t, base+maxPending+goroutineSlack)
}

// TestRequestReadTimeout: a request whose body does not come within
// RequestReadTimeout is answered DEADLINE_EXCEEDED.
func TestRequestReadTimeout(t *testing.T) {
	h := newHarness(t, func(c *harnessConfig) {
		c.server.RequestReadTimeout = 100 * time.Millisecond
		c.web.BodyTimeout = time.Minute
		if limitsOff {
			c.server.RequestReadTimeout = -1
		}
	})
	c := rawConns(t, h, 1)[0]
	if _, err := io.WriteString(c, bodylessRequest(h)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(waitLimit))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || parseError(t, string(b)).Code != "deadline_exceeded" {
		t.Errorf("answer: %d %s, want 408 deadline_exceeded", resp.StatusCode, b)
	}
	if got := limitHits(t, h, "request_read_timeout"); got != 1 {
		t.Errorf("request_read_timeout hits = %v, want 1", got)
	}
	served(t, h)
}

// TestHugeHeadersRefused: a request whose headers pass MaxHeaderListSize
// is refused and its connection closed after at most that much is read.
func TestHugeHeadersRefused(t *testing.T) {
	const maxHeader, abusers, header = 4 << 10, 20, 900 << 10
	h := newHarness(t, func(c *harnessConfig) {
		c.server.MaxHeaderListSize = maxHeader
		c.server.ConnectionTimeout = time.Minute
		if limitsOff {
			c.server.MaxHeaderListSize = 2 << 20
		}
	})
	before := heapInUse()
	conns := rawConns(t, h, abusers)
	big := "X-Big: " + strings.Repeat("a", header) // no end of line: the server waits for more
	for _, c := range conns {
		_ = c.SetWriteDeadline(time.Now().Add(waitLimit))
		_, _ = io.WriteString(c, "POST "+servicePath+"ListCalls HTTP/1.1\r\nHost: x\r\n"+big)
	}
	for i, c := range conns {
		// The server answers 431 and hangs up, or resets the connection
		// for the bytes it did not read: either way the read ends.
		_ = c.SetReadDeadline(time.Now().Add(waitLimit))
		if _, err := io.Copy(io.Discard, c); err != nil && os.IsTimeout(err) {
			t.Fatalf("connection %d: the server still holds it: %v", i, err)
		}
	}
	served(t, h)
	// Per connection at most the header limit and net/http's buffers.
	bound := uint64(abusers*(maxHeader+16<<10) + 4<<20)
	if after := heapInUse(); after > before && after-before > bound {
		t.Errorf("heap grew by %d bytes, want at most %d", after-before, bound)
	}
}

// TestSlowHeadersCut: clients that trickle their headers (slowloris) are
// cut when ConnectionTimeout has passed since the connection opened.
func TestSlowHeadersCut(t *testing.T) {
	const abusers = 50
	h := newHarness(t, func(c *harnessConfig) {
		c.server.ConnectionTimeout = 200 * time.Millisecond
		if limitsOff {
			c.server.ConnectionTimeout = time.Minute
		}
	})
	base := runtime.NumGoroutine()
	conns := rawConns(t, h, abusers)
	stop := make(chan struct{})
	trickled := make(chan struct{})
	go func() { // one header byte per connection every 20ms
		defer close(trickled)
		_ = conns // written until stop
		for _, c := range conns {
			_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nX-Slow: ")
		}
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			for _, c := range conns {
				_, _ = c.Write([]byte("a"))
			}
		}
	}()
	defer func() { close(stop); <-trickled }()
	served(t, h)
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(waitLimit))
		if _, err := io.Copy(io.Discard, c); err != nil && os.IsTimeout(err) {
			t.Fatalf("connection %d: still open: %v", i, err)
		}
	}
	goroutinesUnder(t, base+goroutineSlack)
}

// stuckWatchClient speaks h2c with small fixed receive windows: a watch
// it stops reading blocks the server's writes once 64 KiB are in flight.
func stuckWatchClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{
		Protocols: &p,
		HTTP2:     &http.HTTP2Config{MaxReceiveBufferPerConnection: 64 << 10, MaxReceiveBufferPerStream: 64 << 10},
	}}
}

// traffic makes that many short calls through the switch.
func traffic(t *testing.T, h *harness, calls int) {
	t.Helper()
	for range calls {
		a, err := h.sim.Dial(context.Background(), "SIP/201", "202", pbx.DialOptions{})
		if err == nil {
			_, err = h.sim.Hangup(context.Background(), a.UID)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// stuckWatches opens n Connect watches as admin on one connection of
// stuckWatchClient, reads their snapshots and then reads nothing.
func stuckWatches(t *testing.T, h *harness, n int, opts ...connect.ClientOption) {
	t.Helper()
	hc := stuckWatchClient()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		hc.CloseIdleConnections()
	})
	for range n {
		watchUntilSnapshotEnd(t, ctx, h.watchClient(hc, opts...), "demo-admin")
	}
}

// stuckProtocols are the streaming protocols a stuck watcher may use:
// vanguard transcodes Connect, and passes gRPC through as it is.
var stuckProtocols = []struct {
	name string
	opts []connect.ClientOption
}{
	{"Connect", nil},
	{"gRPC", []connect.ClientOption{connect.WithGRPC()}},
}

// TestStalledHTTPWatchersEvicted: a watch on the HTTP port whose client
// stopped reading ends after WatchSendTimeout like a gRPC one, and its
// HTTP stream is reset, so nothing of it stays on the server.
func TestStalledHTTPWatchersEvicted(t *testing.T) {
	for _, p := range stuckProtocols {
		t.Run(p.name, func(t *testing.T) {
			const n = 5
			h := newHarness(t, func(c *harnessConfig) {
				c.server.WatchSendTimeout = 200 * time.Millisecond
				c.noTransport = limitsOff
			})
			base := runtime.NumGoroutine()
			stuckWatches(t, h, n, p.opts...)
			traffic(t, h, 500)
			waitFor(t, "the stalled watchers are unregistered from the store", func() bool { return h.store.Watchers() == 0 })
			// The connection keeps a goroutine here and two on the server,
			// a reset stream one here until it is closed; a stream that
			// stayed would keep four on the server.
			goroutinesUnder(t, base+4+n)
			waitHits(t, h, "watch_stalled", n)
			if got := limitHits(t, h, "watch_stalled"); got != n {
				t.Errorf("watch_stalled hits = %v, want %d", got, n)
			}
		})
	}
}

// TestDrainWithStuckHTTPWatcher: a drain ends promptly although a watcher
// on the HTTP port stopped reading (its shutdown timeout is far above the
// liveness bound), while a watcher that reads gets its progress frame and
// UNAVAILABLE with RetryInfo.
func TestDrainWithStuckHTTPWatcher(t *testing.T) {
	for _, p := range stuckProtocols {
		t.Run(p.name, func(t *testing.T) {
			h := newHarness(t, func(c *harnessConfig) {
				c.server.WatchSendTimeout = -1 // only the drain may cut it
				c.noTransport = limitsOff
			})
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			good := watchUntilSnapshotEnd(t, ctx, h.watchClient(&http.Client{}, connect.WithProtoJSON()), "demo-alice")
			// The good watcher reads all along, as a live client does: one
			// that reads only once the drain began may still be working
			// through its backlog when the drain cuts blocked sends.
			ended := make(chan error, 1)
			go func() { ended <- drainEnd(good) }()
			stuckWatches(t, h, 1, p.opts...)
			traffic(t, h, 500)
			drainPromptly(t, h, ended)
		})
	}
}

// drainPromptly shuts h down with a shutdown timeout far above the
// liveness bound, and checks that the reading watcher, whose drainEnd
// reports on ended, ends as a drain ends a watch.
func drainPromptly(t *testing.T, h *harness, ended <-chan error) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer scancel()
		h.web.Shutdown(sctx, h.srv.Drain)
		h.srv.Shutdown(sctx)
	}()
	select {
	case err := <-ended:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(waitLimit):
		t.Fatal("the reading watcher did not end")
	}
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Fatal("the drain is held by the stuck watcher")
	}
}

// drainEnd reads s to its end and checks it ends as a drain ends a watch.
func drainEnd(s *connect.ServerStreamForClient[callcontrolv1.WatchCallsResponse]) error {
	var sawProgress bool
	for s.Receive() {
		if p := s.Msg().GetProgress(); p != nil && p.GetResumeToken() != "" {
			sawProgress = true
		}
	}
	if !sawProgress {
		return fmt.Errorf("no progress frame with a resume token before the end (%v)", s.Err())
	}
	if connect.CodeOf(s.Err()) != connect.CodeUnavailable || !hasRetryInfo(s.Err()) {
		return fmt.Errorf("stream ended with %v, want unavailable with RetryInfo", s.Err())
	}
	return nil
}

// waitFor polls cond until it holds (liveness bound) and fails with what.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
