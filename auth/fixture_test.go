package auth

import (
	"context"

	"callcontrold/callstore"
	"callcontrold/directory"
)

// demoDirectory is the embedded demo directory (companies default and
// acme; logins admin, sysadmin, acme-admin, alice and bob; the token of
// login L is "demo-L"), the directory the policy tests run over.
type demoDirectory struct {
	*directory.Directory
	extra map[string]*directory.Device
}

func newDemoDirectory() *demoDirectory {
	return &demoDirectory{
		Directory: directory.Demo(),
		// The demo gives sysadmin no device; the "owner, whatever the
		// role" rule needs one.
		extra: map[string]*directory.Device{
			"SIP/299": {Name: "SIP/299", DisplayName: "test: sysadmin desk", Company: "default", Owner: "sysadmin"},
		},
	}
}

// principal authenticates login's demo token, as a request would.
func (d *demoDirectory) principal(login string) *Principal {
	a := &Authenticator{tokens: d.Directory}
	p, err := a.authenticateToken(context.Background(), "demo-"+login)
	if err != nil {
		panic(login + ": " + err.Error())
	}
	return p
}

func (d *demoDirectory) device(name string) *directory.Device {
	if dev, ok := d.Device(name); ok {
		return dev
	}
	if dev, ok := d.extra[name]; ok {
		return dev
	}
	panic("no device " + name)
}

// callOn is a call leg on dev, as the switch would store it.
func callOn(dev *directory.Device) *callstore.Call {
	return &callstore.Call{
		UID: 1, DeviceRef: &callstore.DeviceRef{Device: dev.Name, DeviceCompany: dev.Company, OwnerLogin: dev.Owner},
		State: callstore.StateUp,
	}
}
