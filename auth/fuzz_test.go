package auth

import (
	"errors"
	"strings"
	"testing"
)

// FuzzAuthenticate feeds arbitrary authorization values, JWT-shaped ones
// included, through the whole authentication path: it must never panic,
// and anything but a demo token or a JWT of the test keys is refused with
// UNAUTHENTICATED.
func FuzzAuthenticate(f *testing.F) {
	k := newTestKeys(f)
	valid := k.ec.sign(f, validClaims())
	a := newJWTAuthenticator(f)
	for _, s := range []string{
		"", "Bearer", "Bearer ", "Basic x", "Bearer demo-alice", "bearer demo-bob",
		"Bearer " + valid, "Bearer " + valid[:len(valid)-3], "Bearer a.b.c", "Bearer ..",
		"Bearer eyJhbGciOiJub25lIn0.e30.", "Bearer e30.e30.e30",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		ctx, err := a.Authenticate(withAuth(v))
		if err != nil {
			if !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("Authenticate(%q): got %v, want an *AuthError", v, err)
			}
			return
		}
		p, ok := FromContext(ctx)
		if !ok || p.Login == "" || !validRole(p.Role) {
			t.Fatalf("Authenticate(%q) accepted a bad principal %+v", v, p)
		}
		if p.Method == MethodToken && !strings.Contains(v, "demo-"+p.Login) {
			t.Fatalf("Authenticate(%q) accepted as %s", v, p.Login)
		}
	})
}

// The directory-token path runs on every RPC: one hash, one map lookup,
// one small allocation for the principal (plus the context value).
func BenchmarkAuthenticateToken(b *testing.B) {
	a := newJWTAuthenticator(b)
	ctx := withAuth("Bearer demo-alice")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authenticate(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAuthenticateJWT(b *testing.B) {
	a := newJWTAuthenticator(b)
	ctx := withAuth("Bearer " + newTestKeys(b).ec.sign(b, validClaims()))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authenticate(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
