// Package rawframe lets the load clients (callbench, callsoak and the peer
// benchmark in bench/etcd) receive gRPC responses as bytes and read only
// what they measure from them, field by field (fields.go): decoding every
// frame would measure the client, which shares the machine with the
// server.
package rawframe

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// Msg receives a response's bytes (its buffer is reused), or holds a
// request already encoded.
type Msg struct{ B []byte }

// codec marshals requests as protobuf (a *Msg's bytes as they are) and
// hands responses received into a *Msg over as bytes. Its name is
// "proto", so the content-type is the ordinary one.
type codec struct{}

var protoCodec = encoding.GetCodecV2(proto.Name)

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(*Msg); ok {
		return mem.BufferSlice{mem.SliceBuffer(m.B)}, nil
	}
	return protoCodec.Marshal(v)
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*Msg)
	if !ok {
		return protoCodec.Unmarshal(data, v)
	}
	m.B = m.B[:0]
	for _, buf := range data {
		m.B = append(m.B, buf.ReadOnlyData()...)
	}
	return nil
}

func (codec) Name() string { return proto.Name }

// Recv is the call option that selects the codec for a call or stream:
// receive into a *Msg (and send a *Msg's bytes as they are).
var Recv = grpc.ForceCodecV2(codec{})

var serverStream = &grpc.StreamDesc{ServerStreams: true}

// ServerStream opens a server-streaming call of method (its full name,
// "/package.Service/Method") on cc, sends req (a proto message, or a *Msg
// already encoded) and closes the sending side: the responses are then
// received into a *Msg with RecvMsg.
func ServerStream(ctx context.Context, cc grpc.ClientConnInterface, method string, req any) (grpc.ClientStream, error) {
	s, err := cc.NewStream(ctx, serverStream, method, Recv)
	if err != nil {
		return nil, err
	}
	if err := s.SendMsg(req); err != nil {
		return nil, err
	}
	if err := s.CloseSend(); err != nil {
		return nil, err
	}
	return s, nil
}
