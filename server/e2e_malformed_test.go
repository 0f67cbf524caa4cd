package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

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

// The log line of a malformed request reads as the client's fault (INFO,
// InvalidArgument) and, like every request's lines, names the caller and
// the caller's trace.
func TestMalformedRequestLogLine(t *testing.T) {
	var buf syncWriter
	h := newHarness(t, withLogger(slog.New(slog.NewJSONHandler(&buf, nil))))
	garbage := []byte{0xff, 0xff, 0xff, 0xff}
	conn := h.dial("demo-alice", withTraceparent()...).conn
	var out []byte
	err := conn.Invoke(h.ctx(), "/callcontrol.v1.CallControlService/Dial", &garbage, &out, grpc.ForceCodecV2(rawCodec{}))
	statusOf(t, err, codes.InvalidArgument)

	var line map[string]any
	deadline := time.Now().Add(waitLimit)
	for line == nil {
		for _, l := range strings.Split(buf.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["grpc.method"] == "Dial" {
				line = m
			}
		}
		if line == nil && time.Now().After(deadline) {
			t.Fatalf("no log line for the request in:\n%s", buf.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	want := map[string]any{
		"level": "INFO", "grpc.code": "InvalidArgument",
		"login": "alice", "role": "user", "auth_method": "token",
		"trace_id": callerTrace, "span_id": callerSpan,
	}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("log line %s = %v, want %v (line %v)", k, line[k], v, line)
		}
	}
}

// syncWriter is a bytes.Buffer that the server's goroutines may write
// while the test reads it.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
