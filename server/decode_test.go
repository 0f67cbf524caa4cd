package server

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc"

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

// The innermost unary interceptor answers a request that did not decode
// instead of calling the handler, and turns a handler's panic into the
// recovery's error; a call refused before it (no token) has its failure
// forgotten by the outermost one.
func TestUnaryDecodeFailureAndRecovery(t *testing.T) {
	f := &decodeFailures{}
	f.wrap(&callcontrolv1.CallControlService_ServiceDesc)
	c := newFrameCodec(f)
	malformed := func() *callcontrolv1.HoldRequest {
		m := &callcontrolv1.HoldRequest{}
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer{0xff, 0xff}}, m); err != nil {
			t.Fatalf("codec failed the request itself: %v", err)
		}
		return m
	}
	tail := f.unary(func(context.Context, any) error { return internalError() })
	info := &grpc.UnaryServerInfo{FullMethod: "/callcontrol.v1.CallControlService/Hold"}
	called := false
	handler := func(context.Context, any) (any, error) { called = true; return "ok", nil }

	if _, err := tail(t.Context(), malformed(), info, handler); status.Code(err) != codes.InvalidArgument || called {
		t.Errorf("malformed request: got %v (handler called: %v), want InvalidArgument without the handler", err, called)
	}
	if resp, err := tail(t.Context(), &callcontrolv1.HoldRequest{Uid: 1}, info, handler); err != nil || resp != "ok" || !called {
		t.Errorf("valid request: got %v, %v (handler called: %v)", resp, err, called)
	}
	boom := func(context.Context, any) (any, error) { panic("boom") }
	if _, err := tail(t.Context(), &callcontrolv1.HoldRequest{Uid: 1}, info, boom); status.Code(err) != codes.Internal {
		t.Errorf("panicking handler: got %v, want INTERNAL", err)
	}

	p := &pendingRequests{failures: f}
	refuse := func(context.Context, any) (any, error) { return nil, status.Error(codes.Unauthenticated, "no token") }
	if _, err := p.unary(t.Context(), malformed(), info, refuse); status.Code(err) != codes.Unauthenticated {
		t.Errorf("refused call: got %v, want its refusal", err)
	}
	if n := f.pending.Load(); n != 0 {
		t.Errorf("%d failures pending after a refused call, want 0", n)
	}
}
