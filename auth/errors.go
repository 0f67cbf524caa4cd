package auth

import (
	"errors"
	"time"
)

// The errors of this package are plain Go errors; the server turns them
// into gRPC statuses (server/errors.go), so that one file decides every
// code and detail a client sees.
var (
	// ErrUnauthenticated matches every *AuthError: who are you?
	ErrUnauthenticated = errors.New("auth: unauthenticated")
	// ErrLimited matches every *LimitError: a per-login limit refused
	// the request.
	ErrLimited = errors.New("auth: limit exceeded")
)

// The reasons of an [AuthError], so that clients can react (re-login on
// TOKEN_EXPIRED) without parsing messages. They are part of the API: the
// server puts them in the ErrorInfo of UNAUTHENTICATED errors.
const (
	ReasonTokenMissing   = "BEARER_TOKEN_MISSING"
	ReasonTokenMalformed = "BEARER_TOKEN_MALFORMED"
	ReasonTokenUnknown   = "TOKEN_UNKNOWN"
	ReasonTokenExpired   = "TOKEN_EXPIRED"
	ReasonTokenInvalid   = "TOKEN_INVALID"
	ReasonAlgNotAllowed  = "TOKEN_ALGORITHM_NOT_ALLOWED"
)

// AuthError is a failed authentication. Its message never contains the
// token: messages end up in client and server logs.
type AuthError struct {
	Reason string // one of the Reason constants
	Msg    string // what is wrong and how to fix it
}

func (e *AuthError) Error() string { return e.Msg }

// Is makes errors.Is(err, ErrUnauthenticated) true.
func (e *AuthError) Is(target error) bool { return target == ErrUnauthenticated }

func unauthenticated(reason, msg string) error { return &AuthError{Reason: reason, Msg: msg} }

// LimitError says which per-login limit refused a request and when a
// retry may succeed.
type LimitError struct {
	Login string
	// Quota describes the limit, for a QuotaFailure: "control RPCs: 50
	// per second, burst 100".
	Quota string
	// RetryAfter is when a retry may succeed: exact for a rate, a hint for
	// a cap on concurrent streams (a slot frees when one of them ends).
	RetryAfter time.Duration
	Msg        string
}

func (e *LimitError) Error() string { return e.Msg }

// Is makes errors.Is(err, ErrLimited) true.
func (e *LimitError) Is(target error) bool { return target == ErrLimited }
