package benchserver

import (
	"testing"

	"callcontrold/callstore"
)

func TestLegCycle(t *testing.T) {
	var uid int64
	newUID := func() int64 { uid++; return uid }
	var l Leg
	want := []struct {
		typ   callstore.EventType
		state callstore.State
		uid   int64
	}{
		{callstore.EventNew, callstore.StateRing, 1},
		{callstore.EventUpdate, callstore.StateUp, 1},
		{callstore.EventUpdate, callstore.StateHold, 1},
		{callstore.EventUpdate, callstore.StateUp, 1},
		{callstore.EventUpdate, callstore.StateDead, 1},
		{callstore.EventNew, callstore.StateRing, 2},
		{callstore.EventUpdate, callstore.StateUp, 2},
	}
	var started int64
	for i, w := range want {
		ch := l.Next(newUID, "SIP/f0001")
		c := ch.Call
		if ch.Type != w.typ || c.State != w.state || c.UID != w.uid || c.Device != "SIP/f0001" {
			t.Fatalf("change %d: %v, uid %d, %v on %s; want %v, uid %d, %v", i, ch.Type, c.UID, c.State, c.Device, w.typ, w.uid, w.state)
		}
		switch {
		case i == 1:
			started = c.StartMillis
			if started == 0 {
				t.Error("answered leg without a start time")
			}
		case i > 1 && i < 5 && c.StartMillis != started:
			t.Errorf("change %d: start time %d, want %d (the first answer's)", i, c.StartMillis, started)
		}
		if i == 4 && c.Cause != 16 {
			t.Errorf("dead leg: cause %d, want 16 (normal clearing)", c.Cause)
		}
	}
}

// TestLegKeepsCallersFill: what the caller writes into a change's Call
// (the commit time in Name) is carried on to the leg's next change, in a
// copy.
func TestLegKeepsCallersFill(t *testing.T) {
	var l Leg
	newUID := func() int64 { return 1 }
	c := l.Next(newUID, "SIP/1").Call
	c.Name = "stamp"
	if next := l.Next(newUID, "SIP/1").Call; next.Name != "stamp" || next == c {
		t.Errorf("next change: name %q (want the caller's), same Call %v (want a copy)", next.Name, next == c)
	}
}
