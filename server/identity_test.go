package server

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

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
