package sip

import (
	"io"
	"log/slog"
	"testing"

	"callcontrold/directory"

	sipmsg "github.com/emiago/sipgo/sip"
)

// FuzzRegister drives raw bytes through sipgo's parser into the
// registrar. Whatever arrives, the registrar answers with a response and
// never panics; and since no nonce it issued is ever answered here, no
// request may register anything.
func FuzzRegister(f *testing.F) {
	head := "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx\r\nFrom: <sip:201@h>;tag=a\r\nTo: <sip:201@h>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n"
	end := "Content-Length: 0\r\n\r\n"
	f.Add([]byte(head + "Contact: <sip:201-0x1@127.0.0.1:5070>\r\nExpires: 60\r\n" + end))
	f.Add([]byte(head + "Contact: *\r\nExpires: 0\r\n" + end))
	f.Add([]byte(head + "Contact: <sip:a@b>;expires=10, <sip:c@d>\r\n" + end))
	f.Add([]byte(head + `Authorization: Digest username="201", realm="callcontrold", nonce="n", uri="sip:h", response="0", qop=auth, nc=00000001, cnonce="c", algorithm=SHA-256` + "\r\n" + end))
	f.Add([]byte(head + `Authorization: Digest username="201"` + "\r\nContact: <sips:x@[::1]:5>;expires=99999999999999\r\n" + end))
	f.Add([]byte("REGISTER sip:x SIP/2.0\r\n\r\n"))
	clock := newFakeClock()
	reg := NewRegistrar(directory.Demo(), RegistrarConfig{Now: clock.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	f.Cleanup(reg.Close)
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := sipmsg.NewParser().ParseSIP(raw)
		if err != nil {
			return
		}
		req, ok := m.(*sipmsg.Request)
		if !ok {
			return
		}
		req.SetSource("127.0.0.1:5070")
		res := reg.Register(req)
		if res == nil || res.StatusCode < 300 || res.StatusCode > 699 {
			t.Fatalf("response %v to %q", res, raw)
		}
		for _, d := range []string{"SIP/201", "SIP/201_2", "SIP/202", "SIP/203", "SIP/302", "SIP/303"} {
			if reg.Up(d) {
				t.Fatalf("%s registered by %q", d, raw)
			}
		}
	})
}
