package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"

	"callcontrold/pbx"
)

// TrunkConfig is the SIP trunk external numbers go out through, and the
// only source calls from outside are taken from.
type TrunkConfig struct {
	// URI is the trunk's address: "sip:host[:port][;transport=udp|tcp]"
	// (port 5060, UDP when not given). Its user part, if any, is ignored:
	// the dialled number is the Request-URI's user.
	URI string
	// Username and Password answer the trunk's digest challenges (401 or
	// 407) to our INVITEs; empty Password: no credentials. The password
	// is never logged.
	Username, Password string
}

// trunkResolveTimeout bounds the lookup of the trunk's host at start.
const trunkResolveTimeout = 5 * time.Second

// trunk is a parsed TrunkConfig. Calls from the trunk are recognised by
// their source address: one of the addresses its host resolved to when
// the switch started (a trunk authenticates by address, as carriers do;
// a phone's INVITE from any other address is challenged as usual).
type trunk struct {
	uri       sipmsg.Uri // scheme, host, port: the Request-URI's host part
	transport string     // "UDP" or "TCP"
	dest      string     // host:port requests are sent to
	addrs     []netip.Addr
	auth      sipgo.AnswerOptions
}

// newTrunk parses and resolves a trunk's configuration.
func newTrunk(ctx context.Context, cfg TrunkConfig) (*trunk, error) {
	var u sipmsg.Uri
	if err := sipmsg.ParseUri(cfg.URI, &u); err != nil || u.Scheme != "sip" || u.Host == "" {
		return nil, fmt.Errorf("sip trunk %q: want sip:host[:port][;transport=udp|tcp]", cfg.URI)
	}
	transport := "UDP"
	if v, ok := u.UriParams.Get("transport"); ok {
		transport = strings.ToUpper(v)
	}
	if transport != "UDP" && transport != "TCP" {
		return nil, fmt.Errorf("sip trunk %q: transport must be udp or tcp", cfg.URI)
	}
	if u.Port == 0 {
		u.Port = 5060
	}
	addrs, err := resolveHost(ctx, u.Host)
	if err != nil {
		return nil, fmt.Errorf("sip trunk %q: %w", cfg.URI, err)
	}
	if cfg.Password != "" && cfg.Username == "" {
		return nil, fmt.Errorf("sip trunk %q: a password needs a username", cfg.URI)
	}
	t := &trunk{
		uri:       sipmsg.Uri{Scheme: "sip", Host: u.Host, Port: u.Port},
		transport: transport,
		dest:      netip.AddrPortFrom(addrs[0], uint16(u.Port)).String(),
		addrs:     addrs,
		auth:      sipgo.AnswerOptions{Username: cfg.Username, Password: cfg.Password},
	}
	return t, nil
}

func resolveHost(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, trunkResolveTimeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("cannot resolve %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%s resolves to no address", host)
	}
	for i, a := range addrs {
		addrs[i] = a.Unmap()
	}
	return addrs, nil
}

// String is the trunk's address, for logs (no credentials).
func (t *trunk) String() string { return t.uri.String() + ";transport=" + strings.ToLower(t.transport) }

// owns says whether a request from src ("ip:port") came from the trunk.
func (t *trunk) owns(src string) bool {
	ap, err := netip.ParseAddrPort(src)
	if err != nil {
		return false
	}
	for _, a := range t.addrs {
		if a == ap.Addr().Unmap() {
			return true
		}
	}
	return false
}

// remoteKey is the key a trunk dialog is filed under beside the legs'
// dialogs: minus its external party's id. Leg uids are positive, so the
// two never meet, and a pbx.Party finds its dialog with one lookup.
func remoteKey(id pbx.RemoteID) int64 { return -int64(id) }

// partyKey is the dialog key of a bridge's party: a leg's uid, or the
// key of an external party's trunk dialog.
func partyKey(p pbx.Party) int64 {
	if p.Leg.UID != 0 {
		return p.Leg.UID
	}
	return remoteKey(p.Remote)
}

// remote is the external party of a trunk dialog; 0 for a phone's.
func (d *dialog) remote() pbx.RemoteID {
	if d.uid < 0 {
		return pbx.RemoteID(-d.uid)
	}
	return 0
}

// answerOptions are the credentials the dialog's INVITE answers a
// challenge with: the trunk's for a trunk dialog, none toward phones.
func (d *dialog) answerOptions(req *sipmsg.Request) sipgo.AnswerOptions {
	if d.remote() != 0 && d.b.trunk != nil {
		return d.b.trunk.auth
	}
	return sipgo.AnswerOptions{OnResponse: func(res *sipmsg.Response) error { return d.provisional(req, res) }}
}

// Originate calls an external number through the trunk, offering the
// calling leg's description.
func (b *b2bua) Originate(_ context.Context, o pbx.Originate) {
	if b.trunk == nil { // Refuse turned the number away; the engine does not ask
		b.spawn(func() { _, err := b.e.RemoteEnded(b.ctx, o.Remote, pbx.CauseNoRoute); b.report("originate", err) })
		return
	}
	var sdp []byte
	if from := b.leg(o.From.UID); from != nil {
		from.mu.Lock()
		sdp = from.local
		from.mu.Unlock()
	}
	if sdp == nil {
		sdp = blackHole(b.ep.Addr().Addr().String())
	}
	req := b.trunkInvite(o)
	req.SetBody(sdp)
	ctx, cancelCause := context.WithCancelCause(b.ctx)
	cancel := func() { cancelCause(nil) }
	d := &dialog{b: b, uid: remoteKey(o.Remote), device: "trunk", gave: o.From.UID, cancel: cancel, called: make(chan struct{})}
	b.file(d)
	// The engine times out the phones it rings; an external number is
	// the driver's to give up on, as the simulated far end does (19).
	timer := b.e.Clock().AfterFunc(b.e.RingTimeout(), func() { cancelCause(errNoAnswer) })
	if !b.spawn(func() {
		defer close(d.called)
		defer timer.Stop()
		defer cancel()
		d.call(ctx, req)
	}) {
		timer.Stop()
		cancel()
		close(d.called)
	}
}

// errNoAnswer ends the wait for an external number's answer after the
// ring timeout: the INVITE is cancelled and the party ends with 19.
var errNoAnswer = errors.New("sip: no answer within the ring timeout")

// trunkInvite builds the INVITE of an external number: Request-URI
// sip:number@trunk, From the caller's name and number.
func (b *b2bua) trunkInvite(o pbx.Originate) *sipmsg.Request {
	t := b.trunk
	target := sipmsg.Uri{Scheme: "sip", User: o.Number, Host: t.uri.Host, Port: t.uri.Port}
	if t.transport != "UDP" {
		target.UriParams = sipmsg.NewParams()
		target.UriParams.Add("transport", strings.ToLower(t.transport))
	}
	req := sipmsg.NewRequest(sipmsg.INVITE, target)
	req.SetTransport(t.transport)
	req.SetDestination(t.dest)
	if t.transport == "UDP" { // from the endpoint's socket: the address the trunk knows us by
		req.Laddr = sipmsg.Addr{IP: b.ep.Addr().Addr().AsSlice(), Port: int(b.ep.Addr().Port())}
	}
	host := b.ep.Addr().Addr().String()
	from := &sipmsg.FromHeader{DisplayName: o.CallerName, Address: sipmsg.Uri{Scheme: "sip", User: o.CallerNumber, Host: host}, Params: sipmsg.NewParams()}
	from.Params.Add("tag", sipmsg.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(&sipmsg.ToHeader{Address: target, Params: sipmsg.NewParams()})
	req.AppendHeader(sipmsg.NewHeader("Content-Type", "application/sdp"))
	return req
}

// HangupRemote ends an external party's trunk dialog: a refusal of the
// trunk's INVITE, CANCEL of ours, or BYE.
func (b *b2bua) HangupRemote(_ context.Context, id pbx.RemoteID, cause int32) {
	b.hangupDialog(b.leg(remoteKey(id)), cause)
}

// onTrunkInvite: a call from outside. The dialled number is the
// Request-URI's user (the carrier's DID), routed by the dial plan like
// the simulator's inbound calls; the caller's number and name are the
// From header's. The trunk's offer is what the phones that ring get.
func (b *b2bua) onTrunkInvite(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	srv, err := b.dua.ReadInvite(req, tx)
	if err != nil {
		respond(tx, req, sipmsg.StatusBadRequest, err.Error())
		return
	}
	d := &dialog{b: b, device: "trunk", srv: srv, srvTx: tx, callID: req.CallID().Value(), local: req.Body(), final: make(chan struct{})}
	if err := srv.Respond(sipmsg.StatusTrying, "Trying", nil); err != nil {
		return
	}
	tx.OnCancel(func(*sipmsg.Request) {
		// sipgo answered CANCEL (200) and the INVITE (487): the caller
		// hung up while it rang.
		if id := d.remoteID(); id != 0 && d.end() {
			b.spawn(func() { _, err := b.e.RemoteEnded(b.ctx, id, pbx.CauseNormalClearing); b.report("trunk cancel", err) })
		}
	})
	from := req.From()
	if err := pbx.CheckExternal(from.Address.User); err != nil {
		// The engine names an external party by its number.
		d.end()
		_ = srv.Respond(sipmsg.StatusForbidden, "Caller Number Required", nil)
		return
	}
	_, _, err = b.e.InboundBind(b.ctx, from.Address.User, from.DisplayName, req.Recipient.User, func(id pbx.RemoteID) {
		d.mu.Lock()
		d.uid = remoteKey(id)
		d.mu.Unlock()
		b.file(d)
	})
	if err != nil {
		d.end()
		code, reason := statusOf(err)
		_ = srv.Respond(code, reason, nil)
		return
	}
	select { // the INVITE's transaction lives as long as this handler
	case <-d.final:
	case <-srv.Context().Done():
	case <-b.ctx.Done():
	}
}

// remoteID reads a trunk dialog's external party under its lock: an
// inbound call learns it while the trunk may already cancel.
func (d *dialog) remoteID() pbx.RemoteID {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.remote()
}

// answeredEvent reports a dialog's 2xx: a phone answered, or the
// external number did.
func (b *b2bua) answeredEvent(d *dialog) {
	if id := d.remote(); id != 0 {
		_, err := b.e.RemoteAnswered(b.ctx, id)
		b.report("trunk answer", err)
		return
	}
	_, err := b.e.Answered(b.ctx, d.uid)
	b.report("answer", err)
}

// refusedEvent reports a final refusal of our INVITE with its cause.
func (b *b2bua) refusedEvent(d *dialog, cause int32) {
	if id := d.remote(); id != 0 {
		_, err := b.e.RemoteEnded(b.ctx, id, cause)
		b.report("trunk refused", err)
		return
	}
	_, err := b.e.Refused(b.ctx, d.uid, cause)
	b.report("refused", err)
}

// byeEvent reports a BYE: the phone hung up, or the external party did
// (with the cause its Reason header gives, 16 without one).
func (b *b2bua) byeEvent(d *dialog, bye *sipmsg.Request) {
	if id := d.remote(); id != 0 {
		_, err := b.e.RemoteEnded(b.ctx, id, reasonCause(bye, pbx.CauseNormalClearing))
		b.report("trunk bye", err)
		return
	}
	_, err := b.e.HungUp(b.ctx, d.uid)
	b.report("bye", err)
}

// lostEvent reports a dialog whose far end is gone (27): a phone that
// vanished, or a trunk that no longer has the call.
func (b *b2bua) lostEvent(d *dialog) {
	if id := d.remote(); id != 0 {
		_, err := b.e.RemoteEnded(b.ctx, id, pbx.CauseOutOfOrder)
		b.report("trunk lost", err)
		return
	}
	_, err := b.e.Lost(b.ctx, d.uid, pbx.CauseOutOfOrder)
	b.report("lost", err)
}

// responseCause is the cause a final refusal carries: its Reason
// header's Q.850 cause (RFC 3326) when it has one, else the status
// code's.
func responseCause(res *sipmsg.Response) int32 {
	return reasonCause(res, causeOf(res.StatusCode))
}

// reasonCause reads "Reason: Q.850;cause=N" from a message; def when it
// has none or it is not a Q.850 cause.
func reasonCause(m sipmsg.Message, def int32) int32 {
	for _, h := range m.GetHeaders("Reason") {
		for _, reason := range strings.Split(h.Value(), ",") {
			params := strings.Split(reason, ";")
			if !strings.EqualFold(strings.TrimSpace(params[0]), "Q.850") {
				continue
			}
			for _, p := range params[1:] {
				k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
				if !strings.EqualFold(k, "cause") {
					continue
				}
				if n, err := strconv.Atoi(v); err == nil && pbx.CheckCause(int32(n)) == nil {
					return int32(n)
				}
			}
		}
	}
	return def
}
