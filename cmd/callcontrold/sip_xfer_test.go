package main

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/pbx/sip/siptest"
)

// realSwitch is the binary behind --switch sip with baresip phones
// registered, and an admin's watch on it.
type realSwitch struct {
	sipAddr netip.AddrPort
	calls   callcontrolv1.CallControlServiceClient
	phones  map[string]*siptest.Baresip // by user (extension)
	w       *phoneWatch
}

// startRealSwitch starts the binary with --switch sip (and args), and a
// baresip phone for each user, registered and shown up on the API; 201
// auto-answers, as a click-to-dial phone should.
func startRealSwitch(t *testing.T, bin string, users []string, args ...string) *realSwitch {
	t.Helper()
	sipAddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(siptest.FreePort(t)))
	s := startServer(t, bin, append([]string{"--switch=sip", "--sip-addr=" + sipAddr.String()}, args...)...)
	rs := &realSwitch{sipAddr: sipAddr, phones: map[string]*siptest.Baresip{}}
	for _, u := range users {
		p := siptest.StartBaresip(t, siptest.BaresipOptions{User: u, Password: "demo-sip-" + u, Registrar: sipAddr, AutoAnswer: u == "201"})
		if _, err := p.WaitEvent(phoneWait, "REGISTER_OK"); err != nil {
			t.Fatalf("%s registration: %v", u, err)
		}
		rs.phones[u] = p
	}
	conn := dialServer(t, s.addr)
	t.Cleanup(func() { conn.Close() })
	rs.calls = callcontrolv1.NewCallControlServiceClient(conn)
	devices := callcontrolv1.NewDeviceServiceClient(conn)
	for _, u := range users {
		waitUntil(t, "SIP/"+u+" registered (status up)", func() bool {
			got, err := devices.GetDevice(as("admin"), &callcontrolv1.GetDeviceRequest{Name: "SIP/" + u})
			return err == nil && got.GetDevice().GetStatus() == callcontrolv1.DeviceStatus_DEVICE_STATUS_UP
		})
	}
	// The watch's reader ends when its context does: cancel it first
	// among the cleanups (they run last-in first-out), before the reader
	// is waited for and the connection closed.
	ctx, cancel := context.WithCancel(as("admin"))
	rs.w = watchAll(t, rs.calls, ctx)
	t.Cleanup(cancel)
	return rs
}

// dialServer opens a plaintext client connection to a server under test;
// the caller closes it (where decides which watch readers it ends first).
func dialServer(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// as is the outgoing context of a demo login.
func as(login string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer demo-"+login)
}

// wait waits for one of a phone's events.
func (rs *realSwitch) wait(t *testing.T, user, event string) {
	t.Helper()
	if _, err := rs.phones[user].WaitEvent(phoneWait, event); err != nil {
		t.Fatalf("phone %s: %v", user, err)
	}
}

// connect has alice (201) dial 202 over the API and the reception's
// phone answer: both legs up. It returns alice's leg.
func (rs *realSwitch) connect(t *testing.T) int64 {
	t.Helper()
	dialled, err := rs.calls.Dial(as("alice"), &callcontrolv1.DialRequest{Device: "SIP/201", Number: "202"})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	rs.wait(t, "201", "CALL_ESTABLISHED") // her own phone, off-hook first
	rs.wait(t, "202", "CALL_INCOMING")
	if err := rs.phones["202"].Accept(); err != nil {
		t.Fatal(err)
	}
	rs.w.until(t, "201 and 202 up", func(st map[string]callcontrolv1.State) bool {
		return st["SIP/201"] == callcontrolv1.State_STATE_UP && st["SIP/202"] == callcontrolv1.State_STATE_UP
	})
	return dialled.GetCall().GetUid()
}

// answerTransfer: the meeting room's phone (203) rings for the
// transferred call and answers it: 201 and 203 up.
func (rs *realSwitch) answerTransfer(t *testing.T) {
	t.Helper()
	rs.wait(t, "203", "CALL_INCOMING")
	if err := rs.phones["203"].Accept(); err != nil {
		t.Fatal(err)
	}
	rs.w.until(t, "201 and 203 up", func(st map[string]callcontrolv1.State) bool {
		return st["SIP/201"] == callcontrolv1.State_STATE_UP && st["SIP/203"] == callcontrolv1.State_STATE_UP
	})
}

// expect checks the watch's transitions of each device.
func (rs *realSwitch) expect(t *testing.T, want map[string][]string) {
	t.Helper()
	for dev, seq := range want {
		if got := rs.w.history(dev); !slices.Equal(got, seq) {
			t.Errorf("%s: the watch saw %q, want %q", dev, got, seq)
		}
	}
}

// TestRealPhoneTransfers runs the binary with --switch sip and real
// baresip phones: a blind transfer through the API (the reception
// transfers alice's call to the meeting room, which rings and answers),
// the same transfer asked by the reception's own phone (REFER, baresip's
// transfer command), and a call nobody answers (the ring timeout ends it
// with cause 19). An admin's WatchCalls stream is checked leg by leg.
func TestRealPhoneTransfers(t *testing.T) {
	bin := buildBinary(t)
	t.Run("xfer and refer", func(t *testing.T) {
		rs := startRealSwitch(t, bin, []string{"201", "202", "203"})
		transferred := map[string][]string{
			"SIP/201": {"NEW DIAL", "UPDATE RING", "UPDATE UP", "TRANSFER RING xfer=2", "UPDATE UP", "UPDATE DEAD 16"},
			"SIP/202": {"NEW RING", "UPDATE UP", "UPDATE DEAD 16"},
			"SIP/203": {"NEW RING", "UPDATE UP", "UPDATE DEAD 16"},
		}

		// Xfer over the API: the reception's leg ends (BYE to its phone),
		// alice's leg rings the meeting room.
		rs.connect(t)
		list, err := rs.calls.ListCalls(as("admin"), &callcontrolv1.ListCallsRequest{Filter: &callcontrolv1.CallFilter{Devices: []string{"SIP/202"}}})
		if err != nil || len(list.GetCalls()) != 1 {
			t.Fatalf("the reception's call: %v %v", list.GetCalls(), err)
		}
		x, err := rs.calls.Xfer(as("admin"), &callcontrolv1.XferRequest{Uid: list.GetCalls()[0].GetUid(), Number: "203"})
		if err != nil || x.GetCall().GetState() != callcontrolv1.State_STATE_DEAD {
			t.Fatalf("Xfer: %v, the reception's leg %v", err, x.GetCall().GetState())
		}
		rs.wait(t, "202", "CALL_CLOSED")
		rs.answerTransfer(t)
		if err := rs.phones["203"].Hangup(); err != nil {
			t.Fatal(err)
		}
		rs.w.until(t, "201 and 203 dead", func(st map[string]callcontrolv1.State) bool {
			return st["SIP/201"] == callcontrolv1.State_STATE_DEAD && st["SIP/203"] == callcontrolv1.State_STATE_DEAD
		})
		rs.wait(t, "201", "CALL_CLOSED")
		rs.expect(t, transferred)

		// The same transfer asked by the reception's phone: REFER, 202
		// Accepted, baresip hangs up; then alice hangs up over the API.
		rs.w.reset()
		uid := rs.connect(t)
		if err := rs.phones["202"].Transfer("sip:203@" + rs.sipAddr.String()); err != nil {
			t.Fatal(err)
		}
		if ev, err := rs.phones["202"].WaitEvent(phoneWait, "CALL_CLOSED"); err != nil {
			t.Fatalf("the transferring phone: %v", err)
		} else {
			t.Logf("the transferring phone closed its call: %s", ev.Param)
		}
		rs.answerTransfer(t)
		if _, err := rs.calls.Hangup(as("alice"), &callcontrolv1.HangupRequest{Uid: uid}); err != nil {
			t.Fatalf("Hangup: %v", err)
		}
		rs.w.until(t, "201 and 203 dead", func(st map[string]callcontrolv1.State) bool {
			return st["SIP/201"] == callcontrolv1.State_STATE_DEAD && st["SIP/203"] == callcontrolv1.State_STATE_DEAD
		})
		rs.wait(t, "203", "CALL_CLOSED")
		rs.expect(t, transferred)
	})

	t.Run("no answer", func(t *testing.T) {
		rs := startRealSwitch(t, bin, []string{"201", "203"}, "--ring-timeout=5s")
		if _, err := rs.calls.Dial(as("alice"), &callcontrolv1.DialRequest{Device: "SIP/201", Number: "203"}); err != nil {
			t.Fatalf("Dial: %v", err)
		}
		rs.wait(t, "203", "CALL_INCOMING") // and nobody answers
		rs.w.until(t, "201 and 203 dead", func(st map[string]callcontrolv1.State) bool {
			return st["SIP/201"] == callcontrolv1.State_STATE_DEAD && st["SIP/203"] == callcontrolv1.State_STATE_DEAD
		})
		rs.wait(t, "203", "CALL_CLOSED") // CANCEL
		rs.wait(t, "201", "CALL_CLOSED") // BYE
		rs.expect(t, map[string][]string{
			"SIP/201": {"NEW DIAL", "UPDATE RING", "UPDATE DEAD 19"},
			"SIP/203": {"NEW RING", "UPDATE DEAD 19"},
		})
	})
}
