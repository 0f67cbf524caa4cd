package server

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"callcontrold/callstore"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// enumRow is one value of a store enum: its constant's name in package
// callstore, its number, and the API value the conversion must give.
type enumRow struct {
	store  string
	number int
	proto  string
}

// TestEnumsLineUp holds the casts of enums.go to their promise. For each
// store enum, the rows below must name every constant package callstore
// declares of that type (read from its source, so a value added there
// alone fails), every value of the API enum (read from the generated
// descriptor, so a value added to the proto alone fails), and the
// conversion must turn each store number into the API value of the
// row's name (so a renumbering on either side fails).
func TestEnumsLineUp(t *testing.T) {
	declared := callstoreConsts(t)
	tests := []struct {
		storeType string
		desc      protoreflect.EnumDescriptor
		convert   func(n int) protoreflect.EnumNumber
		rows      []enumRow
	}{
		{"State", callcontrolv1.State(0).Descriptor(),
			func(n int) protoreflect.EnumNumber { return stateToProto(callstore.State(n)).Number() },
			[]enumRow{
				{"StateUnspecified", int(callstore.StateUnspecified), "STATE_UNSPECIFIED"},
				{"StateDown", int(callstore.StateDown), "STATE_DOWN"},
				{"StateDial", int(callstore.StateDial), "STATE_DIAL"},
				{"StateRing", int(callstore.StateRing), "STATE_RING"},
				{"StateUp", int(callstore.StateUp), "STATE_UP"},
				{"StateHold", int(callstore.StateHold), "STATE_HOLD"},
				{"StatePark", int(callstore.StatePark), "STATE_PARK"},
				{"StateDead", int(callstore.StateDead), "STATE_DEAD"},
			}},
		{"NRState", callcontrolv1.NearEndState(0).Descriptor(),
			func(n int) protoreflect.EnumNumber { return nrStateToProto(callstore.NRState(n)).Number() },
			[]enumRow{
				{"NRUnspecified", int(callstore.NRUnspecified), "NEAR_END_STATE_UNSPECIFIED"},
				{"NRDown", int(callstore.NRDown), "NEAR_END_STATE_DOWN"},
				{"NRDial", int(callstore.NRDial), "NEAR_END_STATE_DIAL"},
				{"NRRing", int(callstore.NRRing), "NEAR_END_STATE_RING"},
				{"NRRinging", int(callstore.NRRinging), "NEAR_END_STATE_RINGING"},
				{"NRUp", int(callstore.NRUp), "NEAR_END_STATE_UP"},
				{"NRHold", int(callstore.NRHold), "NEAR_END_STATE_HOLD"},
				{"NRPark", int(callstore.NRPark), "NEAR_END_STATE_PARK"},
				{"NRDead", int(callstore.NRDead), "NEAR_END_STATE_DEAD"},
			}},
		{"Party", callcontrolv1.Party(0).Descriptor(),
			func(n int) protoreflect.EnumNumber { return partyToProto(callstore.Party(n)).Number() },
			[]enumRow{
				{"PartyUnspecified", int(callstore.PartyUnspecified), "PARTY_UNSPECIFIED"},
				{"PartyUnknown", int(callstore.PartyUnknown), "PARTY_UNKNOWN"},
				{"PartyCaller", int(callstore.PartyCaller), "PARTY_CALLER"},
				{"PartyCallee", int(callstore.PartyCallee), "PARTY_CALLEE"},
			}},
		{"JSState", callcontrolv1.JsState(0).Descriptor(),
			func(n int) protoreflect.EnumNumber { return jsStateToProto(callstore.JSState(n)).Number() },
			[]enumRow{
				{"JSNone", int(callstore.JSNone), "JS_STATE_UNSPECIFIED"},
				{"JSUnknown", int(callstore.JSUnknown), "JS_STATE_UNKNOWN"},
				{"JSTrying", int(callstore.JSTrying), "JS_STATE_TRYING"},
				{"JSProgress", int(callstore.JSProgress), "JS_STATE_PROGRESS"},
				{"JSConfirmed", int(callstore.JSConfirmed), "JS_STATE_CONFIRMED"},
				{"JSCancelled", int(callstore.JSCancelled), "JS_STATE_CANCELLED"},
				{"JSBusy", int(callstore.JSBusy), "JS_STATE_BUSY"},
				{"JSRejected", int(callstore.JSRejected), "JS_STATE_REJECTED"},
				{"JSUnavailable", int(callstore.JSUnavailable), "JS_STATE_UNAVAILABLE"},
				{"JSTerminated", int(callstore.JSTerminated), "JS_STATE_TERMINATED"},
			}},
		{"ExtensionType", callcontrolv1.ExtensionType(0).Descriptor(),
			func(n int) protoreflect.EnumNumber {
				return extensionTypeToProto(callstore.ExtensionType(n)).Number()
			},
			[]enumRow{
				{"ExtUnspecified", int(callstore.ExtUnspecified), "EXTENSION_TYPE_UNSPECIFIED"},
				{"ExtDevice", int(callstore.ExtDevice), "EXTENSION_TYPE_DEVICE"},
				{"ExtRingAll", int(callstore.ExtRingAll), "EXTENSION_TYPE_RING_ALL"},
				{"ExtHunt", int(callstore.ExtHunt), "EXTENSION_TYPE_HUNT"},
				{"ExtQueue", int(callstore.ExtQueue), "EXTENSION_TYPE_QUEUE"},
				{"ExtPark", int(callstore.ExtPark), "EXTENSION_TYPE_PARK"},
			}},
		{"EventType", callcontrolv1.EventType(0).Descriptor(),
			func(n int) protoreflect.EnumNumber { return eventTypeToProto(callstore.EventType(n)).Number() },
			[]enumRow{
				{"EventUnspecified", int(callstore.EventUnspecified), "EVENT_TYPE_UNSPECIFIED"},
				{"EventNew", int(callstore.EventNew), "EVENT_TYPE_NEW"},
				{"EventUpdate", int(callstore.EventUpdate), "EVENT_TYPE_UPDATE"},
				{"EventTransfer", int(callstore.EventTransfer), "EVENT_TYPE_TRANSFER"},
			}},
		{"ViewChange", callcontrolv1.ViewChange(0).Descriptor(),
			func(n int) protoreflect.EnumNumber { return viewToProto(callstore.ViewChange(n)).Number() },
			[]enumRow{
				{"ViewUnspecified", int(callstore.ViewUnspecified), "VIEW_CHANGE_UNSPECIFIED"},
				{"ViewEntered", int(callstore.ViewEntered), "VIEW_CHANGE_ENTERED"},
				{"ViewStayed", int(callstore.ViewStayed), "VIEW_CHANGE_STAYED"},
				{"ViewLeft", int(callstore.ViewLeft), "VIEW_CHANGE_LEFT"},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.storeType, func(t *testing.T) {
			var names []string
			for _, r := range tt.rows {
				names = append(names, r.store)
			}
			checkSameSet(t, "callstore."+tt.storeType+" constants", declared[tt.storeType], names)
			var protoNames, rowProto []string
			for i := range tt.desc.Values().Len() {
				protoNames = append(protoNames, string(tt.desc.Values().Get(i).Name()))
			}
			for _, r := range tt.rows {
				rowProto = append(rowProto, r.proto)
			}
			checkSameSet(t, string(tt.desc.FullName())+" values", protoNames, rowProto)
			for _, r := range tt.rows {
				want := tt.desc.Values().ByName(protoreflect.Name(r.proto))
				if want == nil {
					continue // reported by checkSameSet
				}
				if got := tt.convert(r.number); got != want.Number() {
					t.Errorf("callstore.%s (%d) converts to %d, want %s (%d)", r.store, r.number, got, r.proto, want.Number())
				}
			}
		})
	}
}

// TestFeaturesLineUp: featureList pairs every store feature bit with
// every API feature value, and the converter uses it.
func TestFeaturesLineUp(t *testing.T) {
	declared := callstoreConsts(t)["Features"]
	names := map[callstore.Features]string{
		callstore.FeatureHold: "FeatureHold", callstore.FeatureTalk: "FeatureTalk", callstore.FeatureAnswer: "FeatureAnswer",
	}
	var listed []string
	var pbs []string
	cv := &converter{}
	for _, f := range featureList {
		listed = append(listed, names[f.bit])
		pbs = append(pbs, f.pb.String())
		got := cv.call(&callstore.Call{DeviceRef: &callstore.DeviceRef{}, Features: f.bit}, nil).GetFeatures()
		if len(got) != 1 || got[0] != f.pb {
			t.Errorf("a call with %s converts to features %v, want [%v]", names[f.bit], got, f.pb)
		}
		if want := "FEATURE_" + strings.ToUpper(strings.TrimPrefix(names[f.bit], "Feature")); f.pb.String() != want {
			t.Errorf("featureList pairs %s with %v, want %s", names[f.bit], f.pb, want)
		}
	}
	checkSameSet(t, "callstore.Features constants", declared, listed)
	var protoNames []string
	values := callcontrolv1.Feature(0).Descriptor().Values()
	for i := range values.Len() {
		if v := values.Get(i); v.Number() != 0 {
			protoNames = append(protoNames, string(v.Name()))
		}
	}
	checkSameSet(t, "callcontrol.v1.Feature values (but UNSPECIFIED)", protoNames, pbs)
}

func checkSameSet(t *testing.T, what string, declared, covered []string) {
	t.Helper()
	for _, n := range declared {
		if !slices.Contains(covered, n) {
			t.Errorf("%s: %s has no row here: add it to the test and make the other side match", what, n)
		}
	}
	for _, n := range covered {
		if !slices.Contains(declared, n) {
			t.Errorf("%s: the test names %s, which is not declared", what, n)
		}
	}
}

// callstoreConsts reads package callstore's source and returns the names
// of its typed constants by type name.
func callstoreConsts(t *testing.T) map[string][]string {
	t.Helper()
	files, err := filepath.Glob("../callstore/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no callstore source found (%v)", err)
	}
	out := make(map[string][]string)
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatalf("parse %s: %v", name, err)
		}
		for _, d := range f.Decls {
			if gd, ok := d.(*ast.GenDecl); ok && gd.Tok == token.CONST {
				addTypedConsts(out, gd)
			}
		}
	}
	return out
}

// addTypedConsts adds the typed names of one const declaration to out. In
// an iota block a name without type or value takes the type of the last
// explicit one; a name with a value but no type is untyped, not an enum.
func addTypedConsts(out map[string][]string, gd *ast.GenDecl) {
	typ := ""
	for _, spec := range gd.Specs {
		vs := spec.(*ast.ValueSpec)
		if id, ok := vs.Type.(*ast.Ident); ok {
			typ = id.Name
		} else if vs.Type != nil || len(vs.Values) > 0 {
			typ = ""
		}
		if typ == "" {
			continue
		}
		for _, n := range vs.Names {
			out[typ] = append(out[typ], n.Name)
		}
	}
}
