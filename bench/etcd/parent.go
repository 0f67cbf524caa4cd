package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"callcontrold/internal/benchkit"
)

// child is the parent's handle on a server's child process.
type child struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Scanner
	addr   string
	waited bool
}

// startChild starts the named server in a child process and returns once
// it serves. The child dies with ctx, with the parent (Pdeathsig), or when
// its stdin closes.
func startChild(ctx context.Context, name string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), childEnv+"="+name)
	cmd.Stderr = os.Stderr
	benchkit.DieWithParent(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{name: name, cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	f, err := c.reply("ready", 2)
	if err != nil {
		c.close()
		return nil, err
	}
	c.addr = f[1]
	return c, nil
}

// reply reads the child's next line, which must start with word and have
// n fields.
func (c *child) reply(word string, n int) ([]string, error) {
	if !c.out.Scan() {
		return nil, fmt.Errorf("%s: the server's process ended (%v)", c.name, errors.Join(c.out.Err(), c.wait()))
	}
	f := strings.Fields(c.out.Text())
	if len(f) != n || f[0] != word {
		return nil, fmt.Errorf("%s: %s", c.name, c.out.Text())
	}
	return f, nil
}

func (c *child) command(line string) error {
	_, err := fmt.Fprintln(c.stdin, line)
	return err
}

// drive has the child commit count changes at rate/s, change n on device
// n%devs; it returns how long that took.
func (c *child) drive(rate float64, count, devs int) (time.Duration, error) {
	if err := c.command(fmt.Sprintf("drive %g %d %d", rate, count, devs)); err != nil {
		return 0, err
	}
	f, err := c.reply("driven", 3)
	if err != nil {
		return 0, err
	}
	ns, err := strconv.ParseInt(f[2], 10, 64)
	return time.Duration(ns), err
}

// memory is a server process's memory: its heap (after two collections,
// as the child reports it) and resident set (/proc).
type memory struct {
	Heap       uint64 `json:"heap_bytes"`
	RSS        uint64 `json:"rss_bytes"`
	Goroutines int    `json:"goroutines"`
}

func (c *child) memory() (memory, error) {
	if err := c.command("mem"); err != nil {
		return memory{}, err
	}
	f, err := c.reply("mem", 3)
	if err != nil {
		return memory{}, err
	}
	var m memory
	var err1, err2, err3 error
	m.Heap, err1 = strconv.ParseUint(f[1], 10, 64)
	m.Goroutines, err2 = strconv.Atoi(f[2])
	m.RSS, err3 = benchkit.ProcRSS(c.cmd.Process.Pid)
	return m, errors.Join(err1, err2, err3)
}

// cpu returns the CPU time the child has used so far (user + system).
func (c *child) cpu() (time.Duration, error) { return benchkit.ProcCPU(c.cmd.Process.Pid) }

func (c *child) wait() error {
	if c.waited {
		return nil
	}
	c.waited = true
	return c.cmd.Wait()
}

// close ends the child: stdin closes, it shuts down; killed if it has not
// exited after a while.
func (c *child) close() {
	_ = c.stdin.Close()
	t := time.AfterFunc(20*time.Second, func() { _ = c.cmd.Process.Kill() })
	defer t.Stop()
	_ = c.wait()
}
