package replica

import (
	"context"
	"fmt"

	"callcontrold/callstore"
	"callcontrold/pbx"
)

// Switch is the server's switch on a replica: while this replica leads it
// is the engine, and an operation returns once the log has stored what
// it committed (and every earlier operation); otherwise every operation
// fails with pbx.ErrUnavailable
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

// run runs op on the engine while this replica leads and returns its
// result once the log has stored every operation committed so far, op's
// included: an operation returns as applied, never as merely decided.
func run[T any](ctx context.Context, n *Node, op func(Engine) (T, error)) (T, error) {
	var zero T
	e, p, err := n.serving()
	if err != nil {
		return zero, err
	}
	v, err := op(e)
	if err != nil {
		return v, err
	}
	if err := p.sync(ctx); err != nil {
		return zero, err
	}
	return v, nil
}

// pair carries an operation's two results through run.
type pair[A, B any] struct {
	a A
	b B
}

// run2 is run for operations with two results.
func run2[A, B any](ctx context.Context, n *Node, op func(Engine) (A, B, error)) (A, B, error) {
	r, err := run(ctx, n, func(e Engine) (pair[A, B], error) {
		a, b, err := op(e)
		return pair[A, B]{a, b}, err
	})
	return r.a, r.b, err
}

// Dial implements pbx.Switch.
func (s Switch) Dial(ctx context.Context, device, number string, opts pbx.DialOptions) (*callstore.Call, error) {
	return run(ctx, s.n, func(e Engine) (*callstore.Call, error) { return e.Dial(ctx, device, number, opts) })
}

// Hold implements pbx.Switch.
func (s Switch) Hold(ctx context.Context, uid int64) (*callstore.Call, bool, error) {
	return run2(ctx, s.n, func(e Engine) (*callstore.Call, bool, error) { return e.Hold(ctx, uid) })
}

// Talk implements pbx.Switch.
func (s Switch) Talk(ctx context.Context, uid int64) (*callstore.Call, bool, error) {
	return run2(ctx, s.n, func(e Engine) (*callstore.Call, bool, error) { return e.Talk(ctx, uid) })
}

// Hangup implements pbx.Switch.
func (s Switch) Hangup(ctx context.Context, uid int64) (*callstore.Call, error) {
	return run(ctx, s.n, func(e Engine) (*callstore.Call, error) { return e.Hangup(ctx, uid) })
}

// Send implements pbx.Switch.
func (s Switch) Send(ctx context.Context, uid int64, number string) (*callstore.Call, *callstore.Call, error) {
	return run2(ctx, s.n, func(e Engine) (*callstore.Call, *callstore.Call, error) { return e.Send(ctx, uid, number) })
}

// Xfer implements pbx.Switch.
func (s Switch) Xfer(ctx context.Context, uid int64, number string) (*callstore.Call, *callstore.Call, error) {
	return run2(ctx, s.n, func(e Engine) (*callstore.Call, *callstore.Call, error) { return e.Xfer(ctx, uid, number) })
}

// AtXfer implements pbx.Switch.
func (s Switch) AtXfer(ctx context.Context, uid, targetUID int64) (*callstore.Call, *callstore.Call, error) {
	return run2(ctx, s.n, func(e Engine) (*callstore.Call, *callstore.Call, error) { return e.AtXfer(ctx, uid, targetUID) })
}

// Mute implements pbx.Switch.
func (s Switch) Mute(ctx context.Context, uid int64, mute bool) (*callstore.Call, bool, error) {
	return run2(ctx, s.n, func(e Engine) (*callstore.Call, bool, error) { return e.Mute(ctx, uid, mute) })
}

// Dtmf implements pbx.Switch.
func (s Switch) Dtmf(ctx context.Context, uid int64, tone string) (*callstore.Call, error) {
	return run(ctx, s.n, func(e Engine) (*callstore.Call, error) { return e.Dtmf(ctx, uid, tone) })
}

// simulated runs a SimulatorService operation on the leader's engine, as
// run does.
func simulated[T any](ctx context.Context, n *Node, op func(pbx.Simulator) (T, error)) (T, error) {
	return run(ctx, n, func(e Engine) (T, error) {
		sim, ok := e.(pbx.Simulator)
		if !ok {
			var zero T
			return zero, fmt.Errorf("%w: the switch is not simulated", pbx.ErrNotSupported)
		}
		return op(sim)
	})
}

// PlaceInbound implements pbx.Simulator.
func (s Switch) PlaceInbound(ctx context.Context, fromNumber, fromName, toExtension string) ([]*callstore.Call, error) {
	return simulated(ctx, s.n, func(sim pbx.Simulator) ([]*callstore.Call, error) {
		return sim.PlaceInbound(ctx, fromNumber, fromName, toExtension)
	})
}

// AnswerRemote implements pbx.Simulator.
func (s Switch) AnswerRemote(ctx context.Context, uid int64) (*callstore.Call, error) {
	return simulated(ctx, s.n, func(sim pbx.Simulator) (*callstore.Call, error) { return sim.AnswerRemote(ctx, uid) })
}

// RejectRemote implements pbx.Simulator.
func (s Switch) RejectRemote(ctx context.Context, uid int64, cause int32) (*callstore.Call, error) {
	return simulated(ctx, s.n, func(sim pbx.Simulator) (*callstore.Call, error) { return sim.RejectRemote(ctx, uid, cause) })
}

// HangupRemote implements pbx.Simulator.
func (s Switch) HangupRemote(ctx context.Context, uid int64) (*callstore.Call, error) {
	return simulated(ctx, s.n, func(sim pbx.Simulator) (*callstore.Call, error) { return sim.HangupRemote(ctx, uid) })
}

// SetNumberBehaviour implements pbx.Simulator. Behaviours live in the
// leader's simulator: a new leader starts from the directory's rules.
func (s Switch) SetNumberBehaviour(number string, b pbx.Behaviour) error {
	_, err := simulated(context.Background(), s.n, func(sim pbx.Simulator) (struct{}, error) {
		return struct{}{}, sim.SetNumberBehaviour(number, b)
	})
	return err
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
