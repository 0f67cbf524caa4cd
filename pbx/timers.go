package pbx

import (
	"container/heap"
	"time"
)

// engineTimer is a timer of the engine: at when, unless it is stopped
// first, a ringer's ring time runs out (rg: Engine.ringExpired) or a
// dialling phone's wait to go off hook (leg: the leg ends with no
// answer), under the engine's lock. It is part of what it times (ringer,
// offHook) and can be started again once it has fired or been stopped
// (a hunt group's next member). Guarded by Engine.mu.
//
// The engine's timers (a dialling phone's off-hook wait, a ringing
// group's timeout) are nearly all stopped long before they are due, one
// or two per call. They are kept in one heap, under a single clock timer
// armed for the earliest (Engine.wake), instead of a clock timer each:
// starting and stopping one is then a heap push and remove under the
// lock the engine holds anyway, with nothing allocated: no clock timer
// made, registered with the runtime and deleted from it, and no closure.
type engineTimer struct {
	when    time.Time
	seq     uint64 // orders timers due at the same time by creation, as the clock does
	idx     int    // position in Engine.timers while pending
	pending bool
	rg      *ringer
	leg     *leg
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

// Push and Pop implement heap.Interface; use start and stop.
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

// start starts et, which is not pending, to fire after d: its run
// commits and delivers the signals. Called with e.mu held.
func (e *Engine) start(et *engineTimer, d time.Duration) {
	now := e.clock.Now()
	e.timerSeq++
	et.when, et.seq, et.pending = now.Add(max(d, 0)), e.timerSeq, true
	heap.Push(&e.timers, et)
	if e.wake == nil || et.when.Before(e.wakeAt) {
		e.arm(now)
	}
}

// stop cancels et if it is pending. Called with e.mu held. The clock's
// timer stays armed: when it fires early, runTimers finds nothing due and
// arms it for the next timer.
func (e *Engine) stop(et *engineTimer) {
	if !et.pending {
		return
	}
	et.pending = false
	heap.Remove(&e.timers, et.idx)
}

// run does what et times.
func (e *Engine) run(t *tx, et *engineTimer) {
	if et.rg != nil {
		e.ringExpired(t, et.rg)
	} else {
		e.kill(t, et.leg, CauseNoAnswer)
	}
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
		et.pending = false
		t := e.newTx()
		e.run(t, et)
		if err := e.commit(t); err != nil {
			e.log.Error("pbx: timer commit failed", "err", err)
		}
		e.mu.Unlock()
		e.flush()
	}
}
