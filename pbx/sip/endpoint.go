package sip

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
)

// EndpointConfig is where and as what the endpoint listens.
type EndpointConfig struct {
	// Addr is the host:port both listeners bind, UDP and TCP on the same
	// port as phones expect. Port 0 picks a free port (tests bind
	// "127.0.0.1:0"); the bound port is then the same for both.
	Addr string
	// UserAgent is the User-Agent and Server header value; "callcontrold"
	// when empty.
	UserAgent string
	// Logger receives the endpoint's own log lines; slog.Default when nil.
	Logger *slog.Logger
}

// Endpoint is the switch's SIP presence: one sipgo user agent with a UDP
// and a TCP listener on the same address, a server that dispatches
// incoming requests by method, and a client for outgoing requests that
// shares the listeners' transport layer (so replies to a phone's
// REGISTER and the INVITEs sent to it use the same connections).
//
// Use: NewEndpoint (binds, so the ports are known), Handle for every
// method (REGISTER by the Registrar, INVITE/ACK/BYE/CANCEL/... by the
// B2BUA), Start, and Close when done. Handlers run on sipgo's transaction
// goroutines, several at once.
type Endpoint struct {
	cfg    EndpointConfig
	log    *slog.Logger
	ua     *sipgo.UserAgent
	server *sipgo.Server
	client *sipgo.Client
	udp    net.PacketConn
	tcp    net.Listener
	addr   netip.AddrPort

	mu      sync.Mutex
	started bool
	closed  bool
	serving sync.WaitGroup
}

// bindAttempts bounds the search for a port free in both UDP and TCP
// when the configuration asks for any port.
const bindAttempts = 20

// NewEndpoint binds the listeners and builds the user agent; nothing is
// served until Start.
func NewEndpoint(cfg EndpointConfig) (*Endpoint, error) {
	if cfg.UserAgent == "" {
		cfg.UserAgent = "callcontrold"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	ap, err := netip.ParseAddrPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("sip listen address %q: want ip:port (%v)", cfg.Addr, err)
	}
	udp, tcp, err := listenPair(ap)
	if err != nil {
		return nil, err
	}
	bound := netip.AddrPortFrom(ap.Addr(), uint16(udp.LocalAddr().(*net.UDPAddr).Port))
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent(cfg.UserAgent),
		sipgo.WithUserAgentHostname(ap.Addr().String()),
		sipgo.WithUserAgentTransportLayerOptions(sipmsg.WithTransportLayerLogger(log)),
		sipgo.WithUserAgentTransactionLayerOptions(sipmsg.WithTransactionLayerLogger(log)),
	)
	if err != nil {
		udp.Close()
		tcp.Close()
		return nil, fmt.Errorf("sip user agent: %w", err)
	}
	server, err := sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err == nil {
		// The client's Via carries the listening address, so that
		// responses come back to the listeners.
		var client *sipgo.Client
		client, err = sipgo.NewClient(ua, sipgo.WithClientLogger(log), sipgo.WithClientHostname(ap.Addr().String()))
		if err == nil {
			return &Endpoint{cfg: cfg, log: log, ua: ua, server: server, client: client, udp: udp, tcp: tcp, addr: bound}, nil
		}
	}
	ua.Close()
	udp.Close()
	tcp.Close()
	return nil, fmt.Errorf("sip endpoint: %w", err)
}

// listenPair binds UDP and TCP on the same address and port. With port
// 0 it takes the kernel's free UDP port and retries when TCP has it.
func listenPair(ap netip.AddrPort) (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range bindAttempts {
		udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return nil, nil, fmt.Errorf("sip listen udp %s: %w", ap, err)
		}
		port := udp.LocalAddr().(*net.UDPAddr).Port
		tcp, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ap.Addr(), uint16(port))))
		if err == nil {
			return udp, tcp, nil
		}
		udp.Close()
		lastErr = err
		if ap.Port() != 0 {
			break
		}
	}
	return nil, nil, fmt.Errorf("sip listen tcp %s: %w", ap, lastErr)
}

// Addr is the bound address, the same port for UDP and TCP.
func (e *Endpoint) Addr() netip.AddrPort { return e.addr }

// Client sends requests from the endpoint (the B2BUA's outgoing legs).
func (e *Endpoint) Client() *sipgo.Client { return e.client }

// UserAgent is the sipgo user agent, for sipgo's dialog helpers
// (sipgo.NewDialogServerCache and friends).
func (e *Endpoint) UserAgent() *sipgo.UserAgent { return e.ua }

// RouteTo addresses a request to a registered binding: the Request-URI
// stays what the caller built (normally b.Contact), and the request goes
// where the phone registered from, over the same transport.
//
// Over UDP it goes to the REGISTER's source and leaves from the
// endpoint's own socket, the one the phone registered with (its NAT
// binding and firewall expect that address). Over TCP it reuses the
// connection the phone registered on; when that connection is gone it
// connects to the Contact's address, where the phone listens.
func (e *Endpoint) RouteTo(req *sipmsg.Request, b Binding) {
	req.SetTransport(b.Transport)
	switch b.Transport {
	case "UDP":
		req.SetDestination(b.Destination())
		req.Laddr = sipmsg.Addr{IP: e.addr.Addr().AsSlice(), Port: int(e.addr.Port())}
	default:
		if c, _ := e.ua.TransportLayer().GetConnection(strings.ToLower(b.Transport), b.Destination()); c != nil {
			req.SetDestination(b.Destination())
		} else {
			req.SetDestination(b.Contact.HostPort())
		}
	}
}

// Handle sets the handler of a request method. It must be called before
// Start: sipgo's handler table is not safe for change while serving.
// Methods without a handler are answered 405 Method Not Allowed.
func (e *Endpoint) Handle(method sipmsg.RequestMethod, h sipgo.RequestHandler) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started {
		panic("sip: Endpoint.Handle after Start") // a wiring bug, not input
	}
	e.server.OnRequest(method, h)
}

// Start serves both listeners until Close.
func (e *Endpoint) Start() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.closed:
		return errors.New("sip endpoint: closed")
	case e.started:
		return errors.New("sip endpoint: already started")
	}
	e.started = true
	e.serving.Add(2)
	go func() {
		defer e.serving.Done()
		e.serveDone("udp", e.server.ServeUDP(e.udp))
	}()
	go func() {
		defer e.serving.Done()
		e.serveDone("tcp", e.server.ServeTCP(e.tcp))
	}()
	e.log.Info("sip endpoint listening", "udp", e.addr.String(), "tcp", e.addr.String())
	return nil
}

// serveDone logs why a listener stopped, unless Close stopped it.
func (e *Endpoint) serveDone(network string, err error) {
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if !closed && err != nil {
		e.log.Error("sip listener stopped", "network", network, "error", err)
	}
}

// Close stops the listeners, ends every transaction and closes every
// connection, and returns once the serving goroutines have ended. It is
// safe to call more than once.
func (e *Endpoint) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	err := errors.Join(e.udp.Close(), e.tcp.Close())
	e.serving.Wait()
	// sipgo closes the client sockets it made (requests sent without our
	// listener as their source) twice when a transaction's end releases
	// one while the transport layer is clearing its pool: both see it
	// referenced and close it. The socket is closed either way; only
	// the second close's complaint is dropped.
	if cerr := e.ua.Close(); cerr != nil && !onlyClosed(cerr) {
		err = errors.Join(err, fmt.Errorf("sip user agent close: %w", cerr))
	}
	return err
}

// onlyClosed reports whether err is net.ErrClosed, or errors joined that
// all are.
func onlyClosed(err error) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !onlyClosed(e) {
				return false
			}
		}
		return true
	}
	return errors.Is(err, net.ErrClosed)
}
