package server

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"callcontrold/callstore"
	"callcontrold/pbx"
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
)

// fieldViolation is one bad request field.
type fieldViolation struct{ field, desc string }

// invalidArgument is INVALID_ARGUMENT with a BadRequest naming the fields.
func invalidArgument(violations ...fieldViolation) error {
	msgs := make([]string, 0, len(violations))
	br := &errdetails.BadRequest{}
	for _, v := range violations {
		msgs = append(msgs, v.field+": "+v.desc)
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.field, Description: v.desc})
	}
	return withDetails(codes.InvalidArgument, strings.Join(msgs, "; "), br)
}

func withDetails(c codes.Code, msg string, details ...protoadapt.MessageV1) error {
	st := status.New(c, msg)
	for _, d := range details {
		if ds, err := st.WithDetails(d); err == nil {
			st = ds
		}
	}
	return st.Err()
}

// unavailableDraining tells a watcher that the server is going away and
// when to come back; the client resumes with its last token.
func unavailableDraining(retryAfter time.Duration) error {
	return withDetails(codes.Unavailable, "server is shutting down: reconnect and resume with the last resume_token",
		&errdetails.ErrorInfo{Reason: reasonDraining, Domain: errorDomain},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter)})
}

// toStatus maps a domain error to a gRPC status error: the only place that
// does so. It matches with errors.Is/As so wrapped errors keep their code.
func toStatus(ctx context.Context, log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var stateErr *pbx.StateError
	var compacted *callstore.CompactedError
	switch {
	case errors.As(err, &stateErr):
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
	case errors.Is(err, pbx.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, pbx.ErrInvalidNumber):
		return invalidArgument(fieldViolation{"number", err.Error()})
	case errors.Is(err, pbx.ErrInvalidTone):
		return invalidArgument(fieldViolation{"tone", err.Error()})
	case errors.Is(err, pbx.ErrInvalidArgument):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, pbx.ErrLimit):
		return withDetails(codes.FailedPrecondition, err.Error()+": hang up one of its calls first",
			&errdetails.ErrorInfo{Reason: reasonCallLimit, Domain: errorDomain})
	case errors.Is(err, pbx.ErrClosed):
		return withDetails(codes.Unavailable, "the switch is shutting down",
			&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)})
	case errors.Is(err, pbx.ErrNotSupported):
		return withDetails(codes.FailedPrecondition, err.Error(),
			&errdetails.ErrorInfo{Reason: reasonNotSupported, Domain: errorDomain})
	case errors.As(err, &compacted):
		return withDetails(codes.OutOfRange, err.Error()+": re-snapshot (watch without resume_token)", &errdetails.ErrorInfo{
			Reason: reasonCompacted, Domain: errorDomain,
			Metadata: map[string]string{"oldest_revision": strconv.FormatInt(compacted.Oldest, 10)},
		})
	case errors.Is(err, callstore.ErrEpoch):
		// The same answer as a compacted revision: the client's only
		// correct move is a fresh snapshot.
		return withDetails(codes.OutOfRange, "resume token is from another server process: re-snapshot (watch without resume_token)",
			&errdetails.ErrorInfo{Reason: reasonEpochMismatch, Domain: errorDomain})
	case errors.Is(err, callstore.ErrFutureRevision):
		return withDetails(codes.OutOfRange, err.Error(),
			&errdetails.ErrorInfo{Reason: reasonFutureRevision, Domain: errorDomain})
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	log.ErrorContext(ctx, "unmapped error", "error", err)
	return status.Error(codes.Internal, "internal error")
}
