package auth

import (
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for the limiter.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestAllowControl(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := NewLimiter(LimitConfig{ControlRPS: 1, ControlBurst: 2})
	l.now = clock.now
	alice, bob := &Principal{Login: "alice"}, &Principal{Login: "bob"}

	for i := range 2 {
		if err := l.AllowControl(alice); err != nil {
			t.Fatalf("request %d within the burst: %v", i, err)
		}
	}
	err := l.AllowControl(alice)
	var le *LimitError
	if !errors.As(err, &le) {
		t.Fatalf("request beyond the burst: got %v, want a *LimitError", err)
	}
	if le.RetryAfter <= 0 || le.RetryAfter > time.Second {
		t.Errorf("got RetryAfter %v, want a delay in (0, 1s]", le.RetryAfter)
	}
	if le.Login != "alice" || le.Quota != "control RPCs: 1 per second, burst 2" {
		t.Errorf("got login %q, quota %q", le.Login, le.Quota)
	}

	// Limits are per login.
	if err := l.AllowControl(bob); err != nil {
		t.Errorf("bob is limited by alice's requests: %v", err)
	}
	// A refused request consumed nothing: one second refills one token.
	clock.advance(time.Second)
	if err := l.AllowControl(alice); err != nil {
		t.Errorf("after a second: %v", err)
	}
	if err := l.AllowControl(alice); !errors.Is(err, ErrLimited) {
		t.Errorf("second request after a second: got %v, want ResourceExhausted", err)
	}
}

// Reads have their own budget: control RPCs do not spend it, and it
// refuses like the control rate.
func TestAllowRead(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := NewLimiter(LimitConfig{ControlRPS: 1, ControlBurst: 1, ReadRPS: 2})
	l.now = clock.now
	alice := &Principal{Login: "alice"}
	must(t, l.AllowControl(alice))
	for i := range 2 { // burst defaults to ceil(ReadRPS)
		if err := l.AllowRead(alice); err != nil {
			t.Fatalf("read %d within the burst: %v", i, err)
		}
	}
	var le *LimitError
	if err := l.AllowRead(alice); !errors.As(err, &le) || le.RetryAfter <= 0 || le.Quota != "reads: 2 per second, burst 2" {
		t.Fatalf("read beyond the burst: got %v (%+v), want a *LimitError with a retry delay", err, le)
	}
	if err := l.AllowControl(alice); !errors.Is(err, ErrLimited) {
		t.Errorf("control after reads: got %v, want the control limit (reads must not refill it)", err)
	}
	clock.advance(time.Second / 2)
	if err := l.AllowRead(alice); err != nil {
		t.Errorf("read after half a second: %v", err)
	}
}

func TestAllowControlEvictsIdleLogins(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := NewLimiter(LimitConfig{ControlRPS: 10, ControlBurst: 5})
	l.now = clock.now
	for i := range 1000 {
		if err := l.AllowControl(&Principal{Login: string(rune('a'+i%26)) + time.Duration(i).String()}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(l.control.buckets); n != 1000 {
		t.Fatalf("got %d buckets, want 1000", n)
	}
	// Once a full refill period has passed every idle bucket is full and
	// indistinguishable from a new one: it is dropped.
	clock.advance(2 * time.Second)
	if err := l.AllowControl(&Principal{Login: "late"}); err != nil {
		t.Fatal(err)
	}
	if n := len(l.control.buckets); n != 1 {
		t.Errorf("got %d buckets after the idle period, want 1", n)
	}
}

func TestUnlimited(t *testing.T) {
	for _, cfg := range []LimitConfig{{}, {ControlRPS: -1, ControlBurst: -1, MaxWatchesPerPrincipal: -1}} {
		l := NewLimiter(cfg)
		p := &Principal{Login: "alice"}
		for range 1000 {
			if err := l.AllowControl(p); err != nil {
				t.Fatalf("%+v: %v", cfg, err)
			}
			if _, err := l.AcquireWatch(p); err != nil {
				t.Fatalf("%+v: %v", cfg, err)
			}
		}
	}
	var l *Limiter // a nil limiter limits nothing
	if err := l.AllowControl(&Principal{}); err != nil {
		t.Error(err)
	}
}

func TestAcquireWatch(t *testing.T) {
	l := NewLimiter(LimitConfig{MaxWatchesPerPrincipal: 2})
	alice := &Principal{Login: "alice"}
	r1, err := l.AcquireWatch(alice)
	must(t, err)
	r2, err := l.AcquireWatch(alice)
	must(t, err)
	_, err = l.AcquireWatch(alice)
	var le *LimitError
	if !errors.As(err, &le) || le.RetryAfter != WatchRetryAfter {
		t.Fatalf("third watch: got %v, want a *LimitError with RetryAfter %v", err, WatchRetryAfter)
	}
	if _, err := l.AcquireWatch(&Principal{Login: "bob"}); err != nil {
		t.Errorf("bob is limited by alice's watches: %v", err)
	}
	r1()
	r1() // idempotent: must not free a second slot
	r3, err := l.AcquireWatch(alice)
	must(t, err)
	if _, err := l.AcquireWatch(alice); !errors.Is(err, ErrLimited) {
		t.Errorf("after a double release: got %v, want ResourceExhausted", err)
	}
	r2()
	r3()
	if _, ok := l.watches["alice"]; ok {
		t.Error("alice's counter kept after all her watches ended")
	}
	if _, err := l.AcquireWatch(nil); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("nil principal: got %v, want Unauthenticated", err)
	}
}

func TestLimiterConcurrent(t *testing.T) {
	const limit = 3
	l := NewLimiter(LimitConfig{ControlRPS: 1e6, ControlBurst: 1000, MaxWatchesPerPrincipal: limit})
	logins := []string{"alice", "bob", "carol"}
	var mu sync.Mutex
	open := map[string]int{}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			p := &Principal{Login: logins[g%len(logins)]}
			for range 500 {
				_ = l.AllowControl(p)
				release, err := l.AcquireWatch(p)
				if err != nil {
					continue
				}
				mu.Lock()
				open[p.Login]++
				if open[p.Login] > limit {
					t.Errorf("%s holds %d watches, cap %d", p.Login, open[p.Login], limit)
				}
				mu.Unlock()
				runtime.Gosched() // let the others try while this one is open
				mu.Lock()
				open[p.Login]--
				mu.Unlock()
				release()
			}
		})
	}
	wg.Wait()
	if len(l.watches) != 0 {
		t.Errorf("got watch counters %v after every release, want none", l.watches)
	}
}
