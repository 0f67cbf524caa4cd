package sip

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/icholy/digest"

	sipmsg "github.com/emiago/sipgo/sip"

	"callcontrold/directory"
)

func TestRegisterWithDigest(t *testing.T) {
	for _, transport := range []string{"UDP", "TCP"} {
		t.Run(transport, func(t *testing.T) {
			sw := startSwitch(t, nil, RegistrarConfig{})
			p := newPhone(t, sw.ep.Addr(), "201")
			contact := "<sip:201-0x5a3c@127.0.0.1:40000>"

			res := p.register(transport, contact, 600, "")
			if res.StatusCode != 401 {
				t.Fatalf("no credentials: got %d, want 401", res.StatusCode)
			}
			ch := res.GetHeader("WWW-Authenticate").Value()
			for _, want := range []string{`realm="callcontrold"`, "algorithm=MD5", `qop="auth"`, "nonce="} {
				if !strings.Contains(ch, want) {
					t.Errorf("challenge %q lacks %s", ch, want)
				}
			}
			if sw.reg.Up("SIP/201") {
				t.Fatal("up before authenticating")
			}

			res = p.register(transport, contact, 600, "demo-sip-201")
			if res.StatusCode != 200 {
				t.Fatalf("right password: got %d %s", res.StatusCode, res.Reason)
			}
			if c := res.GetHeader("Contact"); c == nil || !strings.Contains(c.Value(), "201-0x5a3c@127.0.0.1:40000") || !strings.Contains(c.Value(), "expires=600") {
				t.Errorf("200 Contact %v", c)
			}
			ev := sw.events.next(t)
			if ev.Device != "SIP/201" || !ev.Up || ev.Reason != "registered" || len(ev.Bindings) != 1 {
				t.Fatalf("event %+v", ev)
			}
			bs := sw.reg.Bindings("SIP/201")
			if len(bs) != 1 {
				t.Fatalf("bindings %+v", bs)
			}
			b := bs[0]
			if b.Contact.User != "201-0x5a3c" || b.Contact.Port != 40000 || b.Transport != transport || b.UserAgent != "testphone" {
				t.Errorf("binding %+v", b)
			}
			// Requests go to where the REGISTER came from, not to the
			// Contact's port.
			if !b.Source.Addr().IsLoopback() || b.Source.Port() == 40000 || b.Destination() != b.Source.String() {
				t.Errorf("binding source %v", b.Source)
			}

			// A refresh keeps the device up without an event.
			if res := p.register(transport, contact, 600, "demo-sip-201"); res.StatusCode != 200 {
				t.Fatalf("refresh: %d", res.StatusCode)
			}
			res = p.register(transport, contact, 0, "demo-sip-201")
			if res.StatusCode != 200 || res.GetHeader("Contact") != nil {
				t.Fatalf("unregister: %d %v", res.StatusCode, res.GetHeader("Contact"))
			}
			if ev := sw.events.next(t); ev.Device != "SIP/201" || ev.Up || ev.Reason != "unregistered" {
				t.Fatalf("event %+v", ev)
			}
			sw.events.none(t)
			if sw.reg.Up("SIP/201") {
				t.Fatal("up after unregister")
			}
		})
	}
}

func TestRegisterWrongCredentials(t *testing.T) {
	clock := newFakeClock()
	sw := startSwitch(t, nil, RegistrarConfig{Now: clock.Now, Auth: AuthConfig{FailureBurst: 3, FailureRefill: time.Minute}})
	p := newPhone(t, sw.ep.Addr(), "201")
	for i := range 3 {
		if res := p.register("", "<sip:201@127.0.0.1:4000>", 600, "wrong"); res.StatusCode != 403 {
			t.Fatalf("wrong password %d: got %d, want 403", i, res.StatusCode)
		}
	}
	// The source used its allowance: even the right password is refused.
	res := p.register("", "<sip:201@127.0.0.1:4000>", 600, "demo-sip-201")
	if res.StatusCode != 403 || res.GetHeader("Retry-After") == nil {
		t.Fatalf("blocked source: got %d %s", res.StatusCode, res.Reason)
	}
	// Unknown users are refused the same way.
	clock.Advance(time.Minute)
	q := newPhone(t, sw.ep.Addr(), "999")
	if res := q.register("", "<sip:999@127.0.0.1:4000>", 600, "x"); res.StatusCode != 403 {
		t.Fatalf("unknown user: %d", res.StatusCode)
	}
	clock.Advance(time.Minute) // both phones are 127.0.0.1: one source
	if res := p.register("", "<sip:201@127.0.0.1:4000>", 600, "demo-sip-201"); res.StatusCode != 200 {
		t.Fatalf("after the refill: got %d %s", res.StatusCode, res.Reason)
	}
	if ev := sw.events.next(t); !ev.Up {
		t.Fatalf("event %+v", ev)
	}
}

func TestRegisterExpiry(t *testing.T) {
	clock := newFakeClock()
	sw := startSwitch(t, nil, RegistrarConfig{Now: clock.Now, SweepInterval: time.Hour})
	p := newPhone(t, sw.ep.Addr(), "202")
	if res := p.register("", "<sip:202@127.0.0.1:4000>", 120, "demo-sip-202"); res.StatusCode != 200 {
		t.Fatalf("register: %d", res.StatusCode)
	}
	sw.events.next(t)
	clock.Advance(119 * time.Second)
	sw.reg.sweep()
	if !sw.reg.Up("SIP/202") {
		t.Fatal("down before expiry")
	}
	clock.Advance(time.Second)
	if sw.reg.Up("SIP/202") {
		t.Fatal("an expired binding is still offered")
	}
	sw.reg.sweep()
	if ev := sw.events.next(t); ev.Device != "SIP/202" || ev.Up || ev.Reason != "expired" {
		t.Fatalf("event %+v", ev)
	}

	// Lapsed but not yet swept when the phone registers again: the
	// down event still comes first.
	if res := p.register("", "<sip:202@127.0.0.1:4000>", 120, "demo-sip-202"); res.StatusCode != 200 {
		t.Fatalf("register: %d", res.StatusCode)
	}
	sw.events.next(t)
	clock.Advance(121 * time.Second)
	if res := p.register("", "<sip:202@127.0.0.1:4001>", 120, "demo-sip-202"); res.StatusCode != 200 {
		t.Fatalf("register: %d", res.StatusCode)
	}
	if ev := sw.events.next(t); ev.Up || ev.Reason != "expired" {
		t.Fatalf("event %+v, want down (expired)", ev)
	}
	if ev := sw.events.next(t); !ev.Up || len(ev.Bindings) != 1 || ev.Bindings[0].Contact.Port != 4001 {
		t.Fatalf("event %+v, want up with the new contact", ev)
	}
}

// TestRegistrarLogsNoSecrets: whatever happens, neither the password
// nor its HA1 reaches the log.
func TestRegistrarLogsNoSecrets(t *testing.T) {
	var logged syncBuffer
	sw := startSwitch(t, nil, RegistrarConfig{Logger: slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	p := newPhone(t, sw.ep.Addr(), "201")
	for _, pw := range []string{"demo-sip-201", "demo-sip-202", "demo-sip-201"} {
		p.register("", "<sip:201@127.0.0.1:4000>", 600, pw)
	}
	p.register("", "<sip:201@127.0.0.1:4000>", 0, "demo-sip-201")
	out := logged.String()
	if !strings.Contains(out, "sip binding added") || !strings.Contains(out, "wrong credentials") {
		t.Fatalf("the log lacks the registration lines:\n%s", out)
	}
	for _, secret := range []string{"demo-sip", directory.SIPHA1MD5("201", "callcontrold", "demo-sip-201"), directory.SIPHA1MD5("201", "callcontrold", "demo-sip-202")} {
		if strings.Contains(out, secret) {
			t.Errorf("the log shows %q:\n%s", secret, out)
		}
	}
}

func TestRegisterExpiryBounds(t *testing.T) {
	clock := newFakeClock()
	sw := startSwitch(t, nil, RegistrarConfig{Now: clock.Now, MinExpires: 30 * time.Second, MaxExpires: 300 * time.Second, DefaultExpires: 200 * time.Second})
	p := newPhone(t, sw.ep.Addr(), "203")
	res := p.register("", "<sip:203@127.0.0.1:4000>", 10, "demo-sip-203")
	if res.StatusCode != 423 || res.GetHeader("Min-Expires") == nil || res.GetHeader("Min-Expires").Value() != "30" {
		t.Fatalf("too brief: %d %v", res.StatusCode, res.GetHeader("Min-Expires"))
	}
	cases := []struct {
		contact string
		expires int
		want    string
	}{
		{"<sip:203@127.0.0.1:4001>", 7200, "expires=300"},                   // capped
		{"<sip:203@127.0.0.1:4002>", -1, "expires=200"},                     // default
		{"<sip:203@127.0.0.1:4003>;expires=45", 7200, "expires=45"},         // the contact's own wins
		{"<sip:203@127.0.0.1:4004>;expires=99999999999", -1, "expires=300"}, // huge is capped
	}
	for _, c := range cases {
		res := p.register("", c.contact, c.expires, "demo-sip-203")
		if res.StatusCode != 200 {
			t.Fatalf("%s: %d", c.contact, res.StatusCode)
		}
		port := c.contact[len("<sip:203@127.0.0.1:"):][:4]
		found := false
		for _, h := range res.GetHeaders("Contact") {
			found = found || strings.Contains(h.Value(), port) && strings.Contains(h.Value(), c.want)
		}
		if !found {
			t.Errorf("%s: want %s among %v", c.contact, c.want, res.GetHeaders("Contact"))
		}
	}
}

func TestRegisterBindingLimit(t *testing.T) {
	sw := startSwitch(t, nil, RegistrarConfig{})
	p := newPhone(t, sw.ep.Addr(), "303")
	// The demo account allows 3 bindings; a fourth evicts the oldest.
	for port := 5001; port <= 5004; port++ {
		if res := p.register("", fmt.Sprintf("<sip:303@127.0.0.1:%d>", port), 600, "demo-sip-303"); res.StatusCode != 200 {
			t.Fatalf("contact %d: %d", port, res.StatusCode)
		}
	}
	var ports []int
	for _, b := range sw.reg.Bindings("SIP/303") {
		ports = append(ports, b.Contact.Port)
	}
	if fmt.Sprint(ports) != "[5002 5003 5004]" {
		t.Fatalf("bindings %v, want the newest three", ports)
	}
	if ev := sw.events.next(t); !ev.Up {
		t.Fatalf("event %+v", ev)
	}
	// Contact: * removes them all.
	req := p.request("", "*", 0)
	res := answerAndDo(t, p, req, "demo-sip-303")
	if res.StatusCode != 200 || sw.reg.Up("SIP/303") {
		t.Fatalf("Contact *: %d up=%v", res.StatusCode, sw.reg.Up("SIP/303"))
	}
	if ev := sw.events.next(t); ev.Up || ev.Reason != "unregistered" {
		t.Fatalf("event %+v", ev)
	}
}

func answerAndDo(t *testing.T, p *phone, req *sipmsg.Request, password string) *sipmsg.Response {
	t.Helper()
	ctx := t.Context()
	res, err := p.client.Do(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode == 401 {
		res, err = p.client.DoDigestAuth(ctx, req, res, sipgoAuth(p.user, password))
		if err != nil {
			t.Fatal(err)
		}
	}
	p.cseq = req.CSeq().SeqNo + 1
	return res
}

func TestRegisterSHA256(t *testing.T) {
	y := `
companies: [{name: default}]
devices:
  - {name: SIP/401, company: default, sip: {realm: pbx.test, ha1_sha256: ` + directory.SIPHA1SHA256("401", "pbx.test", "s3cret") + `}}
  - {name: SIP/402, company: default, sip: {ha1_md5: ` + directory.SIPHA1MD5("402", "callcontrold", "pw2") + `, ha1_sha256: ` + directory.SIPHA1SHA256("402", "callcontrold", "pw2") + `}}
`
	dir, err := directory.Parse([]byte(y), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sw := startSwitch(t, dir, RegistrarConfig{})
	p := newPhone(t, sw.ep.Addr(), "401")
	res := p.register("", "<sip:401@127.0.0.1:4000>", 600, "")
	if hs := res.GetHeaders("WWW-Authenticate"); len(hs) != 1 || !strings.Contains(hs[0].Value(), "algorithm=SHA-256") || !strings.Contains(hs[0].Value(), `realm="pbx.test"`) {
		t.Fatalf("challenge %v", hs)
	}
	if res := p.register("", "<sip:401@127.0.0.1:4000>", 600, "s3cret"); res.StatusCode != 200 {
		t.Fatalf("SHA-256: %d", res.StatusCode)
	}
	q := newPhone(t, sw.ep.Addr(), "402")
	res = q.register("", "<sip:402@127.0.0.1:4000>", 600, "")
	hs := res.GetHeaders("WWW-Authenticate")
	if len(hs) != 2 || !strings.Contains(hs[0].Value(), "SHA-256") || !strings.Contains(hs[1].Value(), "MD5") {
		t.Fatalf("challenges %v, want SHA-256 then MD5", hs)
	}
}

// registerReq builds a REGISTER as the parser would deliver it, from src.
func registerReq(t testing.TB, user, contact string, cseq uint32, src string) *sipmsg.Request {
	raw := fmt.Sprintf("REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%d\r\nFrom: <sip:%s@127.0.0.1>;tag=a\r\nTo: <sip:%s@127.0.0.1>\r\nCall-ID: direct-%s\r\nCSeq: %d REGISTER\r\nContact: %s\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n", src, cseq, user, user, user, cseq, contact)
	m, err := sipmsg.NewParser().ParseSIP([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	req := m.(*sipmsg.Request)
	req.SetSource(src)
	req.SetTransport("UDP")
	return req
}

// withAuth answers a challenge on req with nonce count nc.
func withAuth(t testing.TB, req *sipmsg.Request, challenge *sipmsg.Response, user, password string, nc int) *sipmsg.Request {
	chal, err := digest.ParseChallenge(challenge.GetHeader("WWW-Authenticate").Value())
	if err != nil {
		t.Fatal(err)
	}
	cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:127.0.0.1", Username: user, Password: password, Count: nc, Cnonce: "c0ffee"})
	if err != nil {
		t.Fatal(err)
	}
	req.RemoveHeader("Authorization")
	req.AppendHeader(sipmsg.NewHeader("Authorization", cred.String()))
	return req
}

func newDirectRegistrar(t *testing.T, clock *fakeClock, auth AuthConfig) *Registrar {
	reg := NewRegistrar(directory.Demo(), RegistrarConfig{Now: clock.Now, Auth: auth, Logger: quietLog(t)})
	t.Cleanup(reg.Close)
	return reg
}

func TestNonceStaleAndReplay(t *testing.T) {
	clock := newFakeClock()
	reg := newDirectRegistrar(t, clock, AuthConfig{NonceLifetime: time.Minute})
	src := "127.0.0.1:5070"
	chal := reg.Register(registerReq(t, "201", "<sip:201@127.0.0.1:5070>", 1, src))
	if chal.StatusCode != 401 {
		t.Fatalf("challenge: %d", chal.StatusCode)
	}
	if res := reg.Register(withAuth(t, registerReq(t, "201", "<sip:201@127.0.0.1:5070>", 2, src), chal, "201", "demo-sip-201", 1)); res.StatusCode != 200 {
		t.Fatalf("answer: %d", res.StatusCode)
	}
	// The same answer again (same nonce count) is a replay.
	res := reg.Register(withAuth(t, registerReq(t, "201", "<sip:201@127.0.0.1:5070>", 3, src), chal, "201", "demo-sip-201", 1))
	if res.StatusCode != 401 || !strings.Contains(res.GetHeader("WWW-Authenticate").Value(), "stale=true") {
		t.Fatalf("replay: %d %v", res.StatusCode, res.GetHeader("WWW-Authenticate"))
	}
	// The next count is fine: phones reuse a nonce for refreshes.
	if res := reg.Register(withAuth(t, registerReq(t, "201", "<sip:201@127.0.0.1:5070>", 4, src), chal, "201", "demo-sip-201", 2)); res.StatusCode != 200 {
		t.Fatalf("nc 2: %d", res.StatusCode)
	}
	// From another address the nonce is not valid.
	if res := reg.Register(withAuth(t, registerReq(t, "201", "<sip:201@127.0.0.2:5070>", 5, "127.0.0.2:5070"), chal, "201", "demo-sip-201", 3)); res.StatusCode != 401 {
		t.Fatalf("other source: %d", res.StatusCode)
	}
	// An expired nonce with the right password: stale, no failure counted.
	clock.Advance(time.Minute)
	res = reg.Register(withAuth(t, registerReq(t, "201", "<sip:201@127.0.0.1:5070>", 6, src), chal, "201", "demo-sip-201", 4))
	if res.StatusCode != 401 || !strings.Contains(res.GetHeader("WWW-Authenticate").Value(), "stale=true") {
		t.Fatalf("expired nonce: %d %v", res.StatusCode, res.GetHeader("WWW-Authenticate"))
	}
	if res := reg.Register(withAuth(t, registerReq(t, "201", "<sip:201@127.0.0.1:5070>", 7, src), res, "201", "demo-sip-201", 1)); res.StatusCode != 200 {
		t.Fatalf("after stale: %d", res.StatusCode)
	}
	// A wrong password with an expired nonce is still wrong.
	clock.Advance(time.Minute)
	if res := reg.Register(withAuth(t, registerReq(t, "201", "<sip:201@127.0.0.1:5070>", 8, src), chal, "201", "nope", 9)); res.StatusCode != 403 {
		t.Fatalf("wrong password, old nonce: %d", res.StatusCode)
	}
}

func TestPendingChallengesBounded(t *testing.T) {
	clock := newFakeClock()
	reg := newDirectRegistrar(t, clock, AuthConfig{MaxChallengesPerSource: 4, MaxChallenges: 10})
	first := reg.Register(registerReq(t, "201", "<sip:201@127.0.0.1:5070>", 1, "127.0.0.1:5070"))
	for i := range 50 {
		reg.Register(registerReq(t, "201", "<sip:201@127.0.0.1:5070>", uint32(i+2), "127.0.0.1:5070"))
	}
	for i := range 50 {
		src := fmt.Sprintf("127.0.1.%d:5070", i)
		reg.Register(registerReq(t, "201", "<sip:201@127.0.0.1:5070>", 1, src))
	}
	a := reg.auth
	a.mu.Lock()
	n, sources, order := len(a.nonces), len(a.bySource), len(a.order)
	a.mu.Unlock()
	if n > 10 || sources > 10 || order > 20 {
		t.Fatalf("pending nonces %d, sources %d, order %d: over the bounds", n, sources, order)
	}
	// The first challenge was evicted: answering it gets a new one.
	res := reg.Register(withAuth(t, registerReq(t, "201", "<sip:201@127.0.0.1:5070>", 100, "127.0.0.1:5070"), first, "201", "demo-sip-201", 1))
	if res.StatusCode != 401 {
		t.Fatalf("evicted nonce: %d", res.StatusCode)
	}
}

func TestRegisterRefusals(t *testing.T) {
	clock := newFakeClock()
	reg := newDirectRegistrar(t, clock, AuthConfig{})
	src := "127.0.0.1:5070"
	chal := reg.Register(registerReq(t, "202", "<sip:202@127.0.0.1:5070>", 1, src))
	// 201's credentials for 202's address.
	res := reg.Register(withAuth(t, registerReq(t, "202", "<sip:202@127.0.0.1:5070>", 2, src), chal, "201", "demo-sip-201", 1))
	if res.StatusCode != 403 || reg.Up("SIP/202") || reg.Up("SIP/201") {
		t.Fatalf("foreign AOR: %d", res.StatusCode)
	}
	// Out of order: a lower CSeq in the same Call-ID.
	chal = reg.Register(registerReq(t, "201", "<sip:201@127.0.0.1:5070>", 10, src))
	if res := reg.Register(withAuth(t, registerReq(t, "201", "<sip:201@127.0.0.1:5070>", 11, src), chal, "201", "demo-sip-201", 1)); res.StatusCode != 200 {
		t.Fatalf("register: %d", res.StatusCode)
	}
	if res := reg.Register(withAuth(t, registerReq(t, "201", "<sip:201@127.0.0.1:5070>", 5, src), chal, "201", "demo-sip-201", 2)); res.StatusCode != 500 {
		t.Fatalf("out of order: %d", res.StatusCode)
	}
	// Credentials without qop.
	req := registerReq(t, "201", "<sip:201@127.0.0.1:5070>", 12, src)
	req.AppendHeader(sipmsg.NewHeader("Authorization", `Digest username="201", realm="callcontrold", nonce="x", uri="sip:127.0.0.1", response="00"`))
	if res := reg.Register(req); res.StatusCode != 400 {
		t.Fatalf("no qop: %d", res.StatusCode)
	}
}

// TestRegisterMalformed feeds broken REGISTERs: each gets a 4xx, none
// panics or registers anything.
func TestRegisterMalformed(t *testing.T) {
	clock := newFakeClock()
	reg := newDirectRegistrar(t, clock, AuthConfig{})
	head := "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx\r\n"
	good := "From: <sip:201@h>;tag=a\r\nTo: <sip:201@h>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n"
	cases := []struct {
		raw  string
		want int // 0: the parser refuses it, it never reaches the registrar
	}{
		{head + "To: <sip:201@h>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n", 400},
		{head + "From: <sip:201@h>;tag=a\r\nTo: <sip:@h>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n", 400},
		{head + "From: <sip:201@h>;tag=a\r\nTo: <sip:201@h>\r\nCSeq: 1 REGISTER\r\n", 400},
		{head + "From: <sip:201@h>;tag=a\r\nTo: <sip:201@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n", 400},
		{head + good + "Expires: soon\r\n", 401}, // credentials come first
		{head + good + "Authorization: Basic Zm9vOmJhcg==\r\n", 400},
		{head + good + "Authorization: Digest username=\"201\"\r\n", 400},
		{head + good + "Authorization: Digest username=\"201\", realm=\"callcontrold\", nonce=\"n\", uri=\"::\", response=\"0\", qop=auth, nc=00000001, cnonce=\"c\"\r\n", 400},
		{head + good + "Authorization: Digest username=\"201\", realm=\"callcontrold\", nonce=\"n\", uri=\"sip:h\", response=\"0\", qop=auth, nc=zz, cnonce=\"c\"\r\n", 400},
		{head + good + "Authorization: Digest username=\"201\", realm=\"callcontrold\", nonce=\"n\", uri=\"sip:h\", response=\"0\", qop=auth, nc=00000001, cnonce=\"c\"\r\n", 403},
	}
	for i, c := range cases {
		m, err := sipmsg.NewParser().ParseSIP([]byte(c.raw + "Content-Length: 0\r\n\r\n"))
		if err != nil {
			if c.want != 0 {
				t.Errorf("case %d: parser refused it: %v", i, err)
			}
			continue
		}
		req := m.(*sipmsg.Request)
		req.SetSource("127.0.0.1:5070")
		if res := reg.Register(req); res.StatusCode != c.want {
			t.Errorf("case %d: got %d %s, want %d", i, res.StatusCode, res.Reason, c.want)
		}
	}
	if reg.Up("SIP/201") {
		t.Fatal("a malformed request registered")
	}
}

func TestEndpointLifecycle(t *testing.T) {
	ep, err := NewEndpoint(EndpointConfig{Addr: "127.0.0.1:0", Logger: quietLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	if ep.Addr().Port() == 0 || !ep.Addr().Addr().IsLoopback() {
		t.Fatalf("addr %v", ep.Addr())
	}
	// Both transports listen on the reported port: a second endpoint
	// cannot take it.
	if _, err := NewEndpoint(EndpointConfig{Addr: ep.Addr().String()}); err == nil {
		t.Fatal("second endpoint bound the same port")
	}
	if err := ep.Start(); err != nil {
		t.Fatal(err)
	}
	if err := ep.Start(); err == nil {
		t.Fatal("second Start succeeded")
	}
	// A method nobody handles is answered 405.
	p := newPhone(t, ep.Addr(), "201")
	req := sipmsg.NewRequest(sipmsg.OPTIONS, sipmsg.Uri{Scheme: "sip", Host: "127.0.0.1", Port: int(ep.Addr().Port())})
	res, err := p.client.Do(t.Context(), req)
	if err != nil || res.StatusCode != 405 {
		t.Fatalf("OPTIONS: %v %v", res, err)
	}
	if err := ep.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ep.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := NewEndpoint(EndpointConfig{Addr: "localhost"}); err == nil {
		t.Fatal("bad address accepted")
	}
	if got := netip.MustParseAddrPort(ep.Addr().String()); got != ep.Addr() {
		t.Fatal("addr does not round-trip")
	}
}

// TestAuthenticateInvite is how the B2BUA authenticates a phone's
// INVITE: 407 first, then the device.
func TestAuthenticateInvite(t *testing.T) {
	devices := make(chan string, 4)
	sw := startSwitch(t, nil, RegistrarConfig{}, func(ep *Endpoint, reg *Registrar) {
		ep.Handle(sipmsg.INVITE, func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
			dev := reg.Authenticate(req, tx)
			if dev == nil {
				return // answered already
			}
			devices <- dev.Name
			tx.Respond(sipmsg.NewResponseFromRequest(req, sipmsg.StatusBusyHere, "Busy Here", nil))
		})
		ep.Handle(sipmsg.ACK, func(*sipmsg.Request, sipmsg.ServerTransaction) {})
	})
	p := newPhone(t, sw.ep.Addr(), "302")
	invite := func() *sipmsg.Request {
		req := sipmsg.NewRequest(sipmsg.INVITE, sipmsg.Uri{Scheme: "sip", User: "303", Host: "127.0.0.1", Port: int(sw.ep.Addr().Port())})
		from := &sipmsg.FromHeader{Address: sipmsg.Uri{Scheme: "sip", User: "302", Host: "127.0.0.1"}, Params: sipmsg.NewParams()}
		from.Params.Add("tag", sipmsg.GenerateTagN(8))
		req.AppendHeader(from)
		req.AppendHeader(sipmsg.NewHeader("Contact", "<sip:302@127.0.0.1:4000>"))
		return req
	}
	req := invite()
	res, err := p.client.Do(t.Context(), req)
	if err != nil || res.StatusCode != sipmsg.StatusProxyAuthRequired || res.GetHeader("Proxy-Authenticate") == nil {
		t.Fatalf("INVITE without credentials: %v %v", res, err)
	}
	res, err = p.client.DoDigestAuth(t.Context(), req, res, sipgoAuth("302", "demo-sip-302"))
	if err != nil || res.StatusCode != sipmsg.StatusBusyHere {
		t.Fatalf("INVITE with credentials: %v %v", res, err)
	}
	if got := <-devices; got != "SIP/302" {
		t.Fatalf("authenticated as %s", got)
	}
	req = invite()
	res, err = p.client.Do(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	res, err = p.client.DoDigestAuth(t.Context(), req, res, sipgoAuth("302", "wrong"))
	if err != nil || res.StatusCode != sipmsg.StatusForbidden {
		t.Fatalf("INVITE with a wrong password: %v %v", res, err)
	}
}

// TestRouteToBinding reaches a registered phone the way the B2BUA will:
// by its binding, whatever port its Contact names.
func TestRouteToBinding(t *testing.T) {
	for _, transport := range []string{"UDP", "TCP"} {
		t.Run(transport, func(t *testing.T) {
			sw := startSwitch(t, nil, RegistrarConfig{})
			p := newPhone(t, sw.ep.Addr(), "201")
			if res := p.register(transport, "<sip:201-0x77@127.0.0.1:9>", 600, "demo-sip-201"); res.StatusCode != 200 {
				t.Fatalf("register: %d", res.StatusCode)
			}
			bs := sw.reg.Bindings("SIP/201")
			if len(bs) != 1 {
				t.Fatalf("bindings %v", bs)
			}
			req := sipmsg.NewRequest(sipmsg.OPTIONS, bs[0].Contact)
			sw.ep.RouteTo(req, bs[0])
			res, err := sw.ep.Client().Do(t.Context(), req)
			if err != nil || res.StatusCode != 200 {
				t.Fatalf("OPTIONS to the phone: %v %v", res, err)
			}
			if got := <-p.options; got != "sip:201-0x77@127.0.0.1:9" {
				t.Errorf("phone got Request-URI %s", got)
			}
		})
	}
}
