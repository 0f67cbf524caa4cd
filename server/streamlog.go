package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// The end-of-stream log line. Unary calls are logged by go-grpc-middleware's
// logging interceptor (logging.FinishCall only); streams by logStreamEnd
// (from streamChain), whose line is the one that interceptor writes, field for field
// (TestStreamLogLineAsLogging compares them). logging's interceptor builds a
// call's fields when the call starts and keeps them, twice, with its
// reporter and a context, for as long as the call lasts: ≈ 930 bytes of heap
// on every idle WatchCalls stream, for one line written at its end. Here
// the stream keeps its start time only (on its goroutine's stack) and the
// fields are built when the line is written.
//
// Should the service ever log payloads or the start of a call
// (logging.PayloadSent, StartCall), use logging's own interceptor for
// streams again: this one writes the end-of-call line only.

// logStreamEnd writes the "finished call" line of a stream that started at
// start and ended with err: logging's fields, in logging's order.
func logStreamEnd(logger logging.Logger, lvl logging.CodeToLevel, ctx context.Context, info *grpc.StreamServerInfo, start time.Time, err error) {
	if errors.Is(err, io.EOF) {
		err = nil
	}
	meta := interceptors.NewServerCallMeta(info.FullMethod, info, nil)
	fields := make(logging.Fields, 0, 24)
	fields = append(fields,
		logging.SystemTag[0], logging.SystemTag[1],
		logging.ComponentFieldKey, logging.KindServerFieldValue,
		logging.ServiceFieldKey, meta.Service,
		logging.MethodFieldKey, meta.Method,
		logging.MethodTypeFieldKey, string(meta.Typ),
	)
	if p, ok := peer.FromContext(ctx); ok {
		fields = append(fields, "peer.address", p.Addr.String())
	}
	fields = append(fields, "grpc.start_time", start.Format(time.RFC3339))
	if d, ok := ctx.Deadline(); ok {
		fields = append(fields, "grpc.request.deadline", d.Format(time.RFC3339))
	}
	code := status.Code(err)
	fields = append(fields, "grpc.code", code.String())
	if err != nil {
		fields = append(fields, "grpc.error", fmt.Sprintf("%v", err))
	}
	fields = append(fields, logging.DurationToTimeMillisFields(time.Since(start))...)
	logger.Log(ctx, lvl(code), "finished call", fields...)
}
