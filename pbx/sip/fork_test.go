package sip

import (
	"crypto/md5"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"callcontrold/pbx"
)

// ringingCall waits until a phone rings and returns the call's Call-ID.
func (p *softphone) ringingCall() string {
	p.t.Helper()
	var id string
	until(p.t, p.user+" rings", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for k := range p.ringing {
			id = k
		}
		return id != ""
	})
	return id
}

// TestForkEveryBinding: a device registered from two contacts rings on
// both; the first answer wins and the other phone gets CANCEL; hanging
// up reaches the phone that answered.
func TestForkEveryBinding(t *testing.T) {
	h, sw, _, _ := trunkCallEnv(t)
	second := newSoftphone(t, sw.Endpoint.Addr(), "203") // a second contact of SIP/203
	second.register()
	first := h.D.(*phones).by["SIP/203"]

	a := h.Dial("SIP/201", "203")
	h.Revs(2)
	id1, id2 := first.ringingCall(), second.ringingCall()
	second.answer(id2)
	h.Expect("UPDATE SIP/203 up/up callee | UPDATE SIP/201 up/up caller")
	first.cancelled(id1)
	h.Hangup(a.UID)
	h.Expect("UPDATE SIP/201 dead/dead caller cause=16 | UPDATE SIP/203 dead/dead callee cause=16")
	until(t, "the answering phone got BYE", func() bool { second.mu.Lock(); defer second.mu.Unlock(); return second.servers[id2] == nil })

	// Every binding refuses: the leg ends with the best refusal's cause.
	for _, c := range []struct {
		first, second int
		cause         int32
	}{
		{486, 603, pbx.CauseRejected}, // a 6xx beats a 4xx
		{480, 486, pbx.CauseUserBusy}, // busy says more than unavailable
		{404, 480, pbx.CauseUnallocated},
	} {
		h.Dial("SIP/201", "203")
		h.Revs(2)
		first.refuse(first.ringingCall(), c.first)
		second.refuse(second.ringingCall(), c.second)
		h.Expect(fmt.Sprintf("UPDATE SIP/203 dead/dead callee cause=%d | UPDATE SIP/201 dead/dead caller cause=%d", c.cause, c.cause))
	}
	h.Check()
}

// TestForkLateAnswer: a binding that answers after another one won
// (its 200 crosses the CANCEL) is acknowledged and hung up at once.
func TestForkLateAnswer(t *testing.T) {
	h, sw, _, _ := trunkCallEnv(t)
	late := newRawPhone(t, "203", sw.Endpoint.Addr())
	first := h.D.(*phones).by["SIP/203"]

	h.Dial("SIP/201", "203")
	h.Revs(2)
	invite := late.read("INVITE")
	late.reply(invite, "180 Ringing", "")
	first.answer(first.ringingCall())
	h.Expect("UPDATE SIP/203 up/up callee | UPDATE SIP/201 up/up caller")
	cancel := late.read("CANCEL")
	late.reply(cancel, "200 OK", "") // but answer the INVITE anyway, as if the CANCEL came too late
	late.reply(invite, "200 OK", "v=0\r\no=late 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n")
	late.read("ACK")
	bye := late.read("BYE")
	late.reply(bye, "200 OK", "")
	h.Expect() // the losing answer changes nothing
	h.Check()
}

// rawPhone is a phone written by hand on a UDP socket, for the answers
// a sipgo phone will not give (a 200 after a CANCEL).
type rawPhone struct {
	t    *testing.T
	conn *net.UDPConn
}

// newRawPhone registers a second contact for user from its own socket,
// answering the registrar's digest challenge by hand (MD5, qop=auth).
func newRawPhone(t *testing.T, user string, sw netip.AddrPort) *rawPhone {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	p := &rawPhone{t: t, conn: conn}
	to := net.UDPAddrFromAddrPort(sw)
	register := func(cseq int, auth string) {
		msg := fmt.Sprintf("REGISTER sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKraw%d\r\nFrom: <sip:%s@127.0.0.1>;tag=raw\r\nTo: <sip:%s@127.0.0.1>\r\nCall-ID: raw-%s\r\nCSeq: %d REGISTER\r\nContact: <sip:%s@%s>\r\nExpires: 600\r\nMax-Forwards: 70\r\n%sContent-Length: 0\r\n\r\n",
			sw, conn.LocalAddr(), cseq, user, user, user, cseq, user, conn.LocalAddr(), auth)
		if _, err := conn.WriteToUDP([]byte(msg), to); err != nil {
			t.Fatal(err)
		}
	}
	register(1, "")
	chal := p.read("SIP/2.0 401").header("WWW-Authenticate")
	param := func(k string) string {
		_, v, _ := strings.Cut(chal, k+"=\"")
		v, _, _ = strings.Cut(v, "\"")
		return v
	}
	md5hex := func(s string) string { return fmt.Sprintf("%x", md5.Sum([]byte(s))) }
	uri := "sip:" + sw.String()
	ha1 := md5hex(user + ":" + param("realm") + ":demo-sip-" + user)
	resp := md5hex(ha1 + ":" + param("nonce") + ":00000001:rawcnonce:auth:" + md5hex("REGISTER:"+uri))
	register(2, fmt.Sprintf("Authorization: Digest username=\"%s\", realm=\"%s\", nonce=\"%s\", uri=\"%s\", response=\"%s\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"rawcnonce\"\r\n",
		user, param("realm"), param("nonce"), uri, resp))
	p.read("SIP/2.0 200")
	return p
}

// rawMsg is a request the raw phone read, and where it came from.
type rawMsg struct {
	text string
	from *net.UDPAddr
}

// read waits for the next message that starts with prefix (a method,
// or "SIP/2.0 200"); others are skipped (retransmissions, probes).
func (p *rawPhone) read(prefix string) rawMsg {
	p.t.Helper()
	buf := make([]byte, 65536)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_ = p.conn.SetReadDeadline(deadline)
		n, from, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			p.t.Fatalf("raw phone: no %s: %v", prefix, err)
		}
		if text := string(buf[:n]); strings.HasPrefix(text, prefix+" ") {
			return rawMsg{text: text, from: from}
		}
	}
}

// header returns a header's value from a message ("" when absent).
func (m rawMsg) header(name string) string {
	for _, line := range strings.Split(m.text, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// reply answers a request with a status line and an optional SDP body;
// the To header gets the raw phone's tag.
func (p *rawPhone) reply(req rawMsg, status, sdp string) {
	p.t.Helper()
	to := req.header("To")
	if !strings.Contains(to, "tag=") {
		to += ";tag=rawphone"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %s\r\n", status)
	for _, h := range []string{"Via", "From", "Call-ID", "CSeq"} {
		fmt.Fprintf(&b, "%s: %s\r\n", h, req.header(h))
	}
	fmt.Fprintf(&b, "To: %s\r\nContact: <sip:raw@%s>\r\n", to, p.conn.LocalAddr())
	if sdp != "" {
		b.WriteString("Content-Type: application/sdp\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(sdp), sdp)
	if _, err := p.conn.WriteToUDP([]byte(b.String()), req.from); err != nil {
		p.t.Fatal(err)
	}
}
