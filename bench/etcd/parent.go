package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"callcontrold/internal/benchkit"
)

// child is the parent's handle on a server's child process.
type child struct {
	*benchkit.Child
	name string
	addr string
}

// startChild starts the named server in a child process and returns once
// it serves. The child dies with ctx, with the parent (Pdeathsig), or when
// its stdin closes. Its stderr (the server's own logs) passes through.
func startChild(ctx context.Context, name string) (*child, error) {
	ch, err := benchkit.StartChild(ctx, name, childEnv+"="+name, nil, os.Stderr)
	if err != nil {
		return nil, err
	}
	c := &child{Child: ch, name: name}
	f, err := c.reply("ready", 2)
	if err != nil {
		c.Close()
		return nil, err
	}
	c.addr = f[1]
	return c, nil
}

// reply reads the child's next line, which must start with word and have
// n fields.
func (c *child) reply(word string, n int) ([]string, error) {
	line, err := c.ReadLine(0)
	if err != nil {
		return nil, fmt.Errorf("the server's process ended: %w", err)
	}
	f := strings.Fields(line)
	if len(f) != n || f[0] != word {
		return nil, fmt.Errorf("%s: %s", c.name, line)
	}
	return f, nil
}

// drive has the child commit count changes at rate/s, change n on device
// n%devs; it returns how long that took.
func (c *child) drive(rate float64, count, devs int) (time.Duration, error) {
	if err := c.Send("drive %g %d %d", rate, count, devs); err != nil {
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
	if err := c.Send("mem"); err != nil {
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
	m.RSS, err3 = benchkit.ProcRSS(c.Pid())
	return m, errors.Join(err1, err2, err3)
}

// cpu returns the CPU time the child has used so far (user + system).
func (c *child) cpu() (time.Duration, error) { return benchkit.ProcCPU(c.Pid()) }

// close ends the child: its stdin closes, it shuts down; killed if it
// has not exited after a while.
func (c *child) close() { _ = c.Finish(20 * time.Second) }
