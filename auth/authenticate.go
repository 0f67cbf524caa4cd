package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"strings"

	"google.golang.org/grpc/metadata"

	"callcontrold/directory"
)

// TokenLookup finds the user holding a bearer token of the directory file.
// The directory implements it; tokens are only ever stored hashed.
type TokenLookup interface {
	UserByToken(directory.TokenHash) (*directory.User, bool)
}

// Config selects the token sources of an [Authenticator]. At least one
// source must be set.
type Config struct {
	Tokens TokenLookup  // directory tokens; nil disables them
	JWT    *JWTConfig   // JWTs verified against a JWKS; nil disables them
	Logger *slog.Logger // JWKS reload failures; nil means slog.Default()
}

// Authenticator turns the bearer token of a request into a [Principal].
// It is safe for concurrent use.
type Authenticator struct {
	tokens     TokenLookup
	jwt        *jwtVerifier
	principals principalCache // of directory users, by *directory.User
}

// NewAuthenticator builds an authenticator. With a JWT configuration it
// loads the JWKS before returning, so a wrong file or URL fails the start
// of the server rather than every request; ctx bounds that first load.
// Call Close to stop the JWKS refresh.
func NewAuthenticator(ctx context.Context, cfg Config) (*Authenticator, error) {
	if cfg.Tokens == nil && cfg.JWT == nil {
		return nil, errors.New("auth: no token source: need directory tokens or a JWT configuration")
	}
	a := &Authenticator{tokens: cfg.Tokens}
	if cfg.JWT != nil {
		log := cfg.Logger
		if log == nil {
			log = slog.Default()
		}
		v, err := newJWTVerifier(ctx, *cfg.JWT, log)
		if err != nil {
			return nil, err
		}
		a.jwt = v
	}
	return a, nil
}

// Close stops the background JWKS refresh, if any. It is idempotent.
func (a *Authenticator) Close() error {
	if a.jwt != nil {
		a.jwt.close()
	}
	return nil
}

// The fixed errors are built once: they are what a scanner or a
// misconfigured client hits in a tight loop.
var (
	errMissingToken = unauthenticated(ReasonTokenMissing,
		"missing bearer token: set metadata authorization: Bearer <token>")
	errNotBearer = unauthenticated(ReasonTokenMalformed,
		`malformed authorization metadata: want "Bearer <token>"`)
	errEmptyToken = unauthenticated(ReasonTokenMalformed,
		`malformed authorization metadata: empty bearer token, want "Bearer <token>"`)
	errTokenSpace = unauthenticated(ReasonTokenMalformed,
		"malformed authorization metadata: bearer token contains white space")
	errManyAuth = unauthenticated(ReasonTokenMalformed,
		"malformed authorization metadata: more than one authorization value")
	errUnknownToken = unauthenticated(ReasonTokenUnknown, "unknown bearer token")
)

// Authenticate reads "authorization: Bearer <token>" from the incoming
// metadata and returns a child context carrying the [Principal]. It has
// the signature of the go-grpc-middleware v2 auth.AuthFunc. Every failure
// is an [*AuthError] (who are you?, UNAUTHENTICATED once the server maps
// it); what the caller may do is decided later by the policy functions
// (PERMISSION_DENIED).
//
// A token with exactly two dots is a JWT when JWTs are configured;
// anything else is looked up among the directory tokens.
func (a *Authenticator) Authenticate(ctx context.Context) (context.Context, error) {
	token, err := bearerToken(ctx)
	if err != nil {
		return nil, err
	}
	p, err := a.authenticateToken(ctx, token)
	if err != nil {
		return nil, err
	}
	return WithPrincipal(ctx, p), nil
}

func (a *Authenticator) authenticateToken(ctx context.Context, token string) (*Principal, error) {
	if a.jwt != nil && strings.Count(token, ".") == 2 {
		return a.jwt.verify(ctx, token)
	}
	if a.tokens == nil {
		return nil, errUnknownToken
	}
	h := directory.HashToken(token)
	u, ok := a.tokens.UserByToken(h)
	if !ok || u == nil {
		return nil, errUnknownToken
	}
	// The lookup was by hash; confirm against the user's stored hashes in
	// constant time so that the check does not depend on how the lookup
	// is implemented (a map, a linear scan, a prefix index).
	match := 0
	for i := range u.Tokens {
		match |= subtle.ConstantTimeCompare(u.Tokens[i][:], h[:])
	}
	if match != 1 {
		return nil, errUnknownToken
	}
	if !validRole(u.Role) {
		return nil, unauthenticated(ReasonTokenInvalid, "login "+u.Login+" has no valid role in the directory")
	}
	if p, ok := a.principals.load(u); ok {
		return p, nil
	}
	return a.principals.share(u, &Principal{
		Login:     u.Login,
		UserID:    u.ID,
		Name:      u.Name,
		Role:      u.Role,
		Company:   u.Company,
		Companies: u.Companies, // shared: the directory is read-only
		Method:    MethodToken,
	}), nil
}

// bearerToken extracts the token of "authorization: Bearer <token>". The
// scheme is case-insensitive (RFC 9110); the token itself may not contain
// white space.
func bearerToken(ctx context.Context) (string, error) {
	// ValueFromIncomingContext, not FromIncomingContext: the latter copies
	// every header of the request, on every RPC.
	vals := metadata.ValueFromIncomingContext(ctx, "authorization")
	switch len(vals) {
	case 0:
		return "", errMissingToken
	case 1:
	default:
		return "", errManyAuth
	}
	v := vals[0]
	if strings.TrimSpace(v) == "" {
		return "", errMissingToken
	}
	scheme, rest, found := strings.Cut(v, " ")
	if !strings.EqualFold(scheme, "bearer") {
		return "", errNotBearer
	}
	if !found {
		return "", errEmptyToken
	}
	token := strings.TrimSpace(rest)
	if token == "" {
		return "", errEmptyToken
	}
	if strings.ContainsAny(token, " \t\r\n") {
		return "", errTokenSpace
	}
	return token, nil
}

// validRole reports whether r is one of the roles of the reference.
func validRole(r directory.Role) bool {
	_, ok := directory.ParseRole(r.String())
	return ok
}
