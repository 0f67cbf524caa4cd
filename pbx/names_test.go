package pbx

import (
	"strings"
	"testing"
	"unicode/utf8"

	"callcontrold/callstore"
)

// TestInboundCallerNameCleaned: a caller's display name from outside
// (bytes that are not UTF-8, a name longer than the API allows) reaches
// the legs it rings as valid UTF-8 within MaxCallerNameLen bytes, cut
// between characters; a name that fits is kept as it is.
func TestInboundCallerNameCleaned(t *testing.T) {
	for _, tc := range []struct{ name, from, want string }{
		{"fits", "Carol Ü", "Carol Ü"},
		{"not UTF-8", "Car\xffol\xc3", "Car\uFFFDol\uFFFD"},
		{"too long", strings.Repeat("é", 100), strings.Repeat("é", 64)},
		{"too long, cut inside a character", "a" + strings.Repeat("é", 100), "a" + strings.Repeat("é", 63)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _, _ := newTestEngine(t)
			_, calls := mustOK3[RemoteID, []*callstore.Call](t)(e.Inbound(t.Context(), "+442079460001", tc.from, "202"))
			if len(calls) != 1 {
				t.Fatalf("rang %d phones, want 1", len(calls))
			}
			got := calls[0].Name
			if got != tc.want || !utf8.ValidString(got) || len(got) > MaxCallerNameLen {
				t.Errorf("callee leg's name %q (%d bytes), want %q", got, len(got), tc.want)
			}
		})
	}
}
