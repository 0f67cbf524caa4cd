package sip

import (
	"context"
	"strings"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"callcontrold/pbx/sip/siptest"
)

// Real phones register with the registrar: SIPp and baresip, over
// loopback, with the demo directory's credentials.

func TestSIPpRegisters(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			sw := startSwitch(t, nil, RegistrarConfig{})
			reg := siptest.SIPpOptions{
				Scenario: siptest.Register, Remote: sw.ep.Addr(), Transport: transport,
				Service: "202", AuthUser: "202", AuthPassword: "demo-sip-202", Expires: 120,
			}
			sipp := siptest.StartSIPp(t, reg)
			if err := sipp.Wait(); err != nil {
				t.Fatal(err)
			}
			ev := sw.events.next(t)
			if ev.Device != "SIP/202" || !ev.Up || len(ev.Bindings) != 1 {
				t.Fatalf("event %+v", ev)
			}
			b := ev.Bindings[0]
			if b.Contact.User != "202" || b.Contact.Port != int(sipp.Addr().Port()) || b.Transport != strings.ToUpper(transport) || b.UserAgent != "SIPp" {
				t.Errorf("binding %+v (SIPp at %v)", b, sipp.Addr())
			}
			if transport == "udp" && b.Source != sipp.Addr() {
				t.Errorf("binding source %v, SIPp at %v", b.Source, sipp.Addr())
			}

			// The same phone (same port) unregisters its contact.
			reg.Port, reg.Expires = int(sipp.Addr().Port()), 0
			if err := siptest.StartSIPp(t, reg).Wait(); err != nil {
				t.Fatal(err)
			}
			if ev := sw.events.next(t); ev.Device != "SIP/202" || ev.Up || ev.Reason != "unregistered" {
				t.Fatalf("event %+v", ev)
			}
		})
	}
}

func TestSIPpWrongPassword(t *testing.T) {
	sw := startSwitch(t, nil, RegistrarConfig{})
	sipp := siptest.StartSIPp(t, siptest.SIPpOptions{
		Scenario: siptest.Register, Remote: sw.ep.Addr(),
		Service: "202", AuthUser: "202", AuthPassword: "guess", Expires: 120,
	})
	err := sipp.Wait()
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("SIPp with a wrong password: %v, want a failed call that saw 403", err)
	}
	sw.events.none(t)
	if sw.reg.Up("SIP/202") {
		t.Fatal("registered with a wrong password")
	}
}

func TestBaresipRegisters(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			sw := startSwitch(t, nil, RegistrarConfig{})
			phone := siptest.StartBaresip(t, siptest.BaresipOptions{User: "201", Password: "demo-sip-201", Registrar: sw.ep.Addr(), Transport: transport})
			if _, err := phone.WaitEvent(15*time.Second, "REGISTER_OK"); err != nil {
				t.Fatal(err)
			}
			ev := sw.events.next(t)
			if ev.Device != "SIP/201" || !ev.Up || len(ev.Bindings) != 1 {
				t.Fatalf("event %+v", ev)
			}
			// baresip's Contact user is not the device's: routing goes
			// by the binding.
			b := ev.Bindings[0]
			if !strings.HasPrefix(b.Contact.User, "201-") || b.Transport != strings.ToUpper(transport) || !strings.Contains(b.UserAgent, "baresip") {
				t.Errorf("binding %+v", b)
			}
			if transport == "udp" && b.Source != phone.SIPAddr() {
				t.Errorf("binding source %v, baresip at %v", b.Source, phone.SIPAddr())
			}
			// Switched off properly, it unregisters.
			if err := phone.Quit(); err != nil {
				t.Fatal(err)
			}
			if ev := sw.events.next(t); ev.Device != "SIP/201" || ev.Up || ev.Reason != "unregistered" {
				t.Fatalf("event %+v", ev)
			}
		})
	}
}

func TestBaresipExpires(t *testing.T) {
	// Short registrations on the real clock: the phone asks for 2s.
	sw := startSwitch(t, nil, RegistrarConfig{MinExpires: time.Second, SweepInterval: 50 * time.Millisecond})
	phone := siptest.StartBaresip(t, siptest.BaresipOptions{User: "303", Password: "demo-sip-303", Registrar: sw.ep.Addr(), RegisterInterval: 2 * time.Second})
	if _, err := phone.WaitEvent(15*time.Second, "REGISTER_OK"); err != nil {
		t.Fatal(err)
	}
	if ev := sw.events.next(t); ev.Device != "SIP/303" || !ev.Up {
		t.Fatalf("event %+v", ev)
	}
	// Losing power, it cannot unregister: the binding expires.
	phone.Kill()
	if ev := sw.events.next(t); ev.Device != "SIP/303" || ev.Up || ev.Reason != "expired" {
		t.Fatalf("event %+v", ev)
	}
}

func TestBaresipWrongPassword(t *testing.T) {
	sw := startSwitch(t, nil, RegistrarConfig{})
	phone := siptest.StartBaresip(t, siptest.BaresipOptions{User: "201", Password: "guess", Registrar: sw.ep.Addr()})
	ev, err := phone.WaitEvent(15*time.Second, "REGISTER_OK", "REGISTER_FAIL")
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != "REGISTER_FAIL" || !strings.Contains(ev.Param, "403") {
		t.Fatalf("event %+v, want REGISTER_FAIL with 403", ev)
	}
	sw.events.none(t)
}

// TestSIPpCallAuthenticated runs the UAC scenario against a minimal
// answering handler that authenticates the INVITE first, as the B2BUA
// will: SIPp answers the 407, is answered, talks and hangs up.
func TestSIPpCallAuthenticated(t *testing.T) {
	callers := make(chan string, 2)
	var answer func(req *sipmsg.Request) *sipmsg.Response
	sw := startSwitch(t, nil, RegistrarConfig{}, func(ep *Endpoint, reg *Registrar) {
		answer = func(req *sipmsg.Request) *sipmsg.Response {
			res := sipmsg.NewResponseFromRequest(req, sipmsg.StatusOK, "OK", []byte("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=sendrecv\r\n"))
			res.AppendHeader(sipmsg.NewHeader("Content-Type", "application/sdp"))
			res.AppendHeader(sipmsg.NewHeader("Contact", "<sip:"+ep.Addr().String()+">"))
			return res
		}
		ep.Handle(sipmsg.INVITE, func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
			if dev := reg.Authenticate(req, tx); dev != nil {
				callers <- dev.Name
				tx.Respond(answer(req))
			}
		})
		ep.Handle(sipmsg.ACK, func(*sipmsg.Request, sipmsg.ServerTransaction) {})
		ep.Handle(sipmsg.BYE, func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
			tx.Respond(sipmsg.NewResponseFromRequest(req, sipmsg.StatusOK, "OK", nil))
		})
	})
	uac := siptest.StartSIPp(t, siptest.SIPpOptions{
		Scenario: siptest.UACAuth, Remote: sw.ep.Addr(), Service: "303",
		AuthUser: "302", AuthPassword: "demo-sip-302", Pause: 100 * time.Millisecond,
	})
	if err := uac.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := <-callers; got != "SIP/302" {
		t.Fatalf("caller authenticated as %s", got)
	}
}

// TestSIPpDeviceAnswersThroughBinding is the pattern the B2BUA tests
// use: SIPp registers a device on a port, exits, and a UAS scenario on
// that port is then the device, reached through its binding.
func TestSIPpDeviceAnswersThroughBinding(t *testing.T) {
	for _, c := range []struct {
		transport string
		scenario  siptest.Scenario
		want      int
	}{
		{"udp", siptest.UASBusy, sipmsg.StatusBusyHere},
		{"tcp", siptest.UASReject, 603},
	} {
		t.Run(c.transport, func(t *testing.T) {
			sw := startSwitch(t, nil, RegistrarConfig{})
			port := siptest.FreePort(t)
			err := siptest.StartSIPp(t, siptest.SIPpOptions{
				Scenario: siptest.Register, Remote: sw.ep.Addr(), Port: port, Transport: c.transport,
				Service: "203", AuthUser: "203", AuthPassword: "demo-sip-203", Expires: 600,
			}).Wait()
			if err != nil {
				t.Fatal(err)
			}
			uas := siptest.StartSIPp(t, siptest.SIPpOptions{Scenario: c.scenario, Port: port, Transport: c.transport})
			bs := sw.reg.Bindings("SIP/203")
			if len(bs) != 1 {
				t.Fatalf("bindings %v", bs)
			}
			var res *sipmsg.Response
			// SIPp may still be starting: retry the INVITE while the
			// connection is refused (TCP). An attempt is never given up
			// before the deadline: over UDP its retransmissions reach SIPp
			// once it listens, and an attempt abandoned while SIPp answers
			// it would leave the next INVITE to a scenario already done
			// with its one call.
			for deadline := time.Now().Add(15 * time.Second); res == nil; {
				req := sipmsg.NewRequest(sipmsg.INVITE, bs[0].Contact)
				req.AppendHeader(sipmsg.NewHeader("Contact", "<sip:"+sw.ep.Addr().String()+">"))
				sw.ep.RouteTo(req, bs[0])
				ctx, cancel := context.WithDeadline(t.Context(), deadline)
				res, err = sw.ep.Client().Do(ctx, req)
				cancel()
				if err != nil && time.Now().After(deadline) {
					t.Fatal(err)
				}
				if err != nil {
					time.Sleep(100 * time.Millisecond)
				}
			}
			if res.StatusCode != c.want {
				t.Fatalf("device answered %d, want %d", res.StatusCode, c.want)
			}
			if err := uas.Wait(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
