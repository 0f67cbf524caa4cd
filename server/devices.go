package server

import (
	"context"
	"log/slog"
	"sort"

	"callcontrold/auth"
	"callcontrold/directory"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/pbx"
)

// deviceService implements DeviceService from the directory and the
// switch's live device state.
type deviceService struct {
	callcontrolv1.UnimplementedDeviceServiceServer
	dir      *directory.Directory
	devices  DeviceStater
	contacts map[string]*callcontrolv1.Contact
	lim      *auth.Limiter
	log      *slog.Logger
}

func newDeviceService(d Deps, cv *converter, log *slog.Logger) *deviceService {
	return &deviceService{dir: d.Directory, devices: d.Devices, contacts: cv.contacts, lim: d.Limiter, log: log}
}

func (s *deviceService) device(d *directory.Device) *callcontrolv1.Device {
	out := &callcontrolv1.Device{
		Name:        d.Name,
		DisplayName: d.DisplayName,
		Company:     d.Company,
		Webrtc:      d.WebRTC,
		Extension:   d.Extension,
		Extensions:  s.dir.ExtensionsOf(d.Name),
		MailboxNew:  d.MailboxNew,
		MailboxOld:  d.MailboxOld,
		Status:      callcontrolv1.DeviceStatus_DEVICE_STATUS_UNKNOWN,
		Blf:         callcontrolv1.Blf_BLF_IDLE,
	}
	if d.Features.Answer {
		out.Features = append(out.Features, callcontrolv1.Feature_FEATURE_ANSWER)
	}
	if d.Features.Hold {
		out.Features = append(out.Features, callcontrolv1.Feature_FEATURE_HOLD)
	}
	if d.Features.Talk {
		out.Features = append(out.Features, callcontrolv1.Feature_FEATURE_TALK)
	}
	if d.Owner != "" {
		out.Owner = s.contacts[d.Owner]
		out.OwnerId = out.Owner.GetId()
	}
	if s.devices != nil {
		if st, err := s.devices.DeviceState(d.Name); err == nil {
			out.Blf = blfToProto(st.BLF)
			out.Status = statusToProto(st.Status)
		}
	}
	return out
}

func blfToProto(b pbx.BLF) callcontrolv1.Blf {
	switch b {
	case pbx.BLFBusy:
		return callcontrolv1.Blf_BLF_BUSY
	case pbx.BLFRinging:
		return callcontrolv1.Blf_BLF_RINGING
	case pbx.BLFBusyRinging:
		return callcontrolv1.Blf_BLF_BUSY_RINGING
	default:
		return callcontrolv1.Blf_BLF_IDLE
	}
}

func statusToProto(s pbx.DeviceStatus) callcontrolv1.DeviceStatus {
	switch s {
	case pbx.StatusUp:
		return callcontrolv1.DeviceStatus_DEVICE_STATUS_UP
	case pbx.StatusDown:
		return callcontrolv1.DeviceStatus_DEVICE_STATUS_DOWN
	default:
		return callcontrolv1.DeviceStatus_DEVICE_STATUS_UNKNOWN
	}
}

func (s *deviceService) ListDevices(ctx context.Context, req *callcontrolv1.ListDevicesRequest) (*callcontrolv1.ListDevicesResponse, error) {
	var v validator
	size := v.pageSize(req.GetPageSize())
	after, err := parsePageToken(req.GetPageToken())
	if err != nil {
		v.add("page_token", "%v", err)
	}
	if c := req.GetCompany(); c != "" {
		v.name("company", c)
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	p, err := reader(ctx, s.lim, s.log)
	if err != nil {
		return nil, err
	}
	all := s.dir.Devices() // sorted by name
	i := sort.Search(len(all), func(i int) bool { return all[i].Name > after })
	resp := &callcontrolv1.ListDevicesResponse{}
	for ; i < len(all); i++ {
		d := all[i]
		if !auth.CanSeeDevice(p, d) || (req.GetCompany() != "" && d.Company != req.GetCompany()) ||
			(req.GetControllable() && !auth.CanControlDevice(p, d)) {
			continue
		}
		if len(resp.Devices) == size {
			resp.NextPageToken = pageToken(resp.Devices[size-1].GetName())
			break
		}
		resp.Devices = append(resp.Devices, s.device(d))
	}
	return resp, nil
}

func (s *deviceService) GetDevice(ctx context.Context, req *callcontrolv1.GetDeviceRequest) (*callcontrolv1.GetDeviceResponse, error) {
	var v validator
	v.name("name", req.GetName())
	if err := v.err(); err != nil {
		return nil, err
	}
	p, err := reader(ctx, s.lim, s.log)
	if err != nil {
		return nil, err
	}
	d, ok := s.dir.Device(req.GetName())
	if !ok || !auth.CanSeeDevice(p, d) {
		return nil, deviceNotFound("name", req.GetName())
	}
	return &callcontrolv1.GetDeviceResponse{Device: s.device(d)}, nil
}
