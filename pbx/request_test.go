package pbx

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"callcontrold/callstore"
	"callcontrold/directory"
)

// TestCommitRequest: the request on an operation's context reaches
// CommitRequest with the operation's own revision, and with no other:
// not with what a driver event commits for the same call, nor with an
// operation that carried none.
func TestCommitRequest(t *testing.T) {
	store := callstore.New(callstore.Options{})
	rec := &recorder{busy: map[string]bool{}}
	clock := NewFakeClock(time.Unix(1_700_000_000, 0))
	var reqs []*Request // per revision, in order
	e := NewEngine(directory.Demo(), store, rec, Options{
		Clock: clock, RingTimeout: time.Minute, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		CommitRequest: func(req *Request, changes ...callstore.Change) (int64, error) {
			reqs = append(reqs, req)
			return store.Commit(changes...)
		},
	})
	t.Cleanup(e.Close)
	ctx := context.Background()
	rec.react = func(sig string) { // the phone goes off hook: a driver event, its own revision
		if strings.HasPrefix(sig, "offhook SIP/201") {
			okCall(t)(e.Answered(ctx, store.ByDevice("SIP/201")[0].UID))
		}
	}
	dial := Request{Principal: "alice", Method: "Dial", ID: "d-1", Fingerprint: [32]byte{1}}
	a := okCall(t)(e.Dial(WithRequest(ctx, dial), "SIP/201", "202", DialOptions{AutoAnswer: true}))
	if len(reqs) < 2 {
		t.Fatalf("%d revisions for a dial the phone answered, want the dial's and the answer's", len(reqs))
	}
	if reqs[0] == nil || *reqs[0] != dial {
		t.Errorf("the dial's revision carries %+v, want %+v", reqs[0], dial)
	}
	for i, r := range reqs[1:] {
		if r != nil {
			t.Errorf("revision %d after the dial (a driver event) carries %+v, want none", i+2, r)
		}
	}
	reqs = nil
	okCall(t)(e.Hangup(ctx, a.UID)) // no request on the context
	if len(reqs) == 0 || reqs[0] != nil {
		t.Errorf("a hangup without a request commits %v, want revisions without a request", ids(reqs))
	}

	// A dial the phone never answers: its ring timeout ends it, in a
	// revision of its own (a timer) that carries no request.
	rec.react = nil
	reqs = nil
	if _, err := e.dial(WithRequest(ctx, Request{Principal: "alice", Method: "Dial", ID: "d-2"}), "SIP/201", "202", DialOptions{}); err != nil {
		t.Fatal(err) // dial, not Dial: Dial would wait for the phone
	}
	clock.Advance(2 * time.Minute)
	if len(reqs) != 2 || reqs[0] == nil || reqs[0].ID != "d-2" || reqs[1] != nil {
		t.Errorf("a dial and its ring timeout commit requests %v, want [d-2 none]", ids(reqs))
	}
}

// ids names each revision's request by its request_id ("none": nil).
func ids(reqs []*Request) []string {
	out := make([]string, len(reqs))
	for i, r := range reqs {
		out[i] = "none"
		if r != nil {
			out[i] = r.ID
		}
	}
	return out
}
