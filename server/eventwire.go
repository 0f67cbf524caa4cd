package server

import (
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"callcontrold/callstore"
	"callcontrold/wirefield"
)

// eventEncoder writes a watch event's CallEvent encoding straight from the
// store's leg, appending to a buffer: the bytes proto.Marshal would make of
// the converter's message (converter.call, plus xfer_data), without
// building the Call, its timestamps and references first. The watch
// fan-out encodes every revision once per view this way (see
// encodeCache.event); snapshots and unary responses still go through the
// converter.
//
// Fields are written in field-number order and zero values are left out,
// as proto.Marshal does, so the bytes are the same, not merely equivalent.
// A field added to Call must be added here too: TestEventEncoderMatchesConverter
// compares the two encoders byte for byte on random legs, and
// TestEventEncoderCoversEveryField fails for a field the random legs never
// set.
type eventEncoder struct {
	// owners holds each directory user's Contact, encoded once: the
	// directory is read-only, and every leg on a device shows its owner.
	owners map[string][]byte // by login
}

func newEventEncoder(cv *converter) *eventEncoder {
	en := &eventEncoder{owners: make(map[string][]byte)}
	if cv == nil {
		return en
	}
	for login, c := range cv.contacts {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
		if err != nil {
			// Contacts come from the validated directory; a name that is
			// not UTF-8 would fail every response showing it anyway.
			continue
		}
		en.owners[login] = b
	}
	return en
}

// appendEvent appends e's CallEvent as a viewer sees it: qvis says whether
// the viewer may see the queue-bridged call (converter.qcallVisible), xvis
// which xfer_data legs (converter.xferVisible).
func (en *eventEncoder) appendEvent(b []byte, e *callstore.WatchEvent, qvis bool, xvis uint64) []byte {
	b = appendEnum(b, wirefield.EventType, int32(eventTypeToProto(e.Type)))
	b = appendEnum(b, wirefield.EventView, int32(viewToProto(e.View)))
	if e.Call == nil {
		return b
	}
	b, at := wirefield.OpenMessage(b, wirefield.EventCall)
	b = en.appendCall(b, e.Call, qvis)
	b = appendXferData(b, e.Xfer, xvis)
	return wirefield.CloseMessage(b, at)
}

// appendCall appends the fields of c's Call up to js_info; xfer_data, the
// last, is appendEvent's.
func (en *eventEncoder) appendCall(b []byte, c *callstore.Call, qvis bool) []byte {
	b = wirefield.AppendInt(b, wirefield.CallUID, c.UID)
	b = wirefield.AppendString(b, wirefield.CallID, c.ID)
	b = wirefield.AppendString(b, wirefield.CallCID, c.CID)
	b = wirefield.AppendString(b, wirefield.CallDevice, c.Device)
	b = wirefield.AppendString(b, wirefield.CallDeviceCompany, c.DeviceCompany)
	b = wirefield.AppendString(b, wirefield.CallLabel, c.Label)
	b = wirefield.AppendString(b, wirefield.CallName, c.Name)
	b = wirefield.AppendString(b, wirefield.CallNumber, c.Number)
	q := c.Queue
	if q != nil {
		b = wirefield.AppendString(b, wirefield.CallQname, q.Name)
		b = wirefield.AppendString(b, wirefield.CallQnumber, q.Number)
	}
	b = appendTime(b, wirefield.CallStamp, time.UnixMilli(c.StampMillis), c.StampMillis != 0)
	b = appendTime(b, wirefield.CallStart, time.UnixMilli(c.StartMillis), c.StartMillis != 0)
	if q != nil {
		b = appendTime(b, wirefield.CallInq, time.Unix(q.In, 0), q.In != 0)
		b = appendTime(b, wirefield.CallOutq, time.Unix(q.Out, 0), q.Out != 0)
		if qvis {
			b = appendCallRef(b, wirefield.CallQcall, q.CallUID, q.CallID, q.CallDevice)
		}
	}
	if c.OwnerLogin != "" {
		if owner, ok := en.owners[c.OwnerLogin]; ok {
			b = protowire.AppendTag(b, wirefield.CallOwner, protowire.BytesType)
			b = protowire.AppendBytes(b, owner)
		}
	}
	b = wirefield.AppendInt(b, wirefield.CallOwnerID, c.OwnerID)
	b = wirefield.AppendString(b, wirefield.CallCompany, c.Company)
	if c.HasDTMF { // optional: present even when empty
		b = protowire.AppendTag(b, wirefield.CallDTMFString, protowire.BytesType)
		b = protowire.AppendString(b, c.DTMF)
	}
	if x := c.Extension; x != nil {
		var at int
		b, at = wirefield.OpenMessage(b, wirefield.CallExtension)
		b = wirefield.AppendString(b, wirefield.ExtensionNumber, x.Number)
		b = wirefield.AppendString(b, wirefield.ExtensionCompany, x.Company)
		b = appendEnum(b, wirefield.ExtensionType, int32(extensionTypeToProto(x.Type)))
		b = wirefield.AppendString(b, wirefield.ExtensionName, x.Name)
		b = wirefield.CloseMessage(b, at)
	}
	b = appendEnum(b, wirefield.CallCause, c.Cause)
	b = wirefield.AppendString(b, wirefield.CallCauseTxt, c.CauseText())
	b = appendEnum(b, wirefield.CallParty, int32(partyToProto(c.Party)))
	b = appendFeatures(b, c.Features)
	b = appendEnum(b, wirefield.CallState, int32(stateToProto(c.State)))
	b = appendEnum(b, wirefield.CallNRState, int32(nrStateToProto(c.NRState)))
	b = appendEnum(b, wirefield.CallJSState, int32(jsStateToProto(c.JSState)))
	if c.JSState != callstore.JSNone {
		b = appendJSInfo(b, c.JSState, &c.JSInfo)
	}
	return b
}

// appendFeatures appends features as a packed list, in featureList's order.
func appendFeatures(b []byte, f callstore.Features) []byte {
	if f == 0 {
		return b
	}
	b, at := wirefield.OpenMessage(b, wirefield.CallFeatures)
	for _, fl := range featureList {
		if f&fl.bit != 0 {
			b = protowire.AppendVarint(b, uint64(fl.pb))
		}
	}
	return wirefield.CloseMessage(b, at)
}

// appendJSInfo appends js_info; its onhold and muted are always present.
func appendJSInfo(b []byte, state callstore.JSState, j *callstore.JSInfo) []byte {
	b, info := wirefield.OpenMessage(b, wirefield.CallJSInfo)
	b = appendEnum(b, wirefield.JSInfoState, int32(jsStateToProto(state)))
	b = wirefield.AppendBool(b, wirefield.JSInfoEstablished, j.Established)
	b = wirefield.AppendBool(b, wirefield.JSInfoEnded, j.Ended)
	b, hold := wirefield.OpenMessage(b, wirefield.JSInfoOnhold)
	b = wirefield.AppendBool(b, wirefield.JSHoldLocal, j.HoldLocal)
	b = wirefield.AppendBool(b, wirefield.JSHoldRemote, j.HoldRemote)
	b = wirefield.CloseMessage(b, hold)
	b, muted := wirefield.OpenMessage(b, wirefield.JSInfoMuted)
	b = wirefield.AppendBool(b, wirefield.JSMutedAudio, j.MutedAudio)
	b = wirefield.AppendBool(b, wirefield.JSMutedVideo, j.MutedVideo)
	b = wirefield.CloseMessage(b, muted)
	return wirefield.CloseMessage(b, info)
}

// appendXferData appends xfer_data, which only a TRANSFER event's call
// carries: the legs whose bit is set in mask (present, and empty, when
// the viewer may see none of them).
func appendXferData(b []byte, legs []callstore.XferLeg, mask uint64) []byte {
	if len(legs) == 0 {
		return b
	}
	b, at := wirefield.OpenMessage(b, wirefield.CallXferData)
	for i, l := range legs[:min(len(legs), 64)] {
		if mask&(1<<i) != 0 {
			b = appendCallRef(b, wirefield.XferCalls, l.UID, l.ID, l.Device)
		}
	}
	return wirefield.CloseMessage(b, at)
}

func appendCallRef(b []byte, num protowire.Number, uid int64, id, device string) []byte {
	b, at := wirefield.OpenMessage(b, num)
	b = wirefield.AppendInt(b, wirefield.RefUID, uid)
	b = wirefield.AppendString(b, wirefield.RefID, id)
	b = wirefield.AppendString(b, wirefield.RefDevice, device)
	return wirefield.CloseMessage(b, at)
}

// appendTime appends a google.protobuf.Timestamp of t if present (the
// converter's millis and seconds leave a zero time out).
func appendTime(b []byte, num protowire.Number, t time.Time, present bool) []byte {
	if !present {
		return b
	}
	b, at := wirefield.OpenMessage(b, num)
	b = wirefield.AppendInt(b, wirefield.TimestampSeconds, t.Unix())
	b = appendEnum(b, wirefield.TimestampNanos, int32(t.Nanosecond()))
	return wirefield.CloseMessage(b, at)
}

// The scalar appenders leave a zero value out, as proto3 does.

// appendEnum appends an enum or int32: negative values sign-extend to ten
// bytes, as protobuf encodes them.
func appendEnum(b []byte, num protowire.Number, v int32) []byte {
	return wirefield.AppendInt(b, num, int64(v))
}
