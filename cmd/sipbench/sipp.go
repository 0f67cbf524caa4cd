package main

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"callcontrold/internal/freeport"
)

// The benchmark's own SIPp scenarios: zero talk time (a call is its
// setup and teardown), and the callee and caller taken from an injection
// file so that one SIPp process plays many devices.
//
//go:embed scenarios/*.xml
var scenarioFS embed.FS

// sippRun is one SIPp process of the benchmark.
type sippRun struct {
	name     string // for messages and file names: "direct-uas", ...
	scenario string // scenarios/<scenario>.xml
	remote   string // where requests go, host:port ("" for a pure UAS)
	port     int    // SIPp's SIP port on 127.0.0.1
	calls    int    // -m: the run ends after this many calls
	rate     int    // -r: new calls per second (0: SIPp's default)
	limit    int    // -l: calls in progress at most (0: unbounded)
	inf      string // injection file ("" for none)
	service  string // -s: the AOR the register scenario registers
	// authUser and authPassword answer digest challenges (-au, -ap).
	authUser, authPassword string
	timeout                time.Duration
}

// sippProc is a started SIPp.
type sippProc struct {
	run  sippRun
	dir  string
	cmd  *exec.Cmd
	out  *os.File
	done chan struct{}
	err  error
}

// sippStats are what a finished SIPp counted.
type sippStats struct {
	Successful int     `json:"successful"`
	Failed     int     `json:"failed"`
	Seconds    float64 `json:"seconds"` // SIPp's own start to end
}

// startSIPp starts SIPp bound to 127.0.0.1 (SIP, media, control port),
// bounded in calls and time, without stdin, writing its logs into dir.
// It is killed when ctx ends.
func startSIPp(ctx context.Context, dir string, r sippRun) (*sippProc, error) {
	if _, err := exec.LookPath("sipp"); err != nil {
		return nil, errors.New("sipp is not installed: run scripts/test-deps.sh (make test-deps)")
	}
	xml, err := scenarioFS.ReadFile("scenarios/" + r.scenario + ".xml")
	if err != nil {
		return nil, err
	}
	runDir := filepath.Join(dir, r.name)
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, err
	}
	file := filepath.Join(runDir, r.scenario+".xml")
	if err := os.WriteFile(file, xml, 0o600); err != nil {
		return nil, err
	}
	ctrl, err := freeport.Port()
	if err != nil {
		return nil, err
	}
	media, err := freeport.MediaPort()
	if err != nil {
		return nil, err
	}
	args := []string{
		"-sf", file,
		"-i", "127.0.0.1", "-bind_local", "-ci", "127.0.0.1",
		"-p", strconv.Itoa(r.port), "-cp", strconv.Itoa(ctrl),
		"-mi", "127.0.0.1", "-mp", strconv.Itoa(media),
		"-t", "u1",
		"-m", strconv.Itoa(r.calls),
		"-timeout", strconv.Itoa(int(r.timeout.Seconds()+0.5)) + "s", "-timeout_error",
		"-nostdin", "-trace_err", "-trace_screen",
		"-default_behaviors", "all,-bye",
	}
	if r.rate > 0 {
		args = append(args, "-r", strconv.Itoa(r.rate))
	}
	if r.limit > 0 {
		args = append(args, "-l", strconv.Itoa(r.limit))
	}
	if r.inf != "" {
		args = append(args, "-inf", r.inf)
	}
	if r.service != "" {
		args = append(args, "-s", r.service)
	}
	if r.authUser != "" {
		args = append(args, "-au", r.authUser, "-ap", r.authPassword)
	}
	if r.remote != "" {
		args = append(args, r.remote)
	}
	out, err := os.Create(filepath.Join(runDir, "output.txt"))
	if err != nil {
		return nil, err
	}
	p := &sippProc{run: r, dir: runDir, out: out, done: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, "sipp", args...)
	p.cmd.Dir = runDir
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start sipp %s: %w", r.name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		out.Close()
		close(p.done)
	}()
	return p, nil
}

// wait waits for SIPp to end (its own -timeout bounds it) and reads its
// counts. A SIPp that failed calls exits with status 1: that is reported
// in the counts, not as an error; only a SIPp that could not run is.
func (p *sippProc) wait() (sippStats, error) {
	<-p.done
	st, err := p.stats()
	if err != nil {
		return st, fmt.Errorf("sipp %s: %v (%v)\n%s", p.run.name, err, p.err, p.tail())
	}
	return st, nil
}

// bound waits until SIPp has bound its SIP port (UDP), so that a caller
// started next does not lose its first INVITE; it fails if SIPp exits
// first or does not bind within 10 s. It reads the kernel's socket table
// (/proc/net/udp) rather than trying the port, which could make SIPp's
// own bind fail; without that table it waits a moment instead.
func (p *sippProc) bound() error {
	want := fmt.Sprintf(" 0100007F:%04X ", p.run.port) // 127.0.0.1, in the table's byte order
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		select {
		case <-p.done:
			return fmt.Errorf("sipp %s exited before it bound port %d\n%s", p.run.name, p.run.port, p.tail())
		default:
		}
		table, err := os.ReadFile("/proc/net/udp")
		if err != nil {
			time.Sleep(200 * time.Millisecond)
			return nil
		}
		if strings.Contains(string(table), want) {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("sipp %s did not bind port %d", p.run.name, p.run.port)
}

// finish waits up to grace for SIPp to end by itself, then asks it to
// end (endSignal: SIPp places no new call, lets the calls in progress end
// and exits, writing its final screen), so that wait reads its counts. A
// callee whose caller saw a call fail before it reached the callee waits
// for a call that never comes, until its -timeout: its counts are what
// the round needs, not the timeout's error.
func (p *sippProc) finish(grace time.Duration) {
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.cmd.Process.Signal(endSignal)
	}
}

// stop kills SIPp and waits for it.
func (p *sippProc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// stats reads the final screen SIPp wrote (-trace_screen): the
// cumulative successful and failed calls, and the time from its start
// to its end.
func (p *sippProc) stats() (sippStats, error) {
	files, _ := filepath.Glob(filepath.Join(p.dir, "*_screen.log"))
	if len(files) == 0 {
		return sippStats{}, errors.New("no screen log")
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		return sippStats{}, err
	}
	var st sippStats
	var start, end float64
	found := 0
	for line := range strings.Lines(string(data)) {
		cols := strings.Split(line, "|")
		name := strings.TrimSpace(cols[0])
		last := strings.TrimSpace(cols[len(cols)-1])
		switch name {
		case "Successful call":
			st.Successful, err = strconv.Atoi(last)
			found++
		case "Failed call":
			st.Failed, err = strconv.Atoi(last)
			found++
		case "Start Time":
			start, err = epochOf(cols[1])
		case "Current Time":
			end, err = epochOf(cols[1]) // the last screen's is the end
		}
		if err != nil {
			return sippStats{}, fmt.Errorf("screen line %q: %v", strings.TrimSpace(line), err)
		}
	}
	if found < 2 || start == 0 || end < start {
		return sippStats{}, errors.New("screen log without call counts or times")
	}
	st.Seconds = end - start
	return st, nil
}

// epochOf reads "2026-12-02\t00:02:58.801721\t1796169778.801721": the
// last field is seconds since the epoch.
func epochOf(col string) (float64, error) {
	f := strings.Fields(col)
	if len(f) == 0 {
		return 0, errors.New("empty time")
	}
	return strconv.ParseFloat(f[len(f)-1], 64)
}

// tail is the end of SIPp's output and error log, for an error message.
func (p *sippProc) tail() string {
	var b strings.Builder
	for _, pattern := range []string{"output.txt", "*_errors.log"} {
		files, _ := filepath.Glob(filepath.Join(p.dir, pattern))
		for _, f := range files {
			data, _ := os.ReadFile(f)
			if len(data) > 4<<10 {
				data = data[len(data)-4<<10:]
			}
			fmt.Fprintf(&b, "--- %s\n%s\n", filepath.Base(f), data)
		}
	}
	return b.String()
}

// writeInf writes a SIPp injection file read in order (one line per
// call, wrapping around).
func writeInf(path string, lines []string) error {
	return os.WriteFile(path, []byte("SEQUENTIAL\n"+strings.Join(lines, "\n")+"\n"), 0o600)
}
