package replica

import (
	"context"
	"fmt"

	"callcontrold/callstore"
	"callcontrold/pbx"
)

// Switch is the server's switch on a replica: while this replica leads it
// is the engine; otherwise every operation fails with pbx.ErrUnavailable
// (the forwarding interceptor sends control RPCs to the leader before they
// get here). It also answers SimulatorService, when the engine is
// simulated, and device state, from the store on a follower.
type Switch struct{ n *Node }

var (
	_ pbx.Switch    = Switch{}
	_ pbx.Simulator = Switch{}
)

// Switch returns the replica's switch for the server.
func (n *Node) Switch() Switch { return Switch{n} }

// Dial implements pbx.Switch.
func (s Switch) Dial(ctx context.Context, device, number string, opts pbx.DialOptions) (*callstore.Call, error) {
	e, err := s.n.engine()
	if err != nil {
		return nil, err
	}
	return e.Dial(ctx, device, number, opts)
}

// Hold implements pbx.Switch.
func (s Switch) Hold(ctx context.Context, uid int64) (*callstore.Call, bool, error) {
	e, err := s.n.engine()
	if err != nil {
		return nil, false, err
	}
	return e.Hold(ctx, uid)
}

// Talk implements pbx.Switch.
func (s Switch) Talk(ctx context.Context, uid int64) (*callstore.Call, bool, error) {
	e, err := s.n.engine()
	if err != nil {
		return nil, false, err
	}
	return e.Talk(ctx, uid)
}

// Hangup implements pbx.Switch.
func (s Switch) Hangup(ctx context.Context, uid int64) (*callstore.Call, error) {
	e, err := s.n.engine()
	if err != nil {
		return nil, err
	}
	return e.Hangup(ctx, uid)
}

// Send implements pbx.Switch.
func (s Switch) Send(ctx context.Context, uid int64, number string) (*callstore.Call, *callstore.Call, error) {
	e, err := s.n.engine()
	if err != nil {
		return nil, nil, err
	}
	return e.Send(ctx, uid, number)
}

// Xfer implements pbx.Switch.
func (s Switch) Xfer(ctx context.Context, uid int64, number string) (*callstore.Call, *callstore.Call, error) {
	e, err := s.n.engine()
	if err != nil {
		return nil, nil, err
	}
	return e.Xfer(ctx, uid, number)
}

// AtXfer implements pbx.Switch.
func (s Switch) AtXfer(ctx context.Context, uid, targetUID int64) (*callstore.Call, *callstore.Call, error) {
	e, err := s.n.engine()
	if err != nil {
		return nil, nil, err
	}
	return e.AtXfer(ctx, uid, targetUID)
}

// Mute implements pbx.Switch.
func (s Switch) Mute(ctx context.Context, uid int64, mute bool) (*callstore.Call, bool, error) {
	e, err := s.n.engine()
	if err != nil {
		return nil, false, err
	}
	return e.Mute(ctx, uid, mute)
}

// Dtmf implements pbx.Switch.
func (s Switch) Dtmf(ctx context.Context, uid int64, tone string) (*callstore.Call, error) {
	e, err := s.n.engine()
	if err != nil {
		return nil, err
	}
	return e.Dtmf(ctx, uid, tone)
}

// simulator returns the leader's engine as a simulator.
func (s Switch) simulator() (pbx.Simulator, error) {
	e, err := s.n.engine()
	if err != nil {
		return nil, err
	}
	sim, ok := e.(pbx.Simulator)
	if !ok {
		return nil, fmt.Errorf("%w: the switch is not simulated", pbx.ErrNotSupported)
	}
	return sim, nil
}

// PlaceInbound implements pbx.Simulator.
func (s Switch) PlaceInbound(ctx context.Context, fromNumber, fromName, toExtension string) ([]*callstore.Call, error) {
	sim, err := s.simulator()
	if err != nil {
		return nil, err
	}
	return sim.PlaceInbound(ctx, fromNumber, fromName, toExtension)
}

// AnswerRemote implements pbx.Simulator.
func (s Switch) AnswerRemote(ctx context.Context, uid int64) (*callstore.Call, error) {
	sim, err := s.simulator()
	if err != nil {
		return nil, err
	}
	return sim.AnswerRemote(ctx, uid)
}

// RejectRemote implements pbx.Simulator.
func (s Switch) RejectRemote(ctx context.Context, uid int64, cause int32) (*callstore.Call, error) {
	sim, err := s.simulator()
	if err != nil {
		return nil, err
	}
	return sim.RejectRemote(ctx, uid, cause)
}

// HangupRemote implements pbx.Simulator.
func (s Switch) HangupRemote(ctx context.Context, uid int64) (*callstore.Call, error) {
	sim, err := s.simulator()
	if err != nil {
		return nil, err
	}
	return sim.HangupRemote(ctx, uid)
}

// SetNumberBehaviour implements pbx.Simulator. Behaviours live in the
// leader's simulator: a new leader starts from the directory's rules.
func (s Switch) SetNumberBehaviour(number string, b pbx.Behaviour) error {
	sim, err := s.simulator()
	if err != nil {
		return err
	}
	return sim.SetNumberBehaviour(number, b)
}

// DeviceState answers from the engine while leading; on a follower, the
// lamp comes from the store and the status from Config.DeviceStatus.
func (s Switch) DeviceState(name string) (pbx.DeviceState, error) {
	if e, err := s.n.engine(); err == nil {
		return e.DeviceState(name)
	}
	st := pbx.DeviceState{BLF: pbx.BLFOf(s.n.store.ByDevice(name)), Status: pbx.StatusUnknown}
	if f := s.n.cfg.DeviceStatus; f != nil {
		st.Status = f(name)
	}
	return st, nil
}
