package auth

// This file is the authorization policy of the reference's Permissions
// section. Visibility and control are deliberately separate questions: a
// caller may see many calls but control only the calls on devices it owns.
//
// Every function is a pure function of its arguments: no locks, no
// allocations (the fan-out evaluates them per event per watcher), and a nil
// principal is allowed nothing.

import (
	"slices"

	"callcontrold/callstore"
	"callcontrold/directory"
)

// CanSeeCompany reports whether p sees calls on devices of company:
//
//   - admin and sys-admin see all companies;
//   - a company-admin sees the companies it administers;
//   - a user of the "default" company sees all companies;
//   - any other user sees its own company.
//
// An empty company only matches the "see everything" rules, so a user or
// company-admin with a missing company field never sees company-less
// devices by accident.
func CanSeeCompany(p *Principal, company string) bool {
	if p == nil {
		return false
	}
	switch p.Role {
	case directory.RoleAdmin, directory.RoleSysAdmin:
		return true
	case directory.RoleCompanyAdmin:
		return company != "" && slices.Contains(p.Companies, company)
	case directory.RoleUser:
		if p.Company == directory.DefaultCompany {
			return true
		}
		return company != "" && company == p.Company
	}
	return false
}

// CanSeeCall reports whether p may be told that c exists. Visibility is
// decided by the company of the call's device. The owner of the device
// always sees its own calls: control implies visibility, otherwise an owner
// outside its visible companies would get NOT_FOUND for its own call.
func CanSeeCall(p *Principal, c *callstore.Call) bool {
	if p == nil || c == nil {
		return false
	}
	return ownedBy(p, c.OwnerLogin) || CanSeeCompany(p, c.DeviceCompany)
}

// CanSeeDevice reports whether p may be told that d exists: the same rule
// as [CanSeeCall], by the device's company or ownership.
func CanSeeDevice(p *Principal, d *directory.Device) bool {
	if p == nil || d == nil {
		return false
	}
	return ownedBy(p, d.Owner) || CanSeeCompany(p, d.Company)
}

// CanControl reports whether p may apply call control (Hold, Talk, Hangup,
// Xfer, AtXfer, Mute, Dtmf) to c: only calls on devices p owns, whatever
// its role. An admin that sees a call it does not own gets
// PERMISSION_DENIED, not control.
func CanControl(p *Principal, c *callstore.Call) bool {
	return p != nil && c != nil && ownedBy(p, c.OwnerLogin)
}

// CanControlDevice reports whether p may originate a call (Dial) from d:
// only from devices p owns, whatever its role.
func CanControlDevice(p *Principal, d *directory.Device) bool {
	return p != nil && d != nil && ownedBy(p, d.Owner)
}

// CanSend reports whether p may Send (administratively redirect) c: admin
// and sys-admin anywhere, a company-admin on devices of the companies it
// administers, nobody else (not even the device's owner: Send is an
// administrative operation).
func CanSend(p *Principal, c *callstore.Call) bool {
	if p == nil || c == nil {
		return false
	}
	switch p.Role {
	case directory.RoleAdmin, directory.RoleSysAdmin:
		return true
	case directory.RoleCompanyAdmin:
		return c.DeviceCompany != "" && slices.Contains(p.Companies, c.DeviceCompany)
	}
	return false
}

// VisibleFunc returns [CanSeeCall] for p as a predicate, with the decisions
// that depend only on p taken once: the watch fan-out calls it for every
// event, so the per-call cost is a comparison or a set lookup. The
// predicate is safe for concurrent use.
func VisibleFunc(p *Principal) func(*callstore.Call) bool {
	if p == nil {
		return seeNothing
	}
	switch p.Role {
	case directory.RoleAdmin, directory.RoleSysAdmin:
		return seeAll
	case directory.RoleUser:
		if p.Company == directory.DefaultCompany {
			return seeAll
		}
		login, company := p.Login, p.Company
		return func(c *callstore.Call) bool {
			if c == nil {
				return false
			}
			return (company != "" && c.DeviceCompany == company) ||
				(login != "" && c.OwnerLogin == login)
		}
	case directory.RoleCompanyAdmin:
		// A set rather than slices.Contains: a company-admin of a
		// reseller may administer many companies.
		set := make(map[string]struct{}, len(p.Companies))
		for _, co := range p.Companies {
			if co != "" {
				set[co] = struct{}{}
			}
		}
		login := p.Login
		return func(c *callstore.Call) bool {
			if c == nil {
				return false
			}
			if _, ok := set[c.DeviceCompany]; ok {
				return true
			}
			return login != "" && c.OwnerLogin == login
		}
	}
	// Unknown roles see only their own calls, like CanSeeCall.
	login := p.Login
	return func(c *callstore.Call) bool {
		return c != nil && login != "" && c.OwnerLogin == login
	}
}

func seeAll(c *callstore.Call) bool   { return c != nil }
func seeNothing(*callstore.Call) bool { return false }

// ownedBy reports whether owner names p. An unowned device ("") is owned by
// nobody, even by a principal whose login is somehow empty.
func ownedBy(p *Principal, owner string) bool {
	return owner != "" && owner == p.Login
}
