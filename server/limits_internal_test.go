package server

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"
	"unsafe"
)

// The pending requests' timer is armed while a request waits and stopped
// once none does: an armed timer belongs to the runtime and would keep
// the server it points to alive after Shutdown.
func TestPendingTimerStopsWhenNoneWaits(t *testing.T) {
	p := &pendingRequests{timeout: time.Hour, hits: &limitHit{count: func(string) {}}}
	ctl := func() *streamCtl {
		ctx, cancel := context.WithCancelCause(context.Background())
		t.Cleanup(func() { cancel(nil) })
		return &streamCtl{ctx: ctx, cancel: cancel}
	}
	a, b := ctl(), ctl()
	p.admit(a, "/s/a")
	p.admit(b, "/s/b")
	if !p.armed {
		t.Fatal("two requests wait: the timer is not armed")
	}
	p.received(a)
	if !p.armed {
		t.Error("one request still waits: the timer was stopped")
	}
	p.received(b)
	if p.armed || p.timer.Stop() {
		t.Error("no request waits: the timer is still armed")
	}
	c := ctl()
	p.admit(c, "/s/c")
	if !p.armed || !p.timer.Stop() {
		t.Error("a new request waits: the timer was not armed again")
	}
}

// A streaming call's control, with its place on the pending list and its
// first read's arguments, is one object of the 160-byte size class: not a
// class an idle WatchCalls stream keeps objects in (watchStream is 144
// bytes, its wake-up channel 112).
func TestStreamCtlSize(t *testing.T) {
	if size := unsafe.Sizeof(streamCtl{}); size > 160 || size <= 144 {
		t.Errorf("streamCtl is %d bytes, want 145–160", size)
	}
}

// A streaming call's control goes back to the pool only when nobody can
// abort it any more: one whose wait was aborted (its aborter took it off
// the pending list) is left alone, the abort in its wake channel, so a
// late abort can never reach a stream that reused it.
func TestAbortedStreamCtlIsNotReused(t *testing.T) {
	p := &pendingRequests{max: 1, timeout: -1, hits: &limitHit{
		count: func(string) {}, log: slog.New(slog.DiscardHandler), every: time.Hour,
		last: map[string]time.Time{}, left: map[string]int{},
	}}
	open := func() *chainStream {
		st := streamCtlPool.Get().(*streamCtl)
		st.ctx = context.Background()
		p.admit(st, "/s/watch")
		return &chainStream{m: &streamMethod{pending: p}, st: st}
	}
	evicted := open()
	victim := evicted.st
	served := open() // the cap is one: evicts the first
	kept := served.st
	if len(victim.wake) != 1 || !errors.Is(victim.cause, ErrPendingEvicted) {
		t.Fatalf("the evicted stream's control was not aborted: %d wake-ups, cause %v", len(victim.wake), victim.cause)
	}
	evicted.readDone()
	if victim.ctx == nil {
		t.Error("an aborted control was released to the pool")
	}
	served.readDone()
	if kept.ctx != nil || kept.ss != nil || kept.read.Load() {
		t.Error("a control that got its request was not reset and released")
	}
	if p.Pending() != 0 {
		t.Errorf("%d streams still pending", p.Pending())
	}
}
