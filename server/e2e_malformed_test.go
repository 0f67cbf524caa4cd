package server_test

import (
	"fmt"
	"io"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
)

// rawCodec sends a []byte as the message, whatever it holds: a client
// that does not speak protobuf, or a fuzzer.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec sends *[]byte, not %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(*b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// A request that is not a valid protobuf message is the client's fault:
// INVALID_ARGUMENT (reason MALFORMED_REQUEST), after authentication like
// any other request, for unary RPCs and streams alike.
func TestMalformedRequestIsInvalidArgument(t *testing.T) {
	h := newHarness(t)
	garbage := []byte{0xff, 0xff, 0xff, 0xff} // field 0x1fffff..., truncated varint
	raw := grpc.ForceCodecV2(rawCodec{})
	for _, tc := range []struct {
		name, token string
		want        codes.Code
	}{
		{"with a token", "demo-alice", codes.InvalidArgument},
		{"without a token", "", codes.Unauthenticated},
	} {
		conn := h.dial(tc.token).conn
		t.Run(tc.name+"/unary", func(t *testing.T) {
			var out []byte
			err := conn.Invoke(h.ctx(), "/callcontrol.v1.CallControlService/Dial", &garbage, &out, raw)
			st := statusOf(t, err, tc.want)
			if tc.want == codes.InvalidArgument && errorInfo(t, st).GetReason() != "MALFORMED_REQUEST" {
				t.Errorf("reason %q", errorInfo(t, st).GetReason())
			}
		})
		t.Run(tc.name+"/stream", func(t *testing.T) {
			stream, err := conn.NewStream(h.ctx(), &grpc.StreamDesc{ServerStreams: true}, "/callcontrol.v1.CallControlService/WatchCalls", raw)
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.SendMsg(&garbage); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			var out []byte
			st := statusOf(t, stream.RecvMsg(&out), tc.want)
			if tc.want == codes.InvalidArgument && errorInfo(t, st).GetReason() != "MALFORMED_REQUEST" {
				t.Errorf("reason %q", errorInfo(t, st).GetReason())
			}
		})
	}
	// Health needs no token and is wrapped the same way.
	var out []byte
	err := h.dial("").conn.Invoke(h.ctx(), "/grpc.health.v1.Health/Check", &garbage, &out, raw)
	statusOf(t, err, codes.InvalidArgument)
}
