// Package sim is the simulated channel driver, the embedded default: the
// handsets of the directory's devices and the far ends of external
// numbers, played by rule and timer instead of by real phones.
//
// A simulated handset does what it is told at once: it goes off hook for
// the calls the API dials from it, and answers when the API's Talk asks
// it to (the device's answer feature is checked by the engine). A
// simulated far end follows its number's behaviour (SetNumberBehaviour,
// then the directory's rules, then the default: answer after 3s): answer
// after a delay, busy, no answer, reject with a cause, or manual (it
// rings until SimulatorService drives it). SimulatorService also places
// calls from external numbers and hangs up as the far end.
//
// [New] returns a [Switch]: the call engine with this driver attached,
// which the server uses as its pbx.Switch, pbx.Simulator and device
// status source.
package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"callcontrold/callstore"
	"callcontrold/directory"
	"callcontrold/pbx"
)

// Options configure the simulated switch. Zero values select defaults.
type Options struct {
	Clock       pbx.Clock     // nil: the wall clock
	RingTimeout time.Duration // 0: the directory's ring_timeout
	// HuntStep is how long each member of a hunt group rings before the
	// next one; 0: 10s.
	HuntStep time.Duration
	// DefaultBehaviour applies to external numbers that neither
	// SetNumberBehaviour nor a directory rule covers; zero: answer after 3s.
	DefaultBehaviour pbx.Behaviour
	// MaxCallsPerDevice bounds the live legs a phone originates on; 0: 4.
	MaxCallsPerDevice int
	Logger            *slog.Logger // nil: slog.Default()
	// Commit: see pbx.Options.Commit (nil: the store's Commit).
	Commit func(changes ...callstore.Change) (int64, error)
	// CommitRequest: see pbx.Options.CommitRequest.
	CommitRequest func(req *pbx.Request, changes ...callstore.Change) (int64, error)
	// Sync: see pbx.Options.Sync.
	Sync func() error
}

// Switch is the call engine driving simulated handsets and far ends. It
// implements pbx.Switch (through the engine) and pbx.Simulator.
type Switch struct {
	*pbx.Engine
	d *driver
}

var (
	_ pbx.Switch    = (*Switch)(nil)
	_ pbx.Simulator = (*Switch)(nil)
)

// New returns a simulated switch over the directory, committing to store.
// It must be the only writer of store. Close stops its timers.
func New(dir *directory.Directory, store *callstore.Store, opts Options) *Switch {
	d := &driver{dir: dir, log: opts.Logger, defBehav: opts.DefaultBehaviour,
		behaviours: map[string]pbx.Behaviour{}, far: map[pbx.RemoteID]pbx.Timer{}}
	if d.log == nil {
		d.log = slog.Default()
	}
	if d.defBehav.Action == directory.ActionUnspecified {
		d.defBehav = pbx.Behaviour{Action: directory.ActionAnswer, AnswerDelay: 3 * time.Second}
	}
	e := pbx.NewEngine(dir, store, d, pbx.Options{
		Clock: opts.Clock, RingTimeout: opts.RingTimeout, HuntStep: opts.HuntStep,
		MaxCallsPerDevice: opts.MaxCallsPerDevice, Logger: opts.Logger, Commit: opts.Commit, Sync: opts.Sync,
		CommitRequest: opts.CommitRequest,
	})
	d.e = e
	return &Switch{Engine: e, d: d}
}

// Close stops the engine and every far end's timer.
func (s *Switch) Close() {
	s.Engine.Close()
	s.d.close()
}

// driver plays the handsets and far ends. Its lock guards its own maps
// only and is never held while it reports to the engine.
type driver struct {
	e        *pbx.Engine
	dir      *directory.Directory
	log      *slog.Logger
	defBehav pbx.Behaviour

	mu         sync.Mutex
	closed     bool
	behaviours map[string]pbx.Behaviour
	far        map[pbx.RemoteID]pbx.Timer // a far end's pending answer or refusal
}

var _ pbx.Driver = (*driver)(nil)

func (d *driver) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	for id, t := range d.far {
		t.Stop()
		delete(d.far, id)
	}
}

// behaviourFor: SetNumberBehaviour, then the directory's rules, then the
// default. The caller holds d.mu.
func (d *driver) behaviourFor(number string) pbx.Behaviour {
	if b, ok := d.behaviours[number]; ok {
		return b
	}
	for _, r := range d.dir.ExternalRules() {
		if r.Match(number) {
			return r.Behaviour
		}
	}
	return d.defBehav
}

// Refuse: a number whose behaviour is busy refuses at once (the caller
// never hears it ring); simulated phones are always reachable.
func (d *driver) Refuse(t pbx.Target) int32 {
	if t.Number == "" {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.behaviourFor(t.Number).Action == directory.ActionBusy {
		return pbx.CauseUserBusy
	}
	return 0
}

// Status: simulated phones are always registered.
func (d *driver) Status(string) pbx.DeviceStatus { return pbx.StatusUp }

// CanAnswer: every simulated handset with the answer feature answers
// when told.
func (d *driver) CanAnswer(string) bool { return true }

// CanDtmf: a simulated desk phone has no keypad the API can press; the
// browser phones' tones are the engine's.
func (d *driver) CanDtmf(string) bool { return false }

// Offhook: the handset picks up at once.
func (d *driver) Offhook(ctx context.Context, leg pbx.LegRef, _ bool) {
	d.report(d.e.Answered(ctx, leg.UID))
}

// Ring: a simulated handset rings until the API answers or declines it.
func (d *driver) Ring(context.Context, pbx.Ring) {}

// Answer: the handset answers at once.
func (d *driver) Answer(ctx context.Context, leg pbx.LegRef) {
	d.report(d.e.Answered(ctx, leg.UID))
}

// Originate schedules the far end's behaviour.
func (d *driver) Originate(ctx context.Context, o pbx.Originate) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	b := d.behaviourFor(o.Number)
	var f func()
	switch b.Action {
	case directory.ActionAnswer:
		f = func() { _, err := d.e.RemoteAnswered(ctx, o.Remote); d.report(nil, err) }
	case directory.ActionReject:
		cause := b.Cause
		if cause == 0 {
			cause = pbx.CauseRejected
		}
		f = func() { _, err := d.e.RemoteEnded(ctx, o.Remote, cause); d.report(nil, err) }
	case directory.ActionNoAnswer:
		f = func() { _, err := d.e.RemoteEnded(ctx, o.Remote, pbx.CauseNoAnswer); d.report(nil, err) }
		b.AnswerDelay = d.e.RingTimeout()
	case directory.ActionBusy: // the behaviour changed since Refuse said yes
		f = func() { _, err := d.e.RemoteEnded(ctx, o.Remote, pbx.CauseUserBusy); d.report(nil, err) }
		b.AnswerDelay = 0
	default: // manual: SimulatorService drives it
		return
	}
	id := o.Remote
	d.far[id] = d.e.Clock().AfterFunc(b.AnswerDelay, func() {
		d.mu.Lock()
		_, pending := d.far[id]
		delete(d.far, id)
		d.mu.Unlock()
		if pending {
			f()
		}
	})
}

// stopFar cancels what a far end was about to do.
func (d *driver) stopFar(id pbx.RemoteID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if t, ok := d.far[id]; ok {
		t.Stop()
		delete(d.far, id)
	}
}

// Bridge: simulated parties carry no media.
func (d *driver) Bridge(context.Context, pbx.Party, pbx.Party) {}

// Hold: the simulated party hears nothing.
func (d *driver) Hold(context.Context, pbx.LegRef, pbx.Party, bool) {}

// Hangup: the simulated handset goes idle.
func (d *driver) Hangup(context.Context, pbx.LegRef, int32) {}

// HangupRemote: the far end forgets the call.
func (d *driver) HangupRemote(_ context.Context, id pbx.RemoteID, _ int32) { d.stopFar(id) }

// Dtmf: nobody listens.
func (d *driver) Dtmf(context.Context, pbx.LegRef, string) {}

// report logs an event the engine refused: a race between a simulated
// party and the engine (the call ended meanwhile) is expected.
func (d *driver) report(_ *callstore.Call, err error) {
	if err != nil {
		d.log.Debug("sim: event not applied", "err", err)
	}
}

// PlaceInbound places a call from an external number to an extension.
func (s *Switch) PlaceInbound(ctx context.Context, fromNumber, fromName, toExtension string) ([]*callstore.Call, error) {
	_, calls, err := s.Inbound(ctx, fromNumber, fromName, toExtension)
	return calls, err
}

// AnswerRemote answers, as the external party, a call ringing out to it.
func (s *Switch) AnswerRemote(ctx context.Context, uid int64) (*callstore.Call, error) {
	r, err := s.calledRemote("answer-remote", uid)
	if err != nil {
		return nil, err
	}
	if r.NRState == callstore.NRUp {
		return s.current(uid, nil)
	}
	s.d.stopFar(r.ID)
	changed, err := s.RemoteAnswered(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	return s.current(uid, changed)
}

// RejectRemote rejects, as the external party, a call ringing out to it;
// cause 0 means 21.
func (s *Switch) RejectRemote(ctx context.Context, uid int64, cause int32) (*callstore.Call, error) {
	if cause == 0 {
		cause = pbx.CauseRejected
	}
	if err := pbx.CheckCause(cause); err != nil {
		return nil, err
	}
	r, err := s.calledRemote("reject-remote", uid)
	if err != nil {
		return nil, err
	}
	if r.NRState != callstore.NRRinging {
		return nil, s.stateErr("reject-remote", uid, "the external party already answered")
	}
	changed, err := s.RemoteEnded(ctx, r.ID, cause)
	if err != nil {
		return nil, err
	}
	return s.current(uid, changed)
}

// HangupRemote hangs up as the external party of the leg (ringing in or
// out, or answered): the leg, and whatever rings for the same external
// caller, ends with 16.
func (s *Switch) HangupRemote(ctx context.Context, uid int64) (*callstore.Call, error) {
	r, err := s.RemoteOf(uid)
	if err != nil {
		return nil, err
	}
	changed, err := s.RemoteEnded(ctx, r.ID, pbx.CauseNormalClearing)
	if err != nil {
		return nil, err
	}
	return s.current(uid, changed)
}

// calledRemote returns the external party a leg calls or talks to.
func (s *Switch) calledRemote(op string, uid int64) (pbx.RemoteInfo, error) {
	r, err := s.RemoteOf(uid)
	if err == nil && !r.Attached || errors.Is(err, pbx.ErrNotFound) && s.isLive(uid) {
		return pbx.RemoteInfo{}, s.stateErr(op, uid, "no external party is being called on this call")
	}
	return r, err
}

func (s *Switch) isLive(uid int64) bool {
	_, ok := s.Store().Get(uid)
	return ok
}

func (s *Switch) stateErr(op string, uid int64, detail string) error {
	st := callstore.StateDead
	if c, ok := s.Store().Get(uid); ok {
		st = c.State
	}
	return &pbx.StateError{Op: op, UID: uid, State: st, Allowed: []callstore.State{callstore.StateRing}, Detail: detail}
}

// current returns the leg as the operation left it: its value in the
// revision, or as it stands if the revision did not change it.
func (s *Switch) current(uid int64, changed []*callstore.Call) (*callstore.Call, error) {
	for _, c := range changed {
		if c.UID == uid {
			return c, nil
		}
	}
	if c, ok := s.Store().Get(uid); ok {
		return c, nil
	}
	return nil, fmt.Errorf("%w: no live call %d", pbx.ErrNotFound, uid)
}

// SetNumberBehaviour sets how an external number handles calls to it; it
// overrides the directory's rules.
func (s *Switch) SetNumberBehaviour(number string, b pbx.Behaviour) error {
	if err := pbx.CheckExternal(number); err != nil {
		return err
	}
	if b.Action < directory.ActionAnswer || b.Action > directory.ActionManual {
		return fmt.Errorf("%w: unknown behaviour %d", pbx.ErrInvalidArgument, b.Action)
	}
	if b.AnswerDelay < 0 || b.Cause < 0 || b.Cause > 127 {
		return fmt.Errorf("%w: negative delay or bad cause", pbx.ErrInvalidArgument)
	}
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	s.d.behaviours[number] = b
	return nil
}
