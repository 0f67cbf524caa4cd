package wirefield

import (
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestNumbersMatchDescriptors checks every constant of the package
// against the generated descriptor of the field it names: the number,
// and the kind that decides its wire type (code that writes a varint
// where the proto now says string would produce frames clients reject).
func TestNumbersMatchDescriptors(t *testing.T) {
	tests := []struct {
		constName string
		num       protowire.Number
		msg       proto.Message
		field     protoreflect.Name
		kind      protoreflect.Kind
	}{
		{"ResponseStarted", ResponseStarted, &callcontrolv1.WatchCallsResponse{}, "started", protoreflect.MessageKind},
		{"ResponseSnapshot", ResponseSnapshot, &callcontrolv1.WatchCallsResponse{}, "snapshot", protoreflect.MessageKind},
		{"ResponseSnapshotEnd", ResponseSnapshotEnd, &callcontrolv1.WatchCallsResponse{}, "snapshot_end", protoreflect.MessageKind},
		{"ResponseEvents", ResponseEvents, &callcontrolv1.WatchCallsResponse{}, "events", protoreflect.MessageKind},
		{"ResponseProgress", ResponseProgress, &callcontrolv1.WatchCallsResponse{}, "progress", protoreflect.MessageKind},
		{"StartedProgressInterval", StartedProgressInterval, &callcontrolv1.WatchStarted{}, "progress_interval", protoreflect.MessageKind},
		{"StartedHistoryWindow", StartedHistoryWindow, &callcontrolv1.WatchStarted{}, "history_window", protoreflect.Int64Kind},
		{"StartedOldestRevision", StartedOldestRevision, &callcontrolv1.WatchStarted{}, "oldest_revision", protoreflect.Int64Kind},
		{"StartedRevision", StartedRevision, &callcontrolv1.WatchStarted{}, "revision", protoreflect.Int64Kind},
		{"SnapshotEndRevision", SnapshotEndRevision, &callcontrolv1.SnapshotEnd{}, "revision", protoreflect.Int64Kind},
		{"SnapshotEndResumeToken", SnapshotEndResumeToken, &callcontrolv1.SnapshotEnd{}, "resume_token", protoreflect.StringKind},
		{"BatchRevision", BatchRevision, &callcontrolv1.EventBatch{}, "revision", protoreflect.Int64Kind},
		{"BatchResumeToken", BatchResumeToken, &callcontrolv1.EventBatch{}, "resume_token", protoreflect.StringKind},
		{"BatchEvents", BatchEvents, &callcontrolv1.EventBatch{}, "events", protoreflect.MessageKind},
		{"ProgressRevision", ProgressRevision, &callcontrolv1.Progress{}, "revision", protoreflect.Int64Kind},
		{"ProgressResumeToken", ProgressResumeToken, &callcontrolv1.Progress{}, "resume_token", protoreflect.StringKind},
		{"ControlCall", ControlCall, &callcontrolv1.HoldResponse{}, "call", protoreflect.MessageKind},
		{"ControlCall", ControlCall, &callcontrolv1.TalkResponse{}, "call", protoreflect.MessageKind},
		{"ControlCall", ControlCall, &callcontrolv1.MuteResponse{}, "call", protoreflect.MessageKind},
		{"ControlCall", ControlCall, &callcontrolv1.HangupResponse{}, "call", protoreflect.MessageKind},
		{"ControlCall", ControlCall, &callcontrolv1.DtmfResponse{}, "call", protoreflect.MessageKind},
		{"ControlAlreadyApplied", ControlAlreadyApplied, &callcontrolv1.HoldResponse{}, "already_applied", protoreflect.BoolKind},
		{"ControlAlreadyApplied", ControlAlreadyApplied, &callcontrolv1.TalkResponse{}, "already_applied", protoreflect.BoolKind},
		{"ControlAlreadyApplied", ControlAlreadyApplied, &callcontrolv1.MuteResponse{}, "already_applied", protoreflect.BoolKind},
		{"EventType", EventType, &callcontrolv1.CallEvent{}, "type", protoreflect.EnumKind},
		{"EventView", EventView, &callcontrolv1.CallEvent{}, "view", protoreflect.EnumKind},
		{"EventCall", EventCall, &callcontrolv1.CallEvent{}, "call", protoreflect.MessageKind},
		{"CallUID", CallUID, &callcontrolv1.Call{}, "uid", protoreflect.Int64Kind},
		{"CallID", CallID, &callcontrolv1.Call{}, "id", protoreflect.StringKind},
		{"CallCID", CallCID, &callcontrolv1.Call{}, "cid", protoreflect.StringKind},
		{"CallDevice", CallDevice, &callcontrolv1.Call{}, "device", protoreflect.StringKind},
		{"CallDeviceCompany", CallDeviceCompany, &callcontrolv1.Call{}, "device_company", protoreflect.StringKind},
		{"CallLabel", CallLabel, &callcontrolv1.Call{}, "label", protoreflect.StringKind},
		{"CallName", CallName, &callcontrolv1.Call{}, "name", protoreflect.StringKind},
		{"CallNumber", CallNumber, &callcontrolv1.Call{}, "number", protoreflect.StringKind},
		{"CallQname", CallQname, &callcontrolv1.Call{}, "qname", protoreflect.StringKind},
		{"CallQnumber", CallQnumber, &callcontrolv1.Call{}, "qnumber", protoreflect.StringKind},
		{"CallStamp", CallStamp, &callcontrolv1.Call{}, "stamp", protoreflect.MessageKind},
		{"CallStart", CallStart, &callcontrolv1.Call{}, "start", protoreflect.MessageKind},
		{"CallInq", CallInq, &callcontrolv1.Call{}, "inq", protoreflect.MessageKind},
		{"CallOutq", CallOutq, &callcontrolv1.Call{}, "outq", protoreflect.MessageKind},
		{"CallQcall", CallQcall, &callcontrolv1.Call{}, "qcall", protoreflect.MessageKind},
		{"CallOwner", CallOwner, &callcontrolv1.Call{}, "owner", protoreflect.MessageKind},
		{"CallOwnerID", CallOwnerID, &callcontrolv1.Call{}, "owner_id", protoreflect.Int64Kind},
		{"CallCompany", CallCompany, &callcontrolv1.Call{}, "company", protoreflect.StringKind},
		{"CallDTMFString", CallDTMFString, &callcontrolv1.Call{}, "dtmf_string", protoreflect.StringKind},
		{"CallExtension", CallExtension, &callcontrolv1.Call{}, "extension", protoreflect.MessageKind},
		{"CallCause", CallCause, &callcontrolv1.Call{}, "cause", protoreflect.Int32Kind},
		{"CallCauseTxt", CallCauseTxt, &callcontrolv1.Call{}, "cause_txt", protoreflect.StringKind},
		{"CallParty", CallParty, &callcontrolv1.Call{}, "party", protoreflect.EnumKind},
		{"CallFeatures", CallFeatures, &callcontrolv1.Call{}, "features", protoreflect.EnumKind},
		{"CallState", CallState, &callcontrolv1.Call{}, "state", protoreflect.EnumKind},
		{"CallNRState", CallNRState, &callcontrolv1.Call{}, "nr_state", protoreflect.EnumKind},
		{"CallJSState", CallJSState, &callcontrolv1.Call{}, "js_state", protoreflect.EnumKind},
		{"CallJSInfo", CallJSInfo, &callcontrolv1.Call{}, "js_info", protoreflect.MessageKind},
		{"CallXferData", CallXferData, &callcontrolv1.Call{}, "xfer_data", protoreflect.MessageKind},
		{"RefUID", RefUID, &callcontrolv1.CallRef{}, "uid", protoreflect.Int64Kind},
		{"RefID", RefID, &callcontrolv1.CallRef{}, "id", protoreflect.StringKind},
		{"RefDevice", RefDevice, &callcontrolv1.CallRef{}, "device", protoreflect.StringKind},
		{"XferCalls", XferCalls, &callcontrolv1.XferData{}, "calls", protoreflect.MessageKind},
		{"JSInfoState", JSInfoState, &callcontrolv1.JsInfo{}, "state", protoreflect.EnumKind},
		{"JSInfoEstablished", JSInfoEstablished, &callcontrolv1.JsInfo{}, "established", protoreflect.BoolKind},
		{"JSInfoEnded", JSInfoEnded, &callcontrolv1.JsInfo{}, "ended", protoreflect.BoolKind},
		{"JSInfoOnhold", JSInfoOnhold, &callcontrolv1.JsInfo{}, "onhold", protoreflect.MessageKind},
		{"JSInfoMuted", JSInfoMuted, &callcontrolv1.JsInfo{}, "muted", protoreflect.MessageKind},
		{"JSHoldLocal", JSHoldLocal, &callcontrolv1.JsHold{}, "local", protoreflect.BoolKind},
		{"JSHoldRemote", JSHoldRemote, &callcontrolv1.JsHold{}, "remote", protoreflect.BoolKind},
		{"JSMutedAudio", JSMutedAudio, &callcontrolv1.JsMuted{}, "audio", protoreflect.BoolKind},
		{"JSMutedVideo", JSMutedVideo, &callcontrolv1.JsMuted{}, "video", protoreflect.BoolKind},
		{"ExtensionNumber", ExtensionNumber, &callcontrolv1.Extension{}, "number", protoreflect.StringKind},
		{"ExtensionCompany", ExtensionCompany, &callcontrolv1.Extension{}, "company", protoreflect.StringKind},
		{"ExtensionType", ExtensionType, &callcontrolv1.Extension{}, "type", protoreflect.EnumKind},
		{"ExtensionName", ExtensionName, &callcontrolv1.Extension{}, "name", protoreflect.StringKind},
		{"TimestampSeconds", TimestampSeconds, &timestamppb.Timestamp{}, "seconds", protoreflect.Int64Kind},
		{"TimestampNanos", TimestampNanos, &timestamppb.Timestamp{}, "nanos", protoreflect.Int32Kind},
		{"DurationSeconds", DurationSeconds, &durationpb.Duration{}, "seconds", protoreflect.Int64Kind},
		{"DurationNanos", DurationNanos, &durationpb.Duration{}, "nanos", protoreflect.Int32Kind},
	}
	var checked []string
	for _, tt := range tests {
		checked = append(checked, tt.constName)
		md := tt.msg.ProtoReflect().Descriptor()
		fd := md.Fields().ByName(tt.field)
		if fd == nil {
			t.Errorf("%s: %s has no field %s", tt.constName, md.FullName(), tt.field)
			continue
		}
		if fd.Number() != tt.num {
			t.Errorf("%s = %d, but %s is field %d", tt.constName, tt.num, fd.FullName(), fd.Number())
		}
		if fd.Kind() != tt.kind {
			t.Errorf("%s: %s is a %v, the code handles a %v", tt.constName, fd.FullName(), fd.Kind(), tt.kind)
		}
	}
	for _, name := range declaredConsts(t) {
		if !slices.Contains(checked, name) {
			t.Errorf("constant %s is not checked here: add its row", name)
		}
	}
}

// declaredConsts returns the names of the constants wirefield.go declares.
func declaredConsts(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "wirefield.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range f.Decls {
		if gd, ok := d.(*ast.GenDecl); ok && gd.Tok == token.CONST {
			for _, s := range gd.Specs {
				for _, n := range s.(*ast.ValueSpec).Names {
					names = append(names, n.Name)
				}
			}
		}
	}
	return names
}
