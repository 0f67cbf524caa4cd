package main

// End-to-end tests of the callcontrold binary: they build it, start it on
// free loopback ports and drive it from the outside with the pinned
// grpcurl and grpc-health-probe (tools/go.mod, built by `make tools` or on
// first use by `go tool`), plain HTTP for /metrics and signals for
// shutdown. Nothing here is skipped: a missing tool is a test failure that
// says how to get it.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/encoding/protojson"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/internal/freeport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	// shutdownTimeout is passed to every server the tests start; SIGTERM
	// must end the process well within it.
	shutdownTimeout = 5 * time.Second
	// readyTimeout bounds the wait for the health check to say SERVING.
	readyTimeout = 60 * time.Second
)

// repoRoot is the module root (this package is cmd/callcontrold).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "tools", "go.mod")); err != nil {
		t.Fatalf("tools/go.mod not found under %s: %v", root, err)
	}
	return root
}

func goBinary(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is not on PATH (needed to build the binary and run the pinned tools): %v", err)
	}
	return goBin
}

// cleanEnv is the test's environment without CALLCONTROLD_* variables, so
// that a developer's shell cannot change what the tests start.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPrefix) {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// buildBinary builds ./cmd/callcontrold into a fresh temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "callcontrold")
	cmd := exec.Command(goBinary(t), "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/callcontrold: %v\n%s", err, out)
	}
	return bin
}

// toolCmd prepares `go tool -modfile=<repo>/tools/go.mod <name> args...`,
// run from the repository root, in its own process group so that cleanup
// can end the tool and not only the go command in front of it.
func toolCmd(t *testing.T, ctx context.Context, name string, args ...string) *exec.Cmd {
	t.Helper()
	root := repoRoot(t)
	cmd := exec.CommandContext(ctx, goBinary(t), append([]string{"tool", "-modfile=" + filepath.Join(root, "tools", "go.mod"), name}, args...)...)
	cmd.Dir = root
	cmd.Env = cleanEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

var (
	toolsOnce sync.Map // tool name -> *toolCheck
)

type toolCheck struct {
	once sync.Once
	err  error
}

// requireTool fails the test, saying how to install it, when a pinned tool
// cannot be run.
func requireTool(t *testing.T, name string, versionArgs ...string) {
	t.Helper()
	v, _ := toolsOnce.LoadOrStore(name, &toolCheck{})
	tc := v.(*toolCheck)
	tc.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := toolCmd(t, ctx, name, versionArgs...).CombinedOutput()
		if err != nil {
			tc.err = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if tc.err != nil {
		t.Fatalf("%s is not available through tools/go.mod (run `make tools` from the repository root, with access to the Go module proxy): %v", name, tc.err)
	}
}

// result is a finished command.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

func runCmd(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		r.code = exitErr.ExitCode()
	default:
		t.Fatalf("%s: %v", cmd, err)
	}
	return r
}

// grpcurl runs the pinned grpcurl, plaintext, with a 60s safety timeout.
func grpcurl(t *testing.T, args ...string) result {
	t.Helper()
	requireTool(t, "grpcurl", "-version")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return runCmd(t, toolCmd(t, ctx, "grpcurl", append([]string{"-plaintext"}, args...)...))
}

// freeAddr returns a loopback address with a port that was free a
// moment ago, drawn by freeport (below the kernel's ephemeral range,
// where another process's outgoing connection cannot take it before the
// server binds it).
func freeAddr(t *testing.T) string {
	t.Helper()
	p, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(p)
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a running callcontrold.
type proc struct {
	addr, metricsAddr, httpAddr string
	cmd                         *exec.Cmd
	log                         *syncBuffer
	done                        chan struct{} // closed when the process has exited
	waitErr                     error         // valid once done is closed
}

func (s *proc) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// startServer starts bin on free loopback ports and waits until the health
// check says SERVING. The process is killed in t.Cleanup if still running.
func startServer(t *testing.T, bin string, extraArgs ...string) *proc {
	t.Helper()
	requireTool(t, "grpc-health-probe", "-version")
	for attempt := 1; ; attempt++ {
		s := launch(t, bin, extraArgs...)
		err := waitServing(t, s)
		if err == nil {
			return s
		}
		// Another process may have taken a port between freeAddr and the
		// listen: try again on new ports.
		if s.exited() && strings.Contains(s.log.String(), "address already in use") && attempt < 3 {
			t.Logf("port taken, retrying: %s", s.log)
			continue
		}
		t.Fatalf("callcontrold did not become ready: %v\nserver log:\n%s", err, s.log)
	}
}

func launch(t *testing.T, bin string, extraArgs ...string) *proc {
	t.Helper()
	s := &proc{addr: freeAddr(t), metricsAddr: freeAddr(t), httpAddr: freeAddr(t), log: &syncBuffer{}, done: make(chan struct{})}
	args := append([]string{
		"--addr=" + s.addr,
		"--metrics-addr=" + s.metricsAddr,
		"--http-addr=" + s.httpAddr,
		"--shutdown-timeout=" + shutdownTimeout.String(),
	}, extraArgs...)
	s.cmd = exec.Command(bin, args...)
	s.cmd.Env = cleanEnv()
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		if !s.exited() {
			_ = s.cmd.Process.Kill()
		}
		<-s.done
		if t.Failed() {
			t.Logf("server log (%s):\n%s", s.addr, s.log)
		}
	})
	return s
}

// waitServing polls grpc-health-probe until the server reports SERVING.
func waitServing(t *testing.T, s *proc) error {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	var last result
	for time.Now().Before(deadline) {
		if s.exited() {
			return fmt.Errorf("process exited before serving: %v", s.waitErr)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		last = runCmd(t, toolCmd(t, ctx, "grpc-health-probe", "-addr="+s.addr, "-connect-timeout=1s", "-rpc-timeout=1s"))
		cancel()
		if last.code == 0 && strings.Contains(last.stdout+last.stderr, "SERVING") {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no SERVING within %v; last probe: %s", readyTimeout, last)
}

// TestBinary drives a running callcontrold with grpcurl, HTTP and signals.
func TestBinary(t *testing.T) {
	bin := buildBinary(t)

	t.Run("help documents flags and environment", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "--help")
		cmd.Env = cleanEnv()
		r := runCmd(t, cmd)
		if r.code != 0 {
			t.Fatalf("--help: want exit 0\n%s", r)
		}
		help := r.stdout + r.stderr
		// Every flag the binary defines is in the help, with its env name
		// explained by the text (CALLCONTROLD_FLAG_NAME).
		newFlagSet(&config{}, io.Discard).VisitAll(func(f *flag.Flag) {
			if !regexp.MustCompile(`(?m)^\s+--?` + regexp.QuoteMeta(f.Name) + `\b`).MatchString(help) {
				t.Errorf("--help does not document flag --%s", f.Name)
			}
		})
		for _, want := range []string{"CALLCONTROLD_", "CALLCONTROLD_METRICS_ADDR", "environment variable", "flags win over the environment"} {
			if !strings.Contains(help, want) {
				t.Errorf("--help does not mention %q", want)
			}
		}
		if t.Failed() {
			t.Logf("help output:\n%s", help)
		}
	})

	for _, tc := range []struct{ name, grpcAddr, httpAddr string }{
		{"gRPC", "0.0.0.0:0", "127.0.0.1:0"},
		{"HTTP", "127.0.0.1:0", "0.0.0.0:0"},
	} {
		t.Run("refuses demo directory on a public "+tc.name+" address", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "--addr="+tc.grpcAddr, "--metrics-addr=127.0.0.1:0", "--http-addr="+tc.httpAddr)
			cmd.Env = cleanEnv()
			r := runCmd(t, cmd)
			if r.code == 0 {
				t.Fatalf("want a non-zero exit\n%s", r)
			}
			if ctx.Err() != nil {
				t.Fatalf("the binary did not exit by itself (it should refuse at once)\n%s", r)
			}
			if !strings.Contains(r.stderr, "--allow-demo-public") || !strings.Contains(r.stderr, "0.0.0.0:0") {
				t.Errorf("the refusal does not name the public address and --allow-demo-public\n%s", r)
			}
		})
	}

	t.Run("running server", func(t *testing.T) {
		s := startServer(t, bin)
		testRunningServer(t, s)
	})

	t.Run("SIGTERM drains and exits 0", func(t *testing.T) {
		s := startServer(t, bin)
		testSIGTERM(t, s)
	})
}

func testRunningServer(t *testing.T, s *proc) {
	const aliceAuth = "authorization: Bearer demo-alice"

	t.Run("list", func(t *testing.T) {
		r := grpcurl(t, s.addr, "list")
		if r.code != 0 {
			t.Fatalf("grpcurl list:\n%s", r)
		}
		got := map[string]bool{}
		for _, l := range strings.Fields(r.stdout) {
			got[l] = true
		}
		for _, svc := range []string{
			"callcontrol.v1.CallControlService",
			"callcontrol.v1.DeviceService",
			"callcontrol.v1.SimulatorService",
			"grpc.health.v1.Health",
			"grpc.reflection.v1.ServerReflection",
			"grpc.reflection.v1alpha.ServerReflection",
		} {
			if !got[svc] {
				t.Errorf("grpcurl list does not show %s\n%s", svc, r)
			}
		}
	})

	t.Run("describe Call has every property of the reference", func(t *testing.T) {
		r := grpcurl(t, s.addr, "describe", "callcontrol.v1.Call")
		if r.code != 0 {
			t.Fatalf("grpcurl describe:\n%s", r)
		}
		// Field declarations: "  [optional|repeated] <type> <name> = <n>;".
		fields := map[string]bool{}
		decl := regexp.MustCompile(`(?m)^\s*(?:optional\s+|repeated\s+)?[.\w]+\s+(\w+)\s*=\s*\d+`)
		for _, m := range decl.FindAllStringSubmatch(r.stdout, -1) {
			fields[m[1]] = true
		}
		for _, p := range []string{
			"label", "name", "number", "qname", "qnumber", "id", "uid", "cid",
			"stamp", "start", "inq", "outq", "qcall", "device", "owner", "owner_id",
			"company", "dtmf_string", "extension", "cause", "cause_txt", "party",
			"features", "state", "nr_state", "js_state", "js_info", "xfer_data",
		} {
			if !fields[p] {
				t.Errorf("callcontrol.v1.Call has no field %q", p)
			}
		}
		if t.Failed() {
			t.Logf("describe output:\n%s", r.stdout)
		}
	})

	t.Run("no token is Unauthenticated", func(t *testing.T) {
		r := grpcurl(t, "-d", "{}", s.addr, "callcontrol.v1.CallControlService/ListCalls")
		// grpcurl exits 64 + the status code (UNAUTHENTICATED = 16).
		if r.code != 64+16 || !strings.Contains(r.stderr, "Code: Unauthenticated") {
			t.Errorf("want Unauthenticated (exit 80)\n%s", r)
		}
		r = grpcurl(t, "-H", "authorization: Bearer not-a-token", "-d", "{}", s.addr, "callcontrol.v1.CallControlService/ListCalls")
		if r.code != 64+16 || !strings.Contains(r.stderr, "Code: Unauthenticated") {
			t.Errorf("a wrong token: want Unauthenticated (exit 80)\n%s", r)
		}
	})

	t.Run("watch sees dial and hangup", func(t *testing.T) {
		w := startWatch(t, s.addr, aliceAuth, 12*time.Second)
		w.waitFor(t, `"snapshotEnd"`, 30*time.Second)

		r := grpcurl(t, "-H", aliceAuth, "-d", `{"device":"SIP/201","number":"202","request_id":"e2e-dial-1"}`,
			s.addr, "callcontrol.v1.CallControlService/Dial")
		if r.code != 0 {
			t.Fatalf("Dial as alice:\n%s", r)
		}
		var dial callcontrolv1.DialResponse
		if err := protojson.Unmarshal([]byte(r.stdout), &dial); err != nil {
			t.Fatalf("Dial response is not a DialResponse: %v\n%s", err, r.stdout)
		}
		uid := dial.GetCall().GetUid()
		if uid == 0 || dial.GetCall().GetDevice() != "SIP/201" || dial.GetCall().GetOwner().GetLogin() != "alice" {
			t.Fatalf("Dial returned an unexpected call: %v", dial.GetCall())
		}
		if st := dial.GetCall().GetState(); st == callcontrolv1.State_STATE_UNSPECIFIED || st == callcontrolv1.State_STATE_DEAD {
			t.Errorf("Dial returned the call in state %v", st)
		}

		r = grpcurl(t, "-H", aliceAuth, "-d", fmt.Sprintf(`{"uid":%d}`, uid), s.addr, "callcontrol.v1.CallControlService/Hangup")
		if r.code != 0 {
			t.Fatalf("Hangup as alice:\n%s", r)
		}
		var hangup callcontrolv1.HangupResponse
		if err := protojson.Unmarshal([]byte(r.stdout), &hangup); err != nil {
			t.Fatalf("Hangup response is not a HangupResponse: %v\n%s", err, r.stdout)
		}
		if hangup.GetCall().GetUid() != uid || hangup.GetCall().GetState() != callcontrolv1.State_STATE_DEAD {
			t.Errorf("Hangup returned %v, want call %d in STATE_DEAD (as applied)", hangup.GetCall(), uid)
		}

		frames, res := w.wait(t)
		// The stream ends at -max-time: DeadlineExceeded (64 + 4).
		if res.code != 64+4 {
			t.Errorf("watch: want it to run until -max-time (exit 68)\n%s", res)
		}
		checkWatch(t, frames, uid)
		if t.Failed() {
			t.Logf("watch output:\n%s", res.stdout)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		tr := &http.Transport{DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		resp, err := c.Get("http://" + s.metricsAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /metrics: %s\n%s", resp.Status, body)
		}
		for _, want := range []string{"callcontrold_live_calls", "grpc_server_handled_total"} {
			if !regexp.MustCompile(`(?m)^` + want + `[{ ]`).Match(body) {
				t.Errorf("/metrics has no sample of %s", want)
			}
		}
		// The Dial above was counted.
		if !regexp.MustCompile(`(?m)^grpc_server_handled_total\{[^}]*grpc_code="OK",grpc_method="Dial"[^}]*\} [1-9]`).Match(body) {
			t.Errorf("/metrics does not count the successful Dial")
		}
	})

	t.Run("HTTP port: Connect JSON and the console", func(t *testing.T) {
		tr := &http.Transport{DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		req, _ := http.NewRequest(http.MethodPost, "http://"+s.httpAddr+"/callcontrol.v1.CallControlService/ListCalls", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer demo-alice")
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !json.Valid(body) {
			t.Errorf("ListCalls over Connect: %s\n%s", resp.Status, body)
		}
		resp, err = c.Get("http://" + s.httpAddr + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "<html") {
			t.Errorf("GET / (console): %s\n%s", resp.Status, body)
		}
	})
}

// watch is a grpcurl WatchCalls stream running in the background.
type watch struct {
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
	err    error
}

// startWatch opens WatchCalls with grpcurl, ending by itself at maxTime.
func startWatch(t *testing.T, addr, authHeader string, maxTime time.Duration) *watch {
	t.Helper()
	requireTool(t, "grpcurl", "-version")
	ctx, cancel := context.WithTimeout(context.Background(), maxTime+60*time.Second)
	w := &watch{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	w.cmd = toolCmd(t, ctx, "grpcurl", "-plaintext", "-H", authHeader,
		"-max-time", strconv.FormatFloat(maxTime.Seconds(), 'f', -1, 64),
		"-d", "{}", addr, "callcontrol.v1.CallControlService/WatchCalls")
	w.cmd.Stdout, w.cmd.Stderr = w.stdout, w.stderr
	if err := w.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start grpcurl WatchCalls: %v", err)
	}
	go func() {
		w.err = w.cmd.Wait()
		cancel()
		close(w.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-w.done
	})
	return w
}

// waitFor waits until the stream's output contains s.
func (w *watch) waitFor(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(w.stdout.String(), s) {
		select {
		case <-w.done:
			if strings.Contains(w.stdout.String(), s) {
				return
			}
			t.Fatalf("WatchCalls ended (%v) before printing %s\nstdout:\n%s\nstderr:\n%s", w.err, s, w.stdout, w.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("WatchCalls did not print %s within %v\nstdout:\n%s\nstderr:\n%s", s, timeout, w.stdout, w.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wait waits for the stream to end and decodes its frames.
func (w *watch) wait(t *testing.T) ([]*callcontrolv1.WatchCallsResponse, result) {
	t.Helper()
	<-w.done
	res := result{stdout: w.stdout.String(), stderr: w.stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case w.err == nil:
	case errors.As(w.err, &exitErr):
		res.code = exitErr.ExitCode()
	default:
		t.Fatalf("grpcurl WatchCalls: %v", w.err)
	}
	return decodeFrames(t, res.stdout), res
}

// decodeFrames decodes grpcurl's output: one JSON object per message.
func decodeFrames(t *testing.T, out string) []*callcontrolv1.WatchCallsResponse {
	t.Helper()
	var frames []*callcontrolv1.WatchCallsResponse
	dec := json.NewDecoder(bufio.NewReader(strings.NewReader(out)))
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err == io.EOF {
			return frames
		} else if err != nil {
			t.Fatalf("WatchCalls output is not a sequence of JSON messages: %v\n%s", err, out)
		}
		f := &callcontrolv1.WatchCallsResponse{}
		if err := protojson.Unmarshal(raw, f); err != nil {
			t.Fatalf("not a WatchCallsResponse: %v\n%s", err, raw)
		}
		frames = append(frames, f)
	}
}

// checkWatch asserts the frames of a watch opened before alice dialled
// SIP/201 → 202 (call uid) and hung up: started, snapshotEnd, then NEW for
// both legs and finally both legs DEAD, every event frame with a token.
func checkWatch(t *testing.T, frames []*callcontrolv1.WatchCallsResponse, uid int64) {
	t.Helper()
	if len(frames) < 3 {
		t.Fatalf("want at least started, snapshotEnd and events; got %d frames", len(frames))
	}
	if frames[0].GetStarted() == nil {
		t.Errorf("first frame is not started: %v", frames[0])
	}
	snapEnd := -1
	for i, f := range frames {
		if f.GetSnapshotEnd() != nil {
			snapEnd = i
			break
		}
		if f.GetEvents() != nil {
			t.Errorf("event frame %d before snapshotEnd", i)
		}
	}
	if snapEnd < 0 {
		t.Fatalf("no snapshotEnd frame")
	}
	if frames[snapEnd].GetSnapshotEnd().GetResumeToken() == "" {
		t.Errorf("snapshotEnd has no resume token")
	}
	for _, f := range frames[1:snapEnd] {
		for _, c := range f.GetSnapshot().GetCalls() {
			if c.GetUid() == uid {
				t.Errorf("the dialled call %d is in the snapshot: the watch was opened before the dial", uid)
			}
		}
	}

	var (
		callerNew, calleeNew, callerDead, calleeDead bool
		calleeUID                                    int64
		lastRev                                      = frames[snapEnd].GetSnapshotEnd().GetRevision()
	)
	for i, f := range frames[snapEnd+1:] {
		ev := f.GetEvents()
		if ev == nil {
			continue
		}
		if ev.GetResumeToken() == "" {
			t.Errorf("event frame %d has no resume token", i)
		}
		if ev.GetRevision() <= lastRev {
			t.Errorf("event frame revision %d not after %d", ev.GetRevision(), lastRev)
		}
		lastRev = ev.GetRevision()
		for _, e := range ev.GetEvents() {
			c := e.GetCall()
			switch {
			case e.GetType() == callcontrolv1.EventType_EVENT_TYPE_NEW && c.GetUid() == uid:
				callerNew = true
				if c.GetDevice() != "SIP/201" {
					t.Errorf("NEW caller leg on %s, want SIP/201", c.GetDevice())
				}
			case e.GetType() == callcontrolv1.EventType_EVENT_TYPE_NEW && c.GetDevice() == "SIP/202":
				calleeNew = true
				calleeUID = c.GetUid()
			case e.GetType() == callcontrolv1.EventType_EVENT_TYPE_UPDATE && c.GetState() == callcontrolv1.State_STATE_DEAD && c.GetUid() == uid:
				callerDead = true
			case e.GetType() == callcontrolv1.EventType_EVENT_TYPE_UPDATE && c.GetState() == callcontrolv1.State_STATE_DEAD && calleeUID != 0 && c.GetUid() == calleeUID:
				calleeDead = true
			}
		}
	}
	if !callerNew {
		t.Errorf("no NEW event for the caller leg %d on SIP/201", uid)
	}
	if !calleeNew {
		t.Errorf("no NEW event for the callee leg on SIP/202")
	}
	if !callerDead {
		t.Errorf("no UPDATE to STATE_DEAD for the caller leg %d", uid)
	}
	if !calleeDead {
		t.Errorf("no UPDATE to STATE_DEAD for the callee leg %d", calleeUID)
	}
}

func testSIGTERM(t *testing.T, s *proc) {
	// A watcher open at shutdown gets a progress frame, then UNAVAILABLE
	// with RetryInfo (the contract's "Ending").
	w := startWatch(t, s.addr, "authorization: Bearer demo-bob", 60*time.Second)
	w.waitFor(t, `"snapshotEnd"`, 30*time.Second)

	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.done:
	case <-time.After(shutdownTimeout + 5*time.Second):
		t.Fatalf("still running %v after SIGTERM (shutdown timeout %v)", time.Since(start), shutdownTimeout)
	}
	if took := time.Since(start); took > shutdownTimeout {
		t.Errorf("exit took %v, longer than the shutdown timeout %v", took, shutdownTimeout)
	}
	if s.waitErr != nil {
		t.Errorf("exit after SIGTERM: %v, want status 0", s.waitErr)
	}
	if !regexp.MustCompile(`(?m)msg=stopped\b`).MatchString(s.log.String()) {
		t.Errorf("the log does not say stopped:\n%s", s.log)
	}

	frames, res := w.wait(t)
	if res.code != 64+14 || !strings.Contains(res.stderr, "Code: Unavailable") || !strings.Contains(res.stderr, "RetryInfo") {
		t.Errorf("watch at shutdown: want UNAVAILABLE with RetryInfo (exit 78)\n%s", res)
	}
	if n := len(frames); n == 0 || frames[n-1].GetProgress() == nil || frames[n-1].GetProgress().GetResumeToken() == "" {
		t.Errorf("watch at shutdown: want a last progress frame with a resume token\n%s", res.stdout)
	}
}
