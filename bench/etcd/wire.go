package main

import (
	"errors"
	"math"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// The client sends and receives messages as bytes and reads only what it
// measures with protowire, for both peers alike: decoding every message
// would measure the client (it shares the machine with the server).

// rawMsg is a message's bytes (a received one's buffer is reused).
type rawMsg struct{ b []byte }

// rawCodec passes rawMsg bytes through. Its name is "proto", so the
// content-type is the ordinary one.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(*rawMsg)
	if !ok {
		return nil, errors.New("rawCodec: not a *rawMsg")
	}
	return mem.BufferSlice{mem.SliceBuffer(m.b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*rawMsg)
	if !ok {
		return errors.New("rawCodec: not a *rawMsg")
	}
	m.b = m.b[:0]
	for _, buf := range data {
		m.b = append(m.b, buf.ReadOnlyData()...)
	}
	return nil
}

func (rawCodec) Name() string { return "proto" }

var rawCodecOption = grpc.ForceCodecV2(rawCodec{})

// oneof returns the field number and bytes of the last length-delimited
// field of message b: for a message that is one oneof of messages, which
// one it is and its content.
func oneof(b []byte) (protowire.Number, []byte, error) {
	var (
		kind  protowire.Number
		inner []byte
	)
	err := walk(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if typ == protowire.BytesType {
			kind, inner = num, v
		}
		return nil
	})
	if err == nil && kind == 0 {
		err = errors.New("empty frame")
	}
	return kind, inner, err
}

// subField returns the bytes of the first length-delimited field num of
// message b (nil if absent).
func subField(b []byte, num protowire.Number) ([]byte, error) {
	var out []byte
	found := false
	err := walk(b, func(n protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if !found && n == num && typ == protowire.BytesType {
			out, found = v, true
		}
		return nil
	})
	return out, err
}

// varintField returns the last value of varint field num of message b (0
// if absent).
func varintField(b []byte, num protowire.Number) (uint64, error) {
	var out uint64
	err := walk(b, func(n protowire.Number, typ protowire.Type, _ []byte, x uint64) error {
		if n == num && typ == protowire.VarintType {
			out = x
		}
		return nil
	})
	return out, err
}

// eachField calls fn with the bytes of every length-delimited field num of
// message b, in order.
func eachField(b []byte, num protowire.Number, fn func([]byte) error) error {
	return walk(b, func(n protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if n == num && typ == protowire.BytesType {
			return fn(v)
		}
		return nil
	})
}

// walk calls fn for every field of message b: a length-delimited field's
// bytes, or a varint's value; other types are skipped.
func walk(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var err error
		switch typ {
		case protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n >= 0 {
				err = fn(num, typ, v, 0)
			}
		case protowire.VarintType:
			var x uint64
			x, n = protowire.ConsumeVarint(b)
			if n >= 0 {
				err = fn(num, typ, nil, x)
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// decimal parses a non-negative decimal int64 without allocating; 0 if b
// is empty, not all digits or out of range.
func decimal(b []byte) int64 {
	if len(b) == 0 || len(b) > 19 {
		return 0
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0
		}
		d := int64(c - '0')
		if v > (math.MaxInt64-d)/10 {
			return 0
		}
		v = v*10 + d
	}
	return v
}
