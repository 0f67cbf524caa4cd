package server_test

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"

	"callcontrold/callstore"
	"callcontrold/directory"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// Health and reflection answer without a token (probes, grpcurl list);
// everything else needs one.
func TestHealthAndReflectionWithoutToken(t *testing.T) {
	h := newHarness(t)
	anon := h.dial("")

	hc := healthpb.NewHealthClient(anon.conn)
	for _, svc := range []string{"", "callcontrol.v1.CallControlService", "callcontrol.v1.DeviceService", "callcontrol.v1.SimulatorService"} {
		r, err := hc.Check(h.ctx(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("health %q: %v", svc, err)
		}
		if r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q: %v, want SERVING", svc, r.GetStatus())
		}
	}
	_, err := hc.Check(h.ctx(), &healthpb.HealthCheckRequest{Service: "no.such.Service"})
	statusOf(t, err, codes.NotFound)

	want := []string{
		"callcontrol.v1.CallControlService",
		"callcontrol.v1.DeviceService",
		"callcontrol.v1.SimulatorService",
		"grpc.health.v1.Health",
		"grpc.reflection.v1.ServerReflection",
		"grpc.reflection.v1alpha.ServerReflection",
	}
	t.Run("reflection v1", func(t *testing.T) {
		s, err := reflectionv1.NewServerReflectionClient(anon.conn).ServerReflectionInfo(h.ctx())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		r, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, svc := range r.GetListServicesResponse().GetService() {
			got = append(got, svc.GetName())
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("services %v, want %v", got, want)
		}
		// The descriptors are served too: grpcurl describe works.
		if err := s.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{
			FileContainingSymbol: "callcontrol.v1.CallControlService"}}); err != nil {
			t.Fatal(err)
		}
		if r, err = s.Recv(); err != nil || len(r.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
			t.Errorf("file containing CallControlService: %v %v", r, err)
		}
		s.CloseSend()
	})
	t.Run("reflection v1alpha", func(t *testing.T) {
		s, err := reflectionv1alpha.NewServerReflectionClient(anon.conn).ServerReflectionInfo(h.ctx())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&reflectionv1alpha.ServerReflectionRequest{MessageRequest: &reflectionv1alpha.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		r, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, svc := range r.GetListServicesResponse().GetService() {
			got = append(got, svc.GetName())
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("services %v, want %v", got, want)
		}
		s.CloseSend()
	})
}

func TestAuthentication(t *testing.T) {
	h := newHarness(t)
	anon := h.dial("")
	_, err := anon.calls.ListCalls(h.ctx(), &callcontrolv1.ListCallsRequest{})
	st := statusOf(t, err, codes.Unauthenticated)
	if !strings.Contains(st.Message(), "missing") {
		t.Errorf("message %q does not say the token is missing", st.Message())
	}
	// The stream of a watch is refused the same way.
	w := h.watchOn(anon, "anonymous", &callcontrolv1.WatchCallsRequest{})
	_, err = w.end()
	statusOf(t, err, codes.Unauthenticated)
	_, err = anon.devices.ListDevices(h.ctx(), &callcontrolv1.ListDevicesRequest{})
	statusOf(t, err, codes.Unauthenticated)
	_, err = anon.sim.PlaceInboundCall(h.ctx(), &callcontrolv1.PlaceInboundCallRequest{FromNumber: "+442079460001", ToExtension: "201"})
	statusOf(t, err, codes.Unauthenticated)

	bad := h.dial("demo-mallory")
	_, err = bad.calls.ListCalls(h.ctx(), &callcontrolv1.ListCallsRequest{})
	st = statusOf(t, err, codes.Unauthenticated)
	if strings.Contains(st.Message(), "demo-mallory") {
		t.Errorf("message %q repeats the token", st.Message())
	}

	// Every demo login is accepted.
	for _, login := range logins {
		if _, err := h.as(login).calls.ListCalls(h.ctx(), &callcontrolv1.ListCallsRequest{}); err != nil {
			t.Errorf("%s: %v", login, err)
		}
	}
	// The simulator is for admin and sys-admin only.
	for _, login := range []string{"acme-admin", "alice", "bob"} {
		_, err := h.as(login).sim.PlaceInboundCall(h.ctx(), &callcontrolv1.PlaceInboundCallRequest{FromNumber: "+442079460001", ToExtension: "201"})
		statusOf(t, err, codes.PermissionDenied)
	}
}

// Pages cover every visible item exactly once, in order; each login sees
// its share.
func TestPagination(t *testing.T) {
	h := newHarness(t)
	// Queue legs have no per-device limit: many calls, in both companies.
	for i := range 12 {
		h.inbound("+44207946000"+string(rune('0'+i%10)), "", "600")
		h.inbound("+44207946100"+string(rune('0'+i%10)), "", "650")
	}
	all, err := h.as("admin").calls.ListCalls(h.ctx(), &callcontrolv1.ListCallsRequest{PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if all.GetNextPageToken() != "" || len(all.GetCalls()) < 24 {
		t.Fatalf("admin: %d calls, next %q", len(all.GetCalls()), all.GetNextPageToken())
	}
	for _, login := range logins {
		var want []int64
		for _, c := range all.GetCalls() {
			if visibleTo(login, &callstore.Call{DeviceRef: &callstore.DeviceRef{DeviceCompany: c.GetDeviceCompany(), OwnerLogin: c.GetOwner().GetLogin()}}) {
				want = append(want, c.GetUid())
			}
		}
		for _, size := range []int32{1, 5, 7} {
			var got []int64
			token := ""
			for pages := 0; ; pages++ {
				if pages > 100 {
					t.Fatalf("%s: more than 100 pages", login)
				}
				r, err := h.as(login).calls.ListCalls(h.ctx(), &callcontrolv1.ListCallsRequest{PageSize: size, PageToken: token})
				if err != nil {
					t.Fatal(err)
				}
				if len(r.GetCalls()) > int(size) {
					t.Fatalf("%s: page of %d, size %d", login, len(r.GetCalls()), size)
				}
				for _, c := range r.GetCalls() {
					got = append(got, c.GetUid())
				}
				if token = r.GetNextPageToken(); token == "" {
					break
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s, pages of %d: %v, want %v", login, size, got, want)
			}
		}
	}

	dir := directory.Demo()
	for _, login := range logins {
		var want []string
		for _, d := range dir.Devices() {
			if visibleTo(login, &callstore.Call{DeviceRef: &callstore.DeviceRef{DeviceCompany: d.Company, OwnerLogin: d.Owner}}) {
				want = append(want, d.Name)
			}
		}
		slices.Sort(want)
		for _, size := range []int32{1, 2, 5, 0} {
			var got []string
			token := ""
			for pages := 0; ; pages++ {
				if pages > 100 {
					t.Fatalf("%s: more than 100 pages", login)
				}
				r, err := h.as(login).devices.ListDevices(h.ctx(), &callcontrolv1.ListDevicesRequest{PageSize: size, PageToken: token})
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range r.GetDevices() {
					got = append(got, d.GetName())
				}
				if token = r.GetNextPageToken(); token == "" {
					break
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s: ListDevices pages of %d: %v, want %v", login, size, got, want)
			}
		}
	}
	// bob: acme devices only; a device of default is not found.
	r, err := h.as("bob").devices.ListDevices(h.ctx(), &callcontrolv1.ListDevicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range r.GetDevices() {
		if d.GetCompany() != "acme" {
			t.Errorf("bob sees %s of %s", d.GetName(), d.GetCompany())
		}
	}
	if len(r.GetDevices()) != 5 {
		t.Errorf("bob sees %d devices, want the 5 of acme", len(r.GetDevices()))
	}
	_, err = h.as("bob").devices.GetDevice(h.ctx(), &callcontrolv1.GetDeviceRequest{Name: "SIP/201"})
	statusOf(t, err, codes.NotFound)
	if d, err := h.as("bob").devices.GetDevice(h.ctx(), &callcontrolv1.GetDeviceRequest{Name: "SIP/webrtc11"}); err != nil || !d.GetDevice().GetWebrtc() || d.GetDevice().GetOwner().GetLogin() != "bob" {
		t.Errorf("bob's own device: %v %v", d, err)
	}
}
