package sip

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	sipmsg "github.com/emiago/sipgo/sip"

	"callcontrold/callstore"
	"callcontrold/pbx"
)

// A phone transfers a call with REFER inside the call's dialog (RFC 3515,
// the flows of RFC 5589). The B2BUA is the transferee toward the phone:
// it performs the transfer in the engine, exactly as the API's Xfer
// (Refer-To a number: blind) or AtXfer (Refer-To with Replaces naming the
// phone's other call: attended) does, so the events are the same. Then it
// answers 202, reports the outcome in NOTIFYs (message/sipfrag: "100
// Trying", then the final status, which ends the implicit subscription)
// and ends the transferor's dialog with BYE unless the phone hung up
// first (baresip sends BYE as soon as it reads the 202).
//
// The final NOTIFY does not wait for the transfer target to answer: the
// engine ends the transferor's leg in the same revision as the transfer
// (the API's Xfer does the same), so there is no call left to report a
// later failure on. It says 200 when the transferred party now rings or
// talks to the target, and the target's refusal (486, 404, ...) when the
// engine could not ring it.

// referState is a dialog's REFER in progress. While active, the engine's
// Hangup of the dialog is held back (deferred) so that the NOTIFYs still
// travel inside a live dialog; the REFER's handler then sends the BYE.
type referState struct {
	active   bool
	deferred bool  // the engine ended the leg meanwhile
	cause    int32 // with this cause
}

// referTarget is what a Refer-To header asks for: a number to dial, or
// (attended) the phone's other dialog to bridge with.
type referTarget struct {
	number   string
	replaces *replaces
}

// replaces is a Replaces header (RFC 3891) carried in a Refer-To URI.
type replaces struct {
	callID, toTag, fromTag string
}

// referError is a REFER refused before anything changed.
type referError struct {
	code   int
	reason string
}

func (e *referError) Error() string { return fmt.Sprintf("%d %s", e.code, e.reason) }

func badRefer(reason string) *referError {
	return &referError{code: sipmsg.StatusBadRequest, reason: reason}
}

// onRefer: a phone asks the B2BUA to transfer the other party of one of
// its calls.
func (b *b2bua) onRefer(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	if to := req.To(); to == nil || !to.Params.Has("tag") {
		respond(tx, req, sipmsg.StatusForbidden, "REFER Only Inside A Call")
		return
	}
	d := b.byCall(req.CallID().Value())
	if d == nil {
		respond(tx, req, sipmsg.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	dev := b.reg.Authenticate(req, tx)
	if dev == nil {
		return // answered: challenged or refused
	}
	if dev.Name != d.device {
		respond(tx, req, sipmsg.StatusForbidden, "Not Your Call")
		return
	}
	target, other, rerr := b.referTarget(req, d)
	if rerr != nil {
		respond(tx, req, rerr.code, rerr.reason)
		return
	}
	if !d.startRefer() {
		respond(tx, req, 491, "Request Pending")
		return
	}
	final, err := b.transfer(d, target, other)
	if err != nil {
		b.finishRefer(d)
		code, reason := referStatus(err)
		b.log.Debug("sip: REFER refused", "device", d.device, "err", err)
		respond(tx, req, code, reason)
		return
	}
	res := sipmsg.NewResponseFromRequest(req, sipmsg.StatusAccepted, "Accepted", nil)
	subscribe := !strings.EqualFold(headerValue(req, "Refer-Sub"), "false") // RFC 4488
	if !subscribe {
		res.AppendHeader(sipmsg.NewHeader("Refer-Sub", "false"))
	}
	if err := tx.Respond(res); err != nil {
		b.log.Debug("sip: REFER's 202 not sent", "device", d.device, "err", err)
	}
	event := "refer"
	if cseq := req.CSeq(); cseq != nil {
		event += ";id=" + fmt.Sprint(cseq.SeqNo)
	}
	if !b.spawn(func() {
		if subscribe {
			b.notify(d, event, "SIP/2.0 100 Trying", "active;expires=60")
			b.notify(d, event, final, "terminated;reason=noresource")
		}
		b.finishRefer(d)
	}) {
		b.finishRefer(d)
	}
}

// referTarget reads the REFER's Refer-To: a number, or Replaces naming
// another dialog of the same phone (returned as other).
func (b *b2bua) referTarget(req *sipmsg.Request, d *dialog) (referTarget, *dialog, *referError) {
	target, rerr := parseReferTo(req)
	if rerr != nil {
		return referTarget{}, nil, rerr
	}
	r := target.replaces
	if r == nil {
		return target, nil, nil
	}
	other := b.byCall(r.callID)
	if other == nil || other.device != d.device || !other.hasPhoneTag(r.toTag, r.fromTag) {
		return referTarget{}, nil, &referError{code: sipmsg.StatusCallTransactionDoesNotExists, reason: "Replaced Call Does Not Exist"}
	}
	return target, other, nil
}

// parseReferTo parses the one Refer-To header of a REFER (or its
// compact form r): a SIP URI whose user part is the number to dial, with
// an optional Replaces header.
func parseReferTo(req *sipmsg.Request) (referTarget, *referError) {
	hs := append(req.GetHeaders("Refer-To"), req.GetHeaders("r")...)
	if len(hs) != 1 {
		return referTarget{}, badRefer("Exactly One Refer-To Needed")
	}
	var uri sipmsg.Uri
	switch h := hs[0].(type) {
	case *sipmsg.ReferToHeader:
		uri = h.Address
	default:
		if _, err := sipmsg.ParseAddressValue(h.Value(), &uri, nil); err != nil {
			return referTarget{}, badRefer("Malformed Refer-To")
		}
	}
	if s := strings.ToLower(uri.Scheme); s != "sip" && s != "sips" {
		return referTarget{}, &referError{code: 416, reason: "Unsupported URI Scheme"}
	}
	t := referTarget{number: uri.User}
	if v, ok := uri.Headers.Get("Replaces"); ok {
		r, err := parseReplaces(v)
		if err != nil {
			return referTarget{}, badRefer("Malformed Replaces")
		}
		t.replaces = r
	} else if t.number == "" {
		return referTarget{}, badRefer("Refer-To Has No Number")
	}
	return t, nil
}

// parseReplaces parses an escaped Replaces value:
// "call-id;to-tag=x;from-tag=y" (RFC 3891), both tags required.
func parseReplaces(escaped string) (*replaces, error) {
	v, err := url.PathUnescape(escaped)
	if err != nil {
		return nil, err
	}
	parts := strings.Split(v, ";")
	r := &replaces{callID: strings.TrimSpace(parts[0])}
	for _, p := range parts[1:] {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch strings.ToLower(k) {
		case "to-tag":
			r.toTag = val
		case "from-tag":
			r.fromTag = val
		}
	}
	if r.callID == "" || r.toTag == "" || r.fromTag == "" {
		return nil, errors.New("replaces: call-id, to-tag and from-tag are required")
	}
	return r, nil
}

// headerValue is the value of a request's header, "" when absent.
func headerValue(req *sipmsg.Request, name string) string {
	if h := req.GetHeader(name); h != nil {
		return strings.TrimSpace(h.Value())
	}
	return ""
}

// hasPhoneTag reports whether one of a Replaces header's tags is the
// phone's own tag in this dialog: the phone names a dialog it is in.
func (d *dialog) hasPhoneTag(tags ...string) bool {
	d.mu.Lock()
	srv, cli := d.srv, d.cli
	answered := d.answered
	d.mu.Unlock()
	var tag string
	switch {
	case srv != nil:
		tag, _ = srv.InviteRequest.From().Params.Get("tag")
	case cli != nil && answered:
		tag, _ = cli.InviteResponse.To().Params.Get("tag")
	}
	for _, t := range tags {
		if tag != "" && t == tag {
			return true
		}
	}
	return false
}

// transfer performs the REFER in the engine and returns the status line
// of the final NOTIFY.
func (b *b2bua) transfer(d *dialog, t referTarget, other *dialog) (string, error) {
	if other != nil {
		if _, _, err := b.e.AtXfer(b.ctx, d.uid, other.uid); err != nil {
			return "", err
		}
		return "SIP/2.0 200 OK", nil
	}
	_, moved, err := b.e.Xfer(b.ctx, d.uid, t.number)
	if err != nil {
		return "", err
	}
	if moved != nil && moved.State == callstore.StateDead {
		code, reason := statusOfCause(moved.Cause)
		return fmt.Sprintf("SIP/2.0 %d %s", code, reason), nil
	}
	return "SIP/2.0 200 OK", nil
}

// referStatus is the response to a REFER the engine refused.
func referStatus(err error) (int, string) {
	switch {
	case errors.Is(err, pbx.ErrNotFound):
		return sipmsg.StatusCallTransactionDoesNotExists, "Call Does Not Exist"
	case errors.Is(err, pbx.ErrInvalidNumber):
		return sipmsg.StatusNotFound, "Not Found"
	case errors.Is(err, pbx.ErrInvalidArgument):
		return sipmsg.StatusBadRequest, "Cannot Transfer To That Call"
	case errors.Is(err, pbx.ErrBadState):
		return sipmsg.StatusForbidden, "Call Cannot Be Transferred Now"
	case errors.Is(err, pbx.ErrNotSupported):
		return sipmsg.StatusForbidden, "Transfer Not Supported"
	case errors.Is(err, pbx.ErrLimit):
		return sipmsg.StatusBusyHere, "Busy Here"
	}
	return sipmsg.StatusServiceUnavailable, "Service Unavailable"
}

// startRefer marks a REFER in progress on the dialog; false if one
// already is, or the dialog ended.
func (d *dialog) startRefer() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.refer.active || d.ended {
		return false
	}
	d.refer = referState{active: true}
	return true
}

// deferHangup holds back the engine's Hangup of a dialog whose REFER is
// in progress; finishRefer performs it.
func (d *dialog) deferHangup(cause int32) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.refer.active {
		return false
	}
	d.refer.deferred, d.refer.cause = true, cause
	return true
}

// finishRefer ends the REFER in progress and performs the Hangup the
// engine decided meanwhile (the BYE to the transferor).
func (b *b2bua) finishRefer(d *dialog) {
	d.mu.Lock()
	r := d.refer
	d.refer = referState{}
	d.mu.Unlock()
	if r.deferred {
		b.Hangup(b.ctx, pbx.LegRef{UID: d.uid, Device: d.device}, r.cause)
	}
}

// notify sends one NOTIFY of the REFER's implicit subscription, unless
// the phone already hung up.
func (b *b2bua) notify(d *dialog, event, frag, state string) {
	if _, ended := d.state(); ended {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, signalTimeout)
	defer cancel()
	req := b.inDialog(d, sipmsg.NOTIFY)
	req.AppendHeader(sipmsg.NewHeader("Event", event))
	req.AppendHeader(sipmsg.NewHeader("Subscription-State", state))
	req.AppendHeader(sipmsg.NewHeader("Content-Type", "message/sipfrag;version=2.0"))
	req.SetBody([]byte(frag + "\r\n"))
	var res *sipmsg.Response
	var err error
	if d.srv != nil {
		res, err = d.srv.Do(ctx, req)
	} else {
		res, err = d.cli.Do(ctx, req)
	}
	if err != nil || !res.IsSuccess() {
		// A phone that hung up on the 202 answers 481: nothing is lost.
		b.log.Debug("sip: NOTIFY not accepted", "device", d.device, "res", res, "err", err)
	}
}
