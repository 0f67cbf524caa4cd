package main

import (
	"context"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"callcontrold/internal/natsembed"
	"callcontrold/pbx/sip/siptest"
)

// startNATS runs one embedded JetStream server on a loopback port.
func startNATS(t *testing.T) string {
	t.Helper()
	ns, err := natsembed.StartOne()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Close)
	return ns.URL()
}

// checkStreamLimit: the first replica created the log stream with the
// revision limit its flag gave, and the snapshot bucket beside it.
func checkStreamLimit(t *testing.T, url string, want int64) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "CALLCONTROLD")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config; got.MaxMsgs != want || got.Discard != jetstream.DiscardOld {
		t.Errorf("the log stream keeps %d revisions, discard %v; want %d, discard old", got.MaxMsgs, got.Discard, want)
	}
	if _, err := js.ObjectStore(ctx, "CALLCONTROLD_SNAPSHOT"); err != nil {
		t.Errorf("the snapshot bucket: %v", err)
	}
}

// TestBinaryReplicas runs the binary as replicas of one log (--nats).
func TestBinaryReplicas(t *testing.T) {
	bin := buildBinary(t)

	t.Run("NATS unreachable at start exits naming the URL", func(t *testing.T) {
		s := launch(t, bin, "--nats=nats://127.0.0.1:1")
		select {
		case <-s.done:
		case <-time.After(60 * time.Second):
			t.Fatal("still running without NATS")
		}
		if s.waitErr == nil || !strings.Contains(s.log.String(), "cannot reach NATS at nats://127.0.0.1:1") {
			t.Errorf("exit %v, log:\n%s", s.waitErr, s.log)
		}
	})

	t.Run("a follower forwards, a new leader takes over on SIGTERM", func(t *testing.T) {
		url := startNATS(t)
		a := startServer(t, bin, "--nats="+url, "--replica-id=a", "--nats-max-revisions=1000")
		b := startServer(t, bin, "--nats="+url, "--replica-id=b")
		dial := func(s *proc) result {
			return grpcurl(t, "-H", "authorization: Bearer demo-alice", "-d", `{"device":"SIP/201","number":"202"}`,
				s.addr, "callcontrol.v1.CallControlService/Dial")
		}
		if r := dial(b); r.code != 0 || !strings.Contains(r.stdout, `"uid"`) {
			t.Fatalf("Dial on the follower: %s", r)
		}
		checkStreamLimit(t, url, 1000)
		if r := grpcurl(t, "-H", "authorization: Bearer demo-admin", "-d", `{}`, a.addr, "callcontrol.v1.CallControlService/ListCalls"); !strings.Contains(r.stdout, `"SIP/201"`) {
			t.Errorf("ListCalls on the leader misses the call: %s", r)
		}
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		<-a.done
		deadline := time.Now().Add(30 * time.Second)
		for {
			r := dial(b)
			if r.code == 0 {
				break
			}
			if !strings.Contains(r.stdout+r.stderr, "Unavailable") || time.Now().After(deadline) {
				t.Fatalf("Dial on b after the leader left: %s", r)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if !strings.Contains(b.log.String(), "legs=") {
			t.Errorf("the new leader did not end the old leader's calls; log:\n%s", b.log)
		}
	})

	t.Run("with --switch sip the leader runs the switch and the next one knows its phones", func(t *testing.T) {
		url := startNATS(t)
		sipA := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(siptest.FreePort(t)))
		a := startServer(t, bin, "--nats="+url, "--replica-id=a", "--switch=sip", "--sip-addr="+sipA.String())
		waitUntil(t, "a leads", func() bool { return strings.Contains(a.log.String(), "msg=leading") })
		b := startServer(t, bin, "--nats="+url, "--replica-id=b", "--switch=sip", "--sip-addr=127.0.0.1:"+strconv.Itoa(siptest.FreePort(t)))
		phone := siptest.StartBaresip(t, siptest.BaresipOptions{User: "202", Password: "demo-sip-202", Registrar: sipA})
		if _, err := phone.WaitEvent(phoneWait, "REGISTER_OK"); err != nil {
			t.Fatalf("registration with the leader: %v", err)
		}
		status := func(s *proc) string {
			r := grpcurl(t, "-H", "authorization: Bearer demo-admin", "-d", `{"name":"SIP/202"}`, s.addr, "callcontrol.v1.DeviceService/GetDevice")
			return r.stdout
		}
		up := `"DEVICE_STATUS_UP"`
		waitUntil(t, "the follower reports SIP/202 up", func() bool { return strings.Contains(status(b), up) })
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		<-a.done
		waitUntil(t, "b leads", func() bool { return strings.Contains(b.log.String(), "msg=leading") })
		if st := status(b); !strings.Contains(st, up) {
			t.Errorf("SIP/202 on the new leader, registered only with the old one: %s; want up", st)
		}
	})
}

func TestReplicaFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--nats=nats://h:4222", "--demo-traffic=1"}, "--demo-traffic is not available with --nats"},
		{[]string{"--nats=nats://h:4222", "--nats-replicas=7"}, "--nats-replicas must be 1 to 5"},
		{[]string{"--nats=nats://h:4222", "--nats-tls-cert=c.pem"}, "--nats-tls-cert and --nats-tls-key go together"},
		{[]string{"--nats=nats://h:4222", "--lease-ttl=10ms"}, "--lease-ttl must be at least 500ms"},
		{[]string{"--nats=nats://h:4222", "--snapshot-every=0"}, "--snapshot-every must be positive"},
		{[]string{"--nats=nats://h:4222", "--nats-max-revisions=10"}, "a stream limit of 10 revisions is too small: at least 100"},
		{[]string{"--nats=nats://h:4222", "--nats-max-age=1s"}, "a stream age limit of 1s is too small"},
		{[]string{"--nats=nats://h:4222", "--nats-max-bytes=-1"}, "cannot be negative"},
	}
	for _, tc := range tests {
		_, err := parseConfig(tc.args, func(string) string { return "" }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseConfig(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
	// Without --nats the replica flags are not checked: nothing changes.
	if _, err := parseConfig([]string{"--demo-traffic=1"}, func(string) string { return "" }, io.Discard); err != nil {
		t.Errorf("single process with demo traffic: %v", err)
	}
}

func TestForwardCreds(t *testing.T) {
	if c, err := forwardCreds(&config{}); c != nil || err != nil {
		t.Errorf("without TLS: %v, %v; want plaintext (nil, nil)", c, err)
	}
	bad := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &config{tlsCert: "cert.pem", tlsKey: "key.pem", replica: replicaFlags{forwardCA: bad}}
	if _, err := forwardCreds(c); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("bad --forward-tls-ca: %v", err)
	}
	c.replica.forwardCA = ""
	if creds, err := forwardCreds(c); err != nil || creds == nil || creds.Info().SecurityProtocol != "tls" {
		t.Errorf("with TLS: %v, %v; want TLS credentials", creds, err)
	}
}
