package web_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// connectError is the Connect protocol's JSON error body.
type connectError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type  string          `json:"type"`
		Value string          `json:"value"`
		Debug json.RawMessage `json:"debug"`
	} `json:"details"`
}

func parseError(t *testing.T, body string) connectError {
	t.Helper()
	var e connectError
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Code == "" {
		t.Fatalf("body is not a Connect error (%v): %s", err, body)
	}
	return e
}

// TestUnaryJSON is the README's curl line: a JSON POST without any
// Connect header, answered in JSON.
func TestUnaryJSON(t *testing.T) {
	h := newHarness(t)
	code, hdr, body := h.post(servicePath+"Dial", "application/json", "demo-alice", `{"device":"SIP/201","number":"202"}`)
	if code != http.StatusOK {
		t.Fatalf("Dial: got %d, want 200: %s", code, body)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Dial: Content-Type %q, want application/json", ct)
	}
	var dial callcontrolv1.DialResponse
	if err := protojson.Unmarshal([]byte(body), &dial); err != nil {
		t.Fatalf("Dial response is not a DialResponse: %v: %s", err, body)
	}
	if dial.GetCall().GetDevice() != "SIP/201" {
		t.Errorf("Dial: call on %q, want SIP/201: %s", dial.GetCall().GetDevice(), body)
	}

	code, _, body = h.post(servicePath+"ListCalls", "application/json; charset=utf-8", "demo-alice", `{}`)
	if code != http.StatusOK {
		t.Fatalf("ListCalls: got %d, want 200: %s", code, body)
	}
	var list callcontrolv1.ListCallsResponse
	if err := protojson.Unmarshal([]byte(body), &list); err != nil {
		t.Fatalf("ListCalls response: %v: %s", err, body)
	}
	if got := len(list.GetCalls()); got != 2 {
		t.Errorf("ListCalls: got %d calls, want 2 (alice's leg and 202's): %s", got, body)
	}
}

// TestErrorJSON: an error's JSON carries the code, the message and the
// status details, decoded for people in "debug".
func TestErrorJSON(t *testing.T) {
	h := newHarness(t)
	code, _, body := h.post(servicePath+"Dial", "application/json", "demo-alice", `{"number":"202"}`)
	if code != http.StatusBadRequest {
		t.Fatalf("Dial without device: got %d, want 400: %s", code, body)
	}
	e := parseError(t, body)
	if e.Code != "invalid_argument" || len(e.Details) != 1 || e.Details[0].Type != "google.rpc.BadRequest" ||
		!strings.Contains(string(e.Details[0].Debug), `"field":"device"`) {
		t.Errorf("Dial without device: got %s, want invalid_argument with a BadRequest naming device", body)
	}

	// Hold on a call that is still ringing: FAILED_PRECONDITION with the
	// call's state and the states that allow hold.
	_, _, body = h.post(servicePath+"Dial", "application/json", "demo-alice", `{"device":"SIP/201","number":"202"}`)
	var dial callcontrolv1.DialResponse
	if err := protojson.Unmarshal([]byte(body), &dial); err != nil {
		t.Fatalf("Dial: %v: %s", err, body)
	}
	code, _, body = h.post(servicePath+"Hold", "application/json", "demo-alice", `{"uid":"`+jsonInt(dial.GetCall().GetUid())+`"}`)
	if code != http.StatusBadRequest {
		t.Fatalf("Hold while ringing: got %d, want 400: %s", code, body)
	}
	e = parseError(t, body)
	if e.Code != "failed_precondition" || len(e.Details) != 1 || e.Details[0].Type != "google.rpc.ErrorInfo" ||
		!strings.Contains(string(e.Details[0].Debug), `"reason":"CALL_STATE"`) ||
		!strings.Contains(string(e.Details[0].Debug), `"allowed_states"`) {
		t.Errorf("Hold while ringing: got %s, want failed_precondition with ErrorInfo CALL_STATE", body)
	}
}

func jsonInt(v int64) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestBadInput: whatever a client sends, the answer is a Connect error
// with the right code and a message, never a 500.
func TestBadInput(t *testing.T) {
	h := newHarness(t, func(c *harnessConfig) { c.web.MaxBodyBytes = 1024 })
	big := `{"number":"` + strings.Repeat("1", 2000) + `"}`
	for _, tc := range []struct {
		name              string
		method, path      string
		contentType, body string
		token             string
		chunked           bool
		wantStatus        int
		wantCode, wantMsg string
	}{
		{"text content type", "POST", "ListCalls", "text/plain", `{}`, "demo-alice", false, 415, "invalid_argument", "unsupported content type"},
		{"no content type", "POST", "ListCalls", "", `{}`, "demo-alice", false, 415, "invalid_argument", "unsupported content type"},
		{"form content type", "POST", "ListCalls", "application/x-www-form-urlencoded", `a=b`, "demo-alice", false, 415, "invalid_argument", "unsupported content type"},
		{"malformed JSON", "POST", "ListCalls", "application/json", `{"filter":`, "demo-alice", false, 400, "invalid_argument", "malformed json"},
		{"JSON of the wrong type", "POST", "Hold", "application/json", `{"uid":"nope"}`, "demo-alice", false, 400, "invalid_argument", "uid"},
		{"malformed binary body", "POST", "ListCalls", "application/proto", "\xff\xff", "demo-alice", false, 400, "invalid_argument", "not a valid protobuf"},
		{"unknown field", "POST", "Dial", "application/json", `{"device":"SIP/201","nubmer":"202"}`, "demo-alice", false, 400, "invalid_argument", `unknown field "nubmer"`},
		{"unknown method", "POST", "Teleport", "application/json", `{}`, "demo-alice", false, 404, "unimplemented", "unknown method"},
		{"GET on a method", "GET", "ListCalls", "", ``, "demo-alice", false, 405, "invalid_argument", "POST"},
		{"missing token", "POST", "ListCalls", "application/json", `{}`, "", false, 401, "unauthenticated", "bearer token"},
		{"wrong token", "POST", "ListCalls", "application/json", `{}`, "demo-nobody", false, 401, "unauthenticated", ""},
		{"body over the limit", "POST", "Dial", "application/json", big, "demo-alice", false, 413, "resource_exhausted", "limit"},
		{"chunked body over the limit", "POST", "Dial", "application/json", big, "demo-alice", true, 413, "resource_exhausted", "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, h.base+servicePath+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			if tc.chunked {
				req.ContentLength = -1 // unknown length: sent chunked
			}
			status, _, body := h.do(req)
			if status != tc.wantStatus {
				t.Errorf("got HTTP %d, want %d: %s", status, tc.wantStatus, body)
			}
			e := parseError(t, body)
			if e.Code != tc.wantCode || !strings.Contains(e.Message, tc.wantMsg) {
				t.Errorf("got %s: %q, want %s with a message containing %q", e.Code, e.Message, tc.wantCode, tc.wantMsg)
			}
		})
	}
	t.Run("unknown path elsewhere", func(t *testing.T) {
		code, _, body := h.post("/pkg.Nope/Method", "application/json", "demo-alice", `{}`)
		if code != http.StatusNotFound || parseError(t, body).Code != "unimplemented" {
			t.Errorf("got %d %s, want 404 unimplemented", code, body)
		}
	})
}

// TestListDevicesControllable: the console asks which phones are the
// caller's own with ListDevices(controllable).
func TestListDevicesControllable(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		token string
		want  []string
	}{
		{"demo-alice", []string{"SIP/201", "SIP/201_2"}},
		{"demo-bob", []string{"SIP/webrtc11"}},
		{"demo-sysadmin", nil},
	} {
		code, _, body := h.post("/callcontrol.v1.DeviceService/ListDevices", "application/json", tc.token, `{"controllable":true}`)
		if code != http.StatusOK {
			t.Fatalf("%s: got %d: %s", tc.token, code, body)
		}
		var resp callcontrolv1.ListDevicesResponse
		if err := protojson.Unmarshal([]byte(body), &resp); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range resp.GetDevices() {
			got = append(got, d.GetName())
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: controllable devices %v, want %v", tc.token, got, tc.want)
		}
	}
}
