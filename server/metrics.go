package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"callcontrold/callstore"
)

// metrics are the service's own gauges and counters; the per-RPC ones come
// from the go-grpc-middleware prometheus provider.
type metrics struct {
	eventsSent   prometheus.Counter
	framesSent   *prometheus.CounterVec
	eventFrames  prometheus.Counter // framesSent{kind="events"}, resolved once: it counts on the hot path
	watchEnds    *prometheus.CounterVec
	collectors   []prometheus.Collector
	idempotentHi prometheus.Counter
	limitHits    *prometheus.CounterVec
}

func newMetrics(store *callstore.Store) *metrics {
	m := &metrics{
		eventsSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callcontrold_watch_events_sent_total",
			Help: "Call events sent to watchers (rate() gives events per second).",
		}),
		framesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callcontrold_watch_frames_sent_total",
			Help: "WatchCalls frames sent, by kind.",
		}, []string{"kind"}),
		watchEnds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callcontrold_watch_ends_total",
			Help: "WatchCalls streams ended, by reason.",
		}, []string{"reason"}),
		idempotentHi: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callcontrold_idempotent_replays_total",
			Help: "Control requests answered from the request_id cache instead of acting again.",
		}),
	}
	m.limitHits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "callcontrold_transport_limit_hits_total",
		Help: "Times a transport or watch limit refused, replaced or ended a connection, stream or watch, by limit.",
	}, []string{"limit"})
	m.eventFrames = m.framesSent.WithLabelValues("events")
	m.collectors = []prometheus.Collector{
		m.eventsSent, m.framesSent, m.watchEnds, m.idempotentHi, m.limitHits,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "callcontrold_live_calls",
			Help: "Live call legs in the store.",
		}, func() float64 { return float64(store.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "callcontrold_watchers",
			Help: "Registered watchers.",
		}, func() float64 { return float64(store.Watchers()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "callcontrold_lagging_watchers",
			Help: "Watchers catching up from retained history after their queue overflowed.",
		}, func() float64 { return float64(store.Lagging()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "callcontrold_store_revisions_total",
			Help: "Committed store revisions (rate() gives transitions per second).",
		}, func() float64 { return float64(store.Revision()) }),
	}
	return m
}

// addTransportGauges adds the gauges of the transport limits.
func (m *metrics) addTransportGauges(connections, pending func() int) {
	m.collectors = append(m.collectors,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "callcontrold_connections",
			Help: "Open client connections counted against --max-connections (-1 when uncapped).",
		}, func() float64 { return float64(connections()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "callcontrold_pending_requests",
			Help: "Streams whose request message has not arrived yet.",
		}, func() float64 { return float64(pending()) }),
	)
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range m.collectors {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
