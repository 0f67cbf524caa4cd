package benchkit

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Child is the parent's handle on a child process of a load tool: this
// binary re-executed (os.Executable) with an environment variable naming
// its role, so that what the parent reads of it (its CPU time and memory
// in /proc), or what it spares the parent (the watchers' client side),
// belongs to one side alone. The two speak a line protocol: the parent
// writes a command line on the child's stdin, the child answers with one
// line on its stdout, which carries nothing else. A child must exit when
// its stdin closes.
type Child struct {
	name     string
	cmd      *exec.Cmd
	cancel   context.CancelFunc
	stdin    io.WriteCloser
	out      *bufio.Reader
	stderr   *TailBuffer // nil: stderr passes through
	timedOut atomic.Bool
	waited   bool
	waitErr  error
}

// StartChild starts this binary with env ("NAME=value") added to its
// environment and args. The child is killed with ctx, with this process
// (DieWithParent), when a ReadLine times out, and by Close. name says
// which child the errors are about. The child's stderr goes to stderr, or
// if that is nil, its last 8 KiB go into the errors.
func StartChild(ctx context.Context, name, env string, args []string, stderr io.Writer) (*Child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c := &Child{name: name}
	ctx, c.cancel = context.WithCancel(ctx)
	c.cmd = exec.CommandContext(ctx, exe, args...)
	c.cmd.Env = append(os.Environ(), env)
	c.cmd.Stderr = stderr
	if stderr == nil {
		c.stderr = &TailBuffer{Max: 8 << 10}
		c.cmd.Stderr = c.stderr
	}
	c.cmd.WaitDelay = 5 * time.Second
	DieWithParent(c.cmd)
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		c.cancel()
		return nil, err
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		c.cancel()
		return nil, err
	}
	c.out = bufio.NewReader(stdout)
	if err := c.cmd.Start(); err != nil {
		c.cancel()
		return nil, c.Err(fmt.Errorf("start: %w", err))
	}
	return c, nil
}

// Pid is the child's process id.
func (c *Child) Pid() int { return c.cmd.Process.Pid }

// Send writes one command line to the child.
func (c *Child) Send(format string, a ...any) error {
	if _, err := fmt.Fprintf(c.stdin, format+"\n", a...); err != nil {
		return c.Err(err)
	}
	return nil
}

// ReadLine returns the child's next line, without its newline. If the
// child says nothing for timeout (0: no limit) it is killed and the read
// fails; if it exited, the error says how.
func (c *Child) ReadLine(timeout time.Duration) (string, error) {
	if timeout > 0 {
		t := time.AfterFunc(timeout, func() { c.timedOut.Store(true); c.cancel() })
		defer t.Stop()
	}
	line, err := c.out.ReadString('\n')
	if err != nil {
		// The child exited (or was killed): reap it, so that its stderr
		// is complete, and report its exit status.
		c.cancel()
		if werr := c.wait(); werr != nil {
			err = fmt.Errorf("%w (%w)", err, werr)
		}
		if c.timedOut.Load() {
			err = fmt.Errorf("no answer in %v: killed", timeout)
		}
		return "", c.Err(err)
	}
	return strings.TrimSuffix(line, "\n"), nil
}

// ReadJSON reads the child's next line, as ReadLine, and decodes it as
// JSON into v: the way the children report their results.
func (c *Child) ReadJSON(timeout time.Duration, v any) error {
	line, err := c.ReadLine(timeout)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(line), v); err != nil {
		return c.Err(fmt.Errorf("result %q: %w", line, err))
	}
	return nil
}

// Finish closes the child's stdin and waits for it to exit, killing it
// after timeout; the error says if it did not exit cleanly.
func (c *Child) Finish(timeout time.Duration) error {
	_ = c.stdin.Close()
	t := time.AfterFunc(timeout, func() { c.timedOut.Store(true); c.cancel() })
	defer t.Stop()
	if err := c.wait(); err != nil {
		if c.timedOut.Load() {
			err = fmt.Errorf("still running %v after its stdin closed: killed", timeout)
		}
		return c.Err(err)
	}
	return nil
}

// Close kills the child unless it has exited, and reaps it.
func (c *Child) Close() {
	c.cancel()
	_ = c.stdin.Close()
	_ = c.wait()
}

func (c *Child) wait() error {
	if !c.waited {
		c.waited = true
		c.waitErr = c.cmd.Wait()
		c.cancel()
	}
	return c.waitErr
}

// Err wraps err with the child's name and what it wrote on stderr.
func (c *Child) Err(err error) error {
	if c.stderr != nil {
		if s := strings.TrimSpace(c.stderr.String()); s != "" {
			return fmt.Errorf("%s: %w; its stderr:\n%s", c.name, err, s)
		}
	}
	return fmt.Errorf("%s: %w", c.name, err)
}

// TailBuffer keeps the last Max bytes written to it.
type TailBuffer struct {
	Max int
	mu  sync.Mutex
	b   []byte
}

func (t *TailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.Max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *TailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
