package sip

import (
	"fmt"
	"net"
	"testing"

	"callcontrold/callstore"
	"callcontrold/directory"
	"callcontrold/pbx"
	"callcontrold/pbx/pbxtest"
)

// TestAckAfterHangup: the API hangs up a call from the trunk after the
// phone answered but before the trunk's ACK of the switch's 200 came;
// that ACK still confirms the dialog, so the switch's BYE goes out at
// once instead of after the INVITE transaction's timeout.
func TestAckAfterHangup(t *testing.T) {
	var sw *Switch
	var by map[string]*softphone
	h := pbxtest.New(t, func(t *testing.T, dir *directory.Directory, store *callstore.Store, clock pbx.Clock) pbxtest.Env {
		var err error
		sw, err = NewSwitch(dir, store, Config{Addr: "127.0.0.1:0", Engine: pbx.Options{Clock: clock}, Logger: quietLog(t),
			Trunk: &TrunkConfig{URI: "sip:" + trunkHost}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sw.Close() })
		by = registerAll(t, sw, dir)
		return pbxtest.Env{Engine: sw.Engine, Driver: &phones{t: t, sw: sw, store: store, by: by}}
	})
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(trunkHost)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	trunk := &rawPhone{t: t, conn: conn}
	to := net.UDPAddrFromAddrPort(sw.Endpoint.Addr())
	sdp := "v=0\r\no=trunk 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
	send := func(format string, args ...any) {
		if _, err := conn.WriteToUDP(fmt.Appendf(nil, format, args...), to); err != nil {
			t.Fatal(err)
		}
	}
	send("INVITE sip:202@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKrawinv\r\nFrom: <sip:+442079460001@%s>;tag=rawtrunk\r\nTo: <sip:202@%s>\r\nCall-ID: raw-trunk-call\r\nCSeq: 1 INVITE\r\nContact: <sip:trunk@%s>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		to, conn.LocalAddr(), trunkHost, to, conn.LocalAddr(), len(sdp), sdp)
	h.Expect("NEW SIP/202 ring/ringing callee")
	b := h.Answer("SIP/202")
	h.Expect("UPDATE SIP/202 up/up callee")
	ok := trunk.read("SIP/2.0 200")
	h.Hangup(b.UID) // before the trunk acknowledged the answer
	h.Expect("UPDATE SIP/202 dead/dead callee cause=16")
	send("ACK sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKrawack\r\nFrom: <sip:+442079460001@%s>;tag=rawtrunk\r\nTo: %s\r\nCall-ID: raw-trunk-call\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		to, conn.LocalAddr(), trunkHost, ok.header("To"))
	bye := trunk.read("BYE") // within the read's liveness bound, far below the 32 s of a lost ACK
	trunk.reply(bye, "200 OK", "")
	h.Check()
}
