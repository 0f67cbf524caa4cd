package benchkit

import "testing"

// TestStealPercent: steal is the eighth field of /proc/stat's cpu line,
// taken as a share of the first eight fields' growth.
func TestStealPercent(t *testing.T) {
	a := parseCPULine("cpu  100 0 50 800 10 0 0 40 0 0")
	b := parseCPULine("cpu  300 0 100 1450 10 0 0 140 20 0")
	if !a.OK || !b.OK || a.Total != 1000 || a.Steal != 40 {
		t.Fatalf("parsed %+v and %+v", a, b)
	}
	// 1,000 ticks more (the guest field is inside user), 100 of them stolen.
	if got := a.StealPercent(b); got != 10 {
		t.Errorf("StealPercent = %v, want 10", got)
	}
	if got := b.StealPercent(a); got != -1 {
		t.Errorf("backwards: %v, want -1", got)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8", "cpu 1 2 3", "cpu 1 2 3 4 5 6 7 x"} {
		if c := parseCPULine(bad); c.OK {
			t.Errorf("%q parsed as %+v", bad, c)
		}
	}
	if got := (CPUTimes{}).StealPercent(b); got != -1 {
		t.Errorf("unknown start: %v, want -1", got)
	}
	if StealText(-1) != "steal ?" || StealText(4.44) != "steal 4.4 %" {
		t.Errorf("StealText: %q, %q", StealText(-1), StealText(4.44))
	}
}

// TestCPUWindow: windows add up to the steal of all of them; one unknown
// window makes the sum unknown.
func TestCPUWindow(t *testing.T) {
	a := CPUTimes{Total: 1000, Steal: 10, OK: true}.Window(CPUTimes{Total: 1100, Steal: 20, OK: true})
	b := CPUTimes{Total: 2000, Steal: 50, OK: true}.Window(CPUTimes{Total: 2300, Steal: 60, OK: true})
	if got := a.Add(b).StealPercent(); got != 5 {
		t.Errorf("10 of 100 and 10 of 300 ticks stolen: %v %%, want 5", got)
	}
	if got := a.Add(CPUTimes{}.Window(CPUTimes{Total: 10, OK: true})).StealPercent(); got != -1 {
		t.Errorf("with an unread window: %v, want -1", got)
	}
	if got := (CPUWindow{}).StealPercent(); got != -1 {
		t.Errorf("no window: %v, want -1", got)
	}
}
