package server_test

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/internal/echo"
)

// trailerLimit is the header list size that C-core clients (Python, C++,
// Ruby, ...) accept by default, and grpc-go's next default: an error whose
// trailers pass it reaches such a client as INTERNAL (RST_STREAM).
const trailerLimit = 8 << 10

// stringField is the path of a string field in a request message; for a
// repeated field the test sets one element, and the server names it
// path[0].
type stringField struct {
	path     []protoreflect.FieldDescriptor
	repeated bool
}

func (f stringField) name() string {
	names := make([]string, len(f.path))
	for i, fd := range f.path {
		names[i] = string(fd.Name())
	}
	n := strings.Join(names, ".")
	if f.repeated {
		n += "[0]"
	}
	return n
}

// stringFields lists every string field of md, nested messages included.
func stringFields(md protoreflect.MessageDescriptor, prefix []protoreflect.FieldDescriptor) []stringField {
	var out []stringField
	for i := range md.Fields().Len() {
		fd := md.Fields().Get(i)
		path := append(slices.Clone(prefix), fd)
		switch {
		case fd.Kind() == protoreflect.StringKind && !fd.IsMap():
			out = append(out, stringField{path: path, repeated: fd.IsList()})
		case fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap() &&
			fd.Message().ParentFile().Package() == "callcontrol.v1":
			out = append(out, stringFields(fd.Message(), path)...)
		}
	}
	return out
}

// withString returns a request of type md whose field f is v; uid fields
// are 1 so that the only thing wrong is f (and fields left empty that
// must not be).
func withString(md protoreflect.MessageDescriptor, f stringField, v string) proto.Message {
	req := dynamicpb.NewMessage(md)
	for _, name := range []protoreflect.Name{"uid", "target_uid"} {
		if fd := md.Fields().ByName(name); fd != nil {
			req.Set(fd, protoreflect.ValueOfInt64(1))
		}
	}
	m := protoreflect.Message(req)
	for _, fd := range f.path[:len(f.path)-1] {
		m = m.Mutable(fd).Message()
	}
	last := f.path[len(f.path)-1]
	if f.repeated {
		m.Mutable(last).List().Append(protoreflect.ValueOfString(v))
	} else {
		m.Set(last, protoreflect.ValueOfString(v))
	}
	return req
}

// call invokes method with req over conn, unary or server-streaming, and
// returns the outcome (for a stream: how it ended).
func call(ctx context.Context, conn *grpc.ClientConn, service protoreflect.ServiceDescriptor, method protoreflect.MethodDescriptor, req proto.Message) error {
	name := fmt.Sprintf("/%s/%s", service.FullName(), method.Name())
	if !method.IsStreamingServer() {
		return conn.Invoke(ctx, name, req, dynamicpb.NewMessage(method.Output()))
	}
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, name)
	if err != nil {
		return err
	}
	if err := stream.SendMsg(req); err != nil && err != io.EOF {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	for {
		if err := stream.RecvMsg(dynamicpb.NewMessage(method.Output())); err != nil {
			return err
		}
	}
}

// checkReadable checks that st is bounded: the message and every detail
// say what is wrong without quoting more than a prefix of the input.
func checkReadable(t *testing.T, st *status.Status, fill string) {
	t.Helper()
	run := strings.Repeat(fill, echo.MaxQuoted/len(fill)+1)
	if len(st.Message()) > 512 || strings.Contains(st.Message(), run) {
		t.Errorf("message of %d bytes quotes the input: %.200q", len(st.Message()), st.Message())
	}
	if size := proto.Size(st.Proto()); size > trailerLimit/2 {
		t.Errorf("status of %d bytes, want at most %d", size, trailerLimit/2)
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if len(v.GetDescription()) > 160 || strings.Contains(v.GetDescription(), run) {
					t.Errorf("violation of %s quotes the input: %.200q", v.GetField(), v.GetDescription())
				}
			}
		}
	}
}

// Every string field of every RPC, sent at 10 KB and 1 MB, gets
// INVALID_ARGUMENT with a BadRequest naming it, readable by a default
// client and by one that accepts 8 KiB of trailers; a request over the
// 1 MiB message limit gets RESOURCE_EXHAUSTED.
func TestLongInputGetsReadableErrors(t *testing.T) {
	h := newHarness(t)
	clients := map[string]*grpc.ClientConn{
		"default client":      h.dial("demo-admin").conn,
		"8 KiB trailer limit": h.dial("demo-admin", grpc.WithMaxHeaderListSize(trailerLimit)).conn,
	}
	inputs := []struct {
		name, fill string
		n          int
		want       codes.Code
	}{
		{"10 KB of digits", "1", 10 << 10, codes.InvalidArgument},
		{"10 KB of non-ASCII", "é", 5 << 10, codes.InvalidArgument},
		{"1 MB", "1", 1_000_000, codes.InvalidArgument},
		{"over the 1 MiB message limit", "1", 1 << 20, codes.ResourceExhausted},
	}
	files := []protoreflect.FileDescriptor{
		callcontrolv1.File_callcontrol_v1_call_control_service_proto,
		callcontrolv1.File_callcontrol_v1_device_service_proto,
		callcontrolv1.File_callcontrol_v1_simulator_service_proto,
	}
	tested := 0
	for _, file := range files {
		for i := range file.Services().Len() {
			service := file.Services().Get(i)
			for j := range service.Methods().Len() {
				method := service.Methods().Get(j)
				for _, f := range stringFields(method.Input(), nil) {
					tested++
					for _, in := range inputs {
						value := strings.Repeat(in.fill, in.n)
						for cname, conn := range clients {
							t.Run(fmt.Sprintf("%s/%s/%s/%s", method.Name(), f.name(), in.name, cname), func(t *testing.T) {
								err := call(h.ctx(), conn, service, method, withString(method.Input(), f, value))
								st := statusOf(t, err, in.want)
								checkReadable(t, st, in.fill)
								if in.want == codes.InvalidArgument && !slices.Contains(badRequestFields(t, st), f.name()) {
									t.Errorf("BadRequest does not name %s: %q", f.name(), st.Message())
								}
							})
						}
					}
				}
			}
		}
	}
	// The list is built from the descriptors, so new fields are covered;
	// this only guards against the walk finding nothing.
	if tested < 20 {
		t.Errorf("found %d string fields in the requests, want at least 20", tested)
	}
}

// Many bad fields at once: the BadRequest lists the first ones and the
// message counts the rest, and the whole stays readable.
func TestManyViolationsStayReadable(t *testing.T) {
	h := newHarness(t)
	conn := h.dial("demo-admin", grpc.WithMaxHeaderListSize(trailerLimit)).conn
	long := strings.Repeat("é", 100) // 200 bytes: over the 128-byte name limit
	devices := make([]string, 1000)
	for i := range devices {
		devices[i] = long
	}
	companies := make([]string, 100)
	for i := range companies {
		companies[i] = long
	}
	filter := &callcontrolv1.CallFilter{Devices: devices, Companies: companies}
	c := callcontrolv1.NewCallControlServiceClient(conn)
	_, err := c.ListCalls(h.ctx(), &callcontrolv1.ListCallsRequest{Filter: filter, PageToken: long})
	st := statusOf(t, err, codes.InvalidArgument)
	checkReadable(t, st, "é")
	if n := len(badRequestFields(t, st)); n != 10 {
		t.Errorf("BadRequest lists %d fields, want the first 10", n)
	}
	if !strings.HasPrefix(st.Message(), "1101 invalid fields, the first 10: ") {
		t.Errorf("message does not count the rest: %q", st.Message())
	}
}
