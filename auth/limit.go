package auth

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// LimitConfig bounds what one login may cost the service. A zero or
// negative value disables the corresponding limit.
type LimitConfig struct {
	ControlRPS             float64 // sustained control RPCs per second per login
	ControlBurst           int     // control RPCs allowed at once; <= 0 means max(1, ceil(ControlRPS))
	ReadRPS                float64 // sustained reads (ListCalls, GetCall, ListDevices, GetDevice) per second per login
	ReadBurst              int     // reads allowed at once; <= 0 means max(1, ceil(ReadRPS))
	MaxWatchesPerPrincipal int     // concurrent WatchCalls streams per login
}

// WatchRetryAfter is the retry hint of a refused watch: a slot frees when
// one of the login's streams ends, which the server cannot predict, so it
// suggests a pause long enough not to spin.
const WatchRetryAfter = 5 * time.Second

// Limiter enforces a [LimitConfig] per login. Limits are keyed by login,
// not by connection, so opening more connections buys nothing. It is safe
// for concurrent use.
type Limiter struct {
	cfg     LimitConfig
	control rateLimit
	read    rateLimit

	mu      sync.Mutex     // guards the maps of control, read and watches
	watches map[string]int // login → open watches; absent means 0

	now func() time.Time // the clock, replaced in tests
}

// rateLimit is one token bucket per login for one kind of RPC.
type rateLimit struct {
	what      string // "control RPCs", "reads"
	rps       float64
	burst     int
	buckets   map[string]*bucket // login → token bucket
	nextSweep time.Time
}

type bucket struct {
	lim      *rate.Limiter
	lastUsed atomic.Int64 // unix nanoseconds
}

// NewLimiter returns a limiter enforcing cfg.
func NewLimiter(cfg LimitConfig) *Limiter {
	newRate := func(what string, rps float64, burst int) rateLimit {
		if rps > 0 && burst <= 0 {
			burst = max(1, int(math.Ceil(rps)))
		}
		return rateLimit{what: what, rps: rps, burst: burst, buckets: make(map[string]*bucket)}
	}
	return &Limiter{
		cfg:     cfg,
		control: newRate("control RPCs", cfg.ControlRPS, cfg.ControlBurst),
		read:    newRate("reads", cfg.ReadRPS, cfg.ReadBurst),
		watches: make(map[string]int),
		now:     time.Now,
	}
}

// AllowControl takes one token from p's control bucket, or returns a
// *LimitError saying when to retry. A refused request consumes nothing.
func (l *Limiter) AllowControl(p *Principal) error {
	if l == nil {
		return nil
	}
	return l.allow(&l.control, p)
}

// AllowRead is [Limiter.AllowControl] for the read budget: ListCalls,
// GetCall, ListDevices and GetDevice.
func (l *Limiter) AllowRead(p *Principal) error {
	if l == nil {
		return nil
	}
	return l.allow(&l.read, p)
}

func (l *Limiter) allow(r *rateLimit, p *Principal) error {
	if r.rps <= 0 {
		return nil
	}
	if p == nil {
		return errNoPrincipal
	}
	now := l.now()
	b := l.bucket(r, p.Login, now)
	res := b.lim.ReserveN(now, 1)
	if !res.OK() { // cannot happen with burst >= 1; refuse rather than wait forever
		return r.error(p.Login, time.Second)
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return r.error(p.Login, d)
	}
	return nil
}

// errNoPrincipal refuses a limited request that carries no caller: the
// server never lets one through, so this is a wiring mistake, answered
// like a missing token.
var errNoPrincipal = unauthenticated(ReasonTokenMissing, "request is not authenticated: set metadata authorization: Bearer <token>")

// refill is how long an unused bucket takes to fill up. A bucket idle for
// longer is full, exactly like a fresh one, so dropping it changes no
// decision: that is what lets the map forget idle logins and stay bounded
// by the logins active in the last refill period.
func (r *rateLimit) refill() time.Duration {
	d := time.Duration(float64(r.burst) / r.rps * float64(time.Second))
	return max(d, time.Second)
}

func (l *Limiter) bucket(r *rateLimit, login string, now time.Time) *bucket {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.After(r.nextSweep) {
		// Amortised: one pass over the map per refill period.
		idle := r.refill()
		cutoff := now.Add(-idle).UnixNano()
		for k, b := range r.buckets {
			if b.lastUsed.Load() < cutoff {
				delete(r.buckets, k)
			}
		}
		r.nextSweep = now.Add(idle)
	}
	b, ok := r.buckets[login]
	if !ok {
		b = &bucket{lim: rate.NewLimiter(rate.Limit(r.rps), r.burst)}
		r.buckets[login] = b
	}
	b.lastUsed.Store(now.UnixNano())
	return b
}

func (r *rateLimit) error(login string, retry time.Duration) error {
	return &LimitError{
		Login:      login,
		Quota:      fmt.Sprintf("%s: %g per second, burst %d", r.what, r.rps, r.burst),
		RetryAfter: retry,
		Msg: fmt.Sprintf("%s rate limit of login %s exceeded (%g requests/s, burst %d): retry in %v",
			r.what, login, r.rps, r.burst, retry.Round(time.Millisecond)),
	}
}

// AcquireWatch counts one more open watch for p, or returns a *LimitError
// when p already holds the maximum. The caller must call release when the
// stream ends; release is idempotent.
func (l *Limiter) AcquireWatch(p *Principal) (release func(), err error) {
	if l == nil || l.cfg.MaxWatchesPerPrincipal <= 0 {
		return func() {}, nil
	}
	if p == nil {
		return nil, errNoPrincipal
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
	return &LimitError{
		Login:      login,
		Quota:      fmt.Sprintf("concurrent WatchCalls streams: at most %d", l.cfg.MaxWatchesPerPrincipal),
		RetryAfter: WatchRetryAfter,
		Msg: fmt.Sprintf("login %s already has %d open WatchCalls streams, the maximum: close one first",
			login, l.cfg.MaxWatchesPerPrincipal),
	}
}
