package auth

import (
	"errors"
	"sync"
	"testing"
	"time"

	"callcontrold/directory"
)

// swappableTokens is a TokenLookup whose users can be replaced or removed,
// as a directory reloaded from its file would.
type swappableTokens struct {
	mu    sync.Mutex
	users map[directory.TokenHash]*directory.User
	fresh bool // hand out a new *User on every lookup
}

func (s *swappableTokens) set(token string, u *directory.User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := directory.HashToken(token)
	if u == nil {
		delete(s.users, h)
		return
	}
	u.Tokens = []directory.TokenHash{h}
	s.users[h] = u
}

func (s *swappableTokens) UserByToken(h directory.TokenHash) (*directory.User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[h]
	if ok && s.fresh {
		c := *u
		u = &c
	}
	return u, ok
}

func principalOf(t *testing.T, a *Authenticator, token string) (*Principal, error) {
	t.Helper()
	ctx, err := a.Authenticate(withAuth("Bearer " + token))
	if err != nil {
		return nil, err
	}
	p, _ := FromContext(ctx)
	return p, nil
}

// A user's requests share one principal; a user replaced in the directory
// gets a new one (its new role at once), and a token the directory no
// longer has is refused although its principal was cached.
func TestPrincipalSharedPerUser(t *testing.T) {
	tokens := &swappableTokens{users: map[directory.TokenHash]*directory.User{}}
	tokens.set("t-alice", &directory.User{ID: 1, Login: "alice", Role: directory.RoleUser})
	tokens.set("t-bob", &directory.User{ID: 2, Login: "bob", Role: directory.RoleUser})
	a := &Authenticator{tokens: tokens}

	p1, err := principalOf(t, a, "t-alice")
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := principalOf(t, a, "t-alice")
	bob, _ := principalOf(t, a, "t-bob")
	if p1 != p2 {
		t.Errorf("two requests of alice got two principals, want one shared")
	}
	if bob == p1 || bob.Login != "bob" {
		t.Errorf("bob got %+v, want his own principal", bob)
	}

	tokens.set("t-alice", &directory.User{ID: 1, Login: "alice", Role: directory.RoleAdmin})
	p3, _ := principalOf(t, a, "t-alice")
	if p3.Role != directory.RoleAdmin {
		t.Errorf("after the directory changed alice's role: role %v, want %v", p3.Role, directory.RoleAdmin)
	}
	if p1.Role != directory.RoleUser {
		t.Errorf("the earlier principal changed: role %v, want %v", p1.Role, directory.RoleUser)
	}

	tokens.set("t-alice", nil)
	_, err = principalOf(t, a, "t-alice")
	var ae *AuthError
	if !errors.As(err, &ae) || ae.Reason != ReasonTokenUnknown {
		t.Errorf("removed token: got %v, want an *AuthError %s", err, ReasonTokenUnknown)
	}
}

// A lookup that returns a new *User every time cannot grow the cache past
// its bound.
func TestPrincipalCacheBounded(t *testing.T) {
	tokens := &swappableTokens{users: map[directory.TokenHash]*directory.User{}, fresh: true}
	tokens.set("t-alice", &directory.User{ID: 1, Login: "alice", Role: directory.RoleUser})
	a := &Authenticator{tokens: tokens}
	for range maxCachedPrincipals + 100 {
		if p, err := principalOf(t, a, "t-alice"); err != nil || p.Login != "alice" {
			t.Fatalf("got %+v, %v; want alice", p, err)
		}
	}
	if n := a.principals.n.Load(); n != maxCachedPrincipals {
		t.Errorf("cache holds %d principals, want the bound %d", n, maxCachedPrincipals)
	}
}

// JWTs with the same claims share one principal (two tokens of one user,
// or one token used twice); other claims get their own, and an expired
// token is refused although its principal is cached.
func TestJWTPrincipalShared(t *testing.T) {
	a := newJWTAuthenticator(t)
	k := newTestKeys(t)
	c := validClaims()
	first, second := k.ec.sign(t, c), k.rsa.sign(t, c)
	p1, err := principalOf(t, a, first)
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := principalOf(t, a, first)
	p3, _ := principalOf(t, a, second)
	if p1 != p2 || p1 != p3 {
		t.Errorf("one user's JWTs got principals %p, %p, %p, want one shared", p1, p2, p3)
	}

	other := c
	other.companies = []string{"acme"}
	p4, err := principalOf(t, a, k.ec.sign(t, other))
	if err != nil {
		t.Fatal(err)
	}
	if p4 == p1 || len(p4.Companies) != 1 {
		t.Errorf("a JWT with other companies got %+v, want its own principal", p4)
	}

	expired := c
	expired.exp = time.Now().Add(-time.Hour)
	_, err = principalOf(t, a, k.ec.sign(t, expired))
	var ae *AuthError
	if !errors.As(err, &ae) || ae.Reason != ReasonTokenExpired {
		t.Errorf("expired JWT of a cached principal: got %v, want an *AuthError %s", err, ReasonTokenExpired)
	}
}
