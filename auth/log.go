package auth

import (
	"context"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
)

// The log field keys, so that dashboards can rely on them.
const (
	LogFieldLogin  = "auth.login"
	LogFieldRole   = "auth.role"
	LogFieldMethod = "auth.method"
)

// LogFields returns the caller's identity as go-grpc-middleware logging
// fields, for logging.InjectFields after authentication, so that every log
// line of the request says who made it. Nil when ctx carries no principal.
// Tokens are never logged.
func LogFields(ctx context.Context) logging.Fields {
	p, ok := FromContext(ctx)
	if !ok {
		return nil
	}
	return logging.Fields{LogFieldLogin, p.Login, LogFieldRole, p.Role.String(), LogFieldMethod, p.Method}
}
