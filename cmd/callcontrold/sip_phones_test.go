package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/pbx/sip/siptest"
)

// phoneWait bounds every wait on a phone or the watch: a liveness bound,
// not a timing assertion.
const phoneWait = 20 * time.Second

// TestRealPhones runs the binary with --switch sip and two real soft
// phones (baresip) registered with the demo credentials as SIP/201
// (alice's, auto-answering as a click-to-dial phone should) and SIP/202
// (the reception, answered by hand). Over gRPC: alice dials 202, her own
// phone goes off-hook first, the reception's phone rings and answers;
// alice holds and takes the call back (the reception's phone gets
// re-INVITEs); the reception hangs up on its phone. Then a second call
// that the reception's phone declines. An admin's WatchCalls stream must
// show each leg pass through the same states as with the simulated
// switch.
func TestRealPhones(t *testing.T) {
	bin := buildBinary(t)
	sipAddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(siptest.FreePort(t)))
	s := startServer(t, bin, "--switch=sip", "--sip-addr="+sipAddr.String())

	alice := siptest.StartBaresip(t, siptest.BaresipOptions{User: "201", Password: "demo-sip-201", Registrar: sipAddr, AutoAnswer: true})
	reception := siptest.StartBaresip(t, siptest.BaresipOptions{User: "202", Password: "demo-sip-202", Registrar: sipAddr})
	for _, p := range []*siptest.Baresip{alice, reception} {
		if _, err := p.WaitEvent(phoneWait, "REGISTER_OK"); err != nil {
			t.Fatalf("registration: %v", err)
		}
	}

	conn := dialServer(t, s.addr)
	defer conn.Close()
	calls := callcontrolv1.NewCallControlServiceClient(conn)
	devices := callcontrolv1.NewDeviceServiceClient(conn)
	for _, d := range []string{"SIP/201", "SIP/202"} {
		waitUntil(t, d+" registered (status up)", func() bool {
			got, err := devices.GetDevice(as("admin"), &callcontrolv1.GetDeviceRequest{Name: d})
			return err == nil && got.GetDevice().GetStatus() == callcontrolv1.DeviceStatus_DEVICE_STATUS_UP
		})
	}

	w := watchAll(t, calls, as("admin"))

	// Call 1: click-to-dial, answer, hold, talk, hang up on the phone.
	dialled, err := calls.Dial(as("alice"), &callcontrolv1.DialRequest{Device: "SIP/201", Number: "202"})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	uid := dialled.GetCall().GetUid()
	if _, err := alice.WaitEvent(phoneWait, "CALL_ESTABLISHED"); err != nil { // her phone, off-hook first
		t.Fatalf("alice's phone did not go off-hook: %v", err)
	}
	if _, err := reception.WaitEvent(phoneWait, "CALL_INCOMING"); err != nil {
		t.Fatalf("the reception's phone did not ring: %v", err)
	}
	if err := reception.Accept(); err != nil {
		t.Fatal(err)
	}
	w.until(t, "both legs up", func(st map[string]callcontrolv1.State) bool {
		return st["SIP/201"] == callcontrolv1.State_STATE_UP && st["SIP/202"] == callcontrolv1.State_STATE_UP
	})
	held, err := calls.Hold(as("alice"), &callcontrolv1.HoldRequest{Uid: uid})
	if err != nil || held.GetCall().GetState() != callcontrolv1.State_STATE_HOLD {
		t.Fatalf("Hold: %v, state %v", err, held.GetCall().GetState())
	}
	if _, err := reception.WaitEvent(phoneWait, "CALL_REMOTE_SDP"); err != nil {
		t.Fatalf("the held phone got no re-INVITE: %v", err)
	}
	back, err := calls.Talk(as("alice"), &callcontrolv1.TalkRequest{Uid: uid})
	if err != nil || back.GetCall().GetState() != callcontrolv1.State_STATE_UP {
		t.Fatalf("Talk: %v, state %v", err, back.GetCall().GetState())
	}
	if _, err := reception.WaitEvent(phoneWait, "CALL_REMOTE_SDP"); err != nil {
		t.Fatalf("the phone taken off hold got no re-INVITE: %v", err)
	}
	if err := reception.Hangup(); err != nil { // a BYE from the phone
		t.Fatal(err)
	}
	w.until(t, "both legs dead", func(st map[string]callcontrolv1.State) bool {
		return st["SIP/201"] == callcontrolv1.State_STATE_DEAD && st["SIP/202"] == callcontrolv1.State_STATE_DEAD
	})
	want := map[string][]string{
		"SIP/201": {"NEW DIAL", "UPDATE RING", "UPDATE UP", "UPDATE HOLD", "UPDATE UP", "UPDATE DEAD 16"},
		"SIP/202": {"NEW RING", "UPDATE UP", "UPDATE DEAD 16"},
	}
	for dev, seq := range want {
		if got := w.history(dev); !slices.Equal(got, seq) {
			t.Errorf("%s: the watch saw %q, want %q", dev, got, seq)
		}
	}

	// Call 2: the reception's phone declines while it rings.
	w.reset()
	if _, err := calls.Dial(as("alice"), &callcontrolv1.DialRequest{Device: "SIP/201", Number: "202"}); err != nil {
		t.Fatalf("second Dial: %v", err)
	}
	if _, err := alice.WaitEvent(phoneWait, "CALL_ESTABLISHED"); err != nil { // her phone, off-hook first
		t.Fatalf("alice's phone did not go off-hook: %v", err)
	}
	if _, err := reception.WaitEvent(phoneWait, "CALL_INCOMING"); err != nil {
		t.Fatalf("the reception's phone did not ring: %v", err)
	}
	if err := reception.Hangup(); err != nil { // a refusal of the INVITE
		t.Fatal(err)
	}
	w.until(t, "both legs dead", func(st map[string]callcontrolv1.State) bool {
		return st["SIP/201"] == callcontrolv1.State_STATE_DEAD && st["SIP/202"] == callcontrolv1.State_STATE_DEAD
	})
	// baresip declines a ringing call with 486 Busy Here: cause 17.
	if got, want := w.history("SIP/202"), []string{"NEW RING", "UPDATE DEAD 17"}; !slices.Equal(got, want) {
		t.Errorf("SIP/202 declining: the watch saw %q, want %q", got, want)
	}
	if got, want := w.history("SIP/201"), []string{"NEW DIAL", "UPDATE RING", "UPDATE DEAD 17"}; !slices.Equal(got, want) {
		t.Errorf("SIP/201 refused: the watch saw %q, want %q", got, want)
	}
}

// phoneWatch is an admin's WatchCalls stream, read in the background.
type phoneWatch struct {
	frames chan *callcontrolv1.WatchCallsResponse
	errs   chan error
	// seen is each device's transitions since the last reset, as
	// "TYPE STATE[ CAUSE][ xfer=N]", consecutive repeats folded (N: the
	// calls a TRANSFER's xfer_data names); state is each
	// device's latest state.
	seen  map[string][]string
	state map[string]callcontrolv1.State
}

func watchAll(t *testing.T, calls callcontrolv1.CallControlServiceClient, ctx context.Context) *phoneWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	stream, err := calls.WatchCalls(ctx, &callcontrolv1.WatchCallsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// The snapshot (empty: no calls yet) ends before anything is dialled,
	// so every leg's first frame is its NEW event.
	for {
		f, err := stream.Recv()
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		if f.GetSnapshotEnd() != nil {
			break
		}
	}
	w := &phoneWatch{frames: make(chan *callcontrolv1.WatchCallsResponse, 64), errs: make(chan error, 1)}
	w.reset()
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	go func() {
		defer close(done)
		for {
			f, err := stream.Recv()
			if err != nil {
				w.errs <- err
				return
			}
			select {
			case w.frames <- f:
			case <-ctx.Done():
				return
			}
		}
	}()
	return w
}

func (w *phoneWatch) reset() {
	w.seen = map[string][]string{}
	w.state = map[string]callcontrolv1.State{}
}

// until reads frames until cond holds on the devices' latest states.
func (w *phoneWatch) until(t *testing.T, what string, cond func(map[string]callcontrolv1.State) bool) {
	t.Helper()
	deadline := time.NewTimer(phoneWait)
	defer deadline.Stop()
	for !cond(w.state) {
		select {
		case f := <-w.frames:
			for _, ev := range f.GetEvents().GetEvents() {
				c := ev.GetCall()
				s := fmt.Sprintf("%s %s", strings.TrimPrefix(ev.GetType().String(), "EVENT_TYPE_"), strings.TrimPrefix(c.GetState().String(), "STATE_"))
				if c.GetState() == callcontrolv1.State_STATE_DEAD {
					s += fmt.Sprintf(" %d", c.GetCause())
				}
				if ev.GetType() == callcontrolv1.EventType_EVENT_TYPE_TRANSFER {
					s += fmt.Sprintf(" xfer=%d", len(c.GetXferData().GetCalls()))
				}
				if h := w.seen[c.GetDevice()]; len(h) == 0 || h[len(h)-1] != s {
					w.seen[c.GetDevice()] = append(h, s)
				}
				w.state[c.GetDevice()] = c.GetState()
			}
		case err := <-w.errs:
			if err == io.EOF {
				err = fmt.Errorf("stream ended")
			}
			t.Fatalf("waiting for %s: the watch ended: %v", what, err)
		case <-deadline.C:
			t.Fatalf("waiting for %s: not within %v; saw %q", what, phoneWait, w.seen)
		}
	}
}

func (w *phoneWatch) history(device string) []string { return w.seen[device] }

// waitUntil polls cond until it holds, within phoneWait.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(phoneWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
