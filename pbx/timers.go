package pbx

import (
	"container/heap"
	"time"
)

// engineTimer is a timer of the engine: f runs under the engine's lock
// at when, unless the timer is stopped first. Guarded by Engine.mu.
//
// The engine's timers (a dialling phone's off-hook wait, a ringing
// group's timeout) are nearly all stopped long before they are due, one
// or two per call. They are kept in one heap, under a single clock timer
// armed for the earliest (Engine.wake), instead of a clock timer each:
// starting and stopping one is then a heap push and remove under the
// lock the engine holds anyway, with no clock timer made, registered
// with the runtime and deleted from it, and no closure around f.
type engineTimer struct {
	when time.Time
	seq  uint64 // orders timers due at the same time by creation, as the clock does
	f    func(t *tx)
	idx  int  // position in Engine.timers
	done bool // fired or stopped
}

// timerHeap orders the pending timers by (when, seq).
type timerHeap []*engineTimer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if !h[i].when.Equal(h[j].when) {
		return h[i].when.Before(h[j].when)
	}
	return h[i].seq < h[j].seq
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}

// Push and Pop implement heap.Interface; use after and stop.
func (h *timerHeap) Push(x any) {
	et := x.(*engineTimer)
	et.idx = len(*h)
	*h = append(*h, et)
}

func (h *timerHeap) Pop() any {
	old := *h
	et := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return et
}

// after runs f(tx) under the engine's lock after d, commits, and delivers
// the signals. Called with e.mu held.
func (e *Engine) after(d time.Duration, f func(t *tx)) *engineTimer {
	now := e.clock.Now()
	e.timerSeq++
	et := &engineTimer{when: now.Add(max(d, 0)), seq: e.timerSeq, f: f}
	heap.Push(&e.timers, et)
	if e.wake == nil || et.when.Before(e.wakeAt) {
		e.arm(now)
	}
	return et
}

// stop cancels et, unless it has fired or was stopped. Called with e.mu
// held. The clock's timer stays armed: when it fires early, runTimers
// finds nothing due and arms it for the next timer.
func (e *Engine) stop(et *engineTimer) {
	if et == nil || et.done {
		return
	}
	et.done = true
	heap.Remove(&e.timers, et.idx)
	et.f = nil
}

// arm arms the clock's timer for the earliest pending timer, replacing
// the one armed. Called with e.mu held.
func (e *Engine) arm(now time.Time) {
	if e.wake != nil {
		e.wake.Stop()
		e.wake = nil
	}
	if len(e.timers) == 0 {
		return
	}
	e.wakeAt = e.timers[0].when
	e.wake = e.clock.AfterFunc(e.wakeAt.Sub(now), e.wakeFn)
}

// runTimers is the clock timer's call: it runs the timers that are due,
// earliest first, each in a transaction of its own with its signals
// delivered before the next (as when each had a clock timer of its own),
// and arms the clock's timer for the next one.
func (e *Engine) runTimers() {
	for {
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			return
		}
		now := e.clock.Now()
		if len(e.timers) == 0 || e.timers[0].when.After(now) {
			e.arm(now) // this clock timer has fired: another, for the next one
			e.mu.Unlock()
			return
		}
		et := heap.Pop(&e.timers).(*engineTimer)
		et.done = true
		f := et.f
		et.f = nil
		t := e.newTx()
		f(t)
		if err := e.commit(t); err != nil {
			e.log.Error("pbx: timer commit failed", "err", err)
		}
		e.mu.Unlock()
		e.flush()
	}
}
