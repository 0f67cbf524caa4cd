package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// Reconnect backoff of the watch: exponential with jitter between these,
// unless the server names a delay in RetryInfo.
const (
	backoffMin = 250 * time.Millisecond
	backoffMax = 10 * time.Second
)

// staleAfter is how long a stream may stay silent before the watch
// presumes it dead (a proxy that swallowed the connection) and resumes
// on a new one. The server sends a progress frame after every quiet
// progress interval, so three intervals without a frame is no accident.
func staleAfter(progress time.Duration) time.Duration {
	if progress <= 0 {
		progress = 10 * time.Second
	}
	return 3*progress + 5*time.Second
}

// watcher is the client side of one WatchCalls session, across
// reconnects: the resume token and what it knows of each call's state
// (to print "ring→up").
type watcher struct {
	g      *globals
	inv    *invocation
	token  string // last resume token seen; "" before the first one
	rev    int64  // revision of token
	states map[int64]callcontrolv1.State
	snap   []*callcontrolv1.Call // snapshot being received
	stale  time.Duration         // current silence limit
	framed bool                  // this stream delivered a frame past WatchStarted
}

// watch runs the watch command until ctx ends (Ctrl-C, --for), which is a
// clean exit, or the server refuses the watch for good.
func watch(ctx context.Context, g *globals, c callcontrolv1.CallControlServiceClient, inv *invocation) error {
	if inv.watchFor > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, inv.watchFor)
		defer cancel()
	}
	w := &watcher{g: g, inv: inv, token: inv.resume, states: map[int64]callcontrolv1.State{}}
	skip := inv.noSnapshot
	backoff := backoffMin
	for {
		err := w.stream(ctx, c, skip)
		if ctx.Err() != nil {
			return nil
		}
		if w.framed {
			backoff = backoffMin
		}
		switch {
		case status.Code(err) == codes.Unavailable:
			wait := jitter(backoff)
			if d, ok := retryDelay(err); ok {
				wait = d
			}
			backoff = min(2*backoff, backoffMax)
			from := "with a new snapshot"
			if w.token != "" {
				from = fmt.Sprintf("resuming after rev %d", w.rev)
			} else if skip {
				from = "from the current revision"
			}
			w.notef("stream unavailable (%s); reconnecting in %v, %s", status.Convert(err).Message(), wait.Round(time.Millisecond), from)
			if !sleep(ctx, wait) {
				return nil
			}
		case needsSnapshot(err):
			w.notef("%s; re-snapshotting: events since rev %d may be lost, the new snapshot shows the current state", resnapshotReason(err, w.rev), w.rev)
			w.token, w.rev = "", 0
			w.states = map[int64]callcontrolv1.State{}
			skip = false
			// A watcher that keeps falling behind must not spin.
			if !w.framed && !sleep(ctx, jitter(backoff)) {
				return nil
			}
			backoff = min(2*backoff, backoffMax)
		default:
			return err
		}
	}
}

// needsSnapshot: the resume token cannot be honoured (compacted history,
// a token of another server process, a watcher that fell behind): the
// only correct move is a fresh snapshot.
func needsSnapshot(err error) bool {
	switch status.Code(err) {
	case codes.OutOfRange:
		return true
	case codes.FailedPrecondition:
		ei := errorInfo(err)
		return ei != nil && ei.GetReason() == "EPOCH_MISMATCH"
	}
	return false
}

func resnapshotReason(err error, rev int64) string {
	ei := errorInfo(err)
	switch {
	case ei == nil:
		return "resume refused: " + status.Convert(err).Message()
	case ei.GetReason() == "EPOCH_MISMATCH":
		return "the resume token is from another server process (the server restarted)"
	case ei.GetReason() == "WATCH_STALLED":
		return fmt.Sprintf("the server ended the watch: nothing was read for %s", ei.GetMetadata()["send_timeout"])
	case ei.GetMetadata()["oldest_revision"] != "":
		return fmt.Sprintf("rev %d is no longer retained (oldest is %s)", rev, ei.GetMetadata()["oldest_revision"])
	}
	return fmt.Sprintf("resume refused (%s): %s", ei.GetReason(), status.Convert(err).Message())
}

// jitter spreads reconnects of many clients: d ± 20%.
func jitter(d time.Duration) time.Duration {
	return d - d/5 + rand.N(2*d/5+1)
}

// sleep waits d or until ctx ends; false if ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (w *watcher) notef(format string, args ...any) {
	fmt.Fprintf(w.g.stderr, "callctl: "+format+"\n", args...)
}

// stream runs one WatchCalls stream until it ends, printing as it goes.
func (w *watcher) stream(ctx context.Context, c callcontrolv1.CallControlServiceClient, skip bool) error {
	w.framed = false
	w.snap = w.snap[:0]
	if w.stale == 0 {
		w.stale = staleAfter(0)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stale atomic.Bool
	timer := time.AfterFunc(w.stale, func() { stale.Store(true); cancel() })
	defer timer.Stop()

	req := &callcontrolv1.WatchCallsRequest{Filter: w.inv.filter, ResumeToken: w.token, SkipSnapshot: skip}
	st, err := c.WatchCalls(sctx, req)
	for err == nil {
		var msg *callcontrolv1.WatchCallsResponse
		if msg, err = st.Recv(); err == nil {
			timer.Reset(w.stale)
			err = w.handle(msg)
		}
	}
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case stale.Load():
		return status.Errorf(codes.Unavailable, "no frame for %v: connection presumed dead", w.stale)
	case errors.Is(err, io.EOF):
		// The contract ends a watch with a status, never OK; treat a
		// clean end as a drain.
		return status.Error(codes.Unavailable, "server ended the stream")
	}
	return err
}

// handle prints one frame and advances the watcher's state.
func (w *watcher) handle(msg *callcontrolv1.WatchCallsResponse) error {
	g := w.g
	if g.json {
		if err := writeJSON(g.stdout, msg, ""); err != nil {
			return err
		}
	}
	switch f := msg.GetFrame().(type) {
	case *callcontrolv1.WatchCallsResponse_Started:
		s := f.Started
		w.stale = staleAfter(s.GetProgressInterval().AsDuration())
		if g.verbose {
			w.notef("watching from rev %d (history window %d revisions, oldest rev %d, progress every %v)",
				s.GetRevision(), s.GetHistoryWindow(), s.GetOldestRevision(), s.GetProgressInterval().AsDuration())
		}
		return nil
	case *callcontrolv1.WatchCallsResponse_Snapshot:
		w.framed = true
		w.snap = append(w.snap, f.Snapshot.GetCalls()...)
		return nil
	case *callcontrolv1.WatchCallsResponse_SnapshotEnd:
		w.framed = true
		w.token, w.rev = f.SnapshotEnd.GetResumeToken(), f.SnapshotEnd.GetRevision()
		w.states = make(map[int64]callcontrolv1.State, len(w.snap))
		for _, c := range w.snap {
			w.states[c.GetUid()] = c.GetState()
		}
		calls := w.snap
		w.snap = nil
		if g.json {
			return nil
		}
		return writeSnapshot(g.stdout, w.rev, calls, g.now())
	case *callcontrolv1.WatchCallsResponse_Events:
		w.framed = true
		b := f.Events
		w.token, w.rev = b.GetResumeToken(), b.GetRevision()
		now := g.now()
		for _, ev := range b.GetEvents() {
			c := ev.GetCall()
			prev := w.states[c.GetUid()]
			if ev.GetView() == callcontrolv1.ViewChange_VIEW_CHANGE_LEFT || c.GetState() == callcontrolv1.State_STATE_DEAD {
				delete(w.states, c.GetUid())
			} else {
				w.states[c.GetUid()] = c.GetState()
			}
			if g.json {
				continue
			}
			if _, err := fmt.Fprintln(g.stdout, eventLine(now, b.GetRevision(), ev, prev)); err != nil {
				return err
			}
		}
		return nil
	case *callcontrolv1.WatchCallsResponse_Progress:
		w.framed = true
		w.token, w.rev = f.Progress.GetResumeToken(), f.Progress.GetRevision()
		if g.verbose && !g.json {
			_, err := fmt.Fprintln(g.stdout, progressLine(g.now(), w.rev))
			return err
		}
	}
	return nil
}

// writeSnapshot prints the snapshot heading and table.
func writeSnapshot(w io.Writer, rev int64, calls []*callcontrolv1.Call, now time.Time) error {
	if len(calls) == 0 {
		_, err := fmt.Fprintf(w, "snapshot at rev %d: no calls\n", rev)
		return err
	}
	if _, err := fmt.Fprintf(w, "snapshot at rev %d: %d call(s)\n", rev, len(calls)); err != nil {
		return err
	}
	return writeCallTable(w, calls, now)
}

// progressLine is a progress frame under --verbose.
func progressLine(at time.Time, rev int64) string {
	return fmt.Sprintf("%s rev %d  PROGRESS", at.Format("15:04:05.000"), rev)
}
