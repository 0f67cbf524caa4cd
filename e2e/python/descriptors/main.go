// Command descriptors writes the protobuf descriptors a dynamic client
// needs to talk to callcontrold, as one serialized FileDescriptorSet: the
// callcontrol.v1 services and messages, the google.rpc status and error
// details the server puts in its errors, and every file they import, each
// after its imports. The descriptors are the ones compiled into the
// server (gen/, which `make check-generate` keeps in step with proto/), so
// the Python end-to-end client built from them cannot drift from the API
// it tests, and needs no protoc of its own.
//
// Usage: go run ./e2e/python/descriptors -o FILE
package main

import (
	"flag"
	"fmt"
	"os"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// roots are the files a client needs: the services, and the error
// details the server sends.
var roots = []protoreflect.FileDescriptor{
	callcontrolv1.File_callcontrol_v1_call_control_service_proto,
	callcontrolv1.File_callcontrol_v1_device_service_proto,
	callcontrolv1.File_callcontrol_v1_simulator_service_proto,
	status.File_google_rpc_status_proto,
	errdetails.File_google_rpc_error_details_proto,
}

func main() {
	out := flag.String("o", "", "write the FileDescriptorSet to this `file` (required)")
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: descriptors -o FILE")
		os.Exit(2)
	}
	b, err := proto.Marshal(fileSet(roots...))
	if err == nil {
		err = os.WriteFile(*out, b, 0o644)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "descriptors: %v\n", err)
		os.Exit(1)
	}
}

// fileSet returns roots and their imports, transitively, each file once
// and after the files it imports (the order a descriptor pool adds them).
func fileSet(roots ...protoreflect.FileDescriptor) *descriptorpb.FileDescriptorSet {
	set := &descriptorpb.FileDescriptorSet{}
	seen := make(map[string]bool)
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	for _, fd := range roots {
		add(fd)
	}
	return set
}
