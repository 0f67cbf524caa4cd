package server

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"strconv"

	"google.golang.org/protobuf/proto"

	"callcontrold/auth"
	"callcontrold/callstore"
	"callcontrold/directory"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/pbx"
	"callcontrold/wirefield"
)

// callService implements CallControlService. Each handler checks the
// request, authorizes it, hands it to the switch and maps the outcome:
// the three steps of etcd's thin handlers.
type callService struct {
	callcontrolv1.UnimplementedCallControlServiceServer

	cfg   Config
	store *callstore.Store
	dir   *directory.Directory
	sw    pbx.Switch
	lim   *auth.Limiter
	log   *slog.Logger
	m     *metrics
	cv    *converter
	idem  *idempotencyCache
	enc   *encodeCache
	drain <-chan struct{}
	// awaitRevision, on a replica, waits until the store has applied a
	// revision (Deps.AwaitRevision); nil in one process.
	awaitRevision func(ctx context.Context, rev int64) error
	// applied, on a replica, finds the revision that applied a request
	// (Deps.Applied); nil in one process.
	applied func(principal, method, id string) (*pbx.Applied, bool)
	// watches enforces the server-wide watch cap and ends stalled watches.
	watches *watchRegistry
}

func newCallService(cfg Config, d Deps, log *slog.Logger, m *metrics, drain <-chan struct{}) *callService {
	cv := newConverter(d.Store, d.Directory)
	return &callService{
		cfg: cfg, store: d.Store, dir: d.Directory, sw: d.Switch, lim: d.Limiter, log: log, m: m,
		cv:    cv,
		idem:  newIdempotencyCache(cfg.IdempotencyTTL, cfg.IdempotencySize),
		enc:   newEncodeCache(cv, d.Store.HistorySize()),
		drain: drain,

		awaitRevision: d.AwaitRevision,
		applied:       d.Applied,
	}
}

// principalOf returns the authenticated caller. The auth interceptor
// guarantees one on every call of this service.
func principalOf(ctx context.Context) (*auth.Principal, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return nil, errNoPrincipal
	}
	return p, nil
}

// reader returns the caller of a read (ListCalls, GetCall, ListDevices,
// GetDevice) once it fits the caller's read budget.
func reader(ctx context.Context, lim *auth.Limiter, log *slog.Logger) (*auth.Principal, error) {
	p, err := principalOf(ctx)
	if err != nil {
		return nil, err
	}
	if err := lim.AllowRead(p); err != nil {
		return nil, toStatus(ctx, log, err)
	}
	return p, nil
}

// visibleCall returns the live call if p may see it.
func (s *callService) visibleCall(p *auth.Principal, field string, uid int64) (*callstore.Call, error) {
	c, ok := s.store.Get(uid)
	if !ok || !auth.CanSeeCall(p, c) {
		return nil, callNotFound(field, uid)
	}
	return c, nil
}

// controllableCall returns the live call if p may control it: visible and
// on a device p owns.
func (s *callService) controllableCall(p *auth.Principal, field string, uid int64) (*callstore.Call, error) {
	c, err := s.visibleCall(p, field, uid)
	if err != nil {
		return nil, err
	}
	if !auth.CanControl(p, c) {
		return nil, permissionDenied(fmt.Sprintf(
			"%s: call %d is on device %s, which %s does not own: only the device's owner controls its calls", field, uid, c.Device, p.Login))
	}
	return c, nil
}

// onOwnCall runs op on a call the caller may control and returns the call
// op returns; already reports that op changed nothing (its effect held).
func (s *callService) onOwnCall(p *auth.Principal, uid int64, op func() (c *callstore.Call, changed bool, err error)) (c *callstore.Call, already bool, err error) {
	if _, err := s.controllableCall(p, "uid", uid); err != nil {
		return nil, false, err
	}
	c, changed, err := op()
	if err != nil {
		return nil, false, err
	}
	return c, !changed, nil
}

// callResponse fills resp, the response of a control RPC on one call
// (HoldResponse, TalkResponse, MuteResponse: call and already_applied;
// HangupResponse, DtmfResponse: call, and already false): c as p sees it
// and, if already, already_applied. The watch's event encoder writes the
// Call's bytes straight from the store's leg (eventwire.go), and they are
// the message's unknown fields, which proto.Marshal writes as they are:
// the same bytes as marshalling the converter's Call
// (TestCallResponseMatchesConverter), without building the Call and its
// timestamps first, nor protobuf's field-by-field marshalling of it, which
// was the largest part of what a control call cost the server beyond a
// no-op call (docs/BENCHMARKS.md, "Sixth round"). The message is meant to
// be marshalled: in this process its getters see none of these fields.
func (s *callService) callResponse(resp proto.Message, room []byte, p *auth.Principal, c *callstore.Call, already bool) {
	qvis := c != nil && s.cv.qcallVisible(c, auth.VisibleFunc(p))
	resp.ProtoReflect().SetUnknown(appendCallResponse(room, s.enc.ev, c, qvis, already))
}

// responseRoom is the room newResponse makes for a response's encoding
// (callbench's control responses are 164 bytes): with the largest
// response message (56 bytes) it fills the 320-byte size class, which
// the message (64) and a 256-byte buffer took in two allocations.
const responseRoom = 264

// withRoom is a control response and the room for its encoding, in one
// allocation: the encoding lives as long as the message (it is the
// message's unknown bytes), so one object serves both and a control call
// allocates once less. A longer encoding grows out of the room as append
// does (one allocation more, as past the 256-byte buffer before).
type withRoom[M any] struct {
	msg  M
	room [responseRoom]byte
}

// newResponse returns a new response message and the room for its
// encoding (callResponse).
func newResponse[M any]() (*M, []byte) {
	w := new(withRoom[M])
	return &w.msg, w.room[:0]
}

// appendCallResponse appends the encoding of a control response: c (if
// not nil) as its call, and already_applied if already.
func appendCallResponse(b []byte, en *eventEncoder, c *callstore.Call, qvis, already bool) []byte {
	if c != nil {
		var at int
		b, at = wirefield.OpenMessage(b, wirefield.ControlCall)
		b = en.appendCall(b, c, qvis)
		b = wirefield.CloseMessage(b, at)
	}
	if already {
		b = wirefield.AppendBool(b, wirefield.ControlAlreadyApplied, true)
	}
	return b
}

// always adapts a switch operation that always changes the call.
func always(c *callstore.Call, err error) (*callstore.Call, bool, error) { return c, true, err }

type idempotent interface {
	proto.Message
	GetRequestId() string
}

// control runs a control RPC: the caller's rate limit, then act, with the
// outcome remembered under request_id when the client sent one.
//
// The switch gets the request (pbx.WithRequest) on ctx, so that a
// replica's log records which request each revision applied; a request
// the cache does not know but the log applied (under an earlier leader)
// is answered from the log, not applied again (replay.go).
func control[R proto.Message](ctx context.Context, s *callService, method string, req idempotent, act func(ctx context.Context, p *auth.Principal) (R, error)) (R, error) {
	var zero R
	p, err := principalOf(ctx)
	if err != nil {
		return zero, err
	}
	id := req.GetRequestId()
	var fp [sha256.Size]byte
	if id != "" {
		fp = fingerprint(req)
	}
	run := func() (proto.Message, error) {
		if s.lim != nil {
			if err := s.lim.AllowControl(p); err != nil {
				return nil, s.status(ctx, err)
			}
		}
		ctx := ctx
		if id != "" {
			if a, ok := s.logged(p, method, id); ok {
				return s.fromLog(p, req, fp, a)
			}
			ctx = pbx.WithRequest(ctx, pbx.Request{Principal: p.Login, Method: method, ID: id, Fingerprint: fp})
		}
		r, err := act(ctx, p)
		if err != nil {
			return nil, s.status(ctx, err)
		}
		return r, nil
	}
	if id == "" {
		r, err := run()
		if err != nil {
			return zero, err
		}
		return r.(R), nil
	}
	if s.reusedInLog(p, method, id, fp) {
		return zero, reusedRequestID()
	}
	r, err, replay := s.idem.do(ctx, idemKey{p.Login, method, id}, req, run)
	if replay {
		s.m.idempotentHi.Inc()
	}
	if err != nil {
		return zero, err
	}
	return r.(R), nil
}

func (s *callService) status(ctx context.Context, err error) error { return toStatus(ctx, s.log, err) }

func toStoreFilter(f *callcontrolv1.CallFilter) callstore.Filter {
	var out callstore.Filter
	if f == nil {
		return out
	}
	out.UIDs = f.GetUids()
	out.Devices = f.GetDevices()
	out.Companies = f.GetCompanies()
	for _, st := range f.GetStates() {
		out.States = append(out.States, stateFromProto(st))
	}
	for _, t := range f.GetEventTypes() {
		out.Types = append(out.Types, eventTypeFromProto(t))
	}
	return out
}

func (s *callService) ListCalls(ctx context.Context, req *callcontrolv1.ListCallsRequest) (*callcontrolv1.ListCallsResponse, error) {
	var v validator
	v.filter(req.GetFilter())
	size := v.pageSize(req.GetPageSize())
	cursor, err := parsePageToken(req.GetPageToken())
	if err != nil {
		v.add("page_token", "%v", err)
	}
	var after int64
	if cursor != "" {
		if after, err = strconv.ParseInt(cursor, 10, 64); err != nil || after < 0 {
			v.add("page_token", "malformed page token: pass next_page_token from the previous response unchanged")
		}
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	p, err := reader(ctx, s.lim, s.log)
	if err != nil {
		return nil, err
	}
	f := toStoreFilter(req.GetFilter())
	visible := auth.VisibleFunc(p)
	calls, rev := s.store.List(&f, visible, after, size+1)
	resp := &callcontrolv1.ListCallsResponse{Revision: rev}
	if len(calls) > size {
		calls = calls[:size]
		resp.NextPageToken = pageToken(strconv.FormatInt(calls[size-1].UID, 10))
	}
	resp.Calls = make([]*callcontrolv1.Call, len(calls))
	for i, c := range calls {
		resp.Calls[i] = s.cv.call(c, visible)
	}
	return resp, nil
}

func (s *callService) GetCall(ctx context.Context, req *callcontrolv1.GetCallRequest) (*callcontrolv1.GetCallResponse, error) {
	var v validator
	v.uid("uid", req.GetUid())
	if err := v.err(); err != nil {
		return nil, err
	}
	p, err := reader(ctx, s.lim, s.log)
	if err != nil {
		return nil, err
	}
	c, err := s.visibleCall(p, "uid", req.GetUid())
	if err != nil {
		return nil, err
	}
	return &callcontrolv1.GetCallResponse{Call: s.cv.call(c, auth.VisibleFunc(p))}, nil
}

func (s *callService) Dial(ctx context.Context, req *callcontrolv1.DialRequest) (*callcontrolv1.DialResponse, error) {
	var v validator
	v.name("device", req.GetDevice())
	v.number("number", req.GetNumber())
	v.requestID(req.GetRequestId())
	if err := v.err(); err != nil {
		return nil, err
	}
	return control(ctx, s, "Dial", req, func(ctx context.Context, p *auth.Principal) (*callcontrolv1.DialResponse, error) {
		dev, ok := s.dir.Device(req.GetDevice())
		if !ok || !auth.CanSeeDevice(p, dev) {
			return nil, deviceNotFound("device", req.GetDevice())
		}
		if !auth.CanControlDevice(p, dev) {
			return nil, permissionDenied(fmt.Sprintf("device: %s does not own %s: dial from one of your own devices", p.Login, dev.Name))
		}
		c, err := s.sw.Dial(ctx, dev.Name, req.GetNumber(), pbx.DialOptions{AutoHold: req.GetAutohold(), AutoAnswer: req.GetAutoanswer()})
		if err != nil {
			return nil, err
		}
		return &callcontrolv1.DialResponse{Call: s.cv.call(c, auth.VisibleFunc(p))}, nil
	})
}

func (s *callService) Hold(ctx context.Context, req *callcontrolv1.HoldRequest) (*callcontrolv1.HoldResponse, error) {
	if err := checkUID(req.GetUid(), req.GetRequestId()); err != nil {
		return nil, err
	}
	return control(ctx, s, "Hold", req, func(ctx context.Context, p *auth.Principal) (*callcontrolv1.HoldResponse, error) {
		c, already, err := s.onOwnCall(p, req.GetUid(), func() (*callstore.Call, bool, error) { return s.sw.Hold(ctx, req.GetUid()) })
		if err != nil {
			return nil, err
		}
		resp, room := newResponse[callcontrolv1.HoldResponse]()
		s.callResponse(resp, room, p, c, already)
		return resp, nil
	})
}

func (s *callService) Talk(ctx context.Context, req *callcontrolv1.TalkRequest) (*callcontrolv1.TalkResponse, error) {
	if err := checkUID(req.GetUid(), req.GetRequestId()); err != nil {
		return nil, err
	}
	return control(ctx, s, "Talk", req, func(ctx context.Context, p *auth.Principal) (*callcontrolv1.TalkResponse, error) {
		c, already, err := s.onOwnCall(p, req.GetUid(), func() (*callstore.Call, bool, error) { return s.sw.Talk(ctx, req.GetUid()) })
		if err != nil {
			return nil, err
		}
		resp, room := newResponse[callcontrolv1.TalkResponse]()
		s.callResponse(resp, room, p, c, already)
		return resp, nil
	})
}

func (s *callService) Hangup(ctx context.Context, req *callcontrolv1.HangupRequest) (*callcontrolv1.HangupResponse, error) {
	if err := checkUID(req.GetUid(), req.GetRequestId()); err != nil {
		return nil, err
	}
	return control(ctx, s, "Hangup", req, func(ctx context.Context, p *auth.Principal) (*callcontrolv1.HangupResponse, error) {
		c, _, err := s.onOwnCall(p, req.GetUid(), func() (*callstore.Call, bool, error) { return always(s.sw.Hangup(ctx, req.GetUid())) })
		if err != nil {
			return nil, err
		}
		resp, room := newResponse[callcontrolv1.HangupResponse]()
		s.callResponse(resp, room, p, c, false)
		return resp, nil
	})
}

func (s *callService) Send(ctx context.Context, req *callcontrolv1.SendRequest) (*callcontrolv1.SendResponse, error) {
	var v validator
	v.uid("uid", req.GetUid())
	v.number("number", req.GetNumber())
	v.requestID(req.GetRequestId())
	if err := v.err(); err != nil {
		return nil, err
	}
	return control(ctx, s, "Send", req, func(ctx context.Context, p *auth.Principal) (*callcontrolv1.SendResponse, error) {
		c, err := s.visibleCall(p, "uid", req.GetUid())
		if err != nil {
			return nil, err
		}
		if !auth.CanSend(p, c) {
			return nil, permissionDenied(fmt.Sprintf(
				"uid: send needs administrative ownership of call %d (admin or sys-admin, or company-admin of %q); %s is %s",
				c.UID, c.DeviceCompany, p.Login, p.Role))
		}
		old, redirected, err := s.sw.Send(ctx, req.GetUid(), req.GetNumber())
		if err != nil {
			return nil, err
		}
		vis := auth.VisibleFunc(p)
		resp := &callcontrolv1.SendResponse{Call: s.cv.call(old, vis)}
		if redirected != nil && vis(redirected) {
			resp.NewCall = s.cv.call(redirected, vis)
		}
		return resp, nil
	})
}

func (s *callService) Xfer(ctx context.Context, req *callcontrolv1.XferRequest) (*callcontrolv1.XferResponse, error) {
	var v validator
	v.uid("uid", req.GetUid())
	v.number("number", req.GetNumber())
	v.requestID(req.GetRequestId())
	if err := v.err(); err != nil {
		return nil, err
	}
	return control(ctx, s, "Xfer", req, func(ctx context.Context, p *auth.Principal) (*callcontrolv1.XferResponse, error) {
		if _, err := s.controllableCall(p, "uid", req.GetUid()); err != nil {
			return nil, err
		}
		c, transferred, err := s.sw.Xfer(ctx, req.GetUid(), req.GetNumber())
		if err != nil {
			return nil, err
		}
		vis := auth.VisibleFunc(p)
		resp := &callcontrolv1.XferResponse{Call: s.cv.call(c, vis)}
		if transferred != nil && vis(transferred) {
			resp.TransferredCall = s.cv.call(transferred, vis)
		}
		return resp, nil
	})
}

func (s *callService) AtXfer(ctx context.Context, req *callcontrolv1.AtXferRequest) (*callcontrolv1.AtXferResponse, error) {
	var v validator
	v.uid("uid", req.GetUid())
	v.uid("target_uid", req.GetTargetUid())
	if req.GetUid() == req.GetTargetUid() && req.GetUid() > 0 {
		v.add("target_uid", "must differ from uid: atxfer bridges two different calls")
	}
	v.requestID(req.GetRequestId())
	if err := v.err(); err != nil {
		return nil, err
	}
	return control(ctx, s, "AtXfer", req, func(ctx context.Context, p *auth.Principal) (*callcontrolv1.AtXferResponse, error) {
		if _, err := s.controllableCall(p, "uid", req.GetUid()); err != nil {
			return nil, err
		}
		if _, err := s.controllableCall(p, "target_uid", req.GetTargetUid()); err != nil {
			return nil, err
		}
		a, b, err := s.sw.AtXfer(ctx, req.GetUid(), req.GetTargetUid())
		if err != nil {
			return nil, err
		}
		vis := auth.VisibleFunc(p)
		return &callcontrolv1.AtXferResponse{Call: s.cv.call(a, vis), TargetCall: s.cv.call(b, vis)}, nil
	})
}

func (s *callService) Mute(ctx context.Context, req *callcontrolv1.MuteRequest) (*callcontrolv1.MuteResponse, error) {
	if err := checkUID(req.GetUid(), req.GetRequestId()); err != nil {
		return nil, err
	}
	return control(ctx, s, "Mute", req, func(ctx context.Context, p *auth.Principal) (*callcontrolv1.MuteResponse, error) {
		c, already, err := s.onOwnCall(p, req.GetUid(), func() (*callstore.Call, bool, error) { return s.sw.Mute(ctx, req.GetUid(), req.GetMute()) })
		if err != nil {
			return nil, err
		}
		resp, room := newResponse[callcontrolv1.MuteResponse]()
		s.callResponse(resp, room, p, c, already)
		return resp, nil
	})
}

func (s *callService) Dtmf(ctx context.Context, req *callcontrolv1.DtmfRequest) (*callcontrolv1.DtmfResponse, error) {
	var v validator
	v.uid("uid", req.GetUid())
	v.tone(req.GetTone())
	v.requestID(req.GetRequestId())
	if err := v.err(); err != nil {
		return nil, err
	}
	return control(ctx, s, "Dtmf", req, func(ctx context.Context, p *auth.Principal) (*callcontrolv1.DtmfResponse, error) {
		c, _, err := s.onOwnCall(p, req.GetUid(), func() (*callstore.Call, bool, error) { return always(s.sw.Dtmf(ctx, req.GetUid(), req.GetTone())) })
		if err != nil {
			return nil, err
		}
		resp, room := newResponse[callcontrolv1.DtmfResponse]()
		s.callResponse(resp, room, p, c, false)
		return resp, nil
	})
}

// checkUID validates the requests that carry only a uid and a request_id.
func checkUID(uid int64, requestID string) error {
	var v validator
	v.uid("uid", uid)
	v.requestID(requestID)
	return v.err()
}
