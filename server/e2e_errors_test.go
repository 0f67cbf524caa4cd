package server_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"callcontrold/auth"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// Requests the server must refuse before acting, each with a BadRequest
// naming the field.
func TestInvalidArguments(t *testing.T) {
	h := newHarness(t)
	// A live call of alice's, so that refusals are not NOT_FOUND by luck.
	a := h.dialCall("alice", "SIP/201", "202")
	c := h.as("alice").calls
	uid := a.GetUid()
	many := func(n int) []int64 {
		out := make([]int64, n)
		for i := range out {
			out[i] = int64(i + 1)
		}
		return out
	}
	names := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("c%d", i)
		}
		return out
	}
	tests := []struct {
		name   string
		call   func(ctx context.Context) error
		fields []string
	}{
		{"dial: letters in the number", func(ctx context.Context) error {
			_, err := c.Dial(ctx, &callcontrolv1.DialRequest{Device: "SIP/201", Number: "abc"})
			return err
		}, []string{"number"}},
		{"dial: empty number", func(ctx context.Context) error {
			_, err := c.Dial(ctx, &callcontrolv1.DialRequest{Device: "SIP/201"})
			return err
		}, []string{"number"}},
		{"dial: too long", func(ctx context.Context) error {
			_, err := c.Dial(ctx, &callcontrolv1.DialRequest{Device: "SIP/201", Number: strings.Repeat("1", 33)})
			return err
		}, []string{"number"}},
		{"dial: not an extension, too short for a trunk", func(ctx context.Context) error {
			_, err := c.Dial(ctx, &callcontrolv1.DialRequest{Device: "SIP/201", Number: "99"})
			return err
		}, []string{"number"}},
		{"dial: no device", func(ctx context.Context) error {
			_, err := c.Dial(ctx, &callcontrolv1.DialRequest{Number: "202"})
			return err
		}, []string{"device"}},
		{"xfer: bad number", func(ctx context.Context) error {
			_, err := c.Xfer(ctx, &callcontrolv1.XferRequest{Uid: uid, Number: "2-0-2"})
			return err
		}, []string{"number"}},
		{"send: bad number", func(ctx context.Context) error {
			_, err := c.Send(ctx, &callcontrolv1.SendRequest{Uid: uid, Number: ""})
			return err
		}, []string{"number"}},
		{"dtmf: tone A", func(ctx context.Context) error {
			_, err := c.Dtmf(ctx, &callcontrolv1.DtmfRequest{Uid: uid, Tone: "A"})
			return err
		}, []string{"tone"}},
		{"dtmf: two tones", func(ctx context.Context) error {
			_, err := c.Dtmf(ctx, &callcontrolv1.DtmfRequest{Uid: uid, Tone: "12"})
			return err
		}, []string{"tone"}},
		{"dtmf: no tone", func(ctx context.Context) error {
			_, err := c.Dtmf(ctx, &callcontrolv1.DtmfRequest{Uid: uid})
			return err
		}, []string{"tone"}},
		{"hold: uid 0", func(ctx context.Context) error {
			_, err := c.Hold(ctx, &callcontrolv1.HoldRequest{})
			return err
		}, []string{"uid"}},
		{"talk: negative uid", func(ctx context.Context) error {
			_, err := c.Talk(ctx, &callcontrolv1.TalkRequest{Uid: -5})
			return err
		}, []string{"uid"}},
		{"hangup: negative uid", func(ctx context.Context) error {
			_, err := c.Hangup(ctx, &callcontrolv1.HangupRequest{Uid: -1})
			return err
		}, []string{"uid"}},
		{"get: uid 0", func(ctx context.Context) error {
			_, err := c.GetCall(ctx, &callcontrolv1.GetCallRequest{})
			return err
		}, []string{"uid"}},
		{"mute: uid 0", func(ctx context.Context) error {
			_, err := c.Mute(ctx, &callcontrolv1.MuteRequest{Mute: true})
			return err
		}, []string{"uid"}},
		{"atxfer: both uids bad", func(ctx context.Context) error {
			_, err := c.AtXfer(ctx, &callcontrolv1.AtXferRequest{Uid: 0, TargetUid: -1})
			return err
		}, []string{"target_uid", "uid"}},
		{"atxfer: a call with itself", func(ctx context.Context) error {
			_, err := c.AtXfer(ctx, &callcontrolv1.AtXferRequest{Uid: uid, TargetUid: uid})
			return err
		}, []string{"target_uid"}},
		{"request_id too long", func(ctx context.Context) error {
			_, err := c.Hold(ctx, &callcontrolv1.HoldRequest{Uid: uid, RequestId: strings.Repeat("x", 129)})
			return err
		}, []string{"request_id"}},
		{"list: unknown state", func(ctx context.Context) error {
			_, err := c.ListCalls(ctx, &callcontrolv1.ListCallsRequest{Filter: &callcontrolv1.CallFilter{States: []callcontrolv1.State{callcontrolv1.State_STATE_UP, 99}}})
			return err
		}, []string{"filter.states[1]"}},
		{"list: STATE_UNSPECIFIED", func(ctx context.Context) error {
			_, err := c.ListCalls(ctx, &callcontrolv1.ListCallsRequest{Filter: &callcontrolv1.CallFilter{States: []callcontrolv1.State{0}}})
			return err
		}, []string{"filter.states[0]"}},
		{"list: unknown event type", func(ctx context.Context) error {
			_, err := c.ListCalls(ctx, &callcontrolv1.ListCallsRequest{Filter: &callcontrolv1.CallFilter{EventTypes: []callcontrolv1.EventType{7}}})
			return err
		}, []string{"filter.event_types[0]"}},
		{"list: too many uids", func(ctx context.Context) error {
			_, err := c.ListCalls(ctx, &callcontrolv1.ListCallsRequest{Filter: &callcontrolv1.CallFilter{Uids: many(1001)}})
			return err
		}, []string{"filter.uids"}},
		{"list: zero uid", func(ctx context.Context) error {
			_, err := c.ListCalls(ctx, &callcontrolv1.ListCallsRequest{Filter: &callcontrolv1.CallFilter{Uids: []int64{3, 0}}})
			return err
		}, []string{"filter.uids[1]"}},
		{"list: too many devices", func(ctx context.Context) error {
			_, err := c.ListCalls(ctx, &callcontrolv1.ListCallsRequest{Filter: &callcontrolv1.CallFilter{Devices: names(1001)}})
			return err
		}, []string{"filter.devices"}},
		{"list: too many companies", func(ctx context.Context) error {
			_, err := c.ListCalls(ctx, &callcontrolv1.ListCallsRequest{Filter: &callcontrolv1.CallFilter{Companies: names(101)}})
			return err
		}, []string{"filter.companies"}},
		{"list: over-long device name", func(ctx context.Context) error {
			_, err := c.ListCalls(ctx, &callcontrolv1.ListCallsRequest{Filter: &callcontrolv1.CallFilter{Devices: []string{strings.Repeat("d", 200)}}})
			return err
		}, []string{"filter.devices[0]"}},
		{"list: negative page size", func(ctx context.Context) error {
			_, err := c.ListCalls(ctx, &callcontrolv1.ListCallsRequest{PageSize: -1})
			return err
		}, []string{"page_size"}},
		{"list: page size over the maximum", func(ctx context.Context) error {
			_, err := c.ListCalls(ctx, &callcontrolv1.ListCallsRequest{PageSize: 1001})
			return err
		}, []string{"page_size"}},
		{"list: forged page token", func(ctx context.Context) error {
			_, err := c.ListCalls(ctx, &callcontrolv1.ListCallsRequest{PageToken: "!!"})
			return err
		}, []string{"page_token"}},
		{"devices: negative page size", func(ctx context.Context) error {
			_, err := h.as("alice").devices.ListDevices(ctx, &callcontrolv1.ListDevicesRequest{PageSize: -3})
			return err
		}, []string{"page_size"}},
		{"watch: unknown enum values", func(ctx context.Context) error {
			w := h.watch("alice", &callcontrolv1.WatchCallsRequest{Filter: &callcontrolv1.CallFilter{
				States: []callcontrolv1.State{42}, EventTypes: []callcontrolv1.EventType{callcontrolv1.EventType_EVENT_TYPE_NEW, -1}}})
			_, err := w.end()
			return err
		}, []string{"filter.event_types[1]", "filter.states[0]"}},
		{"watch: too many uids", func(ctx context.Context) error {
			w := h.watch("alice", &callcontrolv1.WatchCallsRequest{Filter: &callcontrolv1.CallFilter{Uids: many(5000)}})
			_, err := w.end()
			return err
		}, []string{"filter.uids"}},
		{"simulator: bad caller number", func(ctx context.Context) error {
			_, err := h.as("admin").sim.PlaceInboundCall(ctx, &callcontrolv1.PlaceInboundCallRequest{FromNumber: "x", ToExtension: "201"})
			return err
		}, []string{"from_number"}},
	}
	rev := h.store.Revision()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := statusOf(t, tc.call(h.ctx()), codes.InvalidArgument)
			if got := badRequestFields(t, st); !slices.Equal(got, tc.fields) {
				t.Errorf("BadRequest names %v, want %v (%s)", got, tc.fields, st.Message())
			}
		})
	}
	if got := h.store.Revision(); got != rev {
		t.Errorf("refused requests committed: revision %d → %d", rev, got)
	}
}

// The Errors section: state, support, visibility, ownership.
func TestControlErrors(t *testing.T) {
	h := newHarness(t)
	a := h.dialCall("alice", "SIP/201", "202") // ringing at admin's SIP/202
	b := h.on("SIP/202")

	t.Run("hold on a ringing call", func(t *testing.T) {
		_, err := h.as("alice").calls.Hold(h.ctx(), &callcontrolv1.HoldRequest{Uid: a.GetUid()})
		st := statusOf(t, err, codes.FailedPrecondition)
		ei := errorInfo(t, st)
		if ei.GetMetadata()["state"] != "ring" || ei.GetMetadata()["allowed_states"] != "up,hold" {
			t.Errorf("ErrorInfo %v, want state ring, allowed_states up,hold", ei)
		}
	})
	t.Run("talk on one's own outgoing ringing call", func(t *testing.T) {
		_, err := h.as("alice").calls.Talk(h.ctx(), &callcontrolv1.TalkRequest{Uid: a.GetUid()})
		ei := errorInfo(t, statusOf(t, err, codes.FailedPrecondition))
		if ei.GetMetadata()["state"] != "ring" || ei.GetMetadata()["allowed_states"] == "" {
			t.Errorf("ErrorInfo %v", ei)
		}
	})
	t.Run("mute on a device that is not WebRTC", func(t *testing.T) {
		_, err := h.as("alice").calls.Mute(h.ctx(), &callcontrolv1.MuteRequest{Uid: a.GetUid(), Mute: true})
		statusOf(t, err, codes.FailedPrecondition)
		_, err = h.as("alice").calls.Dtmf(h.ctx(), &callcontrolv1.DtmfRequest{Uid: a.GetUid(), Tone: "1"})
		statusOf(t, err, codes.FailedPrecondition)
	})
	t.Run("a call the caller cannot see is NOT_FOUND, like one that does not exist", func(t *testing.T) {
		_, err := h.as("bob").calls.Hold(h.ctx(), &callcontrolv1.HoldRequest{Uid: a.GetUid()})
		hidden := statusOf(t, err, codes.NotFound)
		_, err = h.as("bob").calls.Hold(h.ctx(), &callcontrolv1.HoldRequest{Uid: 99999})
		missing := statusOf(t, err, codes.NotFound)
		digits := regexp.MustCompile(`\d+`)
		if digits.ReplaceAllString(hidden.Message(), "N") != digits.ReplaceAllString(missing.Message(), "N") || len(hidden.Details()) != len(missing.Details()) {
			t.Errorf("a hidden call is distinguishable from a missing one: %q vs %q", hidden.Message(), missing.Message())
		}
		_, err = h.as("bob").calls.GetCall(h.ctx(), &callcontrolv1.GetCallRequest{Uid: a.GetUid()})
		statusOf(t, err, codes.NotFound)
		_, err = h.as("acme-admin").calls.Send(h.ctx(), &callcontrolv1.SendRequest{Uid: b.GetUid(), Number: "302"})
		statusOf(t, err, codes.NotFound)
		_, err = h.as("bob").calls.Dial(h.ctx(), &callcontrolv1.DialRequest{Device: "SIP/201", Number: "202"})
		statusOf(t, err, codes.NotFound)
	})
	t.Run("a visible call not owned is PERMISSION_DENIED", func(t *testing.T) {
		for _, login := range []string{"alice", "admin", "sysadmin"} {
			uid := b.GetUid()
			if login == "admin" {
				uid = a.GetUid()
			}
			_, err := h.as(login).calls.Hangup(h.ctx(), &callcontrolv1.HangupRequest{Uid: uid})
			statusOf(t, err, codes.PermissionDenied)
		}
		_, err := h.as("alice").calls.Dial(h.ctx(), &callcontrolv1.DialRequest{Device: "SIP/202", Number: "201"})
		statusOf(t, err, codes.PermissionDenied)
	})
	t.Run("send by a plain user", func(t *testing.T) {
		_, err := h.as("alice").calls.Send(h.ctx(), &callcontrolv1.SendRequest{Uid: b.GetUid(), Number: "201"})
		statusOf(t, err, codes.PermissionDenied)
	})
	if _, err := h.as("alice").calls.GetCall(h.ctx(), &callcontrolv1.GetCallRequest{Uid: b.GetUid()}); err != nil {
		t.Fatalf("the refusals changed the call: %v", err)
	}

	t.Run("hold twice", func(t *testing.T) {
		h.talk("admin", b.GetUid())
		first := h.hold("admin", b.GetUid())
		rev := h.store.Revision()
		second := h.hold("admin", b.GetUid())
		if first.GetAlreadyApplied() || !second.GetAlreadyApplied() {
			t.Errorf("already_applied: first %v, second %v", first.GetAlreadyApplied(), second.GetAlreadyApplied())
		}
		if !proto.Equal(first.GetCall(), second.GetCall()) || h.store.Revision() != rev {
			t.Errorf("second hold changed something: %v vs %v, revision %d → %d", first.GetCall(), second.GetCall(), rev, h.store.Revision())
		}
		tk := h.talk("admin", b.GetUid())
		r, err := h.as("admin").calls.Talk(h.ctx(), &callcontrolv1.TalkRequest{Uid: b.GetUid()})
		if err != nil || !r.GetAlreadyApplied() || !proto.Equal(r.GetCall(), tk) {
			t.Errorf("second talk: %v %v", r, err)
		}
	})
	t.Run("a company-admin sends a call of its company", func(t *testing.T) {
		in := h.inbound("+442079460001", "Carol", "303")
		r, err := h.as("acme-admin").calls.Send(h.ctx(), &callcontrolv1.SendRequest{Uid: in[0].GetUid(), Number: "302"})
		if err != nil || r.GetNewCall().GetDevice() != "SIP/302" {
			t.Fatalf("send: %v %v", r, err)
		}
		// Send needs a ringing call.
		h.talk("acme-admin", r.GetNewCall().GetUid())
		_, err = h.as("acme-admin").calls.Send(h.ctx(), &callcontrolv1.SendRequest{Uid: r.GetNewCall().GetUid(), Number: "303"})
		ei := errorInfo(t, statusOf(t, err, codes.FailedPrecondition))
		if ei.GetMetadata()["state"] != "up" {
			t.Errorf("ErrorInfo %v", ei)
		}
	})
}

// A retry with the same request_id returns the first outcome without
// acting again; the same id on a different request is refused.
func TestIdempotentRetry(t *testing.T) {
	h := newHarness(t)
	c := h.as("alice").calls
	dial := &callcontrolv1.DialRequest{Device: "SIP/201", Number: "202", RequestId: "dial-1"}
	first, err := c.Dial(h.ctx(), dial)
	if err != nil {
		t.Fatal(err)
	}
	rev := h.store.Revision()
	again, err := c.Dial(h.ctx(), dial)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(first, again) || h.store.Revision() != rev {
		t.Errorf("retry: %v, want %v; revision %d → %d", again, first, rev, h.store.Revision())
	}
	list, _ := c.ListCalls(h.ctx(), &callcontrolv1.ListCallsRequest{Filter: &callcontrolv1.CallFilter{Devices: []string{"SIP/201"}}})
	if len(list.GetCalls()) != 1 {
		t.Errorf("%d calls on SIP/201 after a retried dial, want 1", len(list.GetCalls()))
	}

	_, err = c.Dial(h.ctx(), &callcontrolv1.DialRequest{Device: "SIP/201", Number: "203", RequestId: "dial-1"})
	st := statusOf(t, err, codes.InvalidArgument)
	if f := badRequestFields(t, st); !slices.Equal(f, []string{"request_id"}) {
		t.Errorf("fields %v", f)
	}

	// A failed request is remembered too: the retry fails the same way,
	// even once the call could be held.
	hold := &callcontrolv1.HoldRequest{Uid: first.GetCall().GetUid(), RequestId: "hold-1"}
	_, err1 := c.Hold(h.ctx(), hold)
	statusOf(t, err1, codes.FailedPrecondition)
	h.talk("admin", h.on("SIP/202").GetUid())
	_, err2 := c.Hold(h.ctx(), hold)
	statusOf(t, err2, codes.FailedPrecondition)

	// Hangup retried after it took effect: same answer, no new revision.
	hang := &callcontrolv1.HangupRequest{Uid: first.GetCall().GetUid(), RequestId: "bye"}
	r1, err := c.Hangup(h.ctx(), hang)
	if err != nil {
		t.Fatal(err)
	}
	rev = h.store.Revision()
	r2, err := c.Hangup(h.ctx(), hang)
	if err != nil || !proto.Equal(r1, r2) || h.store.Revision() != rev {
		t.Errorf("hangup retry: %v %v, revision %d → %d", r2, err, rev, h.store.Revision())
	}

	// The id is per method and per login: another login may use it.
	if _, err := h.as("admin").calls.Dial(h.ctx(), &callcontrolv1.DialRequest{Device: "SIP/202", Number: "203", RequestId: "dial-1"}); err != nil {
		t.Errorf("admin with alice's request_id: %v", err)
	}
}

func TestLimits(t *testing.T) {
	t.Run("control rate", func(t *testing.T) {
		h := newHarness(t, withLimits(auth.LimitConfig{ControlRPS: 0.001, ControlBurst: 2}))
		a := h.dialCall("alice", "SIP/201", "202")
		h.hangup("alice", a.GetUid())
		_, err := h.as("alice").calls.Dial(h.ctx(), &callcontrolv1.DialRequest{Device: "SIP/201", Number: "202"})
		st := statusOf(t, err, codes.ResourceExhausted)
		if ri, ok := detail[*errdetails.RetryInfo](st); !ok || ri.GetRetryDelay().AsDuration() <= 0 {
			t.Errorf("RetryInfo %v", ri)
		}
		// Per login: admin still has its burst; reads are not limited.
		if _, err := h.as("admin").calls.Dial(h.ctx(), &callcontrolv1.DialRequest{Device: "SIP/202", Number: "203"}); err != nil {
			t.Errorf("admin: %v", err)
		}
		if _, err := h.as("alice").calls.ListCalls(h.ctx(), &callcontrolv1.ListCallsRequest{}); err != nil {
			t.Errorf("alice ListCalls: %v", err)
		}
	})
	t.Run("read budget", func(t *testing.T) {
		h := newHarness(t, withLimits(auth.LimitConfig{ReadRPS: 0.001, ReadBurst: 3}))
		a := h.dialCall("alice", "SIP/201", "202") // control: not charged to reads
		c := h.as("alice")
		if _, err := c.calls.ListCalls(h.ctx(), &callcontrolv1.ListCallsRequest{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.calls.GetCall(h.ctx(), &callcontrolv1.GetCallRequest{Uid: a.GetUid()}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.devices.ListDevices(h.ctx(), &callcontrolv1.ListDevicesRequest{}); err != nil {
			t.Fatal(err)
		}
		_, err := c.devices.GetDevice(h.ctx(), &callcontrolv1.GetDeviceRequest{Name: "SIP/201"})
		st := statusOf(t, err, codes.ResourceExhausted)
		if ri, ok := detail[*errdetails.RetryInfo](st); !ok || ri.GetRetryDelay().AsDuration() <= 0 {
			t.Errorf("RetryInfo %v", ri)
		}
		if qf, ok := detail[*errdetails.QuotaFailure](st); !ok || qf.GetViolations()[0].GetSubject() != "login:alice" {
			t.Errorf("QuotaFailure %v", qf)
		}
		_, err = c.calls.ListCalls(h.ctx(), &callcontrolv1.ListCallsRequest{})
		statusOf(t, err, codes.ResourceExhausted)
		// Per login, and control RPCs have their own budget.
		if _, err := h.as("admin").calls.ListCalls(h.ctx(), &callcontrolv1.ListCallsRequest{}); err != nil {
			t.Errorf("admin ListCalls: %v", err)
		}
		h.hangup("alice", a.GetUid())
	})
	t.Run("watch cap", func(t *testing.T) {
		h := newHarness(t, withLimits(auth.LimitConfig{MaxWatchesPerPrincipal: 2}))
		w1 := h.watch("bob", &callcontrolv1.WatchCallsRequest{})
		w1.start()
		w2 := h.watch("bob", &callcontrolv1.WatchCallsRequest{})
		w2.start()
		w3 := h.watch("bob", &callcontrolv1.WatchCallsRequest{})
		_, err := w3.end()
		st := statusOf(t, err, codes.ResourceExhausted)
		if ri, ok := detail[*errdetails.RetryInfo](st); !ok || ri.GetRetryDelay().AsDuration() <= 0 {
			t.Errorf("RetryInfo %v", ri)
		}
		if qf, ok := detail[*errdetails.QuotaFailure](st); !ok || qf.GetViolations()[0].GetSubject() != "login:bob" {
			t.Errorf("QuotaFailure %v", qf)
		}
		// Another login is not affected.
		h.watch("alice", &callcontrolv1.WatchCallsRequest{}).start()
		// Closing a watch frees its slot (the server notices the
		// cancellation asynchronously: retry until it has).
		w1.stop()
		deadline := time.Now().Add(waitLimit)
		for {
			w := h.watch("bob", &callcontrolv1.WatchCallsRequest{})
			m := w.next()
			if m.GetStarted() != nil {
				break
			}
			statusOf(t, w.err, codes.ResourceExhausted)
			if time.Now().After(deadline) {
				t.Fatal("the closed watch never freed its slot")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}
