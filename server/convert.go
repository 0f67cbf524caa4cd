package server

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"callcontrold/callstore"
	"callcontrold/directory"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// converter turns store values into API messages. The directory is
// read-only, so owner contacts are built once and shared by every message
// (proto marshalling only reads them).
type converter struct {
	store    *callstore.Store
	contacts map[string]*callcontrolv1.Contact // by login
	// deviceStubs stand for "a call on device D" when visibility must be
	// decided for a call that may have ended: qcall references outlive
	// the leg they point at, and visibility depends only on the device.
	deviceStubs map[string]*callstore.Call
}

func newConverter(store *callstore.Store, dir *directory.Directory) *converter {
	c := &converter{store: store, contacts: make(map[string]*callcontrolv1.Contact), deviceStubs: make(map[string]*callstore.Call)}
	for _, u := range dir.Users() {
		c.contacts[u.Login] = &callcontrolv1.Contact{Id: u.ID, Login: u.Login, Name: u.Name, Company: u.Company}
	}
	for _, d := range dir.Devices() {
		c.deviceStubs[d.Name] = &callstore.Call{DeviceRef: &callstore.DeviceRef{Device: d.Name, DeviceCompany: d.Company, OwnerLogin: d.Owner}}
	}
	return c
}

func millis(ms int64) *timestamppb.Timestamp {
	if ms == 0 {
		return nil
	}
	return timestamppb.New(time.UnixMilli(ms))
}

func seconds(s int64) *timestamppb.Timestamp {
	if s == 0 {
		return nil
	}
	return timestamppb.New(time.Unix(s, 0))
}

// call converts one leg. visible decides whether the viewer may see the
// queue-bridged call (qcall is null for a viewer without access to it);
// nil means it may.
func (cv *converter) call(c *callstore.Call, visible func(*callstore.Call) bool) *callcontrolv1.Call {
	if c == nil {
		return nil
	}
	out := &callcontrolv1.Call{
		Uid:           c.UID,
		Id:            c.ID,
		Cid:           c.CID,
		Device:        c.Device,
		DeviceCompany: c.DeviceCompany,
		Label:         c.Label,
		Name:          c.Name,
		Number:        c.Number,
		Stamp:         millis(c.StampMillis),
		Start:         millis(c.StartMillis),
		OwnerId:       c.OwnerID,
		Company:       c.Company,
		Cause:         c.Cause,
		CauseTxt:      c.CauseText(),
		Party:         partyToProto(c.Party),
		State:         stateToProto(c.State),
		NrState:       nrStateToProto(c.NRState),
		JsState:       jsStateToProto(c.JSState),
	}
	if c.OwnerLogin != "" {
		out.Owner = cv.contacts[c.OwnerLogin]
	}
	if c.HasDTMF {
		d := c.DTMF
		out.DtmfString = &d
	}
	if e := c.Extension; e != nil {
		out.Extension = &callcontrolv1.Extension{Number: e.Number, Company: e.Company, Type: extensionTypeToProto(e.Type), Name: e.Name}
	}
	for _, f := range featureList {
		if c.Features&f.bit != 0 {
			out.Features = append(out.Features, f.pb)
		}
	}
	if c.JSState != callstore.JSNone {
		j := c.JSInfo
		out.JsInfo = &callcontrolv1.JsInfo{
			State:       jsStateToProto(c.JSState),
			Established: j.Established,
			Ended:       j.Ended,
			Onhold:      &callcontrolv1.JsHold{Local: j.HoldLocal, Remote: j.HoldRemote},
			Muted:       &callcontrolv1.JsMuted{Audio: j.MutedAudio, Video: j.MutedVideo},
		}
	}
	if q := c.Queue; q != nil {
		out.Qname, out.Qnumber = q.Name, q.Number
		out.Inq, out.Outq = seconds(q.In), seconds(q.Out)
		if cv.qcallVisible(c, visible) {
			out.Qcall = &callcontrolv1.CallRef{Uid: q.CallUID, Id: q.CallID, Device: q.CallDevice}
		}
	}
	return out
}

// hasQcall reports whether c points at a queue-bridged call.
func hasQcall(c *callstore.Call) bool { return c.Queue != nil && c.Queue.CallUID != 0 }

// qcallVisible reports whether c has a queue-bridged call the viewer may
// see. nil visible means the viewer sees everything.
func (cv *converter) qcallVisible(c *callstore.Call, visible func(*callstore.Call) bool) bool {
	if !hasQcall(c) {
		return false
	}
	if visible == nil {
		return true
	}
	stub, ok := cv.deviceStubs[c.Queue.CallDevice]
	return ok && visible(stub)
}

// xferVisible returns a bit set of the xfer_data legs the viewer may see
// (bit i for legs[i]; nil visible sees all). Like qcall, a reference to a
// call the viewer may not see is left out rather than revealed.
func (cv *converter) xferVisible(legs []callstore.XferLeg, visible func(*callstore.Call) bool) uint64 {
	var mask uint64
	for i, l := range legs[:min(len(legs), 64)] {
		if visible == nil {
			mask |= 1 << i
		} else if stub, ok := cv.deviceStubs[l.Device]; ok && visible(stub) {
			mask |= 1 << i
		}
	}
	return mask
}
