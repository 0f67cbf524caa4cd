package siptest

import (
	"bytes"
	"fmt"
	"os/exec"
	"sync"
	"testing"
	"time"

	"callcontrold/internal/freeport"
)

// process is a child process a test owns: its output is kept (the last
// outputLimit bytes) for the failure message, and it is killed when the
// test ends whatever happened.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done is closed
}

// outputLimit bounds what is kept of a process's output.
const outputLimit = 64 << 10

func startProcess(t testing.TB, name, dir string, args ...string) *process {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is not installed: run scripts/test-deps.sh (make test-deps)", name)
	}
	p := &process{name: name, out: &tailBuffer{limit: outputLimit}, done: make(chan struct{})}
	p.cmd = exec.Command(name, args...)
	p.cmd.Dir = dir
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s %q output (tail):\n%s", name, args, p.out.String())
		}
	})
	return p
}

// kill ends the process (SIGKILL) and waits for it.
func (p *process) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	// An error means it exited meanwhile: the wait returns at once.
	_ = p.cmd.Process.Kill()
	<-p.done
}

// wait waits up to limit for the process to exit and returns its exit
// error (nil for status 0).
func (p *process) wait(limit time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(limit):
		return fmt.Errorf("%s still running after %v", p.name, limit)
	}
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tailBuffer keeps the last limit bytes written to it.
type tailBuffer struct {
	mu    sync.Mutex
	limit int
	buf   bytes.Buffer
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if over := b.buf.Len() - b.limit; over > 0 {
		b.buf.Next(over)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// FreePort returns a loopback port that is free, at the time of asking,
// for UDP and TCP alike, and whose next port is free for TCP (baresip
// also listens for SIP over TLS there), for programs that cannot bind
// port 0 and report it. A port is never handed out twice in one test
// binary.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	return p
}
