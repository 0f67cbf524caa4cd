package sim

import (
	"context"
	"testing"

	"callcontrold/callstore"
	"callcontrold/directory"
	"callcontrold/pbx"
)

// TestEndForeignLegs: a fresh engine over a store that another engine
// filled (a replica taking over from a dead leader) ends those legs in
// one revision with cause 41, and then agrees with the store.
func TestEndForeignLegs(t *testing.T) {
	dir := directory.Demo()
	store := callstore.New(callstore.Options{})
	defer store.Close()
	old := New(dir, store, Options{})
	if _, err := old.Dial(context.Background(), "SIP/201", "301", pbx.DialOptions{}); err != nil {
		t.Fatal(err)
	}
	old.Close() // the dead leader
	before, rev := store.Len(), store.Revision()
	if before < 2 {
		t.Fatalf("store has %d live legs after a dial, want >= 2", before)
	}

	sw := New(dir, store, Options{})
	defer sw.Close()
	n, err := sw.EndForeignLegs(pbx.CauseTemporaryFailure)
	if err != nil || n != before {
		t.Fatalf("EndForeignLegs = %d, %v; want %d, nil", n, err, before)
	}
	if got := store.Revision(); got != rev+1 {
		t.Errorf("revision %d after EndForeignLegs, want %d (one revision)", got, rev+1)
	}
	if store.Len() != 0 {
		t.Errorf("%d legs still live", store.Len())
	}
	if err := sw.Verify(); err != nil {
		t.Errorf("Verify: %v", err)
	}
	if n, err := sw.EndForeignLegs(pbx.CauseTemporaryFailure); n != 0 || err != nil {
		t.Errorf("second EndForeignLegs = %d, %v; want 0, nil", n, err)
	}
	// The new engine works on: uids keep growing.
	c, err := sw.Dial(context.Background(), "SIP/201", "202", pbx.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c.UID <= int64(before) {
		t.Errorf("new leg uid %d reuses an old one", c.UID)
	}
}

// TestAdoptBridges: a fresh engine adopts a call between two phones that
// another engine set up, ends the rest, agrees with the store, and
// controls the adopted call.
func TestAdoptBridges(t *testing.T) {
	ctx := context.Background()
	dir := directory.Demo()
	store := callstore.New(callstore.Options{})
	defer store.Close()
	old := New(dir, store, Options{})
	caller, err := old.Dial(ctx, "SIP/201", "202", pbx.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	callee := store.ByDevice("SIP/202")
	if len(callee) != 1 {
		t.Fatalf("SIP/202 has %d legs, want 1", len(callee))
	}
	if _, _, err := old.Talk(ctx, callee[0].UID); err != nil { // answered: two phones talking
		t.Fatal(err)
	}
	if _, err := old.Dial(ctx, "SIP/201_2", "203", pbx.DialOptions{}); err != nil { // still ringing
		t.Fatal(err)
	}
	old.Close()

	sw := New(dir, store, Options{})
	defer sw.Close()
	n, err := sw.AdoptBridges()
	if err != nil || n != 2 {
		t.Fatalf("AdoptBridges = %d, %v; want 2, nil", n, err)
	}
	ended, err := sw.EndForeignLegs(pbx.CauseTemporaryFailure)
	if err != nil || ended != 2 {
		t.Fatalf("EndForeignLegs = %d, %v; want 2 (the ringing call), nil", ended, err)
	}
	if err := sw.Verify(); err != nil {
		t.Fatalf("Verify after adoption: %v", err)
	}
	c, changed, err := sw.Hold(ctx, caller.UID)
	if err != nil || !changed || c.State != callstore.StateHold {
		t.Fatalf("Hold on the adopted call = %v, %v, %v; want held", c, changed, err)
	}
	if err := sw.Verify(); err != nil {
		t.Fatalf("Verify after hold: %v", err)
	}
	if _, err := sw.Hangup(ctx, caller.UID); err != nil {
		t.Fatal(err)
	}
	if store.Len() != 0 {
		t.Errorf("%d legs live after hanging up the adopted call: its peer should end with it", store.Len())
	}
	if err := sw.Verify(); err != nil {
		t.Errorf("Verify after hangup: %v", err)
	}
}
