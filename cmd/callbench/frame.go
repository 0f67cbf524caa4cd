package main

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"callcontrold/internal/rawframe"
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
	kind, inner, err := rawframe.Oneof(b)
	if err != nil {
		return 0, 0, 0, err
	}
	revField := wirefield.BatchRevision // Progress.revision has the same number
	if kind == frameStarted {
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
		case kind == frameEvents && f == wirefield.BatchEvents:
			events++
		}
		if n = protowire.ConsumeFieldValue(f, t, inner); n < 0 {
			return 0, 0, 0, protowire.ParseError(n)
		}
		inner = inner[n:]
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
	kind, inner, err := rawframe.Oneof(b)
	if err != nil || kind != frameEvents {
		return kind, 0, 0, err
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
			if at, err = eventStamp(ev); err != nil {
				return 0, 0, 0, err
			}
			continue
		}
		if n = protowire.ConsumeFieldValue(f, t, inner); n < 0 {
			return 0, 0, 0, protowire.ParseError(n)
		}
		inner = inner[n:]
	}
	return kind, rev, at, nil
}

// eventStamp returns the commit time the fan-out driver wrote into a
// CallEvent's Call.name.
func eventStamp(ev []byte) (int64, error) {
	call, err := rawframe.SubField(ev, wirefield.EventCall)
	if err != nil {
		return 0, err
	}
	name, err := rawframe.SubField(call, wirefield.CallName)
	return rawframe.Decimal(name), err
}
