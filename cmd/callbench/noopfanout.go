package main

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"callcontrold/callstore"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/server"
)

// The no-op fan-out is the fan-out scenarios' baseline: the same gRPC
// server, interceptor chain, connections, watchers' process and frames'
// shape, with nothing of the service between the driver and the writes.
// A Fanout stream of the no-op service subscribes to one device (the
// request's first device filter) or to everything, gets a started frame,
// then every frame published for it, in order: a buffered channel and a
// goroutine per stream, the textbook gRPC fan-out. No store, filter
// language, views, visibility, resume, history or encoding cache: the
// driver encodes a revision's frame once and the hub hands the same bytes
// to each of its streams. What a WatchCalls fan-out costs beyond it, in
// latency and in CPU per delivered event, is what the service adds; what
// they share is the machine's, grpc's and the watchers' process's.
const noopFanoutMethod = "/" + noopService + "/Fanout"

// noopQueue is a no-op stream's buffer, in frames: a stream whose buffer
// is full loses the frame (its watcher counts the gap as dropped; the WatchCalls
// fan-out's watcher queue is 1,024 revisions too).
const noopQueue = 1024

// noopHub fans the no-op frames out.
type noopHub struct {
	mu    sync.Mutex
	rev   int64 // the last revision published
	byDev map[string][]*noopSub
	all   []*noopSub
}

type noopSub struct{ ch chan []byte }

// subscribe adds a stream for device ("" for everything) and returns it,
// the revision it starts after, and its removal.
func (h *noopHub) subscribe(device string) (*noopSub, int64, func()) {
	s := &noopSub{ch: make(chan []byte, noopQueue)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if device == "" {
		h.all = append(h.all, s)
	} else {
		if h.byDev == nil {
			h.byDev = map[string][]*noopSub{}
		}
		h.byDev[device] = append(h.byDev[device], s)
	}
	return s, h.rev, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if device == "" {
			h.all = removeSub(h.all, s)
		} else if subs := removeSub(h.byDev[device], s); len(subs) > 0 {
			h.byDev[device] = subs
		} else {
			delete(h.byDev, device)
		}
	}
}

func removeSub(subs []*noopSub, s *noopSub) []*noopSub {
	for i, x := range subs {
		if x == s {
			return append(subs[:i], subs[i+1:]...)
		}
	}
	return subs
}

// revision returns the last revision published.
func (h *noopHub) revision() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rev
}

// publish hands frame, revision rev's, to device's streams and to those
// of everything. The driver is the only publisher: rev must follow the
// last one.
func (h *noopHub) publish(device string, rev int64, frame []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if rev != h.rev+1 {
		return fmt.Errorf("no-op fan-out: revision %d after %d", rev, h.rev)
	}
	h.rev = rev
	for _, subs := range [][]*noopSub{h.byDev[device], h.all} {
		for _, s := range subs {
			select {
			case s.ch <- frame:
			default: // lost: its watcher sees the gap
			}
		}
	}
	return nil
}

// serveNoopFanout is the Fanout stream's handler.
func serveNoopFanout(h *noopHub, stream grpc.ServerStream) error {
	req := new(callcontrolv1.WatchCallsRequest)
	if err := stream.RecvMsg(req); err != nil {
		return err
	}
	var device string
	if devs := req.GetFilter().GetDevices(); len(devs) > 0 {
		device = devs[0]
	}
	sub, rev, unsubscribe := h.subscribe(device)
	defer unsubscribe()
	if err := stream.SendMsg(&callcontrolv1.WatchCallsResponse{Frame: &callcontrolv1.WatchCallsResponse_Started{Started: &callcontrolv1.WatchStarted{Revision: rev}}}); err != nil {
		return nil // the client left
	}
	ctx := stream.Context()
	for {
		select {
		case b := <-sub.ch:
			if err := stream.SendMsg(server.Encoded(b)); err != nil {
				return nil
			}
		case <-ctx.Done():
			return nil
		}
	}
}

// noopEventFrame encodes revision rev's frame for the no-op fan-out: an
// event batch with the one changed leg, carrying about the fields the
// WatchCalls converter writes for the driver's legs (values copied, enums
// by number: the watchers read only the revision and the stamp), so that
// both kinds of stream send messages of about the same size (the report
// gives both averages).
func noopEventFrame(rev int64, ch callstore.Change) ([]byte, error) {
	c := ch.Call
	if c == nil || c.DeviceRef == nil {
		return nil, errors.New("no-op fan-out: a change without a call or device")
	}
	pc := &callcontrolv1.Call{
		Uid: c.UID, Id: c.ID, Cid: c.CID, Device: c.Device, DeviceCompany: c.DeviceCompany,
		Name: c.Name, Number: c.Number, OwnerId: c.OwnerID, Company: c.DeviceCompany, Cause: c.Cause,
		Owner: &callcontrolv1.Contact{Id: c.OwnerID, Login: c.OwnerLogin, Name: c.OwnerLogin},
		Stamp: timestamppb.New(time.UnixMilli(c.StampMillis)),
		Party: callcontrolv1.Party(c.Party), State: callcontrolv1.State(c.State), NrState: callcontrolv1.NearEndState(c.NRState),
		Features: []callcontrolv1.Feature{callcontrolv1.Feature(c.Features)},
	}
	if c.StartMillis != 0 {
		pc.Start = timestamppb.New(time.UnixMilli(c.StartMillis))
	}
	return proto.Marshal(&callcontrolv1.WatchCallsResponse{Frame: &callcontrolv1.WatchCallsResponse_Events{Events: &callcontrolv1.EventBatch{
		Revision: rev,
		Events: []*callcontrolv1.CallEvent{{
			Type: callcontrolv1.EventType_EVENT_TYPE_UPDATE, View: callcontrolv1.ViewChange_VIEW_CHANGE_STAYED, Call: pc,
		}},
	}}})
}
