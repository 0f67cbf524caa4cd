package sip

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
)

// softphone is an in-process sipgo user agent playing one registered
// device: it rings on INVITEs (and answers the B2BUA's click-to-dial
// INVITEs by itself, as a user picking up would), answers re-INVITEs,
// and on the test's word answers, refuses, hangs up, holds or calls.
type softphone struct {
	t      *testing.T
	user   string
	sw     netip.AddrPort
	ua     *sipgo.UserAgent
	client *sipgo.Client
	dua    sipgo.DialogUA
	host   string
	port   int
	sdp    []byte

	mu        sync.Mutex
	servers   map[string]*sipgo.DialogServerSession // by Call-ID: the switch called us
	clients   map[string]*sipgo.DialogClientSession // we called the switch
	pending   map[string]context.CancelFunc         // our calls not answered yet: CANCEL
	ringing   map[string]chan func()                // Call-IDs ringing: what the user decides
	answered  map[string]chan struct{}              // closed once our 2xx got its ACK (or failed)
	quit      chan struct{}                         // closed at cleanup: ringing calls give up
	reinvites chan []byte                           // descriptions of the re-INVITEs received
	cancels   chan string                           // Call-IDs of the INVITEs the switch cancelled
	notifies  chan notice                           // NOTIFYs received (refer_test.go)
	infos     chan string                           // INFO bodies received (dtmf_test.go)
	// answersTalk: a desk phone that answers a ringing call on
	// "NOTIFY Event: talk" (answer_test.go). Under mu.
	answersTalk bool
	probes      chan int // status of each in-dialog OPTIONS answered
	deaf        bool     // OPTIONS go unanswered (a phone that went away)
	wg          sync.WaitGroup
	// rang, when set, hears of every new INVITE once it rings (the test
	// trunk's far ends, flows_test.go). Under mu.
	rang func(id string, req *sipmsg.Request)
	// ackHold, when set, holds the ACK of the answer to each of our calls
	// until it is closed (holdAcks). Under mu.
	ackHold chan struct{}
}

func newSoftphone(t *testing.T, sw netip.AddrPort, user string) *softphone {
	t.Helper()
	return newSoftphoneOn(t, sw, user, "127.0.0.1")
}

// newSoftphoneOn starts a softphone on another loopback address (a test
// trunk is told apart from phones by its address).
func newSoftphoneOn(t *testing.T, sw netip.AddrPort, user, host string) *softphone {
	t.Helper()
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(host), 0)))
	if err != nil {
		t.Fatal(err)
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("softphone"), sipgo.WithUserAgentHostname(host))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	c, err := sipgo.NewClient(ua, sipgo.WithClientHostname(host), sipgo.WithClientConnectionAddr(conn.LocalAddr().String()))
	if err != nil {
		t.Fatal(err)
	}
	port := conn.LocalAddr().(*net.UDPAddr).Port
	p := &softphone{t: t, user: user, sw: sw, ua: ua, client: c, host: host, port: port,
		sdp:     fmt.Appendf(nil, "v=0\r\no=%s 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=sendrecv\r\n", user, host, host, 20000+port%10000),
		servers: map[string]*sipgo.DialogServerSession{}, clients: map[string]*sipgo.DialogClientSession{}, pending: map[string]context.CancelFunc{},
		ringing: map[string]chan func(){}, answered: map[string]chan struct{}{}, reinvites: make(chan []byte, 16), cancels: make(chan string, 16), notifies: make(chan notice, 16), probes: make(chan int, 16), infos: make(chan string, 16), quit: make(chan struct{})}
	p.dua = sipgo.DialogUA{Client: c, ContactHDR: sipmsg.ContactHeader{Address: sipmsg.Uri{Scheme: "sip", User: user, Host: p.host, Port: port}}}
	srv.OnInvite(p.onInvite)
	srv.OnAck(p.onAck)
	srv.OnBye(p.onBye)
	srv.OnInfo(p.onInfo)
	srv.OnNotify(p.onNotifyTalk)
	srv.OnOptions(p.onOptions)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.ServeUDP(conn)
	}()
	t.Cleanup(func() {
		p.settle()
		close(p.quit)
		p.wg.Wait()
		conn.Close()
		<-served
		ua.Close()
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, _ := ua.TransportLayer().GetConnection("udp", conn.LocalAddr().String()); c != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("softphone socket never served")
		}
		time.Sleep(time.Millisecond)
	}
	return p
}

func (p *softphone) go_(f func()) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
}

func (p *softphone) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}

// register binds the phone's address with the demo password.
func (p *softphone) register() {
	p.t.Helper()
	p.registerFor("600")
}

// unregister removes the phone's binding (Expires: 0).
func (p *softphone) unregister() {
	p.t.Helper()
	p.registerFor("0")
}

func (p *softphone) registerFor(expires string) {
	p.t.Helper()
	req := sipmsg.NewRequest(sipmsg.REGISTER, sipmsg.Uri{Scheme: "sip", Host: p.sw.Addr().String(), Port: int(p.sw.Port())})
	aor := sipmsg.Uri{Scheme: "sip", User: p.user, Host: "127.0.0.1"}
	from := &sipmsg.FromHeader{Address: aor, Params: sipmsg.NewParams()}
	from.Params.Add("tag", sipmsg.GenerateTagN(8))
	req.AppendHeader(from)
	req.AppendHeader(&sipmsg.ToHeader{Address: aor})
	req.AppendHeader(sipmsg.NewHeader("Contact", fmt.Sprintf("<sip:%s@%s:%d>", p.user, p.host, p.port)))
	req.AppendHeader(sipmsg.NewHeader("Expires", expires))
	ctx, cancel := p.ctx()
	defer cancel()
	res, err := p.client.Do(ctx, req)
	if err == nil && res.StatusCode == sipmsg.StatusUnauthorized {
		res, err = p.client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: p.user, Password: "demo-sip-" + p.user})
	}
	if err != nil || res.StatusCode != sipmsg.StatusOK {
		p.t.Fatalf("%s: REGISTER: %v %v", p.user, res, err)
	}
}

func (p *softphone) onInvite(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	id := req.CallID().Value()
	if to := req.To(); to != nil && to.Params.Has("tag") { // re-INVITE: a new bridge, hold or resume
		select {
		case p.reinvites <- req.Body():
		default: // the test does not look
		}
		_ = tx.Respond(sipmsg.NewSDPResponseFromRequest(req, p.sdp))
		return
	}
	select {
	case <-p.quit: // the test is over: sipgo may still hand us an INVITE read before the socket closed
		p.gone(req, tx)
		return
	default:
	}
	srv, err := p.dua.ReadInvite(req, tx)
	if err != nil {
		return
	}
	tx.OnCancel(func(*sipmsg.Request) {
		select {
		case p.cancels <- id:
		default: // the test does not look
		}
	})
	// A final response waits for the switch's ACK (or Timer H, 32 s):
	// when the phone goes away first, end the transaction so that the
	// handler returns with the test.
	handled := make(chan struct{})
	defer close(handled)
	go func() {
		select {
		case <-p.quit:
			tx.Terminate()
		case <-handled:
		}
	}()
	decide := make(chan func(), 1)
	p.mu.Lock()
	p.servers[id] = srv
	p.ringing[id] = decide
	p.mu.Unlock()
	_ = srv.Respond(sipmsg.StatusRinging, "Ringing", nil)
	if req.From().Address.User == "callcontrold" { // click-to-dial: the user picks up
		p.answer(id)
	}
	p.mu.Lock()
	rang := p.rang
	p.mu.Unlock()
	if rang != nil {
		rang(id, req)
	}
	// sipgo ends the transaction when this handler returns: ring until
	// the test decides, the switch cancels, or the test ends.
	select {
	case f := <-decide:
		f()
	case <-srv.Context().Done():
		p.mu.Lock()
		delete(p.ringing, id)
		delete(p.servers, id)
		p.mu.Unlock()
	case <-p.quit:
		p.gone(req, tx)
	}
}

// gone refuses an INVITE as the phone shuts down, without waiting for
// the ACK: nobody will read it once the phone's socket is closed, and
// the transaction ends with the phone.
func (p *softphone) gone(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	_ = tx.Respond(sipmsg.NewResponseFromRequest(req, sipmsg.StatusTemporarilyUnavailable, "Gone", nil))
	tx.Terminate()
}

func (p *softphone) onAck(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	p.mu.Lock()
	srv := p.servers[req.CallID().Value()]
	p.mu.Unlock()
	if srv != nil {
		_ = srv.ReadAck(req, tx)
	}
}

func (p *softphone) onBye(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	id := req.CallID().Value()
	p.mu.Lock()
	srv, cli := p.servers[id], p.clients[id]
	delete(p.servers, id)
	delete(p.clients, id)
	p.mu.Unlock()
	switch {
	case srv != nil:
		_ = srv.ReadBye(req, tx)
	case cli != nil:
		_ = cli.ReadBye(req, tx)
	default:
		_ = tx.Respond(sipmsg.NewResponseFromRequest(req, sipmsg.StatusCallTransactionDoesNotExists, "Gone", nil))
	}
}

// onOptions answers the switch's in-dialog probe: 200 for a call the
// phone has, 481 for one it does not; nothing when it is deaf.
func (p *softphone) onOptions(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	id := req.CallID().Value()
	p.mu.Lock()
	known := p.servers[id] != nil || p.clients[id] != nil
	deaf := p.deaf
	p.mu.Unlock()
	if deaf {
		return
	}
	code, reason := sipmsg.StatusOK, "OK"
	if !known {
		code, reason = sipmsg.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist"
	}
	_ = tx.Respond(sipmsg.NewResponseFromRequest(req, code, reason, nil))
	select {
	case p.probes <- code:
	default: // the test does not look
	}
}

// forget drops a call as a phone that restarted would, and reports
// whether it had it.
func (p *softphone) forget(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, srv := p.servers[id]
	_, cli := p.clients[id]
	delete(p.servers, id)
	delete(p.clients, id)
	return srv || cli
}

func (p *softphone) server(id string) *sipgo.DialogServerSession {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	srv := p.servers[id]
	if srv == nil {
		p.t.Fatalf("%s: no call %s from the switch", p.user, id)
	}
	return srv
}

// answer picks up a ringing call (the 2xx waits for its ACK on the
// INVITE's handler goroutine).
func (p *softphone) answer(id string) {
	done := make(chan struct{})
	p.mu.Lock()
	srv, decide := p.servers[id], p.ringing[id]
	if decide == nil { // no longer ringing: cancelled, or decided already
		p.mu.Unlock()
		return
	}
	delete(p.ringing, id)
	p.answered[id] = done
	p.mu.Unlock()
	decide <- func() {
		defer close(done)
		_ = srv.RespondSDP(p.sdp)
	}
}

// settle gives the answers the phone sent the time to be acknowledged
// before it goes away: a test can end while the switch's ACK is still on
// its way (a liveness bound), and an answer that waits for its ACK when
// the phone's socket closes waits out sipgo's 64*T1.
func (p *softphone) settle() {
	p.mu.Lock()
	var waiting []chan struct{}
	for _, done := range p.answered {
		waiting = append(waiting, done)
	}
	p.mu.Unlock()
	deadline := time.After(5 * time.Second)
	for _, done := range waiting {
		select {
		case <-done:
		case <-deadline:
			return
		}
	}
}

// acked waits until the phone's answer to a call from the switch is
// done (its ACK came): sipgo's dialog is not safe to use from another
// goroutine while it still sends the 2xx.
func (p *softphone) acked(id string) {
	p.t.Helper()
	p.mu.Lock()
	done := p.answered[id]
	p.mu.Unlock()
	if done == nil {
		return // not answered by this phone: the switch answered our INVITE
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.t.Fatalf("%s: the switch never acknowledged our answer to %s", p.user, id)
	}
}

// refuse answers a ringing call with a failure status.
func (p *softphone) refuse(id string, code int) {
	srv := p.server(id)
	p.mu.Lock()
	decide := p.ringing[id]
	delete(p.ringing, id)
	delete(p.servers, id)
	p.mu.Unlock()
	decide <- func() { _ = srv.Respond(code, "Refused", nil) }
}

// hangUp sends BYE on an established call.
func (p *softphone) hangUp(id string) {
	p.mu.Lock()
	srv, cli := p.servers[id], p.clients[id]
	p.mu.Unlock()
	if srv != nil { // the switch's ACK may still be on its way
		p.acked(id)
	}
	p.mu.Lock()
	delete(p.servers, id)
	delete(p.clients, id)
	p.mu.Unlock()
	ctx, cancel := p.ctx()
	defer cancel()
	var err error
	switch {
	case srv != nil:
		err = srv.Bye(ctx)
	case cli != nil:
		err = cli.Bye(ctx)
	default:
		p.t.Fatalf("%s: no call %s to hang up", p.user, id)
	}
	if err != nil {
		p.t.Fatalf("%s: BYE: %v", p.user, err)
	}
}

// hold re-INVITEs the switch with its description sendonly (held) or
// sendrecv.
func (p *softphone) hold(id string, held bool) {
	p.t.Helper()
	dir := "sendrecv"
	if held {
		dir = "sendonly"
	}
	srv := p.server(id)
	p.acked(id)
	req := sipmsg.NewRequest(sipmsg.INVITE, srv.InviteRequest.Contact().Address)
	req.AppendHeader(sipmsg.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(withDirection(p.sdp, dir))
	ctx, cancel := p.ctx()
	defer cancel()
	res, err := srv.Do(ctx, req)
	if err != nil || !res.IsSuccess() {
		p.t.Fatalf("%s: re-INVITE: %v %v", p.user, res, err)
	}
	ack := sipmsg.NewRequest(sipmsg.ACK, req.Recipient)
	ack.AppendHeader(sipmsg.HeaderClone(req.From()))
	ack.AppendHeader(sipmsg.HeaderClone(res.To()))
	ack.AppendHeader(sipmsg.HeaderClone(req.CallID()))
	ack.AppendHeader(&sipmsg.CSeqHeader{SeqNo: req.CSeq().SeqNo, MethodName: sipmsg.ACK})
	ack.SetDestination(req.Destination())
	if err := p.client.WriteRequest(ack); err != nil {
		p.t.Fatal(err)
	}
}

// call dials a number through the switch, answering its digest
// challenge; done receives the INVITE's outcome (nil: answered).
func (p *softphone) call(number string) (callID string, done <-chan error) {
	p.t.Helper()
	return p.callFrom(p.user, "", number)
}

// callFrom is call with the From header's user and display name given
// (a trunk calls from its callers' numbers). Until the answer, abandon
// (callID) cancels the INVITE (CANCEL); when the phone shuts down it
// gives up without one.
func (p *softphone) callFrom(user, name, number string) (callID string, done <-chan error) {
	p.t.Helper()
	req := sipmsg.NewRequest(sipmsg.INVITE, sipmsg.Uri{Scheme: "sip", User: number, Host: p.sw.Addr().String(), Port: int(p.sw.Port())})
	from := &sipmsg.FromHeader{DisplayName: name, Address: sipmsg.Uri{Scheme: "sip", User: user, Host: p.host}, Params: sipmsg.NewParams()}
	from.Params.Add("tag", sipmsg.GenerateTagN(8))
	req.AppendHeader(from)
	req.AppendHeader(sipmsg.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(p.sdp)
	out := make(chan error, 1)
	base, force := context.WithCancelCause(context.Background())
	ctx, cancel := context.WithTimeout(base, 60*time.Second)
	cli, err := p.dua.WriteInvite(ctx, req)
	if err != nil {
		cancel()
		force(nil)
		p.t.Fatalf("%s: INVITE: %v", p.user, err)
	}
	id := req.CallID().Value()
	p.mu.Lock()
	p.clients[id] = cli
	p.pending[id] = cancel
	p.mu.Unlock()
	p.go_(func() {
		defer cancel()
		quit := make(chan struct{})
		defer close(quit)
		go func() {
			select {
			case <-p.quit:
				force(sipgo.WaitAnswerForceCancelErr)
			case <-quit:
				force(nil)
			}
		}()
		err := cli.WaitAnswer(ctx, sipgo.AnswerOptions{Username: p.user, Password: "demo-sip-" + p.user})
		if err == nil {
			p.mu.Lock()
			hold := p.ackHold
			p.mu.Unlock()
			if hold != nil {
				select {
				case <-hold:
				case <-p.quit:
				}
			}
			err = cli.Ack(ctx)
		}
		p.mu.Lock()
		delete(p.pending, id) // answered (or over): nothing to cancel
		p.mu.Unlock()
		out <- err
	})
	return id, out
}

// holdAcks makes the phone hold the ACK of the answer to its calls
// until release is called.
func (p *softphone) holdAcks() (release func()) {
	hold := make(chan struct{})
	p.mu.Lock()
	p.ackHold = hold
	p.mu.Unlock()
	return sync.OnceFunc(func() { close(hold) })
}

// abandon cancels a call of ours that has not been answered.
func (p *softphone) abandon(id string) {
	p.mu.Lock()
	cancel := p.pending[id]
	p.mu.Unlock()
	if cancel == nil {
		p.t.Fatalf("%s: no call %s of ours", p.user, id)
	}
	cancel()
}

// reinvited waits for the next re-INVITE the phone receives.
func (p *softphone) reinvited() string {
	p.t.Helper()
	select {
	case b := <-p.reinvites:
		return string(b)
	case <-time.After(10 * time.Second):
		p.t.Fatalf("%s: no re-INVITE", p.user)
		return ""
	}
}
