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
}

func newConverter(store *callstore.Store, dir *directory.Directory) *converter {
	c := &converter{store: store, contacts: make(map[string]*callcontrolv1.Contact)}
	for _, u := range dir.Users() {
		c.contacts[u.Login] = &callcontrolv1.Contact{Id: u.ID, Login: u.Login, Name: u.Name, Company: u.Company}
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

var featureList = [...]struct {
	bit callstore.Features
	pb  callcontrolv1.Feature
}{
	{callstore.FeatureHold, callcontrolv1.Feature_FEATURE_HOLD},
	{callstore.FeatureTalk, callcontrolv1.Feature_FEATURE_TALK},
	{callstore.FeatureAnswer, callcontrolv1.Feature_FEATURE_ANSWER},
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
		Qname:         c.QName,
		Qnumber:       c.QNumber,
		Stamp:         millis(c.StampMillis),
		Start:         millis(c.StartMillis),
		Inq:           seconds(c.InQ),
		Outq:          seconds(c.OutQ),
		OwnerId:       c.OwnerID,
		Company:       c.Company,
		Cause:         c.Cause,
		CauseTxt:      c.CauseTxt,
		Party:         callcontrolv1.Party(c.Party),
		State:         callcontrolv1.State(c.State),
		NrState:       callcontrolv1.NearEndState(c.NRState),
		JsState:       callcontrolv1.JsState(c.JSState),
	}
	if c.OwnerLogin != "" {
		out.Owner = cv.contacts[c.OwnerLogin]
	}
	if c.HasDTMF {
		d := c.DTMF
		out.DtmfString = &d
	}
	if e := c.Extension; e != nil {
		out.Extension = &callcontrolv1.Extension{Number: e.Number, Company: e.Company, Type: callcontrolv1.ExtensionType(e.Type), Name: e.Name}
	}
	for _, f := range featureList {
		if c.Features&f.bit != 0 {
			out.Features = append(out.Features, f.pb)
		}
	}
	if c.JSState != callstore.JSNone {
		j := c.JSInfo
		out.JsInfo = &callcontrolv1.JsInfo{
			State:       callcontrolv1.JsState(c.JSState),
			Established: j.Established,
			Ended:       j.Ended,
			Onhold:      &callcontrolv1.JsHold{Local: j.HoldLocal, Remote: j.HoldRemote},
			Muted:       &callcontrolv1.JsMuted{Audio: j.MutedAudio, Video: j.MutedVideo},
		}
	}
	if c.QCallUID != 0 {
		if q, ok := cv.store.Get(c.QCallUID); ok && (visible == nil || visible(q)) {
			out.Qcall = &callcontrolv1.CallRef{Uid: q.UID, Id: q.ID, Device: q.Device}
		}
	}
	return out
}

// withXfer adds xfer_data, which only a TRANSFER event's call carries.
func withXfer(pc *callcontrolv1.Call, legs []callstore.XferLeg, dev func(uid int64) string) *callcontrolv1.Call {
	if len(legs) == 0 {
		return pc
	}
	xd := &callcontrolv1.XferData{}
	for _, l := range legs {
		xd.Calls = append(xd.Calls, &callcontrolv1.CallRef{Uid: l.UID, Id: l.ID, Device: dev(l.UID)})
	}
	pc.XferData = xd
	return pc
}

// deviceOf names the device of a live leg ("" once it has ended).
func (cv *converter) deviceOf(uid int64) string {
	if c, ok := cv.store.Get(uid); ok {
		return c.Device
	}
	return ""
}
