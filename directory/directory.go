// Package directory holds who and what exists on the PBX: companies,
// users (logins, roles, hashed bearer tokens), devices and extensions.
// It is loaded once from a YAML file (or the embedded demo directory) and
// is read-only afterwards, so it is safe for concurrent use.
package directory

import "crypto/sha256"

// DefaultCompany is the company whose plain users see calls in all
// companies.
const DefaultCompany = "default"

// Role is a login's role (the reference's Permissions section).
type Role uint8

// The roles.
const (
	RoleUnspecified Role = iota
	RoleAdmin
	RoleSysAdmin
	RoleCompanyAdmin
	RoleUser
)

var roleNames = [...]string{"unspecified", "admin", "sys-admin", "company-admin", "user"}

// String returns the role as written in the directory file.
func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return "invalid"
}

// ParseRole reads a role as written in the directory file.
func ParseRole(s string) (Role, bool) {
	for i, n := range roleNames {
		if i > 0 && n == s {
			return Role(i), true
		}
	}
	return RoleUnspecified, false
}

// TokenHash is the SHA-256 of a bearer token. Only hashes are stored.
type TokenHash [sha256.Size]byte

// HashToken hashes a bearer token for lookup.
func HashToken(token string) TokenHash { return sha256.Sum256([]byte(token)) }

// Company is a tenant of the PBX.
type Company struct {
	Name        string // identifier, e.g. "acme"
	DisplayName string
}

// User is a login (a contact of the PBX).
type User struct {
	ID        int64  // contact id
	Login     string // unique
	Name      string // display name
	Role      Role
	Company   string   // home company
	Companies []string // administered companies (company-admin only)
	Tokens    []TokenHash
}

// DeviceFeatures is what a handset can be told to do remotely.
type DeviceFeatures struct {
	Answer bool // can be told to answer (talk on a ringing call)
	Hold   bool // can be told to hold
	Talk   bool // can be told to take a call off hold
}

// Device is a phone line, browser phone, park orbit or queue.
type Device struct {
	Name        string // "SIP/201", "SIP/webrtc12", "Park/701", "Queue/q_600"
	DisplayName string
	Company     string
	Owner       string // login of the owner, "" if unowned
	WebRTC      bool
	Features    DeviceFeatures
	Extension   string // primary extension number, "" if none
	MailboxNew  int32
	MailboxOld  int32

	// SIP is how the phone registers with the sip driver; nil when the
	// device has no SIP credentials (it cannot register, and with the
	// sip driver it never rings).
	SIP *SIPAccount
}

// ExtensionType is what dialling an extension reaches.
type ExtensionType uint8

// The extension types.
const (
	ExtensionUnspecified ExtensionType = iota
	ExtensionDevice                    // rings one device
	ExtensionRingAll                   // A: rings all members at once
	ExtensionHunt                      // H: rings members one after another
	ExtensionQueue                     // Q: queues the caller, members ring
	ExtensionPark                      // park orbit
)

// Extension is a number of the dial plan.
type Extension struct {
	Number  string
	Company string
	Name    string
	Type    ExtensionType
	Members []string // device names, in hunt order
}
