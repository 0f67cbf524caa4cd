package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func sampleCall() *callcontrolv1.Call {
	return &callcontrolv1.Call{
		Uid: 7, Device: "SIP/201", Name: "Bob Jones", Number: "301", Label: "Bob Jones",
		State: callcontrolv1.State_STATE_UP, NrState: callcontrolv1.NearEndState_NEAR_END_STATE_UP,
		Party:    callcontrolv1.Party_PARTY_CALLER,
		Stamp:    timestamppb.New(t0.Add(-90 * time.Second)),
		Start:    timestamppb.New(t0.Add(-65 * time.Second)),
		Features: []callcontrolv1.Feature{callcontrolv1.Feature_FEATURE_HOLD},
	}
}

func with(c *callcontrolv1.Call, f func(*callcontrolv1.Call)) *callcontrolv1.Call {
	c = proto.Clone(c).(*callcontrolv1.Call)
	f(c)
	return c
}

func TestEnumNames(t *testing.T) {
	tests := []struct{ got, want string }{
		{stateName(callcontrolv1.State_STATE_RING), "ring"},
		{stateName(callcontrolv1.State_STATE_UNSPECIFIED), "-"},
		{nrStateName(callcontrolv1.NearEndState_NEAR_END_STATE_RINGING), "ringing"},
		{partyName(callcontrolv1.Party_PARTY_CALLEE), "callee"},
		{blfName(callcontrolv1.Blf_BLF_BUSY_RINGING), "busy+ringing"},
		{statusName(callcontrolv1.DeviceStatus_DEVICE_STATUS_UP), "up"},
		{eventName(callcontrolv1.EventType_EVENT_TYPE_TRANSFER), "TRANSFER"},
		{viewName(callcontrolv1.ViewChange_VIEW_CHANGE_LEFT), "LEFT"},
		{featuresText(nil), "-"},
		{featuresText([]callcontrolv1.Feature{callcontrolv1.Feature_FEATURE_ANSWER, callcontrolv1.Feature_FEATURE_HOLD}), "answer,hold"},
		{codeName(codes.FailedPrecondition), "FAILED_PRECONDITION"},
		{codeName(codes.OK), "OK"},
		{codeName(codes.Unavailable), "UNAVAILABLE"},
	}
	for i, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%d: got %q, want %q", i, tt.got, tt.want)
		}
	}
}

func TestPartyText(t *testing.T) {
	tests := []struct {
		name, label, number, want string
	}{
		{"Bob Jones", "Bob Jones", "301", "Bob Jones <301>"},
		{"", "", "301", "<301>"},
		{"", "Reception", "202", "Reception <202>"},
		{"", "301", "301", "<301>"},
		{"Bob", "", "", "Bob"},
		{"", "Queue", "", "Queue"},
		{"", "", "", "-"},
	}
	for _, tt := range tests {
		c := &callcontrolv1.Call{Name: tt.name, Label: tt.label, Number: tt.number}
		if got := partyText(c); got != tt.want {
			t.Errorf("partyText(%q,%q,%q) = %q, want %q", tt.name, tt.label, tt.number, got, tt.want)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0:00"},
		{-time.Second, "0:00"},
		{65 * time.Second, "1:05"},
		{59*time.Minute + 59*time.Second + 999*time.Millisecond, "59:59"},
		{3723 * time.Second, "1:02:03"},
	}
	for _, tt := range tests {
		if got := formatDuration(tt.d); got != tt.want {
			t.Errorf("formatDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
	ringing := with(sampleCall(), func(c *callcontrolv1.Call) { c.Start = nil })
	if got := callDuration(ringing, t0); got != "1:30" {
		t.Errorf("duration of an unanswered call: got %q, want 1:30 (since stamp)", got)
	}
	if got := callDuration(&callcontrolv1.Call{}, t0); got != "-" {
		t.Errorf("duration without times: got %q, want -", got)
	}
}

func TestCallLine(t *testing.T) {
	base := sampleCall()
	tests := []struct {
		name    string
		call    *callcontrolv1.Call
		already bool
		want    string
	}{
		{"up", base, false, "uid=7 SIP/201 up (caller) Bob Jones <301> 1:05 [hold]"},
		{"already", with(base, func(c *callcontrolv1.Call) {
			c.State, c.NrState = callcontrolv1.State_STATE_HOLD, callcontrolv1.NearEndState_NEAR_END_STATE_HOLD
			c.Features = []callcontrolv1.Feature{callcontrolv1.Feature_FEATURE_TALK}
		}), true, "uid=7 SIP/201 hold (caller) Bob Jones <301> 1:05 [talk] (already applied)"},
		{"near end differs", with(base, func(c *callcontrolv1.Call) {
			c.State = callcontrolv1.State_STATE_RING
			c.Features = nil
		}), false, "uid=7 SIP/201 ring/up (caller) Bob Jones <301> 1:05"},
		{"dead", with(base, func(c *callcontrolv1.Call) {
			c.State, c.NrState = callcontrolv1.State_STATE_DEAD, callcontrolv1.NearEndState_NEAR_END_STATE_DEAD
			c.Cause, c.CauseTxt, c.Features = 16, "Normal Clearing", nil
		}), false, `uid=7 SIP/201 dead (caller) Bob Jones <301> cause=16 "Normal Clearing"`},
		{"dtmf and mute", with(base, func(c *callcontrolv1.Call) {
			c.DtmfString = proto.String("12#")
			c.JsInfo = &callcontrolv1.JsInfo{Muted: &callcontrolv1.JsMuted{Audio: true}}
		}), false, `uid=7 SIP/201 up (caller) Bob Jones <301> dtmf="12#" muted 1:05 [hold]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := appliedLine(tt.call, tt.already, t0); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestEventLine(t *testing.T) {
	at := time.Date(2026, 3, 1, 15, 4, 5, 123e6, time.UTC)
	up := sampleCall()
	tests := []struct {
		name string
		ev   *callcontrolv1.CallEvent
		prev callcontrolv1.State
		want string
	}{
		{"transition", &callcontrolv1.CallEvent{Type: callcontrolv1.EventType_EVENT_TYPE_UPDATE, View: callcontrolv1.ViewChange_VIEW_CHANGE_ENTERED, Call: up},
			callcontrolv1.State_STATE_RING,
			"15:04:05.123 rev 42  UPDATE    ENTERED  uid=7 SIP/201 ring→up (caller) Bob Jones <301>"},
		{"new, no previous state", &callcontrolv1.CallEvent{Type: callcontrolv1.EventType_EVENT_TYPE_NEW, View: callcontrolv1.ViewChange_VIEW_CHANGE_ENTERED,
			Call: with(up, func(c *callcontrolv1.Call) { c.State = callcontrolv1.State_STATE_DIAL })},
			callcontrolv1.State_STATE_UNSPECIFIED,
			"15:04:05.123 rev 42  NEW       ENTERED  uid=7 SIP/201 dial (caller) Bob Jones <301>"},
		{"left", &callcontrolv1.CallEvent{Type: callcontrolv1.EventType_EVENT_TYPE_UPDATE, View: callcontrolv1.ViewChange_VIEW_CHANGE_LEFT,
			Call: with(up, func(c *callcontrolv1.Call) { c.State = callcontrolv1.State_STATE_HOLD })},
			callcontrolv1.State_STATE_UP,
			"15:04:05.123 rev 42  UPDATE    LEFT     uid=7 SIP/201 up→hold (caller) Bob Jones <301>  (left view)"},
		{"transfer", &callcontrolv1.CallEvent{Type: callcontrolv1.EventType_EVENT_TYPE_TRANSFER, View: callcontrolv1.ViewChange_VIEW_CHANGE_STAYED,
			Call: with(up, func(c *callcontrolv1.Call) {
				c.XferData = &callcontrolv1.XferData{Calls: []*callcontrolv1.CallRef{{Uid: 7, Device: "SIP/201"}, {Uid: 9, Device: "SIP/202"}}}
			})},
			callcontrolv1.State_STATE_UP,
			"15:04:05.123 rev 42  TRANSFER  STAYED   uid=7 SIP/201 up (caller) Bob Jones <301>  bridged: uid=7 SIP/201, uid=9 SIP/202"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := eventLine(at, 42, tt.ev, tt.prev); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
	if got, want := progressLine(at, 9), "15:04:05.123 rev 9  PROGRESS"; got != want {
		t.Errorf("progressLine: got %q, want %q", got, want)
	}
}

func TestTables(t *testing.T) {
	var b bytes.Buffer
	ringing := &callcontrolv1.Call{Uid: 12, Device: "SIP/202", Number: "201", Name: "Alice Smith",
		State: callcontrolv1.State_STATE_RING, NrState: callcontrolv1.NearEndState_NEAR_END_STATE_RINGING,
		Party: callcontrolv1.Party_PARTY_CALLEE, Stamp: timestamppb.New(t0.Add(-5 * time.Second)),
		Features: []callcontrolv1.Feature{callcontrolv1.Feature_FEATURE_ANSWER}}
	if err := writeCallTable(&b, []*callcontrolv1.Call{sampleCall(), ringing}, t0); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"UID  DEVICE   STATE  NRSTATE  PARTY   LABEL/NUMBER       DURATION  FEATURES\n" +
		"7    SIP/201  up     up       caller  Bob Jones <301>    1:05      hold\n" +
		"12   SIP/202  ring   ringing  callee  Alice Smith <201>  0:05      answer\n"
	if b.String() != want {
		t.Errorf("call table:\ngot\n%s\nwant\n%s", b.String(), want)
	}

	b.Reset()
	devs := []*callcontrolv1.Device{
		{Name: "SIP/201", Company: "default", Owner: &callcontrolv1.Contact{Login: "alice"}, Extension: "201",
			Blf: callcontrolv1.Blf_BLF_BUSY, Status: callcontrolv1.DeviceStatus_DEVICE_STATUS_UP},
		{Name: "Park/701", Company: "default", Extension: "701", Blf: callcontrolv1.Blf_BLF_IDLE},
		{Name: "SIP/webrtc11", Company: "acme", Owner: &callcontrolv1.Contact{Login: "bob"}, Webrtc: true,
			Blf: callcontrolv1.Blf_BLF_BUSY_RINGING, Status: callcontrolv1.DeviceStatus_DEVICE_STATUS_DOWN},
	}
	if err := writeDeviceTable(&b, devs); err != nil {
		t.Fatal(err)
	}
	want = "" +
		"NAME          COMPANY  OWNER  EXT  BLF           STATUS  WEBRTC\n" +
		"SIP/201       default  alice  201  busy          up      no\n" +
		"Park/701      default  -      701  idle          -       no\n" +
		"SIP/webrtc11  acme     bob    -    busy+ringing  down    yes\n"
	if b.String() != want {
		t.Errorf("device table:\ngot\n%s\nwant\n%s", b.String(), want)
	}

	b.Reset()
	if err := writeSnapshot(&b, 3, nil, t0); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "snapshot at rev 3: no calls\n"; got != want {
		t.Errorf("empty snapshot: got %q, want %q", got, want)
	}

	b.Reset()
	if err := writeCallDetail(&b, sampleCall(), t0); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"uid:", "state:", "up", "other party:", "Bob Jones <301>", "duration:", "1:05"} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("call detail lacks %q:\n%s", line, b.String())
		}
	}
}

func mustDetails(t *testing.T, c codes.Code, msg string, details ...protoadapt.MessageV1) error {
	t.Helper()
	st := status.New(c, msg)
	for _, d := range details {
		var err error
		if st, err = st.WithDetails(d); err != nil {
			t.Fatal(err)
		}
	}
	return st.Err()
}

func TestErrorText(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"plain", errors.New("boom"), "error: boom"},
		{"no details", status.Error(codes.NotFound, "call 9 not found"), "error: NOT_FOUND: call 9 not found"},
		{"bad request", mustDetails(t, codes.InvalidArgument, "number: bad; tone: bad",
			&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
				{Field: "number", Description: "not a number"},
				{Field: "tone", Description: "one of 0-9 * #", Reason: "TONE"},
			}}),
			"error: INVALID_ARGUMENT: number: bad; tone: bad\n" +
				"  invalid field number: not a number\n" +
				"  invalid field tone: one of 0-9 * # (TONE)"},
		{"error info", mustDetails(t, codes.FailedPrecondition, "hold: call 1 is ring",
			&errdetails.ErrorInfo{Reason: "CALL_STATE", Domain: "callcontrol.v1",
				Metadata: map[string]string{"state": "ring", "allowed_states": "up,hold"}}),
			"error: FAILED_PRECONDITION: hold: call 1 is ring\n" +
				"  reason: CALL_STATE (callcontrol.v1)\n" +
				"    allowed_states: up,hold\n" +
				"    state: ring"},
		{"retry info", mustDetails(t, codes.Unavailable, "draining",
			&errdetails.ErrorInfo{Reason: "DRAINING", Domain: "callcontrol.v1"},
			&errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)}),
			"error: UNAVAILABLE: draining\n" +
				"  reason: DRAINING (callcontrol.v1)\n" +
				"  retry after: 1.5s"},
		{"other detail", mustDetails(t, codes.ResourceExhausted, "slow down",
			&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{Subject: "alice", Description: "10 rps"}}},
			&errdetails.DebugInfo{Detail: "x"}),
			"error: RESOURCE_EXHAUSTED: slow down\n  quota alice: 10 rps\n  debug: x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errorText(tt.err); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}

	err := mustDetails(t, codes.Unavailable, "x", &errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)})
	if d, ok := retryDelay(err); !ok || d != time.Second {
		t.Errorf("retryDelay: got %v, %t; want 1s, true", d, ok)
	}
	if _, ok := retryDelay(status.Error(codes.Unavailable, "x")); ok {
		t.Error("retryDelay without RetryInfo: got ok")
	}
}

func TestNeedsSnapshot(t *testing.T) {
	compacted := mustDetails(t, codes.OutOfRange, "compacted",
		&errdetails.ErrorInfo{Reason: "REVISION_COMPACTED", Metadata: map[string]string{"oldest_revision": "40"}})
	epoch := mustDetails(t, codes.FailedPrecondition, "epoch", &errdetails.ErrorInfo{Reason: "EPOCH_MISMATCH"})
	tests := []struct {
		err        error
		want       bool
		wantReason string
	}{
		{compacted, true, "rev 12 is no longer retained (oldest is 40)"},
		{epoch, true, "the resume token is from another server process (the server restarted)"},
		{status.Error(codes.OutOfRange, "gone"), true, "resume refused: gone"},
		{status.Error(codes.FailedPrecondition, "nope"), false, ""},
		{status.Error(codes.Unavailable, "down"), false, ""},
	}
	for i, tt := range tests {
		if got := needsSnapshot(tt.err); got != tt.want {
			t.Errorf("%d: needsSnapshot = %t, want %t", i, got, tt.want)
		}
		if tt.want {
			if got := resnapshotReason(tt.err, 12); got != tt.wantReason {
				t.Errorf("%d: reason %q, want %q", i, got, tt.wantReason)
			}
		}
	}
}

func TestJitter(t *testing.T) {
	for range 100 {
		if d := jitter(time.Second); d < 800*time.Millisecond || d > 1200*time.Millisecond {
			t.Fatalf("jitter(1s) = %v, want within ±20%%", d)
		}
	}
}

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestParseArgs(t *testing.T) {
	type want struct {
		cmd, addr, token, device, number, tone, company, resume string
		uid, target                                             int64
		autohold, autoanswer, unmute, json, noSnapshot, tls     bool
		filter                                                  *callcontrolv1.CallFilter
		timeout, watchFor                                       time.Duration
		requestID                                               string
	}
	tests := []struct {
		name string
		args []string
		env  func(string) string
		want want
	}{
		{"defaults", []string{"list"}, env(),
			want{cmd: "list", addr: "localhost:50051", filter: &callcontrolv1.CallFilter{}, timeout: 10 * time.Second}},
		{"env", []string{"list"}, env("CALLCTL_ADDR", "h:1", "CALLCTL_TOKEN", "t"),
			want{cmd: "list", addr: "h:1", token: "t", filter: &callcontrolv1.CallFilter{}, timeout: 10 * time.Second}},
		{"flags beat env", []string{"--addr", "h:2", "--token", "x", "list"}, env("CALLCTL_ADDR", "h:1", "CALLCTL_TOKEN", "t"),
			want{cmd: "list", addr: "h:2", token: "x", filter: &callcontrolv1.CallFilter{}, timeout: 10 * time.Second}},
		{"login beats env", []string{"--login", "alice", "list"}, env("CALLCTL_TOKEN", "t"),
			want{cmd: "list", addr: "localhost:50051", token: "demo-alice", filter: &callcontrolv1.CallFilter{}, timeout: 10 * time.Second}},
		{"globals after command", []string{"list", "--login=bob", "--json", "--timeout", "2s", "--tls"}, env(),
			want{cmd: "list", addr: "localhost:50051", token: "demo-bob", json: true, tls: true, filter: &callcontrolv1.CallFilter{}, timeout: 2 * time.Second}},
		{"list filters", []string{"list", "--device", "SIP/201", "--device=SIP/202,SIP/203", "--state", "ring", "--state", "UP,STATE_HOLD", "--company", "acme", "--uid", "4"}, env(),
			want{cmd: "list", addr: "localhost:50051", timeout: 10 * time.Second, filter: &callcontrolv1.CallFilter{
				Devices: []string{"SIP/201", "SIP/202", "SIP/203"}, Companies: []string{"acme"}, Uids: []int64{4},
				States: []callcontrolv1.State{callcontrolv1.State_STATE_RING, callcontrolv1.State_STATE_UP, callcontrolv1.State_STATE_HOLD}}}},
		{"watch", []string{"watch", "--event", "new,transfer", "--resume", "tok", "--no-snapshot", "--for", "3s"}, env(),
			want{cmd: "watch", addr: "localhost:50051", timeout: 10 * time.Second, resume: "tok", noSnapshot: true, watchFor: 3 * time.Second,
				filter: &callcontrolv1.CallFilter{EventTypes: []callcontrolv1.EventType{callcontrolv1.EventType_EVENT_TYPE_NEW, callcontrolv1.EventType_EVENT_TYPE_TRANSFER}}}},
		{"dial interspersed", []string{"dial", "SIP/201", "--autohold", "+15550100", "--autoanswer", "--request-id", "r1"}, env(),
			want{cmd: "dial", addr: "localhost:50051", timeout: 10 * time.Second, device: "SIP/201", number: "+15550100",
				autohold: true, autoanswer: true, requestID: "r1"}},
		{"double dash", []string{"dtmf", "--request-id=r2", "--", "7", "-1"}, env(),
			want{cmd: "dtmf", addr: "localhost:50051", timeout: 10 * time.Second, uid: 7, tone: "-1", requestID: "r2"}},
		{"atxfer", []string{"atxfer", "7", "9", "--request-id", "r3"}, env(),
			want{cmd: "atxfer", addr: "localhost:50051", timeout: 10 * time.Second, uid: 7, target: 9, requestID: "r3"}},
		{"mute off", []string{"mute", "--off", "7", "--request-id", "r4"}, env(),
			want{cmd: "mute", addr: "localhost:50051", timeout: 10 * time.Second, uid: 7, unmute: true, requestID: "r4"}},
		{"devices", []string{"devices", "--company", "acme"}, env(),
			want{cmd: "devices", addr: "localhost:50051", timeout: 10 * time.Second, company: "acme"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, inv, err := parseArgs(tt.args, tt.env)
			if err != nil {
				t.Fatalf("parseArgs(%q): %v", tt.args, err)
			}
			got := want{
				cmd: inv.cmd, addr: g.addr, token: g.bearerToken(), device: inv.device, number: inv.number,
				tone: inv.tone, company: inv.company, resume: inv.resume, uid: inv.uid, target: inv.targetUID,
				autohold: inv.autohold, autoanswer: inv.autoanswer, unmute: inv.unmute, json: g.json,
				noSnapshot: inv.noSnapshot, tls: g.useTLS(), filter: inv.filter, timeout: g.timeout,
				watchFor: inv.watchFor, requestID: inv.requestID,
			}
			if !proto.Equal(got.filter, tt.want.filter) {
				t.Errorf("filter: got %v, want %v", got.filter, tt.want.filter)
			}
			got.filter, tt.want.filter = nil, nil
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseArgsRandomRequestID(t *testing.T) {
	_, a, err := parseArgs([]string{"hold", "1"}, env())
	if err != nil {
		t.Fatal(err)
	}
	_, b, err := parseArgs([]string{"hold", "1"}, env())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a.requestID, "callctl-") || a.requestID == b.requestID {
		t.Errorf("request ids %q, %q: want distinct random ids", a.requestID, b.requestID)
	}
	_, l, _ := parseArgs([]string{"list"}, env())
	if l.requestID != "" {
		t.Errorf("list got request id %q, want none", l.requestID)
	}
}

func TestParseArgsErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string // in the error
	}{
		{nil, "no command"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"--nope", "list"}, "not defined: -nope"},
		{[]string{"list", "--autohold"}, "not defined: -autohold"},
		{[]string{"hold"}, "hold: want UID, got 0 argument(s)"},
		{[]string{"hold", "1", "2"}, "hold: want UID, got 2 argument(s)"},
		{[]string{"list", "x"}, "list: want no arguments, got 1"},
		{[]string{"hold", "abc"}, `"abc" is not a call uid`},
		{[]string{"hold", "0"}, `"0" is not a call uid`},
		{[]string{"atxfer", "1", "-2"}, "not defined: -2"},
		{[]string{"dial", "SIP/201", ""}, "NUMBER is empty"},
		{[]string{"list", "--state", "ringing"}, `--state "ringing": want one of down, dial, ring, up, hold, park, dead`},
		{[]string{"watch", "--event", "old"}, `--event "old": want one of new, update, transfer`},
		{[]string{"list", "--uid", "x"}, "--uid"},
		{[]string{"--token", "t", "--login", "alice", "list"}, "--token and --login are exclusive"},
		{[]string{"list", "--timeout", "0s"}, "--timeout must be positive"},
		{[]string{"watch", "--for", "-1s"}, "--for must not be negative"},
		{[]string{"help", "a", "b"}, "at most one"},
	}
	for _, tt := range tests {
		_, _, err := parseArgs(tt.args, env())
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseArgs(%q) = %v, want error containing %q", tt.args, err, tt.want)
		}
	}
	if _, _, err := parseArgs([]string{"hold", "-h"}, env()); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("hold -h: got %v, want flag.ErrHelp", err)
	}
}

func TestRunUsage(t *testing.T) {
	tests := []struct {
		args        []string
		code        int
		out, errOut string
	}{
		{[]string{"help"}, 0, "Commands:", ""},
		{[]string{"-h"}, 0, "Global flags:", ""},
		{[]string{"help", "watch"}, 0, "--no-snapshot", ""},
		{[]string{"dial", "--help"}, 0, "dial DEVICE NUMBER", ""},
		{nil, 2, "", "no command"},
		{[]string{"hold"}, 2, "", "run 'callctl help hold' for usage"},
		{[]string{"--cert", "c.pem", "list"}, 2, "", "--cert and --key go together"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		code := runContext(context.Background(), tt.args, env(), &out, &errOut)
		if code != tt.code || !strings.Contains(out.String(), tt.out) || !strings.Contains(errOut.String(), tt.errOut) {
			t.Errorf("run(%q) = %d\nstdout %q\nstderr %q\nwant %d, stdout containing %q, stderr containing %q",
				tt.args, code, out.String(), errOut.String(), tt.code, tt.out, tt.errOut)
		}
	}
}

func TestEveryCommandHasHelp(t *testing.T) {
	for name := range commands {
		if _, ok := commandHelp[name]; !ok {
			t.Errorf("command %q has no help", name)
		}
	}
	if len(commandOrder) != len(commands) {
		t.Errorf("commandOrder has %d commands, want %d", len(commandOrder), len(commands))
	}
}

func TestRunConnectionRefused(t *testing.T) {
	var out, errOut bytes.Buffer
	// Port 1 on loopback: nothing listens, the connection is refused.
	code := runContext(context.Background(), []string{"--addr", "127.0.0.1:1", "--login", "alice", "--timeout", "2s",
		"hold", "5", "--request-id", "abc"}, env(), &out, &errOut)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr %s", code, errOut.String())
	}
	for _, want := range []string{"error: UNAVAILABLE", "is callcontrold running on 127.0.0.1:1", "--request-id abc is safe"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut.String())
		}
	}
}
