package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// Everything in this file is a pure function of its arguments (the clock
// is passed in), so the tests can pin the output byte for byte.

// enumName turns a generated enum name into the short lower-case word the
// reference uses: STATE_RING -> "ring", BLF_BUSY_RINGING -> "busy+ringing".
// The zero value prints as "-".
func enumName(name, prefix string) string {
	s := strings.TrimPrefix(name, prefix)
	if s == "UNSPECIFIED" || s == "" {
		return "-"
	}
	return strings.ReplaceAll(strings.ToLower(s), "_", "+")
}

func stateName(s callcontrolv1.State) string { return enumName(s.String(), "STATE_") }
func nrStateName(s callcontrolv1.NearEndState) string {
	return enumName(s.String(), "NEAR_END_STATE_")
}
func partyName(p callcontrolv1.Party) string { return enumName(p.String(), "PARTY_") }
func eventName(t callcontrolv1.EventType) string {
	return strings.TrimPrefix(t.String(), "EVENT_TYPE_")
}
func viewName(v callcontrolv1.ViewChange) string {
	return strings.TrimPrefix(v.String(), "VIEW_CHANGE_")
}
func blfName(b callcontrolv1.Blf) string             { return enumName(b.String(), "BLF_") }
func statusName(s callcontrolv1.DeviceStatus) string { return enumName(s.String(), "DEVICE_STATUS_") }
func jsStateName(s callcontrolv1.JsState) string     { return enumName(s.String(), "JS_STATE_") }

// featuresText lists features as "answer,hold"; "-" when there are none.
func featuresText(fs []callcontrolv1.Feature) string {
	if len(fs) == 0 {
		return "-"
	}
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = enumName(f.String(), "FEATURE_")
	}
	return strings.Join(names, ",")
}

// partyText is how a person reads the other party: "Bob Jones <301>",
// "<301>", or the label alone when name and number are both missing.
func partyText(c *callcontrolv1.Call) string {
	name, number := c.GetName(), c.GetNumber()
	switch {
	case name != "" && number != "":
		return name + " <" + number + ">"
	case number != "":
		if c.GetLabel() != "" && c.GetLabel() != number {
			return c.GetLabel() + " <" + number + ">"
		}
		return "<" + number + ">"
	case name != "":
		return name
	case c.GetLabel() != "":
		return c.GetLabel()
	}
	return "-"
}

// formatDuration prints h:mm:ss, or m:ss under an hour.
func formatDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// callDuration is the time since the call was answered (start), or since
// it began (stamp) while it has not been; "-" if neither is known.
func callDuration(c *callcontrolv1.Call, now time.Time) string {
	ts := c.GetStart()
	if ts == nil {
		ts = c.GetStamp()
	}
	if ts == nil {
		return "-"
	}
	return formatDuration(now.Sub(ts.AsTime()))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeCallTable prints calls as the list table.
func writeCallTable(w io.Writer, calls []*callcontrolv1.Call, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "UID\tDEVICE\tSTATE\tNRSTATE\tPARTY\tLABEL/NUMBER\tDURATION\tFEATURES")
	for _, c := range calls {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			c.GetUid(), dash(c.GetDevice()), stateName(c.GetState()), nrStateName(c.GetNrState()),
			partyName(c.GetParty()), partyText(c), callDuration(c, now), featuresText(c.GetFeatures()))
	}
	return tw.Flush()
}

// writeDeviceTable prints devices as the devices table.
func writeDeviceTable(w io.Writer, devs []*callcontrolv1.Device) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCOMPANY\tOWNER\tEXT\tBLF\tSTATUS\tWEBRTC")
	for _, d := range devs {
		webrtc := "no"
		if d.GetWebrtc() {
			webrtc = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			d.GetName(), dash(d.GetCompany()), dash(d.GetOwner().GetLogin()), dash(d.GetExtension()),
			blfName(d.GetBlf()), statusName(d.GetStatus()), webrtc)
	}
	return tw.Flush()
}

// callLine is one call on one line, as control commands print it:
//
//	uid=7 SIP/201 up (caller) Bob Jones <301> 0:12 [hold]
func callLine(c *callcontrolv1.Call, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "uid=%d %s %s", c.GetUid(), dash(c.GetDevice()), stateName(c.GetState()))
	if c.GetNrState() != callcontrolv1.NearEndState_NEAR_END_STATE_UNSPECIFIED &&
		nrStateName(c.GetNrState()) != stateName(c.GetState()) {
		fmt.Fprintf(&b, "/%s", nrStateName(c.GetNrState()))
	}
	b.WriteString(callTail(c))
	if c.GetState() != callcontrolv1.State_STATE_DEAD {
		fmt.Fprintf(&b, " %s", callDuration(c, now))
	}
	if len(c.GetFeatures()) > 0 {
		fmt.Fprintf(&b, " [%s]", featuresText(c.GetFeatures()))
	}
	return b.String()
}

// callTail is what follows the state in a call line: party, other party,
// and the hangup cause, DTMF and mute state when they say something.
func callTail(c *callcontrolv1.Call) string {
	var b strings.Builder
	if c.GetParty() != callcontrolv1.Party_PARTY_UNSPECIFIED {
		fmt.Fprintf(&b, " (%s)", partyName(c.GetParty()))
	}
	fmt.Fprintf(&b, " %s", partyText(c))
	if c.GetState() == callcontrolv1.State_STATE_DEAD && (c.GetCause() != 0 || c.GetCauseTxt() != "") {
		fmt.Fprintf(&b, " cause=%d", c.GetCause())
		if c.GetCauseTxt() != "" {
			fmt.Fprintf(&b, " %q", c.GetCauseTxt())
		}
	}
	if c.DtmfString != nil {
		fmt.Fprintf(&b, " dtmf=%q", c.GetDtmfString())
	}
	if c.GetJsInfo().GetMuted().GetAudio() {
		b.WriteString(" muted")
	}
	return b.String()
}

// appliedLine is callLine plus the idempotency note of the control RPCs.
func appliedLine(c *callcontrolv1.Call, already bool, now time.Time) string {
	s := callLine(c, now)
	if already {
		s += " (already applied)"
	}
	return s
}

// xferText names the calls of a transfer's new bridge.
func xferText(x *callcontrolv1.XferData) string {
	parts := make([]string, 0, len(x.GetCalls()))
	for _, r := range x.GetCalls() {
		parts = append(parts, fmt.Sprintf("uid=%d %s", r.GetUid(), dash(r.GetDevice())))
	}
	return "bridged: " + strings.Join(parts, ", ")
}

// eventLine is one watch event on one line:
//
//	15:04:05.000 rev 42  UPDATE  ENTERED  uid=7 SIP/201 ring→up (caller) Bob Jones <301>
//
// prev is the call's state before the event as far as the watcher knows
// (UNSPECIFIED if it does not, e.g. a NEW call or a resumed watch).
func eventLine(at time.Time, rev int64, ev *callcontrolv1.CallEvent, prev callcontrolv1.State) string {
	c := ev.GetCall()
	var b strings.Builder
	fmt.Fprintf(&b, "%s rev %d  %-8s  %-7s  uid=%d %s ", at.Format("15:04:05.000"), rev,
		eventName(ev.GetType()), viewName(ev.GetView()), c.GetUid(), dash(c.GetDevice()))
	if prev != callcontrolv1.State_STATE_UNSPECIFIED && prev != c.GetState() {
		fmt.Fprintf(&b, "%s→", stateName(prev))
	}
	b.WriteString(stateName(c.GetState()))
	b.WriteString(callTail(c))
	if ev.GetType() == callcontrolv1.EventType_EVENT_TYPE_TRANSFER || c.GetXferData() != nil {
		if x := c.GetXferData(); x != nil {
			b.WriteString("  " + xferText(x))
		}
	}
	if ev.GetView() == callcontrolv1.ViewChange_VIEW_CHANGE_LEFT {
		b.WriteString("  (left view)")
	}
	return b.String()
}

// writeCallDetail prints every set property of one call, one per line.
func writeCallDetail(w io.Writer, c *callcontrolv1.Call, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	ts := func(t *timestamppb.Timestamp) string {
		if t == nil {
			return ""
		}
		return t.AsTime().Local().Format(time.DateTime + ".000")
	}
	kv("uid", fmt.Sprint(c.GetUid()))
	kv("id", c.GetId())
	kv("cid", c.GetCid())
	kv("device", c.GetDevice())
	kv("device company", c.GetDeviceCompany())
	kv("state", stateName(c.GetState()))
	kv("near-end state", nrStateName(c.GetNrState()))
	kv("party", partyName(c.GetParty()))
	kv("other party", partyText(c))
	kv("label", c.GetLabel())
	kv("name", c.GetName())
	kv("number", c.GetNumber())
	kv("queue caller", strings.TrimSpace(c.GetQname()+" "+c.GetQnumber()))
	kv("stamp", ts(c.GetStamp()))
	kv("start", ts(c.GetStart()))
	kv("duration", callDuration(c, now))
	kv("in queue", ts(c.GetInq()))
	kv("out of queue", ts(c.GetOutq()))
	if q := c.GetQcall(); q != nil {
		kv("queue call", fmt.Sprintf("uid=%d %s", q.GetUid(), q.GetDevice()))
	}
	if o := c.GetOwner(); o != nil {
		kv("owner", fmt.Sprintf("%s (%s, id %d)", o.GetLogin(), o.GetName(), o.GetId()))
	}
	kv("company", c.GetCompany())
	if c.DtmfString != nil {
		kv("dtmf", fmt.Sprintf("%q", c.GetDtmfString()))
	}
	if e := c.GetExtension(); e != nil {
		kv("extension", fmt.Sprintf("%s %s (%s)", e.GetNumber(), e.GetName(), enumName(e.GetType().String(), "EXTENSION_TYPE_")))
	}
	if c.GetState() == callcontrolv1.State_STATE_DEAD {
		kv("cause", fmt.Sprintf("%d %s", c.GetCause(), c.GetCauseTxt()))
	}
	kv("features", featuresText(c.GetFeatures()))
	if c.GetJsState() != callcontrolv1.JsState_JS_STATE_UNSPECIFIED {
		kv("webrtc state", jsStateName(c.GetJsState()))
	}
	if j := c.GetJsInfo(); j != nil {
		kv("webrtc", fmt.Sprintf("established=%t ended=%t hold(local=%t remote=%t) muted(audio=%t video=%t)",
			j.GetEstablished(), j.GetEnded(), j.GetOnhold().GetLocal(), j.GetOnhold().GetRemote(),
			j.GetMuted().GetAudio(), j.GetMuted().GetVideo()))
	}
	if x := c.GetXferData(); x != nil {
		kv("transfer", xferText(x))
	}
	return tw.Flush()
}

// codeName is the canonical upper-snake name of a status code, as the
// gRPC spec and grpcurl print it: FailedPrecondition -> FAILED_PRECONDITION.
func codeName(c codes.Code) string {
	if c == codes.OK {
		return "OK"
	}
	s := c.String()
	var b strings.Builder
	for i, r := range s {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

// errorText renders an error for a person: the status code and message,
// then every detail the server attached, one per line.
func errorText(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return "error: " + err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "error: %s: %s", codeName(st.Code()), st.Message())
	for _, d := range st.Details() {
		b.WriteByte('\n')
		b.WriteString(detailText(d))
	}
	return b.String()
}

// detailText renders one error detail, indented under the error line.
func detailText(d any) string {
	switch d := d.(type) {
	case *errdetails.BadRequest:
		lines := make([]string, 0, len(d.GetFieldViolations()))
		for _, v := range d.GetFieldViolations() {
			l := fmt.Sprintf("  invalid field %s: %s", dash(v.GetField()), v.GetDescription())
			if v.GetReason() != "" {
				l += " (" + v.GetReason() + ")"
			}
			lines = append(lines, l)
		}
		if len(lines) == 0 {
			return "  bad request"
		}
		return strings.Join(lines, "\n")
	case *errdetails.ErrorInfo:
		l := "  reason: " + d.GetReason()
		if d.GetDomain() != "" {
			l += " (" + d.GetDomain() + ")"
		}
		keys := make([]string, 0, len(d.GetMetadata()))
		for k := range d.GetMetadata() {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			l += fmt.Sprintf("\n    %s: %s", k, d.GetMetadata()[k])
		}
		return l
	case *errdetails.RetryInfo:
		return "  retry after: " + d.GetRetryDelay().AsDuration().String()
	case *errdetails.PreconditionFailure:
		lines := []string{}
		for _, v := range d.GetViolations() {
			lines = append(lines, fmt.Sprintf("  precondition %s %s: %s", v.GetType(), v.GetSubject(), v.GetDescription()))
		}
		return strings.Join(lines, "\n")
	case *errdetails.QuotaFailure:
		lines := []string{}
		for _, v := range d.GetViolations() {
			lines = append(lines, fmt.Sprintf("  quota %s: %s", v.GetSubject(), v.GetDescription()))
		}
		return strings.Join(lines, "\n")
	case *errdetails.ResourceInfo:
		return fmt.Sprintf("  resource %s %s: %s", d.GetResourceType(), d.GetResourceName(), d.GetDescription())
	case *errdetails.Help:
		lines := []string{}
		for _, l := range d.GetLinks() {
			lines = append(lines, fmt.Sprintf("  see %s: %s", l.GetDescription(), l.GetUrl()))
		}
		return strings.Join(lines, "\n")
	case *errdetails.LocalizedMessage:
		return "  " + d.GetMessage()
	case *errdetails.DebugInfo:
		return "  debug: " + d.GetDetail()
	case proto.Message:
		j, _ := protojson.Marshal(d)
		return fmt.Sprintf("  %s: %s", d.ProtoReflect().Descriptor().FullName(), j)
	case error:
		// A detail the client cannot decode (its type is not linked in).
		return "  undecodable detail: " + d.Error()
	}
	return fmt.Sprintf("  %v", d)
}

// retryDelay is the RetryInfo delay of a status error, if it has one.
func retryDelay(err error) (time.Duration, bool) {
	st, ok := status.FromError(err)
	if !ok {
		return 0, false
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}

// errorInfo is the ErrorInfo detail of a status error, if it has one.
func errorInfo(err error) *errdetails.ErrorInfo {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei
		}
	}
	return nil
}
