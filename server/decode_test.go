package server

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// The codec lets a request that does not decode through and records why;
// reading it back answers INVALID_ARGUMENT once and forgets it, so the
// record cannot grow.
func TestDecodeFailuresAreTakenOnce(t *testing.T) {
	f := &decodeFailures{}
	f.wrap(&callcontrolv1.CallControlService_ServiceDesc)
	c := newFrameCodec(f)
	bad, good := &callcontrolv1.DialRequest{}, &callcontrolv1.DialRequest{}
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer{0xff, 0xff}}, bad); err != nil {
		t.Fatalf("codec failed the request itself: %v", err)
	}
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer{0x12, 0x03, '2', '0', '2'}}, good); err != nil || good.GetNumber() != "202" {
		t.Fatalf("valid request: %v %v", good, err)
	}
	if err := f.received(good, nil); err != nil {
		t.Errorf("valid request: %v", err)
	}
	if err := f.received(bad, nil); status.Code(err) != codes.InvalidArgument {
		t.Errorf("malformed request: got %v, want InvalidArgument", err)
	}
	if err := f.received(bad, nil); err != nil {
		t.Errorf("the failure was not forgotten: %v", err)
	}
	if n := f.pending.Load(); n != 0 {
		t.Errorf("%d failures pending, want 0", n)
	}
	// A type no wrapped service receives fails as grpc-go would have it.
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer{0xff, 0xff}}, &callcontrolv1.Call{}); err == nil {
		t.Errorf("a Call that does not decode was let through")
	}
	if n := f.pending.Load(); n != 0 {
		t.Errorf("%d failures pending after a type not wrapped, want 0", n)
	}
	// A transport error passes through untouched.
	gone := errors.New("stream reset")
	if err := f.received(good, gone); err != gone {
		t.Errorf("got %v, want the stream's error", err)
	}
}
