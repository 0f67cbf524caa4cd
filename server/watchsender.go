package server

import (
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
// goes deeper than an idle stream's handler has room for: see onOwnStack)
// and sends them. If the watch is busy (its last
// frame went out less than senderLinger ago), the sender then waits for
// the watcher's next batches itself: while events keep coming, a delivery
// costs one wake-up (the store's signal to the sender). Once nothing came
// for a whole senderLinger, it returns to the handler, so a quiet watch
// has only its handler's goroutine, and a watch that gets an event now
// and then does not keep a second goroutine and a timer waiting in vain.
// The handler keeps everything else: the progress frames, the drain, the
// eviction and the end of the stream.
//
// Each batch of frames the sender sends is one send for the stall sweeper
// (sendSeq is odd while it is under way); lingering is not a send.

// senderLinger is how long a sender waits for more events before it
// hands the watch back to its handler: well above the gap between a busy
// watch's revisions (100 µs at 10k/s), well below the progress interval.
const senderLinger = 5 * time.Millisecond

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
	go func() { sl.ch <- ws.sendWhileBusy(w, linger, ended) }() // buffered (see sendSlot): nobody may be waiting any more
	r := ws.await(sl)
	if r.err == errSendAbandoned { // the eviction's result, never a send's
		return sendResult{}, r.err
	}
	return r, nil
}

// sendWhileBusy sends the frames collected and, if linger, waits for more
// events and sends those too, until the watcher was quiet for
// senderLinger, a send fails, the watcher ends, or the stream is
// cancelled, evicted or drained (the handler deals with those).
//
// It waits on the watch's wake-up channel and its timer only, and looks
// at the rest after each wake-up: a select is paid per delivery, and its
// cost grows with its cases. So the handler hears of a cancellation at
// the sender's next event or within two lingers; an eviction or a drain
// wakes the sender itself.
func (ws *watchStream) sendWhileBusy(w *callstore.Watcher, linger bool, ended error) (r sendResult) {
	var timer *time.Timer
	busy := false    // something was sent since the timer last fired
	ws.buildFrames() // of the batches the handler took
	for {
		if len(ws.frames) > 0 {
			if r.err = ws.sendNow(ws.frames); r.err != nil {
				return r
			}
			ws.delivered()
			busy = true
		}
		if ended != nil {
			r.ended = ended
			return r
		}
		if !linger {
			return r
		}
		if timer == nil {
			timer = time.NewTimer(senderLinger)
			defer timer.Stop()
		}
		select {
		case <-ws.wake:
		case <-timer.C:
			if !busy {
				return r
			}
			busy = false
			timer.Reset(senderLinger)
		}
		if ws.interrupted() {
			return r
		}
		_, ended = ws.collect(w)
	}
}

// interrupted reports whether the handler has something else to do: the
// stream is cancelled or evicted, or the server drains. A single-case
// poll of a channel takes no lock.
func (ws *watchStream) interrupted() bool {
	if ws.stream.Context().Err() != nil {
		return true
	}
	return ws.cause.Load() != nil || ws.s.draining()
}

// sendNow sends msgs in order on the calling goroutine, as one send for
// the stall sweeper.
func (ws *watchStream) sendNow(msgs []any) error {
	ws.sendSeq.Add(1)
	defer ws.sendSeq.Add(1)
	return ws.sendAll(msgs)
}
