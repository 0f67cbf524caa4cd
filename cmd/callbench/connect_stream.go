package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/internal/benchkit"
	"callcontrold/internal/rawframe"
)

// frameReader yields a watch's next frame: its kind, revision and, for an
// event batch, how many events.
type frameReader func() (kind protowire.Number, rev int64, events int, err error)

// watchOpener opens watch i (without a snapshot) and returns its reader
// and start revision.
type watchOpener func(ctx context.Context, i int) (frameReader, int64, error)

func connectStreams(ctx context.Context, e *env, hc *http.Client, base string, cfg streamConfig, res *connectResult) error {
	conns, err := e.dialN(cfg.conns)
	if err != nil {
		return err
	}
	kinds := []struct {
		open watchOpener
		out  *streamKind
	}{
		{grpcWatchOpener(conns), &res.WatchGRPC},
		{connectWatchOpener(hc, base, false), &res.WatchConnectPB},
		{connectWatchOpener(hc, base, true), &res.WatchConnectJSON},
	}
	per := cfg.duration / time.Duration(cfg.rounds)
	for range cfg.rounds {
		for _, k := range kinds {
			st, err := watchPhase(ctx, e, k.open, cfg, per)
			if err != nil {
				return err
			}
			if st.failures > 0 {
				return fmt.Errorf("connect: %d watchers failed", st.failures)
			}
			k.out.Messages += st.frames
			k.out.Seconds += st.elapsed.Seconds()
		}
	}
	for _, k := range kinds {
		k.out.PerSecond = float64(k.out.Messages) / k.out.Seconds
	}
	res.StreamProtoRatio = res.WatchConnectPB.PerSecond / res.WatchGRPC.PerSecond
	res.StreamJSONRatio = res.WatchConnectJSON.PerSecond / res.WatchGRPC.PerSecond
	return nil
}

func grpcWatchOpener(conns []*grpc.ClientConn) watchOpener {
	return func(ctx context.Context, i int) (frameReader, int64, error) {
		s, rev, err := openWatch(withToken(ctx, adminToken), conns[i%len(conns)], &callcontrolv1.WatchCallsRequest{SkipSnapshot: true})
		if err != nil {
			return nil, 0, err
		}
		var m rawframe.Msg
		return func() (protowire.Number, int64, int, error) {
			if err := s.RecvMsg(&m); err != nil {
				return 0, 0, 0, err
			}
			return parseFrame(m.B)
		}, rev, nil
	}
}

// connectWatchOpener opens WatchCalls with the Connect streaming protocol
// over HTTP/1.1: enveloped messages (a flags byte, a 4-byte length), the
// last one flagged end-of-stream.
func connectWatchOpener(hc *http.Client, base string, asJSON bool) watchOpener {
	contentType, parse := "application/connect+proto", parseFrame
	if asJSON {
		contentType, parse = "application/connect+json", parseJSONFrame
	}
	return func(ctx context.Context, _ int) (frameReader, int64, error) {
		body, err := proto.Marshal(&callcontrolv1.WatchCallsRequest{SkipSnapshot: true})
		if asJSON {
			body, err = protojson.Marshal(&callcontrolv1.WatchCallsRequest{SkipSnapshot: true})
		}
		if err != nil {
			return nil, 0, err
		}
		env := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(body)))
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+watchMethod, bytes.NewReader(append(env, body...)))
		if err != nil {
			return nil, 0, err
		}
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := hc.Do(req)
		if err != nil {
			return nil, 0, err
		}
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return nil, 0, fmt.Errorf("watch over Connect: HTTP %d: %s", resp.StatusCode, b)
		}
		r := bufio.NewReaderSize(resp.Body, 64<<10)
		var payload []byte
		read := func() (protowire.Number, int64, int, error) {
			var hdr [5]byte
			if _, err := io.ReadFull(r, hdr[:]); err != nil {
				resp.Body.Close()
				return 0, 0, 0, err
			}
			n := binary.BigEndian.Uint32(hdr[1:])
			payload = append(payload[:0], make([]byte, n)...)
			if _, err := io.ReadFull(r, payload); err != nil {
				resp.Body.Close()
				return 0, 0, 0, err
			}
			if hdr[0]&2 != 0 { // end of stream: {} or {"error":...}
				resp.Body.Close()
				return 0, 0, 0, fmt.Errorf("watch over Connect ended: %s", payload)
			}
			return parse(payload)
		}
		kind, rev, _, err := read()
		if err == nil {
			err = mustKind(kind, frameStarted)
		}
		if err != nil {
			resp.Body.Close()
			return nil, 0, fmt.Errorf("watch over Connect: first frame: %w", err)
		}
		return read, rev, nil
	}
}

// parseJSONFrame reads what the benchmark needs from a JSON frame without
// decoding it: protojson writes the oneof's name first and the fields in
// number order, so an event batch starts {"events":{"revision":"N" and
// every event has {"type":"EVENT_TYPE_.
func parseJSONFrame(b []byte) (kind protowire.Number, rev int64, events int, err error) {
	for _, k := range []struct {
		prefix string
		kind   protowire.Number
	}{{`{"events":`, frameEvents}, {`{"progress":`, frameProgress}, {`{"started":`, frameStarted}} {
		if bytes.HasPrefix(b, []byte(k.prefix)) {
			kind = k.kind
		}
	}
	if kind == 0 {
		return 0, 0, 0, fmt.Errorf("unexpected JSON frame %.60s", b)
	}
	const revKey = `"revision":"`
	if i := bytes.Index(b, []byte(revKey)); i >= 0 {
		digits := b[i+len(revKey):]
		if j := bytes.IndexByte(digits, '"'); j >= 0 {
			rev, err = strconv.ParseInt(string(digits[:j]), 10, 64)
		}
	}
	if kind == frameEvents {
		events = bytes.Count(b, []byte(`{"type":"EVENT_TYPE_`))
	}
	return kind, rev, events, err
}

// watchPhase opens cfg.streams unfiltered watches with open, runs the
// traffic drivers (paced so that they stay at most cfg.window revisions
// ahead of the slowest watcher) and counts the event frames delivered
// over d after a warm-up: the stream scenario's measurement, for any
// protocol.
func watchPhase(ctx context.Context, e *env, open watchOpener, cfg streamConfig, d time.Duration) (*watchStat, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var frames, events atomic.Uint64
	var failures atomic.Int64
	last := make([]atomic.Int64, cfg.streams)
	sig := make(chan struct{}, 1)
	readers := make([]frameReader, cfg.streams)
	for i := range readers {
		r, rev, err := open(wctx, i)
		if err != nil {
			return nil, fmt.Errorf("open watch: %w", err)
		}
		readers[i] = r
		last[i].Store(rev)
	}
	var wg sync.WaitGroup
	for i, r := range readers {
		wg.Go(func() {
			for {
				kind, rev, n, err := r()
				if err != nil {
					if wctx.Err() == nil || !(ended(wctx, err) || errors.Is(err, context.Canceled)) {
						failures.Add(1)
					}
					return
				}
				if kind == frameEvents {
					frames.Add(1)
					events.Add(uint64(n))
					last[i].Store(rev)
					select {
					case sig <- struct{}{}:
					default:
					}
				}
			}
		})
	}
	st, err := driveTraffic(ctx, e, last, sig, cfg, d, &frames, &events)
	cancel()
	wg.Wait()
	if st != nil {
		st.failures = int(failures.Load())
	}
	return st, err
}

// driveTraffic runs the traffic drivers (one per caller/callee pair) for
// cfg.warmup + d, never more than cfg.window revisions ahead of the
// slowest watcher (last: each one's last revision; sig: a watcher moved),
// and returns what the watchers received over d and the work this
// process did meanwhile (under a CPU profile, to cfg.watchProfile if set).
func driveTraffic(ctx context.Context, e *env, last []atomic.Int64, sig chan struct{}, cfg streamConfig, d time.Duration, frames, events *atomic.Uint64) (*watchStat, error) {
	dctx, stop := context.WithCancel(ctx)
	defer stop()
	// pace is the load generator's, in the server's process: its timer is
	// made only when the driver has to wait, not before every operation
	// (two allocations and a timer started and stopped per operation were
	// counted in the CPU and allocations per WatchCalls frame).
	pace := func() {
		var t *time.Timer
		defer func() {
			if t != nil {
				t.Stop()
			}
		}()
		for dctx.Err() == nil {
			slowest := last[0].Load()
			for i := range last {
				slowest = min(slowest, last[i].Load())
			}
			if e.store.Revision()-slowest <= cfg.window {
				return
			}
			if t == nil {
				t = time.NewTimer(time.Millisecond)
			} else {
				t.Reset(time.Millisecond)
			}
			select {
			case <-sig:
			case <-t.C:
			case <-dctx.Done():
			}
		}
	}
	var dwg sync.WaitGroup
	derr := make(chan error, trafficPairs)
	for i := range trafficPairs {
		dwg.Go(func() {
			for dctx.Err() == nil {
				if err := trafficCycle(ctx, e, i, pace); err != nil {
					derr <- err
					return
				}
			}
		})
	}
	time.Sleep(cfg.warmup)
	stopProfile, perr := benchkit.StartCPUProfile(cfg.watchProfile)
	if perr != nil {
		stop()
		dwg.Wait()
		return nil, perr
	}
	f0, ev0, rev0, w0, t0 := frames.Load(), events.Load(), e.store.Revision(), benchkit.ReadWork(), time.Now()
	time.Sleep(d)
	f1, ev1, rev1, el, wk := frames.Load(), events.Load(), e.store.Revision(), time.Since(t0), benchkit.ReadWork().Sub(w0)
	stopProfile()
	stop()
	dwg.Wait()
	close(derr)
	if err := <-derr; err != nil {
		return nil, err
	}
	return &watchStat{frames: f1 - f0, events: ev1 - ev0, commits: rev1 - rev0, elapsed: el, work: wk}, nil
}
