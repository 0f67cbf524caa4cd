package server

import (
	"testing"
	"time"
)

// The drain's RetryInfo delay is uniform in [after, after+jitter): every
// draw lands in the range and the draws spread over it, so the clients of
// a restarting server do not all come back at the same instant.
func TestRetryDelayJitter(t *testing.T) {
	const after, jitter, draws = time.Second, 4 * time.Second, 2000
	s := &callService{cfg: Config{DrainRetryAfter: after, DrainRetryJitter: jitter}.withDefaults()}
	lo, hi := time.Duration(1<<62), time.Duration(0)
	var buckets [8]int
	for range draws {
		d := s.retryDelay()
		if d < after || d >= after+jitter {
			t.Fatalf("retryDelay() = %v, want in [%v, %v)", d, after, after+jitter)
		}
		lo, hi = min(lo, d), max(hi, d)
		buckets[(d-after)*8/jitter]++
	}
	// Each eighth of the range expects 250 draws; fewer than 100 happens
	// with a probability far below 1e-20.
	for i, n := range buckets {
		if n < 100 {
			t.Errorf("eighth %d of the range got %d of %d draws: not spread (%v)", i, n, draws, buckets)
		}
	}
	t.Logf("%d draws in [%v, %v]", draws, lo, hi)

	s.cfg.DrainRetryJitter = -1 // none
	if d := s.retryDelay(); d != after {
		t.Errorf("retryDelay() without jitter = %v, want %v", d, after)
	}
}
