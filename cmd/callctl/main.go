// Command callctl is a small human-friendly client of callcontrold: it
// lists and watches calls and devices as tables and readable lines, and
// controls the calls on the caller's own devices (dial, hold, talk,
// hangup, transfers, mute, DTMF).
//
// Usage:
//
//	callctl [global flags] <command> [flags] [args]
//
// Run "callctl help" for the commands, flags and examples. Exit status is
// 0 on success, 1 when the server or connection fails, 2 on a usage error.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/internal/telemetry"
)

const defaultAddr = "localhost:50051"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole program minus the process: it parses args, talks to
// the server and returns the exit status. Ctrl-C (SIGINT) or SIGTERM
// cancels the command; a watch then exits cleanly with status 0.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runContext(ctx, args, os.Getenv, stdout, stderr)
}

// runContext is run with the context and environment passed in (tests).
func runContext(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	g, inv, err := parseArgs(args, getenv)
	if g != nil {
		g.stdout, g.stderr = stdout, stderr
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, helpText(inv.cmd))
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "callctl: %v\n", err)
		if inv != nil && inv.cmd != "" {
			fmt.Fprintf(stderr, "run 'callctl help %s' for usage\n", inv.cmd)
		} else {
			fmt.Fprintln(stderr, "run 'callctl help' for usage")
		}
		return 2
	}
	if inv.cmd == "help" {
		fmt.Fprint(stdout, helpText(inv.topic))
		return 0
	}
	if err := execute(ctx, g, inv); err != nil {
		if isUsage(err) {
			fmt.Fprintf(stderr, "callctl: %v\n", err)
			return 2
		}
		fmt.Fprintln(stderr, errorText(err))
		if h := hint(g, inv, err); h != "" {
			fmt.Fprintln(stderr, h)
		}
		return 1
	}
	return 0
}

// hint adds what a person would do next, for the errors where that is
// obvious.
func hint(g *globals, inv *invocation, err error) string {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.Unauthenticated:
		if g.bearerToken() == "" {
			return "hint: pass --token TOKEN or --login LOGIN (or set CALLCTL_TOKEN)"
		}
	case codes.Unavailable, codes.DeadlineExceeded:
		h := ""
		if len(st.Details()) == 0 && st.Code() == codes.Unavailable {
			h = fmt.Sprintf("hint: is callcontrold running on %s? (--addr, CALLCTL_ADDR)", g.addr)
		}
		if inv.isControl() {
			if h != "" {
				h += "\n"
			}
			h += fmt.Sprintf("hint: the outcome is unknown; retrying with --request-id %s is safe: the server applies it at most once", inv.requestID)
		}
		return h
	}
	return ""
}

// globals are the flags every command accepts, before or after its name.
type globals struct {
	addr, token, login, envToken string
	caFile, certFile, keyFile    string
	requestID                    string
	tls, json, verbose           bool
	timeout                      time.Duration
	stdout, stderr               io.Writer
	now                          func() time.Time
	tokenFromFlag, loginFromFlag bool
}

// bearerToken resolves the credential: --token, then --login (the demo
// directory's "demo-LOGIN"), then CALLCTL_TOKEN.
func (g *globals) bearerToken() string {
	switch {
	case g.token != "":
		return g.token
	case g.login != "":
		return "demo-" + g.login
	}
	return g.envToken
}

// addGlobalFlags registers the global flags on fs with g's current values
// as defaults, so registering them on a second FlagSet keeps what the
// first one parsed.
func addGlobalFlags(fs *flag.FlagSet, g *globals) {
	fs.StringVar(&g.addr, "addr", g.addr, "server `host:port` (env CALLCTL_ADDR)")
	fs.StringVar(&g.token, "token", g.token, "bearer `token` (env CALLCTL_TOKEN)")
	fs.StringVar(&g.login, "login", g.login, "demo directory `login`: same as --token demo-LOGIN")
	fs.BoolVar(&g.tls, "tls", g.tls, "connect with TLS (system roots unless --ca-file)")
	fs.StringVar(&g.caFile, "ca-file", g.caFile, "PEM `file` of CAs that verify the server (implies --tls)")
	fs.StringVar(&g.certFile, "cert", g.certFile, "client certificate PEM `file` for mTLS (implies --tls)")
	fs.StringVar(&g.keyFile, "key", g.keyFile, "client key PEM `file` for mTLS")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "deadline of each unary command")
	fs.BoolVar(&g.json, "json", g.json, "print protojson instead of tables")
	fs.StringVar(&g.requestID, "request-id", g.requestID, "idempotency `id` of a control command (default random)")
	fs.BoolVar(&g.verbose, "verbose", g.verbose, "say more: request ids, progress frames, reconnects")
	fs.BoolVar(&g.verbose, "v", g.verbose, "short for --verbose")
}

// invocation is a parsed command line: what to do, before any I/O.
type invocation struct {
	cmd   string
	topic string // help's argument

	filter  *callcontrolv1.CallFilter // list, watch
	company string                    // devices

	uid, targetUID       int64
	device, number       string
	tone                 string
	autohold, autoanswer bool
	unmute               bool // mute --off

	resume     string
	noSnapshot bool
	watchFor   time.Duration // watch: stop after this long (0: until Ctrl-C)

	requestID string
}

// isControl: the command changes a call and carries a request_id.
func (inv *invocation) isControl() bool {
	switch inv.cmd {
	case "dial", "hold", "talk", "hangup", "send", "xfer", "atxfer", "mute", "dtmf":
		return true
	}
	return false
}

// commands maps each command to its positional argument names.
var commands = map[string][]string{
	"help":    nil,
	"list":    nil,
	"get":     {"UID"},
	"devices": nil,
	"watch":   nil,
	"dial":    {"DEVICE", "NUMBER"},
	"hold":    {"UID"},
	"talk":    {"UID"},
	"hangup":  {"UID"},
	"send":    {"UID", "NUMBER"},
	"xfer":    {"UID", "NUMBER"},
	"atxfer":  {"UID", "TARGET_UID"},
	"mute":    {"UID"},
	"dtmf":    {"UID", "TONE"},
}

// parseArgs turns the command line into globals and an invocation. It
// does no I/O besides reading the environment, so tests can call it.
// The returned invocation is non-nil whenever the command is known (for
// usage messages), even with an error.
//
// The steps: global flags before the command, the command's own flags
// (globals may follow the command too), the checks on globals, the
// positional arguments, then what is derived from them (the filter, the
// request id).
func parseArgs(args []string, getenv func(string) string) (*globals, *invocation, error) {
	g := newGlobals(getenv)
	top := flag.NewFlagSet("callctl", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	addGlobalFlags(top, g)
	if err := top.Parse(args); err != nil {
		return g, &invocation{}, err
	}
	rest := top.Args()
	if len(rest) == 0 {
		return g, &invocation{}, usageErrorf("no command")
	}
	inv := &invocation{cmd: rest[0]}
	names, ok := commands[inv.cmd]
	if !ok {
		return g, &invocation{}, usageErrorf("unknown command %q", inv.cmd)
	}

	fs := flag.NewFlagSet(inv.cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addGlobalFlags(fs, g)
	lists := addCommandFlags(fs, inv)
	pos, err := parseInterspersed(fs, rest[1:])
	if err != nil {
		return g, inv, err
	}
	if err := checkGlobals(g, top, fs); err != nil {
		return g, inv, err
	}
	if inv.cmd == "help" {
		return g, inv, setHelpTopic(inv, pos)
	}
	if err := setPositional(inv, names, pos); err != nil {
		return g, inv, err
	}
	return g, inv, finishInvocation(g, inv, lists)
}

// newGlobals holds the defaults that flags then override: the address
// and token from the environment, a 10 s timeout.
func newGlobals(getenv func(string) string) *globals {
	g := &globals{
		addr:     getenv("CALLCTL_ADDR"),
		envToken: getenv("CALLCTL_TOKEN"),
		timeout:  10 * time.Second,
		now:      time.Now,
	}
	if g.addr == "" {
		g.addr = defaultAddr
	}
	return g
}

// filterLists collects the repeatable filter flags of list and watch.
type filterLists struct {
	devices, companies, states, uids, events listFlag
}

// addCommandFlags registers the flags only cmd takes; the values land in
// inv, except the filter flags, which are returned to be checked later.
func addCommandFlags(fs *flag.FlagSet, inv *invocation) *filterLists {
	var l filterLists
	switch inv.cmd {
	case "list", "watch":
		fs.Var(&l.devices, "device", "")
		fs.Var(&l.companies, "company", "")
		fs.Var(&l.states, "state", "")
		fs.Var(&l.uids, "uid", "")
		if inv.cmd == "watch" {
			fs.Var(&l.events, "event", "")
			fs.StringVar(&inv.resume, "resume", "", "")
			fs.BoolVar(&inv.noSnapshot, "no-snapshot", false, "")
			fs.DurationVar(&inv.watchFor, "for", 0, "")
		}
	case "devices":
		fs.StringVar(&inv.company, "company", "", "")
	case "dial":
		fs.BoolVar(&inv.autohold, "autohold", false, "")
		fs.BoolVar(&inv.autoanswer, "autoanswer", false, "")
	case "mute":
		fs.BoolVar(&inv.unmute, "off", false, "")
	}
	return &l
}

// checkGlobals refuses global flag combinations that cannot work. Which
// of --token/--login were given is read from the flag sets (set on the
// command line, not defaults), before or after the command.
func checkGlobals(g *globals, sets ...*flag.FlagSet) error {
	for _, fs := range sets {
		fs.Visit(func(f *flag.Flag) { g.noteSet(f.Name) })
	}
	if g.tokenFromFlag && g.loginFromFlag {
		return usageErrorf("--token and --login are exclusive")
	}
	if g.timeout <= 0 {
		return usageErrorf("--timeout must be positive")
	}
	return nil
}

// setHelpTopic takes help's optional command name.
func setHelpTopic(inv *invocation, pos []string) error {
	if len(pos) > 1 {
		return usageErrorf("help takes at most one command")
	}
	if len(pos) == 1 {
		inv.topic = pos[0]
	}
	return nil
}

// setPositional checks the positional arguments against the command's
// names and stores each in its field of inv.
func setPositional(inv *invocation, names, pos []string) error {
	if len(pos) != len(names) {
		want := "no arguments"
		if len(names) > 0 {
			want = strings.Join(names, " ")
		}
		return usageErrorf("%s: want %s, got %d argument(s)", inv.cmd, want, len(pos))
	}
	for i, name := range names {
		v := pos[i]
		switch name {
		case "UID", "TARGET_UID":
			uid, err := parseUID(v)
			if err != nil {
				return usageErrorf("%s: %s: %v", inv.cmd, name, err)
			}
			if name == "UID" {
				inv.uid = uid
			} else {
				inv.targetUID = uid
			}
		case "DEVICE", "NUMBER", "TONE":
			if v == "" {
				return usageErrorf("%s: %s is empty", inv.cmd, name)
			}
			switch name {
			case "DEVICE":
				inv.device = v
			case "NUMBER":
				inv.number = v
			case "TONE":
				inv.tone = v
			}
		}
	}
	return nil
}

// finishInvocation derives what the command needs beyond its arguments:
// the call filter of list and watch, and the request id that makes a
// control command safe to retry (--request-id, or a fresh random one).
func finishInvocation(g *globals, inv *invocation, l *filterLists) error {
	if inv.cmd == "list" || inv.cmd == "watch" {
		f, err := buildFilter(l.devices, l.companies, l.states, l.uids, l.events)
		if err != nil {
			return usageErrorf("%s: %v", inv.cmd, err)
		}
		inv.filter = f
	}
	if inv.watchFor < 0 {
		return usageErrorf("watch: --for must not be negative")
	}
	if inv.isControl() {
		inv.requestID = g.requestID
		if inv.requestID == "" {
			inv.requestID = newRequestID()
		}
	}
	return nil
}

func (g *globals) noteSet(name string) {
	switch name {
	case "token":
		g.tokenFromFlag = true
	case "login":
		g.loginFromFlag = true
	}
}

// parseInterspersed parses fs over args, allowing flags after positional
// arguments ("dial SIP/201 202 --autohold"), which flag.Parse alone stops
// at. A "--" ends the flags: everything after it is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if consumed := args[:len(args)-len(rest)]; len(consumed) > 0 && consumed[len(consumed)-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func parseUID(s string) (int64, error) {
	uid, err := strconv.ParseInt(s, 10, 64)
	if err != nil || uid <= 0 {
		return 0, fmt.Errorf("%q is not a call uid (a positive integer)", s)
	}
	return uid, nil
}

// listFlag is a repeatable flag; each value may also be a comma list.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// parseEnum accepts an enum value by its short name ("ring"), its long
// name ("STATE_RING"), in any case; the zero value is refused.
func parseEnum(s, prefix string, values map[string]int32) (int32, bool) {
	u := strings.ToUpper(strings.ReplaceAll(s, "-", "_"))
	if v, ok := values[u]; ok && v != 0 {
		return v, true
	}
	if v, ok := values[prefix+u]; ok && v != 0 {
		return v, true
	}
	return 0, false
}

// enumChoices lists the short names of an enum, for error messages.
func enumChoices(prefix string, names map[int32]string) string {
	out := make([]string, 0, len(names))
	for i := int32(1); i < int32(len(names)); i++ {
		out = append(out, strings.ToLower(strings.TrimPrefix(names[i], prefix)))
	}
	return strings.Join(out, ", ")
}

func buildFilter(devices, companies, states, uids, events []string) (*callcontrolv1.CallFilter, error) {
	f := &callcontrolv1.CallFilter{Devices: devices, Companies: companies}
	for _, s := range states {
		v, ok := parseEnum(s, "STATE_", callcontrolv1.State_value)
		if !ok {
			return nil, fmt.Errorf("--state %q: want one of %s", s, enumChoices("STATE_", callcontrolv1.State_name))
		}
		f.States = append(f.States, callcontrolv1.State(v))
	}
	for _, s := range uids {
		uid, err := parseUID(s)
		if err != nil {
			return nil, fmt.Errorf("--uid: %v", err)
		}
		f.Uids = append(f.Uids, uid)
	}
	for _, s := range events {
		v, ok := parseEnum(s, "EVENT_TYPE_", callcontrolv1.EventType_value)
		if !ok {
			return nil, fmt.Errorf("--event %q: want one of %s", s, enumChoices("EVENT_TYPE_", callcontrolv1.EventType_name))
		}
		f.EventTypes = append(f.EventTypes, callcontrolv1.EventType(v))
	}
	return f, nil
}

// newRequestID is a random idempotency key: retrying a command with the
// same --request-id returns the first result instead of acting twice.
func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return "callctl-" + hex.EncodeToString(b[:])
}

// execute runs a parsed command against the server.
func execute(ctx context.Context, g *globals, inv *invocation) error {
	// Tracing is on when the standard OTLP endpoint variable is set: a
	// client span per RPC, the parent of the server's.
	tp, stopTracing, err := telemetry.Tracing(ctx, "callctl", os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	if err != nil {
		return err
	}
	defer func() { _ = stopTracing(context.WithoutCancel(ctx)) }()
	conn, err := dial(g, grpc.WithStatsHandler(telemetry.ClientHandler(tp)))
	if err != nil {
		return err
	}
	defer conn.Close()
	calls := callcontrolv1.NewCallControlServiceClient(conn)
	if inv.isControl() && g.verbose {
		fmt.Fprintf(g.stderr, "request_id: %s\n", inv.requestID)
	}
	switch inv.cmd {
	case "list":
		return cmdList(ctx, g, calls, inv)
	case "get":
		resp, err := unary(ctx, g, false, func(ctx context.Context) (*callcontrolv1.GetCallResponse, error) {
			return calls.GetCall(ctx, &callcontrolv1.GetCallRequest{Uid: inv.uid})
		})
		if err != nil {
			return err
		}
		if g.json {
			return printJSON(g.stdout, resp)
		}
		return writeCallDetail(g.stdout, resp.GetCall(), g.now())
	case "devices":
		return cmdDevices(ctx, g, callcontrolv1.NewDeviceServiceClient(conn), inv)
	case "watch":
		return watch(ctx, g, calls, inv)
	}
	return cmdControl(ctx, g, calls, inv)
}

// unary runs one RPC under --timeout. An UNAVAILABLE answer is retried a
// few times within the deadline, honouring RetryInfo: for reads that is
// harmless, and control commands resend the same request_id, so the
// server applies them at most once.
func unary[T any](ctx context.Context, g *globals, quiet bool, call func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	const attempts = 3
	delay := 200 * time.Millisecond
	for i := 1; ; i++ {
		resp, err := call(ctx)
		if err == nil || status.Code(err) != codes.Unavailable || i == attempts {
			return resp, err
		}
		wait := delay
		if d, ok := retryDelay(err); ok {
			wait = d
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return resp, err
		}
		if g.verbose && !quiet {
			fmt.Fprintf(g.stderr, "unavailable (%s); retrying in %v\n", status.Convert(err).Message(), wait)
		}
		select {
		case <-ctx.Done():
			return resp, err
		case <-time.After(wait):
		}
		delay *= 2
	}
}

// printJSON prints one message as indented protojson.
func printJSON(w io.Writer, m proto.Message) error {
	return writeJSON(w, m, "  ")
}

// writeJSON prints protojson, indented unless indent is empty (then one
// line). protojson deliberately varies its whitespace between builds;
// re-formatting with encoding/json keeps the output stable for diffs and
// line-oriented tools.
func writeJSON(w io.Writer, m proto.Message, indent string) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if indent == "" {
		err = json.Compact(&out, b)
	} else {
		err = json.Indent(&out, b, "", indent)
	}
	if err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}

func cmdList(ctx context.Context, g *globals, c callcontrolv1.CallControlServiceClient, inv *invocation) error {
	var all []*callcontrolv1.Call
	var rev int64
	req := &callcontrolv1.ListCallsRequest{Filter: inv.filter}
	for {
		resp, err := unary(ctx, g, false, func(ctx context.Context) (*callcontrolv1.ListCallsResponse, error) {
			return c.ListCalls(ctx, req)
		})
		if err != nil {
			return err
		}
		if g.json {
			// One document per page: jq reads them in sequence.
			if err := printJSON(g.stdout, resp); err != nil {
				return err
			}
		}
		all = append(all, resp.GetCalls()...)
		rev = resp.GetRevision()
		if resp.GetNextPageToken() == "" {
			break
		}
		req = &callcontrolv1.ListCallsRequest{Filter: inv.filter, PageToken: resp.GetNextPageToken()}
	}
	if g.json {
		return nil
	}
	if g.verbose {
		fmt.Fprintf(g.stderr, "%d call(s) at revision %d\n", len(all), rev)
	}
	return writeCallTable(g.stdout, all, g.now())
}

func cmdDevices(ctx context.Context, g *globals, c callcontrolv1.DeviceServiceClient, inv *invocation) error {
	var all []*callcontrolv1.Device
	req := &callcontrolv1.ListDevicesRequest{Company: inv.company}
	for {
		resp, err := unary(ctx, g, false, func(ctx context.Context) (*callcontrolv1.ListDevicesResponse, error) {
			return c.ListDevices(ctx, req)
		})
		if err != nil {
			return err
		}
		if g.json {
			if err := printJSON(g.stdout, resp); err != nil {
				return err
			}
		}
		all = append(all, resp.GetDevices()...)
		if resp.GetNextPageToken() == "" {
			break
		}
		req = &callcontrolv1.ListDevicesRequest{Company: inv.company, PageToken: resp.GetNextPageToken()}
	}
	if g.json {
		return nil
	}
	return writeDeviceTable(g.stdout, all)
}

// cmdControl runs one control command and prints the call(s) as applied.
func cmdControl(ctx context.Context, g *globals, c callcontrolv1.CallControlServiceClient, inv *invocation) error {
	resp, shown, err := sendControl(ctx, g, c, inv)
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, resp)
	}
	now := g.now()
	for _, a := range shown {
		if a.call == nil {
			continue
		}
		if _, err := fmt.Fprintln(g.stdout, a.label+appliedLine(a.call, a.already, now)); err != nil {
			return err
		}
	}
	return nil
}

// shownCall is one call of a control command's response, as printed:
// a label for the second call some commands return, and whether the
// server reports the command was already in effect.
type shownCall struct {
	label   string
	call    *callcontrolv1.Call
	already bool
}

// sendControl sends inv's control RPC (with unary's retries) and returns
// the response and the calls to print from it.
func sendControl(ctx context.Context, g *globals, c callcontrolv1.CallControlServiceClient, inv *invocation) (proto.Message, []shownCall, error) {
	id := inv.requestID
	switch inv.cmd {
	case "dial":
		return control(ctx, g, c.Dial, &callcontrolv1.DialRequest{Device: inv.device, Number: inv.number,
			Autohold: inv.autohold, Autoanswer: inv.autoanswer, RequestId: id},
			func(r *callcontrolv1.DialResponse) []shownCall { return []shownCall{{call: r.GetCall()}} })
	case "hold":
		return control(ctx, g, c.Hold, &callcontrolv1.HoldRequest{Uid: inv.uid, RequestId: id},
			func(r *callcontrolv1.HoldResponse) []shownCall {
				return []shownCall{{call: r.GetCall(), already: r.GetAlreadyApplied()}}
			})
	case "talk":
		return control(ctx, g, c.Talk, &callcontrolv1.TalkRequest{Uid: inv.uid, RequestId: id},
			func(r *callcontrolv1.TalkResponse) []shownCall {
				return []shownCall{{call: r.GetCall(), already: r.GetAlreadyApplied()}}
			})
	case "hangup":
		return control(ctx, g, c.Hangup, &callcontrolv1.HangupRequest{Uid: inv.uid, RequestId: id},
			func(r *callcontrolv1.HangupResponse) []shownCall { return []shownCall{{call: r.GetCall()}} })
	case "send":
		return control(ctx, g, c.Send, &callcontrolv1.SendRequest{Uid: inv.uid, Number: inv.number, RequestId: id},
			func(r *callcontrolv1.SendResponse) []shownCall {
				return []shownCall{{call: r.GetCall()}, {label: "new call: ", call: r.GetNewCall()}}
			})
	case "xfer":
		return control(ctx, g, c.Xfer, &callcontrolv1.XferRequest{Uid: inv.uid, Number: inv.number, RequestId: id},
			func(r *callcontrolv1.XferResponse) []shownCall {
				return []shownCall{{call: r.GetCall()}, {label: "transferred: ", call: r.GetTransferredCall()}}
			})
	case "atxfer":
		return control(ctx, g, c.AtXfer, &callcontrolv1.AtXferRequest{Uid: inv.uid, TargetUid: inv.targetUID, RequestId: id},
			func(r *callcontrolv1.AtXferResponse) []shownCall {
				return []shownCall{{call: r.GetCall()}, {label: "target: ", call: r.GetTargetCall()}}
			})
	case "mute":
		return control(ctx, g, c.Mute, &callcontrolv1.MuteRequest{Uid: inv.uid, Mute: !inv.unmute, RequestId: id},
			func(r *callcontrolv1.MuteResponse) []shownCall {
				return []shownCall{{call: r.GetCall(), already: r.GetAlreadyApplied()}}
			})
	case "dtmf":
		return control(ctx, g, c.Dtmf, &callcontrolv1.DtmfRequest{Uid: inv.uid, Tone: inv.tone, RequestId: id},
			func(r *callcontrolv1.DtmfResponse) []shownCall { return []shownCall{{call: r.GetCall()}} })
	}
	return nil, nil, usageErrorf("unknown command %q", inv.cmd)
}

// control calls one generated client method through unary and picks the
// calls to print from its response.
func control[Req any, Resp proto.Message](ctx context.Context, g *globals,
	method func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req,
	shown func(Resp) []shownCall) (proto.Message, []shownCall, error) {
	resp, err := unary(ctx, g, false, func(ctx context.Context) (Resp, error) { return method(ctx, req) })
	if err != nil {
		return nil, nil, err
	}
	return resp, shown(resp), nil
}

// helpText is the manual: all of it for "callctl help", one command's
// part for "callctl help CMD" and "callctl CMD -h".
func helpText(topic string) string {
	if topic == "" || topic == "help" {
		return helpOverview + "\n" + helpGlobal + "\nCommands:\n\n" + joinCommandHelp() + helpFooter
	}
	h, ok := commandHelp[topic]
	if !ok {
		return fmt.Sprintf("unknown command %q\n\n", topic) + helpOverview
	}
	return h + "\n" + helpGlobal
}

func joinCommandHelp() string {
	var b strings.Builder
	for _, name := range commandOrder {
		b.WriteString(commandHelp[name])
		b.WriteString("\n")
	}
	return b.String()
}

const helpOverview = `callctl: a command-line client of callcontrold, the IP PBX Call API.

Usage: callctl [global flags] <command> [flags] [args]

Flags may come before or after the command and its arguments.
Exit status: 0 success, 1 server or connection error, 2 usage error.
`

const helpGlobal = `Global flags:
  --addr HOST:PORT     server address (default localhost:50051, env CALLCTL_ADDR)
  --token TOKEN        bearer token, sent as "authorization: Bearer TOKEN"
                       (env CALLCTL_TOKEN)
  --login LOGIN        demo directory shorthand for --token demo-LOGIN
                       (logins: admin, sysadmin, acme-admin, alice, bob)
  --tls                connect with TLS, verifying the server with the system roots
  --ca-file FILE       PEM CAs that verify the server (implies --tls)
  --cert FILE --key FILE
                       client certificate and key for mTLS (implies --tls)
  --timeout DURATION   deadline of each unary command (default 10s); an
                       UNAVAILABLE answer is retried within it
  --json               print protojson instead of tables (watch: one frame per line)
  --request-id ID      idempotency key of a control command (default: random).
                       Re-running a command with the same id returns the first
                       result instead of acting twice.
  -v, --verbose        print request ids, progress frames and reconnects
`

const helpFooter = `Errors print the status code and message, then the details the server
attached: invalid fields (BadRequest), the reason and its metadata
(ErrorInfo, e.g. the call's state and the states that allow the operation)
and when to retry (RetryInfo).

Examples:
  callctl --login alice devices
  callctl --login alice dial SIP/201 202
  callctl --login alice list --state up --state hold
  callctl --login alice hold 7
  callctl --login alice xfer 7 701          # park the other party
  callctl --login admin watch --company acme
  CALLCTL_TOKEN=demo-bob callctl --json get 9
  callctl --tls --ca-file ca.pem --cert me.pem --key me.key --token "$JWT" list
`

var commandOrder = []string{"list", "get", "devices", "watch", "dial", "hold", "talk", "hangup",
	"xfer", "atxfer", "send", "mute", "dtmf", "help"}

var commandHelp = map[string]string{
	"list": `  list [--device D]... [--company C]... [--state S]... [--uid N]...
      The visible calls, as a table: UID, DEVICE, STATE, NRSTATE, PARTY,
      LABEL/NUMBER, DURATION (since answered, else since it began), FEATURES.
      Filters AND across flags and OR within one; each may repeat or take a
      comma list. States: down, dial, ring, up, hold, park, dead.
        callctl --login alice list --device SIP/201 --state ring,up
`,
	"get": `  get UID
      Every property of one call.
        callctl --login alice get 7
`,
	"devices": `  devices [--company C]
      The visible devices: NAME, COMPANY, OWNER, EXT, BLF, STATUS, WEBRTC.
        callctl --login admin devices --company acme
`,
	"watch": `  watch [list filters] [--event E]... [--resume TOKEN] [--no-snapshot] [--for DURATION]
      A live view: the snapshot as a table, then one line per event:
        12:00:01.250 rev 42  UPDATE    STAYED   uid=7 SIP/201 ring→up (caller) Bob Jones <301>
      A transfer shows the calls bridged; a call that stops matching the
      filter says "(left view)". Events: new, update, transfer.
      --resume TOKEN starts after a token (from --json output) without a
      snapshot; --no-snapshot starts at the current revision; --for stops
      after a while (default: until Ctrl-C). Progress frames print only with
      --verbose. If the stream breaks (UNAVAILABLE, server drain, silent
      connection), the watch reconnects with backoff (honouring RetryInfo)
      and resumes after the last token: no event lost or repeated. If the
      server no longer retains that history (OUT_OF_RANGE) it says so and
      starts over with a fresh snapshot.
        callctl --login admin watch --company default --state ring,up
        callctl --login alice --json watch --no-snapshot | jq .
`,
	"dial": `  dial DEVICE NUMBER [--autohold] [--autoanswer]
      Call NUMBER from one of your devices; prints the new call.
      --autohold holds the device's current call first; --autoanswer asks
      the device to go off-hook by itself.
        callctl --login alice dial SIP/201 202 --autoanswer
`,
	"hold": `  hold UID
      Put a call on hold. Prints the call as applied, with
      "(already applied)" if it was already on hold.
`,
	"talk": `  talk UID
      Answer a ringing call, or take a held call off hold.
`,
	"hangup": `  hangup UID
      Hang a call up; prints it dead, with the hangup cause.
`,
	"xfer": `  xfer UID NUMBER
      Blind transfer: send the other party of your call to NUMBER.
`,
	"atxfer": `  atxfer UID TARGET_UID
      Attended transfer: bridge the other parties of two of your calls.
        callctl --login alice atxfer 7 9
`,
	"send": `  send UID NUMBER
      Redirect a ringing inbound call (administrators of the call's company).
`,
	"mute": `  mute UID [--off]
      Mute (or with --off unmute) a call on a WebRTC device.
`,
	"dtmf": `  dtmf UID TONE
      Send one DTMF tone (0-9, * or #; quote them for the shell) on a
      WebRTC device's call.
        callctl --login bob dtmf 12 '#'
`,
	"help": `  help [COMMAND]
      This text, or one command's part of it. "callctl COMMAND -h" too.
`,
}
