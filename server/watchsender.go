package server

import (
	"context"
	"sync/atomic"
	"time"

	"callcontrold/callstore"
)

// The sender: one goroutine per busy watch, for its events.
//
// A watch's sends run off the handler's goroutine so that an eviction can
// end a watch blocked in SendMsg (see watchsend.go). Starting a helper for
// every batch of events made three goroutine switches per delivery: the
// store wakes the handler, the handler starts a helper, the helper's end
// wakes the handler again. At 10,000 revisions a second an unfiltered
// watch paid that every 100 µs, and on two cores the switches, not the
// sends, were what the fan-out's latency tail and CPU per event were made
// of.
//
// So when events arrive, the handler drains the watcher, starts a sender
// with the batches and waits for it. The sender builds their frames (which
// goes deeper than an idle stream's handler has room for: see openOnOwnStack)
// and sends them. If the watch is busy (its last frame went out less than
// a linger ago, see watchRegistry.linger), the sender then waits for the
// watcher's next batches itself: while events keep coming, a delivery
// costs one wake-up (the store's signal to the sender). A filtered watch
// that gets an event every 100 ms is busy too: it pays one wake-up per
// delivery, not three. Once nothing came for a whole linger, the
// registry's linger tick wakes the sender and it returns to the handler,
// so a quiet watch has only its handler's goroutine, and a watch that gets
// an event now and then does not keep a second goroutine waiting in vain.
// The sender waits on the watch's wake-up channel alone, with no timer of
// its own: a select with a timer case, and the timer's upkeep, were paid
// per delivery. The handler keeps everything else: the progress frames,
// the drain, the eviction and the end of the stream.
//
// Each batch of frames the sender sends is one send for the stall sweeper
// (sendSeq is odd while it is under way); lingering is not a send.

// senderLinger is how long a sender waits for more events before it
// hands the watch back to its handler (at most a progress tick: see
// watchRegistry.linger): well above the gap between a filtered watch's
// events in a busy fan-out (100 ms at 10k/s over 1,000 devices), well
// below the time an idle watch's memory is measured after its events
// (callbench's idle scenario: a second), and a small share of the time a
// watch that gets an event now and then spends waiting.
const senderLinger = 250 * time.Millisecond

// runSender runs a sender for the watch, which first builds and sends the
// frames of the batches the handler took (ws.batches) and ended, the
// watcher's end they came with, then lingers for more events if linger; it waits for the sender
// to finish, or returns errSendAbandoned when the watch is evicted first:
// the sender may then still be in a send and the caller must not touch
// the watch's frames or batches.
func (ws *watchStream) runSender(w *callstore.Watcher, linger bool, ended error) (sendResult, error) {
	sl := ws.beginSend()
	if sl == nil {
		return sendResult{}, errSendAbandoned
	}
	sl.ws, sl.w, sl.linger, sl.ended = ws, w, linger, ended
	go sl.sender()
	r := ws.await(sl)
	if r.err == errSendAbandoned { // the eviction's result, never a send's
		return sendResult{}, r.err
	}
	return r, nil
}

// sender is runSender's goroutine. It takes its arguments from the slot
// (sendSlot.runJob says why): a filtered watch of the 10,000-watcher fan-out
// gets an event a second, and starts a sender for each.
func (sl *sendSlot) sender() {
	sl.ch <- sl.ws.sendWhileBusy(sl.w, sl.linger, sl.ended) // buffered (see sendSlot): nobody may be waiting any more
}

// sendWhileBusy sends the frames collected and, if linger, waits for more
// events and sends those too, until the watcher was quiet for a linger, a
// send fails, the watcher ends, or the stream is cancelled, evicted or
// drained (the handler deals with those).
//
// It waits on the watch's wake-up channel alone and looks at the rest
// after each wake-up: the store's watcher wakes it for events, an
// eviction, a drain or the stream's cancellation wakes it, and so does
// the registry's linger tick once the watch has been quiet for a linger
// (see watchRegistry.wakeLingering).
func (ws *watchStream) sendWhileBusy(w *callstore.Watcher, linger bool, ended error) (r sendResult) {
	ws.buildFrames() // of the batches the handler took
	// Cancelled while the sender lingers, the stream's handler must hear
	// of it now, not at the sender's next event: a client that left frees
	// its watch at once. The flag spares each wake-up a walk up the
	// stream's context chain, whose contexts a quiet watch's sender finds
	// out of the cache.
	var cancelled atomic.Bool
	if linger {
		ws.s.watches.lingerBegin(ws)
		stop := context.AfterFunc(ws.stream.Context(), func() {
			cancelled.Store(true)
			ws.signal()
		})
		defer func() {
			stop()
			ws.s.watches.lingerEnd(ws)
		}()
	}
	for {
		if len(ws.frames) > 0 {
			if r.err = ws.sendNow(ws.frames); r.err != nil {
				return r
			}
			ws.delivered()
		}
		if ended != nil {
			r.ended = ended
			return r
		}
		if !linger {
			return r
		}
		<-ws.wake
		if cancelled.Load() || ws.interrupted() {
			return r
		}
		if _, ended = ws.collect(w); len(ws.frames) == 0 && ended == nil && ws.quiet() >= ws.s.watches.linger {
			return r
		}
	}
}

// interrupted reports whether the handler has something else to do
// besides a cancelled stream (which sendWhileBusy hears of from its
// AfterFunc): the watch is evicted or the server drains. A single-case
// poll of a channel takes no lock.
func (ws *watchStream) interrupted() bool {
	return ws.cause.Load() != nil || ws.s.draining()
}

// sendNow sends msgs in order on the calling goroutine, as one send for
// the stall sweeper.
func (ws *watchStream) sendNow(msgs []any) error {
	ws.sendSeq.Add(1)
	defer ws.sendSeq.Add(1)
	return ws.sendAll(msgs)
}
