package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"callcontrold/auth"
	"callcontrold/callstore"
	"callcontrold/internal/echo"
	"callcontrold/pbx"
)

// This file is the error boundary: the switch, the store and auth return
// plain Go errors, handlers return them (or call the constructors below),
// and only this file builds gRPC statuses.
//
// Every status must reach the client whole. Its message and details
// travel in the response trailers, and clients bound those (8 KiB is the
// default of the C-core clients and grpc-go's next default): a trailer
// over the limit arrives as INTERNAL (RST_STREAM), not as the code it
// was. So input is never quoted whole (echo.Quote keeps a prefix and says
// the length), and the sizes below bound what any error can carry,
// whatever a message was built from: at most about 4 KiB of trailers.
const (
	maxMessageLen     = 512 // status message, in bytes
	maxViolations     = 10  // BadRequest field violations listed; the message counts the rest
	maxFieldLen       = 64  // a violation's field path
	maxDescriptionLen = 160 // a violation's description
)

// errorDomain is the ErrorInfo domain of every error this service raises.
const errorDomain = "callcontrol.v1"

// ErrorInfo reasons. Clients may switch on them; they are part of the API.
const (
	reasonCallState       = "CALL_STATE"
	reasonNotSupported    = "NOT_SUPPORTED"
	reasonCallLimit       = "DEVICE_CALL_LIMIT"
	reasonCompacted       = "REVISION_COMPACTED"
	reasonEpochMismatch   = "EPOCH_MISMATCH"
	reasonFutureRevision  = "FUTURE_REVISION"
	reasonDraining        = "DRAINING"
	reasonRequestIDReused = "REQUEST_ID_REUSED"
	reasonAlreadyApplied  = "REQUEST_ALREADY_APPLIED"
	reasonMalformed       = "MALFORMED_REQUEST"
	reasonWatchStalled    = "WATCH_STALLED"
	reasonWatcherLimit    = "WATCHER_LIMIT"
)

// newStatus is status.New with the message bounded.
func newStatus(c codes.Code, msg string) *status.Status {
	return status.New(c, echo.Clip(msg, maxMessageLen))
}

func withDetails(c codes.Code, msg string, details ...protoadapt.MessageV1) error {
	st := newStatus(c, msg)
	for _, d := range details {
		if ds, err := st.WithDetails(d); err == nil {
			st = ds
		}
	}
	return st.Err()
}

// fieldViolation is one bad request field.
type fieldViolation struct{ field, desc string }

// invalidArgument is INVALID_ARGUMENT with a BadRequest naming the fields:
// the first maxViolations of them (a client fixes those and learns about
// the rest on its next try; the message says how many there are).
func invalidArgument(violations ...fieldViolation) error {
	shown := violations[:min(len(violations), maxViolations)]
	msgs := make([]string, 0, len(shown))
	br := &errdetails.BadRequest{}
	for _, v := range shown {
		field, desc := echo.Clip(v.field, maxFieldLen), echo.Clip(v.desc, maxDescriptionLen)
		msgs = append(msgs, field+": "+desc)
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: field, Description: desc})
	}
	msg := strings.Join(msgs, "; ")
	if len(violations) > len(shown) {
		// First, so that clipping the message cannot cut it off.
		msg = fmt.Sprintf("%d invalid fields, the first %d: %s", len(violations), len(shown), msg)
	}
	return withDetails(codes.InvalidArgument, msg, br)
}

// reusedRequestID refuses a request_id already used for another request.
func reusedRequestID() error {
	return withDetails(codes.InvalidArgument,
		"request_id: already used for a different request; use a new request_id for a new request",
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{
			Field: "request_id", Description: "already used for a different request",
		}}},
		&errdetails.ErrorInfo{Reason: reasonRequestIDReused, Domain: errorDomain})
}

// alreadyApplied answers a retry of a request that revision rev of the
// log applied (under an earlier leader) when its answer cannot be rebuilt
// from that revision: the request is not applied again.
func alreadyApplied(rev int64) error {
	return withDetails(codes.Aborted,
		fmt.Sprintf("request_id: this request was applied at revision %d; it is not applied again: read the calls (GetCall, ListCalls) for their state", rev),
		&errdetails.ErrorInfo{Reason: reasonAlreadyApplied, Domain: errorDomain,
			Metadata: map[string]string{"revision": strconv.FormatInt(rev, 10)}})
}

// malformedRequest is the answer to a request message that does not
// decode (err is the codec's error): the client's fault, INVALID_ARGUMENT,
// where grpc-go itself would say INTERNAL (see decode.go).
func malformedRequest(err error) error {
	return withDetails(codes.InvalidArgument,
		"the request is not a valid protobuf message of the method's request type: "+err.Error(),
		&errdetails.ErrorInfo{Reason: reasonMalformed, Domain: errorDomain})
}

// unavailableDraining tells a watcher that the server is going away and
// when to come back; the client resumes with its last token.
func unavailableDraining(retryAfter time.Duration) error {
	return withDetails(codes.Unavailable, "server is shutting down: reconnect and resume with the last resume_token",
		&errdetails.ErrorInfo{Reason: reasonDraining, Domain: errorDomain},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter)})
}

// errNoPrincipal: a handler of an authenticated service ran without a
// caller (the auth interceptor guarantees one; this is the safe answer
// should the wiring ever change).
var errNoPrincipal = toStatusError(&auth.AuthError{Reason: auth.ReasonTokenMissing,
	Msg: "missing bearer token: set metadata authorization: Bearer <token>"})

// callNotFound is the answer for a call that does not exist and for one
// the caller may not see: the two must be indistinguishable.
func callNotFound(field string, uid int64) error {
	return newStatus(codes.NotFound, fmt.Sprintf("%s: call %d not found (it ended, or is not visible to you)", field, uid)).Err()
}

// deviceNotFound is callNotFound for a device named by the request.
func deviceNotFound(field, name string) error {
	return newStatus(codes.NotFound, fmt.Sprintf("%s: device %s not found (or not visible to you)", field, echo.Quote(name))).Err()
}

// permissionDenied: the caller sees the call or device but may not do
// this to it; msg says who may.
func permissionDenied(msg string) error {
	return newStatus(codes.PermissionDenied, msg).Err()
}

// simulatorUnavailable: SimulatorService without the simulated switch.
func simulatorUnavailable() error {
	return newStatus(codes.Unimplemented, "the simulator is only available with the simulated switch").Err()
}

// internalError hides a bug's details from the client; the log has them.
func internalError() error { return newStatus(codes.Internal, "internal error").Err() }

// retriable reports whether a retry could change err's outcome (so the
// request_id cache must not remember it).
func retriable(err error) bool {
	switch status.Code(err) {
	case codes.ResourceExhausted, codes.Unavailable, codes.Internal, codes.Canceled,
		codes.DeadlineExceeded, codes.Unknown, codes.Aborted:
		return true
	}
	return false
}

// toStatus maps a domain error to a gRPC status error: the only place that
// does so. It matches with errors.Is/As so wrapped errors keep their code;
// an error it does not know is a bug: logged, and INTERNAL to the client.
func toStatus(ctx context.Context, log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if st := toStatusError(err); st != nil {
		return st
	}
	log.ErrorContext(ctx, "unmapped error", "error", err)
	return internalError()
}

// toStatusError is toStatus without the fallback: nil for an unknown error.
func toStatusError(err error) error {
	var (
		stateErr   *pbx.StateError
		compacted  *callstore.CompactedError
		authErr    *auth.AuthError
		limitErr   *auth.LimitError
		stalled    *watchStalledError
		watchLimit *watcherLimitError
	)
	switch {
	case errors.As(err, &authErr):
		return withDetails(codes.Unauthenticated, authErr.Msg,
			&errdetails.ErrorInfo{Reason: authErr.Reason, Domain: errorDomain})
	case errors.As(err, &limitErr):
		return withDetails(codes.ResourceExhausted, limitErr.Msg,
			&errdetails.RetryInfo{RetryDelay: durationpb.New(limitErr.RetryAfter)},
			&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{
				Subject:     echo.Clip("login:"+limitErr.Login, maxFieldLen),
				Description: limitErr.Quota,
			}}})
	case errors.As(err, &stateErr):
		return stateStatus(err, stateErr)
	case errors.Is(err, pbx.ErrNotFound):
		return newStatus(codes.NotFound, err.Error()).Err()
	case errors.Is(err, pbx.ErrInvalidNumber):
		return invalidArgument(fieldViolation{"number", err.Error()})
	case errors.Is(err, pbx.ErrInvalidTone):
		return invalidArgument(fieldViolation{"tone", err.Error()})
	case errors.Is(err, pbx.ErrInvalidArgument):
		return newStatus(codes.InvalidArgument, err.Error()).Err()
	case errors.Is(err, pbx.ErrLimit):
		return withDetails(codes.FailedPrecondition, err.Error()+": hang up one of its calls first",
			&errdetails.ErrorInfo{Reason: reasonCallLimit, Domain: errorDomain})
	case errors.Is(err, pbx.ErrClosed):
		return withDetails(codes.Unavailable, "the switch is shutting down",
			&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)})
	case errors.Is(err, pbx.ErrUnavailable):
		return withDetails(codes.Unavailable, err.Error()+": retry",
			&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)})
	case errors.Is(err, pbx.ErrNotSupported):
		return withDetails(codes.FailedPrecondition, err.Error(),
			&errdetails.ErrorInfo{Reason: reasonNotSupported, Domain: errorDomain})
	case errors.As(err, &compacted):
		return withDetails(codes.OutOfRange, err.Error()+": re-snapshot (watch without resume_token)", &errdetails.ErrorInfo{
			Reason: reasonCompacted, Domain: errorDomain,
			Metadata: map[string]string{"oldest_revision": strconv.FormatInt(compacted.Oldest, 10)},
		})
	case errors.As(err, &stalled):
		// OUT_OF_RANGE like a compacted watch, so a client that re-snapshots
		// on any OUT_OF_RANGE is right; one that resumes first may get
		// away with it while its token is still retained.
		return withDetails(codes.OutOfRange, err.Error()+": resume with the last resume_token (re-snapshot if that is refused)", &errdetails.ErrorInfo{
			Reason: reasonWatchStalled, Domain: errorDomain,
			Metadata: map[string]string{
				"oldest_revision": strconv.FormatInt(stalled.oldest, 10),
				"send_timeout":    stalled.after.String(),
			},
		})
	case errors.As(err, &watchLimit):
		return withDetails(codes.ResourceExhausted, err.Error(),
			&errdetails.ErrorInfo{Reason: reasonWatcherLimit, Domain: errorDomain, Metadata: map[string]string{"max_watchers": strconv.Itoa(watchLimit.max)}},
			&errdetails.RetryInfo{RetryDelay: durationpb.New(watchLimit.retry)})
	case errors.Is(err, callstore.ErrEpoch):
		// The same answer as a compacted revision: the client's only
		// correct move is a fresh snapshot.
		return withDetails(codes.OutOfRange, "resume token is from another server process: re-snapshot (watch without resume_token)",
			&errdetails.ErrorInfo{Reason: reasonEpochMismatch, Domain: errorDomain})
	case errors.Is(err, callstore.ErrFutureRevision):
		return withDetails(codes.OutOfRange, err.Error(),
			&errdetails.ErrorInfo{Reason: reasonFutureRevision, Domain: errorDomain})
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	return nil
}

func stateStatus(err error, stateErr *pbx.StateError) error {
	allowed := make([]string, len(stateErr.Allowed))
	for i, s := range stateErr.Allowed {
		allowed[i] = s.String()
	}
	return withDetails(codes.FailedPrecondition, err.Error(), &errdetails.ErrorInfo{
		Reason: reasonCallState, Domain: errorDomain,
		Metadata: map[string]string{
			"operation":      stateErr.Op,
			"state":          stateErr.State.String(),
			"allowed_states": strings.Join(allowed, ","),
		},
	})
}
