package pbx

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestCloseEndsWaits: an operation waiting for a phone's report (Talk on
// a ringing phone whose driver never answers) ends with ErrClosed when
// the engine closes, instead of waiting for a report that cannot come.
func TestCloseEndsWaits(t *testing.T) {
	e, _, _ := newTestEngine(t)
	ctx := context.Background()
	okCall(t)(e.Originated(ctx, "SIP/201", "202", nil)) // the phone dials itself: nothing to wait for
	uid := e.store.ByDevice("SIP/202")[0].UID
	errc := make(chan error, 1)
	go func() {
		_, _, err := e.Talk(ctx, uid) // the recorder never answers
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond) // let Talk start waiting; it returns ErrClosed either way
	e.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Talk after Close: %v, want ErrClosed", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Talk still waits after Close")
	}
}
