package server

import (
	"crypto/sha256"

	"google.golang.org/protobuf/proto"

	"callcontrold/auth"
	"callcontrold/callstore"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/pbx"
)

// A replica's leader can die after the log stored an operation and before
// the client got its answer. The client retries with the same request_id;
// the next leader's request_id cache never saw it, but its log did: every
// revision records the request it applied (pbx.WithRequest), and every
// replica indexes them (Deps.Applied). fromLog answers such a retry from
// the revision that applied it, as the first leader answered, and never
// applies it a second time.

// logged returns the revision of the log that applied the request p
// sent to method with request_id id, if one did (within the index's TTL).
func (s *callService) logged(p *auth.Principal, method, id string) (*pbx.Applied, bool) {
	if s.applied == nil {
		return nil, false
	}
	return s.applied(p.Login, method, id)
}

// reusedInLog reports whether the log applied another request than the
// one of fingerprint fp under this request_id. control checks it before
// the request_id cache: the cache would remember the refusal under the
// request_id, and then refuse the original request's retry too.
func (s *callService) reusedInLog(p *auth.Principal, method, id string, fp [sha256.Size]byte) bool {
	a, ok := s.logged(p, method, id)
	return ok && a.Fingerprint != fp
}

// fromLog answers req (of fingerprint fp), which revision a applied,
// from the legs it left; or refuses it if a applied another request
// under its request_id (reusedInLog's check, should a applied it since).
func (s *callService) fromLog(p *auth.Principal, req proto.Message, fp [sha256.Size]byte, a *pbx.Applied) (proto.Message, error) {
	if a.Fingerprint != fp {
		return nil, reusedRequestID()
	}
	if r := s.rebuild(p, req, a); r != nil {
		return r, nil
	}
	return nil, alreadyApplied(a.Revision)
}

// rebuild builds the answer a request got from the legs its revision
// left, or returns nil when that revision cannot tell it (the caller then
// says the request was applied, with its revision). Each answer is the
// one its handler builds (calls.go) from the same legs: a call after the
// operation is the leg as its revision left it. An operation that changed
// nothing (AlreadyApplied) commits no revision, so a retry found here
// changed its call: AlreadyApplied is false, as in the first answer.
//
// Dial answers the caller's leg as the Dial's own revision left it (state
// dial): the first answer may have shown it routed (the revision after,
// once the phone went off hook), which Dial also answers when its
// context ends first; the call's later revisions are in WatchCalls.
func (s *callService) rebuild(p *auth.Principal, req proto.Message, a *pbx.Applied) proto.Message {
	vis := auth.VisibleFunc(p)
	call := func(uid int64) *callcontrolv1.Call {
		if c := legOf(a, uid); c != nil {
			return s.cv.call(c, vis)
		}
		return nil
	}
	// visible converts c if the caller may see it (nil stays nil), as the
	// handlers do for a call the operation made on another's device.
	visible := func(c *callstore.Call) *callcontrolv1.Call {
		if c == nil || !vis(c) {
			return nil
		}
		return s.cv.call(c, vis)
	}
	switch r := req.(type) {
	case *callcontrolv1.HoldRequest:
		if c := call(r.GetUid()); c != nil {
			return &callcontrolv1.HoldResponse{Call: c}
		}
	case *callcontrolv1.TalkRequest:
		if c := call(r.GetUid()); c != nil {
			return &callcontrolv1.TalkResponse{Call: c}
		}
	case *callcontrolv1.HangupRequest:
		if c := call(r.GetUid()); c != nil {
			return &callcontrolv1.HangupResponse{Call: c}
		}
	case *callcontrolv1.MuteRequest:
		if c := call(r.GetUid()); c != nil {
			return &callcontrolv1.MuteResponse{Call: c}
		}
	case *callcontrolv1.DtmfRequest:
		if c := call(r.GetUid()); c != nil {
			return &callcontrolv1.DtmfResponse{Call: c}
		}
	case *callcontrolv1.DialRequest:
		if c := firstOf(a, callstore.EventNew); c != nil {
			return &callcontrolv1.DialResponse{Call: s.cv.call(c, vis)}
		}
	case *callcontrolv1.SendRequest:
		if c := call(r.GetUid()); c != nil {
			return &callcontrolv1.SendResponse{Call: c, NewCall: visible(firstOf(a, callstore.EventNew))}
		}
	case *callcontrolv1.XferRequest:
		if c := call(r.GetUid()); c != nil {
			return &callcontrolv1.XferResponse{Call: c, TransferredCall: visible(firstOf(a, callstore.EventTransfer))}
		}
	case *callcontrolv1.AtXferRequest:
		c, t := call(r.GetUid()), call(r.GetTargetUid())
		if c != nil && t != nil {
			return &callcontrolv1.AtXferResponse{Call: c, TargetCall: t}
		}
	}
	return nil
}

// legOf is leg uid as revision a left it, or nil if a did not change it.
func legOf(a *pbx.Applied, uid int64) *callstore.Call {
	var last *callstore.Call
	for _, ch := range a.Changes {
		if ch.Call.UID == uid {
			last = ch.Call
		}
	}
	return last
}

// firstOf is the first leg revision a changed with an event of type t:
// the leg a Dial or Send made, or the other party a Xfer transferred.
func firstOf(a *pbx.Applied, t callstore.EventType) *callstore.Call {
	for _, ch := range a.Changes {
		if ch.Type == t {
			return ch.Call
		}
	}
	return nil
}
