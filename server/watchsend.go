package server

import (
	"errors"
	"sync"

	"google.golang.org/grpc"

	"callcontrold/callstore"
)

// Evicting a watch whose client stopped reading.
//
// Such a watch blocks in SendMsg (HTTP/2 flow control) for as long as the
// client stays connected. grpc offers one way to unblock it: cancel the
// stream's context; but the failed SendMsg then answers CANCELLED itself,
// before the handler can return the status the eviction owes the client
// (OUT_OF_RANGE with its ErrorInfo, or UNAVAILABLE with RetryInfo during
// a drain). So the sends of a watch run on a short-lived helper goroutine,
// one per batch of frames, while the handler waits for it or for the
// eviction. Evicted, the handler returns its status at once: grpc queues
// it behind the frames already in flight (the client reads it after
// them), frees the handler's snapshot, batches and store watcher, and
// cancels the stream, which ends the helper's blocked send.

// errSendAbandoned: the watch was evicted while a send was under way.
var errSendAbandoned = errors.New("watch evicted during a send")

func newWatchStream(s *callService, stream grpc.ServerStream, visible func(*callstore.Call) bool) *watchStream {
	ws := &watchStream{
		s: s, stream: stream, visible: visible,
		wake:   make(chan struct{}, 1),
		regIdx: -1,
	}
	ws.lastFrame.Store(monoNow())
	return ws
}

// evict ends the watch from outside its goroutine: the store (history
// passed it), the stall sweeper or a drain. The first cause wins. Safe from
// any goroutine and quick: the store calls it with its lock held.
func (ws *watchStream) evict(err error) { ws.endWith(err) }

// endWith is evict, reporting whether err is the cause (false: the watch
// was evicted already). A stalled watch stays registered until its
// handler has returned, which a busy machine may delay past the next
// sweep: the sweeps count a watch they end only once.
//
// It wakes the handler wherever it waits: on wake (the loop, or a sender
// waiting for events), or on the send's result slot (sendFrames,
// runSender), which it is told of by an errSendAbandoned result (see
// sendSlot).
func (ws *watchStream) endWith(err error) bool {
	if !ws.cause.CompareAndSwap(nil, &err) {
		return false
	}
	if sl := ws.slot.Load(); sl != nil {
		select {
		case sl.ch <- sendResult{err: errSendAbandoned}:
		default: // never (see sendSlot); were it ever full, a store blocked here would be far worse
		}
	}
	ws.signal()
	return true
}

// signal wakes the watch's handler (or its sender, waiting for events):
// the store's watcher signals the same channel. Coalesced, never blocks;
// whoever wakes looks at everything there may be to do.
func (ws *watchStream) signal() {
	select {
	case ws.wake <- struct{}{}:
	default:
	}
}

// evictCause returns why the watch was evicted, or nil.
func (ws *watchStream) evictCause() error {
	if p := ws.cause.Load(); p != nil {
		return *p
	}
	return nil
}

// sendFrames sends msgs in order and returns the first error, or
// errSendAbandoned if the watch is evicted first (or was already). The
// caller must not touch msgs after errSendAbandoned: the helper may still
// be reading it.
//
// sendSeq is odd while a call is under way: the stall sweeper ends a
// watch whose call lasts longer than WatchSendTimeout. One call sends
// everything the watch had queued, so that bounds how long a frame waits
// to go out: it catches a client that reads nothing and one that reads
// too slowly to keep up (each call then carries more, and lasts longer).
func (ws *watchStream) sendFrames(msgs []any) error {
	ws.sendSeq.Add(1)
	defer ws.sendSeq.Add(1)
	sl := ws.beginSend()
	if sl == nil {
		return errSendAbandoned
	}
	sl.ws, sl.msgs = ws, msgs
	goRun(sl)
	return ws.await(sl).err
}

// runJob is sendFrames' goroutine (goRun). It takes the send from the
// slot: a goroutine started with arguments is one more object dropped per
// send (48 bytes), among the ones an idle stream keeps when it is its
// first.
func (sl *sendSlot) runJob() {
	sl.ch <- sendResult{err: sl.ws.sendAll(sl.msgs)} // buffered (see sendSlot): nobody may be waiting any more
}

// sendSlot is where the handler waits for a send's result: the send
// helper's or the sender's, or the eviction's (endWith posts
// errSendAbandoned there). A watch holds one only while a send is under
// way, published in watchStream.slot; an idle watch holds none (the
// channel is 160 of the bytes of an idle stream otherwise). The channel
// has room for the send's result and the eviction's: at most one of each
// ever reaches a slot.
//
// A slot goes back to sendSlots only empty: when its send's result was
// received and no eviction can have seen it. The handler withdraws the
// slot and then looks for an eviction, endWith sets its cause and then
// looks for a slot (sequentially consistent atomics): if the handler
// finds no cause, endWith comes later and finds no slot.
//
// A send helper's slot also carries its send (sendFrames): the watch and
// the frames; a sender's (runSender), the watch, its watcher and the
// sender's other arguments; cleared before the slot goes back to
// sendSlots.
type sendSlot struct {
	ch     chan sendResult
	ws     *watchStream
	msgs   []any
	w      *callstore.Watcher
	ended  error
	linger bool
}

var sendSlots = sync.Pool{New: func() any { return &sendSlot{ch: make(chan sendResult, 2)} }}

// beginSend publishes a result slot for a send about to start, or
// returns nil if the watch was evicted already (endWith may not have
// seen the slot: the send must not start).
func (ws *watchStream) beginSend() *sendSlot {
	sl := sendSlots.Get().(*sendSlot)
	ws.slot.Store(sl)
	if ws.cause.Load() != nil {
		ws.slot.Store(nil) // and dropped: endWith may have posted into it
		return nil
	}
	return sl
}

// await waits for the result of the send sl was published for, withdraws
// sl and gives it back to the pool if it is certainly empty.
func (ws *watchStream) await(sl *sendSlot) sendResult {
	r := <-sl.ch
	ws.slot.Store(nil)
	if r.err != errSendAbandoned && ws.cause.Load() == nil {
		sl.ws, sl.msgs, sl.w, sl.ended = nil, nil, nil, nil // the helper or sender, if any, is done with them
		sendSlots.Put(sl)
	}
	return r
}

// sendAll sends msgs in order and returns the first error.
func (ws *watchStream) sendAll(msgs []any) error {
	for _, m := range msgs {
		if err := ws.stream.SendMsg(m); err != nil {
			return err
		}
		ws.framesOut.Add(1)
	}
	ws.lastFrame.Store(monoNow())
	return nil
}

// sendResult is what a send helper or a sender run reports to the handler.
type sendResult struct {
	ended error // the store ended the watcher (a sender run)
	err   error // a send failed
}
