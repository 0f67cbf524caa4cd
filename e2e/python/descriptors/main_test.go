package main

import (
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestFileSetResolves: the set is complete and ordered (a registry built
// from it, file by file, resolves every import) and holds what the Python
// client looks up by name.
func TestFileSetResolves(t *testing.T) {
	set := fileSet(roots...)
	files, err := protodesc.NewFiles(set)
	if err != nil {
		t.Fatalf("the set does not resolve: %v", err)
	}
	if n := files.NumFiles(); n != len(set.GetFile()) {
		t.Errorf("%d files resolved, set has %d (a file twice?)", n, len(set.GetFile()))
	}
	for i, f := range set.GetFile() {
		for _, dep := range f.GetDependency() {
			if !before(set.GetFile()[:i], dep) {
				t.Errorf("%s comes before its import %s", f.GetName(), dep)
			}
		}
	}
	for _, name := range []protoreflect.FullName{
		"callcontrol.v1.CallControlService", "callcontrol.v1.DeviceService", "callcontrol.v1.SimulatorService",
		"callcontrol.v1.WatchCallsResponse", "google.rpc.Status", "google.rpc.ErrorInfo", "google.rpc.BadRequest",
		"google.rpc.RetryInfo", "google.protobuf.Timestamp",
	} {
		if _, err := files.FindDescriptorByName(name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func before(files []*descriptorpb.FileDescriptorProto, name string) bool {
	for _, f := range files {
		if f.GetName() == name {
			return true
		}
	}
	return false
}
