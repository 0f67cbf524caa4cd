package server

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"callcontrold/auth"
	"callcontrold/directory"
)

func TestLogLinesCarryTheCaller(t *testing.T) {
	var buf bytes.Buffer
	log := withIdentity(slog.New(slog.NewTextHandler(&buf, nil)))
	if withIdentity(log) != log {
		t.Errorf("withIdentity wrapped an already wrapped logger again")
	}
	alice := &auth.Principal{Login: "alice", Role: directory.RoleUser}

	// A handler's context carries the principal itself.
	log.InfoContext(auth.WithPrincipal(context.Background(), alice), "in handler")
	// The logging interceptor's context only has the slot auth fills.
	slotted := withIdentitySlot(context.Background())
	if _, err := recordIdentity(func(ctx context.Context) (context.Context, error) {
		return auth.WithPrincipal(ctx, alice), nil
	})(slotted); err != nil {
		t.Fatal(err)
	}
	log.With("k", "v").InfoContext(slotted, "in interceptor")
	// Nobody authenticated: no identity, and no made-up one.
	log.InfoContext(withIdentitySlot(context.Background()), "anonymous")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d log lines, want 3:\n%s", len(lines), buf.String())
	}
	for i, want := range []bool{true, true, false} {
		got := strings.Contains(lines[i], "login=alice role=user")
		if got != want {
			t.Errorf("line %d %q: has identity = %v, want %v", i, lines[i], got, want)
		}
	}
}

// A request's trace context (the caller's, through the stats handler)
// puts the trace and span ids on its log lines.
func TestLogLinesCarryTheTrace(t *testing.T) {
	var buf bytes.Buffer
	log := withIdentity(slog.New(slog.NewTextHandler(&buf, nil)))
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
	})
	log.InfoContext(trace.ContextWithSpanContext(context.Background(), sc), "traced")
	log.InfoContext(context.Background(), "untraced")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	const want = "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7"
	if len(lines) != 2 || !strings.Contains(lines[0], want) || strings.Contains(lines[1], "trace_id") {
		t.Errorf("got lines %q, want %q on the first only", lines, want)
	}
}
