package web

import (
	"embed"
	"fmt"
	"io/fs"
	"net/http"

	"connectrpc.com/connect"
)

// dist holds the console's built assets (npm run build in web/ writes
// them; they are committed, so building the binary needs no npm).
//
//go:embed dist
var dist embed.FS

// consoleCSP keeps the console to its own origin: its script, its style
// and its API calls, nothing inline, no framing.
const consoleCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// consoleHandler serves the console's files for GET and HEAD. Anything
// else that reaches it is an unknown RPC (answered in the Connect
// protocol) or a wrong method.
func consoleHandler() http.Handler {
	files, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	static := http.FileServerFS(files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet || r.Method == http.MethodHead:
			h := w.Header()
			h.Set("Content-Security-Policy", consoleCSP)
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Referrer-Policy", "no-referrer")
			// The assets are embedded without modification times; revalidate
			// so a new binary's console is picked up at once.
			h.Set("Cache-Control", "no-cache")
			static.ServeHTTP(w, r)
		case r.Method == http.MethodPost && looksLikeRPC(r.URL.Path):
			writeError(w, http.StatusNotFound, connect.CodeUnimplemented,
				fmt.Sprintf("unknown method %s: see the service definitions (grpcurl list, describe)", r.URL.Path))
		default:
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, connect.CodeInvalidArgument,
				fmt.Sprintf("%s %s: the console's files are read with GET", r.Method, r.URL.Path))
		}
	})
}
