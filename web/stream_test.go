package web_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// protocols are the ways a client reaches the services on the HTTP port.
var protocols = []struct {
	name   string
	client func() *http.Client
	opts   []connect.ClientOption
}{
	{"Connect JSON", func() *http.Client { return &http.Client{} }, []connect.ClientOption{connect.WithProtoJSON()}},
	{"Connect proto", func() *http.Client { return &http.Client{} }, nil},
	{"gRPC-Web", func() *http.Client { return &http.Client{} }, []connect.ClientOption{connect.WithGRPCWeb()}},
	{"gRPC over h2c", h2cClient, []connect.ClientOption{connect.WithGRPC()}},
}

// nextFrame receives one frame or fails the test.
func nextFrame(t *testing.T, s *connect.ServerStreamForClient[callcontrolv1.WatchCallsResponse]) *callcontrolv1.WatchCallsResponse {
	t.Helper()
	if !s.Receive() {
		t.Fatalf("stream ended: %v", s.Err())
	}
	return s.Msg()
}

// watchUntilSnapshotEnd opens a watch as login and reads up to the end of
// its snapshot.
func watchUntilSnapshotEnd(t *testing.T, ctx context.Context, c *connect.Client[callcontrolv1.WatchCallsRequest, callcontrolv1.WatchCallsResponse], token string) *connect.ServerStreamForClient[callcontrolv1.WatchCallsResponse] {
	t.Helper()
	s, err := c.CallServerStream(ctx, withToken(&callcontrolv1.WatchCallsRequest{}, token))
	if err != nil {
		t.Fatalf("WatchCalls: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if f := nextFrame(t, s); f.GetStarted() == nil {
		t.Fatalf("first frame: got %v, want started", f)
	}
	for {
		if f := nextFrame(t, s); f.GetSnapshotEnd() != nil {
			return s
		}
	}
}

// TestWatchCalls streams WatchCalls over every protocol of the HTTP port:
// snapshot, then the events of a call dialled over the same protocol.
func TestWatchCalls(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			h := newHarness(t)
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			hc := p.client()
			defer hc.CloseIdleConnections()
			s := watchUntilSnapshotEnd(t, ctx, h.watchClient(hc, p.opts...), "demo-admin")

			dial, err := dialClient(hc, h.base, p.opts...).CallUnary(ctx, withToken(&callcontrolv1.DialRequest{Device: "SIP/201", Number: "202"}, "demo-alice"))
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			uid := dial.Msg.GetCall().GetUid()
			for {
				f := nextFrame(t, s)
				for _, ev := range f.GetEvents().GetEvents() {
					if ev.GetCall().GetUid() == uid {
						if ev.GetType() != callcontrolv1.EventType_EVENT_TYPE_NEW || ev.GetView() != callcontrolv1.ViewChange_VIEW_CHANGE_ENTERED {
							t.Errorf("first event of the dialled call: got %v %v, want NEW ENTERED", ev.GetType(), ev.GetView())
						}
						if f.GetEvents().GetResumeToken() == "" {
							t.Error("event batch without a resume token")
						}
						return
					}
				}
			}
		})
	}
}

// TestStreamOutlivesRequestTimeouts: the per-request body and unary write
// deadlines, and the transport limits' request-read, header and idle
// timeouts, must not end a long stream whose client reads. (Not
// WatchSendTimeout: it bounds one send, which a busy machine may well
// hold up for a fraction of a second; TestStalledHTTPWatchersEvicted
// covers it.)
func TestStreamOutlivesRequestTimeouts(t *testing.T) {
	const bodyTimeout = 200 * time.Millisecond
	h := newHarness(t, func(c *harnessConfig) {
		c.web.BodyTimeout = bodyTimeout
		c.web.UnaryWriteTimeout = bodyTimeout
		c.server.RequestReadTimeout = bodyTimeout
		c.server.ConnectionTimeout = bodyTimeout
		c.server.MaxConnectionIdle = bodyTimeout
		c.server.ProgressInterval = 50 * time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	s := watchUntilSnapshotEnd(t, ctx, h.watchClient(http.DefaultClient, connect.WithProtoJSON()), "demo-alice")
	// Keep receiving progress frames until well past both deadlines: the
	// clock only bounds the loop, the assertion is that frames keep coming.
	until := time.Now().Add(5 * bodyTimeout)
	progress := 0
	for time.Now().Before(until) || progress < 3 {
		if nextFrame(t, s).GetProgress() != nil {
			progress++
		}
	}
}

// TestDrainEndsStreamWithRetryInfo: on shutdown a Connect watcher gets a
// progress frame with its token, then UNAVAILABLE with RetryInfo, as a
// gRPC watcher does (the drain runs before grpc's GracefulStop).
func TestDrainEndsStreamWithRetryInfo(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	s := watchUntilSnapshotEnd(t, ctx, h.watchClient(http.DefaultClient, connect.WithProtoJSON()), "demo-alice")
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.shutdown()
	}()
	defer func() { <-done }()
	if err := drainEnd(s); err != nil {
		t.Error(err)
	}
}

// hasRetryInfo reports whether err is a Connect error with RetryInfo.
func hasRetryInfo(err error) bool {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return false
	}
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			if _, ok := v.(*errdetails.RetryInfo); ok {
				return true
			}
		}
	}
	return false
}

// TestInterceptorsApply: requests over HTTP run through the gRPC server's
// interceptors: metrics count them, the rate limit holds them.
func TestInterceptorsApply(t *testing.T) {
	h := newHarness(t, func(c *harnessConfig) {
		c.limit.ControlRPS = 0.001
		c.limit.ControlBurst = 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	dial := dialClient(http.DefaultClient, h.base, connect.WithProtoJSON())
	if _, err := dial.CallUnary(ctx, withToken(&callcontrolv1.DialRequest{Device: "SIP/201", Number: "203"}, "demo-alice")); err != nil {
		t.Fatalf("first Dial: %v", err)
	}
	_, err := dial.CallUnary(ctx, withToken(&callcontrolv1.DialRequest{Device: "SIP/201_2", Number: "203"}, "demo-alice"))
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Errorf("second Dial over the rate limit: got %v, want resource_exhausted", err)
	}

	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "grpc_server_handled_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["grpc_method"] == "Dial" {
				got[labels["grpc_code"]] += m.GetCounter().GetValue()
			}
		}
	}
	if got["OK"] != 1 || got["ResourceExhausted"] != 1 {
		t.Errorf("grpc_server_handled_total for Dial by code: got %v, want OK 1 and ResourceExhausted 1", got)
	}
}
