package sip

import (
	"context"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
)

// A phone can vanish in the middle of a call without a BYE: unplugged,
// out of Wi-Fi, restarted. Two things notice it.
//
// Its registration: when a device's last binding expires or is removed
// (deviceChanged), every dialog it has ends, and the engine ends the
// legs with cause 27 (destination out of order), their peers too.
//
// A probe, for a phone that is still registered but lost the call (it
// restarted and registered again, or a NAT binding of the call's own
// transport died): every SessionProbe the B2BUA sends an OPTIONS inside
// each established dialog. Any final answer other than 481 or 408 means
// the phone still has the dialog (RFC 5057: a 405 or 501 is fine too);
// 481 Call/Transaction Does Not Exist, 408, or no answer within
// ProbeTimeout ends the leg with cause 27, without a BYE to a phone that
// either forgot the call or cannot hear.
//
// Why OPTIONS and not RFC 4028 session timers: a session timer needs
// the phone's cooperation (Supported: timer, and a refresher that
// re-INVITEs or UPDATEs in time), and each refresh re-offers the media
// description, with the glare and renegotiation troubles of any
// re-INVITE; many phones and SIPp scenarios do not take part. Every SIP
// user agent answers an in-dialog OPTIONS, without touching the media,
// and only the B2BUA has to keep time. The cost is one small
// transaction per call and SessionProbe.

// Defaults of Config.SessionProbe and Config.ProbeTimeout.
const (
	defaultSessionProbe = 90 * time.Second // RFC 4028's smallest session interval
	defaultProbeTimeout = 32 * time.Second // SIP's transaction timeout (64×T1)
)

// probeConfig is the probing the switch does, from Config.
type probeConfig struct {
	every   time.Duration // <= 0: never
	timeout time.Duration
}

func newProbeConfig(every, timeout time.Duration) probeConfig {
	switch {
	case every == 0:
		every = defaultSessionProbe
	case every < 0:
		every = 0
	}
	if timeout <= 0 {
		timeout = defaultProbeTimeout
	}
	return probeConfig{every: every, timeout: timeout}
}

// startProbe schedules the next probe of an established dialog on the
// engine's clock (tests move a fake one).
func (b *b2bua) startProbe(d *dialog) {
	if b.probe.every <= 0 {
		return
	}
	t := b.e.Clock().AfterFunc(b.probe.every, func() {
		d.mu.Lock()
		d.probe = nil
		d.mu.Unlock()
		b.spawn(func() { b.runProbe(d) })
	})
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ended {
		t.Stop()
		return
	}
	d.probe = t
}

// stopProbe cancels a dialog's pending probe; the caller holds d.mu.
func (d *dialog) stopProbe() {
	if d.probe != nil {
		d.probe.Stop()
		d.probe = nil
	}
}

// runProbe asks the phone whether it still has the dialog, and ends the
// leg when it does not.
func (b *b2bua) runProbe(d *dialog) {
	if _, ended := d.state(); ended {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.probe.timeout)
	defer cancel()
	req := b.inDialog(d, sipmsg.OPTIONS)
	var res *sipmsg.Response
	var err error
	if d.srv != nil {
		res, err = d.srv.Do(ctx, req)
	} else {
		res, err = d.cli.Do(ctx, req)
	}
	switch {
	case b.ctx.Err() != nil: // the switch is closing
		return
	case err != nil:
		b.lose(d, "no answer to an in-dialog OPTIONS: "+err.Error())
	case res.StatusCode == sipmsg.StatusCallTransactionDoesNotExists || res.StatusCode == sipmsg.StatusRequestTimeout:
		b.lose(d, "the phone no longer has the call: "+res.StartLine())
	default:
		b.startProbe(d)
	}
}

// lose ends a dialog whose phone is gone, without signalling it (it
// cannot hear, or has forgotten the call), and has the engine end the
// leg with cause 27. An unanswered INVITE to it is cancelled (its
// goroutine sends CANCEL); a phone's own unanswered call is answered 480.
func (b *b2bua) lose(d *dialog, why string) {
	d.mu.Lock()
	answered, cancel := d.answered, d.cancel
	d.mu.Unlock()
	if !d.end() {
		return
	}
	b.log.Info("sip: phone lost", "device", d.device, "uid", d.uid, "reason", why)
	switch {
	case answered:
	case d.srv != nil:
		_ = d.srv.Respond(sipmsg.StatusTemporarilyUnavailable, "Temporarily Unavailable", nil)
		d.finish()
	case cancel != nil:
		cancel()
	}
	b.spawn(func() { b.lostEvent(d) })
}

// deviceChanged: the registrar's up/down events. A device that went down
// (its last binding expired or was removed) has lost every call it had.
func (b *b2bua) deviceChanged(ev DeviceEvent) {
	b.log.Info("sip device", "device", ev.Device, "up", ev.Up, "reason", ev.Reason)
	if ev.Up {
		return
	}
	for _, d := range b.dialogsOf(ev.Device) {
		b.lose(d, "registration "+ev.Reason)
	}
}

// dialogsOf returns a device's dialogs.
func (b *b2bua) dialogsOf(device string) []*dialog {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ds []*dialog
	for _, d := range b.byUID {
		if d.device == device {
			ds = append(ds, d)
		}
	}
	return ds
}
