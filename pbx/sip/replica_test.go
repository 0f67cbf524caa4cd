package sip

import (
	"testing"
	"time"

	"callcontrold/directory"
)

// TestRegistrarSavesAndRestores: every REGISTER that changes a device's
// bindings is saved (OnBindings), in order, an unregister as none left;
// a fresh registrar restores the saved bindings and the device is up at
// once, as if it had registered; expired ones and unknown devices are
// not restored.
func TestRegistrarSavesAndRestores(t *testing.T) {
	saves := make(chan DeviceEvent, 16)
	sw := startSwitch(t, nil, RegistrarConfig{OnBindings: func(device string, bs []Binding) {
		saves <- DeviceEvent{Device: device, Bindings: bs}
	}})
	next := func() DeviceEvent {
		t.Helper()
		select {
		case s := <-saves:
			return s
		case <-time.After(10 * time.Second): // a liveness bound
			t.Fatal("no save")
			return DeviceEvent{}
		}
	}
	p := newPhone(t, sw.ep.Addr(), "201")
	contact := "<sip:201@127.0.0.1:40000>"
	for i, expires := range []int{600, 600, 0, 300} { // register, refresh, unregister, register
		if res := p.register("UDP", contact, expires, "demo-sip-201"); res.StatusCode != 200 {
			t.Fatalf("REGISTER %d: %d", i, res.StatusCode)
		}
		s := next()
		if want := min(expires, 1); s.Device != "SIP/201" || len(s.Bindings) != want {
			t.Fatalf("save %d: %+v, want SIP/201 with %d bindings", i, s, want)
		}
	}
	saved := sw.reg.Bindings("SIP/201")

	restored := make(chan DeviceEvent, 4)
	reg := NewRegistrar(directory.Demo(), RegistrarConfig{Logger: quietLog(t), OnChange: func(e DeviceEvent) { restored <- e }})
	defer reg.Close()
	expired := saved[0]
	expired.Expires = time.Now().Add(-time.Second)
	if n := reg.Restore("SIP/202", []Binding{expired}); n != 0 || reg.Up("SIP/202") {
		t.Fatalf("an expired binding restored (%d)", n)
	}
	if n := reg.Restore("SIP/999", saved); n != 0 {
		t.Fatalf("a device the directory lacks restored (%d)", n)
	}
	if n := reg.Restore("SIP/201", saved); n != 1 || !reg.Up("SIP/201") {
		t.Fatalf("Restore = %d, up %v; want 1, up", n, reg.Up("SIP/201"))
	}
	if got := reg.Bindings("SIP/201"); len(got) != 1 || got[0].Source != saved[0].Source || got[0].Contact.String() != saved[0].Contact.String() {
		t.Fatalf("restored %+v, saved %+v", got, saved)
	}
	select {
	case ev := <-restored:
		if ev.Device != "SIP/201" || !ev.Up || ev.Reason != "restored" {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no up event for the restored device")
	}
}
