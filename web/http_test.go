package web_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestCORS(t *testing.T) {
	h := newHarness(t, func(c *harnessConfig) { c.web.AllowedOrigins = []string{"https://crm.example.com/"} })
	preflight := func(origin string) (int, http.Header) {
		req, _ := http.NewRequest(http.MethodOptions, h.base+servicePath+"Dial", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type,connect-protocol-version")
		code, hdr, _ := h.do(req)
		return code, hdr
	}
	code, hdr := preflight("https://crm.example.com")
	if code != http.StatusNoContent || hdr.Get("Access-Control-Allow-Origin") != "https://crm.example.com" ||
		!strings.Contains(hdr.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight from an allowed origin: got %d %v", code, hdr)
	}
	code, hdr = preflight("https://evil.example.com")
	if code != http.StatusForbidden || hdr.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from another origin: got %d %v, want 403 without CORS headers", code, hdr)
	}

	for origin, want := range map[string]string{"https://crm.example.com": "https://crm.example.com", "https://evil.example.com": ""} {
		req, _ := http.NewRequest(http.MethodPost, h.base+servicePath+"ListCalls", strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer demo-alice")
		req.Header.Set("Origin", origin)
		code, hdr, body := h.do(req)
		if code != http.StatusOK || hdr.Get("Access-Control-Allow-Origin") != want {
			t.Errorf("POST from %s: got %d, Access-Control-Allow-Origin %q, want 200 and %q: %s", origin, code, hdr.Get("Access-Control-Allow-Origin"), want, body)
		}
		if want != "" && !strings.Contains(hdr.Get("Access-Control-Expose-Headers"), "Grpc-Status-Details-Bin") {
			t.Errorf("POST from %s: status headers not exposed: %v", origin, hdr)
		}
	}
}

func TestNoCORSByDefault(t *testing.T) {
	h := newHarness(t)
	req, _ := http.NewRequest(http.MethodOptions, h.base+servicePath+"Dial", nil)
	req.Header.Set("Origin", "https://crm.example.com")
	req.Header.Set("Access-Control-Request-Method", "POST")
	if code, hdr, _ := h.do(req); code != http.StatusForbidden || hdr.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight with no origins configured: got %d %v, want 403", code, hdr)
	}
}

func TestConsole(t *testing.T) {
	h := newHarness(t)
	req, _ := http.NewRequest(http.MethodGet, h.base+"/", nil)
	code, hdr, body := h.do(req)
	if code != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") || !strings.Contains(body, "<html") {
		t.Fatalf("GET /: got %d %q", code, hdr.Get("Content-Type"))
	}
	if !strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Errorf("GET /: no Content-Security-Policy: %v", hdr)
	}
	req, _ = http.NewRequest(http.MethodGet, h.base+"/no-such-file.js", nil)
	if code, _, _ := h.do(req); code != http.StatusNotFound {
		t.Errorf("GET /no-such-file.js: got %d, want 404", code)
	}
	req, _ = http.NewRequest(http.MethodDelete, h.base+"/", nil)
	if code, _, _ := h.do(req); code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE /: got %d, want 405", code)
	}
}

// TestTruncatedBody: a client that announces a body and stops sending it
// is answered (or cut off) once the body timeout passes; the handler is
// not held forever.
func TestTruncatedBody(t *testing.T) {
	h := newHarness(t, func(c *harnessConfig) { c.web.BodyTimeout = 100 * time.Millisecond })
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(waitLimit))
	_, err = conn.Write([]byte("POST " + servicePath + "ListCalls HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
		"Authorization: Bearer demo-alice\r\nContent-Length: 100\r\n\r\n{\"filter\":"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || parseError(t, string(body)).Code != "deadline_exceeded" {
		t.Errorf("truncated body: got HTTP %d %s, want 408 deadline_exceeded", resp.StatusCode, body)
	}
}
