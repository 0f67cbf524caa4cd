package server

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A method that initialize did not see (a service registered on the
// grpc.Server after New) is resolved on its first call and kept: its
// calls all count on the same samples, with the labels the provider gave.
func TestRPCMetricsLateMethod(t *testing.T) {
	m := newRPCMetrics()
	m.initialize(grpc.NewServer())
	const full = "/bench.v1.Late/Unary"
	info := &grpc.UnaryServerInfo{FullMethod: full}
	ok := func(context.Context, any) (any, error) { return struct{}{}, nil }
	fail := func(context.Context, any) (any, error) { return nil, status.Error(codes.NotFound, "no") }
	for _, h := range []grpc.UnaryHandler{ok, ok, fail} {
		if _, err := m.unary(t.Context(), nil, info, h); err != nil && status.Code(err) != codes.NotFound {
			t.Fatal(err)
		}
	}
	if a, b := m.method(full, false, false), m.method(full, false, false); a != b {
		t.Error("a late method is resolved again on each call")
	}
	for _, c := range []struct {
		got  float64
		name string
		want float64
	}{
		{testutil.ToFloat64(m.started.WithLabelValues("unary", "bench.v1.Late", "Unary")), "started", 3},
		{testutil.ToFloat64(m.sent.WithLabelValues("unary", "bench.v1.Late", "Unary")), "sent", 2},
		{testutil.ToFloat64(m.handled.WithLabelValues("unary", "bench.v1.Late", "Unary", "OK")), "handled OK", 2},
		{testutil.ToFloat64(m.handled.WithLabelValues("unary", "bench.v1.Late", "Unary", "NotFound")), "handled NotFound", 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}
