package server

import (
	"fmt"
	"regexp"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/internal/echo"
)

// Input limits. Filters are bounded so that one watcher cannot make the
// fan-out index (or a snapshot) arbitrarily expensive.
const (
	maxFilterUIDs      = 1000
	maxFilterDevices   = 1000
	maxFilterCompanies = 100
	maxNameLen         = 128
	maxRequestIDLen    = 128
	defaultPageSize    = 100
	maxPageSize        = 1000
)

// numberRE is what a dialled number may look like: digits (with * and #
// for feature codes), optionally led by + for E.164.
var numberRE = regexp.MustCompile(`^\+?[0-9*#]{1,32}$`)

// validator collects every violation of a request, so that one reply names
// all fields to fix rather than the first.
type validator struct{ v []fieldViolation }

func (v *validator) add(field, format string, args ...any) {
	v.v = append(v.v, fieldViolation{field, fmt.Sprintf(format, args...)})
}

func (v *validator) err() error {
	if len(v.v) == 0 {
		return nil
	}
	return invalidArgument(v.v...)
}

func (v *validator) uid(field string, uid int64) {
	if uid <= 0 {
		v.add(field, "must be a call uid (a positive number), got %d", uid)
	}
}

func (v *validator) number(field, n string) {
	if !numberRE.MatchString(n) {
		v.add(field, "must be 1-32 digits (with optional leading +, * and #), got %s", echo.Quote(n))
	}
}

// validName reports whether s passes name.
func validName(s string) bool { return s != "" && len(s) <= maxNameLen }

func (v *validator) name(field, s string) {
	switch {
	case s == "":
		v.add(field, "must not be empty")
	case len(s) > maxNameLen:
		v.add(field, "must be at most %d bytes, got %d", maxNameLen, len(s))
	}
}

func (v *validator) requestID(id string) {
	if len(id) > maxRequestIDLen {
		v.add("request_id", "must be at most %d bytes, got %d", maxRequestIDLen, len(id))
	}
}

func (v *validator) tone(t string) {
	if len(t) != 1 || !(t[0] >= '0' && t[0] <= '9' || t[0] == '*' || t[0] == '#') {
		v.add("tone", "must be one DTMF tone: 0-9, * or #, got %s", echo.Quote(t))
	}
}

func (v *validator) pageSize(n int32) int {
	switch {
	case n < 0:
		v.add("page_size", "must not be negative, got %d", n)
	case n == 0:
		return defaultPageSize
	case n > maxPageSize:
		v.add("page_size", "must be at most %d, got %d", maxPageSize, n)
	}
	return int(n)
}

func (v *validator) filter(f *callcontrolv1.CallFilter) {
	if f == nil {
		return
	}
	if n := len(f.GetUids()); n > maxFilterUIDs {
		v.add("filter.uids", "at most %d uids, got %d", maxFilterUIDs, n)
	}
	for i, u := range f.GetUids() {
		if u <= 0 {
			v.add(fmt.Sprintf("filter.uids[%d]", i), "must be positive, got %d", u)
		}
	}
	if n := len(f.GetDevices()); n > maxFilterDevices {
		v.add("filter.devices", "at most %d devices, got %d", maxFilterDevices, n)
	}
	for i, d := range f.GetDevices() {
		if !validName(d) { // the element's path is formatted for a violation only
			v.name(fmt.Sprintf("filter.devices[%d]", i), d)
		}
	}
	if n := len(f.GetCompanies()); n > maxFilterCompanies {
		v.add("filter.companies", "at most %d companies, got %d", maxFilterCompanies, n)
	}
	for i, c := range f.GetCompanies() {
		if !validName(c) {
			v.name(fmt.Sprintf("filter.companies[%d]", i), c)
		}
	}
	for i, s := range f.GetStates() {
		if _, ok := callcontrolv1.State_name[int32(s)]; !ok || s == callcontrolv1.State_STATE_UNSPECIFIED {
			v.add(fmt.Sprintf("filter.states[%d]", i), "unknown state %d: use a State value other than STATE_UNSPECIFIED", int32(s))
		}
	}
	for i, t := range f.GetEventTypes() {
		if _, ok := callcontrolv1.EventType_name[int32(t)]; !ok || t == callcontrolv1.EventType_EVENT_TYPE_UNSPECIFIED {
			v.add(fmt.Sprintf("filter.event_types[%d]", i), "unknown event type %d: use NEW, UPDATE or TRANSFER", int32(t))
		}
	}
}
