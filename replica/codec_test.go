package replica

import (
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"

	"callcontrold/callstore"
)

// fullCall returns a Call with every field set to a value that is not
// its zero value, so a field the codec forgets shows up in a diff.
func fullCall(t *testing.T) *callstore.Call {
	c := &callstore.Call{
		UID: 7, ID: "1.2", CID: "SIP/201-1",
		DeviceRef: &callstore.DeviceRef{Device: "SIP/201", DeviceCompany: "default", OwnerID: 3, OwnerLogin: "alice"},
		Label:     "l", Name: "n", Number: "202",
		StampMillis: 10, StartMillis: 11,
		Queue:   &callstore.Queue{Name: "q", Number: "600", In: 1, Out: 2, CallUID: 9, CallID: "x", CallDevice: "SIP/202"},
		Company: "acme", DTMF: "12", HasDTMF: true,
		Extension: &callstore.ExtensionRef{Number: "600", Company: "default", Type: callstore.ExtQueue, Name: "Support",
			Queue: &callstore.Queue{Name: "q2"}},
		Cause: 16, Party: callstore.PartyCaller,
		Features: callstore.FeatureHold, State: callstore.StateUp, NRState: callstore.NRUp,
		JSState: callstore.JSConfirmed,
		JSInfo:  callstore.JSInfo{Established: true, Ended: true, HoldLocal: true, HoldRemote: true, MutedAudio: true, MutedVideo: true},
		PeerUID: 8,
	}
	v := reflect.ValueOf(c).Elem()
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("fullCall leaves %s unset: set it so the round trip covers it", v.Type().Field(i).Name)
		}
	}
	return c
}

func TestCodecRoundTrip(t *testing.T) {
	changes := []callstore.Change{
		{Type: callstore.EventNew, Call: fullCall(t)},
		{Type: callstore.EventTransfer, Call: &callstore.Call{UID: 8, DeviceRef: &callstore.DeviceRef{Device: "SIP/202"}, State: callstore.StateDead},
			Xfer: []callstore.XferLeg{{UID: 7, ID: "1.2", Device: "SIP/201"}, {UID: 9, ID: "1.3", Device: "SIP/202"}}},
	}
	data, err := encodeOp("r1", 42, changes)
	if err != nil {
		t.Fatal(err)
	}
	o, got, err := decodeOp(data)
	if err != nil {
		t.Fatal(err)
	}
	if o.Leader != "r1" || o.Term != 42 {
		t.Errorf("leader %q term %d, want r1 42", o.Leader, o.Term)
	}
	if d := cmp.Diff(changes, got); d != "" {
		t.Errorf("round trip (-sent +decoded):\n%s", d)
	}
}

// TestDecodeSharesDevices: the calls a replica decodes share one DeviceRef
// per device, as the leader's do, across messages.
func TestDecodeSharesDevices(t *testing.T) {
	call := func(uid int64, dev string) callstore.Change {
		return callstore.Change{Type: callstore.EventNew, Call: &callstore.Call{
			UID: uid, DeviceRef: &callstore.DeviceRef{Device: dev, DeviceCompany: "default"}, State: callstore.StateRing,
		}}
	}
	var got []callstore.Change
	for _, changes := range [][]callstore.Change{{call(1, "SIP/201"), call(2, "SIP/202")}, {call(3, "SIP/201")}} {
		data, err := encodeOp("r1", 1, changes)
		if err != nil {
			t.Fatal(err)
		}
		_, decoded, err := decodeOp(data)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, decoded...)
	}
	if got[0].Call.DeviceRef != got[2].Call.DeviceRef {
		t.Error("two calls of SIP/201, decoded from two messages, have a DeviceRef each")
	}
	if got[0].Call.DeviceRef == got[1].Call.DeviceRef || got[1].Call.Device != "SIP/202" {
		t.Errorf("SIP/202's call shows device %q: it shares SIP/201's", got[1].Call.Device)
	}
}

func TestEncodeRefusesCallWithoutDevice(t *testing.T) {
	if _, err := encodeOp("r1", 1, []callstore.Change{{Type: callstore.EventNew, Call: &callstore.Call{UID: 1, State: callstore.StateRing}}}); err == nil {
		t.Error("encodeOp of a call without a device: nil error")
	}
}

func TestDecodeRefuses(t *testing.T) {
	for _, data := range []string{`not json`, `{"v":2,"changes":[]}`} {
		if _, _, err := decodeOp([]byte(data)); err == nil {
			t.Errorf("decodeOp(%s) = nil error", data)
		}
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	calls := []*callstore.Call{fullCall(t), {UID: 9, ID: "1.3", DeviceRef: &callstore.DeviceRef{Device: "SIP/202"}, State: callstore.StateRing, NRState: callstore.NRRinging}}
	data, err := encodeSnapshot(&snapshot{Epoch: 5, Revision: 12, Term: 3, LastUID: 11, Writer: "r1"}, calls)
	if err != nil {
		t.Fatal(err)
	}
	s, got, err := decodeSnapshot(data)
	if err != nil {
		t.Fatal(err)
	}
	if s.Epoch != 5 || s.Revision != 12 || s.Term != 3 || s.LastUID != 11 || s.Writer != "r1" {
		t.Errorf("decoded header %+v, want epoch 5, revision 12, term 3, last uid 11, writer r1", *s)
	}
	if d := cmp.Diff(calls, got); d != "" {
		t.Errorf("round trip (-sent +decoded):\n%s", d)
	}
}

func TestDecodeSnapshotRefuses(t *testing.T) {
	for _, data := range []string{`not json`, `{"v":2,"revision":1}`, `{"v":1,"revision":0}`} {
		if _, _, err := decodeSnapshot([]byte(data)); err == nil {
			t.Errorf("decodeSnapshot(%s) = nil error", data)
		}
	}
}
