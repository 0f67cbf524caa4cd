package auth

import "log/slog"

// The log attribute keys of the caller's identity: the one set every log
// line of the service uses, so that dashboards can rely on them.
const (
	LogKeyLogin  = "login"
	LogKeyRole   = "role"
	LogKeyMethod = "auth_method" // MethodToken or MethodJWT
)

// LogAttrs returns p's identity as log attributes (none for nil). Tokens
// are never logged. The server adds these to every line logged with a
// request's context (server/identity.go).
func LogAttrs(p *Principal) []slog.Attr {
	if p == nil {
		return nil
	}
	return []slog.Attr{
		slog.String(LogKeyLogin, p.Login),
		slog.String(LogKeyRole, p.Role.String()),
		slog.String(LogKeyMethod, p.Method),
	}
}
