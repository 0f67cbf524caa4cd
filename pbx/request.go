package pbx

import (
	"context"
	"crypto/sha256"

	"callcontrold/callstore"
)

// Request names the client request an operation carries out: who sent
// it, which RPC, its request_id, and a digest of its content. The server
// puts it on the operation's context (WithRequest) when the client sent
// a request_id; the engine hands it, with the operation's changes, to
// Options.CommitRequest, so that a replica's log records which request a
// revision applied and a retry on the next leader is answered from the
// log instead of acting again (package replica).
type Request struct {
	Principal   string
	Method      string
	ID          string
	Fingerprint [sha256.Size]byte
}

// Applied is a request some revision of the log already applied: its
// revision, the request's fingerprint, and every leg that revision
// changed, as it left them.
type Applied struct {
	Revision    int64
	Fingerprint [sha256.Size]byte
	Changes     []callstore.Change
}

type requestKey struct{}

// WithRequest returns ctx carrying r.
func WithRequest(ctx context.Context, r Request) context.Context {
	return context.WithValue(ctx, requestKey{}, &r)
}

// RequestFrom returns the request ctx carries, or nil.
func RequestFrom(ctx context.Context) *Request {
	r, _ := ctx.Value(requestKey{}).(*Request)
	return r
}
