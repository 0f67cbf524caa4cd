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
	"syscall"
	"time"
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
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
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
	m.RSS, err3 = procRSS(c.cmd.Process.Pid)
	return m, errors.Join(err1, err2, err3)
}

// cpu returns the CPU time the child has used so far (user + system).
func (c *child) cpu() (time.Duration, error) { return procCPU(c.cmd.Process.Pid) }

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

// clockTick is the unit of /proc/<pid>/stat's CPU times: USER_HZ, 100 on
// every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// procCPU returns the user + system CPU time of process pid so far, from
// /proc/<pid>/stat (fields 14 and 15, after the parenthesised command).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc/pid/stat")
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, errors.New("short /proc/pid/stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * clockTick, errors.Join(err1, err2)
}

// procRSS returns VmRSS of process pid, from /proc/<pid>/status.
func procRSS(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc/pid/status")
}
