package rawframe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/wirefield"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func eventsFrame(t testing.TB, names ...string) []byte {
	batch := &callcontrolv1.EventBatch{Revision: 12, ResumeToken: "tok"}
	for i, n := range names {
		batch.Events = append(batch.Events, &callcontrolv1.CallEvent{Type: callcontrolv1.EventType(1), Call: &callcontrolv1.Call{Uid: int64(i + 1), Name: n}})
	}
	return mustMarshal(t, &callcontrolv1.WatchCallsResponse{Frame: &callcontrolv1.WatchCallsResponse_Events{Events: batch}})
}

func TestFields(t *testing.T) {
	frame := eventsFrame(t, "42", "43")
	kind, batch, err := Oneof(frame)
	if err != nil || kind != wirefield.ResponseEvents {
		t.Fatalf("Oneof = %d, %v; want %d", kind, err, wirefield.ResponseEvents)
	}
	if rev, err := VarintField(batch, wirefield.BatchRevision); err != nil || rev != 12 {
		t.Errorf("VarintField(revision) = %d, %v; want 12", rev, err)
	}
	if v, err := VarintField(batch, 99); err != nil || v != 0 {
		t.Errorf("VarintField(absent) = %d, %v; want 0", v, err)
	}
	var names []string
	err = EachField(batch, wirefield.BatchEvents, func(ev []byte) error {
		call, err := SubField(ev, wirefield.EventCall)
		if err != nil {
			return err
		}
		name, err := SubField(call, wirefield.CallName)
		names = append(names, string(name))
		return err
	})
	if err != nil || len(names) != 2 || names[0] != "42" || names[1] != "43" {
		t.Errorf("event names %q, %v; want [42 43]", names, err)
	}
	if v, err := SubField(batch, 99); err != nil || v != nil {
		t.Errorf("SubField(absent) = %q, %v; want nil", v, err)
	}
	// A fixed64 field is skipped; a truncated one is an error.
	b := protowire.AppendTag(nil, 3, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, 7)
	b = protowire.AppendTag(b, 4, protowire.VarintType)
	b = protowire.AppendVarint(b, 9)
	if v, err := VarintField(b, 4); err != nil || v != 9 {
		t.Errorf("after a fixed64: VarintField = %d, %v; want 9", v, err)
	}
	for _, bad := range [][]byte{{0x22, 0x05, 0x01}, {0x19, 0x01}, {0x08}, {0x80}} {
		if _, _, err := Oneof(bad); err == nil {
			t.Errorf("Oneof(% x): no error", bad)
		}
		if _, err := VarintField(bad, 1); err == nil {
			t.Errorf("VarintField(% x): no error", bad)
		}
		if err := EachField(bad, 4, func([]byte) error { return nil }); err == nil {
			t.Errorf("EachField(% x): no error", bad)
		}
	}
	stop := errors.New("stop")
	if err := EachField(batch, wirefield.BatchEvents, func([]byte) error { return stop }); err != stop {
		t.Errorf("EachField: %v, want fn's error", err)
	}
	if _, _, err := Oneof(nil); err == nil {
		t.Error("Oneof(empty): no error")
	}
}

func TestDecimal(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "0": 0, "42": 42, "9223372036854775807": 1<<63 - 1, "9223372036854775808": 0, "12a": 0, "-5": 0, "00000000000000000001": 0} {
		if got := Decimal([]byte(in)); got != want {
			t.Errorf("Decimal(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestCodec(t *testing.T) {
	var c codec
	req := &callcontrolv1.WatchCallsRequest{SkipSnapshot: true}
	want := mustMarshal(t, req)
	for _, v := range []any{req, &Msg{B: want}} {
		got, err := c.Marshal(v)
		if err != nil || !bytes.Equal(got.Materialize(), want) {
			t.Errorf("Marshal(%T) = % x, %v; want % x", v, got.Materialize(), err, want)
		}
	}
	data, err := c.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	m := Msg{B: []byte("old")}
	if err := c.Unmarshal(data, &m); err != nil || !bytes.Equal(m.B, want) {
		t.Errorf("Unmarshal into *Msg = % x, %v; want % x", m.B, err, want)
	}
	var back callcontrolv1.WatchCallsRequest
	if err := c.Unmarshal(data, &back); err != nil || !back.GetSkipSnapshot() {
		t.Errorf("Unmarshal into a proto message = %v, %v", &back, err)
	}
}

// FuzzFields: on any input the readers return or fail without a panic,
// and those that read the whole message agree on whether it parses.
func FuzzFields(f *testing.F) {
	f.Add(eventsFrame(f, "1", "2"))
	f.Add([]byte{0x22, 0x05, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		var last protowire.Number
		_, errV := VarintField(b, 1)
		errE := EachField(b, 4, func(v []byte) error { _ = Decimal(v); return nil })
		kind, inner, errO := Oneof(b)
		if (errV == nil) != (errE == nil) {
			t.Fatalf("VarintField: %v, EachField: %v", errV, errE)
		}
		if errV == nil {
			for num := protowire.Number(1); num < 8; num++ {
				_ = EachField(b, num, func([]byte) error { last = max(last, num); return nil })
			}
			if errO != nil && kind == 0 && inner == nil && last != 0 {
				t.Errorf("Oneof: %v, but field %d is length-delimited", errO, last)
			}
		}
		_, _ = SubField(b, 4)
	})
}

// TestServerStream: over a real loopback connection, the request arrives
// as sent (a proto message, or a *Msg's bytes), the sending side is
// closed, and the responses come back as their bytes.
func TestServerStream(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	resp := eventsFrame(t, "7")
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, s grpc.ServerStream) error {
		var req callcontrolv1.WatchCallsRequest
		if err := s.RecvMsg(&req); err != nil {
			return err
		}
		if err := s.RecvMsg(&req); err != io.EOF {
			return fmt.Errorf("after the request: %v, want the client's end of sending", err)
		}
		var out callcontrolv1.WatchCallsResponse
		if err := proto.Unmarshal(resp, &out); err != nil {
			return err
		}
		for range req.GetFilter().GetDevices() {
			if err := s.SendMsg(&out); err != nil {
				return err
			}
		}
		return nil
	}))
	defer srv.Stop()
	go func() { _ = srv.Serve(lis) }()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req := &callcontrolv1.WatchCallsRequest{Filter: &callcontrolv1.CallFilter{Devices: []string{"SIP/1", "SIP/2"}}}
	for _, r := range []any{req, &Msg{B: mustMarshal(t, req)}} {
		s, err := ServerStream(ctx, cc, "/test.Service/Watch", r)
		if err != nil {
			t.Fatal(err)
		}
		var m Msg
		for i := range 2 {
			if err := s.RecvMsg(&m); err != nil || !bytes.Equal(m.B, resp) {
				t.Fatalf("%T: response %d: % x, %v; want % x", r, i, m.B, err, resp)
			}
		}
		if err := s.RecvMsg(&m); err != io.EOF {
			t.Errorf("%T: after the responses: %v, want io.EOF", r, err)
		}
	}
}
