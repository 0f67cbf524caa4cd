package server

import (
	"context"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// Tracing: every RPC gets a server span (OpenTelemetry, through the
// otelgrpc stats handler), the child of the caller's span when the request
// carries W3C trace context (traceparent), and log lines written with the
// request's context name its trace and span (identity.go). Health checks
// get no span: probes would drown the traces.
//
// Without a tracer provider (Deps.TracerProvider nil: no exporter, the
// default) there is no stats handler at all, since it costs on every
// message of every stream; an interceptor only reads the caller's trace
// context, so that log lines still name the caller's trace (and its
// span). The handler's own metrics are off (a no-op meter): the
// Prometheus metrics cover the same ground.

// tracePropagator reads and writes W3C trace context.
var tracePropagator = propagation.TraceContext{}

// tracingOptions returns the server options of tracing with tp.
func tracingOptions(tp trace.TracerProvider) []grpc.ServerOption {
	if tp == nil {
		// A stream's: streamChain.callerTrace.
		return []grpc.ServerOption{grpc.ChainUnaryInterceptor(traceContextUnary)}
	}
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(tp),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelgrpc.WithPropagators(tracePropagator),
		otelgrpc.WithFilter(filters.Not(filters.HealthCheck())),
	))}
}

// withCallerTrace returns ctx with the caller's span context, if the
// request carries one.
func withCallerTrace(ctx context.Context) context.Context {
	if len(metadata.ValueFromIncomingContext(ctx, "traceparent")) == 0 {
		return ctx // the common case: no lookup beyond this one
	}
	return tracePropagator.Extract(ctx, incomingCarrier{ctx})
}

func traceContextUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	return h(withCallerTrace(ctx), req)
}

// incomingCarrier reads a request's metadata for the propagator without
// copying it.
type incomingCarrier struct{ ctx context.Context }

func (c incomingCarrier) Get(key string) string {
	if v := metadata.ValueFromIncomingContext(c.ctx, key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (incomingCarrier) Set(string, string) {}

func (incomingCarrier) Keys() []string { return []string{"traceparent", "tracestate"} }

// watchBatchEvent names the span event of one WatchCalls frame of events:
// one per frame (a revision), not per event.
const watchBatchEvent = "watch.events"

// addBatchEvent records a sent frame of events on the stream's span. A
// span that does not record (no exporter, or not sampled) costs one call.
func addBatchEvent(span trace.Span, revision int64, events int) {
	if !span.IsRecording() {
		return
	}
	span.AddEvent(watchBatchEvent, trace.WithAttributes(
		attribute.Int64("callcontrol.revision", revision),
		attribute.Int("callcontrol.events", events),
	))
}
