package main

import (
	"slices"
	"strings"
	"sync"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"callcontrold/callstore"
	"callcontrold/internal/rawframe"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// collect returns the commit times p reads from message b.
func collect(t *testing.T, p peerClient, b []byte) ([]int64, error) {
	t.Helper()
	var ats []int64
	err := p.events(b, func(at int64) { ats = append(ats, at) })
	return ats, err
}

// The hand-written field numbers against etcd's own generated types.
func TestEtcdWireMatchesGeneratedTypes(t *testing.T) {
	var req pb.WatchRequest
	if err := proto.Unmarshal(etcdWatchRequest(7), &req); err != nil {
		t.Fatal(err)
	}
	cr := req.GetCreateRequest()
	if string(cr.GetKey()) != "/calls/SIP/f0007/" || string(cr.GetRangeEnd()) != "/calls/SIP/f00070" {
		t.Errorf("device watch: key %q, range end %q", cr.GetKey(), cr.GetRangeEnd())
	}
	if err := proto.Unmarshal(etcdWatchRequest(-1), &req); err != nil {
		t.Fatal(err)
	}
	if cr := req.GetCreateRequest(); string(cr.GetKey()) != "/calls/" || string(cr.GetRangeEnd()) != "/calls0" {
		t.Errorf("unfiltered watch: key %q, range end %q", cr.GetKey(), cr.GetRangeEnd())
	}

	created := mustMarshal(t, &pb.WatchResponse{Header: &pb.ResponseHeader{Revision: 5}, WatchId: 1, Created: true})
	if v, err := rawframe.VarintField(created, etcdCreated); err != nil || v != 1 {
		t.Errorf("created = %d, %v; want 1", v, err)
	}
	leg := func(name string) []byte {
		return mustMarshal(t, &callcontrolv1.Call{Uid: 1, Name: name, Device: "SIP/f0001"})
	}
	resp := mustMarshal(t, &pb.WatchResponse{Header: &pb.ResponseHeader{Revision: 9}, Events: []*mvccpb.Event{
		{Kv: &mvccpb.KeyValue{Key: []byte("/calls/SIP/f0001/1"), ModRevision: 8, Value: leg("1700000000000000001")}},
		{Kv: &mvccpb.KeyValue{Key: []byte("/calls/SIP/f0001/2"), ModRevision: 9, Value: leg("not a time")}},
	}})
	ats, err := collect(t, etcdClient{}, resp)
	if err != nil || !slices.Equal(ats, []int64{1700000000000000001, 0}) {
		t.Errorf("events = %v, %v; want [1700000000000000001 0]", ats, err)
	}
	canceled := mustMarshal(t, &pb.WatchResponse{Canceled: true, CancelReason: "compacted"})
	if _, err := collect(t, etcdClient{}, canceled); err == nil || !strings.Contains(err.Error(), "compacted") {
		t.Errorf("canceled watch: err = %v, want the reason", err)
	}
}

func TestCallcontroldFrames(t *testing.T) {
	ev := func(name string) *callcontrolv1.CallEvent {
		return &callcontrolv1.CallEvent{Type: callcontrolv1.EventType(1), Call: &callcontrolv1.Call{Uid: 3, Name: name}}
	}
	frame := mustMarshal(t, &callcontrolv1.WatchCallsResponse{Frame: &callcontrolv1.WatchCallsResponse_Events{
		Events: &callcontrolv1.EventBatch{Revision: 12, ResumeToken: "tok", Events: []*callcontrolv1.CallEvent{ev("42"), ev("43")}},
	}})
	ats, err := collect(t, ccClient{}, frame)
	if err != nil || !slices.Equal(ats, []int64{42, 43}) {
		t.Errorf("events = %v, %v; want [42 43]", ats, err)
	}
	started := mustMarshal(t, &callcontrolv1.WatchCallsResponse{Frame: &callcontrolv1.WatchCallsResponse_Started{
		Started: &callcontrolv1.WatchStarted{Revision: 4},
	}})
	if kind, _, err := rawframe.Oneof(started); err != nil || kind != frameStarted {
		t.Errorf("started frame: kind %d, %v", kind, err)
	}
	if ats, err := collect(t, ccClient{}, started); err != nil || len(ats) != 0 {
		t.Errorf("started frame: events %v, %v; want none", ats, err)
	}
	if _, err := collect(t, ccClient{}, []byte{0x22, 0x05, 0x01}); err == nil {
		t.Error("truncated frame: no error")
	}
}

// recorder is a server that records what the driver puts.
type recorder struct {
	mu   sync.Mutex
	puts []callstore.Call
	uid  int64
	w    int
}

func (r *recorder) addr() string { return "" }
func (r *recorder) newUID() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.uid++
	return r.uid
}
func (r *recorder) writers() int { return r.w }
func (r *recorder) close()       {}
func (r *recorder) put(ch callstore.Change) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.puts = append(r.puts, *ch.Call)
	return nil
}

func TestDriveSchedule(t *testing.T) {
	for _, writers := range []int{1, 4} {
		r := &recorder{w: writers}
		if err := drive(r, 1e6, 36, 3); err != nil {
			t.Fatal(err)
		}
		if len(r.puts) != 36 {
			t.Fatalf("writers %d: %d puts, want 36", writers, len(r.puts))
		}
		perDevice := map[string][]callstore.State{}
		for _, c := range r.puts {
			perDevice[c.Device] = append(perDevice[c.Device], c.State)
		}
		cycle := []callstore.State{callstore.StateRing, callstore.StateUp, callstore.StateHold, callstore.StateUp, callstore.StateDead}
		for d := range 3 {
			got := perDevice[fanoutDevice(d)]
			if writers == 1 {
				want := slices.Concat(cycle, cycle, cycle[:2])
				if !slices.Equal(got, want) {
					t.Errorf("device %d: states %v, want %v", d, got, want)
				}
			} else if len(got) != 12 {
				t.Errorf("writers %d, device %d: %d changes, want 12", writers, d, len(got))
			}
		}
	}
}
