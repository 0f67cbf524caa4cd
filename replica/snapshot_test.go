package replica

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"callcontrold/callstore"
)

// BenchmarkSnapshot measures what one snapshot of a store with 100,000
// live legs costs: "encode" (the leader, besides writing the bytes to the
// object store) and "restore" (a replica that loads it: decode and
// callstore.Restore), in the binary format replicas write and, as the
// baseline, in the JSON format of version 1. Reported: bytes per live leg.
func BenchmarkSnapshot(b *testing.B) {
	const legs = 100_000
	src := callstore.New(callstore.Options{})
	devices := make([]*callstore.DeviceRef, 1000)
	for i := range devices {
		devices[i] = &callstore.DeviceRef{Device: fmt.Sprintf("SIP/%d", 1000+i), DeviceCompany: "default", OwnerLogin: "alice"}
	}
	for i := range legs {
		c := &callstore.Call{UID: src.NewUID(), ID: fmt.Sprintf("1.%d", i), DeviceRef: devices[i%len(devices)],
			Number: "202", Name: "Reception", StampMillis: 1, StartMillis: 1,
			State: callstore.StateUp, NRState: callstore.NRUp, Party: callstore.PartyCaller}
		if _, err := src.Commit(callstore.Change{Type: callstore.EventNew, Call: c}); err != nil {
			b.Fatal(err)
		}
	}
	for _, f := range []struct {
		name   string
		encode func(*snapshot, []*callstore.Call) ([]byte, error)
	}{{"binary", encodeSnapshot}, {"json-v1", encodeSnapshotJSON}} {
		calls, lastUID, rev := src.Snapshot()
		data, err := f.encode(&snapshot{Epoch: 1, Revision: rev, LastUID: lastUID}, calls)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("encode/"+f.name, func(b *testing.B) {
			for b.Loop() {
				calls, lastUID, rev := src.Snapshot()
				if _, err := f.encode(&snapshot{Epoch: 1, Revision: rev, LastUID: lastUID}, calls); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(data))/legs, "bytes/leg")
		})
		b.Run("restore/"+f.name, func(b *testing.B) {
			for b.Loop() {
				s, calls, err := decodeSnapshot(data)
				if err != nil {
					b.Fatal(err)
				}
				dst := callstore.New(callstore.Options{})
				if err := dst.Restore(s.Revision, calls, s.LastUID); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestSnapshotDue(t *testing.T) {
	hour := int64(3600e9)
	cases := []struct {
		name          string
		rev, snap     int64
		maxMsgs       int64
		maxAge        int64 // nanoseconds
		first, last   uint64
		msgs          uint64
		want          bool
		noStreamKnown bool
	}{
		{name: "nothing since the snapshot", rev: 50, snap: 50, first: 1, last: 50, msgs: 50},
		{name: "unlimited, every revisions reached", rev: 150, snap: 50, first: 1, last: 150, msgs: 150, want: true},
		{name: "unlimited, every revisions not reached", rev: 149, snap: 50, first: 1, last: 149, msgs: 149},
		{name: "stream not known yet, every not reached", rev: 149, snap: 50, noStreamKnown: true},
		{name: "revision limit: half of it reached", rev: 100, snap: 49, maxMsgs: 100, first: 1, last: 100, msgs: 100, want: true},
		{name: "revision limit: half of it not reached", rev: 100, snap: 51, maxMsgs: 100, first: 1, last: 100, msgs: 100},
		{name: "age limit: snapshot in the older half", rev: 100, snap: 92, maxAge: hour, first: 90, last: 100, msgs: 11, want: true},
		{name: "age limit: snapshot in the newer half", rev: 100, snap: 95, maxAge: hour, first: 90, last: 100, msgs: 11},
		{name: "age limit: everything expired", rev: 100, snap: 99, maxAge: hour, first: 101, last: 100, msgs: 0, want: true},
	}
	for _, tc := range cases {
		n := &Node{cfg: Config{SnapshotEvery: 100}, store: callstore.New(callstore.Options{})}
		if err := n.store.Restore(tc.rev, nil, 0); err != nil {
			t.Fatal(err)
		}
		n.snapRev.Store(tc.snap)
		var info *jetstream.StreamInfo
		if !tc.noStreamKnown {
			info = &jetstream.StreamInfo{
				Config: jetstream.StreamConfig{MaxMsgs: tc.maxMsgs, MaxAge: time.Duration(tc.maxAge)},
				State:  jetstream.StreamState{FirstSeq: tc.first, LastSeq: tc.last, Msgs: tc.msgs},
			}
		}
		if got := n.snapshotDue(info); got != tc.want {
			t.Errorf("%s: snapshotDue = %v, want %v", tc.name, got, tc.want)
		}
	}
}
