package pbx

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"callcontrold/callstore"
	"callcontrold/directory"
)

// Options configure the engine. Zero values select defaults.
type Options struct {
	Clock       Clock         // nil: the wall clock
	RingTimeout time.Duration // 0: the directory's ring_timeout
	// HuntStep is how long each member of a hunt group rings before the
	// next one; 0: 10s.
	HuntStep time.Duration
	// MaxCallsPerDevice bounds the live legs a phone originates on; 0: 4.
	MaxCallsPerDevice int
	Logger            *slog.Logger // nil: slog.Default()
	// Commit stores one operation's changes as one revision; nil: the
	// store's Commit. A replica that leads passes its log's append, which
	// publishes the revision and returns at once (the next operation
	// builds on it); the revision reaches the store once the log has
	// acknowledged it (see Sync). After an error the engine no longer
	// matches the store: its owner must close it (see package replica).
	Commit func(changes ...callstore.Change) (int64, error)
	// CommitRequest, if set, is used instead of Commit: req is the
	// request (WithRequest) the operation carries out, on the first
	// revision it commits, and nil for every other revision (driver
	// events, timers, an operation without a request_id).
	CommitRequest func(req *Request, changes ...callstore.Change) (int64, error)
	// Sync, with a Commit that returns before the revision is stored,
	// waits until every revision committed so far is stored, or fails.
	// The engine calls it before it signals the driver, so that no phone
	// acts on a transition the log may not hold; after a failure it drops
	// those signals (the owner ends the term and closes the engine). nil:
	// Commit stores before it returns.
	Sync func() error
}

// callWaiting is how many live legs a phone may have and still ring for
// another call: one call up plus one waiting.
const callWaiting = 2

// Engine is the call engine. It implements Switch. One mutex serializes
// every operation, driver event and timer, so that deciding a transition
// and committing it are atomic and revisions follow the order of
// operations; the driver is only ever called without it (see flush).
type Engine struct {
	dir   *directory.Directory
	store *callstore.Store
	put   func(req *Request, changes ...callstore.Change) (int64, error) // Options.CommitRequest or Commit
	// req is the request of the operation holding the lock (begin), until
	// its first commit: only that revision records it.
	req   *Request
	sync  func() error // Options.Sync; nil: put stores
	drv   Driver
	clock Clock
	log   *slog.Logger
	ctx   context.Context // the drivers' context: ends with Close
	stopc context.CancelFunc

	ringTimeout time.Duration
	huntStep    time.Duration
	maxCalls    int
	refs        map[string]*callstore.ExtensionRef // shared, immutable
	devRefs     map[string]*callstore.DeviceRef    // by device name; shared, immutable

	mu         sync.Mutex
	closed     bool
	seq        int64
	legs       map[int64]*leg
	byDev      map[string][]*leg
	remotes    map[RemoteID]*remote
	lastRemote RemoteID
	timers     timerHeap // pending timers, earliest first (see start)
	// wake is the clock's timer armed for wakeAt, to run the earliest
	// of timers; nil when none is armed. wakeFn is e.wake's method value,
	// made once.
	wake     Timer
	wakeAt   time.Time
	wakeFn   func()
	timerSeq uint64
	outbox   []signal // decided, not yet delivered to the driver
	spare    []signal // empty: the array of the outbox delivered last, for the next one
	flushing bool     // a goroutine is delivering the outbox

	// The operation's bookkeeping, reused: operations hold mu one at a
	// time, so one tx (newTx) and one changes array (commit) serve them
	// all and a transition allocates none of its own.
	scratch tx
	mark    uint32 // the last tx's mark (leg.mark)
	changes []callstore.Change
	// keepChanges: put may keep the changes slice after it returns (a
	// replica's log keeps it until the log acknowledges it), so commit
	// hands it a fresh one instead of the reused array.
	keepChanges bool

	// What few legs have at a time, kept out of leg (one per live call,
	// TestLegSize): the legs the API dialled that wait for their device to
	// go off hook, the channels closed at a leg's next commit for the
	// operations that wait for a driver's report on it, and why a ringing
	// phone could not be told to answer (Engine.AnswerFailed).
	offHooks     map[*leg]*offHook
	changed      map[*leg]chan struct{}
	answerFailed map[*leg]error
}

var _ Switch = (*Engine)(nil)

// NewEngine returns a call engine over the directory that signals through
// drv and commits to store. It must be the only writer of store. Close
// stops its timers.
func NewEngine(dir *directory.Directory, store *callstore.Store, drv Driver, opts Options) *Engine {
	e := &Engine{
		dir: dir, store: store, drv: drv, clock: opts.Clock, log: opts.Logger,
		ringTimeout: opts.RingTimeout, huntStep: opts.HuntStep, maxCalls: opts.MaxCallsPerDevice,
		refs:    map[string]*callstore.ExtensionRef{},
		devRefs: map[string]*callstore.DeviceRef{},
		legs:    map[int64]*leg{},
		byDev:   map[string][]*leg{},
		remotes: map[RemoteID]*remote{},

		offHooks:     map[*leg]*offHook{},
		changed:      map[*leg]chan struct{}{},
		answerFailed: map[*leg]error{},
	}
	e.ctx, e.stopc = context.WithCancel(context.Background())
	e.wakeFn = e.runTimers
	e.sync = opts.Sync
	commit := opts.Commit
	if commit == nil {
		commit = store.Commit
	}
	if e.put = opts.CommitRequest; e.put == nil {
		e.put = func(_ *Request, changes ...callstore.Change) (int64, error) { return commit(changes...) }
	}
	// The store copies what it keeps of a change; any other commit
	// function may keep the slice.
	e.keepChanges = opts.Commit != nil || opts.CommitRequest != nil
	if e.clock == nil {
		e.clock = RealClock()
	}
	if e.log == nil {
		e.log = slog.Default()
	}
	if e.ringTimeout <= 0 {
		e.ringTimeout = dir.RingTimeout()
	}
	if e.huntStep <= 0 {
		e.huntStep = 10 * time.Second
	}
	if e.maxCalls <= 0 {
		e.maxCalls = 4
	}
	extTypes := map[directory.ExtensionType]callstore.ExtensionType{
		directory.ExtensionDevice: callstore.ExtDevice, directory.ExtensionRingAll: callstore.ExtRingAll,
		directory.ExtensionHunt: callstore.ExtHunt, directory.ExtensionQueue: callstore.ExtQueue,
		directory.ExtensionPark: callstore.ExtPark,
	}
	for _, x := range dir.Extensions() {
		e.refs[x.Number] = &callstore.ExtensionRef{Number: x.Number, Company: x.Company, Type: extTypes[x.Type], Name: x.Name}
	}
	for _, d := range dir.Devices() {
		e.devRefs[d.Name] = newDeviceRef(dir, d)
	}
	return e
}

// newDeviceRef is what a leg's Call shows of its device.
func newDeviceRef(dir *directory.Directory, dev *directory.Device) *callstore.DeviceRef {
	r := &callstore.DeviceRef{Device: dev.Name, DeviceCompany: dev.Company}
	if u, ok := dir.User(dev.Owner); ok {
		r.OwnerID, r.OwnerLogin = u.ID, u.Login
	}
	return r
}

// deviceRef returns the DeviceRef that dev's legs share.
func (e *Engine) deviceRef(dev *directory.Device) *callstore.DeviceRef {
	if r, ok := e.devRefs[dev.Name]; ok {
		return r
	}
	return newDeviceRef(e.dir, dev) // not one of the directory's devices: not shared
}

// Directory returns the directory the engine routes by.
func (e *Engine) Directory() *directory.Directory { return e.dir }

// Store returns the store the engine commits to.
func (e *Engine) Store() *callstore.Store { return e.store }

// Clock returns the engine's clock.
func (e *Engine) Clock() Clock { return e.clock }

// RingTimeout is how long a phone or group rings before the caller hears
// no answer.
func (e *Engine) RingTimeout() time.Duration { return e.ringTimeout }

// Close stops every timer and ends the drivers' context; later
// operations fail with ErrClosed. Legs stay in the store as they are.
func (e *Engine) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	e.outbox = nil
	e.stopc()
	for len(e.timers) > 0 {
		e.stop(e.timers[0])
	}
	if e.wake != nil {
		e.wake.Stop()
		e.wake = nil
	}
}

// leg is the engine's view of one Call: the value plus the links that
// decide its derived state. Links are symmetric (a.peer == b iff
// b.peer == a) and always point at live legs; kill keeps them so.
//
// The value is copy on write: between operations c is the committed value
// itself (c == cur, shared with the store, immutable), so a live leg does
// not keep a second copy of its Call. Code reads l.c and writes only
// through l.w(), which makes a private working copy first.
type leg struct {
	c           *callstore.Call // the value: cur, or a private working copy; render fills the derived fields
	cur         *callstore.Call // as last committed; nil until its NEW commit
	dev         *directory.Device
	dead        bool
	established bool // reached up at least once (jsInfo.established)
	// quiet: the leg's own device ended it, so the driver is not told to.
	quiet bool
	// mark is the mark of the last tx that touched the leg (tx.touch); it
	// fits in the padding after the flags.
	mark uint32

	peer     *leg    // bridged leg
	ext      *remote // external party bridged to, or rung by, this leg
	alerting *ringer // legs ringing for this leg (caller side, or a queue)
	ringing  *ringer // this leg rings for that ringer (callee side)
	qAgent   *leg    // queue leg: the agent that answered
	queue    *leg    // agent: the queue leg it answered

	// A leg is 80 bytes (TestLegSize): what only an operation needs (the
	// TRANSFER event's legs) is kept in its tx, what few legs have at a
	// time in the engine (Engine.offHooks, Engine.changed).
}

// offHook is where a leg the API dialled goes once its device is off
// hook, and the timer that gives up on the device (Engine.offHooks).
type offHook struct {
	dest  dest
	timer engineTimer
}

// w returns the leg's value for writing: a private copy of the committed
// value, made on the first write since the last commit.
func (l *leg) w() *callstore.Call {
	if l.c == l.cur {
		c := *l.cur
		l.c = &c
	}
	return l.c
}

func (l *leg) ref() LegRef { return LegRef{UID: l.c.UID, Device: l.dev.Name} }

// remote is an external party: it has no Call, only a near-end state that
// feeds the derived state of the leg it talks to.
//
// The small fields are last, together, so that a remote takes the 64-byte
// size class (one per call to or from outside).
type remote struct {
	id           RemoteID
	name, number string
	leg          *leg    // the leg bridged to it or ringing it
	ringer       *ringer // or the group it rings (an inbound caller)
	// cause is why it was last detached; quiet: it ended the call itself.
	cause   int32
	quiet   bool
	inbound bool              // it called the PBX
	nr      callstore.NRState // NRRing: calling in; NRRinging: alerting; NRUp: answered
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
	timer  engineTimer // ring time (rg: this ringer)
}

type ident struct{ name, number string }

type origin struct {
	leg *leg
	rem *remote
}

func (o origin) party() Party {
	if o.leg != nil {
		return Party{Leg: o.leg.ref()}
	}
	if o.rem != nil {
		return Party{Remote: o.rem.id}
	}
	return Party{}
}

// tx collects what an operation touched; commit turns the legs into one
// store revision and queues the signals for the driver. The engine reuses
// one (newTx).
type tx struct {
	mark    uint32 // carried by the legs in legs, and by no other leg
	legs    []*leg
	remotes []*remote
	signals []signal
	// xfer holds the legs whose next commit is a TRANSFER event, with the
	// event's xfer_data.
	xfer map[*leg][]callstore.XferLeg
	// committed is what commit stored, in commit order; valid until the
	// next newTx.
	committed []*callstore.Call
}

// newTx returns the engine's tx, emptied, for the operation holding the
// lock; the one before must be committed or abandoned. Its mark is new:
// no leg carries it yet.
func (e *Engine) newTx() *tx {
	t := &e.scratch
	t.release()
	clear(t.committed)
	t.committed = t.committed[:0]
	if e.mark++; e.mark == 0 { // wrapped: an old mark may come round again, so unmark every leg
		for _, l := range e.legs {
			l.mark = 0
		}
		e.mark = 1
	}
	t.mark = e.mark
	return t
}

// release empties what the tx refers to, keeping its arrays, so a
// committed operation's legs and signals are not kept alive by it.
// committed stays until the next newTx: the operation returns it.
func (t *tx) release() {
	clear(t.legs)
	t.legs = t.legs[:0]
	clear(t.remotes)
	t.remotes = t.remotes[:0]
	clear(t.signals)
	t.signals = t.signals[:0]
	clear(t.xfer)
}

func (t *tx) touch(ls ...*leg) {
	for _, l := range ls {
		if l != nil && l.mark != t.mark {
			l.mark = t.mark
			t.legs = append(t.legs, l)
		}
	}
}

// transfer makes l's next commit a TRANSFER event with xfer as its
// xfer_data.
func (t *tx) transfer(l *leg, xfer []callstore.XferLeg) {
	if t.xfer == nil {
		t.xfer = make(map[*leg][]callstore.XferLeg)
	}
	t.xfer[l] = xfer
	t.touch(l)
}

// detach records that r lost its leg or group; commit ends it if nothing
// took it over by then.
func (t *tx) detach(r *remote, cause int32) {
	r.cause = cause
	t.remotes = append(t.remotes, r)
}

func (t *tx) signal(s signal) { t.signals = append(t.signals, s) }

// commit renders every touched leg (and its neighbours, whose derived
// state may depend on it) and commits those that changed as one revision;
// then it ends the external parties left without a leg and queues the
// operation's signals for the driver.
func (e *Engine) commit(t *tx) error {
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
	now := clockReading{clock: e.clock}
	changes := e.changes[:0]
	if e.keepChanges {
		changes = nil
	}
	changed := 0 // t.legs[:changed] are the changed legs, moved to the front in order
	for i, l := range t.legs {
		if l.cur == nil && l.dead {
			continue // never shown: nothing to end
		}
		if l.c == l.cur { // unwritten: render a copy, keep it only if it differs
			c := *l.cur
			e.render(l, &c, &now)
			if c == *l.cur && t.xfer[l] == nil {
				continue
			}
			l.c = new(callstore.Call)
			*l.c = c
		} else {
			e.render(l, l.c, &now)
			if l.cur != nil && *l.c == *l.cur && t.xfer[l] == nil {
				l.c = l.cur // written back to what it was
				continue
			}
		}
		n := l.c // the working copy becomes the committed value
		typ, xfer := callstore.EventUpdate, t.xfer[l]
		switch {
		case l.cur == nil:
			typ = callstore.EventNew
		case xfer != nil && !l.dead:
			typ = callstore.EventTransfer
		}
		changes = append(changes, callstore.Change{Type: typ, Call: n, Xfer: xfer})
		t.legs[changed], t.legs[i] = l, t.legs[changed]
		changed++
	}
	defer func() {
		for _, l := range t.legs {
			if l.dead {
				e.forget(l)
			}
		}
		t.release()
		if !e.keepChanges {
			clear(changes)
			e.changes = changes[:0]
		}
	}()
	if len(changes) > 0 {
		req := e.req
		e.req = nil
		if _, err := e.put(req, changes...); err != nil {
			return fmt.Errorf("pbx: commit: %w", err)
		}
	}
	for i, l := range t.legs[:changed] {
		l.cur = changes[i].Call
		t.committed = append(t.committed, l.cur)
		e.signalChanged(l)
	}
	e.outbox = append(e.outbox, t.signals...)
	e.endRemotes(t)
	return nil
}

// endRemotes forgets the external parties an operation left with neither
// a leg nor a group to ring, and tells the driver to end their calls.
func (e *Engine) endRemotes(t *tx) {
	for _, r := range t.remotes {
		if r.leg != nil || r.ringer != nil || e.remotes[r.id] != r {
			continue
		}
		delete(e.remotes, r.id)
		if !r.quiet {
			e.outbox = append(e.outbox, signal{op: sigHangupRemote, remote: r.id, cause: r.cause})
		}
	}
}

func (e *Engine) newRemote(name, number string, nr callstore.NRState) *remote {
	e.lastRemote++
	r := &remote{id: e.lastRemote, name: name, number: number, nr: nr}
	e.remotes[r.id] = r
	return r
}

func (e *Engine) forget(l *leg) {
	delete(e.legs, l.c.UID)
	// An empty list stays: the device's next call appends without
	// allocating (the devices are the directory's, so they are few).
	e.byDev[l.dev.Name] = slices.DeleteFunc(e.byDev[l.dev.Name], func(x *leg) bool { return x == l })
	if oh := e.offHooks[l]; oh != nil {
		e.stop(&oh.timer)
		delete(e.offHooks, l)
	}
	delete(e.answerFailed, l)
	e.signalChanged(l)
}

// signalChanged wakes the operations waiting for l's next commit.
func (e *Engine) signalChanged(l *leg) {
	if ch, ok := e.changed[l]; ok {
		close(ch)
		delete(e.changed, l)
	}
}

// derive is the PBX's state table: the leg's state from its near-end
// state and the near-end state of what it is bridged to (rows: nrState;
// ring and ringing both derive ring, park and hold win over anything).
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

// clockReading reads a clock once, when first asked: the legs of a
// commit share one reading, and most commits need none (only a leg that
// is answered for the first time does), which spares a clock read per
// revision.
type clockReading struct {
	clock Clock
	t     time.Time
	read  bool
}

func (r *clockReading) get() time.Time {
	if !r.read {
		r.t, r.read = r.clock.Now(), true
	}
	return r.t
}

// render fills the derived fields of the working value.
func (e *Engine) render(l *leg, c *callstore.Call, now *clockReading) {
	if l.dead {
		c.State, c.NRState, c.Features, c.PeerUID = callstore.StateDead, callstore.NRDead, 0, 0
	} else {
		br := brState(l)
		c.State = derive(c.NRState, br)
		if (c.State == callstore.StateUp || c.State == callstore.StateHold) && c.StartMillis == 0 {
			c.StartMillis = now.get().UnixMilli()
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

func (e *Engine) newLeg(t *tx, dev *directory.Device, party callstore.Party) *leg {
	now := e.clock.Now()
	e.seq++
	l := &leg{dev: dev}
	l.c = &callstore.Call{
		UID:         e.store.NewUID(),
		ID:          legID(now.Unix(), e.seq),
		CID:         channelID(dev.Name, e.seq),
		DeviceRef:   e.deviceRef(dev),
		Party:       party,
		StampMillis: now.UnixMilli(),
	}
	e.legs[l.c.UID] = l
	e.byDev[dev.Name] = append(e.byDev[dev.Name], l)
	t.touch(l)
	return l
}

// legID is a leg's PBX identifier, "<unix seconds>.<seq>" (as
// Asterisk's uniqueid), built with one allocation: a leg is made on every
// call.
func legID(unix, seq int64) string {
	var buf [48]byte
	b := strconv.AppendInt(buf[:0], unix, 10)
	b = append(b, '.')
	return string(strconv.AppendInt(b, seq, 10))
}

// channelID is a leg's channel identifier on its device,
// "<device>-<seq in 8 hex digits>", built with one allocation.
func channelID(device string, seq int64) string {
	var buf [64]byte
	var digits [16]byte
	hex := strconv.AppendInt(digits[:0], seq, 16)
	b := append(buf[:0], device...)
	b = append(b, '-')
	for range 8 - len(hex) {
		b = append(b, '0')
	}
	return string(append(b, hex...))
}

func (e *Engine) liveCount(dev string) int {
	n := 0
	for _, l := range e.byDev[dev] {
		if !l.dead {
			n++
		}
	}
	return n
}

// canRing reports whether a phone may ring for another call now.
func (e *Engine) canRing(dev *directory.Device) bool {
	if !isPhone(dev) {
		return false
	}
	live := 0 // liveCount's, in the same pass
	for _, l := range e.byDev[dev.Name] {
		if l.dead {
			continue
		}
		if l.c.NRState == callstore.NRRinging {
			return false // one ringing call at a time: call waiting, not a pile-up
		}
		live++
	}
	return live < callWaiting && e.drv.Refuse(Target{Device: dev.Name}) == 0
}

// identOf is how a leg's party is named to the other side.
func (e *Engine) identOf(l *leg) ident {
	if !isPhone(l.dev) { // Park/ and Queue/ legs stand for the party on them
		return ident{l.c.Name, l.c.Number}
	}
	id := ident{name: l.dev.DisplayName, number: l.dev.Extension}
	if u, ok := e.dir.User(l.dev.Owner); ok {
		id.name = u.Name
	}
	if id.number == "" {
		id.number = l.dev.Name
	}
	return id
}

func (e *Engine) originIdent(o origin) ident {
	if o.leg != nil {
		return e.identOf(o.leg)
	}
	return ident{o.rem.name, o.rem.number}
}

func setParty(l *leg, id ident) { l.w().Name, l.w().Number = id.name, id.number }

// kill ends a leg and whatever cannot outlive it: its bridged peer, the
// legs ringing for it, its queue leg. It unlinks everything so links only
// ever point at live legs, and tells the driver to end the signalling of
// every leg whose own device did not end it.
func (e *Engine) kill(t *tx, l *leg, cause int32) {
	if l.dead {
		return
	}
	l.dead = true
	l.w().Cause = cause
	t.touch(l)
	if !l.quiet {
		t.signal(signal{op: sigHangup, leg: l.ref(), cause: cause})
	}
	if p := l.peer; p != nil {
		l.peer, p.peer = nil, nil
		e.kill(t, p, cause)
	}
	if r := l.ext; r != nil {
		l.ext, r.leg = nil, nil
		t.detach(r, cause)
	}
	if rg := l.alerting; rg != nil {
		l.alerting = nil
		e.dissolve(t, rg, cause)
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
		e.kill(t, q, cause)
	}
}

// dissolve ends every leg still ringing for rg; the origin is left to the
// caller. An external caller ringing the group is detached: it ends with
// the operation unless the operation routes it elsewhere.
func (e *Engine) dissolve(t *tx, rg *ringer, cause int32) {
	e.stop(&rg.timer)
	if rg.origin != nil && rg.origin.alerting == rg {
		rg.origin.alerting = nil
		t.touch(rg.origin)
	}
	if r := rg.rem; r != nil && r.ringer == rg {
		r.ringer = nil
		t.detach(r, cause)
	}
	legs := rg.legs
	rg.legs, rg.rest = nil, nil
	for _, l := range legs {
		l.ringing = nil
		e.kill(t, l, cause)
	}
}

func (e *Engine) fail(t *tx, o origin, cause int32) {
	if o.leg != nil {
		e.kill(t, o.leg, cause)
	}
	if o.rem != nil {
		t.detach(o.rem, cause)
	}
}

// bridged tells the driver that two parties now talk to each other.
func bridged(t *tx, a, b Party) {
	t.signal(signal{op: sigBridge, a: a, b: b})
}

func isPhone(dev *directory.Device) bool { return strings.HasPrefix(dev.Name, "SIP/") }

func isQueue(dev *directory.Device) bool { return strings.HasPrefix(dev.Name, "Queue/") }

func xferOf(ls ...*leg) []callstore.XferLeg {
	out := make([]callstore.XferLeg, 0, len(ls))
	for _, l := range ls {
		out = append(out, callstore.XferLeg{UID: l.c.UID, ID: l.c.ID, Device: l.c.Device})
	}
	return out
}
