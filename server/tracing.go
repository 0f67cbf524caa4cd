package server

import (
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
)

// Tracing: every RPC gets a server span (OpenTelemetry, through the
// otelgrpc stats handler), the child of the caller's span when the request
// carries W3C trace context (traceparent), and log lines written with the
// request's context name its trace and span (identity.go). Health checks
// get no span: probes would drown the traces.
//
// Without a tracer provider (Deps.TracerProvider nil) the provider is a
// no-op one: nothing is recorded or exported, but a caller's trace context
// still reaches the log lines. The handler's own metrics are off (a no-op
// meter): the Prometheus metrics cover the same ground.

// tracePropagator reads and writes W3C trace context.
var tracePropagator = propagation.TraceContext{}

func tracingOption(tp trace.TracerProvider) grpc.ServerOption {
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	return grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(tp),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelgrpc.WithPropagators(tracePropagator),
		otelgrpc.WithFilter(filters.Not(filters.HealthCheck())),
	))
}

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
