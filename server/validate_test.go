package server

import (
	"slices"
	"strings"
	"testing"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// A filter's device and company names are checked element by element,
// each violation naming its element; a valid filter is checked without
// allocating (the element's path is formatted only for a violation).
func TestValidateFilterNames(t *testing.T) {
	long := strings.Repeat("d", maxNameLen+1)
	var v validator
	v.filter(&callcontrolv1.CallFilter{Devices: []string{"SIP/201", "", long}, Companies: []string{"", "default"}})
	var fields []string
	for _, fv := range v.v {
		fields = append(fields, fv.field)
	}
	if want := []string{"filter.devices[1]", "filter.devices[2]", "filter.companies[0]"}; !slices.Equal(fields, want) {
		t.Errorf("violations on %v, want %v", fields, want)
	}

	valid := &callcontrolv1.CallFilter{Devices: []string{"SIP/201", "SIP/202"}, Companies: []string{"default"}}
	if n := testing.AllocsPerRun(100, func() {
		var v validator
		v.filter(valid)
		if v.err() != nil {
			t.Fatal(v.err())
		}
	}); n != 0 {
		t.Errorf("a valid filter: %v allocations, want 0", n)
	}
}
