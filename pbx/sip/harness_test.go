package sip

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"

	"callcontrold/directory"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// events collects a registrar's device events.
type events struct{ ch chan DeviceEvent }

func (e events) next(t *testing.T) DeviceEvent {
	t.Helper()
	select {
	case ev := <-e.ch:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no device event")
		return DeviceEvent{}
	}
}

func (e events) none(t *testing.T) {
	t.Helper()
	select {
	case ev := <-e.ch:
		t.Fatalf("unexpected device event %+v", ev)
	default:
	}
}

// quietLog keeps the registrar's lines out of test output unless -v.
func quietLog(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// switchUnderTest is an endpoint with a registrar on loopback.
type switchUnderTest struct {
	ep     *Endpoint
	reg    *Registrar
	events events
}

// startSwitch starts an endpoint and registrar on loopback; attach, when
// given, adds handlers before the endpoint starts.
func startSwitch(t *testing.T, dir *directory.Directory, cfg RegistrarConfig, attach ...func(*Endpoint, *Registrar)) *switchUnderTest {
	t.Helper()
	if dir == nil {
		dir = directory.Demo()
	}
	ev := events{ch: make(chan DeviceEvent, 64)}
	cfg.OnChange = func(e DeviceEvent) { ev.ch <- e }
	if cfg.Logger == nil {
		cfg.Logger = quietLog(t)
	}
	ep, err := NewEndpoint(EndpointConfig{Addr: "127.0.0.1:0", Logger: cfg.Logger})
	if err != nil {
		t.Fatal(err)
	}
	reg := NewRegistrar(dir, cfg)
	reg.Attach(ep)
	for _, f := range attach {
		f(ep, reg)
	}
	if err := ep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		reg.Close()
		if err := ep.Close(); err != nil {
			t.Errorf("endpoint close: %v", err)
		}
	})
	return &switchUnderTest{ep: ep, reg: reg, events: ev}
}

// phone is an in-process sipgo user agent that registers.
type phone struct {
	t       *testing.T
	client  *sipgo.Client // sends from the phone's UDP socket
	tcp     *sipgo.Client // dials TCP from an ephemeral port
	options chan string   // Request-URIs of the OPTIONS the phone answered
	sw      netip.AddrPort
	user    string
	callID  string
	cseq    uint32
}

// newPhone starts a phone that, like a real one, listens on its own UDP
// socket and sends from it: the test owns the socket, so closing it ends
// sipgo's reader for sure.
func newPhone(t *testing.T, sw netip.AddrPort, user string) *phone {
	t.Helper()
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("testphone"), sipgo.WithUserAgentHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	// The phone answers OPTIONS and reports the Request-URI it got.
	got := make(chan string, 8)
	srv.OnOptions(func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
		got <- req.Recipient.String()
		tx.Respond(sipmsg.NewResponseFromRequest(req, sipmsg.StatusOK, "OK", nil))
	})
	c, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientConnectionAddr(conn.LocalAddr().String()))
	if err != nil {
		t.Fatal(err)
	}
	// Over TCP sipgo would dial from the address above, the UDP socket's
	// port, which some TCP socket of the machine may hold: the TCP
	// client dials from an ephemeral port, as phones do.
	tcp, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.ServeUDP(conn)
	}()
	t.Cleanup(func() {
		conn.Close()
		<-served
		ua.Close()
	})
	// Requests leave from the socket once sipgo has it in its pool.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, _ := ua.TransportLayer().GetConnection("udp", conn.LocalAddr().String()); c != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("phone socket never served")
		}
		time.Sleep(time.Millisecond)
	}
	return &phone{t: t, client: c, tcp: tcp, options: got, sw: sw, user: user, callID: fmt.Sprintf("call-%s-%d@test", user, time.Now().UnixNano()), cseq: 1}
}

// request builds a REGISTER for the phone's AOR with a contact.
func (p *phone) request(transport, contact string, expires int) *sipmsg.Request {
	req := sipmsg.NewRequest(sipmsg.REGISTER, sipmsg.Uri{Scheme: "sip", Host: p.sw.Addr().String(), Port: int(p.sw.Port())})
	if transport != "" {
		req.Recipient.UriParams = sipmsg.NewParams()
		req.Recipient.UriParams.Add("transport", strings.ToLower(transport))
	}
	aor := sipmsg.Uri{Scheme: "sip", User: p.user, Host: "127.0.0.1"}
	from := &sipmsg.FromHeader{Address: aor, Params: sipmsg.NewParams()}
	from.Params.Add("tag", sipmsg.GenerateTagN(8))
	req.AppendHeader(from)
	req.AppendHeader(&sipmsg.ToHeader{Address: aor})
	cid := sipmsg.CallIDHeader(p.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sipmsg.CSeqHeader{SeqNo: p.cseq, MethodName: sipmsg.REGISTER})
	if contact != "" {
		req.AppendHeader(sipmsg.NewHeader("Contact", contact))
	}
	if expires >= 0 {
		req.AppendHeader(sipmsg.NewHeader("Expires", fmt.Sprint(expires)))
	}
	req.AppendHeader(sipmsg.NewHeader("User-Agent", "testphone"))
	return req
}

// register sends a REGISTER, answers a challenge with password when it
// is not "", and returns the final response.
func (p *phone) register(transport, contact string, expires int, password string) *sipmsg.Response {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := p.request(transport, contact, expires)
	client := p.client
	if transport == "TCP" {
		client = p.tcp
	}
	res, err := client.Do(ctx, req)
	if err != nil {
		p.t.Fatalf("REGISTER: %v", err)
	}
	p.cseq = req.CSeq().SeqNo + 1
	if res.StatusCode != sipmsg.StatusUnauthorized || password == "" {
		return res
	}
	res, err = client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: p.user, Password: password})
	if err != nil {
		p.t.Fatalf("REGISTER with credentials: %v", err)
	}
	p.cseq = req.CSeq().SeqNo + 1
	return res
}

func sipgoAuth(user, password string) sipgo.DigestAuth {
	return sipgo.DigestAuth{Username: user, Password: password}
}

// syncBuffer is a bytes.Buffer safe for the logger's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
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
