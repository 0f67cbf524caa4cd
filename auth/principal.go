// Package auth decides who is calling and what they may see and do.
//
// Authentication turns the bearer token of a request into a [Principal]
// (directory tokens, or JWTs verified against a JWKS) and is meant to run
// as the go-grpc-middleware auth interceptor's AuthFunc. Authorization is a
// set of plain functions ([CanSeeCall], [CanControl], [CanSend], ...)
// implementing the Permissions section of the Call API reference; they are
// allocation-free and safe for concurrent use because the watch fan-out
// calls them once per event per watcher. [Limiter] caps control and read
// RPC rates and concurrent watches per login; [TLSConfig] builds the
// optional TLS/mTLS server configuration. Errors are plain Go errors
// ([AuthError], [LimitError]); the server turns them into statuses.
package auth

import (
	"context"

	"callcontrold/directory"
)

// Authentication methods recorded in [Principal.Method].
const (
	MethodToken = "token" // a bearer token of the directory file
	MethodJWT   = "jwt"   // a JWT verified against the configured JWKS
)

// Principal is the authenticated caller. A *Principal stored in a context
// is shared by every handler of the request and by the watch fan-out, so it
// must be treated as immutable (Companies included).
type Principal struct {
	Login     string         // unique login; a device's Owner names it
	UserID    int64          // contact id in the directory, 0 if unknown (JWT)
	Name      string         // display name, for logs and UIs
	Role      directory.Role // never RoleUnspecified for an authenticated caller
	Company   string         // home company
	Companies []string       // administered companies (company-admin only)
	Method    string         // MethodToken or MethodJWT
}

type principalKey struct{}

// principalCtx carries a principal: context.WithValue's context holds its
// key and value as interfaces (48 bytes), this one a pointer (24 bytes),
// and a WatchCalls stream keeps its context for as long as it lives.
type principalCtx struct {
	context.Context
	p *Principal
}

func (c *principalCtx) Value(key any) any {
	if _, ok := key.(principalKey); ok {
		return c.p
	}
	return c.Context.Value(key)
}

// WithPrincipal returns a child context carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return &principalCtx{Context: ctx, p: p}
}

// FromContext returns the principal stored by [WithPrincipal]. The boolean
// is false when the request was not authenticated (for example a health
// check that the auth interceptor skips), so handlers can refuse rather
// than act as nobody.
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok && p != nil
}
