package server

import (
	"context"
	"fmt"
	"time"

	"callcontrold/auth"
	"callcontrold/callstore"
	"callcontrold/directory"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/pbx"
)

// simulatorService implements SimulatorService: the far end of the
// simulated switch, for admins (tests, demos, load).
type simulatorService struct {
	callcontrolv1.UnimplementedSimulatorServiceServer
	sim   pbx.Simulator
	calls *callService
}

func newSimulatorService(d Deps, calls *callService) *simulatorService {
	return &simulatorService{sim: d.Simulator, calls: calls}
}

// admit lets admin and sys-admin logins drive the simulator.
func (s *simulatorService) admit(ctx context.Context) (*auth.Principal, error) {
	if s.sim == nil {
		return nil, simulatorUnavailable()
	}
	p, err := principalOf(ctx)
	if err != nil {
		return nil, err
	}
	if p.Role != directory.RoleAdmin && p.Role != directory.RoleSysAdmin {
		return nil, permissionDenied(fmt.Sprintf("the simulator is for admin and sys-admin logins; %s is %s", p.Login, p.Role))
	}
	return p, nil
}

func (s *simulatorService) one(ctx context.Context, p *auth.Principal, c *callstore.Call, err error) (*callcontrolv1.Call, error) {
	if err != nil {
		return nil, s.calls.status(ctx, err)
	}
	return s.calls.cv.call(c, auth.VisibleFunc(p)), nil
}

func (s *simulatorService) PlaceInboundCall(ctx context.Context, req *callcontrolv1.PlaceInboundCallRequest) (*callcontrolv1.PlaceInboundCallResponse, error) {
	var v validator
	v.number("from_number", req.GetFromNumber())
	v.number("to_extension", req.GetToExtension())
	if len(req.GetFromName()) > maxNameLen {
		v.add("from_name", "must be at most %d bytes", maxNameLen)
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	p, err := s.admit(ctx)
	if err != nil {
		return nil, err
	}
	calls, err := s.sim.PlaceInbound(ctx, req.GetFromNumber(), req.GetFromName(), req.GetToExtension())
	if err != nil {
		return nil, s.calls.status(ctx, err)
	}
	resp := &callcontrolv1.PlaceInboundCallResponse{}
	vis := auth.VisibleFunc(p)
	for _, c := range calls {
		resp.Calls = append(resp.Calls, s.calls.cv.call(c, vis))
	}
	return resp, nil
}

func (s *simulatorService) AnswerRemote(ctx context.Context, req *callcontrolv1.AnswerRemoteRequest) (*callcontrolv1.AnswerRemoteResponse, error) {
	if err := checkUID(req.GetUid(), ""); err != nil {
		return nil, err
	}
	p, err := s.admit(ctx)
	if err != nil {
		return nil, err
	}
	c, err := s.sim.AnswerRemote(ctx, req.GetUid())
	pc, err := s.one(ctx, p, c, err)
	if err != nil {
		return nil, err
	}
	return &callcontrolv1.AnswerRemoteResponse{Call: pc}, nil
}

func (s *simulatorService) RejectRemote(ctx context.Context, req *callcontrolv1.RejectRemoteRequest) (*callcontrolv1.RejectRemoteResponse, error) {
	var v validator
	v.uid("uid", req.GetUid())
	if c := req.GetCause(); c < 0 || c > 127 {
		v.add("cause", "must be a Q.850 cause 1-127 (0 means 21, Call Rejected), got %d", c)
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	p, err := s.admit(ctx)
	if err != nil {
		return nil, err
	}
	c, err := s.sim.RejectRemote(ctx, req.GetUid(), req.GetCause())
	pc, err := s.one(ctx, p, c, err)
	if err != nil {
		return nil, err
	}
	return &callcontrolv1.RejectRemoteResponse{Call: pc}, nil
}

func (s *simulatorService) HangupRemote(ctx context.Context, req *callcontrolv1.HangupRemoteRequest) (*callcontrolv1.HangupRemoteResponse, error) {
	if err := checkUID(req.GetUid(), ""); err != nil {
		return nil, err
	}
	p, err := s.admit(ctx)
	if err != nil {
		return nil, err
	}
	c, err := s.sim.HangupRemote(ctx, req.GetUid())
	pc, err := s.one(ctx, p, c, err)
	if err != nil {
		return nil, err
	}
	return &callcontrolv1.HangupRemoteResponse{Call: pc}, nil
}

func (s *simulatorService) SetNumberBehaviour(ctx context.Context, req *callcontrolv1.SetNumberBehaviourRequest) (*callcontrolv1.SetNumberBehaviourResponse, error) {
	var v validator
	v.number("number", req.GetNumber())
	b, ok := behaviourFromProto(req.GetBehaviour())
	if !ok {
		v.add("behaviour", "must be ANSWER, BUSY, NO_ANSWER, REJECT or MANUAL, got %v", req.GetBehaviour())
	}
	if d := req.GetAnswerDelay(); d != nil && (d.CheckValid() != nil || d.AsDuration() < 0 || d.AsDuration() > maxAnswerDelay) {
		v.add("answer_delay", "must be between 0 and %v", maxAnswerDelay)
	}
	if c := req.GetCause(); c < 0 || c > 127 {
		v.add("cause", "must be a Q.850 cause 1-127 (0 means 21), got %d", c)
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	if _, err := s.admit(ctx); err != nil {
		return nil, err
	}
	b.AnswerDelay = req.GetAnswerDelay().AsDuration()
	b.Cause = req.GetCause()
	if err := s.sim.SetNumberBehaviour(req.GetNumber(), b); err != nil {
		return nil, s.calls.status(ctx, err)
	}
	return &callcontrolv1.SetNumberBehaviourResponse{}, nil
}

// maxAnswerDelay bounds how long a simulated number may ring before it
// acts, so a typo cannot park a call for hours.
const maxAnswerDelay = 10 * time.Minute

func behaviourFromProto(b callcontrolv1.NumberBehaviour) (directory.Behaviour, bool) {
	var a directory.Action
	switch b {
	case callcontrolv1.NumberBehaviour_NUMBER_BEHAVIOUR_ANSWER:
		a = directory.ActionAnswer
	case callcontrolv1.NumberBehaviour_NUMBER_BEHAVIOUR_BUSY:
		a = directory.ActionBusy
	case callcontrolv1.NumberBehaviour_NUMBER_BEHAVIOUR_NO_ANSWER:
		a = directory.ActionNoAnswer
	case callcontrolv1.NumberBehaviour_NUMBER_BEHAVIOUR_REJECT:
		a = directory.ActionReject
	case callcontrolv1.NumberBehaviour_NUMBER_BEHAVIOUR_MANUAL:
		a = directory.ActionManual
	default:
		return directory.Behaviour{}, false
	}
	return directory.Behaviour{Action: a}, true
}
