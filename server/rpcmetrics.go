package server

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// rpcMetrics are the per-RPC counters and the handling-time histogram, with
// the names, help texts and labels of go-grpc-middleware's Prometheus
// provider (grpc_server_started_total, grpc_server_handled_total,
// grpc_server_msg_received_total, grpc_server_msg_sent_total,
// grpc_server_handling_seconds), so dashboards written for it keep working.
//
// They are our own because the provider resolves a counter by its label
// values (hashing them, under a lock) for every message a stream sends: on
// a WatchCalls stream that was 6–8% of the server's CPU. Here every
// method's counters are resolved once, when the services are registered,
// and a stream counts a message with one atomic add.
type rpcMetrics struct {
	started  *prometheus.CounterVec
	handled  *prometheus.CounterVec
	received *prometheus.CounterVec
	sent     *prometheus.CounterVec
	seconds  *prometheus.HistogramVec

	// methods is written once by initialize, before the server serves, and
	// only read afterwards.
	methods map[string]*methodMetrics
	// late holds the methods of services registered on the grpc.Server
	// after initialize (fullMethod → *methodMetrics), each resolved on its
	// first call. grpc-go answers an unknown method itself, before any
	// interceptor, so only registered methods get here: it stays small.
	late sync.Map
}

// methodMetrics are one method's resolved counters.
type methodMetrics struct {
	started, received, sent prometheus.Counter
	seconds                 prometheus.Observer
	handled                 [codes.Unauthenticated + 1]prometheus.Counter // by code

	// For a code beyond handled's (none that gRPC defines today).
	handledVec   *prometheus.CounterVec
	labelsByCode []string // type, service, method
}

func newRPCMetrics() *rpcMetrics {
	labels := []string{"grpc_type", "grpc_service", "grpc_method"}
	withCode := append(labels[:len(labels):len(labels)], "grpc_code")
	return &rpcMetrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_started_total",
			Help: "Total number of RPCs started on the server.",
		}, labels),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_handled_total",
			Help: "Total number of RPCs completed on the server, regardless of success or failure.",
		}, withCode),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_msg_received_total",
			Help: "Total number of RPC stream messages received on the server.",
		}, labels),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_msg_sent_total",
			Help: "Total number of gRPC stream messages sent by the server.",
		}, labels),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grpc_server_handling_seconds",
			Help:    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
			Buckets: prometheus.DefBuckets,
		}, labels),
		methods: map[string]*methodMetrics{},
	}
}

// Describe and Collect make rpcMetrics one prometheus.Collector.
func (m *rpcMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

func (m *rpcMetrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

func (m *rpcMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.started, m.handled, m.received, m.sent, m.seconds}
}

// initialize resolves the counters of every method s serves, which also
// exports them at zero before the first call. Call it after the services
// are registered and before the server serves.
func (m *rpcMetrics) initialize(s *grpc.Server) {
	for service, info := range s.GetServiceInfo() {
		for _, method := range info.Methods {
			m.methods["/"+service+"/"+method.Name] = m.resolve(rpcType(method.IsClientStream, method.IsServerStream), service, method.Name)
		}
	}
}

// resolve looks up one method's counters by their label values.
func (m *rpcMetrics) resolve(typ, service, method string) *methodMetrics {
	mm := &methodMetrics{
		started:  m.started.WithLabelValues(typ, service, method),
		received: m.received.WithLabelValues(typ, service, method),
		sent:     m.sent.WithLabelValues(typ, service, method),
		seconds:  m.seconds.WithLabelValues(typ, service, method),

		handledVec:   m.handled,
		labelsByCode: []string{typ, service, method},
	}
	for c := range mm.handled {
		mm.handled[c] = m.handled.WithLabelValues(typ, service, method, codes.Code(c).String())
	}
	return mm
}

// A stream's messages are counted by chainStream (streamchain.go).

// method returns the counters of fullMethod ("/service/method"). A method
// initialize did not see (a service registered on the grpc.Server after
// New, as the benchmarks' no-op service is) is resolved on its first call
// and kept.
func (m *rpcMetrics) method(fullMethod string, clientStream, serverStream bool) *methodMetrics {
	if mm, ok := m.methods[fullMethod]; ok {
		return mm
	}
	if mm, ok := m.late.Load(fullMethod); ok {
		return mm.(*methodMetrics)
	}
	service, method, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	if !ok {
		service, method = "unknown", "unknown"
	}
	mm, _ := m.late.LoadOrStore(fullMethod, m.resolve(rpcType(clientStream, serverStream), service, method))
	return mm.(*methodMetrics)
}

// done counts the end of a call with its status code and duration.
func (mm *methodMetrics) done(err error, start time.Time) {
	st, ok := status.FromError(err)
	if !ok {
		// As the gRPC server does: a context error becomes its status.
		st = status.FromContextError(err)
	}
	if c := st.Code(); int(c) < len(mm.handled) {
		mm.handled[c].Inc()
	} else {
		mm.handledVec.WithLabelValues(append(mm.labelsByCode[:3:3], c.String())...).Inc()
	}
	mm.seconds.Observe(time.Since(start).Seconds())
}

func (m *rpcMetrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	mm := m.method(info.FullMethod, false, false)
	mm.started.Inc()
	mm.received.Inc()
	resp, err := h(ctx, req)
	if err == nil {
		mm.sent.Inc()
	}
	mm.done(err, start)
	return resp, err
}

// rpcType is the grpc_type label of a method.
func rpcType(clientStream, serverStream bool) string {
	switch {
	case clientStream && serverStream:
		return "bidi_stream"
	case clientStream:
		return "client_stream"
	case serverStream:
		return "server_stream"
	}
	return "unary"
}
