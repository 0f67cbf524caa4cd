package server

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"callcontrold/callstore"
	"callcontrold/directory"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// TestBatchFrameDecodes checks the hand-assembled event frames against the
// generated code: whatever the proto's field numbers become, a frame must
// decode to the message a plain proto.Marshal would have produced.
func TestBatchFrameDecodes(t *testing.T) {
	dir := directory.Demo()
	store := callstore.New(callstore.Options{})
	cv := newConverter(store, dir)
	enc := newEncodeCache(cv, 64)

	a := &callstore.Call{UID: 1, ID: "1.1", DeviceRef: &callstore.DeviceRef{Device: "SIP/201", DeviceCompany: "default", OwnerLogin: "alice"},
		State: callstore.StateUp, NRState: callstore.NRUp, Party: callstore.PartyCaller, Label: "Reception", Number: "202",
		StampMillis: 1_700_000_000_000, Features: callstore.FeatureHold}
	q := &callstore.Call{UID: 2, DeviceRef: &callstore.DeviceRef{Device: "Queue/q_650", DeviceCompany: "acme"}, State: callstore.StateUp, NRState: callstore.NRUp,
		Queue: &callstore.Queue{CallUID: 3, CallID: "3.3", CallDevice: "SIP/webrtc11", In: 1_700_000_000, Out: 1_700_000_005}}
	b := &callstore.Batch{Revision: 42, Events: []callstore.WatchEvent{
		{Type: callstore.EventTransfer, View: callstore.ViewStayed, Call: a, Index: 0,
			Xfer: []callstore.XferLeg{{UID: 1, ID: "1.1", Device: "SIP/201"}, {UID: 9, ID: "9.9", Device: "SIP/203"}}},
		{Type: callstore.EventUpdate, View: callstore.ViewEntered, Call: q, Index: 1},
	}}
	const epoch = 0xfeedface
	tests := []struct {
		name      string
		visible   func(*callstore.Call) bool
		wantXfers int // xfer_data legs shown (both are on default devices)
	}{
		{"sees all", func(*callstore.Call) bool { return true }, 2},
		{"sees default only", func(c *callstore.Call) bool { return c.DeviceCompany == "default" }, 2},
		{"sees acme only", func(c *callstore.Call) bool { return c.DeviceCompany == "acme" }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var scratch [][]byte
			var first *rawFrame
			for round := range 2 { // the second round is served from the cache
				frame := enc.batchFrame(b, epoch, tt.visible, &scratch)
				if round == 0 {
					first = frame
				} else if frame != first {
					t.Errorf("the same events in the same views built a second frame; want the first one shared")
				}
				var got callcontrolv1.WatchCallsResponse
				if err := proto.Unmarshal(frame.bytes(), &got); err != nil {
					t.Fatalf("frame does not decode: %v", err)
				}
				want := &callcontrolv1.WatchCallsResponse{Frame: &callcontrolv1.WatchCallsResponse_Events{Events: &callcontrolv1.EventBatch{
					Revision:    42,
					ResumeToken: resumeToken{Epoch: epoch, Revision: 42}.String(),
				}}}
				for _, e := range b.Events {
					pc := withXfer(cv.call(e.Call, tt.visible), e.Xfer, cv.xferVisible(e.Xfer, tt.visible))
					want.GetEvents().Events = append(want.GetEvents().Events, &callcontrolv1.CallEvent{
						Type: callcontrolv1.EventType(e.Type), View: callcontrolv1.ViewChange(e.View), Call: pc,
					})
				}
				if diff := cmp.Diff(want, &got, protocmp.Transform()); diff != "" {
					t.Errorf("frame mismatch (-want +got):\n%s", diff)
				}
				if n := len(got.GetEvents().GetEvents()[0].GetCall().GetXferData().GetCalls()); n != tt.wantXfers {
					t.Errorf("xfer_data has %d calls, want %d", n, tt.wantXfers)
				}
				wantQcall := tt.visible(&callstore.Call{DeviceRef: &callstore.DeviceRef{DeviceCompany: "acme"}})
				if gotQ := got.GetEvents().GetEvents()[1].GetCall().GetQcall() != nil; gotQ != wantQcall {
					t.Errorf("qcall present = %v, want %v", gotQ, wantQcall)
				}
			}
		})
	}
}

// TestAppendToken: the frames' tokens, whose head is encoded once per
// epoch, are appendTo's bytes, across epochs and revisions.
func TestAppendToken(t *testing.T) {
	c := newEncodeCache(nil, 64)
	for _, tok := range []resumeToken{{1, 0}, {1, 1}, {0xffffffffffffffff, 1 << 62}, {42, 7}, {42, 1<<63 - 1}, {1, 255}} {
		got, want := c.appendToken([]byte("x"), tok.Epoch, tok.Revision), tok.appendTo([]byte("x"))
		if !bytes.Equal(got, want) {
			t.Errorf("appendToken(%d, %d) = %q, want %q", tok.Epoch, tok.Revision, got, want)
		}
	}
}

func TestResumeTokenRoundTrip(t *testing.T) {
	for _, tok := range []resumeToken{{1, 0}, {0xffffffffffffffff, 1 << 62}, {42, 7}} {
		s := tok.String()
		if len(s) != tokenLen {
			t.Errorf("token %v encodes to %d bytes, want %d", tok, len(s), tokenLen)
		}
		got, err := parseResumeToken(s)
		if err != nil || got != tok {
			t.Errorf("parseResumeToken(%q) = %v, %v; want %v", s, got, err, tok)
		}
	}
	for _, bad := range []string{"", "x", "AAAA", resumeToken{1, 1}.String() + "A", "!!!!!!!!!!!!!!!!!!!!!!!"} {
		if _, err := parseResumeToken(bad); err == nil {
			t.Errorf("parseResumeToken(%q) succeeded, want an error", bad)
		}
	}
}

func TestEncodeCacheSlots(t *testing.T) {
	c := newEncodeCache(nil, 64)
	n := int64(len(c.slots))
	type entry struct {
		index int
		b     string
	}
	e := func(index int, b string) entry { return entry{index, b} }
	get := func(rev int64, index int) string {
		b, ok := c.lookup(rev, encKey{index: int32(index), view: callstore.ViewStayed})
		if !ok {
			return "miss"
		}
		return string(b)
	}
	store := func(rev int64, e entry) { // a frame of one event, its bytes the event's
		c.publish(rev, []byte(e.b), 1, []frameEvent{{key: encKey{index: int32(e.index), view: callstore.ViewStayed}, end: uint32(len(e.b))}}, 0)
	}
	store(5, e(0, "a"))
	store(5, e(1, "b"))
	if got := get(5, 0) + get(5, 1) + get(5, 2); got != "abmiss" {
		t.Errorf("rev 5 lookups = %q, want %q", got, "abmiss")
	}
	if got, _ := c.lookup(5, encKey{index: 0, view: callstore.ViewLeft}); got != nil {
		t.Errorf("lookup with another view = %q, want a miss", got)
	}
	store(5+n, e(0, "c")) // same slot, newer revision: takes it over
	if got := get(5, 0) + get(5+n, 0); got != "missc" {
		t.Errorf("after takeover = %q, want %q", got, "missc")
	}
	store(5, e(0, "a")) // an older revision never evicts a newer one
	if got := get(5+n, 0); got != "c" {
		t.Errorf("newer revision lost its slot to an older one: got %q", got)
	}
}

// BenchmarkBatchFrameEncode is the encoding of one revision's event for
// the first watcher that receives it (every other watcher of the same
// view finds the frame in the cache): encoding the event, caching it, and
// assembling and caching the frame.
func BenchmarkBatchFrameEncode(b *testing.B) {
	dir := directory.Demo()
	enc := newEncodeCache(newConverter(callstore.New(callstore.Options{}), dir), 64)
	c := &callstore.Call{UID: 1, ID: "1.1", CID: "c-1", DeviceRef: &callstore.DeviceRef{Device: "SIP/201", DeviceCompany: "default", OwnerLogin: "alice"},
		State: callstore.StateUp, NRState: callstore.NRUp, Party: callstore.PartyCaller, Label: "Reception",
		Number: "+19990000001", Name: "Remote party", StampMillis: 1_700_000_000_000, StartMillis: 1_700_000_000_000,
		Features: callstore.FeatureHold}
	visible := func(*callstore.Call) bool { return true }
	var scratch [][]byte
	rev := int64(0)
	for b.Loop() {
		rev++
		enc.batchFrame(&callstore.Batch{Revision: rev, Events: []callstore.WatchEvent{{Type: callstore.EventUpdate, View: callstore.ViewStayed, Call: c}}}, 1, visible, &scratch)
	}
}

// BenchmarkBatchFrameFanout is one revision's frame built for ten watchers
// of one view, as callbench's stream scenario has them: the first encodes
// the events and the frame and caches them, the other nine find the frame
// in the cache. One op is one revision; the revisions alternate between
// one and two events (the scenario's 1.5 a frame).
func BenchmarkBatchFrameFanout(b *testing.B) {
	dir := directory.Demo()
	enc := newEncodeCache(newConverter(callstore.New(callstore.Options{}), dir), 64)
	c := &callstore.Call{UID: 1, ID: "1.1", CID: "c-1", DeviceRef: &callstore.DeviceRef{Device: "SIP/201", DeviceCompany: "default", OwnerLogin: "alice"},
		State: callstore.StateUp, NRState: callstore.NRUp, Party: callstore.PartyCaller, Label: "Reception",
		Number: "+19990000001", Name: "Remote party", StampMillis: 1_700_000_000_000, StartMillis: 1_700_000_000_000,
		Features: callstore.FeatureHold}
	d := *c
	d.UID, d.ID, d.Party = 2, "1.2", callstore.PartyCallee
	visible := func(*callstore.Call) bool { return true }
	var scratch [][]byte
	rev := int64(0)
	for b.Loop() {
		rev++
		events := []callstore.WatchEvent{{Type: callstore.EventUpdate, View: callstore.ViewStayed, Call: c}}
		if rev%2 == 0 {
			events = append(events, callstore.WatchEvent{Type: callstore.EventUpdate, View: callstore.ViewStayed, Call: &d, Index: 1})
		}
		for range 10 {
			batch := callstore.Batch{Revision: rev, Events: events}
			enc.batchFrame(&batch, 1, visible, &scratch)
		}
	}
}
