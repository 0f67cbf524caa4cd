package web_test

// Every test gets its own callcontrold, wired like cmd/callcontrold (demo
// directory, callstore, simulated switch on a fake clock, directory
// tokens, limiter, metrics), with the HTTP side on a real loopback
// listener (127.0.0.1:0) and real HTTP clients.

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"callcontrold/auth"
	"callcontrold/callstore"
	"callcontrold/directory"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/pbx"
	"callcontrold/pbx/sim"
	"callcontrold/server"
	"callcontrold/web"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitLimit turns a hang into a failure; no test asserts on timing.
const waitLimit = 15 * time.Second

const servicePath = "/callcontrol.v1.CallControlService/"

type harness struct {
	t     *testing.T
	base  string // http://127.0.0.1:port
	srv   *server.Server
	web   *web.Server
	reg   *prometheus.Registry
	clock *pbx.FakeClock
	sim   *sim.Switch
	store *callstore.Store
}

type harnessConfig struct {
	web    web.Config
	server server.Config
	limit  auth.LimitConfig
	// noTransport leaves the gRPC server's transport limits off the HTTP
	// port (cmd/callcontrold applies them).
	noTransport bool
}

func newHarness(t *testing.T, configure ...func(*harnessConfig)) *harness {
	t.Helper()
	var cfg harnessConfig
	for _, f := range configure {
		f(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := directory.Demo()
	store := callstore.New(callstore.Options{})
	clock := pbx.NewFakeClock(time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC))
	sw := sim.New(dir, store, sim.Options{Clock: clock, Logger: log})
	authn, err := auth.NewAuthenticator(context.Background(), auth.Config{Tokens: dir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	srv, err := server.New(cfg.server, server.Deps{
		Store: store, Directory: dir, Switch: sw, Devices: sw, Simulator: sw,
		Authenticate: authn.Authenticate,
		Limiter:      auth.NewLimiter(cfg.limit),
		Logger:       log,
		Registry:     reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.noTransport {
		cfg.web.Transport = srv
	}
	ws, err := web.Listen("127.0.0.1:0", srv.GRPC(), cfg.web, nil)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- ws.Serve() }()
	h := &harness{t: t, base: "http://" + ws.Addr().String(), srv: srv, web: ws, reg: reg, clock: clock, sim: sw, store: store}
	t.Cleanup(func() {
		h.shutdown()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		sw.Close()
		store.Close()
		authn.Close()
	})
	return h
}

// shutdown drains and stops both servers, as cmd/callcontrold does.
func (h *harness) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	h.web.Shutdown(ctx, h.srv.Drain)
	h.srv.Shutdown(ctx)
	http.DefaultClient.CloseIdleConnections()
}

// post sends body to path with the given headers, curl style, and returns
// the status and the body.
func (h *harness) post(path, contentType, token, body string) (int, http.Header, string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.base+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return h.do(req)
}

func (h *harness) do(req *http.Request) (int, http.Header, string) {
	h.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: read body: %v", req.Method, req.URL.Path, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// watchClient is a generic Connect client of WatchCalls (connect-go needs
// no generated code of its own for that).
func (h *harness) watchClient(httpClient connect.HTTPClient, opts ...connect.ClientOption) *connect.Client[callcontrolv1.WatchCallsRequest, callcontrolv1.WatchCallsResponse] {
	return connect.NewClient[callcontrolv1.WatchCallsRequest, callcontrolv1.WatchCallsResponse](
		httpClient, h.base+servicePath+"WatchCalls", opts...)
}

func dialClient(httpClient connect.HTTPClient, base string, opts ...connect.ClientOption) *connect.Client[callcontrolv1.DialRequest, callcontrolv1.DialResponse] {
	return connect.NewClient[callcontrolv1.DialRequest, callcontrolv1.DialResponse](httpClient, base+servicePath+"Dial", opts...)
}

// h2cClient speaks HTTP/2 without TLS, as gRPC clients do on a cleartext
// port.
func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p, DialContext: (&net.Dialer{}).DialContext}}
}

func withToken[T any](msg *T, token string) *connect.Request[T] {
	req := connect.NewRequest(msg)
	req.Header().Set("Authorization", "Bearer "+token)
	return req
}
