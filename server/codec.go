package server

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	protov2 "google.golang.org/protobuf/proto"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// rawFrame is a message that is already encoded: the watch fan-out builds
// WatchCallsResponse frames by concatenating event encodings that were
// made once for all watchers (see encodeCache), and sends the bytes as
// they are. It holds them as the codec hands them to gRPC, built once (in
// one allocation), so that sending a frame to one more watcher allocates
// nothing for it: gRPC only reads a BufferSlice it is given, and a
// SliceBuffer's reference counting does nothing.
type rawFrame struct {
	data mem.SliceBuffer // the encoded WatchCallsResponse
	bufs [1]mem.Buffer   // &data, as the codec returns it
}

func newRawFrame(b []byte) *rawFrame {
	f := &rawFrame{}
	f.set(b)
	return f
}

// set makes f the frame of b, in place: for a frame that lives inside a
// larger allocation.
func (f *rawFrame) set(b []byte) {
	f.data = b
	f.bufs[0] = &f.data
}

// bytes returns the encoded message.
func (f *rawFrame) bytes() []byte { return f.data }

// frameCodec is the proto codec, except that a rawFrame passes through
// untouched, and that a request of a wrapped service which does not
// decode is recorded in failures rather than failed (decode.go says why). It keeps the name
// "proto", so clients see the ordinary content-type and every other
// message is encoded as usual.
type frameCodec struct {
	proto    encoding.CodecV2
	failures *decodeFailures
}

func newFrameCodec(failures *decodeFailures) encoding.CodecV2 {
	return frameCodec{proto: encoding.GetCodecV2(proto.Name), failures: failures}
}

func (c frameCodec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(*rawFrame); ok {
		return f.bufs[:], nil
	}
	if b, ok := writtenResponse(v); ok {
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return c.proto.Marshal(v)
}

// writtenResponse returns the encoding of a control response that
// callResponse wrote: its fields are all in its unknown bytes, which
// are then the whole encoding (proto.Marshal would only copy them into a
// new buffer). ok is false for any other message, and for a response
// with a field set as a field. The bytes are only read, so a response the
// idempotency cache replays can be sent to two callers at once.
// TestWrittenResponseFields keeps the cases in step with the messages'
// fields.
func writtenResponse(v any) (b []byte, ok bool) {
	var m protov2.Message
	switch r := v.(type) {
	case *callcontrolv1.HoldResponse:
		m, ok = r, r.Call == nil && !r.AlreadyApplied
	case *callcontrolv1.TalkResponse:
		m, ok = r, r.Call == nil && !r.AlreadyApplied
	case *callcontrolv1.MuteResponse:
		m, ok = r, r.Call == nil && !r.AlreadyApplied
	case *callcontrolv1.HangupResponse:
		m, ok = r, r.Call == nil
	case *callcontrolv1.DtmfResponse:
		m, ok = r, r.Call == nil
	}
	if !ok {
		return nil, false
	}
	b = m.ProtoReflect().GetUnknown()
	return b, len(b) > 0
}

func (c frameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if _, ok := v.(*rawFrame); ok {
		return fmt.Errorf("rawFrame is send-only")
	}
	err := c.proto.Unmarshal(data, v)
	if err != nil && c.failures.record(v, err) {
		return nil
	}
	return err
}

func (c frameCodec) Name() string { return c.proto.Name() }
