package sip

import (
	"net/netip"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"callcontrold/directory"
)

// digestSamples are credentials header values, well formed or not, that
// parseCredentials must read as github.com/icholy/digest does.
var digestSamples = []string{
	`Digest username="201", realm="callcontrold", nonce="n", uri="sip:h", response="0a", qop=auth, nc=00000001, cnonce="c", algorithm=SHA-256`,
	`digest username="201",realm="r",nonce="n",uri="sip:127.0.0.1:5060",response="AB",qop=auth,nc=0000000a,cnonce="c",algorithm=MD5`,
	`DIGEST   username = "a\"b\\c" ,  realm="x y", nonce="", uri="sip:x", response="r", qop=auth, nc=1, cnonce="é", opaque="o"`,
	`Digest username="201", username="202", nc=ffffffff`,
	`Digest username="201", nc=zz`,
	`Digest username="201", nc=-1`,
	`Digest username="201",`,
	`Digest username="201" realm="r"`,
	`Digest username="201`,
	`Digest username="201\`,
	`Digest username=201.5`,
	`Digest =x`,
	`Digest username`,
	`Digest `,
	`Digest`,
	`Basic dXNlcjpwYXNz`,
	`Digest qop=, nc=00000001`,
	`Digest Username="201", QOP=auth`,
	``,
}

func TestParseCredentialsAsDigest(t *testing.T) {
	for _, s := range digestSamples {
		checkParseCredentials(t, s)
	}
}

func FuzzParseCredentials(f *testing.F) {
	for _, s := range digestSamples {
		f.Add(s)
	}
	f.Fuzz(checkParseCredentials)
}

// checkParseCredentials compares parseCredentials with icholy/digest on
// s (valid UTF-8: for invalid bytes in a quoted value, icholy/digest
// gives U+FFFD, parseCredentials the bytes).
func checkParseCredentials(t *testing.T, s string) {
	got, ok := parseCredentials(s)
	want, err := digest.ParseCredentials(s)
	if ok != (err == nil) {
		t.Fatalf("%q: parsed %v, icholy/digest error %v", s, ok, err)
	}
	if !ok || !utf8Valid(s) {
		return
	}
	w := credentials{Username: want.Username, Realm: want.Realm, Nonce: want.Nonce, URI: want.URI, Response: want.Response, Algorithm: want.Algorithm, Cnonce: want.Cnonce, QOP: want.QOP, Nc: want.Nc}
	if got != w {
		t.Fatalf("%q:\n got %+v\nwant %+v", s, got, w)
	}
}

func utf8Valid(s string) bool {
	for _, r := range s {
		if r == '\uFFFD' {
			return false
		}
	}
	return true
}

// BenchmarkAuthCheck is one authenticated INVITE's check: parse the
// credentials, verify them, use the nonce.
func BenchmarkAuthCheck(b *testing.B) {
	now := time.Unix(1_800_000_000, 0)
	a := newAuthenticator(directory.Demo(), AuthConfig{}, func() time.Time { return now })
	src := netip.MustParseAddr("127.0.0.1")
	chal := a.check(inviteReq(b, "302", ""), src, "302", true).response
	cred := answerChallenge(b, chal, "302", "demo-sip-302")
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		req := inviteReq(b, "302", cred(i+1))
		b.StartTimer()
		if out := a.check(req, src, "302", true); out.device == nil {
			b.Fatalf("refused: %v", out.response)
		}
	}
}

// inviteReq is a phone's INVITE as the parser delivers it, with a
// Proxy-Authorization value when auth is not empty.
func inviteReq(tb testing.TB, user, auth string) *sipmsg.Request {
	raw := "INVITE sip:303@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx\r\nFrom: <sip:" + user + "@127.0.0.1>;tag=a\r\nTo: <sip:303@127.0.0.1>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
	if auth != "" {
		raw += "Proxy-Authorization: " + auth + "\r\n"
	}
	m, err := sipmsg.NewParser().ParseSIP([]byte(raw + "Content-Length: 0\r\n\r\n"))
	if err != nil {
		tb.Fatal(err)
	}
	return m.(*sipmsg.Request)
}

// answerChallenge returns the Proxy-Authorization value answering chal
// with nonce count nc.
func answerChallenge(tb testing.TB, chal *sipmsg.Response, user, password string) func(nc int) string {
	c, err := digest.ParseChallenge(chal.GetHeader("Proxy-Authenticate").Value())
	if err != nil {
		tb.Fatal(err)
	}
	return func(nc int) string {
		cred, err := digest.Digest(c, digest.Options{Method: "INVITE", URI: "sip:127.0.0.1", Username: user, Password: password, Count: nc, Cnonce: "c0ffee"})
		if err != nil {
			tb.Fatal(err)
		}
		return cred.String()
	}
}
