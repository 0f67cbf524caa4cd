package web

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"

	"callcontrold/server"
)

// rpcMethods maps every method path the gRPC server serves
// ("/callcontrol.v1.CallControlService/Dial") to its streaming kind.
func rpcMethods(gs *grpc.Server) map[string]grpc.MethodInfo {
	paths := map[string]grpc.MethodInfo{}
	for svc, info := range gs.GetServiceInfo() {
		for _, m := range info.Methods {
			paths["/"+svc+"/"+m.Name] = m
		}
	}
	return paths
}

// looksLikeRPC reports whether path has the shape of a method path,
// "/package.Service/Method", so that a POST to an unknown one is told
// "unknown method" rather than "not found".
func looksLikeRPC(path string) bool {
	svc, method, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	return ok && strings.Contains(svc, ".") && method != "" && !strings.Contains(method, "/")
}

// contentTypes are the request content types the transcoder serves, by
// protocol: Connect unary, Connect streaming, gRPC, gRPC-Web.
var contentTypes = map[string]bool{
	"application/json": true, "application/proto": true,
	"application/connect+json": true, "application/connect+proto": true,
	"application/grpc": true, "application/grpc+proto": true, "application/grpc+json": true,
	"application/grpc-web": true, "application/grpc-web+proto": true, "application/grpc-web+json": true,
}

const acceptedTypes = "application/json or application/proto (Connect unary), application/connect+json or +proto (Connect streaming), application/grpc (gRPC), application/grpc-web (gRPC-Web)"

// rpcLimits bound what one request may cost before it reaches a handler.
type rpcLimits struct {
	maxBody     int64         // bytes of request body
	bodyTimeout time.Duration // to receive the whole request body
	unaryWrite  time.Duration // to write a unary response
	transport   Transport     // nil: no pending-request budget, no stream reset
}

// guardRPC checks a request for a known method before the transcoder sees
// it, and answers what vanguard would answer with a bare HTTP status (or
// treat as a REST request and 404) with a Connect error that says what to
// fix. It also makes the Connect-Protocol-Version header optional for
// unary POSTs, as connect-go does, so a plain curl works.
func guardRPC(next http.Handler, methods map[string]grpc.MethodInfo, lim rpcLimits) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, http.StatusMethodNotAllowed, connect.CodeInvalidArgument,
				fmt.Sprintf("%s %s: RPCs are POST requests", r.Method, r.URL.Path))
			return
		}
		ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || !contentTypes[ct] {
			w.Header().Set("Accept-Post", "application/json, application/proto")
			writeError(w, http.StatusUnsupportedMediaType, connect.CodeInvalidArgument,
				fmt.Sprintf("unsupported content type %q: send %s", r.Header.Get("Content-Type"), acceptedTypes))
			return
		}
		if ct == "application/json" || ct == "application/proto" {
			// Parameters such as charset=utf-8 are dropped: Connect bodies
			// are UTF-8 JSON or binary protobuf whatever they say.
			r.Header.Set("Content-Type", ct)
			if r.Header.Get("Connect-Protocol-Version") == "" {
				r.Header.Set("Connect-Protocol-Version", "1")
			}
		}
		m := methods[r.URL.Path]
		if !m.IsClientStream {
			// One request message: the whole body is read here, within the
			// limits, so no handler ever waits on a slow or oversized body.
			if !readBody(w, r, lim) {
				return
			}
		}
		if !m.IsServerStream {
			_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(lim.unaryWrite))
		}
		if !m.IsServerStream || lim.transport == nil {
			next.ServeHTTP(w, r)
			return
		}
		// A stream has no write deadline (WatchCalls stays open while its
		// client reads); the server resets one whose client stopped.
		reset := newStreamReset(w)
		defer reset.end()
		next.ServeHTTP(w, r.WithContext(server.WithStreamAbort(r.Context(), reset.reset)))
	})
}

// readBody reads r's body into memory, at most lim.maxBody bytes within
// lim.bodyTimeout, and replaces r.Body with it. It answers the request
// itself and returns false when the body is too large or too slow.
func readBody(w http.ResponseWriter, r *http.Request, lim rpcLimits) bool {
	// Framing (a 5-byte envelope) may come on top of a message of the
	// largest size; the transcoder and the gRPC server check the message.
	limit := lim.maxBody + 5
	if r.ContentLength > limit {
		writeError(w, http.StatusRequestEntityTooLarge, connect.CodeResourceExhausted,
			fmt.Sprintf("request body of %d bytes is over the limit of %d", r.ContentLength, lim.maxBody))
		return false
	}
	rc := http.NewResponseController(w)
	deadline := rc.SetReadDeadline(time.Now().Add(lim.bodyTimeout)) == nil
	pending := awaitBody(lim.transport, w, r)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	pending.done()
	var tooLarge *http.MaxBytesError
	cause := pending.abortCause()
	if err != nil && cause != nil && r.ProtoMajor == 1 {
		// The connection's read deadline has passed: it cannot carry
		// another request.
		w.Header().Set("Connection", "close")
	}
	switch {
	case err != nil && errors.Is(cause, server.ErrPendingEvicted):
		writeError(w, http.StatusServiceUnavailable, connect.CodeUnavailable, "request body not received: "+cause.Error())
		return false
	case err != nil && cause != nil:
		writeError(w, http.StatusRequestTimeout, connect.CodeDeadlineExceeded, "request body not received: "+cause.Error())
		return false
	case errors.As(err, &tooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, connect.CodeResourceExhausted,
			fmt.Sprintf("request body is over the limit of %d bytes", lim.maxBody))
		return false
	case errors.Is(err, os.ErrDeadlineExceeded):
		writeError(w, http.StatusRequestTimeout, connect.CodeDeadlineExceeded,
			fmt.Sprintf("request body not received within %v", lim.bodyTimeout))
		return false
	case err != nil:
		writeError(w, http.StatusBadRequest, connect.CodeInvalidArgument, "reading the request body: "+err.Error())
		return false
	}
	if deadline {
		// Lifted, so that a WatchCalls stream can stay open for hours.
		_ = rc.SetReadDeadline(time.Time{})
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return true
}
