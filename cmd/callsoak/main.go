// Command callsoak is `make soak`: it runs the real callcontrold binary
// with demo traffic (--demo-traffic) on loopback for a while (10 minutes by
// default) with 1,000 WatchCalls streams, some of them slow readers, and
// samples the server over time: resident set (/proc/<pid>/status), heap
// and goroutines (its /metrics), store revision, and how far the watchers
// lag behind. It prints one row per sample, then a verdict on whether the
// memory stayed flat (see judge). Loopback only; it stops by itself.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"callcontrold/directory"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/internal/benchkit"
	"callcontrold/internal/rawframe"
)

type config struct {
	server      string
	duration    time.Duration
	interval    time.Duration
	traffic     float64
	filtered    int
	unfiltered  int
	slow        int
	slowDelay   time.Duration
	conns       int
	history     int
	strict      bool
	smoke       bool
	growthLimit float64
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("callsoak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	fs.StringVar(&c.server, "server", "bin/callcontrold", "callcontrold `binary` to run (make soak builds it)")
	fs.DurationVar(&c.duration, "duration", 10*time.Minute, "how long to run")
	fs.DurationVar(&c.interval, "interval", 30*time.Second, "time between samples")
	fs.Float64Var(&c.traffic, "demo-traffic", 20, "calls per second of demo traffic (the server's --demo-traffic)")
	fs.IntVar(&c.filtered, "filtered", 800, "watchers filtered to one device (round-robin over the demo directory's devices)")
	fs.IntVar(&c.unfiltered, "unfiltered", 150, "unfiltered watchers reading as fast as they can")
	fs.IntVar(&c.slow, "slow", 50, "unfiltered watchers that pause after every frame")
	fs.DurationVar(&c.slowDelay, "slow-delay", time.Second, "a slow watcher's pause after each frame (1 s: 1 frame/s against about 11 revisions/s, so slow watchers fill their queue in the store within about 2 minutes and turn lagging)")
	fs.IntVar(&c.conns, "conns", 10, "client connections the watchers share")
	fs.IntVar(&c.history, "history-size", 1000, "the server's --history-size: small enough that the history ring is full before the warm-up ends (at the default 100,000 it fills for hours at demo rates, which would look like growth)")
	fs.Float64Var(&c.growthLimit, "growth-limit", 0.10, "flat: the last third's mean RSS and live heap at most this fraction above the first third's (after the warm-up: the first 30% of the samples)")
	fs.BoolVar(&c.strict, "strict", false, "exit with status 3 if memory did not stay flat")
	fs.BoolVar(&c.smoke, "smoke", false, "a few seconds, 100 watchers: checks the soak runs (judges nothing)")
	if err := benchkit.ParseFlags(fs, args); err != nil {
		return nil, err
	}
	if c.smoke {
		c.duration, c.interval = 4*time.Second, 500*time.Millisecond
		c.filtered, c.unfiltered, c.slow, c.conns = min(c.filtered, 80), min(c.unfiltered, 15), min(c.slow, 5), min(c.conns, 2)
	}
	switch {
	case c.duration <= 0 || c.interval <= 0 || c.interval > c.duration:
		return nil, errors.New("--duration and --interval must be positive, --interval at most --duration")
	case c.filtered < 0 || c.unfiltered < 1 || c.slow < 0 || c.conns < 1 || c.slowDelay < 0:
		return nil, errors.New("--filtered, --slow must be >= 0, --unfiltered and --conns >= 1, --slow-delay >= 0")
	case c.traffic <= 0 || c.history < 1:
		return nil, errors.New("--demo-traffic and --history-size must be positive")
	}
	return c, nil
}

func main() {
	c, err := parseFlags(os.Args[1:], os.Stderr)
	benchkit.ExitOnFlagError("callsoak", err)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	flat, err := run(ctx, c, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "callsoak:", err)
		os.Exit(1)
	}
	if c.strict && !flat {
		os.Exit(3)
	}
}

// run starts the server, the watchers and the sampler, and prints the
// samples and the verdict to out.
func run(ctx context.Context, c *config, out io.Writer) (flat bool, err error) {
	srv, err := startServer(ctx, c)
	if err != nil {
		return false, err
	}
	defer srv.stop()
	ws, err := startWatchers(ctx, srv.addr, c)
	if err != nil {
		return false, err
	}
	defer ws.stop()

	fmt.Fprintf(out, "callsoak: %s --demo-traffic %g --history-size %d, %d watchers (%d device-filtered, %d unfiltered, %d slow: %v after each frame) on %d connections, %v, a sample every %v\n",
		c.server, c.traffic, c.history, c.filtered+c.unfiltered+c.slow, c.filtered, c.unfiltered, c.slow, c.slowDelay, c.conns, c.duration, c.interval)
	if c.smoke {
		fmt.Fprintln(out, "SMOKE RUN: a few seconds; the figures mean nothing")
	}
	var samples []sample
	start := time.Now()
	tick := time.NewTicker(c.interval)
	defer tick.Stop()
	for range int(c.duration / c.interval) {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-srv.exited:
			return false, fmt.Errorf("the server exited: %v", srv.err)
		case <-tick.C:
		}
		s, err := takeSample(ctx, srv, ws, time.Since(start))
		if err != nil {
			return false, err
		}
		samples = append(samples, s)
		fmt.Fprintln(out, s.line())
	}
	printTable(out, samples)
	v := judge(samples, c.growthLimit)
	if c.smoke {
		v = verdict{flat: true, text: "memory: not judged (smoke run)"}
	}
	fmt.Fprintln(out, v.text)
	if n := ws.failures.Load(); n > 0 {
		fmt.Fprintf(out, "watchers: %d stream errors (each reopened with a fresh snapshot), first: %v\n", n, ws.firstErr())
	}
	return v.flat, nil
}

// server is the callcontrold child process.
type server struct {
	cmd         *exec.Cmd
	addr        string
	metricsAddr string
	exited      chan struct{}
	err         error
}

// startServer runs the callcontrold binary on loopback ephemeral ports
// with demo traffic and no per-login watch limit, and reads the addresses
// it logs ("serving", "metrics") from its JSON log.
func startServer(ctx context.Context, c *config) (*server, error) {
	cmd := exec.CommandContext(ctx, c.server,
		"--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
		"--demo-traffic", strconv.FormatFloat(c.traffic, 'g', -1, 64),
		"--history-size", strconv.Itoa(c.history),
		"--max-watches", "0", "--log-format", "json", "--log-level", "info")
	benchkit.DieWithParent(cmd)
	cmd.Env = os.Environ()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (make build first): %w", c.server, err)
	}
	s := &server{cmd: cmd, exited: make(chan struct{})}
	addrs := make(chan [2]string, 1)
	go s.readLog(stderr, addrs)
	select {
	case a := <-addrs:
		s.addr, s.metricsAddr = a[0], a[1]
		return s, nil
	case <-s.exited:
		return nil, fmt.Errorf("callcontrold exited: %v", s.err)
	case <-time.After(30 * time.Second):
		s.stop()
		return nil, errors.New("callcontrold did not log its addresses in 30s")
	}
}

// readLog drains the server's log (it must not block on a full pipe),
// sends the addresses once both are logged, and reaps the process.
func (s *server) readLog(r io.Reader, addrs chan<- [2]string) {
	var grpcAddr, metricsAddr string
	sent := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var last []string
	for sc.Scan() {
		var l struct{ Msg, Addr string }
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			switch l.Msg {
			case "serving":
				grpcAddr = l.Addr
			case "metrics":
				metricsAddr = l.Addr
			}
		}
		if !sent && grpcAddr != "" && metricsAddr != "" {
			addrs <- [2]string{grpcAddr, metricsAddr}
			sent = true
		}
		if len(last) == 5 {
			last = last[1:]
		}
		last = append(last, sc.Text())
	}
	s.err = s.cmd.Wait()
	if s.err != nil {
		s.err = fmt.Errorf("%w; last log lines:\n%s", s.err, strings.Join(last, "\n"))
	}
	close(s.exited)
}

// stop asks the server to shut down (SIGTERM), and kills it after 20 s.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// metrics scrapes the server's /metrics for the named unlabelled series.
func (s *server) metrics(ctx context.Context, names ...string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.metricsAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	got := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if ok && want[name] {
			if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
				got[name] = v
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, n := range names {
		if _, ok := got[n]; !ok {
			return nil, fmt.Errorf("/metrics has no %s", n)
		}
	}
	return got, nil
}

// watcher is one WatchCalls stream of the soak.
type watcher struct {
	device string        // "" for unfiltered
	delay  time.Duration // pause after each frame (slow watchers)
	rev    atomic.Int64  // last revision seen (started, events, progress)
	frames atomic.Uint64
}

type watchers struct {
	all      []*watcher
	conns    []*grpc.ClientConn
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	failures atomic.Int64
	errMu    sync.Mutex
	first    error
}

func (ws *watchers) firstErr() error {
	ws.errMu.Lock()
	defer ws.errMu.Unlock()
	return ws.first
}

// startWatchers opens the watchers as the demo admin, round-robin over
// c.conns connections, each with its snapshot. A stream that ends with an
// error is reopened (a fresh snapshot), as a client would.
func startWatchers(ctx context.Context, addr string, c *config) (*watchers, error) {
	ws := &watchers{}
	for range c.conns {
		// Fixed 64 KiB flow-control windows (grpc-go's default start,
		// without its growth from bandwidth estimates): a slow reader's
		// backlog then stays in the server, in the store's bounded queue
		// and history, which is what the soak exercises, instead of piling
		// up by the megabyte in this client.
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
		if err != nil {
			ws.stop()
			return nil, err
		}
		ws.conns = append(ws.conns, cc)
	}
	var devices []string
	for _, d := range directory.Demo().Devices() {
		devices = append(devices, d.Name)
	}
	for i := range c.filtered {
		ws.all = append(ws.all, &watcher{device: devices[i%len(devices)]})
	}
	for range c.unfiltered {
		ws.all = append(ws.all, &watcher{})
	}
	for range c.slow {
		ws.all = append(ws.all, &watcher{delay: c.slowDelay})
	}
	wctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer demo-admin"))
	ws.cancel = cancel
	for i, w := range ws.all {
		cc := ws.conns[i%len(ws.conns)]
		ws.wg.Go(func() { ws.follow(wctx, cc, w) })
	}
	return ws, nil
}

// follow keeps w's stream open until ctx ends.
func (ws *watchers) follow(ctx context.Context, cc *grpc.ClientConn, w *watcher) {
	for ctx.Err() == nil {
		err := w.watch(ctx, cc)
		if ctx.Err() != nil {
			return
		}
		ws.failures.Add(1)
		ws.errMu.Lock()
		if ws.first == nil {
			ws.first = err
		}
		ws.errMu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (w *watcher) watch(ctx context.Context, cc *grpc.ClientConn) error {
	req := &callcontrolv1.WatchCallsRequest{}
	if w.device != "" {
		req.Filter = &callcontrolv1.CallFilter{Devices: []string{w.device}}
	}
	s, err := rawframe.ServerStream(ctx, cc, callcontrolv1.CallControlService_WatchCalls_FullMethodName, req)
	if err != nil {
		return err
	}
	var m rawframe.Msg
	for {
		if err := s.RecvMsg(&m); err != nil {
			return err
		}
		w.frames.Add(1)
		if rev, ok := frameRevision(m.B); ok {
			w.rev.Store(rev)
		}
		if w.delay > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(w.delay):
			}
		}
	}
}

func (ws *watchers) stop() {
	if ws.cancel != nil {
		ws.cancel()
	}
	ws.wg.Wait()
	for _, cc := range ws.conns {
		_ = cc.Close()
	}
}

// lags returns the largest lag (revision − last revision seen) of the
// fast unfiltered watchers and of the slow ones. Device-filtered watchers
// only see their device's revisions (and a progress frame now and then),
// so their last revision says little: they are not counted.
func (ws *watchers) lags(revision int64) (fast, slow int64) {
	for _, w := range ws.all {
		if w.device != "" {
			continue
		}
		lag := revision - w.rev.Load()
		if w.delay > 0 {
			slow = max(slow, lag)
		} else {
			fast = max(fast, lag)
		}
	}
	return fast, slow
}

func (ws *watchers) frames() uint64 {
	var n uint64
	for _, w := range ws.all {
		n += w.frames.Load()
	}
	return n
}
