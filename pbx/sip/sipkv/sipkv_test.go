package sipkv

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"callcontrold/internal/natsembed"
	"callcontrold/pbx"
	"callcontrold/pbx/sip"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// bucket starts one embedded JetStream server on a loopback port and returns a fresh bucket.
func bucket(t *testing.T) jetstream.KeyValue {
	t.Helper()
	ns, err := natsembed.StartOne()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Close)
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "TEST_" + Suffix})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func binding(t *testing.T, contact string, port uint16) sip.Binding {
	t.Helper()
	var u sipmsg.Uri
	if err := sipmsg.ParseUri(contact, &u); err != nil {
		t.Fatal(err)
	}
	return sip.Binding{
		Contact: u, Source: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), Transport: "UDP",
		CallID: "c-" + contact, CSeq: 7, UserAgent: "baresip", Expires: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

// TestSaveLoad: what one leader saves, the next loads as it was; a
// device left without bindings is forgotten; an unreadable value is
// skipped, not fatal.
func TestSaveLoad(t *testing.T) {
	kv := bucket(t)
	s := New(kv, slog.New(slog.NewTextHandler(io.Discard, nil)))
	got, err := s.Load()
	if err != nil || len(got) != 0 {
		t.Fatalf("empty bucket: %v, %v", got, err)
	}
	b201 := []sip.Binding{binding(t, "sip:201-0x1@127.0.0.1:5071;transport=tcp", 5071), binding(t, "sip:201@127.0.0.1:5072", 5072)}
	s.Save("SIP/201", b201)
	s.Save("SIP/202", []sip.Binding{binding(t, "sip:202@127.0.0.1:5073", 5073)})
	s.Save("SIP/202", nil) // unregistered
	live := binding(t, "sip:203@127.0.0.1:5074", 5074)
	live.Expires = time.Now().Add(time.Hour)
	s.Save("SIP/203", []sip.Binding{live})
	for device, want := range map[string]pbx.DeviceStatus{"SIP/201": pbx.StatusDown, "SIP/202": pbx.StatusDown, "SIP/203": pbx.StatusUp} {
		if got := s.Status(device); got != want { // SIP/201's bindings lapsed in January
			t.Errorf("Status(%s) = %v, want %v", device, got, want)
		}
	}
	if _, err := kv.Put(context.Background(), "garbage", []byte("{")); err != nil {
		t.Fatal(err)
	}
	got, err = New(kv, slog.New(slog.NewTextHandler(io.Discard, nil))).Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(got["SIP/201"]) != 2 || len(got["SIP/203"]) != 1 {
		t.Fatalf("loaded %v, want SIP/201's two bindings and SIP/203's one", got)
	}
	for i, want := range b201 {
		g := got["SIP/201"][i]
		if g.Contact.String() != want.Contact.String() || g.Source != want.Source || g.Transport != want.Transport ||
			g.CallID != want.CallID || g.CSeq != want.CSeq || g.UserAgent != want.UserAgent || !g.Expires.Equal(want.Expires) {
			t.Errorf("binding %d loaded as %+v, saved %+v", i, g, want)
		}
	}
}
