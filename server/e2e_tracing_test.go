package server_test

import (
	"context"
	"slices"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/internal/telemetry"
)

// The caller's span, as a W3C traceparent header.
const (
	callerTrace       = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan        = "00f067aa0ba902b7"
	callerTraceparent = "00-" + callerTrace + "-" + callerSpan + "-01"
)

// withTraceparent makes every RPC of a connection carry the caller's
// trace context, as an instrumented client would.
func withTraceparent() []grpc.DialOption {
	add := func(ctx context.Context) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "traceparent", callerTraceparent)
	}
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(add(ctx), method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(add(ctx), desc, cc, method, opts...)
		}),
	}
}

// endedSpan waits for the server span of an RPC to end.
func endedSpan(t *testing.T, rec *tracetest.SpanRecorder, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		for _, s := range rec.Ended() {
			if s.Name() == name {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no span %q ended", name)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A span per RPC, the child of the caller's span; a span event per
// WatchCalls frame of events (not per event); none for health checks.
func TestTracing(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	h := newHarness(t, withTracer(tp))
	alice := h.dial("demo-alice", withTraceparent()...)
	admin := h.dial("demo-admin", withTraceparent()...)

	w := h.watchOn(admin, "admin", &callcontrolv1.WatchCallsRequest{})
	w.start()
	r, err := alice.calls.Dial(h.ctx(), &callcontrolv1.DialRequest{Device: "SIP/201", Number: "202"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.calls.Hangup(h.ctx(), &callcontrolv1.HangupRequest{Uid: r.GetCall().GetUid()}); err != nil {
		t.Fatal(err)
	}
	if _, err := healthpb.NewHealthClient(alice.conn).Check(h.ctx(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	batches := w.until(h.store.Revision())
	w.stop()

	wantParent := func(s sdktrace.ReadOnlySpan) {
		t.Helper()
		if got := s.Parent(); got.TraceID().String() != callerTrace || got.SpanID().String() != callerSpan || !got.IsRemote() {
			t.Errorf("span %s: parent %s/%s, want the caller's %s/%s", s.Name(), got.TraceID(), got.SpanID(), callerTrace, callerSpan)
		}
		if s.SpanKind() != trace.SpanKindServer {
			t.Errorf("span %s: kind %v, want server", s.Name(), s.SpanKind())
		}
	}
	for _, name := range []string{"callcontrol.v1.CallControlService/Dial", "callcontrol.v1.CallControlService/Hangup"} {
		wantParent(endedSpan(t, rec, name))
	}
	watch := endedSpan(t, rec, "callcontrol.v1.CallControlService/WatchCalls")
	wantParent(watch)
	var events []int64
	for _, e := range watch.Events() {
		if e.Name != "watch.events" {
			continue
		}
		for _, a := range e.Attributes {
			if a.Key == "callcontrol.revision" {
				events = append(events, a.Value.AsInt64())
			}
		}
	}
	var want []int64
	for _, b := range batches {
		want = append(want, b.GetRevision())
	}
	if len(want) < 2 || !slices.Equal(events, want) {
		t.Errorf("span events at revisions %v, want one per frame of events: %v", events, want)
	}
	for _, s := range rec.Ended() {
		if s.Name() == "grpc.health.v1.Health/Check" {
			t.Errorf("a health check got a span")
		}
	}
}

// A client instrumented like callctl (telemetry.ClientHandler) starts the
// trace; the server's span is the child of the client's.
func TestTracingFromAnInstrumentedClient(t *testing.T) {
	serverRec, clientRec := tracetest.NewSpanRecorder(), tracetest.NewSpanRecorder()
	serverTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(serverRec))
	clientTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(clientRec))
	t.Cleanup(func() {
		_ = serverTP.Shutdown(context.Background())
		_ = clientTP.Shutdown(context.Background())
	})
	h := newHarness(t, withTracer(serverTP))
	c := h.dial("demo-alice", grpc.WithStatsHandler(telemetry.ClientHandler(clientTP)))
	if _, err := c.calls.ListCalls(h.ctx(), &callcontrolv1.ListCallsRequest{}); err != nil {
		t.Fatal(err)
	}
	const name = "callcontrol.v1.CallControlService/ListCalls"
	client, server := endedSpan(t, clientRec, name), endedSpan(t, serverRec, name)
	if server.Parent().SpanID() != client.SpanContext().SpanID() || server.SpanContext().TraceID() != client.SpanContext().TraceID() {
		t.Errorf("server span %v has parent %v, want the client span %v", server.SpanContext(), server.Parent(), client.SpanContext())
	}
}
