package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"callcontrold/internal/latency"
	"callcontrold/internal/rawframe"
)

// peerClient is how the client opens a watch on one peer and reads its
// events; everything else (connections, receiving, counting, latency,
// CPU and memory readings) is the same code for both. Both peers' clients
// send and receive messages as bytes (rawframe) and read only what they
// measure: decoding every message would measure the client, which shares
// the machine with the server.
type peerClient interface {
	// open opens a watch of device (>= 0) or of everything (-1) and returns
	// once it is established (with snapshot: after callcontrold's snapshot;
	// etcd's watch has none).
	open(ctx context.Context, cc *grpc.ClientConn, device int, snapshot bool) (grpc.ClientStream, error)
	// events calls fn with the commit time of each event in message b.
	events(b []byte, fn func(at int64)) error
}

func clientFor(name string) peerClient {
	if name == peerEtcd {
		return etcdClient{}
	}
	return ccClient{}
}

func dialN(addr string, n int) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, n)
	for i := range conns {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			closeAll(conns)
			return nil, err
		}
		conns[i] = cc
	}
	return conns, nil
}

func closeAll(conns []*grpc.ClientConn) {
	for _, cc := range conns {
		if cc != nil {
			_ = cc.Close()
		}
	}
}

// openAll opens n watches, watch i of device(i) on conns[i%len(conns)],
// a few at a time.
func openAll(ctx context.Context, p peerClient, conns []*grpc.ClientConn, n int, device func(int) int, snapshot bool) ([]grpc.ClientStream, error) {
	streams := make([]grpc.ClientStream, n)
	errs := make([]error, n)
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				streams[i], errs[i] = p.open(ctx, conns[i%len(conns)], device(i), snapshot)
				if errs[i] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	return streams, errors.Join(errs...)
}

type fanoutConfig struct {
	filtered, unfiltered, conns int
	rate                        float64
	warmup, duration            time.Duration
}

type fanoutResult struct {
	TargetRate    float64         `json:"target_transitions_per_second"`
	Rate          float64         `json:"transitions_per_second"`
	Commits       int             `json:"commits"`
	Expected      uint64          `json:"expected_deliveries"`
	Received      uint64          `json:"received_deliveries"`
	Missing       uint64          `json:"missing"`
	Failures      int             `json:"watcher_failures"`
	FirstError    string          `json:"first_error,omitempty"`
	Seconds       float64         `json:"seconds"`
	EventsPerSec  float64         `json:"delivered_events_per_second"`
	Latency       latency.Summary `json:"commit_to_receive"`
	CPUSeconds    float64         `json:"server_cpu_seconds"`
	CPUPerEventUS float64         `json:"server_cpu_us_per_delivered_event"`
	BytesPerEvent float64         `json:"received_bytes_per_event"`
}

// fanWatcher counts what one watch receives.
type fanWatcher struct {
	s        grpc.ClientStream
	received atomic.Uint64
	bytes    atomic.Uint64
	err      error
}

// runFanoutPhase opens cfg.filtered device watchers (watcher i on device
// i) and cfg.unfiltered ones over cfg.conns connections, has the child
// commit at cfg.rate for warmup+duration (change n on device
// n%filtered), and waits until every watcher has what it should (or 10 s
// more). Latency counts the events committed after the warm-up; the
// server's CPU time is read from /proc before the driver starts and once
// the last event arrived.
func runFanoutPhase(ctx context.Context, c *child, p peerClient, cfg fanoutConfig) (*fanoutResult, error) {
	conns, err := dialN(c.addr, cfg.conns)
	if err != nil {
		return nil, err
	}
	defer closeAll(conns)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	device := func(i int) int {
		if i < cfg.filtered {
			return i
		}
		return -1
	}
	watchdog := time.AfterFunc(2*time.Minute, cancel) // bounded, as in runIdlePhase
	streams, err := openAll(wctx, p, conns, cfg.filtered+cfg.unfiltered, device, false)
	if !watchdog.Stop() {
		err = errors.Join(err, errors.New("not open after 2 minutes"))
	}
	if err != nil {
		return nil, fmt.Errorf("open watches: %w", err)
	}
	total := int(cfg.rate * (cfg.warmup + cfg.duration).Seconds())
	ws := make([]*fanWatcher, len(streams))
	want := make([]uint64, len(streams))
	var lat latency.Hist
	var mark atomic.Int64
	mark.Store(1 << 62)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i, s := range streams {
		w := &fanWatcher{s: s}
		ws[i], want[i] = w, uint64(total)
		if i < cfg.filtered {
			want[i] = uint64((total - i + cfg.filtered - 1) / cfg.filtered)
		}
		wg.Go(func() { receive(wctx, p, w, &lat, &mark) })
	}

	cpu0, err := c.cpu()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	mark.Store(start.Add(cfg.warmup).UnixNano())
	if _, err := c.drive(cfg.rate, total, cfg.filtered); err != nil {
		return nil, err
	}
	driven := time.Since(start)
	deadline := time.Now().Add(10 * time.Second)
	for !caughtUp(ws, want) && time.Now().Before(deadline) && wctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	cpu1, err := c.cpu()
	if err != nil {
		return nil, err
	}
	cancel()
	wg.Wait()

	res := &fanoutResult{TargetRate: cfg.rate, Rate: float64(total) / driven.Seconds(), Commits: total, Seconds: elapsed.Seconds(),
		Latency: lat.Summary(), CPUSeconds: (cpu1 - cpu0).Seconds()}
	var bytes uint64
	for i, w := range ws {
		got := w.received.Load()
		res.Expected += want[i]
		res.Received += got
		bytes += w.bytes.Load()
		if got < want[i] {
			res.Missing += want[i] - got
		}
		if w.err != nil {
			res.Failures++
			if res.FirstError == "" {
				res.FirstError = w.err.Error()
			}
		}
	}
	if res.Received > 0 {
		res.EventsPerSec = float64(res.Received) / elapsed.Seconds()
		res.CPUPerEventUS = res.CPUSeconds * 1e6 / float64(res.Received)
		res.BytesPerEvent = float64(bytes) / float64(res.Received)
	}
	return res, nil
}

// receive counts w's events until its stream ends; events committed from
// mark on (UnixNano) go into lat.
func receive(ctx context.Context, p peerClient, w *fanWatcher, lat *latency.Hist, mark *atomic.Int64) {
	var m rawframe.Msg
	for {
		err := w.s.RecvMsg(&m)
		now := time.Now().UnixNano()
		if err == nil {
			var n uint64
			err = p.events(m.B, func(at int64) {
				n++
				if at >= mark.Load() {
					lat.Record(time.Duration(now - at))
				}
			})
			if n > 0 {
				w.bytes.Add(uint64(len(m.B)))
				w.received.Add(n)
			}
		}
		if err != nil {
			if ctx.Err() == nil || status.Code(err) != codes.Canceled {
				w.err = err
			}
			return
		}
	}
}

func caughtUp(ws []*fanWatcher, want []uint64) bool {
	for i, w := range ws {
		if w.received.Load() < want[i] {
			return false
		}
	}
	return true
}

type idleConfig struct {
	streams, conns int
	settle         time.Duration
}

type idleResult struct {
	Streams        int     `json:"streams"`
	Conns          int     `json:"connections"`
	Before         memory  `json:"before"`
	After          memory  `json:"after"`
	RSSPerStream   float64 `json:"rss_bytes_per_stream"`
	HeapPerStream  float64 `json:"heap_bytes_per_stream"`
	GoroutinesEach float64 `json:"goroutines_per_stream"`
	OpenSeconds    float64 `json:"open_seconds"`
}

// runIdlePhase opens cfg.streams device watches (stream i on device
// i%fanoutDevices, after its snapshot where the peer has one) over
// cfg.conns connections, lets them settle, and reports the server's
// memory growth per stream.
func runIdlePhase(ctx context.Context, c *child, p peerClient, cfg idleConfig) (*idleResult, error) {
	res := &idleResult{Streams: cfg.streams, Conns: cfg.conns}
	conns, err := dialN(c.addr, cfg.conns)
	if err != nil {
		return nil, err
	}
	defer closeAll(conns)
	// Connect first: the connections' own cost is not the streams'.
	for _, cc := range conns {
		cc.Connect()
	}
	// One watch per connection, ended again, so that each connection is
	// up and has served a stream before the first reading (ended: the
	// server allows server.DefaultMaxConcurrentStreams, 1,000, per
	// connection, and 10,000 streams on 10 connections use them all).
	warm, endWarm := context.WithCancel(ctx)
	_, err = openAll(warm, p, conns, len(conns), func(int) int { return 0 }, true)
	endWarm()
	if err != nil {
		return nil, fmt.Errorf("warm-up watch: %w", err)
	}
	if res.Before, err = c.memory(); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Bounded: opening gives up after 2 minutes (a stream that cannot
	// open, e.g. over the server's per-connection limit, would wait).
	watchdog := time.AfterFunc(2*time.Minute, cancel)
	t := time.Now()
	_, err = openAll(wctx, p, conns, cfg.streams, func(i int) int { return i % fanoutDevices }, true)
	if !watchdog.Stop() {
		err = errors.Join(err, errors.New("not open after 2 minutes"))
	}
	if err != nil {
		return nil, fmt.Errorf("open idle watches: %w", err)
	}
	res.OpenSeconds = time.Since(t).Seconds()
	select {
	case <-time.After(cfg.settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if res.After, err = c.memory(); err != nil {
		return nil, err
	}
	n := float64(cfg.streams)
	res.RSSPerStream = (float64(res.After.RSS) - float64(res.Before.RSS)) / n
	res.HeapPerStream = (float64(res.After.Heap) - float64(res.Before.Heap)) / n
	res.GoroutinesEach = float64(res.After.Goroutines-res.Before.Goroutines) / n
	return res, nil
}
