package main

import (
	"testing"
)

// TestNoopHub: a revision goes to its device's streams and to the streams
// of everything, in order; revisions must follow each other; a full
// stream loses the frame (its watcher sees the gap); an unsubscribed
// stream gets nothing more.
func TestNoopHub(t *testing.T) {
	var h noopHub
	a, rev, unsubA := h.subscribe("SIP/a")
	all, _, unsubAll := h.subscribe("")
	_, _, unsubB := h.subscribe("SIP/b")
	defer unsubB()
	if rev != 0 {
		t.Fatalf("first subscription at revision %d, want 0", rev)
	}
	for r, dev := range []string{"SIP/a", "SIP/b", "SIP/a"} {
		if err := h.publish(dev, int64(r+1), []byte{byte(r + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.publish("SIP/a", 5, nil); err == nil {
		t.Error("revision 5 after 3: no error")
	}
	if got := drain(a); len(got) != 2 || got[0] != 1 || got[1] != 3 {
		t.Errorf("SIP/a's stream got %v, want [1 3]", got)
	}
	if got := drain(all); len(got) != 3 || got[2] != 3 {
		t.Errorf("the stream of everything got %v, want [1 2 3]", got)
	}
	for r := range noopQueue + 1 {
		if err := h.publish("SIP/c", int64(4+r), []byte{0}); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(all.ch); got != noopQueue {
		t.Errorf("a full stream holds %d frames, want %d (the rest lost)", got, noopQueue)
	}
	unsubA()
	unsubAll()
	if err := h.publish("SIP/a", h.revision()+1, []byte{9}); err != nil {
		t.Fatal(err)
	}
	if len(a.ch) != 0 {
		t.Error("an unsubscribed stream got a frame")
	}
	if _, ok := h.byDev["SIP/a"]; ok {
		t.Error("a device without streams is still in the hub")
	}
}

func drain(s *noopSub) []byte {
	var out []byte
	for {
		select {
		case b := <-s.ch:
			out = append(out, b...)
		default:
			return out
		}
	}
}
