package sip

import (
	"context"
	"errors"
	"sync"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"

	"callcontrold/pbx"
)

// A device registered from several contacts (a desk phone and a soft
// phone on the same account) rings on all of them: the B2BUA forks, one
// INVITE (its own Call-ID) per binding, as a forking proxy would
// (RFC 3261 16.7). The first 2xx wins and becomes the leg's dialog; the
// other branches get CANCEL; a 2xx that still comes from one of them
// (it crossed the CANCEL, or lost the race) gets ACK and BYE, so no
// phone is left in a call nobody hears. When every branch refuses, the
// leg ends with the cause of the best final response.

// errAnsweredElsewhere ends the other branches of a fork once one
// answered: their INVITEs are cancelled.
var errAnsweredElsewhere = errors.New("sip: answered on another binding")

// branchOutcome is how one branch of a fork ended without winning.
type branchOutcome struct {
	status int   // the phone's final refusal; 0 when it gave none
	cause  int32 // the cause that refusal (or its absence) carries
}

// fork rings every binding at once and settles the leg with the first
// answer, or the best refusal once all branches refused. It returns
// when every branch is over.
func (d *dialog) fork(ctx context.Context, reqs []*sipmsg.Request) {
	branches, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	outcomes := make([]branchOutcome, len(reqs))
	won := make([]bool, len(reqs))
	var wg sync.WaitGroup
	for i, req := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			won[i], outcomes[i] = d.branch(branches, req, func() { stop(errAnsweredElsewhere) })
		}()
	}
	wg.Wait()
	for _, w := range won {
		if w {
			return
		}
	}
	switch {
	case errors.Is(context.Cause(ctx), errNoAnswer):
		d.refused(pbx.CauseNoAnswer)
	case ctx.Err() != nil: // the engine ended the leg (CANCELs sent) or the switch closed
	default:
		d.refused(bestOutcome(outcomes).cause)
	}
}

// branch runs one binding's INVITE. It reports whether this branch's
// answer became the leg's; won is called first when it did.
func (d *dialog) branch(ctx context.Context, req *sipmsg.Request, won func()) (bool, branchOutcome) {
	b := d.b
	cli, err := b.dua.WriteInvite(ctx, req)
	if err != nil {
		return false, branchOutcome{cause: pbx.CauseOutOfOrder}
	}
	err = waitAnswer(ctx, cli, d.answerOptions(req))
	var resErr *sipgo.ErrDialogResponse
	switch {
	case err == nil:
		if !d.adopt(cli, req) {
			b.dropAnswer(d.device, cli)
			return false, branchOutcome{cause: pbx.CauseAnsweredElse}
		}
		won()
		d.mu.Lock()
		ended := d.ended
		d.mu.Unlock()
		d.established(ended)
		return true, branchOutcome{}
	case errors.As(err, &resErr):
		return false, branchOutcome{status: resErr.Res.StatusCode, cause: responseCause(resErr.Res)}
	case ctx.Err() != nil:
		if res := cli.InviteResponse; res != nil && res.IsSuccess() { // it crossed our CANCEL
			b.dropAnswer(d.device, cli)
		}
		return false, branchOutcome{cause: pbx.CauseNoAnswer}
	}
	return false, branchOutcome{cause: pbx.CauseNoAnswer}
}

// adopt makes an answered branch the leg's dialog, unless another
// branch's answer came first or the engine ended the leg.
func (d *dialog) adopt(cli *sipgo.DialogClientSession, req *sipmsg.Request) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.answered || d.ended {
		return false
	}
	d.cli = cli
	d.callID = req.CallID().Value()
	d.local, d.answered, d.cancel = cli.InviteResponse.Body(), true, nil
	d.b.file(d) // under d.mu, as call files its Call-ID
	return true
}

// dropAnswer acknowledges a 2xx nobody wants (a losing branch's) and
// hangs that call up at once.
func (b *b2bua) dropAnswer(device string, cli *sipgo.DialogClientSession) {
	if err := cli.Ack(b.ctx); err != nil {
		b.log.Debug("sip: ACK of a losing branch failed", "device", device, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, signalTimeout)
	defer cancel()
	if err := cli.Bye(ctx); err != nil {
		b.log.Debug("sip: BYE of a losing branch failed", "device", device, "err", err)
	}
}

// bestOutcome picks the response the leg ends with when every branch
// refused (RFC 3261 16.7 step 6, as proxies apply it): a 6xx (global:
// the user declined everywhere) first, then a 4xx, busy (486) ahead of
// the others since it says the most, then a 5xx; branches that gave no
// final response count last.
func bestOutcome(outs []branchOutcome) branchOutcome {
	rank := func(o branchOutcome) int {
		switch {
		case o.status >= 600:
			return 0
		case o.status == sipmsg.StatusBusyHere:
			return 1
		case o.status >= 400 && o.status < 500:
			return 2
		case o.status >= 500:
			return 3
		}
		return 4
	}
	best := outs[0]
	for _, o := range outs[1:] {
		if rank(o) < rank(best) {
			best = o
		}
	}
	return best
}
