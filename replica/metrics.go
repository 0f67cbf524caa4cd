package replica

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the replica's Prometheus metrics.
type metrics struct {
	revision      prometheus.GaugeFunc
	lagRevisions  prometheus.Gauge
	lagSeconds    prometheus.Gauge
	leader        prometheus.Gauge
	leaderChanges prometheus.Counter
	appendSeconds prometheus.Histogram
	forwarded     *prometheus.CounterVec

	snapshotsWritten prometheus.Counter
	snapshotsLoaded  prometheus.Counter
}

func newMetrics(n *Node) *metrics {
	return &metrics{
		revision: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "callcontrold_replica_applied_revision",
			Help: "Last revision of the log this replica applied to its store.",
		}, func() float64 { return float64(n.store.Revision()) }),
		lagRevisions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "callcontrold_replica_lag_revisions",
			Help: "Revisions in the log not yet applied here, as of the last one applied.",
		}),
		lagSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "callcontrold_replica_lag_seconds",
			Help: "Time from the log storing the last applied revision to this replica applying it.",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "callcontrold_replica_leader",
			Help: "1 while this replica holds the lease and runs the switch, else 0.",
		}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callcontrold_replica_takeovers_total",
			Help: "Times this replica took the lease and started the switch.",
		}),
		appendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "callcontrold_replica_append_seconds",
			Help:    "Latency of one append to the log, until the stream acknowledged it.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callcontrold_replica_forwarded_total",
			Help: "Control RPCs forwarded to the leader, by outcome code.",
		}, []string{"code"}),
		snapshotsWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callcontrold_replica_snapshots_written_total",
			Help: "Snapshots of the store this replica wrote while leading.",
		}),
		snapshotsLoaded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callcontrold_replica_snapshots_loaded_total",
			Help: "Times this replica replaced its store by a snapshot: it joined, or fell behind, after the log dropped the revisions it needed.",
		}),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.revision, m.lagRevisions, m.lagSeconds, m.leader, m.leaderChanges, m.appendSeconds, m.forwarded, m.snapshotsWritten, m.snapshotsLoaded} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// applied records the lag after applying a revision stored at stored,
// with pending revisions still to come.
func (m *metrics) applied(_ int64, pending uint64, stored time.Time) {
	m.lagRevisions.Set(float64(pending))
	m.lagSeconds.Set(max(time.Since(stored).Seconds(), 0))
}
