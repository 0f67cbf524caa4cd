package web

import (
	"net/http"
	"strings"
)

// CORS: browsers on another origin (a CRM page with click-to-dial, a
// wallboard served elsewhere) may call the API only when their origin is
// configured. Credentials are bearer tokens in the Authorization header,
// never cookies, so Access-Control-Allow-Credentials is not needed.
var (
	corsAllowMethods = "GET, POST"
	// corsAllowHeaders are the request headers the Connect, gRPC-Web and
	// gRPC protocols send, plus Authorization.
	corsAllowHeaders = strings.Join([]string{
		"Authorization", "Content-Type", "Content-Encoding", "Accept-Encoding",
		"Connect-Protocol-Version", "Connect-Timeout-Ms", "Connect-Content-Encoding", "Connect-Accept-Encoding",
		"Grpc-Timeout", "Grpc-Encoding", "Grpc-Accept-Encoding",
		"X-Grpc-Web", "X-User-Agent",
	}, ", ")
	// corsExposeHeaders are the response headers clients must read to see
	// a status and its details.
	corsExposeHeaders = strings.Join([]string{
		"Content-Encoding", "Connect-Content-Encoding", "Connect-Accept-Encoding",
		"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin", "Grpc-Encoding", "Grpc-Accept-Encoding",
	}, ", ")
)

// corsPolicy holds the allowed origins; "*" allows any origin.
type corsPolicy struct {
	any     bool
	origins map[string]bool
}

func newCORSPolicy(origins []string) corsPolicy {
	p := corsPolicy{origins: map[string]bool{}}
	for _, o := range origins {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		switch o {
		case "":
		case "*":
			p.any = true
		default:
			p.origins[strings.ToLower(o)] = true
		}
	}
	return p
}

func (p corsPolicy) allows(origin string) bool {
	return origin != "" && (p.any || p.origins[strings.ToLower(origin)])
}

// wrap answers preflight requests and adds the CORS response headers for
// allowed origins. A request from an origin that is not allowed is served
// without them (same-origin requests carry no Origin or their own), so
// the browser withholds the response from the foreign page; a preflight
// from such an origin gets 403.
func (p corsPolicy) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		h := w.Header()
		h.Add("Vary", "Origin")
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		if !p.allows(origin) {
			if preflight {
				http.Error(w, "origin not allowed: configure it with --http-cors-origins", http.StatusForbidden)
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		h.Set("Access-Control-Allow-Origin", origin)
		if preflight {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			h.Set("Access-Control-Allow-Methods", corsAllowMethods)
			h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
			h.Set("Access-Control-Max-Age", "7200")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		next.ServeHTTP(w, r)
	})
}
