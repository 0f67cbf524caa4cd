package server

import (
	"context"
	"testing"
	"time"
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
