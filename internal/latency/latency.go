// Package latency is the load clients' latency histogram (cmd/callbench
// and the peer benchmark in bench/etcd measure with the same one, so
// their figures compare).
package latency

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Hist is a log-linear latency histogram, safe for concurrent use: values
// (nanoseconds) are exact below 64 and otherwise land in one of 32
// sub-buckets per power of two, so a percentile is within ≈ 3% of the
// true value. Recording is one atomic add: no allocation, no lock.
type Hist struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Uint64
	max    atomic.Uint64
}

const (
	histSubBits = 5
	histSub     = 1 << histSubBits // sub-buckets per power of two
	histBuckets = (64-histSubBits)*histSub + 2*histSub
)

// histBucket maps v to its bucket: v itself below 2*histSub, else
// shift*histSub + v>>shift where v>>shift is in [histSub, 2*histSub).
func histBucket(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits - 1
	return shift*histSub + int(v>>shift)
}

// histBounds returns the smallest and largest value of bucket i.
func histBounds(i int) (lo, hi uint64) {
	if i < 2*histSub {
		return uint64(i), uint64(i)
	}
	shift := i/histSub - 1
	m := uint64(i - shift*histSub)
	return m << shift, (m+1)<<shift - 1
}

func (h *Hist) Record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[histBucket(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(v)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			break
		}
	}
}

// Count is how many values were recorded.
func (h *Hist) Count() uint64 { return h.n.Load() }

// Quantile returns the value at quantile q (0 < q <= 1): the midpoint of
// the bucket holding the ceil(q*n)-th smallest value, capped at the
// maximum. It is 0 for an empty histogram.
func (h *Hist) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = min(max(rank, 1), n)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			lo, hi := histBounds(i)
			return time.Duration(min(lo+(hi-lo)/2, h.max.Load()))
		}
	}
	return time.Duration(h.max.Load())
}

// Mean is the mean of the recorded values.
func (h *Hist) Mean() time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / n)
}

// Merge adds o's counts to h.
func (h *Hist) Merge(o *Hist) {
	for i := range o.counts {
		if c := o.counts[i].Load(); c != 0 {
			h.counts[i].Add(c)
		}
	}
	h.n.Add(o.n.Load())
	h.sum.Add(o.sum.Load())
	for {
		m, v := h.max.Load(), o.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			break
		}
	}
}

// Summary is a histogram's summary as reported (milliseconds).
type Summary struct {
	P50  float64 `json:"p50_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

// MS is d in milliseconds, rounded to the microsecond.
func MS(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// Summary reports the median, p99, maximum and mean.
func (h *Hist) Summary() Summary {
	return Summary{P50: MS(h.Quantile(0.50)), P99: MS(h.Quantile(0.99)), Max: MS(time.Duration(h.max.Load())), Mean: MS(h.Mean())}
}
