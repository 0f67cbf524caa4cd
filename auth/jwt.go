package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"callcontrold/directory"
	"callcontrold/internal/echo"
)

// JWTConfig configures the verification of JWT bearer tokens against a
// JSON Web Key Set. Exactly one of JWKSFile and JWKSURL is required, and
// so are Issuer and Audience: a token minted by the right issuer for
// another service must not open this one.
type JWTConfig struct {
	JWKSFile string // path of a JWKS (JSON) file
	JWKSURL  string // URL of a JWKS, e.g. https://idp.example/.well-known/jwks.json
	Issuer   string // required value of "iss"
	Audience string // required member of "aud"

	// RefreshInterval is how often the JWKS is reloaded (file or URL), so
	// that key rotation needs no restart. Zero means 10 minutes; negative
	// disables the periodic reload. A token signed by an unknown key also
	// triggers a reload, at most every 30 seconds.
	RefreshInterval time.Duration

	LoginClaim     string        // claim holding the login; default "sub"
	RoleClaim      string        // claim holding the role name; default "role"
	CompaniesClaim string        // administered companies (array or string); default "companies"
	CompanyClaim   string        // home company; default "company"
	Leeway         time.Duration // clock skew tolerated on exp, nbf and iat

	HTTPClient *http.Client // fetches JWKSURL; nil means a private client with a 10s timeout
}

const (
	defaultJWKSRefresh    = 10 * time.Minute
	minKeyMissRefresh     = 30 * time.Second
	jwksFetchTimeout      = 10 * time.Second
	maxJWKSBytes          = 1 << 20
	minRSABits            = 2048
	nameClaim             = "name"
	allowedAlgorithmsText = "RS256, ES256 or EdDSA"
)

// verKey is one usable public key of the JWKS, with the only algorithm it
// may verify. Binding the algorithm to the key type at load time is what
// makes algorithm confusion (an RSA key used as an HMAC secret, alg none)
// impossible whatever the token's header says.
type verKey struct {
	kid string
	alg jwa.SignatureAlgorithm
	key any // *rsa.PublicKey, *ecdsa.PublicKey (P-256) or ed25519.PublicKey
}

type jwtVerifier struct {
	cfg        JWTConfig
	log        *slog.Logger
	client     *http.Client
	ownsClient bool
	parseOpts  []jwt.ParseOption // validation options shared by every parse

	keys atomic.Pointer[[]verKey]

	principals principalCache // by claimsKey

	kick      chan struct{} // a token named an unknown key: reload soon
	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

func newJWTVerifier(ctx context.Context, cfg JWTConfig, log *slog.Logger) (*jwtVerifier, error) {
	if (cfg.JWKSFile == "") == (cfg.JWKSURL == "") {
		return nil, errors.New("auth: JWT configuration needs exactly one of a JWKS file and a JWKS URL")
	}
	if cfg.Issuer == "" {
		return nil, errors.New("auth: JWT configuration needs the issuer (iss) to accept")
	}
	if cfg.Audience == "" {
		return nil, errors.New("auth: JWT configuration needs the audience (aud) of this service")
	}
	if cfg.Leeway < 0 {
		return nil, fmt.Errorf("auth: JWT leeway %v is negative", cfg.Leeway)
	}
	setDefault(&cfg.LoginClaim, "sub")
	setDefault(&cfg.RoleClaim, "role")
	setDefault(&cfg.CompaniesClaim, "companies")
	setDefault(&cfg.CompanyClaim, "company")
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = defaultJWKSRefresh
	}
	v := &jwtVerifier{
		cfg:    cfg,
		log:    log,
		client: cfg.HTTPClient,
		kick:   make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	if v.client == nil {
		// A private transport, so that Close can drop its idle
		// connections and leave no goroutine behind.
		v.client = &http.Client{
			Timeout:   jwksFetchTimeout,
			Transport: http.DefaultTransport.(*http.Transport).Clone(),
		}
		v.ownsClient = true
	}
	v.parseOpts = []jwt.ParseOption{
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithAcceptableSkew(cfg.Leeway),
		// A token without an expiry would be valid forever.
		jwt.WithRequiredClaim("exp"),
	}
	keys, err := v.load(ctx)
	if err != nil {
		return nil, err
	}
	v.keys.Store(&keys)
	v.ctx, v.cancel = context.WithCancel(context.Background())
	go v.refreshLoop()
	return v, nil
}

func setDefault(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

func (v *jwtVerifier) close() {
	v.closeOnce.Do(func() {
		v.cancel()
		<-v.done
		if v.ownsClient {
			v.client.CloseIdleConnections()
		}
	})
}

func (v *jwtVerifier) source() string {
	if v.cfg.JWKSFile != "" {
		return "JWKS file " + v.cfg.JWKSFile
	}
	return "JWKS URL " + v.cfg.JWKSURL
}

// refreshLoop reloads the JWKS periodically and on unknown keys. A failed
// reload keeps the previous keys: an identity provider's outage must not
// lock everybody out.
func (v *jwtVerifier) refreshLoop() {
	defer close(v.done)
	var tick <-chan time.Time
	if v.cfg.RefreshInterval > 0 {
		t := time.NewTicker(v.cfg.RefreshInterval)
		defer t.Stop()
		tick = t.C
	}
	var last time.Time
	for {
		select {
		case <-v.ctx.Done():
			return
		case <-tick:
		case <-v.kick:
			if time.Since(last) < minKeyMissRefresh {
				continue
			}
		}
		last = time.Now()
		ctx, cancel := context.WithTimeout(v.ctx, jwksFetchTimeout)
		keys, err := v.load(ctx)
		cancel()
		if err != nil {
			if v.ctx.Err() == nil {
				v.log.Warn("JWKS reload failed; keeping the previous keys", "error", err)
			}
			continue
		}
		v.keys.Store(&keys)
	}
}

// load reads and parses the JWKS and keeps the keys this service accepts.
func (v *jwtVerifier) load(ctx context.Context) ([]verKey, error) {
	var data []byte
	if v.cfg.JWKSFile != "" {
		b, err := os.ReadFile(v.cfg.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("auth: reading JWKS file: %w", err)
		}
		data = b
	} else {
		b, err := v.fetch(ctx)
		if err != nil {
			return nil, err
		}
		data = b
	}
	set, err := jwk.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("auth: parsing %s: %w", v.source(), err)
	}
	var keys []verKey
	for i := range set.Len() {
		k, _ := set.Key(i)
		vk, ok, why := usableKey(k)
		if !ok {
			kid, _ := k.KeyID()
			v.log.Debug("JWKS key skipped", "source", v.source(), "kid", kid, "reason", why)
			continue
		}
		keys = append(keys, vk)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("auth: %s has no signature key usable with %s", v.source(), allowedAlgorithmsText)
	}
	return keys, nil
}

func (v *jwtVerifier) fetch(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.cfg.JWKSURL, nil)
	if err != nil {
		return nil, fmt.Errorf("auth: JWKS URL %s: %w", v.cfg.JWKSURL, err)
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("auth: fetching JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("auth: fetching JWKS URL %s: HTTP status %s", v.cfg.JWKSURL, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("auth: reading JWKS URL %s: %w", v.cfg.JWKSURL, err)
	}
	if len(b) > maxJWKSBytes {
		return nil, fmt.Errorf("auth: JWKS URL %s: document larger than %d bytes", v.cfg.JWKSURL, maxJWKSBytes)
	}
	return b, nil
}

// usableKey turns a JWK into a verification key, or says why not. Private
// keys are reduced to their public half; symmetric keys are refused.
func usableKey(k jwk.Key) (verKey, bool, string) {
	if use, ok := k.KeyUsage(); ok && use != "" && use != jwk.ForSignature.String() {
		return verKey{}, false, "use is not sig"
	}
	pub, err := jwk.PublicKeyOf(k)
	if err != nil {
		return verKey{}, false, "no public key: " + err.Error()
	}
	var raw any
	if err := jwk.Export(pub, &raw); err != nil {
		return verKey{}, false, "cannot export: " + err.Error()
	}
	var vk verKey
	vk.kid, _ = k.KeyID()
	switch key := raw.(type) {
	case *rsa.PublicKey:
		if key.N.BitLen() < minRSABits {
			return verKey{}, false, "RSA key shorter than 2048 bits"
		}
		vk.alg, vk.key = jwa.RS256(), key
	case *ecdsa.PublicKey:
		if key.Curve != elliptic.P256() {
			return verKey{}, false, "EC key not on P-256"
		}
		vk.alg, vk.key = jwa.ES256(), key
	case ed25519.PublicKey:
		vk.alg, vk.key = jwa.EdDSA(), key
	default:
		return verKey{}, false, fmt.Sprintf("key type %s not accepted", k.KeyType())
	}
	if a, ok := k.Algorithm(); ok && a.String() != vk.alg.String() {
		return verKey{}, false, "key alg " + a.String() + " not accepted"
	}
	return vk, true, ""
}

// jwtHeader is the part of the JOSE header read before verification, only
// to choose the key: the signature check itself is jwx's.
type jwtHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

func parseJWTHeader(token string) (jwtHeader, error) {
	seg, _, _ := strings.Cut(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return jwtHeader{}, errors.New("header is not base64url")
	}
	var h jwtHeader
	if err := json.Unmarshal(b, &h); err != nil {
		return jwtHeader{}, errors.New("header is not a JSON object")
	}
	return h, nil
}

func allowedAlg(alg string) (jwa.SignatureAlgorithm, bool) {
	switch alg {
	case "RS256":
		return jwa.RS256(), true
	case "ES256":
		return jwa.ES256(), true
	case "EdDSA":
		return jwa.EdDSA(), true
	}
	return jwa.SignatureAlgorithm{}, false
}

// verify checks a JWT and maps its claims to a principal.
func (v *jwtVerifier) verify(ctx context.Context, token string) (*Principal, error) {
	h, err := parseJWTHeader(token)
	if err != nil {
		return nil, unauthenticated(ReasonTokenMalformed, "malformed JWT: "+err.Error())
	}
	alg, ok := allowedAlg(h.Alg)
	if !ok {
		return nil, unauthenticated(ReasonAlgNotAllowed,
			fmt.Sprintf("JWT algorithm %s is not allowed: want %s", echo.Quote(h.Alg), allowedAlgorithmsText))
	}
	var opts []jwt.ParseOption
	for _, k := range *v.keys.Load() {
		if k.alg == alg && (h.Kid == "" || k.kid == h.Kid) {
			opts = append(opts, jwt.WithKey(k.alg, k.key))
		}
	}
	if len(opts) == 0 {
		select { // maybe the issuer rotated its keys
		case v.kick <- struct{}{}:
		default:
		}
		return nil, unauthenticated(ReasonTokenInvalid,
			fmt.Sprintf("JWT signing key (kid %s, %s) is not in the %s", echo.Quote(h.Kid), h.Alg, v.source()))
	}
	opts = append(opts, v.parseOpts...)
	opts = append(opts, jwt.WithContext(ctx))
	tok, err := jwt.ParseString(token, opts...)
	if err != nil {
		return nil, jwtError(err)
	}
	return v.principal(tok)
}

// jwtError says which check failed, without echoing the token.
func jwtError(err error) error {
	switch {
	case errors.Is(err, jwt.TokenExpiredError()):
		return unauthenticated(ReasonTokenExpired, "JWT expired")
	case errors.Is(err, jwt.TokenNotYetValidError()):
		return unauthenticated(ReasonTokenInvalid, "JWT not valid yet (nbf)")
	case errors.Is(err, jwt.InvalidIssuerError()):
		return unauthenticated(ReasonTokenInvalid, "JWT issuer (iss) is not the configured issuer")
	case errors.Is(err, jwt.InvalidAudienceError()):
		return unauthenticated(ReasonTokenInvalid, "JWT audience (aud) does not include this service")
	case errors.Is(err, jwt.InvalidIssuedAtError()):
		return unauthenticated(ReasonTokenInvalid, "JWT issued in the future (iat)")
	case errors.Is(err, jwt.MissingRequiredClaimError()):
		return unauthenticated(ReasonTokenInvalid, "JWT lacks a required claim (exp)")
	case errors.Is(err, jws.VerifyError()):
		return unauthenticated(ReasonTokenInvalid, "JWT signature does not verify")
	case errors.Is(err, jwt.ValidateError()):
		return unauthenticated(ReasonTokenInvalid, "JWT claims are not valid")
	}
	return unauthenticated(ReasonTokenInvalid, "invalid JWT")
}

func (v *jwtVerifier) principal(tok jwt.Token) (*Principal, error) {
	login, _ := stringClaim(tok, v.cfg.LoginClaim)
	if login == "" {
		return nil, unauthenticated(ReasonTokenInvalid, fmt.Sprintf("JWT has no login claim %q", v.cfg.LoginClaim))
	}
	roleName, _ := stringClaim(tok, v.cfg.RoleClaim)
	role, ok := directory.ParseRole(roleName)
	if !ok {
		return nil, unauthenticated(ReasonTokenInvalid,
			fmt.Sprintf("JWT role claim %q: unknown role %s (want admin, sys-admin, company-admin or user)", v.cfg.RoleClaim, echo.Quote(roleName)))
	}
	company, _ := stringClaim(tok, v.cfg.CompanyClaim)
	companies, err := stringsClaim(tok, v.cfg.CompaniesClaim)
	if err != nil {
		return nil, unauthenticated(ReasonTokenInvalid, fmt.Sprintf("JWT claim %q: %v", v.cfg.CompaniesClaim, err))
	}
	// A user without a company would see nothing, or, worse, be taken
	// for a member of some default: refuse the token instead.
	if role == directory.RoleUser && company == "" {
		return nil, unauthenticated(ReasonTokenInvalid,
			fmt.Sprintf("JWT for a user has no company claim %q", v.cfg.CompanyClaim))
	}
	if role == directory.RoleCompanyAdmin && len(companies) == 0 {
		return nil, unauthenticated(ReasonTokenInvalid,
			fmt.Sprintf("JWT for a company-admin has no companies claim %q", v.cfg.CompaniesClaim))
	}
	name, _ := stringClaim(tok, nameClaim)
	p := &Principal{
		Login:     login,
		Name:      name,
		Role:      role,
		Company:   company,
		Companies: companies,
		Method:    MethodJWT,
	}
	return v.principals.share(claimsKeyOf(p), p), nil
}

func stringClaim(tok jwt.Token, name string) (string, bool) {
	var v any
	if err := tok.Get(name, &v); err != nil {
		return "", false
	}
	s, ok := v.(string)
	return s, ok
}

// stringsClaim reads an array of strings; a single string is accepted as
// a one-element array, as RFC 7519 does for "aud".
func stringsClaim(tok jwt.Token, name string) ([]string, error) {
	var v any
	if err := tok.Get(name, &v); err != nil {
		return nil, nil // absent
	}
	switch x := v.(type) {
	case string:
		if x == "" {
			return nil, nil
		}
		return []string{x}, nil
	case []string:
		return x, nil
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, errors.New("not an array of strings")
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, errors.New("not an array of strings")
}
