package server

import (
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/wirefield"
)

// TestStartFramesAsProtoMarshals: the hand-encoded started, snapshot_end
// and progress frames are byte for byte what proto.Marshal makes of the
// same messages, zero, negative and largest values included, whether they
// share an allocation or not.
func TestStartFramesAsProtoMarshals(t *testing.T) {
	intervals := []time.Duration{0, time.Nanosecond, 10 * time.Second, 1500 * time.Millisecond, -1500 * time.Millisecond, math.MaxInt64}
	revs := []int64{0, 1, 127, 128, 1 << 40, math.MaxInt64, -1}
	for _, iv := range intervals {
		for _, rev := range revs {
			tok := resumeToken{Epoch: uint64(rev) * 7, Revision: rev}
			hw, oldest := rev/3, rev-1
			wantStarted := marshalFrame(t, &callcontrolv1.WatchCallsResponse{Frame: &callcontrolv1.WatchCallsResponse_Started{Started: &callcontrolv1.WatchStarted{
				ProgressInterval: durationpb.New(iv), HistoryWindow: hw, OldestRevision: oldest, Revision: rev,
			}}})
			wantEnd := marshalFrame(t, &callcontrolv1.WatchCallsResponse{Frame: &callcontrolv1.WatchCallsResponse_SnapshotEnd{SnapshotEnd: &callcontrolv1.SnapshotEnd{
				Revision: rev, ResumeToken: tok.String(),
			}}})
			wantProgress := marshalFrame(t, &callcontrolv1.WatchCallsResponse{Frame: &callcontrolv1.WatchCallsResponse_Progress{Progress: &callcontrolv1.Progress{
				Revision: rev, ResumeToken: tok.String(),
			}}})

			started, end, _ := startedAndEnd(iv, hw, oldest, rev, wirefield.ResponseSnapshotEnd, tok)
			alone, none, _ := startedAndEnd(iv, hw, oldest, rev, 0, tok)
			for _, c := range []struct {
				name string
				got  *rawFrame
				want string
			}{
				{"started", started, wantStarted},
				{"started alone", alone, wantStarted},
				{"snapshot_end", end, wantEnd},
				{"snapshot_end alone", tokenFrame(wirefield.ResponseSnapshotEnd, rev, tok), wantEnd},
				{"progress", tokenFrame(wirefield.ResponseProgress, rev, tok), wantProgress},
			} {
				if got := string(c.got.bytes()); got != c.want {
					t.Errorf("interval %v, revision %d: %s frame\n got %x\nwant %x", iv, rev, c.name, got, c.want)
				}
			}
			if none != nil {
				t.Errorf("interval %v, revision %d: a second frame without one asked for", iv, rev)
			}
		}
	}
}

func marshalFrame(t *testing.T, m proto.Message) string {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
