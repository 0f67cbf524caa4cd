package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"callcontrold/auth"
	"callcontrold/callstore"
	"callcontrold/directory"
	"callcontrold/pbx/sim"
	"callcontrold/server"
)

// startServer runs the real server (demo directory, simulated switch) on
// addr ("127.0.0.1:0" for any port) until the returned stop is called or
// the test ends; it returns the address it listens on.
func startServer(t *testing.T, addr string) (string, func()) {
	t.Helper()
	// A short, fixed retry delay: the restart test waits for it.
	return startServerWith(t, addr, server.Config{DrainRetryAfter: 50 * time.Millisecond, DrainRetryJitter: -1})
}

// startServerWith is startServer with the server's configuration (TLS).
func startServerWith(t *testing.T, addr string, cfg server.Config) (string, func()) {
	t.Helper()
	dir := directory.Demo()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	store := callstore.New(callstore.Options{})
	sw := sim.New(dir, store, sim.Options{Logger: log})
	authn, err := auth.NewAuthenticator(context.Background(), auth.Config{Tokens: dir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, server.Deps{
		Store: store, Directory: dir, Switch: sw, Devices: sw, Simulator: sw,
		Authenticate: authn.Authenticate, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	var lis net.Listener
	// Rebinding the port a stopped server used may take a moment.
	for deadline := time.Now().Add(5 * time.Second); ; {
		if lis, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
			<-done
			sw.Close()
			store.Close()
			_ = authn.Close()
		})
	}
	t.Cleanup(stop)
	return lis.Addr().String(), stop
}

// syncBuffer is a bytes.Buffer safe for a writer and a polling reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls until buf matches re, or fails the test.
func waitFor(t *testing.T, buf *syncBuffer, re string) {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(10 * time.Second)
	for !rx.MatchString(buf.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("output never matched %q:\n%s", re, buf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cli runs one callctl command against addr and returns its stdout; it
// fails the test unless the exit status is want.
func cli(t *testing.T, addr string, want int, args ...string) (string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	full := append([]string{"--addr", addr, "--timeout", "5s"}, args...)
	if code := runContext(context.Background(), full, env(), &out, &errOut); code != want {
		t.Fatalf("callctl %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, out.String(), errOut.String())
	}
	return out.String(), errOut.String()
}

// startWatch runs "callctl watch" in the background; the returned stop
// cancels it (Ctrl-C) and checks that it exited cleanly.
func startWatch(t *testing.T, addr string, args ...string) (*syncBuffer, *syncBuffer, func()) {
	t.Helper()
	var out, errOut syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	full := append([]string{"--addr", addr}, args...)
	go func() { code <- runContext(ctx, full, env(), &out, &errOut) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if c := <-code; c != 0 {
				t.Errorf("watch exited %d, want 0 on cancel; stderr: %s", c, errOut.String())
			}
		})
	}
	t.Cleanup(stop)
	return &out, &errOut, stop
}

var uidRE = regexp.MustCompile(`^uid=(\d+) `)

func uidOf(t *testing.T, line string) string {
	t.Helper()
	m := uidRE.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no uid in %q", line)
	}
	return m[1]
}

func TestEndToEnd(t *testing.T) {
	addr, _ := startServer(t, "127.0.0.1:0")

	wout, _, stopWatch := startWatch(t, addr, "--login", "admin", "watch", "--company", "default")
	waitFor(t, wout, `snapshot at rev \d+: no calls`)

	out, _ := cli(t, addr, 0, "--login", "alice", "devices")
	if !regexp.MustCompile(`(?m)^SIP/201\s+default\s+alice\s+201\s`).MatchString(out) {
		t.Errorf("devices table lacks alice's SIP/201:\n%s", out)
	}

	// alice calls reception (SIP/202, owned by admin), admin answers.
	out, errOut := cli(t, addr, 0, "--login", "alice", "-v", "dial", "SIP/201", "202")
	if !strings.HasPrefix(out, "uid=") || !strings.Contains(out, "SIP/201") || !strings.Contains(errOut, "request_id: callctl-") {
		t.Errorf("dial printed %q, stderr %q", out, errOut)
	}
	aliceUID := uidOf(t, out)

	out, _ = cli(t, addr, 0, "--login", "admin", "list", "--device", "SIP/202")
	m := regexp.MustCompile(`(?m)^(\d+)\s+SIP/202\s+ring\s+ringing\s+callee\s+Alice Smith <201>`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("list lacks the ringing leg on SIP/202:\n%s", out)
	}
	receptionUID := m[1]

	out, _ = cli(t, addr, 0, "--login", "admin", "talk", receptionUID)
	if !strings.Contains(out, "SIP/202 up (callee)") {
		t.Errorf("talk printed %q, want the call up", out)
	}

	// Hold twice with the same request id: the retry returns the first
	// result; hold again with a new id: already applied.
	out, _ = cli(t, addr, 0, "--login", "alice", "hold", aliceUID, "--request-id", "e2e-hold")
	if !strings.Contains(out, "SIP/201 hold (caller)") || strings.Contains(out, "already") {
		t.Errorf("hold printed %q", out)
	}
	again, _ := cli(t, addr, 0, "--login", "alice", "hold", aliceUID, "--request-id", "e2e-hold")
	if again != out {
		t.Errorf("hold retried with the same request id printed %q, want the first result %q", again, out)
	}
	out, _ = cli(t, addr, 0, "--login", "alice", "hold", aliceUID)
	if !strings.HasSuffix(strings.TrimSpace(out), "(already applied)") {
		t.Errorf("second hold printed %q, want (already applied)", out)
	}

	out, _ = cli(t, addr, 0, "--login", "alice", "--json", "talk", aliceUID)
	if !strings.Contains(out, `"state": "STATE_UP"`) {
		t.Errorf("talk --json printed %s", out)
	}

	// Errors: a call alice may see but not control; bad tone.
	_, errOut = cli(t, addr, 1, "--login", "alice", "hold", receptionUID)
	if !strings.Contains(errOut, "error: PERMISSION_DENIED") {
		t.Errorf("hold on admin's call: stderr %q", errOut)
	}
	_, errOut = cli(t, addr, 1, "--login", "alice", "dtmf", aliceUID, "x")
	if !strings.Contains(errOut, "error: INVALID_ARGUMENT") || !strings.Contains(errOut, "invalid field tone") {
		t.Errorf("dtmf x: stderr %q", errOut)
	}
	_, errOut = cli(t, addr, 1, "list")
	if !strings.Contains(errOut, "UNAUTHENTICATED") || !strings.Contains(errOut, "hint: pass --token") {
		t.Errorf("list without token: stderr %q", errOut)
	}

	out, _ = cli(t, addr, 0, "--login", "alice", "hangup", aliceUID)
	if !strings.Contains(out, "SIP/201 dead (caller)") || !strings.Contains(out, "cause=") {
		t.Errorf("hangup printed %q", out)
	}

	waitFor(t, wout, `rev \d+  NEW       ENTERED  uid=`+aliceUID+` SIP/201 `)
	waitFor(t, wout, `uid=`+receptionUID+` SIP/202 ring→up \(callee\) Alice Smith <201>`)
	waitFor(t, wout, `uid=`+aliceUID+` SIP/201 up→hold \(caller\)`)
	waitFor(t, wout, `uid=`+aliceUID+` SIP/201 \w+→dead \(caller\) .* cause=`)
	stopWatch()

	out, _ = cli(t, addr, 0, "--login", "admin", "list")
	if strings.Count(out, "\n") != 1 {
		t.Errorf("list after hangup: want the header only, got\n%s", out)
	}
}

// TestWatchSurvivesRestart: a draining server ends the watch with
// UNAVAILABLE; the watch reconnects, finds a new server process whose
// epoch refuses the old token, says so and re-snapshots.
func TestWatchSurvivesRestart(t *testing.T) {
	addr, stop := startServer(t, "127.0.0.1:0")
	wout, werr, stopWatch := startWatch(t, addr, "--login", "alice", "watch", "--device", "SIP/201")
	waitFor(t, wout, `snapshot at rev \d+: no calls`)
	cli(t, addr, 0, "--login", "alice", "dial", "SIP/201", "202")
	waitFor(t, wout, `NEW       ENTERED  uid=1 SIP/201`)

	stop()
	waitFor(t, werr, `stream unavailable \(server is shutting down.*reconnecting in .*, resuming after rev \d+`)
	startServer(t, addr)
	waitFor(t, werr, `another server process.*re-snapshotting`)
	waitFor(t, wout, `(?s)snapshot at rev 0: no calls\n`)

	cli(t, addr, 0, "--login", "alice", "dial", "SIP/201", "203")
	waitFor(t, wout, `(?s)snapshot at rev 0: no calls\n.*NEW       ENTERED  uid=1 SIP/201 dial`)
	stopWatch()
}

// TestControlPrintsBothCalls: a command whose response carries a second
// call (xfer's transferred call) prints it on its own labelled line.
func TestControlPrintsBothCalls(t *testing.T) {
	addr, _ := startServer(t, "127.0.0.1:0")
	out, _ := cli(t, addr, 0, "--login", "alice", "dial", "SIP/201", "202")
	aliceUID := uidOf(t, out)
	out, _ = cli(t, addr, 0, "--login", "admin", "list", "--device", "SIP/202")
	m := regexp.MustCompile(`(?m)^(\d+)\s+SIP/202\s+ring`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("list lacks the ringing leg on SIP/202:\n%s", out)
	}
	cli(t, addr, 0, "--login", "admin", "talk", m[1])

	out, _ = cli(t, addr, 0, "--login", "alice", "xfer", aliceUID, "203")
	re := regexp.MustCompile(`^uid=` + aliceUID + ` SIP/201 dead \(caller\) .*\ntransferred: uid=` + m[1] + ` SIP/202 ring/up \(callee\) .*<203>`)
	if !re.MatchString(out) {
		t.Errorf("xfer printed\n%s\nwant alice's leg, then the transferred leg labelled", out)
	}
}
