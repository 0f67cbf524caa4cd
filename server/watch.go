package server

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"callcontrold/auth"
	"callcontrold/callstore"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/wirefield"
)

// WatchCalls streams the caller's view of the store: started, the
// snapshot, then one frame per revision that has matching events, with
// progress frames when nothing matched for ProgressInterval. The loop
// follows etcd's sendLoop: the store queues, the watch sends, and a
// stalled client never stalls the store.
//
// An idle watch waits in its loop on this goroutine, below grpc's and the
// interceptors' frames, for as long as it lives, so whatever runs on it
// decides the stack's size for the stream's life (see openOnOwnStack): the
// loop's own work is shallow, opening the watch and sending its first
// frames run on a goroutine of their own, building frames and sending
// them on the sender's (watchsender.go), and mapping the watch's end
// (watchEnded) after the wait.
func (s *callService) WatchCalls(req *callcontrolv1.WatchCallsRequest, stream callcontrolv1.CallControlService_WatchCallsServer) error {
	return s.watchCalls(req, stream, false)
}

// watchCalls is WatchCalls; pooled says that req is watchRequests' and
// goes back there once the watch is open (watchCallsHandler). A watch
// sends through SendMsg alone, so it takes the grpc.ServerStream as it
// is: the generated handler's wrapper (grpc.GenericServerStream, 16
// bytes) would be one more object an idle stream keeps.
func (s *callService) watchCalls(req *callcontrolv1.WatchCallsRequest, stream grpc.ServerStream, pooled bool) error {
	o := s.openOnOwnStack(req, stream, pooled)
	ws := o.ws
	if ws == nil {
		return o.err
	}
	defer ws.close()
	served := o.err
	if served == nil {
		served = ws.loop(ws.w)
	}
	return s.watchEnded(ws, served)
}

// opened is what openAndStart returns: the watch, and the error that
// ended it while its first frames were sent; or no watch, and why it
// could not open. One value through openOnOwnStack's channel: variables the
// function set in the handler's frame would live on the heap for the
// stream's life.
type opened struct {
	ws  *watchStream
	err error
}

// openAndStart opens the watch (openWatch) and sends its first frames
// (sendStart).
func (s *callService) openAndStart(req *callcontrolv1.WatchCallsRequest, stream grpc.ServerStream) opened {
	ws, start, err := s.openWatch(req, stream)
	if err != nil {
		return opened{err: err}
	}
	return opened{ws: ws, err: ws.sendStart(start)}
}

// openOnOwnStack runs openAndStart on a goroutine of its own and waits
// for it (a panic there is raised again here). A stream's goroutine runs
// its handler below grpc's frames (1,368 B) and the interceptors' for as
// long as the stream lives, and a goroutine's stack never shrinks below
// twice what is on it at rest: the first time the work on it goes deeper
// than ≈ 3.1 KiB (the 4 KiB stack less the runtime's guard), the stack
// doubles to 8 KiB for the stream's life. So what goes deep runs
// elsewhere, and an idle stream keeps a 4 KiB stack: opening the watch
// (the request's checks, the store's watcher, the snapshot, the first
// frames) runs here; building the frames of events runs on the sender
// (take, buildFrames); every send runs on a goroutine of its own
// (sendFrames, runSender).
//
// The goroutine's arguments and its result channel come from a pool:
// what opening a watch allocates and drops leaves holes in the heap next
// to what the idle streams keep.
//
// If pooled, req goes back to watchRequests once the open is done with it.
func (s *callService) openOnOwnStack(req *callcontrolv1.WatchCallsRequest, stream grpc.ServerStream, pooled bool) opened {
	j := openJobs.Get().(*openJob)
	j.s, j.req, j.stream = s, req, stream
	goRun(j)
	o := <-j.done
	p := j.panic
	*j = openJob{done: j.done}
	openJobs.Put(j)
	if pooled {
		proto.Reset(req) // what it points to is the request's, not the watch's
		watchRequests.Put(req)
	}
	if p != nil {
		panic(p)
	}
	return o
}

// watchRequests holds the requests watchCallsHandler reads into.
var watchRequests = sync.Pool{New: func() any { return new(callcontrolv1.WatchCallsRequest) }}

// watchCallsHandler is the generated WatchCalls stream handler, except
// that the request comes from watchRequests and goes back once the watch
// is open (nothing of the watch points into it: the store's watcher copies
// the filter's lists, the token is parsed): a request allocated by the
// generated handler is dropped among the idle streams' objects, in a size
// class (80 bytes) where opening a stream leaves the most holes. A request
// whose read failed is dropped: an aborted first read may still be filling
// it (streamCtl.firstRead). decodeRegistrar installs it for a
// *callService.
func watchCallsHandler(srv any, stream grpc.ServerStream) error {
	m := watchRequests.Get().(*callcontrolv1.WatchCallsRequest)
	if err := stream.RecvMsg(m); err != nil {
		return err
	}
	return srv.(*callService).watchCalls(m, stream, true)
}

// openJob is what openOnOwnStack's goroutine gets and gives back.
type openJob struct {
	s      *callService
	req    *callcontrolv1.WatchCallsRequest
	stream grpc.ServerStream
	done   chan opened // buffered: runJob never waits on it
	panic  any         // set before done receives
}

var openJobs = sync.Pool{New: func() any { return &openJob{done: make(chan opened, 1)} }}

func (j *openJob) runJob() {
	var o opened
	defer func() {
		j.panic = recover()
		j.done <- o
	}()
	o = j.s.openAndStart(j.req, j.stream)
}

// watchStart is what the first frames of a watch need: the snapshot (if
// asked for) and the revision it stands at.
type watchStart struct {
	snapshot     []*callstore.Call
	rev          int64
	withSnapshot bool
}

// openWatch checks the request and the caller, registers the watch (the
// server-wide cap, the caller's limit) and opens the store's watcher. On
// success the caller must call ws.close when the watch ends.
func (s *callService) openWatch(req *callcontrolv1.WatchCallsRequest, stream grpc.ServerStream) (*watchStream, watchStart, error) {
	ctx := stream.Context()
	var v validator
	v.filter(req.GetFilter())
	var tok resumeToken
	resume := req.GetResumeToken() != ""
	if resume {
		var err error
		if tok, err = parseResumeToken(req.GetResumeToken()); err != nil {
			v.add("resume_token", "%v", err)
		}
	}
	if err := v.err(); err != nil {
		return nil, watchStart{}, err
	}
	p, err := principalOf(ctx)
	if err != nil {
		return nil, watchStart{}, err
	}
	if resume {
		s.awaitResume(ctx, tok.Revision)
	}
	visible := auth.VisibleFunc(p)
	ws := newWatchStream(s, stream, visible)
	if err := s.watches.add(ws, s.retryDelay()); err != nil {
		s.m.watchEnds.WithLabelValues("refused").Inc()
		return nil, watchStart{}, s.status(ctx, err)
	}
	if s.lim != nil {
		release, err := s.lim.AcquireWatch(p)
		if err != nil {
			s.watches.remove(ws)
			return nil, watchStart{}, s.status(ctx, err)
		}
		ws.release = release
	}
	start := watchStart{withSnapshot: !resume && !req.GetSkipSnapshot()}
	ws.w, start.snapshot, start.rev, err = s.store.Watch(callstore.WatchRequest{
		Filter:   toStoreFilter(req.GetFilter()),
		Visible:  visible,
		Snapshot: start.withSnapshot,
		Resume:   resume,
		Epoch:    tok.Epoch,
		Revision: tok.Revision,
		Evicted:  ws.evict,
		Ready:    ws.wake,
	})
	if err != nil {
		ws.close()
		s.m.watchEnds.WithLabelValues("refused").Inc()
		return nil, watchStart{}, s.status(ctx, err)
	}
	return ws, start, nil
}

// close releases what openWatch took, in reverse order: the store's
// watcher, the caller's watch limit, the registration.
func (ws *watchStream) close() {
	if ws.w != nil {
		ws.w.Close()
	}
	if ws.release != nil {
		ws.release()
	}
	ws.s.watches.remove(ws)
}

// watchEnded is the status a watch ends with, err from its loop. It also
// arranges for the HTTP stream of a watch that cannot end cleanly to be
// reset.
func (s *callService) watchEnded(ws *watchStream, err error) error {
	ctx := ws.stream.Context()
	if errors.Is(err, errSendAbandoned) {
		// A send is still blocked. grpc's own transport ends it when the
		// stream is cancelled; through ServeHTTP nothing does, so the HTTP
		// listener resets a stream still there a moment later (a client
		// that resumed reading gets the status meanwhile).
		abortStreamAfter(ctx, s.cfg.DrainSendTimeout)
		return ws.end(ws.evictCause())
	}
	if s.draining() {
		// Ended by the drain, its last frames and status may still queue
		// behind frames a client that stopped reading has not taken (the
		// sends went through, the writes did not): reset a stream still
		// there after two DrainSendTimeouts, as Shutdown stops the gRPC
		// port's connections after two quiet ones.
		abortStreamAfter(ctx, 2*s.cfg.DrainSendTimeout)
	}
	return err
}

// abortStreamAfter resets the HTTP stream of ctx's request after d, if
// it is served through ServeHTTP (see WithStreamAbort) and still there.
func abortStreamAfter(ctx context.Context, d time.Duration) {
	if abort := streamAbortOf(ctx); abort != nil {
		time.AfterFunc(d, abort)
	}
}

// draining reports whether the server has begun to drain.
func (s *callService) draining() bool {
	select {
	case <-s.drain:
		return true
	default:
		return false
	}
}

// sendStart sends the started frame and the snapshot, in as few sends as
// the snapshot's chunks allow: the started frame goes with the first
// chunk, the snapshot's end with the last (no snapshot, or an empty one:
// one send). Each send is a goroutine and a result slot (sendFrames), and
// what opening a watch allocates and drops is what leaves holes in the
// heap next to what an idle stream keeps (see watchstart.go).
func (ws *watchStream) sendStart(start watchStart) error {
	s := ws.s
	calls := start.snapshot
	var end protowire.Number // the snapshot's end, if it goes with the started frame
	if start.withSnapshot && len(calls) == 0 {
		end = wirefield.ResponseSnapshotEnd
	}
	started, last, frames := startedAndEnd(s.cfg.ProgressInterval, int64(s.store.HistorySize()), s.store.OldestRevision(), start.rev, end, ws.tokenAt(start.rev))
	frames = append(frames, started)
	sent := frameCounts{started: 1}
	if last != nil {
		frames = append(frames, last)
		sent.ends = 1
	}
	if !start.withSnapshot || last != nil {
		return ws.sendCounted(frames, sent)
	}
	for len(calls) > 0 {
		n := min(s.cfg.SnapshotChunkSize, len(calls))
		frames = append(frames, ws.snapshotChunk(calls[:n]))
		sent.chunks++
		if calls = calls[n:]; len(calls) == 0 {
			frames = append(frames, tokenFrame(wirefield.ResponseSnapshotEnd, start.rev, ws.tokenAt(start.rev)))
			sent.ends++
		}
		if err := ws.sendCounted(frames, sent); err != nil {
			return err
		}
		frames, sent = frames[:0], frameCounts{}
	}
	return nil
}

// snapshotChunk is the snapshot frame of calls, as the caller sees them.
func (ws *watchStream) snapshotChunk(calls []*callstore.Call) *callcontrolv1.WatchCallsResponse {
	chunk := &callcontrolv1.SnapshotChunk{Calls: make([]*callcontrolv1.Call, len(calls))}
	for i, c := range calls {
		chunk.Calls[i] = ws.s.cv.call(c, ws.visible)
	}
	return &callcontrolv1.WatchCallsResponse{Frame: &callcontrolv1.WatchCallsResponse_Snapshot{Snapshot: chunk}}
}

// frameCounts counts the frames of one send by kind, for framesSent.
type frameCounts struct{ started, chunks, ends, progress int }

// sendCounted sends frames as one send and counts them (sent) once they
// are sent. It clears frames: a watch must not pin its last frame.
func (ws *watchStream) sendCounted(frames []any, sent frameCounts) error {
	if err := ws.sendFrames(frames); err != nil {
		return err
	}
	clear(frames)
	count := func(kind string, n int) {
		if n > 0 {
			ws.s.m.framesSent.WithLabelValues(kind).Add(float64(n))
		}
	}
	count("started", sent.started)
	count("snapshot", sent.chunks)
	count("snapshot_end", sent.ends)
	count("progress", sent.progress)
	return nil
}

type watchStream struct {
	s       *callService
	stream  grpc.ServerStream
	w       *callstore.Watcher // the store's watcher, once opened
	release func()             // gives back the caller's watch limit; nil without a Limiter
	visible func(*callstore.Call) bool

	// What delivering events needs, while the watch has some to deliver
	// (see getBusy); nil while it is quiet.
	*watchBusy
	stall stallState // the registry's, guarded by its mu

	// The one channel the handler waits on besides the stream's context
	// (a parked goroutine holds a sudog per channel it waits on): the
	// store's watcher signals it for events, endWith for an eviction, the
	// registry for a drain and when a progress frame is due (see loop).
	wake chan struct{}

	// Eviction and stall detection; see watchsend.go.
	sendSeq   atomic.Uint32            // odd while a send is under way (watchRegistry)
	framesOut atomic.Uint32            // frames sent: a drain cuts only a watch whose frames stopped going out
	regIdx    int32                    // where the registry holds the watch (watchRegistry.streams), guarded by its mu; -1 when not there
	lastFrame atomic.Int64             // monoNow when the last frames went out: the registry's progress tick reads it
	slot      atomic.Pointer[sendSlot] // where the handler waits for a send's result, while one is under way
	cause     atomic.Pointer[error]    // why: set once, by the first eviction, before it wakes the handler
}

// watchBusy is what a watch needs while it delivers events: the batches
// drained from the store's watcher, the encodings of the frame being
// built, the frames of one send. A watch takes one from busyPool when it
// drains its watcher (take) and gives it back once its sender is done
// (putBusy): an idle watch holds none (these arrays were ≈ 150 bytes of
// every stream that ever got an event), and the arrays serve whichever
// watches are delivering at the moment.
type watchBusy struct {
	batches []callstore.Batch
	scratch [][]byte // event encodings of the frame being built
	frames  []any    // the frames of one pump
}

var busyPool = sync.Pool{New: func() any { return new(watchBusy) }}

// busyKeep bounds the arrays a watchBusy takes back to busyPool: a
// burst's (a resumed watch's replay, up to thousands of batches) goes.
const busyKeep = 64

// getBusy gives the watch a watchBusy, if it has none.
func (ws *watchStream) getBusy() {
	if ws.watchBusy == nil {
		ws.watchBusy = busyPool.Get().(*watchBusy)
	}
}

// putBusy gives the watch's watchBusy back, emptied. Only once no sender
// can be using it.
func (ws *watchStream) putBusy() {
	b := ws.watchBusy
	if b == nil {
		return
	}
	ws.watchBusy = nil
	clear(b.batches) // a failed send left them undelivered
	clear(b.frames)
	b.batches, b.frames, b.scratch = keepSmall(b.batches), keepSmall(b.frames), keepSmall(b.scratch)
	busyPool.Put(b)
}

// keepSmall returns s emptied, or nil if its array is over busyKeep.
func keepSmall[S ~[]E, E any](s S) S {
	if cap(s) > busyKeep {
		return nil
	}
	return s[:0]
}

// tokenAt is the resume token of revision rev.
func (ws *watchStream) tokenAt(rev int64) resumeToken {
	return resumeToken{Epoch: ws.s.store.Epoch(), Revision: rev}
}

func (ws *watchStream) sendProgress(rev int64) error {
	return ws.sendCounted([]any{tokenFrame(wirefield.ResponseProgress, rev, ws.tokenAt(rev))}, frameCounts{progress: 1})
}

// pump sends everything the watcher has queued, on a send helper (see
// sendFrames), and returns the watcher's progress revision.
func (ws *watchStream) pump(w *callstore.Watcher) (progress int64, err error) {
	progress, _ = ws.collect(w) // the watch ends after this: its stack may grow
	if len(ws.frames) == 0 {
		return progress, nil
	}
	if err := ws.sendFrames(ws.frames); err != nil {
		return progress, err
	}
	ws.delivered()
	return progress, nil
}

// collect drains the watcher into ws.batches and builds their frames in
// ws.frames (none when nothing was queued).
func (ws *watchStream) collect(w *callstore.Watcher) (progress int64, ended error) {
	progress, ended = ws.take(w)
	ws.buildFrames()
	return progress, ended
}

// take drains the watcher into ws.batches, for the sender to build their
// frames (buildFrames): building frames goes deeper than an idle
// stream's handler has room for (see openOnOwnStack), the sender's goroutine
// does not live on.
func (ws *watchStream) take(w *callstore.Watcher) (progress int64, ended error) {
	ws.getBusy()
	ws.batches, progress, ended = w.Drain(ws.batches[:0])
	ws.frames = ws.frames[:0]
	return progress, ended
}

// buildFrames builds the frames of ws.batches into ws.frames.
func (ws *watchStream) buildFrames() {
	ws.frames = ws.frames[:0]
	for i := range ws.batches {
		ws.frames = append(ws.frames, ws.s.enc.batchFrame(&ws.batches[i], ws.s.store.Epoch(), ws.visible, &ws.scratch))
	}
}

// delivered accounts for the frames of the last collect once they are
// sent, and lets them and their events go. The RPC's span (one event per
// frame of events) is looked up in the stream's context here rather than
// kept in the watchStream: 16 bytes less put it in the 128-byte size
// class, and an idle stream keeps one for as long as it lives.
func (ws *watchStream) delivered() {
	clear(ws.frames) // do not pin the frames until the next collect
	span := trace.SpanFromContext(ws.stream.Context())
	events := 0
	for i := range ws.batches {
		b := &ws.batches[i]
		addBatchEvent(span, b.Revision, len(b.Events))
		events += len(b.Events)
		b.Events = nil // let the events go before the next Drain reuses the slice
	}
	ws.s.m.eventFrames.Add(float64(len(ws.batches)))
	ws.s.m.eventsSent.Add(float64(events))
}

// loop waits for something to do and does it, until the watch ends. It
// waits on the stream's context and on the watch's wake-up channel alone,
// and looks at everything after each wake-up (eviction, drain, events,
// a progress frame due): an idle stream parks on two channels, with no
// timer of its own (the registry's tick wakes it when a progress frame is
// due, see watchRegistry.wakeQuiet).
func (ws *watchStream) loop(w *callstore.Watcher) error {
	ctx := ws.stream.Context()
	for {
		again, err := ws.step(w)
		if err != nil {
			return err
		}
		if again {
			continue
		}
		select {
		case <-ctx.Done():
			// The client left (or its deadline passed): report that code,
			// so metrics and logs tell it from a server-side end.
			ws.s.m.watchEnds.WithLabelValues("client").Inc()
			return toStatusError(ctx.Err())
		case <-ws.wake:
		}
	}
}

// step does what there is to do: end the watch if it was evicted or the
// server drains, send the watcher's events (on a sender, see
// watchsender.go), or a progress frame once the stream has been quiet for
// ProgressInterval. A non-nil err ends the watch; again asks the loop to
// look once more before it waits.
func (ws *watchStream) step(w *callstore.Watcher) (again bool, err error) {
	if cause := ws.evictCause(); cause != nil {
		return false, ws.end(cause)
	}
	if ws.s.draining() {
		return false, ws.drained(w)
	}
	progress, ended := ws.take(w)
	if len(ws.batches) > 0 {
		// Linger for more only if this watch is busy: its last frame went
		// out less than a linger ago. A sender that lingers waits on the
		// wake-up channel and may take a wake-up meant for the handler (it
		// returns at once for those): look again before waiting.
		linger := ws.quiet() < ws.s.watches.linger
		r, err := ws.runSender(w, linger, ended)
		if err == nil {
			ws.putBusy() // the sender is done with it
			err = r.err
		}
		if err == nil && r.ended != nil {
			err = ws.end(r.ended)
		}
		return linger, err
	}
	ws.putBusy()
	if ended != nil {
		return false, ws.end(ended)
	}
	if ws.quiet() >= ws.s.cfg.ProgressInterval {
		return false, ws.sendProgress(progress)
	}
	return false, nil
}

// quiet is how long ago the stream's last frames went out.
func (ws *watchStream) quiet() time.Duration {
	return time.Duration(monoNow() - ws.lastFrame.Load())
}

// drained ends the watch for a drain: it sends what is queued and a
// progress frame, so the client's token is as fresh as it can be, then
// tells it to come back.
func (ws *watchStream) drained(w *callstore.Watcher) error {
	progress, err := ws.pump(w)
	if err == nil {
		err = ws.sendProgress(progress)
	}
	if errors.Is(err, errSendAbandoned) {
		// The drain cut it in a send its client does not read: the
		// caller must also have the HTTP stream reset.
		return err
	}
	ws.s.m.watchEnds.WithLabelValues("drain").Inc()
	return unavailableDraining(ws.s.retryDelay())
}

func (ws *watchStream) end(err error) error {
	ctx := ws.stream.Context()
	var stalled *watchStalledError
	switch {
	case errors.Is(err, callstore.ErrClosed):
		ws.s.m.watchEnds.WithLabelValues("store_closed").Inc()
		return unavailableDraining(ws.s.retryDelay())
	case errors.Is(err, errDrainStalled):
		ws.s.m.watchEnds.WithLabelValues("drain").Inc()
		return unavailableDraining(ws.s.retryDelay())
	case errors.As(err, &stalled):
		ws.s.m.watchEnds.WithLabelValues("stalled").Inc()
		stalled.oldest = ws.s.store.OldestRevision()
	case errors.Is(err, callstore.ErrCompacted):
		ws.s.m.watchEnds.WithLabelValues("too_slow").Inc()
	default:
		ws.s.m.watchEnds.WithLabelValues("error").Inc()
	}
	return ws.s.status(ctx, err)
}
