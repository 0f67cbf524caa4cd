package sim

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"callcontrold/callstore"
	"callcontrold/directory"
	"callcontrold/pbx"
	"callcontrold/pbx/pbxtest"
)

// TestFlows runs the driver-agnostic flow table against the simulated
// handsets and far ends.
func TestFlows(t *testing.T) { pbxtest.Run(t, newEnv) }

func newEnv(t *testing.T, dir *directory.Directory, store *callstore.Store, clock pbx.Clock) pbxtest.Env {
	s := New(dir, store, Options{Clock: clock, Logger: quietLogger()})
	t.Cleanup(s.Close)
	return pbxtest.Env{Engine: s.Engine, Driver: &phones{s: s}}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// phones plays the flow table's phones and far ends: the simulated
// devices report straight to the engine, the far ends are
// SimulatorService's.
type phones struct{ s *Switch }

var ctx = context.Background()

func noErr(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func second[T any](_ T, err error) error { return err }

func (p *phones) Answer(t testing.TB, uid int64) {
	t.Helper()
	noErr(t, second(p.s.Answered(ctx, uid)))
}
func (p *phones) HangUp(t testing.TB, uid int64) { t.Helper(); noErr(t, second(p.s.HungUp(ctx, uid))) }
func (p *phones) Refuse(t testing.TB, uid int64, cause int32) {
	t.Helper()
	noErr(t, second(p.s.Refused(ctx, uid, cause)))
}
func (p *phones) Hold(t testing.TB, uid int64, held bool) {
	t.Helper()
	noErr(t, second(p.s.Held(ctx, uid, held)))
}

func (p *phones) Inbound(t testing.TB, from, name, ext string) []*callstore.Call {
	t.Helper()
	calls, err := p.s.PlaceInbound(ctx, from, name, ext)
	if err != nil {
		t.Fatal(err)
	}
	return calls
}

func (p *phones) RemoteAnswer(t testing.TB, uid int64) {
	t.Helper()
	noErr(t, second(p.s.AnswerRemote(ctx, uid)))
}

func (p *phones) RemoteReject(t testing.TB, uid int64, cause int32) {
	t.Helper()
	noErr(t, second(p.s.RejectRemote(ctx, uid, cause)))
}

func (p *phones) RemoteHangup(t testing.TB, uid int64) {
	t.Helper()
	noErr(t, second(p.s.HangupRemote(ctx, uid)))
}

func (p *phones) SetNumberBehaviour(t testing.TB, number string, b pbx.Behaviour) {
	t.Helper()
	if err := p.s.SetNumberBehaviour(number, b); err != nil {
		t.Fatal(err)
	}
}

// Settle: the simulated far ends start their timers in Originate.
func (p *phones) Settle(testing.TB) {}
