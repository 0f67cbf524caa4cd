package pbx

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"callcontrold/callstore"
	"callcontrold/directory"
)

// SimOptions configure the simulated switch. Zero values select defaults.
type SimOptions struct {
	Clock       Clock         // nil: the wall clock
	RingTimeout time.Duration // 0: the directory's ring_timeout
	// HuntStep is how long each member of a hunt group rings before the
	// next one; 0: 10s.
	HuntStep time.Duration
	// DefaultBehaviour applies to external numbers that neither
	// SetNumberBehaviour nor a directory rule covers; zero: answer after 3s.
	DefaultBehaviour Behaviour
	// MaxCallsPerDevice bounds the live legs a phone originates on; 0: 4.
	MaxCallsPerDevice int
	Logger            *slog.Logger // nil: slog.Default()
}

// callWaiting is how many live legs a phone may have and still ring for
// another call: one call up plus one waiting.
const callWaiting = 2

// Sim is the simulated switch. It implements Switch and Simulator. One
// mutex serializes every operation and timer, so that deciding a
// transition and committing it are atomic and revisions follow the order
// of operations.
type Sim struct {
	dir   *directory.Directory
	store *callstore.Store
	clock Clock
	log   *slog.Logger

	ringTimeout time.Duration
	huntStep    time.Duration
	defBehav    Behaviour
	maxCalls    int
	refs        map[string]*callstore.ExtensionRef // shared, immutable

	mu         sync.Mutex
	closed     bool
	seq        int64
	legs       map[int64]*leg
	byDev      map[string][]*leg
	behaviours map[string]Behaviour
	timers     map[*simTimer]struct{}
}

var (
	_ Switch    = (*Sim)(nil)
	_ Simulator = (*Sim)(nil)
)

// NewSim returns a simulated switch over the directory, committing to
// store. It must be the only writer of store. Close stops its timers.
func NewSim(dir *directory.Directory, store *callstore.Store, opts SimOptions) *Sim {
	s := &Sim{
		dir: dir, store: store, clock: opts.Clock, log: opts.Logger,
		ringTimeout: opts.RingTimeout, huntStep: opts.HuntStep,
		defBehav: opts.DefaultBehaviour, maxCalls: opts.MaxCallsPerDevice,
		refs:  map[string]*callstore.ExtensionRef{},
		legs:  map[int64]*leg{},
		byDev: map[string][]*leg{}, behaviours: map[string]Behaviour{},
		timers: map[*simTimer]struct{}{},
	}
	if s.clock == nil {
		s.clock = RealClock()
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.ringTimeout <= 0 {
		s.ringTimeout = dir.RingTimeout()
	}
	if s.huntStep <= 0 {
		s.huntStep = 10 * time.Second
	}
	if s.defBehav.Action == directory.ActionUnspecified {
		s.defBehav = Behaviour{Action: directory.ActionAnswer, AnswerDelay: 3 * time.Second}
	}
	if s.maxCalls <= 0 {
		s.maxCalls = 4
	}
	extTypes := map[directory.ExtensionType]callstore.ExtensionType{
		directory.ExtensionDevice: callstore.ExtDevice, directory.ExtensionRingAll: callstore.ExtRingAll,
		directory.ExtensionHunt: callstore.ExtHunt, directory.ExtensionQueue: callstore.ExtQueue,
		directory.ExtensionPark: callstore.ExtPark,
	}
	for _, x := range dir.Extensions() {
		s.refs[x.Number] = &callstore.ExtensionRef{Number: x.Number, Company: x.Company, Type: extTypes[x.Type], Name: x.Name}
	}
	return s
}

// Close stops every timer; later operations fail with ErrClosed. Legs stay
// in the store as they are.
func (s *Sim) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for t := range s.timers {
		s.stop(t)
	}
}

// leg is the switch's view of one Call: the working value plus the links
// that decide its derived state. Links are symmetric (a.peer == b iff
// b.peer == a) and always point at live legs; kill keeps them so.
type leg struct {
	c           callstore.Call  // working value; render fills the derived fields
	cur         *callstore.Call // as last committed; nil until its NEW commit
	dev         *directory.Device
	dead        bool
	established bool // reached up at least once (jsInfo.established)

	peer     *leg    // bridged leg
	ext      *remote // external party bridged to, or rung by, this leg
	alerting *ringer // legs ringing for this leg (caller side, or a queue)
	ringing  *ringer // this leg rings for that ringer (callee side)
	qAgent   *leg    // queue leg: the agent that answered
	queue    *leg    // agent: the queue leg it answered

	xfer []callstore.XferLeg // set: the next commit is a TRANSFER event
}

// remote is an external party: it has no Call, only a near-end state that
// feeds the derived state of the leg it talks to.
type remote struct {
	name, number string
	nr           callstore.NRState // NRRing: calling in; NRRinging: alerting; NRUp: answered
	leg          *leg              // the leg bridged to it or ringing it, nil while it rings a group
	timer        *simTimer
}

// ringer is one caller waiting for one of several legs to answer: a
// device, ring-all or hunt extension, or a queue's agents.
type ringer struct {
	origin *leg    // the calling leg (the queue leg for a queue)
	rem    *remote // or the external caller
	ext    *directory.Extension
	ref    *callstore.ExtensionRef
	ident  ident
	legs   []*leg
	rest   []*directory.Device // hunt: members still to try
	queue  bool
	timer  *simTimer
}

type ident struct{ name, number string }

type origin struct {
	leg *leg
	rem *remote
}

// tx collects the legs an operation touched; commit turns them into one
// store revision.
type tx struct {
	legs []*leg
	seen map[*leg]bool
}

func newTx() *tx { return &tx{seen: map[*leg]bool{}} }

func (t *tx) touch(ls ...*leg) {
	for _, l := range ls {
		if l != nil && !t.seen[l] {
			t.seen[l] = true
			t.legs = append(t.legs, l)
		}
	}
}

// commit renders every touched leg (and its neighbours, whose derived
// state may depend on it) and commits those that changed as one revision.
func (s *Sim) commit(t *tx) error {
	for i := 0; i < len(t.legs); i++ {
		l := t.legs[i]
		t.touch(l.peer, l.qAgent, l.queue)
		if l.alerting != nil {
			t.touch(l.alerting.legs...)
		}
		if l.ringing != nil {
			t.touch(l.ringing.origin)
		}
	}
	now := s.clock.Now()
	var changes []callstore.Change
	var changed []*leg
	for _, l := range t.legs {
		s.render(l, now)
		if l.cur == nil && l.dead {
			continue // never shown: nothing to end
		}
		if l.cur != nil && *l.cur == l.c && l.xfer == nil {
			continue
		}
		n := new(callstore.Call)
		*n = l.c
		typ := callstore.EventUpdate
		switch {
		case l.cur == nil:
			typ = callstore.EventNew
		case l.xfer != nil && !l.dead:
			typ = callstore.EventTransfer
		}
		changes = append(changes, callstore.Change{Type: typ, Call: n, Xfer: l.xfer})
		changed = append(changed, l)
	}
	defer func() {
		for _, l := range t.legs {
			l.xfer = nil
			if l.dead {
				s.forget(l)
			}
		}
	}()
	if len(changes) == 0 {
		return nil
	}
	if _, err := s.store.Commit(changes...); err != nil {
		return fmt.Errorf("pbx: commit: %w", err)
	}
	for i, l := range changed {
		l.cur = changes[i].Call
	}
	return nil
}

func (s *Sim) forget(l *leg) {
	delete(s.legs, l.c.UID)
	list := s.byDev[l.dev.Name]
	list = slices.DeleteFunc(list, func(x *leg) bool { return x == l })
	if len(list) == 0 {
		delete(s.byDev, l.dev.Name)
	} else {
		s.byDev[l.dev.Name] = list
	}
}

// derive is the state table of call-model-notes.md: the leg's state from
// its near-end state and the near-end state of what it is bridged to.
// The old "call" state folds into dial.
func derive(nr, br callstore.NRState) callstore.State {
	switch nr {
	case callstore.NRPark:
		return callstore.StatePark
	case callstore.NRHold:
		return callstore.StateHold
	case callstore.NRRing, callstore.NRRinging:
		return callstore.StateRing
	case callstore.NRDial:
		if br == callstore.NRRing || br == callstore.NRRinging {
			return callstore.StateRing
		}
		return callstore.StateDial
	case callstore.NRUp:
		switch br {
		case callstore.NRDial:
			return callstore.StateDial
		case callstore.NRUp, callstore.NRPark, callstore.NRHold:
			return callstore.StateUp
		}
		return callstore.StateRing
	}
	switch br { // none/down
	case callstore.NRDial:
		return callstore.StateDial
	case callstore.NRRing, callstore.NRRinging, callstore.NRUp, callstore.NRPark, callstore.NRHold:
		return callstore.StateRing
	}
	return callstore.StateDown
}

// brState is the near-end state of what the leg is bridged to, or rings.
func brState(l *leg) callstore.NRState {
	switch {
	case l.peer != nil:
		return l.peer.c.NRState
	case l.qAgent != nil:
		return l.qAgent.c.NRState
	case l.ext != nil:
		return l.ext.nr
	case l.alerting != nil:
		if len(l.alerting.legs) > 0 {
			return callstore.NRRinging
		}
	case l.ringing != nil:
		if o := l.ringing.origin; o != nil {
			return o.c.NRState
		}
		return callstore.NRRing
	}
	return callstore.NRDown
}

// render fills the derived fields of the working value.
func (s *Sim) render(l *leg, now time.Time) {
	c := &l.c
	if l.dead {
		c.State, c.NRState, c.Features, c.PeerUID = callstore.StateDead, callstore.NRDead, 0, 0
	} else {
		br := brState(l)
		c.State = derive(c.NRState, br)
		if (c.State == callstore.StateUp || c.State == callstore.StateHold) && c.StartMillis == 0 {
			c.StartMillis = now.UnixMilli()
		}
		if c.NRState == callstore.NRUp || c.NRState == callstore.NRHold {
			l.established = true
		}
		c.PeerUID = 0
		if l.peer != nil {
			c.PeerUID = l.peer.c.UID
		} else if l.qAgent != nil {
			c.PeerUID = l.qAgent.c.UID
		}
		f := l.dev.Features
		c.Features = 0
		switch {
		case c.State == callstore.StateRing && c.NRState == callstore.NRRinging && f.Answer:
			c.Features = callstore.FeatureAnswer
		case c.State == callstore.StateUp && f.Hold:
			c.Features = callstore.FeatureHold
		case c.State == callstore.StateHold && f.Talk:
			c.Features = callstore.FeatureTalk
		}
	}
	c.Label = c.Name
	if c.Label == "" {
		c.Label = c.Number
	}
	if !l.dev.WebRTC {
		c.JSState, c.JSInfo = callstore.JSNone, callstore.JSInfo{}
		return
	}
	c.JSInfo.Established = l.established
	c.JSInfo.Ended = l.dead
	c.JSInfo.HoldLocal = !l.dead && c.NRState == callstore.NRHold
	c.JSInfo.HoldRemote = !l.dead && brState(l) == callstore.NRHold
	switch {
	case l.dead && l.established:
		c.JSState = callstore.JSTerminated
	case l.dead:
		switch c.Cause {
		case CauseUserBusy:
			c.JSState = callstore.JSBusy
		case CauseRejected:
			c.JSState = callstore.JSRejected
		case CauseNormalClearing, CauseRedirected, CauseAnsweredElse:
			c.JSState = callstore.JSCancelled
		default:
			c.JSState = callstore.JSUnavailable
		}
	case c.NRState == callstore.NRDial:
		c.JSState = callstore.JSTrying
	case c.NRState == callstore.NRUp || c.NRState == callstore.NRHold:
		c.JSState = callstore.JSConfirmed
	default:
		c.JSState = callstore.JSProgress
	}
}

// simTimer is a timer of the switch. done is guarded by Sim.mu: a timer
// that fires after being stopped (the race Stop cannot prevent) sees it
// and does nothing.
type simTimer struct {
	t    Timer
	done bool
}

// after runs f(tx) under the switch's lock after d, and commits.
func (s *Sim) after(d time.Duration, f func(t *tx)) *simTimer {
	st := &simTimer{}
	s.timers[st] = struct{}{}
	st.t = s.clock.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed || st.done {
			return
		}
		st.done = true
		delete(s.timers, st)
		t := newTx()
		f(t)
		if err := s.commit(t); err != nil {
			s.log.Error("pbx: timer commit failed", "err", err)
		}
	})
	return st
}

func (s *Sim) stop(st *simTimer) {
	if st == nil || st.done {
		return
	}
	st.done = true
	st.t.Stop()
	delete(s.timers, st)
}

func (s *Sim) newLeg(t *tx, dev *directory.Device, party callstore.Party) *leg {
	now := s.clock.Now()
	s.seq++
	l := &leg{dev: dev}
	l.c = callstore.Call{
		UID:           s.store.NewUID(),
		ID:            fmt.Sprintf("%d.%d", now.Unix(), s.seq),
		CID:           fmt.Sprintf("%s-%08x", dev.Name, s.seq),
		Device:        dev.Name,
		DeviceCompany: dev.Company,
		Party:         party,
		StampMillis:   now.UnixMilli(),
	}
	if u, ok := s.dir.User(dev.Owner); ok {
		l.c.OwnerID, l.c.OwnerLogin = u.ID, u.Login
	}
	s.legs[l.c.UID] = l
	s.byDev[dev.Name] = append(s.byDev[dev.Name], l)
	t.touch(l)
	return l
}

func (s *Sim) liveCount(dev string) int {
	n := 0
	for _, l := range s.byDev[dev] {
		if !l.dead {
			n++
		}
	}
	return n
}

// canRing reports whether a phone may ring for another call now.
func (s *Sim) canRing(dev *directory.Device) bool {
	if !strings.HasPrefix(dev.Name, "SIP/") {
		return false
	}
	for _, l := range s.byDev[dev.Name] {
		if !l.dead && l.c.NRState == callstore.NRRinging {
			return false // one ringing call at a time: call waiting, not a pile-up
		}
	}
	return s.liveCount(dev.Name) < callWaiting
}

// identOf is how a leg's party is named to the other side.
func (s *Sim) identOf(l *leg) ident {
	if l.dev.Name[0] != 'S' { // Park/ and Queue/ legs stand for the party on them
		return ident{l.c.Name, l.c.Number}
	}
	id := ident{name: l.dev.DisplayName, number: l.dev.Extension}
	if u, ok := s.dir.User(l.dev.Owner); ok {
		id.name = u.Name
	}
	if id.number == "" {
		id.number = l.dev.Name
	}
	return id
}

func (s *Sim) originIdent(o origin) ident {
	if o.leg != nil {
		return s.identOf(o.leg)
	}
	return ident{o.rem.name, o.rem.number}
}

func setParty(l *leg, id ident) { l.c.Name, l.c.Number = id.name, id.number }

// kill ends a leg and whatever cannot outlive it: its bridged peer, the
// legs ringing for it, its queue leg. It unlinks everything so links only
// ever point at live legs.
func (s *Sim) kill(t *tx, l *leg, cause int32) {
	if l.dead {
		return
	}
	l.dead = true
	l.c.Cause, l.c.CauseTxt = cause, CauseText(cause)
	t.touch(l)
	if p := l.peer; p != nil {
		l.peer, p.peer = nil, nil
		s.kill(t, p, cause)
	}
	if r := l.ext; r != nil {
		l.ext, r.leg = nil, nil
		s.stop(r.timer)
	}
	if rg := l.alerting; rg != nil {
		l.alerting = nil
		s.dissolve(t, rg, cause)
	}
	if rg := l.ringing; rg != nil {
		l.ringing = nil
		rg.legs = slices.DeleteFunc(rg.legs, func(x *leg) bool { return x == l })
		t.touch(rg.origin)
	}
	if a := l.qAgent; a != nil {
		l.qAgent, a.queue = nil, nil
		t.touch(a)
	}
	if q := l.queue; q != nil {
		l.queue, q.qAgent = nil, nil
		s.kill(t, q, cause)
	}
}

// dissolve ends every leg still ringing for rg; the origin is left to the
// caller.
func (s *Sim) dissolve(t *tx, rg *ringer, cause int32) {
	s.stop(rg.timer)
	if rg.origin != nil && rg.origin.alerting == rg {
		rg.origin.alerting = nil
		t.touch(rg.origin)
	}
	legs := rg.legs
	rg.legs, rg.rest = nil, nil
	for _, l := range legs {
		l.ringing = nil
		s.kill(t, l, cause)
	}
}

func (s *Sim) fail(t *tx, o origin, cause int32) {
	if o.leg != nil {
		s.kill(t, o.leg, cause)
	}
}

func isPhone(dev *directory.Device) bool { return strings.HasPrefix(dev.Name, "SIP/") }

func xferOf(ls ...*leg) []callstore.XferLeg {
	out := make([]callstore.XferLeg, 0, len(ls))
	for _, l := range ls {
		out = append(out, callstore.XferLeg{UID: l.c.UID, ID: l.c.ID, Device: l.c.Device})
	}
	return out
}
