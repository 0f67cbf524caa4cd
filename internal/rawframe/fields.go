package rawframe

import (
	"errors"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// The readers below walk a message's fields with protowire directly, each
// loop written out: they run for every frame a load client receives, and a
// shared field iterator returning a struct cost the callbench client about
// twice the time per frame.

// Oneof returns the number and bytes of the last length-delimited field of
// message b: for a message that is one oneof of messages (a
// WatchCallsResponse frame), which one it is and its content.
func Oneof(b []byte) (protowire.Number, []byte, error) {
	var (
		kind  protowire.Number
		inner []byte
	)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, nil, protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.BytesType {
			var v []byte
			if v, n = protowire.ConsumeBytes(b); n >= 0 {
				kind, inner = num, v
			}
		} else {
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return 0, nil, protowire.ParseError(n)
		}
		b = b[n:]
	}
	if kind == 0 {
		return 0, nil, errors.New("empty frame")
	}
	return kind, inner, nil
}

// SubField returns the bytes of the first length-delimited field num of
// message b (nil if absent). It reads b only up to that field.
func SubField(b []byte, num protowire.Number) ([]byte, error) {
	for len(b) > 0 {
		f, t, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		if f == num && t == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			return v, nil
		}
		if n = protowire.ConsumeFieldValue(f, t, b); n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil, nil
}

// VarintField returns the last value of varint field num of message b (0
// if absent).
func VarintField(b []byte, num protowire.Number) (uint64, error) {
	var out uint64
	for len(b) > 0 {
		f, t, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		b = b[n:]
		if f == num && t == protowire.VarintType {
			var v uint64
			if v, n = protowire.ConsumeVarint(b); n >= 0 {
				out = v
			}
		} else {
			n = protowire.ConsumeFieldValue(f, t, b)
		}
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return out, nil
}

// EachField calls fn with the bytes of every length-delimited field num
// of message b, in order, and stops at fn's first error.
func EachField(b []byte, num protowire.Number, fn func([]byte) error) error {
	for len(b) > 0 {
		f, t, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if f != num || t != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(f, t, b); n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(v); err != nil {
			return err
		}
	}
	return nil
}

// Decimal parses a non-negative decimal int64 without allocating (the
// benchmarks write commit times into a leg's name that way); 0 if b is
// empty, not all digits or out of range.
func Decimal(b []byte) int64 {
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
