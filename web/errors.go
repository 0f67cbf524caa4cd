package web

import (
	"encoding/json"
	"net/http"

	"connectrpc.com/connect"
)

// writeError answers a request that never reached the gRPC server with
// the Connect protocol's error body ({"code": ..., "message": ...}), which
// the Connect, gRPC-Web and curl user alike can read. httpStatus is the
// status the Connect protocol prescribes for the situation (415 for an
// unsupported content type, 404 for an unknown method...).
func writeError(w http.ResponseWriter, httpStatus int, code connect.Code, msg string) {
	body, _ := json.Marshal(struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{code.String(), msg})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(httpStatus)
	_, _ = w.Write(append(body, '\n'))
}
