package latency

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestHistBucketsRoundTrip(t *testing.T) {
	prev := -1
	for _, v := range []uint64{0, 1, 63, 64, 65, 127, 128, 1000, 1 << 20, 123456789, 1 << 40, 1<<63 - 1, 1<<64 - 1} {
		i := histBucket(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("bucket(%d) = %d out of range", v, i)
		}
		lo, hi := histBounds(i)
		if v < lo || v > hi {
			t.Errorf("%d in bucket %d = [%d, %d]", v, i, lo, hi)
		}
		if hi-lo > hi/histSub {
			t.Errorf("bucket %d = [%d, %d] wider than 1/%d", i, lo, hi, histSub)
		}
		if i < prev {
			t.Errorf("bucket(%d) = %d < previous %d: not monotonic", v, i, prev)
		}
		prev = i
	}
	// Consecutive buckets tile the values without gaps.
	for i := 1; i < histBuckets; i++ {
		_, hiPrev := histBounds(i - 1)
		lo, _ := histBounds(i)
		if lo != hiPrev+1 {
			t.Fatalf("bucket %d starts at %d, previous ends at %d", i, lo, hiPrev)
		}
	}
}

func TestHistQuantiles(t *testing.T) {
	var h Hist
	if h.Quantile(0.5) != 0 || h.Summary() != (Summary{}) {
		t.Fatal("empty histogram: want zeros")
	}
	// 1..1000 µs, shuffled: p50 ≈ 500µs, p99 ≈ 990µs, within the
	// histogram's 1/32 precision.
	vals := make([]time.Duration, 1000)
	for i := range vals {
		vals[i] = time.Duration(i+1) * time.Microsecond
	}
	rand.Shuffle(len(vals), func(i, j int) { vals[i], vals[j] = vals[j], vals[i] })
	var a, b Hist
	for i, v := range vals {
		if i%2 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	h.Merge(&a)
	h.Merge(&b)
	if h.Count() != 1000 {
		t.Fatalf("count = %d", h.Count())
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, 1000 * time.Microsecond}, {0.001, time.Microsecond}} {
		got := h.Quantile(c.q)
		if d := float64(got-c.want) / float64(c.want); d < -1.0/histSub || d > 1.0/histSub {
			t.Errorf("quantile(%v) = %v, want %v ± 1/%d", c.q, got, c.want, histSub)
		}
	}
	if got := h.Quantile(1); got > time.Millisecond {
		t.Errorf("p100 = %v exceeds the maximum", got)
	}
	s := h.Summary()
	if s.Max != 1 || s.Mean < 0.49 || s.Mean > 0.51 {
		t.Errorf("summary = %+v", s)
	}
}
