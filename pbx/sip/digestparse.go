package sip

import (
	"strconv"
	"strings"
)

// credentials are the fields of a Digest Authorization (or
// Proxy-Authorization) header value the authenticator uses.
type credentials struct {
	Username, Realm, Nonce, URI, Response, Algorithm, Cnonce, QOP string
	Nc                                                            int
}

// parseCredentials reads a Digest credentials header value with the
// grammar of github.com/icholy/digest's ParseCredentials (its tests
// compare the two): "Digest " (any case), then key=value pairs separated
// by commas, a key and an unquoted value made of letters, digits and
// '-', a quoted value with backslash escapes, spaces around the
// separators. Keys are compared as written (lower case), unknown keys are
// skipped, a later key wins, and nc is hexadecimal. It returns false on
// anything else. It exists because that parser allocates a 4 KiB reader
// per header, on every authenticated INVITE: values here are substrings
// of s, copied only when they hold an escape. One difference: a quoted
// value with invalid UTF-8 keeps its bytes, where that parser replaced
// them with U+FFFD (the phone hashed its bytes, not the replacement).
func parseCredentials(s string) (c credentials, ok bool) {
	const prefix = "Digest "
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return c, false
	}
	s = s[len(prefix):]
	for first := true; ; first = false {
		s = skipSpaces(s)
		if s == "" {
			return c, true
		}
		if !first {
			if s[0] != ',' {
				return c, false
			}
			s = skipSpaces(s[1:])
		}
		var key, value string
		key, s = cutIdent(s)
		s = skipSpaces(s)
		if s == "" || s[0] != '=' {
			return c, false
		}
		s = skipSpaces(s[1:])
		if s != "" && s[0] == '"' {
			if value, s, ok = cutQuoted(s[1:]); !ok {
				return c, false
			}
		} else {
			value, s = cutIdent(s)
		}
		switch key {
		case "username":
			c.Username = value
		case "realm":
			c.Realm = value
		case "nonce":
			c.Nonce = value
		case "uri":
			c.URI = value
		case "response":
			c.Response = value
		case "algorithm":
			c.Algorithm = value
		case "cnonce":
			c.Cnonce = value
		case "qop":
			c.QOP = value
		case "nc":
			nc, err := strconv.ParseInt(value, 16, 32)
			if err != nil {
				return c, false
			}
			c.Nc = int(nc)
		}
	}
}

func skipSpaces(s string) string {
	for s != "" && s[0] == ' ' {
		s = s[1:]
	}
	return s
}

// cutIdent splits s after its leading run of letters, digits and '-'.
func cutIdent(s string) (ident, rest string) {
	i := 0
	for i < len(s) {
		b := s[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-') {
			break
		}
		i++
	}
	return s[:i], s[i:]
}

// cutQuoted reads a quoted string's content up to its closing quote (s
// starts after the opening one), a backslash escaping the next
// character; false without a closing quote.
func cutQuoted(s string) (value, rest string, ok bool) {
	i := strings.IndexAny(s, `"\`)
	if i < 0 {
		return "", "", false
	}
	if s[i] == '"' {
		return s[:i], s[i+1:], true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
			if i == len(s) {
				return "", "", false
			}
			b.WriteByte(s[i])
		case '"':
			return b.String(), s[i+1:], true
		default:
			b.WriteByte(s[i])
		}
	}
	return "", "", false
}
