package main

import (
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"

	"callcontrold/wirefield"
)

// The load client receives stream frames as bytes and reads only what it
// measures (which frame, its revision, how many events) with protowire,
// instead of unmarshalling every Call: the client shares the machine with
// the server, and a full decode of 110k frames/s would take a large part
// of it. Both the no-op stream and WatchCalls are received this way
// (rawframe).

// The WatchCallsResponse frames the client tells apart.
const (
	frameStarted  = wirefield.ResponseStarted
	frameEvents   = wirefield.ResponseEvents
	frameProgress = wirefield.ResponseProgress
)

// parseFrame returns which frame b is (its oneof field number), the
// revision it carries and, for an event batch, how many events.
func parseFrame(b []byte) (kind protowire.Number, rev int64, events int, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, 0, 0, protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return 0, 0, 0, protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		inner, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return 0, 0, 0, protowire.ParseError(n)
		}
		b = b[n:]
		kind = num
		revField := wirefield.BatchRevision // Progress.revision has the same number
		if num == frameStarted {
			revField = wirefield.StartedRevision
		}
		for len(inner) > 0 {
			f, t, n := protowire.ConsumeTag(inner)
			if n < 0 {
				return 0, 0, 0, protowire.ParseError(n)
			}
			inner = inner[n:]
			switch {
			case f == revField && t == protowire.VarintType:
				v, n := protowire.ConsumeVarint(inner)
				if n < 0 {
					return 0, 0, 0, protowire.ParseError(n)
				}
				rev, inner = int64(v), inner[n:]
				continue
			case num == frameEvents && f == wirefield.BatchEvents:
				events++
			}
			if n = protowire.ConsumeFieldValue(f, t, inner); n < 0 {
				return 0, 0, 0, protowire.ParseError(n)
			}
			inner = inner[n:]
		}
	}
	if kind == 0 {
		return 0, 0, 0, errors.New("empty frame")
	}
	return kind, rev, events, nil
}

// mustKind checks a frame's kind.
func mustKind(got, want protowire.Number) error {
	if got != want {
		return fmt.Errorf("frame field %d, want %d", got, want)
	}
	return nil
}

// parseEventFrame is parseFrame for the fan-out watchers: the frame's kind
// and, for an event batch, its revision and the commit time the fan-out
// driver wrote into the first event's Call.name (UnixNano as a decimal
// string; 0 if absent or not a number). It reads nothing else: the
// batch's other fields and the call's other fields are skipped unparsed.
func parseEventFrame(b []byte) (kind protowire.Number, rev, at int64, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, 0, 0, protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return 0, 0, 0, protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		inner, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return 0, 0, 0, protowire.ParseError(n)
		}
		b = b[n:]
		kind = num
		if num != frameEvents {
			continue
		}
		first := true
		for len(inner) > 0 {
			f, t, n := protowire.ConsumeTag(inner)
			if n < 0 {
				return 0, 0, 0, protowire.ParseError(n)
			}
			inner = inner[n:]
			switch {
			case f == wirefield.BatchRevision && t == protowire.VarintType:
				v, n := protowire.ConsumeVarint(inner)
				if n < 0 {
					return 0, 0, 0, protowire.ParseError(n)
				}
				rev, inner = int64(v), inner[n:]
				continue
			case f == wirefield.BatchEvents && t == protowire.BytesType && first:
				ev, n := protowire.ConsumeBytes(inner)
				if n < 0 {
					return 0, 0, 0, protowire.ParseError(n)
				}
				inner, first = inner[n:], false
				call, err := subField(ev, wirefield.EventCall)
				if err != nil {
					return 0, 0, 0, err
				}
				name, err := subField(call, wirefield.CallName)
				if err != nil {
					return 0, 0, 0, err
				}
				at = decimal(name)
				continue
			}
			if n = protowire.ConsumeFieldValue(f, t, inner); n < 0 {
				return 0, 0, 0, protowire.ParseError(n)
			}
			inner = inner[n:]
		}
	}
	if kind == 0 {
		return 0, 0, 0, errors.New("empty frame")
	}
	return kind, rev, at, nil
}

// subField returns the bytes of the first length-delimited field num of
// message b (nil if absent).
func subField(b []byte, num protowire.Number) ([]byte, error) {
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
