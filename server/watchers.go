package server

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// watchRegistry knows every open WatchCalls stream: it enforces the
// server-wide watcher cap, ends the watches whose client does not keep
// up, and wakes the watches when the server drains and when a progress
// frame is due. A watch whose client stopped reading blocks in SendMsg (HTTP/2 flow
// control) and would hold its snapshot, its batches and its store watcher
// for as long as the client stays connected; the store cannot see it,
// because from the store's side it merely stopped draining.
//
// Stall detection costs the send path two atomic increments: a stream's
// sendSeq is odd while a send (of everything the watch had queued) is
// under way. A sweeper goroutine, running only while there are watches,
// looks every stallTimeout/stallChecks; a stream seen in the same send
// stallChecks times in a row is ended: its client reads nothing, or too
// slowly to keep up, and its frames are going stale.
//
// The same goroutine ticks for the progress frames: every
// progressInterval/progressTicks it wakes the watches whose last frames
// went out a progressInterval ago or more, so a progress frame comes at
// most a tick late, and an idle watch has no timer of its own (a timer
// and the sudog its handler waits on it with were ≈ 300 of the bytes of
// an idle stream). When the server drains, it wakes every watch.
//
// And it ends the senders' lingers (see watchsender.go): every
// linger/lingerTicks it wakes the lingering senders whose watches have
// been quiet for a linger, so a sender waits for events on the watch's
// wake-up channel alone, with no timer of its own.
type watchRegistry struct {
	max          int           // <= 0: no cap
	stallTimeout time.Duration // <= 0: no stall detection
	progress     time.Duration // <= 0: no progress ticks
	linger       time.Duration // how long a busy watch's sender waits for more events
	drain        <-chan struct{}
	hits         *limitHit

	mu sync.Mutex
	// streams holds every registered watch, each at its watchStream.regIdx
	// and with its stallState in watchStream.stall: a slice, not a set (a
	// map was ≈ 30 bytes per idle stream, and its growth dropped its old
	// tables while streams opened).
	streams   []*watchStream
	lingering map[*watchStream]struct{} // the watches whose senders linger
	stop      chan struct{}             // closed to stop the sweeper; nil while none runs

	// lingerStart tells the registry's goroutine that a sender began to
	// linger: its linger ticks run only while some sender lingers.
	lingerStart chan struct{}
}

// lingerTicks is how many linger ticks there are per linger: a sender
// returns to its handler at most this fraction of a linger late.
const lingerTicks = 4

// progressTicks is how many progress ticks there are per progress
// interval: a progress frame comes at most this fraction of the interval
// late, and each tick looks at every watch (a 20,000-watch server: ≈ 0.1
// ms under the registry's lock, every 1.25 s by default).
const progressTicks = 8

// monoNow is a reading of the monotonic clock, in nanoseconds since the
// process started: what watchStream.lastFrame holds.
func monoNow() int64 { return int64(time.Since(processStart)) }

var processStart = time.Now()

// stallChecks is how many sweeps a send must outlast to count as stalled.
const stallChecks = 4

// stallState is the memory of one stream, guarded by the registry's mu:
// the sweeper's, and apart from it the drain's, which looks on its own
// clock (were they shared, a send the sweeper saw a moment before a
// drain's look would be cut although it had barely begun). It lives in
// the watchStream (a separate object and a map value were ≈ 40 bytes of
// every idle stream) and keeps the low 32 bits of the counters it
// compares: a sweep tells whether they moved since the last one, and
// they cannot move by 2^32 sends or frames between two.
type stallState struct {
	seq         uint32 // sendSeq at the last sweep
	checks      uint32 // sweeps in a row that found the same send under way
	drainSeq    uint32 // sendSeq at the drain's last look
	drainFrames uint32 // framesOut at the drain's last look
}

// watchStalledError: a send of the watch lasted longer than the stall
// timeout. oldest is the store's oldest resumable revision when it ended.
type watchStalledError struct {
	after  time.Duration
	oldest int64
}

func (e *watchStalledError) Error() string {
	return fmt.Sprintf("the watch's frames waited more than %v to go out: the client is not reading its stream, or reads too slowly to keep up", e.after)
}

// watcherLimitError: the server-wide watcher cap is reached.
type watcherLimitError struct {
	max   int
	retry time.Duration
}

func (e *watcherLimitError) Error() string {
	return fmt.Sprintf("the server has %d watches open, its limit: retry later", e.max)
}

// errDrainStalled is why a drain cuts a watch that makes no send progress.
var errDrainStalled = errors.New("the server is draining and the watch made no send progress")

// newWatchRegistry returns a registry of at most max watches (<= 0: no
// cap) that ends the watches stalled in a send for stall (<= 0: never),
// wakes them every progress (<= 0: never) for their progress frames, and
// once drain is closed (nil: never).
//
// A sender lingers for senderLinger, or a progress tick if that is
// shorter: a lingering sender holds its handler, which sends the progress
// frames.
func newWatchRegistry(max int, stall, progress time.Duration, drain <-chan struct{}, hits *limitHit) *watchRegistry {
	linger := senderLinger
	if progress > 0 {
		linger = min(linger, progress/progressTicks)
	}
	return &watchRegistry{
		max: max, stallTimeout: stall, progress: progress, linger: linger, drain: drain, hits: hits,
		lingering:   map[*watchStream]struct{}{},
		lingerStart: make(chan struct{}, 1),
	}
}

// add registers ws, unless the cap is reached.
func (r *watchRegistry) add(ws *watchStream, retry time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.max > 0 && len(r.streams) >= r.max {
		r.hits.hit(limitWatchersTotal, "watcher limit reached: refused a watch", "max_watchers", r.max)
		return &watcherLimitError{max: r.max, retry: retry}
	}
	ws.regIdx = int32(len(r.streams))
	r.streams = append(r.streams, ws)
	if r.stop == nil {
		r.stop = make(chan struct{})
		go r.run(r.stop)
	}
	return nil
}

func (r *watchRegistry) remove(ws *watchStream) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i := int(ws.regIdx); i >= 0 && i < len(r.streams) && r.streams[i] == ws {
		last := len(r.streams) - 1
		r.streams[i] = r.streams[last]
		r.streams[i].regIdx = int32(i)
		r.streams[last] = nil
		r.streams = r.streams[:last]
		ws.regIdx = -1
	}
	delete(r.lingering, ws)
	if len(r.streams) == 0 && r.stop != nil {
		close(r.stop)
		r.stop = nil
	}
}

// Len returns the number of registered watches.
func (r *watchRegistry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.streams)
}

// lingerBegin and lingerEnd bracket a sender's linger (sendWhileBusy):
// while it lingers, the linger ticks look at its watch.
func (r *watchRegistry) lingerBegin(ws *watchStream) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lingering[ws] = struct{}{}
	if len(r.lingering) == 1 {
		select {
		case r.lingerStart <- struct{}{}:
		default: // told already
		}
	}
}

func (r *watchRegistry) lingerEnd(ws *watchStream) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.lingering, ws)
}

// run is the registry's goroutine while there are watches: the stall
// sweeps, the progress and linger ticks and the drain's wake-up.
func (r *watchRegistry) run(stop <-chan struct{}) {
	var lingerTicker *time.Ticker // runs while some sender lingers
	defer func() {
		if lingerTicker != nil {
			lingerTicker.Stop()
		}
	}()
	var sweeps, ticks, lingers <-chan time.Time
	if r.stallTimeout > 0 {
		t := time.NewTicker(max(r.stallTimeout/stallChecks, time.Millisecond))
		defer t.Stop()
		sweeps = t.C
	}
	if r.progress > 0 {
		t := time.NewTicker(max(r.progress/progressTicks, time.Millisecond))
		defer t.Stop()
		ticks = t.C
	}
	drain := r.drain
	for {
		select {
		case <-stop:
			return
		case <-sweeps:
			r.sweep()
		case now := <-ticks:
			r.wakeQuiet(now)
		case <-r.lingerStart:
			if lingerTicker == nil {
				lingerTicker = time.NewTicker(max(r.linger/lingerTicks, time.Millisecond))
				lingers = lingerTicker.C
			}
		case now := <-lingers:
			if !r.wakeLingering(now) {
				lingerTicker.Stop()
				lingerTicker, lingers = nil, nil
			}
		case <-drain:
			drain = nil // closed: once is enough
			r.wakeAll()
		}
	}
}

// sweep ends the watches stalled in a send.
func (r *watchRegistry) sweep() {
	for _, ws := range r.stalled(stallChecks) {
		if ws.endWith(&watchStalledError{after: r.stallTimeout}) {
			r.hits.hit(limitWatchStalled, "ended a watch whose client stopped reading", "send_timeout", r.stallTimeout)
		}
	}
}

// wakeQuiet wakes the watches whose last frames went out a progress
// interval or more before now: their handlers send a progress frame (a
// sender still lingering that takes the wake-up returns to its handler,
// its watch having been quiet for more than a linger, and its handler
// looks once more before it waits).
func (r *watchRegistry) wakeQuiet(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	due := quietBefore(now, r.progress)
	for _, ws := range r.streams {
		ws.signalIfQuiet(due)
	}
}

// wakeLingering wakes the lingering senders whose watches' last frames
// went out a linger or more before now: they return to their handlers.
// It reports whether any sender lingers.
func (r *watchRegistry) wakeLingering(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	due := quietBefore(now, r.linger)
	for ws := range r.lingering {
		ws.signalIfQuiet(due)
	}
	if len(r.lingering) == 0 {
		// A sender that begins to linger after this finds the map empty
		// and tells run again.
		select {
		case <-r.lingerStart:
		default:
		}
		return false
	}
	return true
}

// quietBefore is the monoNow reading quiet before now: a watch whose last
// frames went out then or earlier has been quiet for quiet.
func quietBefore(now time.Time, quiet time.Duration) int64 {
	return int64(now.Sub(processStart) - quiet)
}

// signalIfQuiet wakes the watch if its last frames went out at due or
// earlier (a quietBefore reading).
func (ws *watchStream) signalIfQuiet(due int64) {
	if ws.lastFrame.Load() <= due {
		ws.signal()
	}
}

// wakeAll wakes every watch (the server drains). A watch registered
// after this sees the drain before its first wait.
func (r *watchRegistry) wakeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ws := range r.streams {
		ws.signal()
	}
}

// stalled returns the streams found in the same send for checks sweeps
// in a row, this one included.
func (r *watchRegistry) stalled(checks uint32) []*watchStream {
	var out []*watchStream
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ws := range r.streams {
		st := &ws.stall
		seq := ws.sendSeq.Load()
		if seq&1 == 0 || seq != st.seq {
			st.seq, st.checks = seq, 0
			continue
		}
		if st.checks++; st.checks >= checks {
			out = append(out, ws)
		}
	}
	return out
}

// drainStalled returns the streams found in the same send as at the
// previous call, with no frame sent since. A client that reads, however
// slowly, is not cut: a send carries everything the watch had queued, and
// one of a thousand frames to a slow reader (a JSON client on a busy
// machine) outlasts DrainSendTimeout while every frame of it goes out;
// cut, that reader would lose its last progress frame.
func (r *watchRegistry) drainStalled() []*watchStream {
	var out []*watchStream
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ws := range r.streams {
		st := &ws.stall
		seq, frames := ws.sendSeq.Load(), ws.framesOut.Load()
		if seq&1 == 1 && seq == st.drainSeq && frames == st.drainFrames {
			out = append(out, ws)
		}
		st.drainSeq, st.drainFrames = seq, frames
	}
	return out
}

// cutStalled ends, during a drain, the watches found in the same send as
// at the previous call, with no frame sent since: they would hold the
// drain for its whole timeout.
func (r *watchRegistry) cutStalled() {
	for _, ws := range r.drainStalled() {
		if ws.endWith(errDrainStalled) {
			r.hits.hit(limitWatchDrainStalled, "draining: cut a watch whose client stopped reading")
		}
	}
}

// retryDelay is the RetryInfo delay told to watchers: DrainRetryAfter plus
// a uniformly random share of DrainRetryJitter, so that the clients of a
// restarting server, all told at the same instant, do not all come back
// (and re-snapshot: a new process has a new epoch) at the same instant.
func (s *callService) retryDelay() time.Duration {
	d := s.cfg.DrainRetryAfter
	if j := s.cfg.DrainRetryJitter; j > 0 {
		d += rand.N(j)
	}
	return d
}
