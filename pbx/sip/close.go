package sip

import (
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
)

// closeWait bounds how long Close waits for the phones it sent CANCEL to
// (their 200 and 487), so that a phone that went away cannot hold up a
// shutdown; a phone that never got the CANCEL stops ringing at its own
// timeout.
const closeWait = 2 * time.Second

// shutdown ends the dialogs in flight as the switch closes (the engine is
// closed already, so nothing new starts):
//
//   - a phone the B2BUA rings gets CANCEL, so that it stops ringing now
//     rather than at its own timeout with a call nobody can answer;
//   - a phone whose own INVITE is unanswered gets 503 Service Unavailable
//     instead of retransmitting into a closed socket;
//   - established calls are left to the phones: the media flows between
//     them, not through the switch. A replica that takes over cannot
//     adopt them (their dialogs died with this process): it ends their
//     legs with cause 41, and the phones hang up on their own.
//
// It waits up to wait for the cancelled INVITEs to end, then stops
// waiting on every transaction without signalling (the endpoint's close
// ends them).
func (b *b2bua) shutdown(wait time.Duration) {
	b.mu.Lock()
	b.closed = true
	ds := make([]*dialog, 0, len(b.byUID))
	for _, d := range b.byUID {
		ds = append(ds, d)
	}
	b.mu.Unlock()
	var cancelled []*dialog
	for _, d := range ds {
		d.mu.Lock()
		answered, cancel := d.answered, d.cancel
		d.mu.Unlock()
		if answered || !d.end() {
			continue
		}
		switch {
		case d.srv != nil:
			_ = d.srv.Respond(sipmsg.StatusServiceUnavailable, "Service Unavailable", nil)
			d.finish()
		case cancel != nil:
			cancel() // the INVITE's goroutine sends CANCEL (its context's cause is not a forced one)
			cancelled = append(cancelled, d)
		}
	}
	if !awaitCalled(cancelled, wait) {
		b.log.Warn("sip: close: phones did not confirm the CANCEL in time", "waited", wait)
	}
	// Force: INVITEs still waiting return without (another) CANCEL.
	b.stop(sipgo.WaitAnswerForceCancelErr)
	for _, d := range ds {
		d.abandon()
	}
}

// awaitCalled waits until the INVITE transaction of every dialog is
// over, at most wait; it reports whether they all ended.
func awaitCalled(ds []*dialog, wait time.Duration) bool {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for _, d := range ds {
		select {
		case <-d.called:
		case <-deadline.C:
			return false
		}
	}
	return true
}

// closeSweep is how often drain ends the transactions started after the
// endpoint closed.
const closeSweep = 50 * time.Millisecond

// drain waits for the driver's goroutines once the endpoint is closed.
// Closing it ended every transaction, but a goroutine can still start
// one afterwards: sipgo sends the CANCEL of an INVITE whose provisional
// response was already queued when the INVITE's transaction ended, and
// that CANCEL would then wait out its timer (32 s) for a phone nobody
// listens to. So until they are all done, drain ends the transactions
// left every closeSweep.
func (b *b2bua) drain(ep *Endpoint) {
	done := make(chan struct{})
	go func() {
		b.wg.Wait()
		close(done)
	}()
	t := time.NewTicker(closeSweep)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			ep.ua.TransactionLayer().Close()
		}
	}
}
