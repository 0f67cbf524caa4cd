package wirefield

import "google.golang.org/protobuf/encoding/protowire"

// The appenders below write one field in protobuf's wire format, as
// proto.Marshal writes it: a scalar holding its zero value is left out,
// and a nested message's length is the shortest varint. The watch
// fan-out's event encoder (server) and the replicas' log and snapshot
// codec (replica) write with them.

// AppendVarint appends field num holding v, unless v is 0.
func AppendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = appendTag(b, num, protowire.VarintType)
	return appendVarint(b, v)
}

// AppendInt appends an int64, int32 or enum field (a negative value
// takes ten bytes, as protobuf encodes it), unless v is 0.
func AppendInt(b []byte, num protowire.Number, v int64) []byte {
	return AppendVarint(b, num, uint64(v))
}

// AppendBool appends field num if v is true.
func AppendBool(b []byte, num protowire.Number, v bool) []byte {
	return AppendVarint(b, num, protowire.EncodeBool(v))
}

// AppendString appends a string or bytes field, unless s is empty.
func AppendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = appendTag(b, num, protowire.BytesType)
	b = appendVarint(b, uint64(len(s)))
	return append(b, s...)
}

// OpenMessage appends the tag of a length-delimited field num and one
// byte for its length, and returns where its contents start;
// CloseMessage, called once they are appended, writes the length. Nearly
// every length fits the byte; a longer one moves the contents up to make
// room (the length must be the shortest varint, so a wider one cannot be
// reserved up front).
func OpenMessage(b []byte, num protowire.Number) ([]byte, int) {
	b = appendTag(b, num, protowire.BytesType)
	b = append(b, 0)
	return b, len(b)
}

// CloseMessage writes the length of the message opened at at (what
// OpenMessage returned) and returns b.
func CloseMessage(b []byte, at int) []byte {
	n := len(b) - at
	if n < 0x80 {
		b[at-1] = byte(n)
		return b
	}
	extra := protowire.SizeVarint(uint64(n)) - 1
	b = append(b, make([]byte, extra)...)
	copy(b[at+extra:], b[at:at+n])
	protowire.AppendVarint(b[:at-1], uint64(n))
	return b
}

// appendTag is protowire.AppendTag with the one-byte tags (fields 1–15)
// appended inline: the encoders write a tag for every field.
func appendTag(b []byte, num protowire.Number, typ protowire.Type) []byte {
	return appendVarint(b, protowire.EncodeTag(num, typ))
}

// appendVarint is protowire.AppendVarint with a one-byte value (under
// 128: most tags, lengths, enums and small numbers) appended inline.
func appendVarint(b []byte, v uint64) []byte {
	if v < 0x80 {
		return append(b, byte(v))
	}
	return protowire.AppendVarint(b, v)
}
