package siptest

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BaresipOptions configure one baresip phone.
type BaresipOptions struct {
	// User is the account's user (its AOR is sip:User@registrar), and
	// the digest username.
	User     string
	Password string
	// Registrar is where the phone registers; zero means it does not
	// register (it can still dial an address directly).
	Registrar netip.AddrPort
	// Transport is "udp" (default) or "tcp".
	Transport string
	// RegisterInterval is the account's regint (60s when zero); the
	// registrar must accept it (its MinExpires).
	RegisterInterval time.Duration
	// AutoAnswer answers incoming calls at once (answermode=auto);
	// otherwise the test answers with Accept.
	AutoAnswer bool
}

// Baresip is a running baresip soft phone, driven through its ctrl_tcp
// module. It is killed when the test ends.
type Baresip struct {
	*Ctrl
	opts    BaresipOptions
	proc    *process
	sipPort int
}

// StartBaresip writes a config directory for one account and starts
// baresip on loopback: SIP on a free port, no sound card (a 440 Hz tone
// is the microphone, the speaker discards), ctrl_tcp on another free
// port. It returns once the account exists; its registration is
// reported by the REGISTER_OK (or REGISTER_FAIL) event.
func StartBaresip(t testing.TB, o BaresipOptions) *Baresip {
	t.Helper()
	if o.Transport == "" {
		o.Transport = "udp"
	}
	if o.RegisterInterval <= 0 {
		o.RegisterInterval = time.Minute
	}
	dir := t.TempDir()
	sipPort, ctrlPort := FreePort(t), FreePort(t)
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(baresipConfig(sipPort, ctrlPort)), 0o600); err != nil {
		t.Fatal(err)
	}
	// No account at start: it is added over ctrl_tcp once connected,
	// so that the test sees every registration event.
	if err := os.WriteFile(filepath.Join(dir, "accounts"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	b := &Baresip{opts: o, sipPort: sipPort}
	b.proc = startProcess(t, "baresip", dir, "-f", dir)
	ctrl, err := dialCtrl(netip.AddrPortFrom(loopback, uint16(ctrlPort)), 10*time.Second, b.proc.exited)
	if err != nil {
		t.Fatalf("baresip ctrl_tcp: %v\n%s", err, b.proc.out.String())
	}
	b.Ctrl = ctrl
	t.Cleanup(func() {
		b.Ctrl.Close()
		b.proc.kill()
	})
	if _, err := b.Command("uanew", o.accountLine()); err != nil {
		t.Fatalf("baresip account: %v", err)
	}
	return b
}

var loopback = netip.MustParseAddr("127.0.0.1")

// baresipConfig is the whole config file: only the modules a headless
// phone needs, everything on 127.0.0.1 (net_interface, or the SDP would
// carry another address).
func baresipConfig(sipPort, ctrlPort int) string {
	lines := []string{
		"poll_method epoll",
		"sip_listen 127.0.0.1:" + strconv.Itoa(sipPort),
		"net_interface 127.0.0.1",
		// RTP away from the ports FreePort hands out (its default range
		// overlaps them); baresip draws again when a port is taken.
		"rtp_ports 40000-48999",
		"call_local_timeout 120",
		"call_max_calls 4",
		// ausine only produces 48 kHz stereo.
		"audio_source ausine,440",
		"ausrc_srate 48000",
		"ausrc_channels 2",
		"audio_player aubridge,discard",
		"audio_alert aubridge,discard",
		"module_path /usr/lib/baresip/modules",
		"module g711.so",
		"module ausine.so",
		"module aubridge.so",
		"module_tmp account.so",
		"module_app menu.so",
		"module_app ctrl_tcp.so",
		"ctrl_tcp_listen 127.0.0.1:" + strconv.Itoa(ctrlPort),
	}
	return strings.Join(lines, "\n") + "\n"
}

// accountLine is the account in baresip's accounts file format.
func (o BaresipOptions) accountLine() string {
	host := "127.0.0.1"
	regint := 0
	if o.Registrar.IsValid() {
		host = o.Registrar.String()
		regint = int(o.RegisterInterval / time.Second)
	}
	mode := "manual"
	if o.AutoAnswer {
		mode = "auto"
	}
	return fmt.Sprintf("<sip:%s@%s;transport=%s>;auth_user=%s;auth_pass=%s;regint=%d;answermode=%s",
		o.User, host, strings.ToLower(o.Transport), o.User, o.Password, regint, mode)
}

// SIPAddr is the phone's SIP address.
func (b *Baresip) SIPAddr() netip.AddrPort { return netip.AddrPortFrom(loopback, uint16(b.sipPort)) }

// Quit makes baresip unregister and exit, as a phone switched off
// properly does, and waits for it.
func (b *Baresip) Quit() error {
	// baresip may exit before it answers: the process's exit says
	// whether the quit worked.
	_, _ = b.Command("quit", "")
	return b.proc.wait(15 * time.Second)
}

// Kill ends baresip at once (SIGKILL): it does not unregister, as a
// phone losing power.
func (b *Baresip) Kill() { b.proc.kill() }
