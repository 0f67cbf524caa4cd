package pbx

import (
	"strings"
	"unicode/utf8"
)

// MaxCallerNameLen bounds a caller's display name in bytes: the API's
// own limit on a name a client gives (PlaceInboundCall's from_name).
const MaxCallerNameLen = 128

// callerName makes a display name that came from outside the API (a SIP
// From header: any bytes a far end chose) fit for the store: valid UTF-8,
// since protobuf clients refuse a string that is not (the whole
// ListCalls or WatchCalls response would fail to decode), and at most
// MaxCallerNameLen bytes, cut between characters.
func callerName(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= MaxCallerNameLen {
		return s
	}
	cut := MaxCallerNameLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
