package auth

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// LimitConfig bounds what one login may cost the service. A zero or
// negative value disables the corresponding limit.
type LimitConfig struct {
	ControlRPS             float64 // sustained control RPCs per second per login
	ControlBurst           int     // control RPCs allowed at once; <= 0 means max(1, ceil(ControlRPS))
	MaxWatchesPerPrincipal int     // concurrent WatchCalls streams per login
}

// Limiter enforces a [LimitConfig] per login. Limits are keyed by login,
// not by connection, so opening more connections buys nothing. It is safe
// for concurrent use.
type Limiter struct {
	cfg LimitConfig

	mu        sync.Mutex
	buckets   map[string]*bucket // login → token bucket
	nextSweep time.Time
	watches   map[string]int // login → open watches; absent means 0

	now func() time.Time // the clock, replaced in tests
}

type bucket struct {
	lim      *rate.Limiter
	lastUsed atomic.Int64 // unix nanoseconds
}

// NewLimiter returns a limiter enforcing cfg.
func NewLimiter(cfg LimitConfig) *Limiter {
	if cfg.ControlRPS > 0 && cfg.ControlBurst <= 0 {
		cfg.ControlBurst = max(1, int(math.Ceil(cfg.ControlRPS)))
	}
	return &Limiter{
		cfg:     cfg,
		buckets: make(map[string]*bucket),
		watches: make(map[string]int),
		now:     time.Now,
	}
}

// refill is how long an unused bucket takes to fill up. A bucket idle for
// longer is full, exactly like a fresh one, so dropping it changes no
// decision: that is what lets the map forget idle logins and stay bounded
// by the logins active in the last refill period.
func (l *Limiter) refill() time.Duration {
	d := time.Duration(float64(l.cfg.ControlBurst) / l.cfg.ControlRPS * float64(time.Second))
	return max(d, time.Second)
}

// AllowControl takes one token from p's control bucket, or returns
// RESOURCE_EXHAUSTED with a RetryInfo (when to retry) and a QuotaFailure
// (which quota). A refused request consumes nothing.
func (l *Limiter) AllowControl(p *Principal) error {
	if l == nil || l.cfg.ControlRPS <= 0 {
		return nil
	}
	if p == nil {
		return status.Error(codes.Unauthenticated, "control rate limit: request is not authenticated")
	}
	now := l.now()
	b := l.bucket(p.Login, now)
	r := b.lim.ReserveN(now, 1)
	if !r.OK() { // cannot happen with burst >= 1; refuse rather than wait forever
		return l.rateError(p.Login, time.Second)
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return l.rateError(p.Login, d)
	}
	return nil
}

func (l *Limiter) bucket(login string, now time.Time) *bucket {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.After(l.nextSweep) {
		// Amortised: one pass over the map per refill period.
		idle := l.refill()
		cutoff := now.Add(-idle).UnixNano()
		for k, b := range l.buckets {
			if b.lastUsed.Load() < cutoff {
				delete(l.buckets, k)
			}
		}
		l.nextSweep = now.Add(idle)
	}
	b, ok := l.buckets[login]
	if !ok {
		b = &bucket{lim: rate.NewLimiter(rate.Limit(l.cfg.ControlRPS), l.cfg.ControlBurst)}
		l.buckets[login] = b
	}
	b.lastUsed.Store(now.UnixNano())
	return b
}

func (l *Limiter) rateError(login string, retry time.Duration) error {
	msg := fmt.Sprintf("control rate limit of login %s exceeded (%g requests/s, burst %d): retry in %v",
		login, l.cfg.ControlRPS, l.cfg.ControlBurst, retry.Round(time.Millisecond))
	st, err := status.New(codes.ResourceExhausted, msg).WithDetails(
		&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)},
		&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{
			Subject:     "login:" + login,
			Description: fmt.Sprintf("control RPCs: %g per second, burst %d", l.cfg.ControlRPS, l.cfg.ControlBurst),
		}}},
	)
	if err != nil {
		return status.Error(codes.ResourceExhausted, msg)
	}
	return st.Err()
}

// AcquireWatch counts one more open watch for p, or returns
// RESOURCE_EXHAUSTED with a QuotaFailure when p already holds the maximum.
// The caller must call release when the stream ends; release is idempotent.
func (l *Limiter) AcquireWatch(p *Principal) (release func(), err error) {
	if l == nil || l.cfg.MaxWatchesPerPrincipal <= 0 {
		return func() {}, nil
	}
	if p == nil {
		return nil, status.Error(codes.Unauthenticated, "watch limit: request is not authenticated")
	}
	login := p.Login
	l.mu.Lock()
	n := l.watches[login]
	if n >= l.cfg.MaxWatchesPerPrincipal {
		l.mu.Unlock()
		return nil, l.watchError(login)
	}
	l.watches[login] = n + 1
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			// Delete at zero so that logins that stopped watching
			// cost no memory.
			if n := l.watches[login] - 1; n > 0 {
				l.watches[login] = n
			} else {
				delete(l.watches, login)
			}
		})
	}, nil
}

func (l *Limiter) watchError(login string) error {
	msg := fmt.Sprintf("login %s already has %d open WatchCalls streams, the maximum: close one first",
		login, l.cfg.MaxWatchesPerPrincipal)
	st, err := status.New(codes.ResourceExhausted, msg).WithDetails(
		&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{
			Subject:     "login:" + login,
			Description: fmt.Sprintf("concurrent WatchCalls streams: at most %d", l.cfg.MaxWatchesPerPrincipal),
		}}},
	)
	if err != nil {
		return status.Error(codes.ResourceExhausted, msg)
	}
	return st.Err()
}
