// Package telemetry sets up OpenTelemetry tracing for the binaries
// (callcontrold and callctl): spans exported over OTLP/gRPC when an
// endpoint is configured, and nothing at all otherwise.
package telemetry

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/stats"
)

// Tracing returns the tracer provider of service and a function that
// flushes and stops it.
//
// With an empty endpoint tracing is off: the provider is a no-op one
// (nothing is recorded; a caller's trace context still passes through).
// Otherwise spans are batched to the OTLP/gRPC collector at endpoint: a
// URL (http://host:4317 for plaintext, https:// for TLS) or host:port
// (TLS). The exporter's other settings (headers, certificates, timeouts)
// and the sampler (OTEL_TRACES_SAMPLER; by default every trace its caller
// sampled, and every new one) come from the standard OTEL_* environment
// variables; OTEL_SERVICE_NAME overrides service.
func Tracing(ctx context.Context, service, endpoint string) (trace.TracerProvider, func(context.Context) error, error) {
	if endpoint == "" {
		return tracenoop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	opt := otlptracegrpc.WithEndpoint(endpoint)
	if strings.Contains(endpoint, "://") {
		opt = otlptracegrpc.WithEndpointURL(endpoint)
	}
	// The exporter connects lazily: a collector that is down costs
	// dropped spans and a log line from the SDK, never a failed start.
	exp, err := otlptracegrpc.New(ctx, opt)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: OTLP exporter for %s: %w", endpoint, err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", service)),
		resource.WithFromEnv(), // after: OTEL_SERVICE_NAME wins
		resource.WithTelemetrySDK(),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
}

// ClientHandler is the otelgrpc stats handler of a client connection:
// a client span per RPC, sent along as W3C trace context. The handler's
// metrics are off.
func ClientHandler(tp trace.TracerProvider) stats.Handler {
	return otelgrpc.NewClientHandler(
		otelgrpc.WithTracerProvider(tp),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelgrpc.WithPropagators(propagation.TraceContext{}),
	)
}
