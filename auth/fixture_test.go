package auth

import (
	"context"

	"callcontrold/callstore"
	"callcontrold/directory"
)

// testDirectory mirrors the demo directory of ARCHITECTURE.md ("Running"):
// companies default and acme; logins admin, sysadmin, acme-admin, alice
// and bob; the token of login L is "demo-L". It is built from the exported
// directory types so that these tests do not depend on the loader.
type testDirectory struct {
	users   []*directory.User
	devices []*directory.Device
	byToken map[directory.TokenHash]*directory.User
}

func (d *testDirectory) UserByToken(h directory.TokenHash) (*directory.User, bool) {
	u, ok := d.byToken[h]
	return u, ok
}

func newTestDirectory() *testDirectory {
	d := &testDirectory{byToken: make(map[directory.TokenHash]*directory.User)}
	add := func(id int64, login string, role directory.Role, company string, companies ...string) {
		u := &directory.User{
			ID: id, Login: login, Name: login, Role: role, Company: company, Companies: companies,
			Tokens: []directory.TokenHash{directory.HashToken("demo-" + login)},
		}
		d.users = append(d.users, u)
		d.byToken[u.Tokens[0]] = u
	}
	add(1, "admin", directory.RoleAdmin, "default")
	add(2, "sysadmin", directory.RoleSysAdmin, "default")
	add(3, "acme-admin", directory.RoleCompanyAdmin, "acme", "acme")
	add(4, "alice", directory.RoleUser, "default")
	add(5, "bob", directory.RoleUser, "acme")
	d.devices = []*directory.Device{
		{Name: "SIP/200", Company: "default", Owner: "admin"},
		{Name: "SIP/210", Company: "default", Owner: "sysadmin"},
		{Name: "SIP/201", Company: "default", Owner: "alice"},
		{Name: "Park/701", Company: "default"},
		{Name: "SIP/300", Company: "acme", Owner: "acme-admin"},
		{Name: "SIP/webrtc301", Company: "acme", Owner: "bob", WebRTC: true},
		{Name: "Queue/q_600", Company: "acme"},
	}
	return d
}

// principal authenticates login's demo token, as a request would.
func (d *testDirectory) principal(login string) *Principal {
	a := &Authenticator{tokens: d}
	p, err := a.authenticateToken(context.Background(), "demo-"+login)
	if err != nil {
		panic(err)
	}
	return p
}

func (d *testDirectory) device(name string) *directory.Device {
	for _, dev := range d.devices {
		if dev.Name == name {
			return dev
		}
	}
	panic("no device " + name)
}

// callOn is a call leg on dev, as the switch would store it.
func callOn(dev *directory.Device) *callstore.Call {
	return &callstore.Call{
		UID: 1, Device: dev.Name, DeviceCompany: dev.Company, OwnerLogin: dev.Owner,
		State: callstore.StateUp,
	}
}
