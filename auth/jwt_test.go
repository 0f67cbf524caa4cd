package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"google.golang.org/grpc/metadata"

	"callcontrold/directory"
)

const (
	testIssuer   = "https://idp.test"
	testAudience = "callcontrold"
)

// signer is a private key of the test identity provider.
type signer struct {
	kid string
	alg jwa.SignatureAlgorithm
	key crypto.Signer
}

type testKeys struct {
	rsa, ec, ed signer
	stranger    signer // same kid as ec, not in the JWKS
	unknownKid  signer // a kid the JWKS does not have
	jwks        []byte // the public keys of rsa, ec and ed
}

var (
	keysOnce sync.Once
	keys     testKeys
)

// newTestKeys generates the keys once per test binary: RSA generation is
// slow under the race detector.
func newTestKeys(t testing.TB) *testKeys {
	t.Helper()
	keysOnce.Do(func() {
		rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
		must(t, err)
		ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(t, err)
		_, edKey, err := ed25519.GenerateKey(rand.Reader)
		must(t, err)
		other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(t, err)
		keys = testKeys{
			rsa:        signer{"rsa-1", jwa.RS256(), rsaKey},
			ec:         signer{"ec-1", jwa.ES256(), ecKey},
			ed:         signer{"ed-1", jwa.EdDSA(), edKey},
			stranger:   signer{"ec-1", jwa.ES256(), other},
			unknownKid: signer{"ec-9", jwa.ES256(), other},
		}
		set := jwk.NewSet()
		for _, s := range []signer{keys.rsa, keys.ec, keys.ed} {
			k, err := jwk.Import(s.key.Public())
			must(t, err)
			must(t, k.Set(jwk.KeyIDKey, s.kid))
			must(t, set.AddKey(k))
		}
		keys.jwks, err = json.Marshal(set)
		must(t, err)
	})
	return &keys
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// claims are the claims of a test token; zero fields are left out.
type claims struct {
	sub, iss, role, company string
	aud                     []string
	companies               []string
	exp, nbf                time.Time
}

func validClaims() claims {
	return claims{
		sub: "carol", iss: testIssuer, aud: []string{testAudience}, role: "company-admin",
		company: "acme", companies: []string{"acme", "globex"}, exp: time.Now().Add(time.Hour),
	}
}

func (s signer) sign(t testing.TB, c claims) string {
	t.Helper()
	b := jwt.NewBuilder().Subject(c.sub).Issuer(c.iss).Audience(c.aud).IssuedAt(time.Now())
	if !c.exp.IsZero() {
		b = b.Expiration(c.exp)
	}
	if !c.nbf.IsZero() {
		b = b.NotBefore(c.nbf)
	}
	if c.role != "" {
		b = b.Claim("role", c.role)
	}
	if c.company != "" {
		b = b.Claim("company", c.company)
	}
	if c.companies != nil {
		b = b.Claim("companies", c.companies)
	}
	tok, err := b.Build()
	must(t, err)
	k, err := jwk.Import(s.key)
	must(t, err)
	must(t, k.Set(jwk.KeyIDKey, s.kid))
	out, err := jwt.Sign(tok, jwt.WithKey(s.alg, k))
	must(t, err)
	return string(out)
}

// newJWTAuthenticator verifies JWTs against a JWKS file of the test keys
// and accepts the directory tokens too.
func newJWTAuthenticator(t testing.TB) *Authenticator {
	t.Helper()
	k := newTestKeys(t)
	path := filepath.Join(t.TempDir(), "jwks.json")
	must(t, os.WriteFile(path, k.jwks, 0o600))
	a, err := NewAuthenticator(context.Background(), Config{
		Tokens: directory.Demo(),
		JWT:    &JWTConfig{JWKSFile: path, Issuer: testIssuer, Audience: testAudience},
	})
	must(t, err)
	t.Cleanup(func() { a.Close() })
	return a
}

// withAuth is an incoming request context with the given authorization
// values.
func withAuth(vals ...string) context.Context {
	md := metadata.MD{}
	for _, v := range vals {
		md.Append("authorization", v)
	}
	return metadata.NewIncomingContext(context.Background(), md)
}

// checkUnauthenticated checks err is an *AuthError (UNAUTHENTICATED once
// the server maps it), says why (wantMsg), carries a reason, and does not
// leak the token.
func checkUnauthenticated(t *testing.T, err error, wantMsg, token string) {
	t.Helper()
	var ae *AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("got error %v, want an *AuthError", err)
	}
	if !strings.Contains(ae.Msg, wantMsg) {
		t.Errorf("got message %q, want it to contain %q", ae.Msg, wantMsg)
	}
	if token != "" && len(token) > 4 && strings.Contains(ae.Msg, token) {
		t.Errorf("message %q leaks the token", ae.Msg)
	}
	if ae.Reason == "" {
		t.Errorf("got no reason in %+v", ae)
	}
}

func TestJWTValid(t *testing.T) {
	a := newJWTAuthenticator(t)
	k := newTestKeys(t)
	want := &Principal{
		Login: "carol", Role: directory.RoleCompanyAdmin, Company: "acme",
		Companies: []string{"acme", "globex"}, Method: MethodJWT,
	}
	for _, s := range []signer{k.rsa, k.ec, k.ed} {
		t.Run(s.alg.String(), func(t *testing.T) {
			ctx, err := a.Authenticate(withAuth("Bearer " + s.sign(t, validClaims())))
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			got, ok := FromContext(ctx)
			if !ok {
				t.Fatal("no principal in the returned context")
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("principal (-want +got):\n%s", diff)
			}
		})
	}
}

func TestJWTInvalid(t *testing.T) {
	a := newJWTAuthenticator(t)
	k := newTestKeys(t)
	with := func(f func(*claims)) claims {
		c := validClaims()
		f(&c)
		return c
	}
	valid := k.ec.sign(t, validClaims())
	parts := strings.Split(valid, ".")
	seg := func(v any) string {
		b, err := json.Marshal(v)
		must(t, err)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	adminPayload := seg(map[string]any{
		"sub": "carol", "iss": testIssuer, "aud": testAudience, "role": "admin",
		"exp": time.Now().Add(time.Hour).Unix(),
	})
	tests := []struct {
		name    string
		token   string
		wantMsg string
	}{
		{"expired", k.rsa.sign(t, with(func(c *claims) { c.exp = time.Now().Add(-time.Minute) })), "JWT expired"},
		{"not yet valid", k.ed.sign(t, with(func(c *claims) { c.nbf = time.Now().Add(time.Hour) })), "not valid yet"},
		{"no exp", k.ec.sign(t, with(func(c *claims) { c.exp = time.Time{} })), "exp"},
		{"wrong audience", k.ec.sign(t, with(func(c *claims) { c.aud = []string{"another-service"} })), "audience"},
		{"wrong issuer", k.ed.sign(t, with(func(c *claims) { c.iss = "https://evil.test" })), "issuer"},
		{"unsigned alg none", seg(map[string]string{"alg": "none", "typ": "JWT"}) + "." + adminPayload + ".", `algorithm "none" is not allowed`},
		{"HS256 with a public key as secret", seg(map[string]string{"alg": "HS256", "kid": "rsa-1"}) + "." + adminPayload + "." + parts[2], `algorithm "HS256" is not allowed`},
		{"tampered payload", parts[0] + "." + adminPayload + "." + parts[2], "signature does not verify"},
		{"key not in JWKS, known kid", k.stranger.sign(t, validClaims()), "signature does not verify"},
		{"key not in JWKS, unknown kid", k.unknownKid.sign(t, validClaims()), `kid "ec-9"`},
		{"header not base64", "%%%." + parts[1] + "." + parts[2], "malformed JWT"},
		{"unknown role", k.rsa.sign(t, with(func(c *claims) { c.role = "superuser" })), `unknown role "superuser"`},
		{"no role", k.rsa.sign(t, with(func(c *claims) { c.role = "" })), "unknown role"},
		{"user without company", k.rsa.sign(t, with(func(c *claims) { c.role, c.company = "user", "" })), "no company claim"},
		{"no login", k.rsa.sign(t, with(func(c *claims) { c.sub = "" })), `no login claim "sub"`},
		// Header values are quoted by prefix and length, never whole.
		{"10 KB algorithm", seg(map[string]string{"alg": strings.Repeat("A", 10240)}) + "." + adminPayload + ".",
			`algorithm "` + strings.Repeat("A", 40) + `"... (10240 bytes) is not allowed`},
		{"10 KB kid", seg(map[string]string{"alg": "ES256", "kid": strings.Repeat("k", 10240)}) + "." + adminPayload + "." + parts[2],
			`kid "` + strings.Repeat("k", 40) + `"... (10240 bytes)`},
		{"10 KB role", k.rsa.sign(t, with(func(c *claims) { c.role = strings.Repeat("r", 10240) })), `"... (10240 bytes)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.Authenticate(withAuth("Bearer " + tt.token))
			checkUnauthenticated(t, err, tt.wantMsg, tt.token)
		})
	}
}

func TestJWTCustomClaimsAndLeeway(t *testing.T) {
	k := newTestKeys(t)
	path := filepath.Join(t.TempDir(), "jwks.json")
	must(t, os.WriteFile(path, k.jwks, 0o600))
	a, err := NewAuthenticator(context.Background(), Config{JWT: &JWTConfig{
		JWKSFile: path, Issuer: testIssuer, Audience: testAudience,
		LoginClaim: "company", // any claim may carry the login
		Leeway:     2 * time.Minute,
	}})
	must(t, err)
	defer a.Close()
	c := validClaims()
	c.exp = time.Now().Add(-time.Minute) // within the leeway
	ctx, err := a.Authenticate(withAuth("Bearer " + k.ed.sign(t, c)))
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if p, _ := FromContext(ctx); p.Login != "acme" {
		t.Errorf("got login %q, want %q (from the company claim)", p.Login, "acme")
	}
	// Without JWT verification of directory tokens configured, a
	// directory token is unknown.
	_, err = a.Authenticate(withAuth("Bearer demo-alice"))
	checkUnauthenticated(t, err, "unknown bearer token", "demo-alice")
}

func TestJWKSURL(t *testing.T) {
	k := newTestKeys(t)
	var mu sync.Mutex
	body, fetches := []byte(`{"keys":[]}`), 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fetches++
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	defer srv.Close()
	cfg := &JWTConfig{JWKSURL: srv.URL, Issuer: testIssuer, Audience: testAudience}

	// An empty key set fails the start, naming the URL.
	_, err := NewAuthenticator(context.Background(), Config{JWT: cfg})
	if err == nil || !strings.Contains(err.Error(), srv.URL) {
		t.Fatalf("got error %v, want one naming %s", err, srv.URL)
	}

	mu.Lock()
	body = k.jwks
	mu.Unlock()
	a, err := NewAuthenticator(context.Background(), Config{JWT: cfg})
	must(t, err)
	defer a.Close()
	if _, err := a.Authenticate(withAuth("Bearer " + k.rsa.sign(t, validClaims()))); err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if fetches != 2 {
		t.Errorf("got %d fetches, want 2 (one per NewAuthenticator)", fetches)
	}
}

func TestJWKSRotation(t *testing.T) {
	k := newTestKeys(t)
	path := filepath.Join(t.TempDir(), "jwks.json")
	// Start with only the RSA key.
	set := jwk.NewSet()
	rk, err := jwk.Import(k.rsa.key.Public())
	must(t, err)
	must(t, rk.Set(jwk.KeyIDKey, k.rsa.kid))
	must(t, set.AddKey(rk))
	b, err := json.Marshal(set)
	must(t, err)
	must(t, os.WriteFile(path, b, 0o600))
	a, err := NewAuthenticator(context.Background(), Config{JWT: &JWTConfig{
		JWKSFile: path, Issuer: testIssuer, Audience: testAudience, RefreshInterval: 10 * time.Millisecond,
	}})
	must(t, err)
	defer a.Close()
	tok := k.ed.sign(t, validClaims())
	_, err = a.Authenticate(withAuth("Bearer " + tok))
	checkUnauthenticated(t, err, "not in the JWKS file", tok)

	// The issuer rotates: the new key is picked up without a restart.
	must(t, os.WriteFile(path+".tmp", k.jwks, 0o600))
	must(t, os.Rename(path+".tmp", path))
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err = a.Authenticate(withAuth("Bearer " + tok))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotated key not picked up: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestJWTConfigErrors(t *testing.T) {
	k := newTestKeys(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "jwks.json")
	must(t, os.WriteFile(good, k.jwks, 0o600))
	bad := filepath.Join(dir, "bad.json")
	must(t, os.WriteFile(bad, []byte("not json"), 0o600))
	hmacOnly := filepath.Join(dir, "hmac.json")
	must(t, os.WriteFile(hmacOnly, []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"}]}`), 0o600))
	missing := filepath.Join(dir, "missing.json")
	tests := []struct {
		name    string
		cfg     JWTConfig
		wantErr string
	}{
		{"no source", JWTConfig{Issuer: testIssuer, Audience: testAudience}, "exactly one of"},
		{"two sources", JWTConfig{JWKSFile: good, JWKSURL: "https://x", Issuer: testIssuer, Audience: testAudience}, "exactly one of"},
		{"no issuer", JWTConfig{JWKSFile: good, Audience: testAudience}, "issuer"},
		{"no audience", JWTConfig{JWKSFile: good, Issuer: testIssuer}, "audience"},
		{"missing file", JWTConfig{JWKSFile: missing, Issuer: testIssuer, Audience: testAudience}, missing},
		{"not JSON", JWTConfig{JWKSFile: bad, Issuer: testIssuer, Audience: testAudience}, bad},
		{"only an HMAC key", JWTConfig{JWKSFile: hmacOnly, Issuer: testIssuer, Audience: testAudience}, "no signature key usable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := NewAuthenticator(context.Background(), Config{JWT: &tt.cfg})
			if err == nil {
				a.Close()
				t.Fatalf("got no error, want one containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got error %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
	if _, err := NewAuthenticator(context.Background(), Config{}); err == nil {
		t.Error("NewAuthenticator with no source: got no error")
	}
}

func TestDirectoryTokens(t *testing.T) {
	a := newJWTAuthenticator(t)
	for _, u := range directory.Demo().Users() {
		ctx, err := a.Authenticate(withAuth("Bearer demo-" + u.Login))
		if err != nil {
			t.Fatalf("%s: %v", u.Login, err)
		}
		p, _ := FromContext(ctx)
		want := &Principal{Login: u.Login, UserID: u.ID, Name: u.Name, Role: u.Role,
			Company: u.Company, Companies: u.Companies, Method: MethodToken}
		if diff := cmp.Diff(want, p); diff != "" {
			t.Errorf("%s: principal (-want +got):\n%s", u.Login, diff)
		}
	}
	// The scheme is case-insensitive (RFC 9110 §11.1).
	if _, err := a.Authenticate(withAuth("bearer demo-bob")); err != nil {
		t.Errorf("lower-case scheme: %v", err)
	}
}

func TestMalformedAuthorization(t *testing.T) {
	a := newJWTAuthenticator(t)
	tests := []struct {
		name    string
		ctx     context.Context
		wantMsg string
	}{
		{"missing", withAuth(), "missing bearer token: set metadata authorization: Bearer <token>"},
		{"no metadata", context.Background(), "missing bearer token"},
		{"empty value", withAuth(""), "missing bearer token"},
		{"Basic x", withAuth("Basic x"), `want "Bearer <token>"`},
		{"token without scheme", withAuth("demo-alice"), `want "Bearer <token>"`},
		{"Bearer", withAuth("Bearer"), "empty bearer token"},
		{"Bearer and a space", withAuth("Bearer "), "empty bearer token"},
		{"Bearer and two spaces", withAuth("Bearer  "), "empty bearer token"},
		{"two tokens", withAuth("Bearer demo-alice demo-bob"), "white space"},
		{"two values", withAuth("Bearer demo-alice", "Bearer demo-bob"), "more than one"},
		{"unknown token", withAuth("Bearer demo-mallory"), "unknown bearer token"},
		{"unknown dotted token", withAuth("Bearer a.b.c"), "malformed JWT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, err := a.Authenticate(tt.ctx)
			if ctx != nil {
				t.Error("got a context with the error, want nil")
			}
			checkUnauthenticated(t, err, tt.wantMsg, "demo-mallory")
		})
	}
}

func TestLogAttrs(t *testing.T) {
	a := newJWTAuthenticator(t)
	ctx, err := a.Authenticate(withAuth("Bearer demo-acme-admin"))
	must(t, err)
	p, _ := FromContext(ctx)
	var got []string
	for _, a := range LogAttrs(p) {
		got = append(got, a.String())
	}
	want := []string{"login=acme-admin", "role=company-admin", "auth_method=token"}
	if !slices.Equal(got, want) {
		t.Errorf("LogAttrs = %v, want %v", got, want)
	}
	if f := LogAttrs(nil); f != nil {
		t.Errorf("LogAttrs(nil) = %v, want nil", f)
	}
}
