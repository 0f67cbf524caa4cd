package replica

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"callcontrold/callstore"
	"callcontrold/directory"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/pbx"
	"callcontrold/pbx/sip"
	"callcontrold/pbx/sip/sipkv"
	"callcontrold/pbx/sip/siptest"
)

// sipWait bounds every wait on a phone or a watch: a liveness bound, not
// a timing assertion.
const sipWait = 30 * time.Second

// startSIPReplica starts a replica whose leader runs the sip switch at
// its own loopback SIP address, configured as callcontrold configures
// one (--nats with --switch sip).
func startSIPReplica(t *testing.T, url, id string) (*testReplica, netip.AddrPort) {
	t.Helper()
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(siptest.FreePort(t)))
	dir := directory.Demo()
	var regs atomic.Pointer[sipkv.Store] // a follower's view of the registrations
	r := startReplicaWith(t, url, id, func(c *Config) {
		c.NewEngine = func(store *callstore.Store, log Log) (Engine, error) {
			ctx, cancel := context.WithTimeout(context.Background(), sipWait)
			defer cancel()
			kv, err := log.Bucket(ctx, sipkv.Suffix)
			if err != nil {
				return nil, err
			}
			sw, err := sip.NewSwitch(dir, store, sip.Config{
				Addr: addr.String(), Logger: testLog().With("node", id),
				Engine:   pbx.Options{Commit: log.Commit, Sync: log.Sync},
				Bindings: sipkv.New(kv, testLog()),
			})
			if err != nil {
				return nil, err
			}
			return sip.LeaderSwitch{Switch: sw, Log: testLog()}, nil
		}
		c.KeepBridges = false
		c.DeviceStatus = func(device string) pbx.DeviceStatus {
			if s := regs.Load(); s != nil {
				return s.Status(device)
			}
			return pbx.StatusUnknown
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), sipWait)
	defer cancel()
	kv, err := r.node.Bucket(ctx, sipkv.Suffix)
	if err != nil {
		t.Fatal(err)
	}
	regs.Store(sipkv.New(kv, testLog()))
	return r, addr
}

// sipPhones registers alice's auto-answering phone (SIP/201) and the
// reception's (SIP/202) at registrar.
func sipPhones(t *testing.T, registrar netip.AddrPort) (alice, reception *siptest.Baresip) {
	t.Helper()
	alice = siptest.StartBaresip(t, siptest.BaresipOptions{User: "201", Password: "demo-sip-201", Registrar: registrar, AutoAnswer: true})
	reception = siptest.StartBaresip(t, siptest.BaresipOptions{User: "202", Password: "demo-sip-202", Registrar: registrar})
	for _, p := range []*siptest.Baresip{alice, reception} {
		if _, err := p.WaitEvent(sipWait, "REGISTER_OK"); err != nil {
			t.Fatalf("registration at %v: %v", registrar, err)
		}
	}
	return alice, reception
}

// sipCall has alice click-to-dial the reception through r (forwarded to
// the leader if r follows), the reception answer, and waits until both
// legs are up on w. It returns the two legs' uids.
func sipCall(t *testing.T, r *testReplica, w *batchWatch, alice, reception *siptest.Baresip) (aliceLeg, receptionLeg int64) {
	t.Helper()
	resp, err := r.calls().Dial(as("alice"), &callcontrolv1.DialRequest{Device: "SIP/201", Number: "202"})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	aliceLeg = resp.GetCall().GetUid()
	if _, err := alice.WaitEvent(sipWait, "CALL_ESTABLISHED"); err != nil {
		t.Fatalf("alice's phone did not go off-hook: %v", err)
	}
	if _, err := reception.WaitEvent(sipWait, "CALL_INCOMING"); err != nil {
		t.Fatalf("the reception's phone did not ring: %v", err)
	}
	if err := reception.Accept(); err != nil {
		t.Fatal(err)
	}
	up := w.until(t, "the reception's leg up", func(c *callcontrolv1.Call) bool {
		return c.GetDevice() == "SIP/202" && c.GetState() == callcontrolv1.State_STATE_UP
	})
	return aliceLeg, up[0].GetUid()
}

// TestSIPFailover: two replicas over the sip switch; a call between two
// real phones via the leader; the leader dies. On the survivor's watch
// both legs end with cause 41 in one revision (their dialogs died with
// the leader); the survivor leads, knows the phones registered with the
// dead leader (the registrations it saved), and rings them: a call works
// again without any phone registering anew.
func TestSIPFailover(t *testing.T) {
	nc := startNATSCluster(t, 3)
	a, aSIP := startSIPReplica(t, nc.url(), "a")
	waitLeader(t, a)
	b, _ := startSIPReplica(t, nc.url(), "b")
	w := startBatchWatch(t, b)

	alice, reception := sipPhones(t, aSIP)
	waitStatus(t, b, "SIP/202", callcontrolv1.DeviceStatus_DEVICE_STATUS_UP) // the follower knows
	aliceLeg, receptionLeg := sipCall(t, b, w, alice, reception)

	a.stop(false) // the leader dies: its lease expires, b takes it
	ends := w.until(t, "the legs the dead leader held end", func(c *callcontrolv1.Call) bool {
		return c.GetState() == callcontrolv1.State_STATE_DEAD
	})
	got := map[int64]int32{}
	for _, c := range ends {
		if c.GetState() == callcontrolv1.State_STATE_DEAD {
			got[c.GetUid()] = c.GetCause()
		}
	}
	if len(got) != 2 || got[aliceLeg] != pbx.CauseTemporaryFailure || got[receptionLeg] != pbx.CauseTemporaryFailure {
		t.Fatalf("the revision that ended the dead leader's call ended %v (uid: cause), want legs %d and %d with cause %d in one revision",
			got, aliceLeg, receptionLeg, pbx.CauseTemporaryFailure)
	}
	waitLeader(t, b)
	// The phones still hold the call the dead leader connected: they
	// hang up (their BYE reaches nobody). They still register with the
	// dead leader's address; the new leader knows them all the same.
	for _, p := range []*siptest.Baresip{alice, reception} {
		if err := p.Hangup(); err != nil {
			t.Fatal(err)
		}
		if _, err := p.WaitEvent(sipWait, "CALL_CLOSED"); err != nil {
			t.Fatal(err)
		}
	}
	if st := deviceStatus(t, b, "SIP/202"); st != callcontrolv1.DeviceStatus_DEVICE_STATUS_UP {
		t.Fatalf("SIP/202 on the new leader: %v; want up (registered before the failover)", st)
	}
	aliceLeg, _ = sipCall(t, b, w, alice, reception)
	if _, err := b.calls().Hangup(as("alice"), &callcontrolv1.HangupRequest{Uid: aliceLeg}); err != nil {
		t.Fatalf("Hangup under the new leader: %v", err)
	}
	if _, err := reception.WaitEvent(sipWait, "CALL_CLOSED"); err != nil {
		t.Fatalf("the reception's phone did not hang up: %v", err)
	}
}

// batchWatch is an admin's WatchCalls stream on one replica, read in the
// background, one revision's events at a time.
type batchWatch struct {
	batches chan []*callcontrolv1.Call
	errs    chan error
}

func startBatchWatch(t *testing.T, r *testReplica) *batchWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(as("admin"))
	stream, err := r.calls().WatchCalls(ctx, &callcontrolv1.WatchCallsRequest{SkipSnapshot: true})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	w := &batchWatch{batches: make(chan []*callcontrolv1.Call, 256), errs: make(chan error, 1)}
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for {
			f, err := stream.Recv()
			if err != nil {
				w.errs <- err
				return
			}
			var calls []*callcontrolv1.Call
			for _, ev := range f.GetEvents().GetEvents() {
				calls = append(calls, ev.GetCall())
			}
			if len(calls) == 0 {
				continue
			}
			select {
			case w.batches <- calls:
			case <-ctx.Done():
				return
			}
		}
	}()
	return w
}

// until reads revisions until one holds a leg that match accepts, and
// returns the legs of that revision, the matching ones first.
func (w *batchWatch) until(t *testing.T, what string, match func(*callcontrolv1.Call) bool) []*callcontrolv1.Call {
	t.Helper()
	deadline := time.NewTimer(sipWait)
	defer deadline.Stop()
	for {
		select {
		case calls := <-w.batches:
			var hit, rest []*callcontrolv1.Call
			for _, c := range calls {
				if match(c) {
					hit = append(hit, c)
				} else {
					rest = append(rest, c)
				}
			}
			if len(hit) > 0 {
				return append(hit, rest...)
			}
		case err := <-w.errs:
			t.Fatalf("waiting for %s: the watch ended: %v", what, err)
		case <-deadline.C:
			t.Fatalf("waiting for %s: not within %v", what, sipWait)
		}
	}
}

func deviceStatus(t *testing.T, r *testReplica, device string) callcontrolv1.DeviceStatus {
	t.Helper()
	resp, err := callcontrolv1.NewDeviceServiceClient(r.conn).GetDevice(as("admin"), &callcontrolv1.GetDeviceRequest{Name: device})
	if err != nil {
		t.Fatalf("GetDevice %s: %v", device, err)
	}
	return resp.GetDevice().GetStatus()
}

// waitStatus waits until r reports device's status as want: a follower
// reads the registrations the leader saved, a moment after it saved them.
func waitStatus(t *testing.T, r *testReplica, device string, want callcontrolv1.DeviceStatus) {
	t.Helper()
	deadline := time.Now().Add(sipWait)
	for st := deviceStatus(t, r, device); st != want; st = deviceStatus(t, r, device) {
		if time.Now().After(deadline) {
			t.Fatalf("%s on %s: %v, want %v", device, r.id, st, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
