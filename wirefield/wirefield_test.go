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
		{"StartedRevision", StartedRevision, &callcontrolv1.WatchStarted{}, "revision", protoreflect.Int64Kind},
		{"BatchRevision", BatchRevision, &callcontrolv1.EventBatch{}, "revision", protoreflect.Int64Kind},
		{"BatchResumeToken", BatchResumeToken, &callcontrolv1.EventBatch{}, "resume_token", protoreflect.StringKind},
		{"BatchEvents", BatchEvents, &callcontrolv1.EventBatch{}, "events", protoreflect.MessageKind},
		{"ProgressRevision", ProgressRevision, &callcontrolv1.Progress{}, "revision", protoreflect.Int64Kind},
		{"EventCall", EventCall, &callcontrolv1.CallEvent{}, "call", protoreflect.MessageKind},
		{"CallName", CallName, &callcontrolv1.Call{}, "name", protoreflect.StringKind},
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
