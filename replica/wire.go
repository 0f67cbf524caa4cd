package replica

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	"callcontrold/callstore"
	"callcontrold/pbx"
	"callcontrold/wirefield"
)

// The binary format of log messages and snapshots (see "The encoding" in
// the package doc). A message is binaryMarker, a version byte, then
// fields in the protobuf wire format, written and read by hand:
//
//	op        1 leader (bytes)  2 term (varint)  3 change (op change, repeated)
//	          4 request (request)
//	request   1 principal  2 method  3 request_id  4 fingerprint (bytes)
//	change    1 type  2 call (call)  3 xfer (xfer leg, repeated)
//	xfer leg  1 uid  2 id  3 device
//	call      1 uid  2 id  3 cid  4 device  5 device_company  6 owner_id
//	          7 owner_login  8 label  9 name  10 number  11 stamp_ms
//	          12 start_ms  13 queue (queue)  14 company  15 dtmf
//	          16 has_dtmf  17 extension (extension)  18 cause  19 party
//	          20 features  21 state  22 nr_state  23 js_state
//	          24 js_info (bit set, jsInfoBits)  25 peer_uid
//	extension 1 number  2 queue (queue)  3 company  4 type  5 name
//	queue     1 name  2 number  3 in  4 out  5 call_uid  6 call_id
//	          7 call_device
//	snapshot  1 epoch  2 revision  3 term  4 last_uid  5 writer
//	          6 call (call, repeated)
//
// Integers are varints (an int64 as its two's complement uint64), strings
// and nested messages are length-delimited, and a field at its zero value
// is left out. A reader skips a field number it does not know, so adding
// a field that older replicas may ignore is compatible; a change older
// replicas must not misread takes a new version byte.

// binaryMarker starts every binary message. A JSON message (the format
// of version 1) starts with '{', so a reader tells the two apart by the
// first byte, and a log written before the binary format stays readable.
const binaryMarker = 0xB1

// Versions of the binary formats: the byte after binaryMarker.
const (
	opBinaryVersion       = 2
	snapshotBinaryVersion = 2
)

// isBinary reports whether data is in the binary format, and checks its
// version: what, a log message or a snapshot, names it in the error.
func isBinary(data []byte, what string, version byte) (bool, error) {
	if len(data) == 0 || data[0] != binaryMarker {
		return false, nil
	}
	if len(data) < 2 {
		return true, fmt.Errorf("replica: malformed %s: no version byte", what)
	}
	if data[1] != version {
		return true, fmt.Errorf("replica: %s format version %d, this build reads %d (and 1, JSON)", what, data[1], version)
	}
	return true, nil
}

func encodeOpBinary(leader string, term uint64, req *pbx.Request, changes []callstore.Change) ([]byte, error) {
	b := make([]byte, 0, 64+160*len(changes))
	b = append(b, binaryMarker, opBinaryVersion)
	b = wirefield.AppendString(b, 1, leader)
	b = wirefield.AppendVarint(b, 2, term)
	for i := range changes {
		if ch := &changes[i]; ch.Call == nil || ch.Call.DeviceRef == nil {
			return nil, fmt.Errorf("replica: change %d: a call without a device", i)
		}
		b = appendNested(b, 3, &changes[i], appendChange)
	}
	if req != nil {
		b = appendNested(b, 4, req, appendRequest)
	}
	return b, nil
}

func decodeOpBinary(data []byte) (*op, []callstore.Change, error) {
	o := &op{V: opBinaryVersion}
	var changes []callstore.Change
	err := eachField(data, opFields, func(num protowire.Number, v uint64, p []byte) error {
		switch num {
		case 1:
			o.Leader = string(p)
		case 2:
			o.Term = v
		case 3:
			ch, err := decodeChange(p)
			if err != nil {
				return fmt.Errorf("change %d: %w", len(changes), err)
			}
			changes = append(changes, ch)
		case 4:
			req, err := decodeRequest(p)
			if err != nil {
				return fmt.Errorf("request: %w", err)
			}
			o.Request = req
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("replica: malformed log message: %w", err)
	}
	return o, changes, nil
}

func appendRequest(b []byte, r *pbx.Request) []byte {
	b = wirefield.AppendString(b, 1, r.Principal)
	b = wirefield.AppendString(b, 2, r.Method)
	b = wirefield.AppendString(b, 3, r.ID)
	b = protowire.AppendTag(b, 4, protowire.BytesType)
	return protowire.AppendBytes(b, r.Fingerprint[:])
}

func decodeRequest(data []byte) (*pbx.Request, error) {
	r := &pbx.Request{}
	err := eachField(data, requestFields, func(num protowire.Number, v uint64, p []byte) error {
		switch num {
		case 1:
			r.Principal = string(p)
		case 2:
			r.Method = string(p)
		case 3:
			r.ID = string(p)
		case 4:
			if len(p) != len(r.Fingerprint) {
				return fmt.Errorf("fingerprint of %d bytes, want %d", len(p), len(r.Fingerprint))
			}
			copy(r.Fingerprint[:], p)
		}
		return nil
	})
	return r, err
}

func appendChange(b []byte, ch *callstore.Change) []byte {
	b = wirefield.AppendVarint(b, 1, uint64(ch.Type))
	b = appendNested(b, 2, ch.Call, appendCall)
	for i := range ch.Xfer {
		b = appendNested(b, 3, &ch.Xfer[i], appendXfer)
	}
	return b
}

func decodeChange(data []byte) (callstore.Change, error) {
	var ch callstore.Change
	err := eachField(data, changeFields, func(num protowire.Number, v uint64, p []byte) error {
		switch num {
		case 1:
			ch.Type = callstore.EventType(v)
		case 2:
			c, err := decodeCall(p)
			if err != nil {
				return err
			}
			ch.Call = c
		case 3:
			x, err := decodeXfer(p)
			if err != nil {
				return err
			}
			ch.Xfer = append(ch.Xfer, x)
		}
		return nil
	})
	if err == nil && ch.Call == nil {
		err = errors.New("no call")
	}
	return ch, err
}

func appendXfer(b []byte, x *callstore.XferLeg) []byte {
	b = wirefield.AppendVarint(b, 1, uint64(x.UID))
	b = wirefield.AppendString(b, 2, x.ID)
	return wirefield.AppendString(b, 3, x.Device)
}

func decodeXfer(data []byte) (callstore.XferLeg, error) {
	var x callstore.XferLeg
	err := eachField(data, xferFields, func(num protowire.Number, v uint64, p []byte) error {
		switch num {
		case 1:
			x.UID = int64(v)
		case 2:
			x.ID = string(p)
		case 3:
			x.Device = string(p)
		}
		return nil
	})
	return x, err
}

// jsInfoBits are the bits of a call's js_info field, in JSInfo's order.
func jsInfoBits(i callstore.JSInfo) uint64 {
	var v uint64
	for k, set := range [...]bool{i.Established, i.Ended, i.HoldLocal, i.HoldRemote, i.MutedAudio, i.MutedVideo} {
		if set {
			v |= 1 << k
		}
	}
	return v
}

func jsInfoFromBits(v uint64) callstore.JSInfo {
	bit := func(k int) bool { return v&(1<<k) != 0 }
	return callstore.JSInfo{Established: bit(0), Ended: bit(1), HoldLocal: bit(2), HoldRemote: bit(3), MutedAudio: bit(4), MutedVideo: bit(5)}
}

func appendCall(b []byte, c *callstore.Call) []byte {
	b = wirefield.AppendVarint(b, 1, uint64(c.UID))
	b = wirefield.AppendString(b, 2, c.ID)
	b = wirefield.AppendString(b, 3, c.CID)
	b = wirefield.AppendString(b, 4, c.Device)
	b = wirefield.AppendString(b, 5, c.DeviceCompany)
	b = wirefield.AppendVarint(b, 6, uint64(c.OwnerID))
	b = wirefield.AppendString(b, 7, c.OwnerLogin)
	b = wirefield.AppendString(b, 8, c.Label)
	b = wirefield.AppendString(b, 9, c.Name)
	b = wirefield.AppendString(b, 10, c.Number)
	b = wirefield.AppendVarint(b, 11, uint64(c.StampMillis))
	b = wirefield.AppendVarint(b, 12, uint64(c.StartMillis))
	if c.Queue != nil {
		b = appendNested(b, 13, c.Queue, appendQueue)
	}
	b = wirefield.AppendString(b, 14, c.Company)
	b = wirefield.AppendString(b, 15, c.DTMF)
	b = wirefield.AppendBool(b, 16, c.HasDTMF)
	if c.Extension != nil {
		b = appendNested(b, 17, c.Extension, appendExtension)
	}
	b = wirefield.AppendVarint(b, 18, uint64(int64(c.Cause)))
	b = wirefield.AppendVarint(b, 19, uint64(c.Party))
	b = wirefield.AppendVarint(b, 20, uint64(c.Features))
	b = wirefield.AppendVarint(b, 21, uint64(c.State))
	b = wirefield.AppendVarint(b, 22, uint64(c.NRState))
	b = wirefield.AppendVarint(b, 23, uint64(c.JSState))
	b = wirefield.AppendVarint(b, 24, jsInfoBits(c.JSInfo))
	return wirefield.AppendVarint(b, 25, uint64(c.PeerUID))
}

// decodeCall decodes a call. Its device fields are looked up in
// deviceRefs without copying them out of data: only a device the cache
// does not hold yet costs an allocation. Its own strings share one
// allocation (callStrings): they live as long as the call does.
func decodeCall(data []byte) (*callstore.Call, error) {
	c := &callstore.Call{}
	var dev, devCompany, ownerLogin []byte
	var ownerID int64
	var strs callStrings
	err := eachField(data, callFields, func(num protowire.Number, v uint64, p []byte) error {
		var err error
		switch num {
		case 1:
			c.UID = int64(v)
		case 2:
			strs.add(&c.ID, p)
		case 3:
			strs.add(&c.CID, p)
		case 4:
			dev = p
		case 5:
			devCompany = p
		case 6:
			ownerID = int64(v)
		case 7:
			ownerLogin = p
		case 8:
			strs.add(&c.Label, p)
		case 9:
			strs.add(&c.Name, p)
		case 10:
			strs.add(&c.Number, p)
		case 11:
			c.StampMillis = int64(v)
		case 12:
			c.StartMillis = int64(v)
		case 13:
			c.Queue, err = decodeQueue(p)
		case 14:
			strs.add(&c.Company, p)
		case 15:
			strs.add(&c.DTMF, p)
		case 16:
			c.HasDTMF = v != 0
		case 17:
			c.Extension, err = decodeExtension(p)
		default:
			decodeCallEnums(c, num, v)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("call: %w", err)
	}
	strs.set()
	c.DeviceRef = deviceRefs.lookup(dev, devCompany, ownerLogin, ownerID)
	return c, nil
}

// callStrings gathers a call's string fields while it is decoded, and
// sets them all from one string: one allocation per call rather than one
// per field. A field that occurs twice takes its last value, as any other.
type callStrings struct {
	n    int
	to   [7]*string // the call's fields, each once
	from [7][]byte  // their values, in the message's bytes
}

func (s *callStrings) add(to *string, p []byte) {
	for i := range s.n {
		if s.to[i] == to {
			s.from[i] = p
			return
		}
	}
	s.to[s.n], s.from[s.n] = to, p
	s.n++
}

func (s *callStrings) set() {
	total := 0
	for _, p := range s.from[:s.n] {
		total += len(p)
	}
	var b strings.Builder
	b.Grow(total)
	for _, p := range s.from[:s.n] {
		b.Write(p)
	}
	all, off := b.String(), 0
	for i, p := range s.from[:s.n] {
		*s.to[i] = all[off : off+len(p)]
		off += len(p)
	}
}

// decodeCallEnums sets the call's small-integer fields, 18 to 25.
func decodeCallEnums(c *callstore.Call, num protowire.Number, v uint64) {
	switch num {
	case 18:
		c.Cause = int32(v)
	case 19:
		c.Party = callstore.Party(v)
	case 20:
		c.Features = callstore.Features(v)
	case 21:
		c.State = callstore.State(v)
	case 22:
		c.NRState = callstore.NRState(v)
	case 23:
		c.JSState = callstore.JSState(v)
	case 24:
		c.JSInfo = jsInfoFromBits(v)
	case 25:
		c.PeerUID = int64(v)
	}
}

// lookup is get for device fields still in a message's bytes: the key it
// looks up with points into them, and is copied only to be stored.
func (r *deviceRefCache) lookup(dev, company, login []byte, ownerID int64) *callstore.DeviceRef {
	view := func(p []byte) string { return unsafe.String(unsafe.SliceData(p), len(p)) }
	key := callstore.DeviceRef{Device: view(dev), DeviceCompany: view(company), OwnerID: ownerID, OwnerLogin: view(login)}
	r.mu.Lock()
	p, ok := r.m[key]
	r.mu.Unlock()
	if ok {
		return p
	}
	return r.get(callstore.DeviceRef{Device: string(dev), DeviceCompany: string(company), OwnerID: ownerID, OwnerLogin: string(login)})
}

func appendExtension(b []byte, x *callstore.ExtensionRef) []byte {
	b = wirefield.AppendString(b, 1, x.Number)
	if x.Queue != nil {
		b = appendNested(b, 2, x.Queue, appendQueue)
	}
	b = wirefield.AppendString(b, 3, x.Company)
	b = wirefield.AppendVarint(b, 4, uint64(x.Type))
	return wirefield.AppendString(b, 5, x.Name)
}

func decodeExtension(data []byte) (*callstore.ExtensionRef, error) {
	x := &callstore.ExtensionRef{}
	err := eachField(data, extensionFields, func(num protowire.Number, v uint64, p []byte) error {
		var err error
		switch num {
		case 1:
			x.Number = string(p)
		case 2:
			x.Queue, err = decodeQueue(p)
		case 3:
			x.Company = string(p)
		case 4:
			x.Type = callstore.ExtensionType(v)
		case 5:
			x.Name = string(p)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("extension: %w", err)
	}
	return x, nil
}

func appendQueue(b []byte, q *callstore.Queue) []byte {
	b = wirefield.AppendString(b, 1, q.Name)
	b = wirefield.AppendString(b, 2, q.Number)
	b = wirefield.AppendVarint(b, 3, uint64(q.In))
	b = wirefield.AppendVarint(b, 4, uint64(q.Out))
	b = wirefield.AppendVarint(b, 5, uint64(q.CallUID))
	b = wirefield.AppendString(b, 6, q.CallID)
	return wirefield.AppendString(b, 7, q.CallDevice)
}

func decodeQueue(data []byte) (*callstore.Queue, error) {
	q := &callstore.Queue{}
	err := eachField(data, queueFields, func(num protowire.Number, v uint64, p []byte) error {
		switch num {
		case 1:
			q.Name = string(p)
		case 2:
			q.Number = string(p)
		case 3:
			q.In = int64(v)
		case 4:
			q.Out = int64(v)
		case 5:
			q.CallUID = int64(v)
		case 6:
			q.CallID = string(p)
		case 7:
			q.CallDevice = string(p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	return q, nil
}

func encodeSnapshotBinary(s *snapshot, calls []*callstore.Call) []byte {
	b := make([]byte, 0, 64+96*len(calls))
	b = append(b, binaryMarker, snapshotBinaryVersion)
	b = wirefield.AppendVarint(b, 1, s.Epoch)
	b = wirefield.AppendVarint(b, 2, uint64(s.Revision))
	b = wirefield.AppendVarint(b, 3, s.Term)
	b = wirefield.AppendVarint(b, 4, uint64(s.LastUID))
	b = wirefield.AppendString(b, 5, s.Writer)
	for _, c := range calls {
		b = appendNested(b, 6, c, appendCall)
	}
	return b
}

func decodeSnapshotBinary(data []byte) (*snapshot, []*callstore.Call, error) {
	s := &snapshot{V: snapshotBinaryVersion}
	var calls []*callstore.Call
	err := eachField(data, snapshotFields, func(num protowire.Number, v uint64, p []byte) error {
		switch num {
		case 1:
			s.Epoch = v
		case 2:
			s.Revision = int64(v)
		case 3:
			s.Term = v
		case 4:
			s.LastUID = int64(v)
		case 5:
			s.Writer = string(p)
		case 6:
			if calls == nil {
				// A snapshot is mostly its calls: guess their number from its size.
				calls = make([]*callstore.Call, 0, len(data)/(len(p)+2))
			}
			c, err := decodeCall(p)
			if err != nil {
				return fmt.Errorf("call %d: %w", len(calls), err)
			}
			calls = append(calls, c)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("replica: malformed snapshot: %w", err)
	}
	return s, calls, nil
}

// A message is a set of field numbers, each either a varint or bytes
// (a string or a nested message). Bit n of known is set for a field n it
// knows, and bit n of bytes too if that field holds bytes. Field numbers
// stay below 64.
type message struct {
	name         string
	known, bytes uint64
}

// fields returns the bit set of field numbers nums.
func fields(nums ...int) uint64 {
	var v uint64
	for _, n := range nums {
		v |= 1 << n
	}
	return v
}

var (
	opFields        = message{"op", fields(1, 2, 3, 4), fields(1, 3, 4)}
	requestFields   = message{"request", fields(1, 2, 3, 4), fields(1, 2, 3, 4)}
	changeFields    = message{"change", fields(1, 2, 3), fields(2, 3)}
	xferFields      = message{"xfer leg", fields(1, 2, 3), fields(2, 3)}
	callFields      = message{"call", fields(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25), fields(2, 3, 4, 5, 7, 8, 9, 10, 13, 14, 15, 17)}
	extensionFields = message{"extension", fields(1, 2, 3, 4, 5), fields(1, 2, 3, 5)}
	queueFields     = message{"queue", fields(1, 2, 3, 4, 5, 6, 7), fields(1, 2, 6, 7)}
	snapshotFields  = message{"snapshot", fields(1, 2, 3, 4, 5, 6), fields(5, 6)}
)

// eachField calls f with each field of data, a message of kind m: its
// number, and its value, v for a varint, p for bytes. It skips a field m
// does not know (a newer writer's addition) and fails on a field of the
// wrong wire type or one cut short.
func eachField(data []byte, m message, f func(num protowire.Number, v uint64, p []byte) error) error {
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return fmt.Errorf("%s: field tag: %w", m.name, protowire.ParseError(n))
		}
		data = data[n:]
		if num >= 64 || m.known&(1<<num) == 0 {
			if n = protowire.ConsumeFieldValue(num, typ, data); n < 0 {
				return fmt.Errorf("%s: unknown field %d: %w", m.name, num, protowire.ParseError(n))
			}
			data = data[n:]
			continue
		}
		want := protowire.VarintType
		if m.bytes&(1<<num) != 0 {
			want = protowire.BytesType
		}
		if typ != want {
			return fmt.Errorf("%s: field %d has wire type %d, want %d", m.name, num, typ, want)
		}
		var v uint64
		var p []byte
		if want == protowire.VarintType {
			v, n = protowire.ConsumeVarint(data)
		} else {
			p, n = protowire.ConsumeBytes(data)
		}
		if n < 0 {
			return fmt.Errorf("%s: field %d: %w", m.name, num, protowire.ParseError(n))
		}
		data = data[n:]
		if err := f(num, v, p); err != nil {
			return err
		}
	}
	return nil
}

// appendNested appends field num holding the message that enc writes for
// v.
func appendNested[T any](b []byte, num protowire.Number, v *T, enc func([]byte, *T) []byte) []byte {
	b, at := wirefield.OpenMessage(b, num)
	return wirefield.CloseMessage(enc(b, v), at)
}
