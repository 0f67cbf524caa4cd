package server

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"
	"pgregory.net/rapid"

	"callcontrold/callstore"
	"callcontrold/directory"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// withXfer adds xfer_data to a converted call as the API defines it (only
// a TRANSFER event's call carries it): the legs whose bit is set in mask.
// The watch path writes it in eventEncoder; this is the reference.
func withXfer(pc *callcontrolv1.Call, legs []callstore.XferLeg, mask uint64) *callcontrolv1.Call {
	if len(legs) == 0 {
		return pc
	}
	xd := &callcontrolv1.XferData{}
	for i, l := range legs[:min(len(legs), 64)] {
		if mask&(1<<i) != 0 {
			xd.Calls = append(xd.Calls, &callcontrolv1.CallRef{Uid: l.UID, Id: l.ID, Device: l.Device})
		}
	}
	pc.XferData = xd
	return pc
}

// converterEvent is the CallEvent the converter builds for e as a viewer
// sees it: what eventEncoder must write the bytes of.
func converterEvent(cv *converter, e *callstore.WatchEvent, visible func(*callstore.Call) bool) *callcontrolv1.CallEvent {
	return &callcontrolv1.CallEvent{
		Type: eventTypeToProto(e.Type),
		View: viewToProto(e.View),
		Call: withXfer(cv.call(e.Call, visible), e.Xfer, cv.xferVisible(e.Xfer, visible)),
	}
}

// The demo directory's devices and logins, and names it does not know:
// owners, qcall and xfer_data legs are looked up by them.
var (
	wireDevices = []string{"SIP/201", "SIP/202", "SIP/webrtc11", "SIP/302", "Queue/q_650", "Park/703", "SIP/nowhere"}
	wireLogins  = []string{"", "alice", "bob", "admin", "acme-admin", "nobody"}
)

// drawString is empty, short, long enough that a message holding it needs
// a two-byte length, or (rarely) a three-byte one.
func drawString(t *rapid.T, label string) string {
	return rapid.OneOf(
		rapid.Just(""),
		rapid.String(),
		rapid.StringN(100, 300, -1),
		rapid.Custom(func(t *rapid.T) string { return strings.Repeat("é", rapid.IntRange(8000, 9000).Draw(t, "n")) }),
	).Draw(t, label)
}

// drawStamp is 0 (left out) or any time, before 1970 included.
func drawStamp(t *rapid.T, label string) int64 {
	return rapid.OneOf(rapid.Just(int64(0)), rapid.Int64(), rapid.Int64Range(1_600_000_000_000, 1_900_000_000_000)).Draw(t, label)
}

// drawCall draws a stored leg: every optional part set or not, every
// enum value (the unspecified zero and one past the last included).
func drawCall(t *rapid.T) *callstore.Call {
	c := &callstore.Call{
		UID: rapid.Int64().Draw(t, "uid"),
		ID:  drawString(t, "id"),
		CID: drawString(t, "cid"),
		DeviceRef: &callstore.DeviceRef{
			Device:        rapid.SampledFrom(wireDevices).Draw(t, "device"),
			DeviceCompany: rapid.SampledFrom([]string{"", "default", "acme"}).Draw(t, "device company"),
			OwnerID:       rapid.Int64().Draw(t, "owner id"),
			OwnerLogin:    rapid.SampledFrom(wireLogins).Draw(t, "owner login"),
		},
		Label:       drawString(t, "label"),
		Name:        drawString(t, "name"),
		Number:      drawString(t, "number"),
		StampMillis: drawStamp(t, "stamp"),
		StartMillis: drawStamp(t, "start"),
		Company:     drawString(t, "company"),
		DTMF:        drawString(t, "dtmf"),
		HasDTMF:     rapid.Bool().Draw(t, "has dtmf"),
		PeerUID:     rapid.Int64().Draw(t, "peer uid"),
		Cause:       rapid.OneOf(rapid.Just(int32(0)), rapid.SampledFrom([]int32{16, 17, 21, 127}), rapid.Int32()).Draw(t, "cause"),
		Party:       callstore.Party(rapid.IntRange(0, 4).Draw(t, "party")),
		Features:    callstore.Features(rapid.IntRange(0, 7).Draw(t, "features")),
		State:       callstore.State(rapid.IntRange(0, 8).Draw(t, "state")),
		NRState:     callstore.NRState(rapid.IntRange(0, 9).Draw(t, "nr state")),
		JSState:     callstore.JSState(rapid.IntRange(0, 10).Draw(t, "js state")),
		JSInfo: callstore.JSInfo{
			Established: rapid.Bool().Draw(t, "established"), Ended: rapid.Bool().Draw(t, "ended"),
			HoldLocal: rapid.Bool().Draw(t, "hold local"), HoldRemote: rapid.Bool().Draw(t, "hold remote"),
			MutedAudio: rapid.Bool().Draw(t, "muted audio"), MutedVideo: rapid.Bool().Draw(t, "muted video"),
		},
	}
	if rapid.Bool().Draw(t, "queued") {
		c.Queue = drawQueue(t)
	}
	if rapid.Bool().Draw(t, "has extension") {
		c.Extension = &callstore.ExtensionRef{
			Number: drawString(t, "ext number"), Company: drawString(t, "ext company"),
			Type: callstore.ExtensionType(rapid.IntRange(0, 6).Draw(t, "ext type")), Name: drawString(t, "ext name"),
		}
		if rapid.Bool().Draw(t, "ext queued") {
			c.Extension.Queue = drawQueue(t) // not part of the API's Extension
		}
	}
	return c
}

func drawQueue(t *rapid.T) *callstore.Queue {
	return &callstore.Queue{
		Name: drawString(t, "qname"), Number: drawString(t, "qnumber"),
		In:  rapid.OneOf(rapid.Just(int64(0)), rapid.Int64Range(-1<<40, 1<<40)).Draw(t, "inq"),
		Out: rapid.OneOf(rapid.Just(int64(0)), rapid.Int64Range(-1<<40, 1<<40)).Draw(t, "outq"),
		// qcall: none (0), or a leg on a device the viewer may or may not see.
		CallUID:    rapid.OneOf(rapid.Just(int64(0)), rapid.Int64()).Draw(t, "qcall uid"),
		CallID:     drawString(t, "qcall id"),
		CallDevice: rapid.SampledFrom(wireDevices).Draw(t, "qcall device"),
	}
}

// drawEvent draws an event of a leg, with xfer_data legs (up to past the
// 64 a viewer can be shown) on any event type: the encoder must not care.
func drawEvent(t *rapid.T) callstore.WatchEvent {
	e := callstore.WatchEvent{
		Type: callstore.EventType(rapid.IntRange(0, 4).Draw(t, "type")),
		View: callstore.ViewChange(rapid.IntRange(0, 4).Draw(t, "view")),
		Call: drawCall(t),
	}
	if rapid.Bool().Draw(t, "transfer") {
		e.Xfer = rapid.SliceOfN(rapid.Custom(func(t *rapid.T) callstore.XferLeg {
			return callstore.XferLeg{UID: rapid.Int64().Draw(t, "uid"), ID: drawString(t, "id"), Device: rapid.SampledFrom(wireDevices).Draw(t, "device")}
		}), 0, 70).Draw(t, "xfer")
	}
	return e
}

// wireViewers are the visibility variants: everything (nil and a
// predicate), one company's devices, nothing.
var wireViewers = []struct {
	name    string
	visible func(*callstore.Call) bool
}{
	{"nil", nil},
	{"all", func(*callstore.Call) bool { return true }},
	{"default", func(c *callstore.Call) bool { return c.DeviceCompany == "default" }},
	{"acme", func(c *callstore.Call) bool { return c.DeviceCompany == "acme" }},
	{"none", func(*callstore.Call) bool { return false }},
}

// checkEventEncoding draws an event and a viewer, and checks that the
// encode cache's bytes (eventEncoder's, as cached by the frame built for
// the event) are proto.Marshal's of the converter's message, byte for
// byte, and that appending to a buffer keeps what it held. It returns the
// converter's message.
func checkEventEncoding(t *rapid.T, cv *converter) *callcontrolv1.CallEvent {
	e := drawEvent(t)
	viewer := rapid.SampledFrom(wireViewers).Draw(t, "viewer")
	want := converterEvent(cv, &e, viewer.visible)
	wantBytes, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
	if err != nil {
		t.Fatalf("proto.Marshal: %v", err)
	}
	c := newEncodeCache(cv, 64)
	var scratch [][]byte
	c.batchFrame(&callstore.Batch{Revision: 7, Events: []callstore.WatchEvent{e}}, 1, viewer.visible, &scratch)
	key := c.key(&e, viewer.visible, 0)
	got, ok := c.lookup(7, key) // where the frame cached it: inside the frame
	if !ok {
		t.Fatalf("building the frame did not cache its event's encoding")
	}
	// The watchers after the first compute keys with what the revision's
	// record knows of its calls (cachedFrame.noQcall): the same keys.
	if k := c.key(&e, viewer.visible, c.record(7).noQcall); k != key {
		t.Fatalf("key with the record's noQcall = %+v, want %+v", k, key)
	}
	if !bytes.Equal(got, wantBytes) {
		var dec callcontrolv1.CallEvent
		if err := proto.Unmarshal(got, &dec); err != nil {
			t.Fatalf("the encoder's bytes do not decode (%v):\n got %x\nwant %x", err, got, wantBytes)
		}
		t.Fatalf("the encoder's bytes differ from proto.Marshal's (-converter +encoder):\n%s\n got %x\nwant %x",
			cmp.Diff(want, &dec, protocmp.Transform()), got, wantBytes)
	}
	prefix := []byte("prefix")
	appended := newEventEncoder(cv).appendEvent(prefix, &e, cv.qcallVisible(e.Call, viewer.visible), cv.xferVisible(e.Xfer, viewer.visible))
	if !bytes.Equal(appended, append(prefix, wantBytes...)) {
		t.Fatalf("appending to a buffer holding %q: got %x, want the buffer then %x", prefix, appended, wantBytes)
	}
	return want
}

func wireConverter() *converter {
	return newConverter(callstore.New(callstore.Options{}), directory.Demo())
}

// TestEventEncoderMatchesConverter: for random legs, events and viewers,
// the watch path's hand-written bytes are proto.Marshal's of the message
// the converter builds (snapshots and unary responses still use it).
func TestEventEncoderMatchesConverter(t *testing.T) {
	cv := wireConverter()
	rapid.Check(t, func(t *rapid.T) { checkEventEncoding(t, cv) })
}

// FuzzEventEncoder is TestEventEncoderMatchesConverter driven by the
// fuzzer's bytes (go test -fuzz FuzzEventEncoder ./server/).
func FuzzEventEncoder(f *testing.F) {
	cv := wireConverter()
	f.Fuzz(rapid.MakeFuzz(func(t *rapid.T) { checkEventEncoding(t, cv) }))
}

// TestEventEncoderCoversEveryField walks CallEvent's descriptor down
// through every message it holds, and fails for a field that the random
// events never produce: a field added to Call must be set by the
// converter and drawn here, and then TestEventEncoderMatchesConverter
// holds the encoder to writing it.
func TestEventEncoderCoversEveryField(t *testing.T) {
	cv := wireConverter()
	fields := messageFields((&callcontrolv1.CallEvent{}).ProtoReflect().Descriptor(), nil)
	seen := make(map[protoreflect.FullName]bool)
	missing := func() []protoreflect.FullName {
		var out []protoreflect.FullName
		for _, fd := range fields {
			if !seen[fd.FullName()] {
				out = append(out, fd.FullName())
			}
		}
		return out
	}
	// The rarest field, qcall, is in about one event in eight: rapid's
	// 100 cases all but never miss one, and a few more rounds make a
	// smaller -rapid.checks safe too.
	for range 5 {
		rapid.Check(t, func(t *rapid.T) { markSet(checkEventEncoding(t, cv).ProtoReflect(), seen) })
		if len(missing()) == 0 || t.Failed() {
			break
		}
	}
	for _, name := range missing() {
		t.Errorf("no random event has %s set: set it in the converter and draw it in drawCall/drawEvent", name)
	}
}

// markSet records the fields set in m and in the messages it holds.
func markSet(m protoreflect.Message, seen map[protoreflect.FullName]bool) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		seen[fd.FullName()] = true
		switch {
		case fd.Kind() != protoreflect.MessageKind:
		case fd.IsList():
			for i := range v.List().Len() {
				markSet(v.List().Get(i).Message(), seen)
			}
		default:
			markSet(v.Message(), seen)
		}
		return true
	})
}

// messageFields returns md's fields and those of every message under it,
// each message once.
func messageFields(md protoreflect.MessageDescriptor, visited map[protoreflect.FullName]bool) []protoreflect.FieldDescriptor {
	if visited == nil {
		visited = make(map[protoreflect.FullName]bool)
	}
	if visited[md.FullName()] {
		return nil
	}
	visited[md.FullName()] = true
	var out []protoreflect.FieldDescriptor
	for i := range md.Fields().Len() {
		fd := md.Fields().Get(i)
		out = append(out, fd)
		if fd.Message() != nil {
			out = append(out, messageFields(fd.Message(), visited)...)
		}
	}
	return out
}

// BenchmarkEventEncode encodes one revision's event for one view, as the
// encode cache does on a miss: through the converter and proto.Marshal
// (what the watch path did before eventEncoder, and snapshots still do),
// and with eventEncoder into a reused buffer.
func BenchmarkEventEncode(b *testing.B) {
	cv := wireConverter()
	legs := map[string]*callstore.Call{
		"up": {UID: 1, ID: "1.1", CID: "c-1", DeviceRef: &callstore.DeviceRef{Device: "SIP/201", DeviceCompany: "default", OwnerID: 4, OwnerLogin: "alice"},
			State: callstore.StateUp, NRState: callstore.NRUp, Party: callstore.PartyCaller, Label: "Reception",
			Number: "+19990000001", Name: "Remote party", StampMillis: 1_700_000_000_123, StartMillis: 1_700_000_001_000,
			Features: callstore.FeatureHold | callstore.FeatureTalk},
		"queued webrtc": {UID: 2, ID: "2.2", CID: "c-2", DeviceRef: &callstore.DeviceRef{Device: "SIP/webrtc11", DeviceCompany: "acme", OwnerID: 5, OwnerLogin: "bob"},
			State: callstore.StateUp, NRState: callstore.NRUp, Party: callstore.PartyCallee, Label: "Caller", Number: "+19990000002",
			StampMillis: 1_700_000_000_123, StartMillis: 1_700_000_001_000, Company: "acme", HasDTMF: true, DTMF: "12#",
			Extension: &callstore.ExtensionRef{Number: "650", Company: "acme", Type: callstore.ExtQueue, Name: "Acme orders"},
			Queue:     &callstore.Queue{Name: "Caller", Number: "+19990000002", In: 1_700_000_000, Out: 1_700_000_001, CallUID: 3, CallID: "3.3", CallDevice: "SIP/302"},
			JSState:   callstore.JSConfirmed, JSInfo: callstore.JSInfo{Established: true}},
	}
	for _, name := range []string{"up", "queued webrtc"} {
		e := callstore.WatchEvent{Type: callstore.EventUpdate, View: callstore.ViewStayed, Call: legs[name]}
		b.Run(name+"/converter", func(b *testing.B) {
			for b.Loop() {
				if _, err := proto.Marshal(converterEvent(cv, &e, nil)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/encoder", func(b *testing.B) {
			en := newEventEncoder(cv)
			qvis, xvis := cv.qcallVisible(e.Call, nil), cv.xferVisible(e.Xfer, nil)
			var buf []byte
			for b.Loop() {
				buf = en.appendEvent(buf[:0], &e, qvis, xvis)
			}
		})
	}
}
