package sim

import (
	"errors"
	"slices"
	"testing"

	"callcontrold/callstore"
	"callcontrold/pbx"
	"callcontrold/pbx/pbxtest"
)

// TestErrors: every refused operation says why, with the error the server
// maps, and commits nothing.
func TestErrors(t *testing.T) {
	h := pbxtest.New(t, newEnv)
	sim := h.D.(*phones).s
	a := h.Dial("SIP/201", "202")
	b := h.On("SIP/202")
	var se *pbx.StateError
	_, _, err := sim.Hold(ctx, a.UID)
	if !errors.Is(err, pbx.ErrBadState) || !errors.As(err, &se) || se.State != callstore.StateRing || !slices.Contains(se.Allowed, callstore.StateUp) {
		t.Errorf("hold on ringing: %v", err)
	}
	if _, _, err := sim.Talk(ctx, a.UID); !errors.Is(err, pbx.ErrBadState) {
		t.Errorf("talk on own ringing call: %v", err)
	}
	if _, _, err := sim.Xfer(ctx, b.UID, "203"); !errors.Is(err, pbx.ErrBadState) {
		t.Errorf("xfer ringing: %v", err)
	}
	if _, _, err := sim.Send(ctx, a.UID, "203"); !errors.Is(err, pbx.ErrBadState) {
		t.Errorf("send caller leg: %v", err)
	}
	h.AnswerCall(b.UID)
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"unknown uid", second(sim.Hangup(ctx, 9999)), pbx.ErrNotFound},
		{"unknown device", second(sim.Dial(ctx, "SIP/999", "201", pbx.DialOptions{})), pbx.ErrNotFound},
		{"dial from a queue", second(sim.Dial(ctx, "Queue/q_600", "201", pbx.DialOptions{})), pbx.ErrNotSupported},
		{"autoanswer unsupported", second(sim.Dial(ctx, "SIP/203", "201", pbx.DialOptions{AutoAnswer: true})), pbx.ErrNotSupported},
		{"short unknown number", second(sim.Dial(ctx, "SIP/202", "299", pbx.DialOptions{})), pbx.ErrInvalidNumber},
		{"letters", second(sim.Dial(ctx, "SIP/202", "12a45", pbx.DialOptions{})), pbx.ErrInvalidNumber},
		{"empty", second(sim.Dial(ctx, "SIP/202", "", pbx.DialOptions{})), pbx.ErrInvalidNumber},
		{"invalid is an argument error", second(sim.Dial(ctx, "SIP/202", "+", pbx.DialOptions{})), pbx.ErrInvalidArgument},
		{"mute on a desk phone", third(sim.Mute(ctx, a.UID, true)), pbx.ErrNotSupported},
		{"dtmf on a desk phone", second(sim.Dtmf(ctx, a.UID, "1")), pbx.ErrNotSupported},
		{"xfer to a bad number", third2(sim.Xfer(ctx, a.UID, "x")), pbx.ErrInvalidNumber},
		{"atxfer with itself", third2(sim.AtXfer(ctx, a.UID, a.UID)), pbx.ErrInvalidArgument},
		{"atxfer of a bridged pair", third2(sim.AtXfer(ctx, a.UID, b.UID)), pbx.ErrInvalidArgument},
		{"answer-remote without one", second(sim.AnswerRemote(ctx, a.UID)), pbx.ErrBadState},
		{"hangup-remote without one", second(sim.HangupRemote(ctx, a.UID)), pbx.ErrNotFound},
		{"inbound to a park orbit", second(sim.PlaceInbound(ctx, "+4420794600", "", "701")), pbx.ErrInvalidNumber},
		{"inbound from a bad number", second(sim.PlaceInbound(ctx, "abc", "", "201")), pbx.ErrInvalidNumber},
		{"behaviour for an extension", sim.SetNumberBehaviour("201", pbx.Behaviour{Action: pbx.ActionBusy}), pbx.ErrInvalidNumber},
		{"behaviour unknown", sim.SetNumberBehaviour("+4420794600", pbx.Behaviour{}), pbx.ErrInvalidArgument},
		{"reject-remote bad cause", second(sim.RejectRemote(ctx, a.UID, 500)), pbx.ErrInvalidArgument},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	// None of the failures committed anything.
	h.Skip()
	if _, _, err := sim.Hold(ctx, a.UID); err != nil {
		t.Fatal(err)
	}
	c := h.Dial("SIP/webrtc11", "+15550140")
	if _, err := sim.Dtmf(ctx, c.UID, "12"); !errors.Is(err, pbx.ErrInvalidTone) || !errors.Is(err, pbx.ErrInvalidArgument) {
		t.Errorf("bad tone: %v", err)
	}
	if _, err := sim.Dtmf(ctx, c.UID, "1"); !errors.Is(err, pbx.ErrBadState) {
		t.Errorf("dtmf while ringing: %v", err)
	}
	sim.Close()
	if _, err := sim.Hangup(ctx, a.UID); !errors.Is(err, pbx.ErrClosed) {
		t.Errorf("after close: %v", err)
	}
	if se.Error() == "" {
		t.Error("empty message")
	}
}

func third[T any](_ T, _ bool, err error) error { return err }
func third2[T any](_, _ T, err error) error     { return err }
