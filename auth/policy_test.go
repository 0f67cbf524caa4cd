package auth

import (
	"fmt"
	"testing"

	"pgregory.net/rapid"

	"callcontrold/callstore"
	"callcontrold/directory"
)

// TestPolicy has one row per rule of visibility and control (README, "Who
// sees what": the Call API's Permissions section, plus the control rules),
// over the demo directory. Each row checks every policy function on one (login, device)
// pair, so a row also proves what the rule does not grant.
func TestPolicy(t *testing.T) {
	dir := newDemoDirectory()
	tests := []struct {
		rule    string
		login   string
		device  string
		see     bool // CanSeeCall, CanSeeDevice, VisibleFunc
		control bool // CanControl, CanControlDevice
		send    bool // CanSend
	}{
		// Visibility: "The 'admin' login can see all calls on all devices."
		{"admin sees calls in default", "admin", "SIP/201", true, false, true},
		{"admin sees calls in acme", "admin", "SIP/webrtc11", true, false, true},
		{"admin sees calls on unowned devices", "admin", "Queue/q_650", true, false, true},
		// "A 'sys-admin' login can see all calls on all devices."
		{"sys-admin sees calls in default", "sysadmin", "SIP/201", true, false, true},
		{"sys-admin sees calls in acme", "sysadmin", "SIP/webrtc11", true, false, true},
		{"sys-admin sees calls on unowned devices", "sysadmin", "Park/701", true, false, true},
		// "A 'company-admin' can see calls on all administered companies."
		{"company-admin sees calls in its company", "acme-admin", "SIP/webrtc11", true, false, true},
		{"company-admin sees unowned devices of its company", "acme-admin", "Queue/q_650", true, false, true},
		{"company-admin does not see other companies", "acme-admin", "SIP/201", false, false, false},
		{"company-admin does not see unowned devices elsewhere", "acme-admin", "Park/701", false, false, false},
		// "A 'user' in the 'default' company can see calls in all companies."
		{"default user sees calls in default", "alice", "SIP/202", true, false, false},
		{"default user sees calls in acme", "alice", "SIP/webrtc11", true, false, false},
		{"default user sees unowned devices of other companies", "alice", "Queue/q_650", true, false, false},
		// "A 'user' NOT in the 'default' company can see calls in their own company."
		{"user elsewhere sees calls in its company", "bob", "SIP/302", true, false, false},
		{"user elsewhere sees unowned devices of its company", "bob", "Queue/q_650", true, false, false},
		{"user elsewhere does not see default", "bob", "SIP/201", false, false, false},
		{"user elsewhere does not see unowned devices of default", "bob", "Park/701", false, false, false},

		// Control: only calls on devices the caller owns, whatever the role.
		{"owner user controls its call", "alice", "SIP/201", true, true, false},
		{"owner user elsewhere controls its call", "bob", "SIP/webrtc11", true, true, false},
		{"owner admin controls its call", "admin", "SIP/202", true, true, true},
		{"owner sys-admin controls its call", "sysadmin", "SIP/299", true, true, true},
		{"owner company-admin controls its call", "acme-admin", "SIP/302", true, true, true},
		{"non-owner admin sees but cannot control", "admin", "SIP/webrtc11", true, false, true},
		{"non-owner sys-admin sees but cannot control", "sysadmin", "SIP/201", true, false, true},
		{"non-owner company-admin sees but cannot control", "acme-admin", "SIP/webrtc11", true, false, true},
		{"non-owner default user sees but cannot control", "alice", "SIP/302", true, false, false},
		{"non-owner user elsewhere sees but cannot control", "bob", "SIP/302", true, false, false},
		{"unowned device: nobody controls", "admin", "Park/701", true, false, true},

		// Send: admin and sys-admin anywhere, company-admin in its
		// companies; never a plain user, not even on its own call.
		{"admin sends anywhere", "admin", "SIP/302", true, false, true},
		{"sys-admin sends anywhere", "sysadmin", "SIP/302", true, false, true},
		{"company-admin sends in its company", "acme-admin", "SIP/webrtc11", true, false, true},
		{"company-admin does not send elsewhere", "acme-admin", "SIP/202", false, false, false},
		{"user does not send its own call", "alice", "SIP/201", true, true, false},
		{"user elsewhere does not send its own call", "bob", "SIP/webrtc11", true, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.rule, func(t *testing.T) {
			p := dir.principal(tt.login)
			dev := dir.device(tt.device)
			c := callOn(dev)
			checks := []struct {
				name string
				got  bool
				want bool
			}{
				{"CanSeeCall", CanSeeCall(p, c), tt.see},
				{"VisibleFunc", VisibleFunc(p)(c), tt.see},
				{"CanSeeDevice", CanSeeDevice(p, dev), tt.see},
				{"CanControl", CanControl(p, c), tt.control},
				{"CanControlDevice", CanControlDevice(p, dev), tt.control},
				{"CanSend", CanSend(p, c), tt.send},
			}
			if dev.Owner != p.Login { // an owner sees its calls whatever the company
				checks = append(checks, struct {
					name string
					got  bool
					want bool
				}{"CanSeeCompany", CanSeeCompany(p, dev.Company), tt.see})
			}
			for _, ck := range checks {
				if ck.got != ck.want {
					t.Errorf("%s(%s, %s in %s owned by %q) = %v, want %v",
						ck.name, tt.login, dev.Name, dev.Company, dev.Owner, ck.got, ck.want)
				}
			}
		})
	}
}

func TestPolicyNil(t *testing.T) {
	dir := newDemoDirectory()
	c := callOn(dir.device("SIP/201"))
	admin := dir.principal("admin")
	if CanSeeCall(nil, c) || CanControl(nil, c) || CanSend(nil, c) || VisibleFunc(nil)(c) ||
		CanSeeCompany(nil, "default") || CanSeeDevice(nil, dir.device("SIP/201")) || CanControlDevice(nil, dir.device("SIP/201")) {
		t.Error("a nil principal was allowed something")
	}
	if CanSeeCall(admin, nil) || CanControl(admin, nil) || CanSend(admin, nil) || VisibleFunc(admin)(nil) ||
		CanSeeDevice(admin, nil) || CanControlDevice(admin, nil) {
		t.Error("a nil call or device was allowed")
	}
}

// modelSees is the visibility table, written independently of the
// implementation: the owner of the device sees its calls, then the Call
// API's four role rules (admin and sys-admin all; company-admin its
// companies; a user of "default" all; any other user its own company).
func modelSees(p *Principal, c *callstore.Call) bool {
	if c.OwnerLogin != "" && c.OwnerLogin == p.Login {
		return true
	}
	switch p.Role {
	case directory.RoleAdmin, directory.RoleSysAdmin:
		return true
	case directory.RoleCompanyAdmin:
		for _, co := range p.Companies {
			if co != "" && co == c.DeviceCompany {
				return true
			}
		}
		return false
	case directory.RoleUser:
		return p.Company == directory.DefaultCompany || (c.DeviceCompany != "" && c.DeviceCompany == p.Company)
	default:
		return false
	}
}

func TestPolicyProperties(t *testing.T) {
	logins := []string{"", "admin", "alice", "bob", "carol"}
	companies := []string{"", "default", "acme", "globex", "initech"}
	rapid.Check(t, func(t *rapid.T) {
		p := &Principal{
			Login:     rapid.SampledFrom(logins).Draw(t, "login"),
			Role:      directory.Role(rapid.IntRange(0, 6).Draw(t, "role")), // includes invalid roles
			Company:   rapid.SampledFrom(companies).Draw(t, "company"),
			Companies: rapid.SliceOfN(rapid.SampledFrom(companies), 0, 4).Draw(t, "companies"),
		}
		visible := VisibleFunc(p)
		calls := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) *callstore.Call {
			return &callstore.Call{
				DeviceRef: &callstore.DeviceRef{DeviceCompany: rapid.SampledFrom(companies).Draw(t, "deviceCompany"), OwnerLogin: rapid.SampledFrom(logins).Draw(t, "owner")},
			}
		}), 1, 8).Draw(t, "calls")
		for _, c := range calls {
			want := modelSees(p, c)
			if got := CanSeeCall(p, c); got != want {
				t.Fatalf("CanSeeCall(%+v, %+v) = %v, want %v", p, c, got, want)
			}
			if got := visible(c); got != want {
				t.Fatalf("VisibleFunc(%+v)(%+v) = %v, want %v", p, c, got, want)
			}
			owner := c.OwnerLogin != "" && c.OwnerLogin == p.Login
			if got := CanControl(p, c); got != owner {
				t.Fatalf("CanControl(%+v, %+v) = %v, want %v (owner only)", p, c, got, owner)
			}
			if CanSend(p, c) && !CanSeeCall(p, c) {
				t.Fatalf("CanSend(%+v, %+v) without visibility", p, c)
			}
			if CanSend(p, c) && p.Role != directory.RoleAdmin && p.Role != directory.RoleSysAdmin && p.Role != directory.RoleCompanyAdmin {
				t.Fatalf("CanSend(%+v, %+v) for role %v", p, c, p.Role)
			}
			dev := &directory.Device{Company: c.DeviceCompany, Owner: c.OwnerLogin}
			if CanSeeDevice(p, dev) != want || CanControlDevice(p, dev) != owner {
				t.Fatalf("device rules disagree with call rules for %+v, %+v", p, dev)
			}
		}
	})
}

// The fan-out evaluates visibility per event per watcher: it must not
// allocate.
func TestPolicyAllocs(t *testing.T) {
	dir := newDemoDirectory()
	dev := dir.device("SIP/webrtc11")
	c := callOn(dev)
	for _, login := range []string{"admin", "sysadmin", "acme-admin", "alice", "bob"} {
		p := dir.principal(login)
		visible := VisibleFunc(p)
		n := testing.AllocsPerRun(100, func() {
			_ = CanSeeCall(p, c) && CanControl(p, c) && CanSend(p, c) && visible(c) &&
				CanSeeCompany(p, "acme") && CanSeeDevice(p, dev) && CanControlDevice(p, dev)
			_ = CanSeeCall(p, c) || CanControl(p, c) || CanSend(p, c) || visible(c)
		})
		if n != 0 {
			t.Errorf("%s: policy allocates %v times per evaluation, want 0", login, n)
		}
	}
}

func BenchmarkVisibleFunc(b *testing.B) {
	companies := make([]string, 50)
	for i := range companies {
		companies[i] = fmt.Sprintf("co%d", i)
	}
	p := &Principal{Login: "reseller", Role: directory.RoleCompanyAdmin, Companies: companies}
	visible := VisibleFunc(p)
	c := &callstore.Call{DeviceRef: &callstore.DeviceRef{DeviceCompany: "co49"}}
	for b.Loop() {
		if !visible(c) {
			b.Fatal("not visible")
		}
	}
}
