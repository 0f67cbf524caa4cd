package server_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

const callControl = "callcontrol.v1.CallControlService"

// rpcMetric returns the sample of the metric name whose labels include
// want, or nil.
func rpcMetric(t *testing.T, h *harness, name string, want map[string]string) *dto.Metric {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			matched := 0
			for _, l := range m.GetLabel() {
				if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
					matched++
				}
			}
			if matched == len(want) {
				return m
			}
		}
	}
	return nil
}

// rpcCount is the value of a counter (or a histogram's sample count); a
// missing sample fails the test: every method's are exported from the
// start.
func rpcCount(t *testing.T, h *harness, name, typ, method, code string) float64 {
	t.Helper()
	want := map[string]string{"grpc_type": typ, "grpc_service": callControl, "grpc_method": method}
	if code != "" {
		want["grpc_code"] = code
	}
	m := rpcMetric(t, h, name, want)
	if m == nil {
		t.Fatalf("%s %v: no sample", name, want)
	}
	if hist := m.GetHistogram(); hist != nil {
		return float64(hist.GetSampleCount())
	}
	return m.GetCounter().GetValue()
}

// The per-RPC metrics keep the names and labels dashboards know
// (grpc_server_started_total, _handled_total, _msg_received_total,
// _msg_sent_total, grpc_server_handling_seconds) and count what the
// service did: unary successes and failures by code, and every message a
// WatchCalls stream sends.
func TestRPCMetrics(t *testing.T) {
	h := newHarness(t)

	// Exported at zero before the first call.
	if got := rpcCount(t, h, "grpc_server_handled_total", "server_stream", "WatchCalls", "Canceled"); got != 0 {
		t.Fatalf("WatchCalls Canceled before any call: %v", got)
	}

	if _, err := h.as("alice").calls.ListCalls(h.ctx(), &callcontrolv1.ListCallsRequest{}); err != nil {
		t.Fatal(err)
	}
	_, err := h.as("alice").calls.GetCall(h.ctx(), &callcontrolv1.GetCallRequest{})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("GetCall without an id: %v, want InvalidArgument", err)
	}
	for _, c := range []struct {
		name, method, code string
		want               float64
	}{
		{"grpc_server_started_total", "ListCalls", "", 1},
		{"grpc_server_handled_total", "ListCalls", "OK", 1},
		{"grpc_server_msg_received_total", "ListCalls", "", 1},
		{"grpc_server_msg_sent_total", "ListCalls", "", 1},
		{"grpc_server_handling_seconds", "ListCalls", "", 1},
		{"grpc_server_handled_total", "GetCall", "InvalidArgument", 1},
		{"grpc_server_handled_total", "GetCall", "OK", 0},
		{"grpc_server_msg_sent_total", "GetCall", "", 0}, // no response, no message
	} {
		if got := rpcCount(t, h, c.name, "unary", c.method, c.code); got != c.want {
			t.Errorf("%s{%s %s} = %v, want %v", c.name, c.method, c.code, got, c.want)
		}
	}

	w := h.watch("alice", &callcontrolv1.WatchCallsRequest{})
	w.start()
	h.dialCall("alice", "SIP/201", "202")
	// The client read started, snapshot_end and these batches at least.
	read := float64(2 + len(w.until(h.store.Revision())))
	w.stop()
	if got := rpcCount(t, h, "grpc_server_started_total", "server_stream", "WatchCalls", ""); got != 1 {
		t.Errorf("WatchCalls started %v, want 1", got)
	}
	deadline := time.Now().Add(waitLimit) // a liveness bound: the handler ends after the cancel
	for rpcCount(t, h, "grpc_server_handled_total", "server_stream", "WatchCalls", "Canceled") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("WatchCalls not counted as Canceled within %v", waitLimit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := rpcCount(t, h, "grpc_server_msg_received_total", "server_stream", "WatchCalls", ""); got != 1 {
		t.Errorf("WatchCalls messages received %v, want 1 (the request)", got)
	}
	if got := rpcCount(t, h, "grpc_server_msg_sent_total", "server_stream", "WatchCalls", ""); read < 3 || got < read {
		t.Errorf("WatchCalls messages sent %v, want at least the %v the client read (3 or more)", got, read)
	}
	if got := rpcCount(t, h, "grpc_server_handling_seconds", "server_stream", "WatchCalls", ""); got != 1 {
		t.Errorf("WatchCalls handling time observed %v times, want 1", got)
	}
}

// A stream's log line comes at its end, with logging's fields (the
// messages skip logging's wrapper, not its line) and the caller's
// identity.
func TestStreamLogLine(t *testing.T) {
	var buf syncWriter
	h := newHarness(t, withLogger(slog.New(slog.NewJSONHandler(&buf, nil))))
	w := h.watch("alice", &callcontrolv1.WatchCallsRequest{})
	w.start()
	w.stop()

	var line map[string]any
	deadline := time.Now().Add(waitLimit) // a liveness bound: the handler ends after the cancel
	for line == nil {
		for _, l := range strings.Split(buf.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["grpc.method"] == "WatchCalls" {
				line = m
			}
		}
		if line == nil && time.Now().After(deadline) {
			t.Fatalf("no log line for the stream in:\n%s", buf.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	want := map[string]any{
		"msg": "finished call", "grpc.code": "Canceled", "grpc.service": callControl,
		"grpc.method_type": "server_stream", "login": "alice", "role": "user",
	}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("log line %s = %v, want %v (line %v)", k, line[k], v, line)
		}
	}
	for _, k := range []string{"peer.address", "grpc.start_time", "grpc.time_ms"} {
		if line[k] == nil {
			t.Errorf("log line without %s: %v", k, line)
		}
	}
}
