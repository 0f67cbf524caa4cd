package main

import (
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// TestParseJSONFrame: the JSON frame reader agrees with the binary one on
// frames encoded by protojson, as the server encodes them.
func TestParseJSONFrame(t *testing.T) {
	ev := func(uid int64) *callcontrolv1.CallEvent {
		return &callcontrolv1.CallEvent{Type: callcontrolv1.EventType_EVENT_TYPE_UPDATE, Call: &callcontrolv1.Call{
			Uid: uid, Extension: &callcontrolv1.Extension{Type: callcontrolv1.ExtensionType_EXTENSION_TYPE_QUEUE},
		}}
	}
	for _, f := range []*callcontrolv1.WatchCallsResponse{
		{Frame: &callcontrolv1.WatchCallsResponse_Started{Started: &callcontrolv1.WatchStarted{ProgressInterval: durationpb.New(1e9), HistoryWindow: 10, Revision: 42}}},
		{Frame: &callcontrolv1.WatchCallsResponse_Events{Events: &callcontrolv1.EventBatch{Revision: 43, ResumeToken: "t", Events: []*callcontrolv1.CallEvent{ev(1), ev(2)}}}},
		{Frame: &callcontrolv1.WatchCallsResponse_Progress{Progress: &callcontrolv1.Progress{Revision: 44, ResumeToken: "t"}}},
	} {
		b, err := proto.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		wantKind, wantRev, wantEvents, err := parseFrame(b)
		if err != nil {
			t.Fatal(err)
		}
		j, err := protojson.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		kind, rev, events, err := parseJSONFrame(j)
		if err != nil || kind != wantKind || rev != wantRev || events != wantEvents {
			t.Errorf("parseJSONFrame(%s) = %d, %d, %d, %v; want %d, %d, %d", j, kind, rev, events, err, wantKind, wantRev, wantEvents)
		}
	}
	if _, _, _, err := parseJSONFrame([]byte(`{"snapshot":{}}`)); err == nil {
		t.Error("parseJSONFrame accepted a snapshot frame")
	}
}
