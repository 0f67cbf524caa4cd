package pbx

import (
	"fmt"
	"strings"

	"callcontrold/callstore"
	"callcontrold/directory"
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
func (s *Sim) resolve(number string) (dest, error) {
	if x, ok := s.dir.Extension(number); ok {
		return dest{ext: x, number: number}, nil
	}
	if err := checkExternal(number); err != nil {
		return dest{}, err
	}
	return dest{number: number}, nil
}

// checkExternal accepts what a trunk could dial: digits, an optional
// leading +, at least 5 digits (shorter numbers are the internal dial
// plan's) and at most 32 characters.
func checkExternal(number string) error {
	digits := strings.TrimPrefix(number, "+")
	switch {
	case number == "":
		return fmt.Errorf("%w: empty number", ErrInvalidNumber)
	case len(number) > 32:
		return fmt.Errorf("%w: %q is longer than 32 characters", ErrInvalidNumber, number)
	case strings.Trim(digits, "0123456789") != "" || digits == "":
		return fmt.Errorf("%w: %q: only digits and a leading + are allowed", ErrInvalidNumber, number)
	case len(digits) < 5:
		return fmt.Errorf("%w: %q is not an extension of this PBX", ErrInvalidNumber, number)
	}
	return nil
}

// route connects an origin (a leg, or an external caller) to a
// destination and returns the legs it created. The origin must be
// unlinked (no peer, no external party, no ringer).
func (s *Sim) route(t *tx, o origin, d dest, m mode) []*leg {
	id := s.originIdent(o)
	transfer := m == modeXfer && o.leg != nil
	if o.leg != nil {
		t.touch(o.leg)
	}
	if d.ext == nil {
		s.routeExternal(t, o, d.number, transfer)
		return nil
	}
	ref := s.refs[d.ext.Number]
	switch d.ext.Type {
	case directory.ExtensionPark:
		if m == modeDial {
			s.pickup(t, o.leg, d.ext)
			return nil
		}
		return s.park(t, o, d.ext, ref, id, transfer)
	case directory.ExtensionQueue:
		return s.enqueue(t, o, d.ext, ref, id, transfer)
	}
	return s.ring(t, o, d.ext, ref, id, transfer)
}

// answered moves a calling leg's near end to up: the destination (a
// phone, a queue, a park orbit) took the call.
func answered(l *leg) {
	if l.c.NRState == callstore.NRDial || l.c.NRState == callstore.NRRing {
		l.c.NRState = callstore.NRUp
	}
}

func (s *Sim) members(ext *directory.Extension, o origin) []*directory.Device {
	var devs []*directory.Device
	for _, m := range ext.Members {
		dev, ok := s.dir.Device(m)
		if !ok || o.leg != nil && o.leg.dev == dev || !s.canRing(dev) {
			continue
		}
		devs = append(devs, dev)
	}
	return devs
}

// ring rings a device, ring-all or hunt extension.
func (s *Sim) ring(t *tx, o origin, ext *directory.Extension, ref *callstore.ExtensionRef, id ident, transfer bool) []*leg {
	devs := s.members(ext, o)
	if len(devs) == 0 {
		s.fail(t, o, CauseUserBusy)
		return nil
	}
	rg := &ringer{origin: o.leg, rem: o.rem, ext: ext, ref: ref, ident: id}
	timeout := s.ringTimeout
	if ext.Type == directory.ExtensionHunt {
		rg.rest, devs = devs[1:], devs[:1]
		timeout = s.huntStep
	}
	legs := s.ringDevices(t, rg, devs)
	if a := o.leg; a != nil {
		a.alerting = rg
		if a.c.NRState == callstore.NRDial {
			a.c.NRState = callstore.NRRing
		}
		setParty(a, ident{ext.Name, ext.Number})
		if transfer {
			a.xfer = xferOf(append([]*leg{a}, legs...)...)
		}
	} else {
		o.rem.nr = callstore.NRRing
	}
	rg.timer = s.after(timeout, func(t *tx) { s.ringExpired(t, rg) })
	return legs
}

func (s *Sim) ringDevices(t *tx, rg *ringer, devs []*directory.Device) []*leg {
	var legs []*leg
	for _, dev := range devs {
		l := s.newLeg(t, dev, callstore.PartyCallee)
		l.c.NRState = callstore.NRRinging
		setParty(l, rg.ident)
		l.c.Extension = rg.ref
		l.c.Company = rg.ext.Company
		if rg.queue {
			q := rg.origin
			l.c.Queue = &callstore.Queue{Name: q.c.Queue.Name, Number: q.c.Queue.Number, In: q.c.Queue.In}
		}
		l.ringing = rg
		rg.legs = append(rg.legs, l)
		legs = append(legs, l)
	}
	return legs
}

// huntNext rings the next free member of a hunt group; false if none is
// left.
func (s *Sim) huntNext(t *tx, rg *ringer) bool {
	for len(rg.rest) > 0 {
		dev := rg.rest[0]
		rg.rest = rg.rest[1:]
		if !s.canRing(dev) {
			continue
		}
		s.ringDevices(t, rg, []*directory.Device{dev})
		if rg.origin != nil {
			t.touch(rg.origin)
		}
		rg.timer = s.after(s.huntStep, func(t *tx) { s.ringExpired(t, rg) })
		return true
	}
	return false
}

// ringExpired: nobody answered in time (19). A hunt group moves on to its
// next member first.
func (s *Sim) ringExpired(t *tx, rg *ringer) {
	if rg.ext.Type == directory.ExtensionHunt && !rg.queue {
		legs := rg.legs
		rg.legs = nil
		for _, l := range legs {
			l.ringing = nil
			s.kill(t, l, CauseNoAnswer)
		}
		if s.huntNext(t, rg) {
			return
		}
	}
	o := rg.origin
	s.dissolve(t, rg, CauseNoAnswer)
	if o != nil {
		s.kill(t, o, CauseNoAnswer) // for a queue: the queue leg, and its caller with it
	}
}

// enqueue puts the origin into a queue: the queue's leg answers it (music
// on hold) and the free members ring.
func (s *Sim) enqueue(t *tx, o origin, ext *directory.Extension, ref *callstore.ExtensionRef, id ident, transfer bool) []*leg {
	qdev, _ := s.dir.Device("Queue/q_" + ext.Number) // the directory guarantees it
	q := s.newLeg(t, qdev, callstore.PartyCallee)
	q.c.NRState = callstore.NRUp
	q.c.Queue = &callstore.Queue{Name: id.name, Number: id.number, In: s.clock.Now().Unix()}
	setParty(q, id)
	q.c.Extension = ref
	q.c.Company = ext.Company
	if a := o.leg; a != nil {
		a.peer, q.peer = q, a
		answered(a)
		setParty(a, ident{ext.Name, ext.Number})
		if transfer {
			a.xfer = xferOf(a, q)
		}
	} else {
		q.ext, o.rem.leg = o.rem, q
		o.rem.nr = callstore.NRUp
	}
	rg := &ringer{origin: q, ext: ext, ref: ref, ident: id, queue: true}
	q.alerting = rg
	legs := s.ringDevices(t, rg, s.members(ext, o))
	rg.timer = s.after(s.ringTimeout, func(t *tx) { s.ringExpired(t, rg) })
	return append([]*leg{q}, legs...)
}

// park puts the origin on the orbit's device in state park.
func (s *Sim) park(t *tx, o origin, ext *directory.Extension, ref *callstore.ExtensionRef, id ident, transfer bool) []*leg {
	pdev, _ := s.dir.Device("Park/" + ext.Number)
	if s.liveCount(pdev.Name) > 0 {
		s.fail(t, o, CauseUserBusy) // one call per orbit
		return nil
	}
	k := s.newLeg(t, pdev, callstore.PartyCallee)
	k.c.NRState = callstore.NRPark
	setParty(k, id)
	k.c.Extension = ref
	k.c.Company = ext.Company
	if a := o.leg; a != nil {
		a.peer, k.peer = k, a
		answered(a)
		setParty(a, ident{ext.Name, ext.Number})
		if transfer {
			a.xfer = xferOf(a, k)
		}
	} else {
		k.ext, o.rem.leg = o.rem, k
		o.rem.nr = callstore.NRUp
	}
	return []*leg{k}
}

// pickup: a leg dialled a park orbit; the parked party is bridged to it
// and the orbit's leg ends.
func (s *Sim) pickup(t *tx, c *leg, ext *directory.Extension) {
	var k *leg
	for _, l := range s.byDev["Park/"+ext.Number] {
		if !l.dead {
			k = l
		}
	}
	if k == nil {
		s.kill(t, c, CauseNoUserResponding) // nobody parked there
		return
	}
	c.c.NRState = callstore.NRUp
	setParty(c, ident{k.c.Name, k.c.Number})
	c.c.Extension = s.refs[ext.Number]
	if p := k.peer; p != nil {
		k.peer, p.peer = nil, nil
		p.peer, c.peer = c, p
		setParty(p, s.identOf(c))
		p.xfer = xferOf(p, c)
		t.touch(p)
	} else if r := k.ext; r != nil {
		k.ext = nil
		c.ext, r.leg = r, c
	}
	s.kill(t, k, CauseNormalClearing)
}

// behaviourFor: SetNumberBehaviour, then the directory's rules, then the
// default.
func (s *Sim) behaviourFor(number string) Behaviour {
	if b, ok := s.behaviours[number]; ok {
		return b
	}
	for _, r := range s.dir.ExternalRules() {
		if r.Match(number) {
			return r.Behaviour
		}
	}
	return s.defBehav
}

// routeExternal rings an external number over the trunk.
func (s *Sim) routeExternal(t *tx, o origin, number string, transfer bool) {
	a := o.leg
	if a == nil {
		return // trunk to trunk: the call leaves the PBX and no leg remains
	}
	setParty(a, ident{"", number})
	b := s.behaviourFor(number)
	if b.Action == directory.ActionBusy {
		s.kill(t, a, CauseUserBusy)
		return
	}
	r := &remote{number: number, nr: callstore.NRRinging, leg: a}
	a.ext = r
	if a.c.NRState == callstore.NRDial {
		a.c.NRState = callstore.NRRing
	}
	if transfer {
		a.xfer = xferOf(a)
	}
	switch b.Action {
	case directory.ActionAnswer:
		r.timer = s.after(b.AnswerDelay, func(t *tx) { s.remoteAnswer(t, r) })
	case directory.ActionReject:
		cause := b.Cause
		if cause == 0 {
			cause = CauseRejected
		}
		r.timer = s.after(b.AnswerDelay, func(t *tx) { s.remoteEnd(t, r, cause) })
	case directory.ActionNoAnswer:
		r.timer = s.after(s.ringTimeout, func(t *tx) { s.remoteEnd(t, r, CauseNoAnswer) })
	}
}

func (s *Sim) remoteAnswer(t *tx, r *remote) {
	if r.leg == nil || r.nr != callstore.NRRinging {
		return
	}
	r.nr = callstore.NRUp
	answered(r.leg)
	t.touch(r.leg)
}

func (s *Sim) remoteEnd(t *tx, r *remote, cause int32) {
	if r.leg == nil || r.nr != callstore.NRRinging {
		return
	}
	s.kill(t, r.leg, cause)
}
