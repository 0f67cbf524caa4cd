package echo

import (
	"strings"
	"testing"
	"unicode/utf8"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{"202", `"202"`},
		{strings.Repeat("1", MaxQuoted), `"` + strings.Repeat("1", MaxQuoted) + `"`},
		{strings.Repeat("1", 10240), `"` + strings.Repeat("1", MaxQuoted) + `"... (10240 bytes)`},
		// A cut never splits a rune: 2-byte runes, MaxQuoted is even.
		{strings.Repeat("é", 1000), `"` + strings.Repeat("é", MaxQuoted/2) + `"... (2000 bytes)`},
		{"a\x00b", `"a\x00b"`},
	}
	for _, tt := range tests {
		if got := Quote(tt.in); got != tt.want {
			t.Errorf("Quote(%.50q): got %s, want %s", tt.in, got, tt.want)
		}
	}
	// An odd cut inside a 3-byte rune backs up to its start.
	if got := Quote("x" + strings.Repeat("€", 100)); !utf8.ValidString(got) || len(got) > MaxQuoted+30 {
		t.Errorf("Quote of runes: %q", got)
	}
}

func TestClip(t *testing.T) {
	if got := Clip("short", 100); got != "short" {
		t.Errorf("Clip(short): %q", got)
	}
	long := strings.Repeat("é", 1000)
	got := Clip(long, 101)
	if len(got) > 101 || !utf8.ValidString(got) || !strings.HasSuffix(got, "... (truncated)") {
		t.Errorf("Clip(long, 101): %q (%d bytes)", got, len(got))
	}
	if got := Clip(long, 3); len(got) > len("... (truncated)") {
		t.Errorf("Clip(long, 3): %q", got)
	}
}
