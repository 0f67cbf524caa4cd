package replica

import (
	"crypto/sha256"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/encoding/protowire"

	"callcontrold/callstore"
	"callcontrold/pbx"
	"callcontrold/wirefield"
)

// fullCall returns a Call with every field set to a value that is not
// its zero value, so a field the codec forgets shows up in a diff.
func fullCall(t *testing.T) *callstore.Call {
	c := &callstore.Call{
		UID: 7, ID: "1.2", CID: "SIP/201-1",
		DeviceRef: &callstore.DeviceRef{Device: "SIP/201", DeviceCompany: "default", OwnerID: 3, OwnerLogin: "alice"},
		Label:     "l", Name: "n", Number: "202",
		StampMillis: 10, StartMillis: 11,
		Queue:   &callstore.Queue{Name: "q", Number: "600", In: 1, Out: 2, CallUID: 9, CallID: "x", CallDevice: "SIP/202"},
		Company: "acme", DTMF: "12", HasDTMF: true,
		Extension: &callstore.ExtensionRef{Number: "600", Company: "default", Type: callstore.ExtQueue, Name: "Support",
			Queue: &callstore.Queue{Name: "q2"}},
		Cause: 16, Party: callstore.PartyCaller,
		Features: callstore.FeatureHold, State: callstore.StateUp, NRState: callstore.NRUp,
		JSState: callstore.JSConfirmed,
		JSInfo:  callstore.JSInfo{Established: true, Ended: true, HoldLocal: true, HoldRemote: true, MutedAudio: true, MutedVideo: true},
		PeerUID: 8,
	}
	v := reflect.ValueOf(c).Elem()
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("fullCall leaves %s unset: set it so the round trip covers it", v.Type().Field(i).Name)
		}
	}
	return c
}

// codecFormats are the log message formats a replica reads: the binary
// one it writes, and the JSON one of version 1 an older log holds.
var codecFormats = []struct {
	name   string
	encode func(string, uint64, []callstore.Change) ([]byte, error)
}{{"binary", func(leader string, term uint64, changes []callstore.Change) ([]byte, error) {
	return encodeOp(leader, term, nil, changes)
}}, {"json-v1", encodeOpJSON}}

func testRequest() *pbx.Request {
	return &pbx.Request{Principal: "alice", Method: "Hold", ID: "retry-1", Fingerprint: sha256.Sum256([]byte("hold 7"))}
}

// TestCodecRequest: the client request an operation carried out goes
// through the log whole; an operation without one has none.
func TestCodecRequest(t *testing.T) {
	for _, req := range []*pbx.Request{testRequest(), nil} {
		data, err := encodeOp("r1", 7, req, typicalOp())
		if err != nil {
			t.Fatal(err)
		}
		o, _, err := decodeOp(data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(o.Request, req) {
			t.Errorf("request %+v decodes as %+v", req, o.Request)
		}
	}
	// A fingerprint that is not a SHA-256 digest is a corrupt message.
	req := wirefield.AppendString(nil, 1, "alice")
	req = protowire.AppendTag(req, 4, protowire.BytesType)
	req = protowire.AppendBytes(req, []byte{1, 2, 3})
	bad := protowire.AppendTag([]byte{binaryMarker, opBinaryVersion}, 4, protowire.BytesType)
	bad = protowire.AppendBytes(bad, req)
	if _, _, err := decodeOp(bad); err == nil || !strings.Contains(err.Error(), "fingerprint") {
		t.Errorf("a request with a 3-byte fingerprint decodes: %v", err)
	}
}

func TestCodecRoundTrip(t *testing.T) {
	changes := []callstore.Change{
		{Type: callstore.EventNew, Call: fullCall(t)},
		{Type: callstore.EventTransfer, Call: &callstore.Call{UID: 8, DeviceRef: &callstore.DeviceRef{Device: "SIP/202"}, State: callstore.StateDead},
			Xfer: []callstore.XferLeg{{UID: 7, ID: "1.2", Device: "SIP/201"}, {UID: 9, ID: "1.3", Device: "SIP/202"}}},
	}
	for _, f := range codecFormats {
		t.Run(f.name, func(t *testing.T) {
			data, err := f.encode("r1", 42, changes)
			if err != nil {
				t.Fatal(err)
			}
			o, got, err := decodeOp(data)
			if err != nil {
				t.Fatal(err)
			}
			if o.Leader != "r1" || o.Term != 42 {
				t.Errorf("leader %q term %d, want r1 42", o.Leader, o.Term)
			}
			if d := cmp.Diff(changes, got); d != "" {
				t.Errorf("round trip (-sent +decoded):\n%s", d)
			}
		})
	}
}

// TestCodecWritesBinary: what a replica appends is the binary format,
// and smaller than the JSON it replaces.
func TestCodecWritesBinary(t *testing.T) {
	changes := typicalOp()
	bin, err := encodeOp("r1", 3, nil, changes)
	if err != nil {
		t.Fatal(err)
	}
	js, err := encodeOpJSON("r1", 3, changes)
	if err != nil {
		t.Fatal(err)
	}
	if len(bin) < 2 || bin[0] != binaryMarker || bin[1] != opBinaryVersion {
		t.Fatalf("encodeOp starts % x, want %x %x", bin[:min(2, len(bin))], binaryMarker, opBinaryVersion)
	}
	if len(bin) >= len(js) {
		t.Errorf("binary message %d bytes, JSON %d: no smaller", len(bin), len(js))
	}
}

// TestDecodeSkipsUnknownFields: a field a newer writer added (one older
// replicas may ignore) does not stop this build reading the message.
func TestDecodeSkipsUnknownFields(t *testing.T) {
	data, err := encodeOp("r1", 3, nil, typicalOp())
	if err != nil {
		t.Fatal(err)
	}
	data = protowire.AppendTag(data, 60, protowire.BytesType)
	data = protowire.AppendString(data, "a newer field")
	data = protowire.AppendTag(data, 61, protowire.VarintType)
	data = protowire.AppendVarint(data, 1)
	o, got, err := decodeOp(data)
	if err != nil {
		t.Fatal(err)
	}
	if o.Term != 3 || cmp.Diff(typicalOp(), got) != "" {
		t.Errorf("with unknown fields: term %d, changes %+v", o.Term, got)
	}
}

// TestDecodeSharesDevices: the calls a replica decodes share one DeviceRef
// per device, as the leader's do, across messages.
func TestDecodeSharesDevices(t *testing.T) {
	call := func(uid int64, dev string) callstore.Change {
		return callstore.Change{Type: callstore.EventNew, Call: &callstore.Call{
			UID: uid, DeviceRef: &callstore.DeviceRef{Device: dev, DeviceCompany: "default"}, State: callstore.StateRing,
		}}
	}
	var got []callstore.Change
	for _, changes := range [][]callstore.Change{{call(1, "SIP/201"), call(2, "SIP/202")}, {call(3, "SIP/201")}} {
		data, err := encodeOp("r1", 1, nil, changes)
		if err != nil {
			t.Fatal(err)
		}
		_, decoded, err := decodeOp(data)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, decoded...)
	}
	if got[0].Call.DeviceRef != got[2].Call.DeviceRef {
		t.Error("two calls of SIP/201, decoded from two messages, have a DeviceRef each")
	}
	if got[0].Call.DeviceRef == got[1].Call.DeviceRef || got[1].Call.Device != "SIP/202" {
		t.Errorf("SIP/202's call shows device %q: it shares SIP/201's", got[1].Call.Device)
	}
}

func TestEncodeRefusesCallWithoutDevice(t *testing.T) {
	if _, err := encodeOp("r1", 1, nil, []callstore.Change{{Type: callstore.EventNew, Call: &callstore.Call{UID: 1, State: callstore.StateRing}}}); err == nil {
		t.Error("encodeOp of a call without a device: nil error")
	}
}

func TestDecodeRefuses(t *testing.T) {
	good, err := encodeOp("r1", 3, nil, typicalOp())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, data, want string }{
		{"not json", `not json`, "malformed"},
		{"json v2", `{"v":2,"changes":[]}`, "version 2"},
		{"empty", ``, "malformed"},
		{"marker alone", "\xb1", "no version byte"},
		{"binary v3", "\xb1\x03", "format version 3"},
		{"cut short", string(good[:len(good)-3]), "malformed"},
		{"term as bytes", "\xb1\x02\x12\x01x", "field 2 has wire type"},
		{"change without call", "\xb1\x02\x1a\x02\x08\x01", "no call"},
		{"bad call", "\xb1\x02\x1a\x04\x12\x02\x0a\x00", "field 1 has wire type"},
	} {
		_, _, err := decodeOp([]byte(tc.data))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: decodeOp(%q) = %v, want an error with %q", tc.name, tc.data, err, tc.want)
		}
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	calls := []*callstore.Call{fullCall(t), {UID: 9, ID: "1.3", DeviceRef: &callstore.DeviceRef{Device: "SIP/202"}, State: callstore.StateRing, NRState: callstore.NRRinging}}
	for _, f := range []struct {
		name   string
		encode func(*snapshot, []*callstore.Call) ([]byte, error)
	}{{"binary", encodeSnapshot}, {"json-v1", encodeSnapshotJSON}} {
		t.Run(f.name, func(t *testing.T) {
			data, err := f.encode(&snapshot{Epoch: 5, Revision: 12, Term: 3, LastUID: 11, Writer: "r1"}, calls)
			if err != nil {
				t.Fatal(err)
			}
			s, got, err := decodeSnapshot(data)
			if err != nil {
				t.Fatal(err)
			}
			if s.Epoch != 5 || s.Revision != 12 || s.Term != 3 || s.LastUID != 11 || s.Writer != "r1" {
				t.Errorf("decoded header %+v, want epoch 5, revision 12, term 3, last uid 11, writer r1", *s)
			}
			if d := cmp.Diff(calls, got); d != "" {
				t.Errorf("round trip (-sent +decoded):\n%s", d)
			}
		})
	}
}

func TestDecodeSnapshotRefuses(t *testing.T) {
	for _, tc := range []struct{ name, data, want string }{
		{"not json", `not json`, "malformed"},
		{"json v2", `{"v":2,"revision":1}`, "version 2"},
		{"json revision 0", `{"v":1,"revision":0}`, "revision 0"},
		{"binary v3", "\xb1\x03", "format version 3"},
		{"binary revision 0", "\xb1\x02\x08\x01", "revision 0"},
		{"binary cut short", "\xb1\x02\x10\x05\x32\x09\x08", "malformed"},
	} {
		_, _, err := decodeSnapshot([]byte(tc.data))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: decodeSnapshot(%q) = %v, want an error with %q", tc.name, tc.data, err, tc.want)
		}
	}
}

// typicalOp is a typical operation: a call answered, its two legs.
func typicalOp() []callstore.Change {
	dev := func(d string) *callstore.DeviceRef {
		return &callstore.DeviceRef{Device: d, DeviceCompany: "default", OwnerID: 4, OwnerLogin: "alice"}
	}
	leg := func(uid int64, d string, party callstore.Party) callstore.Change {
		return callstore.Change{Type: callstore.EventUpdate, Call: &callstore.Call{
			UID: uid, ID: fmt.Sprintf("1700000000.%d", uid), CID: d + "-00000a1b", DeviceRef: dev(d),
			Name: "Reception", Number: "202", StampMillis: 1_700_000_000_000, StartMillis: 1_700_000_004_000,
			Party: party, State: callstore.StateUp, NRState: callstore.NRUp, JSState: callstore.JSConfirmed,
			JSInfo: callstore.JSInfo{Established: true}, PeerUID: uid ^ 1,
		}}
	}
	return []callstore.Change{leg(1040, "SIP/201", callstore.PartyCaller), leg(1041, "SIP/202", callstore.PartyCallee)}
}

// FuzzDecode: the decoders never panic on arbitrary bytes, and what they
// accept they write back as a message that decodes to the same.
func FuzzDecode(f *testing.F) {
	for _, enc := range codecFormats {
		data, err := enc.encode("r1", 3, typicalOp())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	snap, err := encodeSnapshot(&snapshot{Epoch: 1, Revision: 9, LastUID: 4, Writer: "r1"}, []*callstore.Call{typicalOp()[0].Call})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(snap)
	withReq, err := encodeOp("r1", 3, testRequest(), typicalOp())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(withReq)
	f.Add([]byte("\xb1\x02"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if o, changes, err := decodeOp(data); err == nil {
			again, err := encodeOp(o.Leader, o.Term, o.Request, changes)
			if err != nil {
				t.Fatalf("decoded %q, cannot encode it again: %v", data, err)
			}
			o2, changes2, err := decodeOp(again)
			if err != nil || o2.Leader != o.Leader || o2.Term != o.Term || !reflect.DeepEqual(o2.Request, o.Request) ||
				cmp.Diff(changes, changes2, cmpopts.EquateEmpty()) != "" {
				t.Fatalf("decoded %q, encoded again, decoded %v: not the same", data, err)
			}
		}
		if s, calls, err := decodeSnapshot(data); err == nil {
			again, _ := encodeSnapshot(s, calls)
			s2, calls2, err := decodeSnapshot(again)
			if err != nil || s2.Revision != s.Revision || s2.Epoch != s.Epoch || cmp.Diff(calls, calls2, cmpopts.EquateEmpty()) != "" {
				t.Fatalf("decoded snapshot %q, encoded again, decoded %v: not the same", data, err)
			}
		}
	})
}

// BenchmarkCodec measures encoding and decoding a typical log message
// (typicalOp), in the binary format replicas write and in the JSON
// format of version 1 they replace. Reported: bytes per message.
func BenchmarkCodec(b *testing.B) {
	changes := typicalOp()
	for _, f := range codecFormats {
		b.Run(f.name, func(b *testing.B) {
			var size int
			for b.Loop() {
				data, err := f.encode("r1", 3, changes)
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := decodeOp(data); err != nil {
					b.Fatal(err)
				}
				size = len(data)
			}
			b.ReportMetric(float64(size), "bytes/op-msg")
		})
	}
}

// TestDecodeCallRepeatedField: a string field that occurs twice in a
// call takes its last value, the others theirs, though all share one
// allocation.
func TestDecodeCallRepeatedField(t *testing.T) {
	var b []byte
	b = wirefield.AppendString(b, 2, "1.2")
	b = wirefield.AppendString(b, 9, "first")
	b = wirefield.AppendString(b, 10, "202")
	b = wirefield.AppendString(b, 9, "Bob")
	b = wirefield.AppendString(b, 4, "SIP/201")
	c, err := decodeCall(b)
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != "1.2" || c.Name != "Bob" || c.Number != "202" || c.Device != "SIP/201" {
		t.Errorf("decoded id %q name %q number %q device %q, want 1.2 Bob 202 SIP/201", c.ID, c.Name, c.Number, c.Device)
	}
}
