package auth

import (
	"strings"
	"sync"
	"sync/atomic"

	"callcontrold/directory"
)

// maxCachedPrincipals bounds a principalCache: a directory's users, or
// the distinct claim sets of the JWTs seen (a TokenLookup that returned a
// new *User on every lookup, or tokens of ever new users, would otherwise
// grow it without end; past the bound, principals are built per request,
// as without a cache).
const maxCachedPrincipals = 1 << 14

// principalCache holds one *Principal per key, shared by every request
// that has it: a Principal is immutable, and a WatchCalls stream keeps its
// request's for its whole life (112 bytes, and with a JWT its claims'
// strings: ≈ 190 bytes). Only the principal is shared: every request's
// token is still checked (a directory token looked up, a JWT verified,
// its expiry included), so a token the directory no longer has, or an
// expired JWT, is refused at once, and the principal is the one of what
// the check returned: a user replaced in the directory, or a JWT with
// other claims, has another key.
type principalCache struct {
	m sync.Map     // key → *Principal
	n atomic.Int64 // entries in m
}

// load returns the principal cached for key.
func (c *principalCache) load(key any) (*Principal, bool) {
	p, ok := c.m.Load(key)
	if !ok {
		return nil, false
	}
	return p.(*Principal), true
}

// share returns the principal cached for key, or caches p for it (if
// there is room) and returns p.
func (c *principalCache) share(key any, p *Principal) *Principal {
	if cached, ok := c.load(key); ok {
		return cached
	}
	if c.n.Load() >= maxCachedPrincipals {
		return p
	}
	if cached, loaded := c.m.LoadOrStore(key, p); loaded {
		return cached.(*Principal)
	}
	c.n.Add(1)
	return p
}

// claimsKey is a JWT principal's key: everything a JWT sets in it.
type claimsKey struct {
	login, name, company string
	companies            string // joined by a NUL, which no claim contains
	role                 directory.Role
}

func claimsKeyOf(p *Principal) claimsKey {
	return claimsKey{login: p.Login, name: p.Name, company: p.Company, companies: strings.Join(p.Companies, "\x00"), role: p.Role}
}
