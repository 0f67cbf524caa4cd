package web_test

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"callcontrold/internal/testcert"
	"callcontrold/web"
)

// TestTLS: with the gRPC server's TLS settings (ALPN h2 only, as
// auth.TLSConfig makes them), the HTTP port serves HTTP/2 and HTTP/1.1
// clients alike.
func TestTLS(t *testing.T) {
	h := newHarness(t)
	cert, pool := testcert.SelfSigned(t)
	ws, err := web.Listen("127.0.0.1:0", h.srv.GRPC(), web.Config{}, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- ws.Serve() }()
	defer func() {
		ws.Shutdown(t.Context(), nil)
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	if !strings.HasPrefix(ws.URL(), "https://") {
		t.Errorf("URL %q is not https", ws.URL())
	}
	for _, tc := range []struct {
		name  string
		h2    bool
		proto int
	}{{"HTTP/2", true, 2}, {"HTTP/1.1", false, 1}} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: tc.h2}
		if !tc.h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		req, _ := http.NewRequest(http.MethodPost, ws.URL()+strings.TrimPrefix(servicePath, "/")+"ListCalls", strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer demo-alice")
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		resp.Body.Close()
		tr.CloseIdleConnections()
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != tc.proto {
			t.Errorf("%s: got %s over HTTP/%d", tc.name, resp.Status, resp.ProtoMajor)
		}
	}
}

// TestCleartextURL: without TLS, the URL Start logs and URL returns are
// http:// however the serving goroutine and the caller interleave (to
// serve HTTP/2, http.Server.Serve gives itself a TLS config).
func TestCleartextURL(t *testing.T) {
	h := newHarness(t)
	var logged bytes.Buffer
	ws, err := web.Start("127.0.0.1:0", h.srv.GRPC(), web.Config{}, nil, slog.New(slog.NewTextHandler(&logged, nil)))
	if err != nil {
		t.Fatal(err)
	}
	startLog := logged.String()     // Start logs the URL before it returns; later lines are failures
	resp, err := http.Get(ws.URL()) // the console: Serve is running by now
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	ws.Shutdown(t.Context(), nil)
	want := "http://" + ws.Addr().String() + "/"
	if ws.URL() != want {
		t.Errorf("URL() = %q, want %q", ws.URL(), want)
	}
	if !strings.Contains(startLog, "url="+want) {
		t.Errorf("Start logged %q, want url=%s", startLog, want)
	}
}
