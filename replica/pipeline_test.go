package replica

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"callcontrold/callstore"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/pbx"
)

// newLeg and endLeg are a test leg's two revisions.
func newLeg(uid int64) callstore.Change {
	return callstore.Change{Type: callstore.EventNew, Call: &callstore.Call{UID: uid, ID: fmt.Sprint(uid), DeviceRef: &callstore.DeviceRef{Device: "SIP/202"},
		State: callstore.StateRing, NRState: callstore.NRRinging}}
}

func endLeg(ch callstore.Change) callstore.Change {
	d := *ch.Call
	d.State, d.NRState = callstore.StateDead, callstore.NRDead
	return callstore.Change{Type: callstore.EventUpdate, Call: &d}
}

// TestPipelinedAppends: appends published back to back, none waiting for
// the one before, get consecutive revisions; an append that builds on one
// still in flight (the end of a leg whose NEW is not acknowledged yet)
// passes the check; more than maxInFlight of them wait for room instead
// of failing; once synced, the store holds the very values committed,
// and the log holds them in order.
func TestPipelinedAppends(t *testing.T) {
	nc := startNATSCluster(t, 3)
	r := startReplica(t, nc.url(), "r")
	waitLeader(t, r)
	p := r.node.pipeline()
	p.mu.Lock()
	p.maxInFlight = 8 // so that appends wait for room
	p.mu.Unlock()
	base := r.node.Store().Revision()
	var changes []callstore.Change
	const legs = 20
	for i := range legs {
		ch := newLeg(5000 + int64(i))
		changes = append(changes, ch)
		if i%2 == 1 {
			changes = append(changes, endLeg(ch))
		}
	}
	for i, ch := range changes {
		rev, err := p.append(nil, ch)
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		if want := base + int64(i) + 1; rev != want {
			t.Fatalf("append %d got revision %d, want %d", i, rev, want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.sync(ctx); err != nil {
		t.Fatal(err)
	}
	st := r.node.Store()
	if got, want := st.Revision(), base+int64(len(changes)); got != want {
		t.Fatalf("store at revision %d, want %d", got, want)
	}
	for i := 0; i < legs; i += 2 { // the legs left live
		if got, ok := st.Get(5000 + int64(i)); !ok || got != changes[i+i/2].Call {
			t.Errorf("leg %d in the store: %p, want the committed value %p", 5000+i, got, changes[i+i/2].Call)
		}
	}
	log := readLog(t, nc.url())
	for i, ch := range changes {
		e := log[base+int64(i)]
		if want := fmt.Sprintf("%d:%s", ch.Call.UID, ch.Call.State); len(e.changes) != 1 || e.changes[0] != want {
			t.Errorf("revision %d holds %v, want [%s]", e.rev, e.changes, want)
		}
	}
}

// TestConcurrentControlRPCs: control RPCs sent at once through two
// replicas (one forwards) all return success as applied, and each one's
// call is in the log.
func TestConcurrentControlRPCs(t *testing.T) {
	nc := startNATSCluster(t, 3)
	a := startReplica(t, nc.url(), "a")
	waitLeader(t, a)
	b := startReplica(t, nc.url(), "b")
	devices := []string{"SIP/201", "SIP/201_2", "SIP/202", "SIP/webrtc11", "SIP/302"}
	logins := map[string]string{"SIP/201": "alice", "SIP/201_2": "alice", "SIP/202": "admin", "SIP/webrtc11": "bob", "SIP/302": "acme-admin"}
	var wg sync.WaitGroup
	uids := make(chan int64, 2*len(devices))
	errs := make(chan error, 2*len(devices))
	for i, dev := range devices {
		for j, r := range []*testReplica{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := r.calls().Dial(as(logins[dev]), &callcontrolv1.DialRequest{Device: dev, Number: fmt.Sprint(5550100 + 2*i + j)})
				if err != nil {
					errs <- fmt.Errorf("dial from %s via %s: %w", dev, r.id, err)
					return
				}
				uids <- resp.GetCall().GetUid()
			}()
		}
	}
	wg.Wait()
	close(errs)
	close(uids)
	for err := range errs {
		t.Error(err)
	}
	inLog := map[int64]bool{}
	for _, e := range readLog(t, nc.url()) {
		for _, c := range e.changes {
			var uid int64
			if _, err := fmt.Sscanf(c, "%d:", &uid); err == nil {
				inLog[uid] = true
			}
		}
	}
	for uid := range uids {
		if !inLog[uid] {
			t.Errorf("Dial returned call %d, which the log does not hold", uid)
		}
	}
}

// TestRefusedAppendEndsTerm: when the stream refuses an append of the
// pipeline (here: larger than the stream now takes), the operations
// waiting on it and on every later append get UNAVAILABLE (the later
// ones expect the refused one's revision: the stream refuses them too),
// the term ends, nothing is appended after that, and the replica goes on
// applying the log.
func TestRefusedAppendEndsTerm(t *testing.T) {
	nc := startNATSCluster(t, 3)
	r := startReplica(t, nc.url(), "r")
	waitLeader(t, r)
	p := r.node.pipeline()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 3 {
		if _, err := p.append(nil, newLeg(6000+int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.sync(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := r.node.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.Config
	cfg.MaxMsgSize = 4096
	if _, err := r.node.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	big := newLeg(6100)
	big.Call.Name = strings.Repeat("x", 8192)
	if _, err := p.append(nil, big); err != nil {
		t.Fatalf("append of the large change: %v, want it in flight", err)
	}
	for i := range 4 {
		if _, err := p.append(nil, newLeg(6200+int64(i))); err != nil && !errors.Is(err, pbx.ErrUnavailable) {
			t.Fatalf("append after the large one: %v, want success (in flight) or UNAVAILABLE", err)
		}
	}
	if err := p.sync(ctx); !errors.Is(err, pbx.ErrUnavailable) {
		t.Fatalf("sync after the refused append: %v, want UNAVAILABLE", err)
	}
	if _, err := p.append(nil, newLeg(6300)); !errors.Is(err, pbx.ErrUnavailable) {
		t.Fatalf("append once the pipeline failed: %v, want UNAVAILABLE", err)
	}
	if r.node.pipeline() == p {
		t.Error("the term goes on after a refused append")
	}
	log := readLog(t, nc.url())
	checkLog(t, log)
	for _, e := range log {
		for _, c := range e.changes {
			var uid int64
			if _, err := fmt.Sscanf(c, "%d:", &uid); err == nil && uid >= 6100 && uid < 6400 {
				t.Errorf("revision %d holds %s, appended at or after the refused append", e.rev, c)
			}
		}
	}
	waitRevision(t, r, log[len(log)-1].rev) // the replica goes on applying the log
}
