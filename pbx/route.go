package pbx

import (
	"fmt"
	"slices"
	"strings"

	"callcontrold/callstore"
	"callcontrold/directory"
	"callcontrold/internal/echo"
)

// dest is a resolved number: an extension, or an external number.
type dest struct {
	ext    *directory.Extension
	number string
}

type mode uint8

const (
	modeDial    mode = iota // a new leg dials: a park orbit picks up
	modeXfer                // the origin is transferred: TRANSFER event
	modeSend                // the origin is redirected before answer
	modeInbound             // an external caller arrives
)

// resolve checks a number before anything changes, so a bad number fails
// the operation without a revision.
func (e *Engine) resolve(number string) (dest, error) {
	if x, ok := e.dir.Extension(number); ok {
		return dest{ext: x, number: number}, nil
	}
	if err := CheckExternal(number); err != nil {
		return dest{}, err
	}
	return dest{number: number}, nil
}

// CheckExternal accepts what a trunk could dial: digits, an optional
// leading +, at least 5 digits (shorter numbers are the internal dial
// plan's) and at most 32 charactere.
func CheckExternal(number string) error {
	digits := strings.TrimPrefix(number, "+")
	switch {
	case number == "":
		return fmt.Errorf("%w: empty number", ErrInvalidNumber)
	case len(number) > 32:
		return fmt.Errorf("%w: %s is longer than 32 characters", ErrInvalidNumber, echo.Quote(number))
	case strings.Trim(digits, "0123456789") != "" || digits == "":
		return fmt.Errorf("%w: %s: only digits and a leading + are allowed", ErrInvalidNumber, echo.Quote(number))
	case len(digits) < 5:
		return fmt.Errorf("%w: %s is not an extension of this PBX", ErrInvalidNumber, echo.Quote(number))
	}
	return nil
}

// route connects an origin (a leg, or an external caller) to a
// destination and returns the legs it created. The origin must be
// unlinked (no peer, no external party, no ringer).
func (e *Engine) route(t *tx, o origin, d dest, m mode) []*leg {
	id := e.originIdent(o)
	transfer := m == modeXfer && o.leg != nil
	if o.leg != nil {
		t.touch(o.leg)
	}
	if d.ext == nil {
		e.routeExternal(t, o, d.number, transfer)
		return nil
	}
	ref := e.refs[d.ext.Number]
	switch d.ext.Type {
	case directory.ExtensionPark:
		if m == modeDial {
			e.pickup(t, o.leg, d.ext)
			return nil
		}
		return e.park(t, o, d.ext, ref, id, transfer)
	case directory.ExtensionQueue:
		return e.enqueue(t, o, d.ext, ref, id, transfer)
	}
	return e.ring(t, o, d.ext, ref, id, transfer)
}

// answered moves a calling leg's near end to up: the destination (a
// phone, a queue, a park orbit) took the call.
func answered(l *leg) {
	if l.c.NRState == callstore.NRDial || l.c.NRState == callstore.NRRing {
		l.w().NRState = callstore.NRUp
	}
}

// members appends to devs the members of ext that can ring for o now.
func (e *Engine) members(devs []*directory.Device, ext *directory.Extension, o origin) []*directory.Device {
	for _, m := range ext.Members {
		dev, ok := e.dir.Device(m)
		if !ok || o.leg != nil && o.leg.dev == dev || !e.canRing(dev) {
			continue
		}
		devs = append(devs, dev)
	}
	return devs
}

// ring rings a device, ring-all or hunt extension.
func (e *Engine) ring(t *tx, o origin, ext *directory.Extension, ref *callstore.ExtensionRef, id ident, transfer bool) []*leg {
	var buf [8]*directory.Device // the members, on the stack unless a hunt group keeps the rest
	devs := e.members(buf[:0], ext, o)
	if len(devs) == 0 {
		e.fail(t, o, CauseUserBusy)
		return nil
	}
	rg := &ringer{origin: o.leg, rem: o.rem, ext: ext, ref: ref, ident: id}
	rg.timer.rg = rg
	timeout := e.ringTimeout
	if ext.Type == directory.ExtensionHunt {
		rg.rest, devs = slices.Clone(devs[1:]), devs[:1]
		timeout = e.huntStep
	}
	legs := e.ringDevices(t, rg, devs)
	if a := o.leg; a != nil {
		a.alerting = rg
		if a.c.NRState == callstore.NRDial {
			a.w().NRState = callstore.NRRing
		}
		setParty(a, ident{ext.Name, ext.Number})
		if transfer {
			t.transfer(a, xferOf(append([]*leg{a}, legs...)...))
		}
	} else {
		o.rem.nr = callstore.NRRing
		o.rem.ringer = rg
	}
	e.start(&rg.timer, timeout)
	return legs
}

// ringDevices rings devs for rg and returns their new legs: the end of
// rg.legs, capped (an append to it copies), valid until rg.legs changes.
func (e *Engine) ringDevices(t *tx, rg *ringer, devs []*directory.Device) []*leg {
	first := len(rg.legs)
	for _, dev := range devs {
		l := e.newLeg(t, dev, callstore.PartyCallee)
		l.w().NRState = callstore.NRRinging
		setParty(l, rg.ident)
		l.w().Extension = rg.ref
		l.w().Company = rg.ext.Company
		if rg.queue {
			q := rg.origin
			l.w().Queue = &callstore.Queue{Name: q.c.Queue.Name, Number: q.c.Queue.Number, In: q.c.Queue.In}
		}
		l.ringing = rg
		rg.legs = append(rg.legs, l)
		from := origin{leg: rg.origin, rem: rg.rem}.party()
		t.signal(signal{op: sigRing, leg: l.ref(), a: from, name: rg.ident.name, number: rg.ident.number})
	}
	return rg.legs[first:len(rg.legs):len(rg.legs)]
}

// huntNext rings the next free member of a hunt group; false if none is
// left.
func (e *Engine) huntNext(t *tx, rg *ringer) bool {
	for len(rg.rest) > 0 {
		dev := rg.rest[0]
		rg.rest = rg.rest[1:]
		if !e.canRing(dev) {
			continue
		}
		e.ringDevices(t, rg, []*directory.Device{dev})
		if rg.origin != nil {
			t.touch(rg.origin)
		}
		e.start(&rg.timer, e.huntStep)
		return true
	}
	return false
}

// ringExpired: nobody answered in time (19). A hunt group moves on to its
// next member first.
func (e *Engine) ringExpired(t *tx, rg *ringer) {
	if rg.ext.Type == directory.ExtensionHunt && !rg.queue {
		legs := rg.legs
		rg.legs = nil
		for _, l := range legs {
			l.ringing = nil
			e.kill(t, l, CauseNoAnswer)
		}
		if e.huntNext(t, rg) {
			return
		}
	}
	o := rg.origin
	e.dissolve(t, rg, CauseNoAnswer)
	if o != nil {
		e.kill(t, o, CauseNoAnswer) // for a queue: the queue leg, and its caller with it
	}
}

// enqueue puts the origin into a queue: the queue's leg answers it (music
// on hold) and the free members ring.
func (e *Engine) enqueue(t *tx, o origin, ext *directory.Extension, ref *callstore.ExtensionRef, id ident, transfer bool) []*leg {
	qdev, _ := e.dir.Device("Queue/q_" + ext.Number) // the directory guarantees it
	q := e.takeCall(t, o, qdev, callstore.NRUp, ext, ref, id, transfer)
	q.w().Queue = &callstore.Queue{Name: id.name, Number: id.number, In: e.clock.Now().Unix()}
	rg := &ringer{origin: q, ext: ext, ref: ref, ident: id, queue: true}
	rg.timer.rg = rg
	q.alerting = rg
	var buf [8]*directory.Device
	legs := e.ringDevices(t, rg, e.members(buf[:0], ext, o))
	e.start(&rg.timer, e.ringTimeout)
	return append([]*leg{q}, legs...)
}

// park puts the origin on the orbit's device in state park.
func (e *Engine) park(t *tx, o origin, ext *directory.Extension, ref *callstore.ExtensionRef, id ident, transfer bool) []*leg {
	pdev, _ := e.dir.Device("Park/" + ext.Number)
	if e.liveCount(pdev.Name) > 0 {
		e.fail(t, o, CauseUserBusy) // one call per orbit
		return nil
	}
	return []*leg{e.takeCall(t, o, pdev, callstore.NRPark, ext, ref, id, transfer)}
}

// takeCall makes the leg of a queue or a park orbit (dev) that takes the
// origin's call at once, in near-end state nr: the origin is bridged to
// it (a transferred leg gets a TRANSFER event naming the bridge).
func (e *Engine) takeCall(t *tx, o origin, dev *directory.Device, nr callstore.NRState,
	ext *directory.Extension, ref *callstore.ExtensionRef, id ident, transfer bool) *leg {
	x := e.newLeg(t, dev, callstore.PartyCallee)
	x.w().NRState = nr
	setParty(x, id)
	x.w().Extension = ref
	x.w().Company = ext.Company
	if a := o.leg; a != nil {
		a.peer, x.peer = x, a
		answered(a)
		setParty(a, ident{ext.Name, ext.Number})
		if transfer {
			t.transfer(a, xferOf(a, x))
		}
	} else {
		x.ext, o.rem.leg = o.rem, x
		o.rem.nr = callstore.NRUp
	}
	bridged(t, o.party(), Party{Leg: x.ref()})
	return x
}

// pickup: a leg dialled a park orbit; the parked party is bridged to it
// and the orbit's leg ende.
func (e *Engine) pickup(t *tx, c *leg, ext *directory.Extension) {
	var k *leg
	for _, l := range e.byDev["Park/"+ext.Number] {
		if !l.dead {
			k = l
		}
	}
	if k == nil {
		e.kill(t, c, CauseNoUserResponding) // nobody parked there
		return
	}
	c.w().NRState = callstore.NRUp
	setParty(c, ident{k.c.Name, k.c.Number})
	c.w().Extension = e.refs[ext.Number]
	e.rebridge(t, k, c, true)
	e.kill(t, k, CauseNormalClearing)
}

// routeExternal calls an external number over the trunk.
func (e *Engine) routeExternal(t *tx, o origin, number string, transfer bool) {
	a := o.leg
	if a == nil {
		// Trunk to trunk: the call leaves the PBX and no leg remains.
		t.detach(o.rem, CauseNormalClearing)
		return
	}
	setParty(a, ident{"", number})
	if cause := e.drv.Refuse(Target{Number: number}); cause != 0 {
		e.kill(t, a, cause)
		return
	}
	r := e.newRemote("", number, callstore.NRRinging)
	a.ext, r.leg = r, a
	if a.c.NRState == callstore.NRDial {
		a.w().NRState = callstore.NRRing
	}
	if transfer {
		t.transfer(a, xferOf(a))
	}
	id := e.identOf(a)
	t.signal(signal{op: sigOriginate, remote: r.id, text: number, leg: a.ref(), name: id.name, number: id.number})
}
