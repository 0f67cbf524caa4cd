package siptest

import (
	"embed"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"callcontrold/internal/freeport"
)

//go:embed scenarios/*.xml
var scenarios embed.FS

// Scenario is one of the embedded SIPp scenarios.
type Scenario string

// The scenarios. Each is one call (one Call-ID) of SIPp.
const (
	// Register registers the AOR Service with Expires (0 unregisters),
	// answering the 401 with AuthUser/AuthPassword.
	Register Scenario = "register"
	// UAC calls Service at Remote, waits for the answer, talks for
	// Pause and hangs up.
	UAC Scenario = "uac"
	// UACAuth is UAC through a switch that challenges the INVITE (407),
	// answered with AuthUser/AuthPassword.
	UACAuth Scenario = "uac_auth"
	// UASAnswer rings for Pause, answers, follows hold and resume
	// re-INVITEs, and ends on the caller's BYE.
	UASAnswer Scenario = "uas_answer"
	// UASBusy rings for Pause, then answers 486 Busy Here.
	UASBusy Scenario = "uas_busy"
	// UASReject rings for Pause, then answers 603 Decline.
	UASReject Scenario = "uas_reject"
	// UASNoAnswer rings until the caller's CANCEL.
	UASNoAnswer Scenario = "uas_noanswer"
)

// SIPpOptions configure one SIPp run.
type SIPpOptions struct {
	Scenario Scenario
	// Remote is where requests go (the switch). UAS scenarios may leave
	// it zero when they only answer.
	Remote netip.AddrPort
	// Port is SIPp's own SIP port on 127.0.0.1; 0 picks a free one. Run
	// Register and then a UAS scenario on the same port to have the
	// switch's calls for that device reach the UAS.
	Port int
	// Host is SIPp's own address (SIP, media, control port): 127.0.0.1
	// when empty. A SIPp playing a SIP trunk runs on another loopback
	// address (127.0.0.2): the switch tells the trunk from phones by
	// address.
	Host string
	// Transport is "udp" (default) or "tcp".
	Transport string
	// Service is the AOR user to register (Register) or the number to
	// call (UAC).
	Service string
	// AuthUser and AuthPassword answer digest challenges; AuthUser is
	// also the caller's user in UAC's From.
	AuthUser, AuthPassword string
	// Expires is Register's Expires value in seconds.
	Expires int
	// Calls bounds the run (-m); 1 when zero.
	Calls int
	// Rate is the new calls per second of UAC scenarios (-r); SIPp's
	// default (10) when zero. MaxConcurrent caps the calls in progress
	// (-l); unbounded when zero.
	Rate, MaxConcurrent int
	// Pause is the ringing time of UAS scenarios and the talk time of
	// UAC (-d), at least minPause.
	Pause time.Duration
	// Timeout ends the whole run as a failure (-timeout); 15s when zero.
	Timeout time.Duration
}

// SIPp is a running SIPp process. It is killed when the test ends.
type SIPp struct {
	opts SIPpOptions
	proc *process
	dir  string
	port int
}

// StartSIPp starts SIPp with an embedded scenario, everything bound to
// Host (SIP, media and its control port), bounded in calls and time,
// without stdin.
func StartSIPp(t testing.TB, o SIPpOptions) *SIPp {
	t.Helper()
	if o.Calls <= 0 {
		o.Calls = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = 15 * time.Second
	}
	if o.Transport == "" {
		o.Transport = "udp"
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.Port == 0 {
		o.Port = FreePort(t)
	}
	xml, err := scenarios.ReadFile("scenarios/" + string(o.Scenario) + ".xml")
	if err != nil {
		t.Fatalf("unknown SIPp scenario %q", o.Scenario)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, string(o.Scenario)+".xml")
	if err := os.WriteFile(file, xml, 0o600); err != nil {
		t.Fatal(err)
	}
	media, err := freeport.MediaPort()
	if err != nil {
		t.Fatal(err)
	}
	args, err := o.args(file, FreePort(t), media)
	if err != nil {
		t.Fatal(err)
	}
	s := &SIPp{opts: o, dir: dir, port: o.Port}
	s.proc = startProcess(t, "sipp", dir, args...)
	return s
}

// minPause is the shortest -d given to SIPp: a 0 ms <pause/> sometimes
// never ends (a trunk scenario sent its 180 and then waited out its whole
// timeout without the 200 in about 3 runs of 8), 20 ms never did in our
// runs.
const minPause = 20 * time.Millisecond

// args builds SIPp's command line. Keys ([expires], [caller]) are
// passed only to the scenarios that use them: SIPp refuses to load a
// scenario that references a key it was not given.
func (o SIPpOptions) args(file string, controlPort, mediaPort int) ([]string, error) {
	tr := map[string]string{"udp": "u1", "tcp": "t1"}[strings.ToLower(o.Transport)]
	if tr == "" {
		return nil, fmt.Errorf("sipp transport %q: want udp or tcp", o.Transport)
	}
	args := []string{
		"-sf", file,
		"-i", o.Host, "-bind_local", "-ci", o.Host,
		"-p", strconv.Itoa(o.Port), "-cp", strconv.Itoa(controlPort),
		"-mi", o.Host, "-mp", strconv.Itoa(mediaPort),
		"-t", tr,
		"-m", strconv.Itoa(o.Calls),
		"-timeout", strconv.Itoa(int(o.Timeout.Seconds()+0.5)) + "s", "-timeout_error",
		"-d", strconv.Itoa(int(max(o.Pause, minPause).Milliseconds())),
		"-nostdin",
		"-trace_err", "-trace_screen",
		// A failed call must not make SIPp send a BYE of its own.
		"-default_behaviors", "all,-bye",
	}
	if o.Rate > 0 {
		args = append(args, "-r", strconv.Itoa(o.Rate))
	}
	if o.MaxConcurrent > 0 {
		args = append(args, "-l", strconv.Itoa(o.MaxConcurrent))
	}
	if o.Calls <= 10 {
		// Every message, for the failure report; a load run would
		// spend its time writing them.
		args = append(args, "-trace_msg")
	}
	if o.Service != "" {
		args = append(args, "-s", o.Service)
	}
	if o.AuthUser != "" {
		args = append(args, "-au", o.AuthUser, "-ap", o.AuthPassword)
	}
	switch o.Scenario {
	case Register:
		args = append(args, "-key", "expires", strconv.Itoa(o.Expires))
	case UAC, UACAuth:
		caller := o.AuthUser
		if caller == "" {
			caller = "sipp"
		}
		args = append(args, "-key", "caller", caller)
	}
	if o.Remote.IsValid() {
		args = append(args, o.Remote.String())
	}
	return args, nil
}

// Addr is SIPp's SIP address.
func (s *SIPp) Addr() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(s.opts.Host), uint16(s.port))
}

// Wait waits for SIPp to finish its calls and returns nil when every
// call succeeded; otherwise the error carries SIPp's exit status, its
// error log and its final screen.
func (s *SIPp) Wait() error {
	err := s.proc.wait(s.opts.Timeout + 10*time.Second)
	if err == nil {
		return nil
	}
	return fmt.Errorf("sipp %s: %v\n%s", s.opts.Scenario, err, s.report())
}

// Stats reads the successful and failed call counts from SIPp's final
// screen; it is meaningful once Wait has returned.
func (s *SIPp) Stats() (successful, failed int, err error) {
	files, _ := filepath.Glob(filepath.Join(s.dir, "*_screen.log"))
	if len(files) == 0 {
		return 0, 0, fmt.Errorf("sipp %s wrote no screen log", s.opts.Scenario)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		return 0, 0, err
	}
	found := 0
	for line := range strings.Lines(string(data)) {
		var dst *int
		switch {
		case strings.HasPrefix(strings.TrimSpace(line), "Successful call"):
			dst = &successful
		case strings.HasPrefix(strings.TrimSpace(line), "Failed call"):
			dst = &failed
		default:
			continue
		}
		// "  Successful call  |  periodic  |  cumulative": the last column.
		cols := strings.Split(line, "|")
		n, err := strconv.Atoi(strings.TrimSpace(cols[len(cols)-1]))
		if err != nil {
			return 0, 0, fmt.Errorf("sipp screen line %q: %v", line, err)
		}
		*dst = n
		found++
	}
	if found < 2 {
		return 0, 0, fmt.Errorf("sipp screen log without call counts")
	}
	return successful, failed, nil
}

// report gathers SIPp's error log and final screen from its directory.
func (s *SIPp) report() string {
	var b strings.Builder
	for _, pattern := range []string{"*_errors.log", "*_screen.log", "*_messages.log"} {
		files, _ := filepath.Glob(filepath.Join(s.dir, pattern))
		for _, f := range files {
			data, _ := os.ReadFile(f)
			if len(data) > 8<<10 {
				data = data[len(data)-8<<10:]
			}
			fmt.Fprintf(&b, "--- %s\n%s\n", filepath.Base(f), data)
		}
	}
	return b.String()
}
