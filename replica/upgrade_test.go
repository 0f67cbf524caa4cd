package replica

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"callcontrold/callstore"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// TestUpgradeFromJSONLog: a stream whose first revisions an older build
// wrote as JSON (version 1) keeps working with replicas that write the
// binary format: they apply the JSON revisions, append binary ones after
// them, and a replica that joins later reads the log, both formats, from
// revision 1 to the same store.
func TestUpgradeFromJSONLog(t *testing.T) {
	nc := startNATSCluster(t, 3)
	// The stream, as the older build created it (it appends nothing here:
	// the store is empty when it takes the lease).
	startReplica(t, nc.url(), "old").stop(true)

	conn, err := nats.Connect(nc.url())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	js, err := jetstream.New(conn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// What the older build appended: a call ringing on SIP/202, then
	// routed, with the term it held (the lease revision 1 at most).
	leg := &callstore.Call{UID: 1, ID: "1700000000.1", DeviceRef: &callstore.DeviceRef{Device: "SIP/202", DeviceCompany: "default"},
		Number: "202", StampMillis: 1_700_000_000_000, Party: callstore.PartyCaller, State: callstore.StateRing, NRState: callstore.NRRinging}
	routed := *leg
	routed.Name = "Bob"
	for seq, ch := range []callstore.Change{{Type: callstore.EventNew, Call: leg}, {Type: callstore.EventUpdate, Call: &routed}} {
		data, err := encodeOpJSON("old", 1, []callstore.Change{ch})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctx, "callcontrold.ops", data, jetstream.WithExpectLastSequence(uint64(seq))); err != nil {
			t.Fatalf("JSON revision %d: %v", seq+1, err)
		}
	}

	a := startReplica(t, nc.url(), "a")
	b := startReplica(t, nc.url(), "b")
	leader := waitLeader(t, a, b)
	// The new leader ends the leg it cannot take over (cause 41), in a
	// revision of its own: it holds the leg only if it read the JSON ones.
	if _, err := leader.calls().Dial(as("alice"), &callcontrolv1.DialRequest{Device: "SIP/201", Number: "203"}); err != nil {
		t.Fatalf("Dial after the upgrade: %v", err)
	}
	rev := leader.node.Store().Revision()
	c := startReplica(t, nc.url(), "c") // joins: reads the log from revision 1
	for _, r := range []*testReplica{a, b, c} {
		waitRevision(t, r, rev)
		if err := r.node.Err(); err != nil {
			t.Errorf("replica %s: %v", r.id, err)
		}
	}

	st, err := js.Stream(ctx, "CALLCONTROLD")
	if err != nil {
		t.Fatal(err)
	}
	ended := false
	for seq := uint64(1); seq <= uint64(rev); seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("revision %d: %v", seq, err)
		}
		if binary := m.Data[0] == binaryMarker; binary != (seq > 2) {
			t.Errorf("revision %d starts %q: want JSON for 1 and 2, binary after", seq, m.Data[:1])
		}
		_, changes, err := decodeOp(m.Data)
		if err != nil {
			t.Fatalf("revision %d: %v", seq, err)
		}
		for _, ch := range changes {
			if seq > 2 && ch.Call.UID == 1 && ch.Call.State == callstore.StateDead && ch.Call.Cause == 41 && ch.Call.Name == "Bob" {
				ended = true
			}
		}
	}
	if !ended {
		t.Error("no binary revision ends the leg of the JSON revisions (cause 41, as routed): the new leader did not hold it")
	}
	for _, r := range []*testReplica{a, b} {
		if got, want := r.node.Store().Len(), c.node.Store().Len(); got != want {
			t.Errorf("replica %s holds %d live legs, the replica that joined later %d", r.id, got, want)
		}
	}
}
