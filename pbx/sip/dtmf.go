package sip

import (
	"context"
	"fmt"
	"strings"
	"sync"

	sipmsg "github.com/emiago/sipgo/sip"

	"callcontrold/pbx"
)

// DTMF crosses the switch as SIP INFO, not as RFC 4733 telephone
// events: those travel inside the RTP stream, and the switch relays no
// media (the phones send RTP to each other), so the only path the B2BUA
// owns is the signalling. INFO with application/dtmf-relay ("Signal=5",
// "Duration=160") is what desk phones, softphones and carriers' trunks
// accept; application/dtmf (the digit alone) is taken from phones too.

const (
	dtmfRelay = "application/dtmf-relay"
	dtmfPlain = "application/dtmf"
	// dtmfDuration is the tone's length in milliseconds when the API
	// sends it (a key press as phones send it).
	dtmfDuration = 160
)

// CanDtmf: every SIP phone's tones can be sent to its other party.
func (b *b2bua) CanDtmf(device string) bool {
	dev, ok := b.dir.Device(device)
	return ok && dev.SIP != nil
}

// Dtmf sends a tone the API pressed on a leg to that leg's other party,
// a phone or the trunk.
func (b *b2bua) Dtmf(_ context.Context, leg pbx.LegRef, tone string) {
	d := b.leg(leg.UID)
	if d == nil {
		return
	}
	b.relayDtmf(d, tone, dtmfDuration)
}

// relayDtmf queues a tone for the party whose description d's phone was
// given: the one it talks to.
func (b *b2bua) relayDtmf(from *dialog, tone string, duration int) {
	from.mu.Lock()
	gave := from.gave
	from.mu.Unlock()
	to := b.leg(gave)
	if to == nil {
		b.log.Debug("sip: dtmf has no other party", "device", from.device, "tone", tone)
		return
	}
	body := fmt.Appendf(nil, "Signal=%s\r\nDuration=%d\r\n", tone, duration)
	b.infos.send(b, to, body)
}

// infoQueues sends the tones for each dialog in order, one INFO
// transaction at a time (a phone plays them in the order they arrive),
// without holding up whoever pressed them.
type infoQueues struct {
	mu sync.Mutex
	q  map[*dialog][][]byte // bodies waiting; present while a sender runs
}

func (iq *infoQueues) send(b *b2bua, d *dialog, body []byte) {
	iq.mu.Lock()
	defer iq.mu.Unlock()
	if iq.q == nil {
		iq.q = map[*dialog][][]byte{}
	}
	waiting, running := iq.q[d]
	iq.q[d] = append(waiting, body)
	if !running && !b.spawn(func() { iq.drain(b, d) }) {
		delete(iq.q, d)
	}
}

// drain sends a dialog's queued INFOs until none is left.
func (iq *infoQueues) drain(b *b2bua, d *dialog) {
	for {
		iq.mu.Lock()
		bodies := iq.q[d]
		if len(bodies) == 0 {
			delete(iq.q, d)
			iq.mu.Unlock()
			return
		}
		iq.q[d] = bodies[1:]
		iq.mu.Unlock()
		b.info(d, bodies[0])
	}
}

// info sends one INFO with a dtmf-relay body in an answered dialog.
func (b *b2bua) info(d *dialog, body []byte) {
	if answered, ended := d.state(); !answered || ended {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, signalTimeout)
	defer cancel()
	req := b.inDialog(d, sipmsg.INFO)
	req.AppendHeader(sipmsg.NewHeader("Content-Type", dtmfRelay))
	req.SetBody(body)
	var res *sipmsg.Response
	var err error
	if d.srv != nil {
		res, err = d.srv.Do(ctx, req)
	} else {
		res, err = d.cli.Do(ctx, req)
	}
	if err != nil || !res.IsSuccess() {
		b.log.Debug("sip: dtmf INFO refused", "device", d.device, "res", res, "err", err)
	}
}

// onInfo: a phone (or the trunk) sends a tone inside its call; it goes
// on to the other party. Other INFO packages are refused (415).
func (b *b2bua) onInfo(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	d := b.byCall(req.CallID().Value())
	if answered, _ := d.stateOrZero(); !answered || !fromDialogPeer(d, req) {
		respond(tx, req, sipmsg.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	tone, duration, ok := parseDtmf(req)
	if !ok {
		res := sipmsg.NewResponseFromRequest(req, sipmsg.StatusUnsupportedMediaType, "Unsupported Media Type", nil)
		res.AppendHeader(sipmsg.NewHeader("Accept", dtmfRelay+", "+dtmfPlain))
		_ = tx.Respond(res)
		return
	}
	respond(tx, req, sipmsg.StatusOK, "OK")
	b.relayDtmf(d, tone, duration)
}

// stateOrZero is state for a dialog that may be nil (none found).
func (d *dialog) stateOrZero() (answered, ended bool) {
	if d == nil {
		return false, false
	}
	return d.state()
}

// fromDialogPeer checks that an in-dialog request carries the far end's
// tag of that dialog, so that knowing a Call-ID is not enough to inject
// tones into a call.
func fromDialogPeer(d *dialog, req *sipmsg.Request) bool {
	from := req.From()
	if from == nil {
		return false
	}
	tag, _ := from.Params.Get("tag")
	var want string
	switch {
	case d.srv != nil:
		want, _ = d.srv.InviteRequest.From().Params.Get("tag")
	case d.cli != nil && d.cli.InviteResponse != nil:
		want, _ = d.cli.InviteResponse.To().Params.Get("tag")
	}
	return want != "" && tag == want
}

// parseDtmf reads one tone from an INFO: application/dtmf-relay
// ("Signal=5" and an optional "Duration=ms") or application/dtmf (the
// digit alone). Tones other than 0-9, *, # and A-D are refused.
func parseDtmf(req *sipmsg.Request) (tone string, duration int, ok bool) {
	ct := req.ContentType()
	if ct == nil {
		return "", 0, false
	}
	mediaType, _, _ := strings.Cut(strings.ToLower(ct.Value()), ";")
	duration = dtmfDuration
	switch strings.TrimSpace(mediaType) {
	case dtmfPlain:
		tone = strings.TrimSpace(string(req.Body()))
	case dtmfRelay:
		for _, line := range strings.Split(string(req.Body()), "\n") {
			k, v, _ := strings.Cut(line, "=")
			v = strings.TrimSpace(v)
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "signal":
				tone = v
			case "duration":
				if n, err := fmt.Sscanf(v, "%d", &duration); n != 1 || err != nil || duration <= 0 || duration > 10000 {
					duration = dtmfDuration
				}
			}
		}
	default:
		return "", 0, false
	}
	tone = strings.ToUpper(tone)
	if len(tone) != 1 || !strings.Contains("0123456789*#ABCD", tone) {
		return "", 0, false
	}
	return tone, duration, true
}
