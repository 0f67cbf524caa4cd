package server

import (
	"callcontrold/callstore"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// The store's enums and the API's have the same numbers, value for value
// (the unspecified zero included), so each conversion is a cast: no table
// lookup on the watch fan-out's hot path. TestEnumsLineUp holds them to
// it: it fails when a value exists on one side only or the numbers of a
// name differ. Features, a bit set in the store and a list in the API,
// convert through featureList instead.

func stateToProto(s callstore.State) callcontrolv1.State { return callcontrolv1.State(s) }

func stateFromProto(s callcontrolv1.State) callstore.State { return callstore.State(s) }

func nrStateToProto(s callstore.NRState) callcontrolv1.NearEndState {
	return callcontrolv1.NearEndState(s)
}

func partyToProto(p callstore.Party) callcontrolv1.Party { return callcontrolv1.Party(p) }

func jsStateToProto(s callstore.JSState) callcontrolv1.JsState { return callcontrolv1.JsState(s) }

func extensionTypeToProto(t callstore.ExtensionType) callcontrolv1.ExtensionType {
	return callcontrolv1.ExtensionType(t)
}

func eventTypeToProto(t callstore.EventType) callcontrolv1.EventType {
	return callcontrolv1.EventType(t)
}

func eventTypeFromProto(t callcontrolv1.EventType) callstore.EventType {
	return callstore.EventType(t)
}

func viewToProto(v callstore.ViewChange) callcontrolv1.ViewChange { return callcontrolv1.ViewChange(v) }

// featureList pairs each store feature bit with its API value.
var featureList = [...]struct {
	bit callstore.Features
	pb  callcontrolv1.Feature
}{
	{callstore.FeatureHold, callcontrolv1.Feature_FEATURE_HOLD},
	{callstore.FeatureTalk, callcontrolv1.Feature_FEATURE_TALK},
	{callstore.FeatureAnswer, callcontrolv1.Feature_FEATURE_ANSWER},
}
