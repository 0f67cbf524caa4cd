// Package echo quotes a client's input inside an error message without
// letting the input make the error unreadable.
//
// Error messages and details travel back in the response trailers, and
// clients bound the size of those (grpc-go's upcoming default and the
// C-core clients' default are 8 KiB): an error quoting a 10 KB number in
// full reaches the client as INTERNAL (RST_STREAM) instead of the code and
// details it explains. Every place that puts request input into an error
// goes through [Quote], which keeps a short prefix and says the length.
package echo

import (
	"strconv"
	"unicode/utf8"
)

// MaxQuoted is the longest input quoted in full, in bytes: the longest
// valid number (32 characters) fits, so a client sees its whole mistake
// whenever it is short.
const MaxQuoted = 40

// Quote returns s in Go double-quoted syntax if it is at most MaxQuoted
// bytes long; otherwise the quoted first MaxQuoted bytes (cut at a rune
// boundary), an ellipsis and the length: "1111..."... (10240 bytes).
func Quote(s string) string {
	if len(s) <= MaxQuoted {
		return strconv.Quote(s)
	}
	cut := MaxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "... (" + strconv.Itoa(len(s)) + " bytes)"
}

// Clip shortens a text that may contain input (a message built elsewhere)
// to at most max bytes, cut at a rune boundary and marked as cut (a max
// shorter than the mark gives the mark alone).
func Clip(s string, max int) string {
	const mark = "... (truncated)"
	if len(s) <= max {
		return s
	}
	cut := max - len(mark)
	if cut < 0 {
		cut = 0
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
