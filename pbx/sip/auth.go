package sip

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"callcontrold/directory"

	sipmsg "github.com/emiago/sipgo/sip"
)

// AuthConfig bounds the digest authenticator. Zero fields take the
// defaults named beside them.
type AuthConfig struct {
	// NonceLifetime is how long a challenge's nonce is accepted (5m).
	// A correct answer with an older nonce gets a new challenge marked
	// stale, so the phone retries without asking anyone for a password.
	NonceLifetime time.Duration
	// MaxChallengesPerSource bounds the pending nonces of one source IP
	// (16); a new challenge evicts that source's oldest.
	MaxChallengesPerSource int
	// MaxChallenges bounds the pending nonces of all sources (8192); a
	// new challenge evicts the oldest.
	MaxChallenges int
	// FailureBurst is how many wrong answers a source IP may give in a
	// row (5) before every request from it is refused with 403 until
	// FailureRefill (10s) has passed for each further attempt.
	FailureBurst  int
	FailureRefill time.Duration
	// MaxSources bounds the source IPs whose failures are remembered
	// (4096).
	MaxSources int
}

func (c *AuthConfig) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur(&c.NonceLifetime, 5*time.Minute)
	def(&c.MaxChallengesPerSource, 16)
	def(&c.MaxChallenges, 8192)
	def(&c.FailureBurst, 5)
	defDur(&c.FailureRefill, 10*time.Second)
	def(&c.MaxSources, 4096)
}

// authenticator checks digest credentials (RFC 3261 section 22, RFC 7616
// for the SHA-256 algorithm, qop=auth only) against the directory's
// SIP accounts. Nonces are remembered with the source that got them and
// the highest nonce count used, so an answer cannot be replayed.
type authenticator struct {
	cfg AuthConfig
	dir *directory.Directory
	now func() time.Time

	mu       sync.Mutex
	nonces   map[string]*nonceState
	bySource map[netip.Addr][]string // pending nonces of a source, oldest first
	order    []string                // every nonce in issue (so expiry) order; may hold removed ones
	failures map[netip.Addr]*rate.Limiter
}

type nonceState struct {
	issued time.Time
	source netip.Addr
	lastNC int
}

func newAuthenticator(dir *directory.Directory, cfg AuthConfig, now func() time.Time) *authenticator {
	cfg.setDefaults()
	return &authenticator{
		cfg: cfg, dir: dir, now: now,
		nonces:   map[string]*nonceState{},
		bySource: map[netip.Addr][]string{},
		failures: map[netip.Addr]*rate.Limiter{},
	}
}

// authOutcome is the result of checking a request's credentials: the
// device when they are good, else the response to send.
type authOutcome struct {
	device   *directory.Device
	response *sipmsg.Response
	reason   string // why it was refused, for the log (never a secret)
}

// check authenticates req from src. user is the user the request claims
// to come from (To of a REGISTER, From of other requests): it picks the
// realm and algorithms of a first challenge. proxy selects 407 and
// Proxy-Authorization (requests to the B2BUA) over 401 and
// Authorization (REGISTER).
func (a *authenticator) check(req *sipmsg.Request, src netip.Addr, user string, proxy bool) authOutcome {
	now := a.now()
	if a.blocked(src, now) {
		res := sipmsg.NewResponseFromRequest(req, sipmsg.StatusForbidden, "Too many failed attempts", nil)
		res.AppendHeader(sipmsg.NewHeader("Retry-After", strconv.Itoa(int(a.cfg.FailureRefill.Seconds()+0.5))))
		return authOutcome{response: res, reason: "source blocked after failed attempts"}
	}
	hname := "Authorization"
	if proxy {
		hname = "Proxy-Authorization"
	}
	h := req.GetHeader(hname)
	if h == nil {
		return a.challenge(req, src, user, proxy, false, now, "no credentials")
	}
	cred, ok := parseCredentials(h.Value())
	if !ok || cred.Username == "" || cred.Nonce == "" || cred.Response == "" {
		return authOutcome{response: sipmsg.NewResponseFromRequest(req, sipmsg.StatusBadRequest, "Malformed "+hname, nil), reason: "malformed credentials"}
	}
	if cred.QOP != "auth" || cred.Cnonce == "" || cred.Nc <= 0 {
		return authOutcome{response: sipmsg.NewResponseFromRequest(req, sipmsg.StatusBadRequest, "Digest needs qop=auth, cnonce and nc", nil), reason: "credentials without qop=auth"}
	}
	// The digest uri is not compared with the Request-URI: SIPp answers
	// with its own idea of it (sip:host:port of the server). It must
	// still be a SIP URI, and it is part of what the response hashes.
	var uri sipmsg.Uri
	if err := sipmsg.ParseUri(cred.URI, &uri); err != nil {
		return authOutcome{response: sipmsg.NewResponseFromRequest(req, sipmsg.StatusBadRequest, "Digest uri is not a SIP URI", nil), reason: "bad digest uri"}
	}
	dev, ok := a.dir.DeviceBySIPUser(cred.Username)
	if !ok || dev.SIP.Realm != cred.Realm || !a.verify(dev.SIP, &cred, req.Method.String()) {
		a.fail(src, now)
		return authOutcome{response: sipmsg.NewResponseFromRequest(req, sipmsg.StatusForbidden, "Forbidden", nil), reason: "wrong credentials for " + strconv.Quote(cred.Username)}
	}
	// The answer is right; now is the nonce ours, fresh, from this
	// source, and its count new? If not, a stale challenge makes the
	// phone answer again with the password it already has.
	if !a.useNonce(cred.Nonce, src, cred.Nc, now) {
		return a.challenge(req, src, cred.Username, proxy, true, now, "stale or replayed nonce")
	}
	return authOutcome{device: dev}
}

// verify recomputes the digest response from the stored HA1. It runs
// on every authenticated INVITE and REGISTER, so it builds the hashes'
// inputs in one stack buffer rather than in strings.
func (a *authenticator) verify(acct *directory.SIPAccount, cred *credentials, method string) bool {
	var ha1 []byte
	sha := false
	switch {
	case cred.Algorithm == "" || strings.EqualFold(cred.Algorithm, "MD5"):
		ha1 = acct.HA1MD5
	case strings.EqualFold(cred.Algorithm, "SHA-256"):
		ha1, sha = acct.HA1SHA256, true
	}
	if ha1 == nil {
		return false
	}
	var buf [512]byte
	in := append(append(append(buf[:0], method...), ':'), cred.URI...)
	var ha2 [2 * sha256.Size]byte
	n := len(hexDigest(ha2[:0], in, sha))
	in = hex.AppendEncode(buf[:0], ha1)
	in = append(append(in, ':'), cred.Nonce...)
	in = append(in, ':')
	in = appendHex8(in, uint32(cred.Nc))
	in = append(append(in, ':'), cred.Cnonce...)
	in = append(append(in, ':'), cred.QOP...)
	in = append(append(in, ':'), ha2[:n]...)
	var want, got [2 * sha256.Size]byte
	w := hexDigest(want[:0], in, sha)
	if len(cred.Response) != len(w) {
		return false
	}
	g := got[:len(w)]
	for i := range g {
		c := cred.Response[i]
		if 'A' <= c && c <= 'F' {
			c += 'a' - 'A'
		}
		g[i] = c
	}
	return subtle.ConstantTimeCompare(w, g) == 1
}

// hexDigest appends the lower-case hex of data's MD5, or SHA-256, digest.
func hexDigest(dst, data []byte, sha bool) []byte {
	if sha {
		sum := sha256.Sum256(data)
		return hex.AppendEncode(dst, sum[:])
	}
	sum := md5.Sum(data)
	return hex.AppendEncode(dst, sum[:])
}

// appendHex8 appends v as eight lower-case hex digits (%08x): the nonce
// count as the phone wrote it into its hash.
func appendHex8(dst []byte, v uint32) []byte {
	const digits = "0123456789abcdef"
	for shift := 28; shift >= 0; shift -= 4 {
		dst = append(dst, digits[v>>uint(shift)&0xf])
	}
	return dst
}

// challenge answers 401 (or 407) with a new nonce, one header per
// algorithm the claimed user's account accepts, SHA-256 first. An
// unknown user gets the default realm and MD5, like most accounts, so
// the challenge does not tell which users exist.
func (a *authenticator) challenge(req *sipmsg.Request, src netip.Addr, user string, proxy, stale bool, now time.Time, reason string) authOutcome {
	realm, algs := a.dir.SIPRealm(), []string{"MD5"}
	if dev, ok := a.dir.DeviceBySIPUser(user); ok {
		realm, algs = dev.SIP.Realm, nil
		if dev.SIP.HA1SHA256 != nil {
			algs = append(algs, "SHA-256")
		}
		if dev.SIP.HA1MD5 != nil {
			algs = append(algs, "MD5")
		}
	}
	nonce := a.issueNonce(src, now)
	code, phrase, hname := sipmsg.StatusUnauthorized, "Unauthorized", "WWW-Authenticate"
	if proxy {
		code, phrase, hname = sipmsg.StatusProxyAuthRequired, "Proxy Authentication Required", "Proxy-Authenticate"
	}
	res := sipmsg.NewResponseFromRequest(req, code, phrase, nil)
	for _, alg := range algs {
		v := fmt.Sprintf(`Digest realm="%s", nonce="%s", algorithm=%s, qop="auth"`, realm, nonce, alg)
		if stale {
			v += ", stale=true"
		}
		res.AppendHeader(sipmsg.NewHeader(hname, v))
	}
	return authOutcome{response: res, reason: reason}
}

// issueNonce makes and remembers a nonce for src, evicting the oldest
// of the source, or of all, past the bounds.
func (a *authenticator) issueNonce(src netip.Addr, now time.Time) string {
	var b [18]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	nonce := base64.RawURLEncoding.EncodeToString(b[:])
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expireNonces(now)
	if l := a.bySource[src]; len(l) >= a.cfg.MaxChallengesPerSource {
		delete(a.nonces, l[0])
		a.bySource[src] = l[1:]
	}
	for len(a.nonces) >= a.cfg.MaxChallenges && len(a.order) > 0 {
		a.removeNonce(a.order[0])
		a.order = a.order[1:]
	}
	a.nonces[nonce] = &nonceState{issued: now, source: src}
	a.bySource[src] = append(a.bySource[src], nonce)
	a.order = append(a.order, nonce)
	if len(a.order) > 2*a.cfg.MaxChallenges {
		// Drop the entries of nonces already evicted per source.
		live := a.order[:0]
		for _, n := range a.order {
			if _, ok := a.nonces[n]; ok {
				live = append(live, n)
			}
		}
		a.order = live
	}
	return nonce
}

// useNonce accepts a nonce answered from src with count nc, once per
// count: the count must grow with each use of the nonce.
func (a *authenticator) useNonce(nonce string, src netip.Addr, nc int, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expireNonces(now)
	st, ok := a.nonces[nonce]
	if !ok || st.source != src || nc <= st.lastNC {
		return false
	}
	st.lastNC = nc
	return true
}

// expireNonces forgets the nonces older than the lifetime. Issue order
// is expiry order, so it only looks at the front.
func (a *authenticator) expireNonces(now time.Time) {
	for len(a.order) > 0 {
		n := a.order[0]
		if st, ok := a.nonces[n]; ok && now.Sub(st.issued) < a.cfg.NonceLifetime {
			return
		}
		a.removeNonce(n)
		a.order = a.order[1:]
	}
}

func (a *authenticator) removeNonce(n string) {
	st, ok := a.nonces[n]
	if !ok {
		return
	}
	delete(a.nonces, n)
	l := a.bySource[st.source]
	for i, m := range l {
		if m == n {
			l = append(l[:i], l[i+1:]...)
			break
		}
	}
	if len(l) == 0 {
		delete(a.bySource, st.source)
	} else {
		a.bySource[st.source] = l
	}
}

// blocked reports whether src used up its failed attempts.
func (a *authenticator) blocked(src netip.Addr, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.failures[src]
	return ok && l.TokensAt(now) < 1
}

// fail counts a wrong answer from src.
func (a *authenticator) fail(src netip.Addr, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.failures[src]
	if !ok {
		if len(a.failures) >= a.cfg.MaxSources {
			a.forgetSources(now)
		}
		l = rate.NewLimiter(rate.Every(a.cfg.FailureRefill), a.cfg.FailureBurst)
		a.failures[src] = l
	}
	l.AllowN(now, 1)
}

// forgetSources makes room in the failure table: sources whose allowance
// is full again carry no information; if none is, an arbitrary one goes
// (the table stays bounded whatever the number of attackers).
func (a *authenticator) forgetSources(now time.Time) {
	for src, l := range a.failures {
		if l.TokensAt(now) >= float64(a.cfg.FailureBurst) {
			delete(a.failures, src)
		}
	}
	for src := range a.failures {
		if len(a.failures) < a.cfg.MaxSources {
			break
		}
		delete(a.failures, src)
	}
}
