package directory

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
)

// DefaultSIPRealm is the digest realm of SIP accounts when neither the
// file (sip_realm) nor the device says otherwise.
const DefaultSIPRealm = "callcontrold"

// Limits of a SIP account when the device does not set them, and the
// largest values a device may set.
const (
	DefaultMaxRegistrations = 3
	DefaultMaxDialogs       = 4
	maxMaxRegistrations     = 32
	maxMaxDialogs           = 64
)

// SIPAccount is how a phone authenticates to the registrar and what it
// may do once registered. The password is never stored: only the digest
// HA1 (H(username:realm:password)) for each accepted algorithm, which is
// all a digest verifier needs (RFC 7616, RFC 8760).
//
// Printing or logging an account shows its username and realm only.
type SIPAccount struct {
	Username string // digest username (the user part phones register with)
	Realm    string // digest realm the HA1 was computed with

	// HA1MD5 is MD5(username:realm:password), nil when the account does
	// not accept MD5. HA1SHA256 is the SHA-256 equivalent, nil when it
	// does not accept SHA-256. At least one is set.
	HA1MD5    []byte
	HA1SHA256 []byte

	// RemoteAnswer is how the phone can be told to answer a ringing call
	// (the API's Talk): RemoteAnswerTalkEvent for the desk phones that
	// answer an in-dialog "NOTIFY Event: talk", RemoteAnswerNone (the
	// default: soft phones usually cannot) for the others.
	RemoteAnswer RemoteAnswer

	MaxRegistrations int // bindings (contacts) kept at once
	MaxDialogs       int // calls (dialogs) the device takes part in at once
}

// RemoteAnswer is how a SIP phone can be told to answer a ringing call,
// the value of a device's sip.remote_answer key.
type RemoteAnswer string

// The ways to answer a phone remotely.
const (
	// RemoteAnswerNone: the phone cannot be told to answer; Talk on a
	// ringing call of it is refused as not supported.
	RemoteAnswerNone RemoteAnswer = "none"
	// RemoteAnswerTalkEvent: the phone answers when it receives a NOTIFY
	// with "Event: talk" inside the ringing call's dialog (Broadsoft's
	// convention, followed by Polycom, Yealink, Cisco SPA and others;
	// often an option to enable on the phone).
	RemoteAnswerTalkEvent RemoteAnswer = "talk-event"
)

// String shows the account without its secrets.
func (a SIPAccount) String() string { return fmt.Sprintf("%s@%s", a.Username, a.Realm) }

// GoString keeps %#v from printing the HA1s.
func (a SIPAccount) GoString() string { return "directory.SIPAccount{" + a.String() + "}" }

// LogValue keeps slog from printing the HA1s.
func (a SIPAccount) LogValue() slog.Value {
	return slog.GroupValue(slog.String("username", a.Username), slog.String("realm", a.Realm))
}

// SIPHA1MD5 returns MD5(username:realm:password) in hex, the value of a
// device's sip.ha1_md5 key.
func SIPHA1MD5(username, realm, password string) string {
	h := md5.Sum([]byte(username + ":" + realm + ":" + password))
	return hex.EncodeToString(h[:])
}

// SIPHA1SHA256 returns SHA-256(username:realm:password) in hex, the value
// of a device's sip.ha1_sha256 key.
func SIPHA1SHA256(username, realm, password string) string {
	h := sha256.Sum256([]byte(username + ":" + realm + ":" + password))
	return hex.EncodeToString(h[:])
}

// sipEntry is a device's sip block in the file.
type sipEntry struct {
	Username         string `yaml:"username"`
	Realm            string `yaml:"realm"`
	HA1MD5           string `yaml:"ha1_md5"`
	HA1SHA256        string `yaml:"ha1_sha256"`
	RemoteAnswer     string `yaml:"remote_answer"`
	MaxRegistrations int    `yaml:"max_registrations"`
	MaxDialogs       int    `yaml:"max_dialogs"`
}

// buildSIPAccount validates a device's sip block. The username defaults
// to the device name without "SIP/", the realm to the file's sip_realm.
func (b *builder) buildSIPAccount(e deviceEntry, i int) (*SIPAccount, error) {
	s := e.SIP
	if !strings.HasPrefix(e.Name, "SIP/") {
		return nil, b.errf("device", e.Name, i, "only SIP devices have sip credentials")
	}
	a := &SIPAccount{
		Username: s.Username, Realm: s.Realm, RemoteAnswer: RemoteAnswer(s.RemoteAnswer),
		MaxRegistrations: s.MaxRegistrations, MaxDialogs: s.MaxDialogs,
	}
	switch a.RemoteAnswer {
	case "":
		a.RemoteAnswer = RemoteAnswerNone
	case RemoteAnswerNone, RemoteAnswerTalkEvent:
	default:
		return nil, b.errf("device", e.Name, i, "sip.remote_answer %q must be %s or %s", s.RemoteAnswer, RemoteAnswerTalkEvent, RemoteAnswerNone)
	}
	if a.Username == "" {
		a.Username = strings.TrimPrefix(e.Name, "SIP/")
	}
	if !validIdent(a.Username) {
		return nil, b.errf("device", e.Name, i, "sip.username %q must be letters, digits, '-', '_' or '.'", a.Username)
	}
	if a.Realm == "" {
		a.Realm = b.d.sipRealm
	}
	if !validRealm(a.Realm) {
		return nil, b.errf("device", e.Name, i, "sip.realm %q must be 1 to 128 printable characters without quotes or backslashes", a.Realm)
	}
	var err error
	if a.HA1MD5, err = decodeHA1(s.HA1MD5, md5.Size); err != nil {
		return nil, b.errf("device", e.Name, i, "sip.ha1_md5: %v", err)
	}
	if a.HA1SHA256, err = decodeHA1(s.HA1SHA256, sha256.Size); err != nil {
		return nil, b.errf("device", e.Name, i, "sip.ha1_sha256: %v", err)
	}
	if a.HA1MD5 == nil && a.HA1SHA256 == nil {
		return nil, b.errf("device", e.Name, i, "sip needs ha1_md5 or ha1_sha256 (the password is never stored)")
	}
	if a.MaxRegistrations, err = limit(s.MaxRegistrations, DefaultMaxRegistrations, maxMaxRegistrations); err != nil {
		return nil, b.errf("device", e.Name, i, "sip.max_registrations: %v", err)
	}
	if a.MaxDialogs, err = limit(s.MaxDialogs, DefaultMaxDialogs, maxMaxDialogs); err != nil {
		return nil, b.errf("device", e.Name, i, "sip.max_dialogs: %v", err)
	}
	if j, dup := b.sipUserIdx[a.Username]; dup {
		return nil, b.errf("device", e.Name, i, "sip.username %q is also the username of device at index %d", a.Username, j)
	}
	b.sipUserIdx[a.Username] = i
	return a, nil
}

// decodeHA1 reads a hex HA1 of size bytes; "" is no HA1 (nil).
func decodeHA1(s string, size int) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	raw, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(raw) != size {
		// The value is not quoted: it may be a password pasted by
		// mistake, and errors end up in logs.
		return nil, fmt.Errorf("want %d hex digits, got %d characters that are not (never put the password here)", 2*size, len(s))
	}
	return raw, nil
}

// limit applies a default to an unset (0) limit and bounds a set one.
func limit(v, def, most int) (int, error) {
	switch {
	case v == 0:
		return def, nil
	case v < 0 || v > most:
		return 0, fmt.Errorf("%d is not between 1 and %d", v, most)
	}
	return v, nil
}

func validRealm(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return false
		}
	}
	return true
}
