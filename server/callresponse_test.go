package server

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"pgregory.net/rapid"

	"callcontrold/callstore"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// TestCallResponseMatchesConverter: for random legs and viewers, a control
// response written from the store's leg marshals to the bytes of the
// response holding the converter's Call, for each response type, with and
// without already_applied, and decodes to that response.
func TestCallResponseMatchesConverter(t *testing.T) {
	cv := wireConverter()
	en := newEventEncoder(cv)
	rapid.Check(t, func(t *rapid.T) {
		var c *callstore.Call
		if rapid.IntRange(0, 20).Draw(t, "no call") > 0 {
			c = drawCall(t)
		}
		viewer := rapid.SampledFrom(wireViewers).Draw(t, "viewer")
		already := rapid.Bool().Draw(t, "already")
		pc := cv.call(c, viewer.visible)
		for _, tc := range []struct {
			want, got proto.Message
			already   bool // the type has already_applied
		}{
			{&callcontrolv1.HoldResponse{Call: pc, AlreadyApplied: already}, &callcontrolv1.HoldResponse{}, true},
			{&callcontrolv1.TalkResponse{Call: pc, AlreadyApplied: already}, &callcontrolv1.TalkResponse{}, true},
			{&callcontrolv1.MuteResponse{Call: pc, AlreadyApplied: already}, &callcontrolv1.MuteResponse{}, true},
			{&callcontrolv1.HangupResponse{Call: pc}, &callcontrolv1.HangupResponse{}, false},
			{&callcontrolv1.DtmfResponse{Call: pc}, &callcontrolv1.DtmfResponse{}, false},
		} {
			wantBytes, err := proto.MarshalOptions{Deterministic: true}.Marshal(tc.want)
			if err != nil {
				t.Fatalf("proto.Marshal: %v", err)
			}
			qvis := c != nil && cv.qcallVisible(c, viewer.visible)
			writeCallResponse(tc.got, en, c, qvis, already && tc.already)
			gotBytes, err := proto.Marshal(tc.got)
			if err != nil {
				t.Fatalf("proto.Marshal of the written response: %v", err)
			}
			if sent := codecBytes(t, tc.got); !bytes.Equal(sent, gotBytes) {
				t.Fatalf("%T: the codec sends other bytes than proto.Marshal's:\n got %x\nwant %x", tc.got, sent, gotBytes)
			}
			if !bytes.Equal(gotBytes, wantBytes) {
				dec := tc.got.ProtoReflect().New().Interface()
				if err := proto.Unmarshal(gotBytes, dec); err != nil {
					t.Fatalf("%T: the written bytes do not decode (%v):\n got %x\nwant %x", tc.got, err, gotBytes, wantBytes)
				}
				t.Fatalf("%T: the written bytes differ from proto.Marshal's (-converter +written):\n%s\n got %x\nwant %x",
					tc.got, cmp.Diff(tc.want, dec, protocmp.Transform()), gotBytes, wantBytes)
			}
		}
	})
}

// codecBytes is what the service's codec sends for m.
func codecBytes(t *rapid.T, m proto.Message) []byte {
	bs, err := newFrameCodec(&decodeFailures{}).Marshal(m)
	if err != nil {
		t.Fatalf("codec Marshal %T: %v", m, err)
	}
	defer bs.Free()
	return bs.Materialize()
}

// TestWrittenResponseFields: the responses the codec sends from their
// unknown bytes (writtenResponse) have exactly the fields it checks are
// unset; a field added to one of them must be checked there too.
func TestWrittenResponseFields(t *testing.T) {
	for _, tc := range []struct {
		m      proto.Message
		fields []string
	}{
		{&callcontrolv1.HoldResponse{}, []string{"call", "already_applied"}},
		{&callcontrolv1.TalkResponse{}, []string{"call", "already_applied"}},
		{&callcontrolv1.MuteResponse{}, []string{"call", "already_applied"}},
		{&callcontrolv1.HangupResponse{}, []string{"call"}},
		{&callcontrolv1.DtmfResponse{}, []string{"call"}},
	} {
		var got []string
		fs := tc.m.ProtoReflect().Descriptor().Fields()
		for i := range fs.Len() {
			got = append(got, string(fs.Get(i).Name()))
		}
		if diff := cmp.Diff(tc.fields, got); diff != "" {
			t.Errorf("%T: fields (-writtenResponse checks +message):\n%s", tc.m, diff)
		}
		if _, ok := writtenResponse(tc.m); ok {
			t.Errorf("%T: an empty response is sent from its (empty) unknown bytes", tc.m)
		}
	}
	// A response with a field set as a field goes through proto.Marshal.
	set := &callcontrolv1.HoldResponse{AlreadyApplied: true}
	set.ProtoReflect().SetUnknown([]byte{0x10, 0x01})
	if _, ok := writtenResponse(set); ok {
		t.Error("a HoldResponse with already_applied set as a field is sent from its unknown bytes alone")
	}
}

// TestResponseRoom: a response written into newResponse's room has the
// bytes writeCallResponse writes, in the room when they fit.
func TestResponseRoom(t *testing.T) {
	cv := wireConverter()
	en := newEventEncoder(cv)
	rapid.Check(t, func(t *rapid.T) {
		c := drawCall(t)
		viewer := rapid.SampledFrom(wireViewers).Draw(t, "viewer")
		already := rapid.Bool().Draw(t, "already")
		qvis := cv.qcallVisible(c, viewer.visible)
		want := &callcontrolv1.HoldResponse{}
		writeCallResponse(want, en, c, qvis, already)
		got, room := newResponse[callcontrolv1.HoldResponse]()
		b := appendCallResponse(room, en, c, qvis, already)
		got.ProtoReflect().SetUnknown(b)
		if !bytes.Equal(codecBytes(t, got), codecBytes(t, want)) {
			t.Fatalf("written in the room:\n got %x\nwant %x", codecBytes(t, got), codecBytes(t, want))
		}
		if fits := len(b) <= cap(room); fits != (&b[:1][0] == &room[:1][0]) {
			t.Fatalf("%d bytes, room %d: in the room %v", len(b), cap(room), !fits)
		}
	})
}

// writeCallResponse is callResponse with the viewer's qcall visibility
// decided (converter.qcallVisible), into a response of the test's own.
func writeCallResponse(resp proto.Message, en *eventEncoder, c *callstore.Call, qvis, already bool) {
	resp.ProtoReflect().SetUnknown(appendCallResponse(nil, en, c, qvis, already))
}
