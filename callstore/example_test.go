package callstore_test

import (
	"errors"
	"fmt"

	"callcontrold/callstore"
)

// A consumer waits on Ready, then drains; progress is its resume token.
func Example() {
	s := callstore.New(callstore.Options{})
	w, snap, start, err := s.Watch(callstore.WatchRequest{
		Filter:   callstore.Filter{Devices: []string{"SIP/201"}},
		Snapshot: true,
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("snapshot:", len(snap), "legs at revision", start)

	leg := &callstore.Call{UID: s.NewUID(), DeviceRef: &callstore.DeviceRef{Device: "SIP/201"}, State: callstore.StateRing}
	s.Commit(callstore.Change{Type: callstore.EventNew, Call: leg})
	up := *leg
	up.DeviceRef = &callstore.DeviceRef{Device: "SIP/202"} // transferred away: leaves the view
	s.Commit(callstore.Change{Type: callstore.EventTransfer, Call: &up, Xfer: []callstore.XferLeg{{UID: up.UID}}})

	<-w.Ready()
	batches, progress, err := w.Drain(nil)
	for _, b := range batches {
		for _, e := range b.Events {
			fmt.Println("revision", b.Revision, "uid", e.Call.UID, e.Call.State, e.View)
		}
	}
	fmt.Println("resume after", progress)

	w.Close()
	_, _, err = w.Drain(nil)
	fmt.Println(errors.Is(err, callstore.ErrClosed))
	// Output:
	// snapshot: 0 legs at revision 0
	// revision 1 uid 1 ring entered
	// revision 2 uid 1 ring left
	// resume after 2
	// true
}
