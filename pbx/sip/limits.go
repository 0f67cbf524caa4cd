package sip

import (
	"math/bits"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"

	sipmsg "github.com/emiago/sipgo/sip"

	"callcontrold/directory"
	"callcontrold/pbx"
)

// Dialog limits. A phone, or something pretending to be one, must not be
// able to take the switch's memory with calls:
//
//   - per device: the directory's sip.max_dialogs (4 unless set) bounds
//     the dialogs a device takes part in, both directions. A phone's new
//     INVITE over it gets 486 Busy Here with Retry-After; ringing a
//     device at its bound is refused by the engine as busy (17) without
//     an INVITE.
//   - per source address: Config.MaxDialogsPerSource (128 unless set)
//     bounds the dialogs that phones at one IP address started, whatever
//     their devices (a whole office behind one NAT shares it). Over it an
//     INVITE gets 503 Service Unavailable with Retry-After.
//
// A refused INVITE reaches neither the engine nor the store. Refusals
// are counted (Switch.LimitRefusals) and logged at the 1st, 2nd, 4th,
// 8th... of each kind, so a flood cannot flood the log.
//
// Before any of this, a phone's INVITE is digest-authenticated like a
// REGISTER (407, Registrar.Authenticate), and wrong answers count toward
// the same per-source failure allowance: a source that keeps guessing is
// refused with 403 and Retry-After before its INVITEs are even checked.

// defaultMaxDialogsPerSource is Config.MaxDialogsPerSource's default.
const defaultMaxDialogsPerSource = 128

// limitRetryAfter is the Retry-After (seconds) of a refusal for a limit:
// calls end within minutes, a retry sooner would likely meet the bound.
const limitRetryAfter = 30

// dialogLimits counts the dialogs of each device and of each source
// address that started them.
type dialogLimits struct {
	perSource int

	mu      sync.Mutex
	devices map[string]int
	sources map[netip.Addr]int

	refusedDevice, refusedSource atomic.Int64
}

func newDialogLimits(perSource int) *dialogLimits {
	if perSource <= 0 {
		perSource = defaultMaxDialogsPerSource
	}
	return &dialogLimits{perSource: perSource, devices: map[string]int{}, sources: map[netip.Addr]int{}}
}

// slot is one dialog's share of the limits, given back once, when the
// dialog ends. A nil slot counts nothing.
type slot struct {
	l      *dialogLimits
	device string
	src    netip.Addr // the source that started the dialog; invalid for the B2BUA's own INVITEs
	once   sync.Once
}

// limitHit names the bound a new dialog would cross.
type limitHit int

const (
	withinLimits limitHit = iota
	deviceFull
	sourceFull
)

// take counts a new dialog of device (at most maxDevice) started from
// src (at most perSource; an invalid src is not counted), or says which
// bound it would cross.
func (l *dialogLimits) take(device string, maxDevice int, src netip.Addr) (*slot, limitHit) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.devices[device] >= maxDevice {
		l.refusedDevice.Add(1)
		return nil, deviceFull
	}
	if src.IsValid() && l.sources[src] >= l.perSource {
		l.refusedSource.Add(1)
		return nil, sourceFull
	}
	l.devices[device]++
	if src.IsValid() {
		l.sources[src]++
	}
	return &slot{l: l, device: device, src: src}, withinLimits
}

// full says whether a device has no dialog to spare.
func (l *dialogLimits) full(device string, maxDevice int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.devices[device] >= maxDevice
}

func (s *slot) release() {
	if s == nil {
		return
	}
	s.once.Do(func() {
		l := s.l
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.devices[s.device]--; l.devices[s.device] <= 0 {
			delete(l.devices, s.device)
		}
		if s.src.IsValid() {
			if l.sources[s.src]--; l.sources[s.src] <= 0 {
				delete(l.sources, s.src)
			}
		}
	})
}

// maxDialogs is a device's bound (the directory's, for a SIP device).
func maxDialogs(dev *directory.Device) int {
	if dev == nil || dev.SIP == nil || dev.SIP.MaxDialogs <= 0 {
		return directory.DefaultMaxDialogs
	}
	return dev.SIP.MaxDialogs
}

// admit takes a slot for a phone's new INVITE, or answers it (486 or 503
// with Retry-After) and returns nil.
func (b *b2bua) admit(req *sipmsg.Request, tx sipmsg.ServerTransaction, dev *directory.Device) *slot {
	var src netip.Addr
	if ap, err := netip.ParseAddrPort(req.Source()); err == nil {
		src = ap.Addr().Unmap()
	}
	s, hit := b.limits.take(dev.Name, maxDialogs(dev), src)
	if hit == withinLimits {
		return s
	}
	code, reason := sipmsg.StatusBusyHere, "Busy Here (too many calls on this device)"
	n := b.limits.refusedDevice.Load()
	if hit == sourceFull {
		code, reason = sipmsg.StatusServiceUnavailable, "Service Unavailable (too many calls from this address)"
		n = b.limits.refusedSource.Load()
	}
	if bits.OnesCount64(uint64(n)) == 1 { // the 1st, 2nd, 4th, 8th...
		b.log.Warn("sip: INVITE refused: dialog limit", "device", dev.Name, "source", src.String(),
			"max_device", maxDialogs(dev), "max_source", b.limits.perSource, "status", code, "refused_so_far", n)
	}
	res := sipmsg.NewResponseFromRequest(req, code, reason, nil)
	res.AppendHeader(sipmsg.NewHeader("Retry-After", strconv.Itoa(limitRetryAfter)))
	if err := tx.Respond(res); err != nil {
		b.log.Debug("sip: refusal not sent", "err", err)
	}
	awaitRefusalAck(tx, req)
	return nil
}

// LimitRefusals is how many phone INVITEs the dialog limits refused so
// far, per device bound and per source bound.
func (s *Switch) LimitRefusals() (device, source int64) {
	return s.b.limits.refusedDevice.Load(), s.b.limits.refusedSource.Load()
}

// deviceFull is Refuse's answer for a device with no dialog to spare.
func (b *b2bua) deviceFull(device string) int32 {
	dev, _ := b.dir.Device(device)
	if b.limits.full(device, maxDialogs(dev)) {
		return pbx.CauseUserBusy
	}
	return 0
}
