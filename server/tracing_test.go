package server

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// Without a tracer provider, the caller's W3C trace context still reaches
// the handlers (and so the log lines); a request without one is untouched.
func TestCallerTraceWithoutTracing(t *testing.T) {
	const traceID, spanID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	traced := metadata.NewIncomingContext(context.Background(),
		metadata.Pairs("traceparent", "00-"+traceID+"-"+spanID+"-01"))
	var seen trace.SpanContext
	h := func(ctx context.Context, _ any) (any, error) {
		seen = trace.SpanContextFromContext(ctx)
		return nil, nil
	}
	if _, err := traceContextUnary(traced, nil, &grpc.UnaryServerInfo{}, h); err != nil {
		t.Fatal(err)
	}
	if seen.TraceID().String() != traceID || seen.SpanID().String() != spanID || !seen.IsRemote() {
		t.Errorf("handler saw %v, want the caller's %s/%s", seen, traceID, spanID)
	}
	plain := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer x"))
	if _, err := traceContextUnary(plain, nil, &grpc.UnaryServerInfo{}, h); err != nil {
		t.Fatal(err)
	}
	if seen.IsValid() {
		t.Errorf("handler saw a trace %v in a request without one", seen)
	}
}

// The cost tracing adds to an RPC when it is off (the default): one
// metadata lookup for a request without trace context.
func BenchmarkTraceContextUnaryUntraced(b *testing.B) {
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer x"))
	h := func(context.Context, any) (any, error) { return nil, nil }
	info := &grpc.UnaryServerInfo{}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = traceContextUnary(ctx, nil, info, h)
	}
}
