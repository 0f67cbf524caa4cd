package main

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/pbx/sip/siptest"
)

// TestRealTrunk runs the binary with --switch sip and --sip-trunk, a
// real soft phone (baresip, auto-answering) as alice's SIP/201 and SIPp
// as the trunk on 127.0.0.2 (the switch tells the trunk from phones by
// its address). Over gRPC alice dials an external number: her phone
// goes off-hook, the INVITE leaves through the trunk, which answers
// (then alice hangs up over gRPC: the trunk gets its BYE), is busy (486:
// cause 17) or declines (603: 21). An admin's WatchCalls stream checks
// the leg's states and causes.
func TestRealTrunk(t *testing.T) {
	bin := buildBinary(t)
	sipAddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(siptest.FreePort(t)))
	trunkPort := siptest.FreePort(t)
	s := startServer(t, bin, "--switch=sip", "--sip-addr="+sipAddr.String(), fmt.Sprintf("--sip-trunk=sip:127.0.0.2:%d", trunkPort))

	alice := siptest.StartBaresip(t, siptest.BaresipOptions{User: "201", Password: "demo-sip-201", Registrar: sipAddr, AutoAnswer: true})
	if _, err := alice.WaitEvent(phoneWait, "REGISTER_OK"); err != nil {
		t.Fatalf("registration: %v", err)
	}
	conn := dialServer(t, s.addr)
	defer conn.Close()
	calls := callcontrolv1.NewCallControlServiceClient(conn)
	devices := callcontrolv1.NewDeviceServiceClient(conn)
	waitUntil(t, "SIP/201 registered (status up)", func() bool {
		got, err := devices.GetDevice(as("admin"), &callcontrolv1.GetDeviceRequest{Name: "SIP/201"})
		return err == nil && got.GetDevice().GetStatus() == callcontrolv1.DeviceStatus_DEVICE_STATUS_UP
	})
	w := watchAll(t, calls, as("admin"))
	trunk := func(sc siptest.Scenario) *siptest.SIPp {
		return siptest.StartSIPp(t, siptest.SIPpOptions{Scenario: sc, Host: "127.0.0.2", Port: trunkPort})
	}
	dead := func(st map[string]callcontrolv1.State) bool { return st["SIP/201"] == callcontrolv1.State_STATE_DEAD }

	// Answered, then hung up over gRPC: BYE to the trunk.
	far := trunk(siptest.UASAnswer)
	dialled, err := calls.Dial(as("alice"), &callcontrolv1.DialRequest{Device: "SIP/201", Number: "+15550100"})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if _, err := alice.WaitEvent(phoneWait, "CALL_ESTABLISHED"); err != nil {
		t.Fatalf("alice's phone did not go off-hook: %v", err)
	}
	w.until(t, "the trunk answered", func(st map[string]callcontrolv1.State) bool { return st["SIP/201"] == callcontrolv1.State_STATE_UP })
	if _, err := calls.Hangup(as("alice"), &callcontrolv1.HangupRequest{Uid: dialled.GetCall().GetUid()}); err != nil {
		t.Fatalf("Hangup: %v", err)
	}
	w.until(t, "the call ended", dead)
	if err := far.Wait(); err != nil {
		t.Errorf("the trunk (answer, BYE): %v", err)
	}
	if got, want := w.history("SIP/201"), []string{"NEW DIAL", "UPDATE RING", "UPDATE UP", "UPDATE DEAD 16"}; !slices.Equal(got, want) {
		t.Errorf("answered: the watch saw %q, want %q", got, want)
	}

	for _, c := range []struct {
		sc    siptest.Scenario
		cause string
	}{{siptest.UASBusy, "17"}, {siptest.UASReject, "21"}} {
		w.reset()
		far := trunk(c.sc)
		if _, err := calls.Dial(as("alice"), &callcontrolv1.DialRequest{Device: "SIP/201", Number: "+15550101"}); err != nil {
			t.Fatalf("Dial: %v", err)
		}
		w.until(t, "the trunk refused", dead)
		if err := far.Wait(); err != nil {
			t.Errorf("the trunk (%s): %v", c.sc, err)
		}
		if got, want := w.history("SIP/201"), []string{"NEW DIAL", "UPDATE RING", "UPDATE DEAD " + c.cause}; !slices.Equal(got, want) {
			t.Errorf("%s: the watch saw %q, want %q", c.sc, got, want)
		}
	}
}
