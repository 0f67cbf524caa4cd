package server_test

// The end-to-end harness: every test gets its own server on a real TCP
// listener (127.0.0.1:0), wired like cmd/callcontrold (demo directory,
// callstore, simulated switch on a fake clock, directory tokens, limiter),
// and real grpc clients, one connection per login with the login's demo
// bearer token as per-RPC credentials.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"callcontrold/auth"
	"callcontrold/callstore"
	"callcontrold/directory"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/pbx"
	"callcontrold/pbx/sim"
	"callcontrold/server"
)

// waitLimit guards every wait of the suite. Tests never assert on how long
// anything takes: the limit only turns a hang into a failure.
const waitLimit = 15 * time.Second

// fakeEpoch is the start of the simulated switch's fake clock.
var fakeEpoch = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

// The logins of the demo directory.
var logins = []string{"admin", "sysadmin", "acme-admin", "alice", "bob"}

type harnessOptions struct {
	cfg    server.Config
	store  callstore.Options
	limit  auth.LimitConfig
	tracer trace.TracerProvider
	log    *slog.Logger
	await  func(ctx context.Context, rev int64) error
}

type option func(*harnessOptions)

func withConfig(f func(*server.Config)) option { return func(o *harnessOptions) { f(&o.cfg) } }

func withStore(s callstore.Options) option { return func(o *harnessOptions) { o.store = s } }

func withLimits(l auth.LimitConfig) option { return func(o *harnessOptions) { o.limit = l } }

func withTracer(tp trace.TracerProvider) option { return func(o *harnessOptions) { o.tracer = tp } }

// withAwaitRevision sets Deps.AwaitRevision, as a replica does.
func withAwaitRevision(f func(ctx context.Context, rev int64) error) option {
	return func(o *harnessOptions) { o.await = f }
}

// withLogger replaces the server's (discarding) logger.
func withLogger(l *slog.Logger) option { return func(o *harnessOptions) { o.log = l } }

type harness struct {
	t     *testing.T
	dir   *directory.Directory
	store *callstore.Store
	sim   *sim.Switch
	clock *pbx.FakeClock
	srv   *server.Server
	addr  string
	reg   *prometheus.Registry // the server's metrics

	mu      sync.Mutex
	clients map[string]*client
}

// client is one login's connection and service stubs.
type client struct {
	conn    *grpc.ClientConn
	calls   callcontrolv1.CallControlServiceClient
	devices callcontrolv1.DeviceServiceClient
	sim     callcontrolv1.SimulatorServiceClient
}

// testLogger discards the server's logs unless CALLCONTROLD_TEST_LOG is
// set (a server goroutine may log after its test has finished, so t.Log is
// not an option).
func testLogger() *slog.Logger {
	if os.Getenv("CALLCONTROLD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newHarness(t *testing.T, opts ...option) *harness {
	t.Helper()
	var o harnessOptions
	for _, f := range opts {
		f(&o)
	}
	h := &harness{t: t, dir: directory.Demo(), clock: pbx.NewFakeClock(fakeEpoch), clients: map[string]*client{}, reg: prometheus.NewRegistry()}
	log := o.log
	if log == nil {
		log = testLogger()
	}
	h.store = callstore.New(o.store)
	h.sim = sim.New(h.dir, h.store, sim.Options{Clock: h.clock, Logger: log})
	authn, err := auth.NewAuthenticator(context.Background(), auth.Config{Tokens: h.dir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	h.srv, err = server.New(o.cfg, server.Deps{
		Store:          h.store,
		Directory:      h.dir,
		Switch:         h.sim,
		Devices:        h.sim,
		Simulator:      h.sim,
		Authenticate:   authn.Authenticate,
		Limiter:        auth.NewLimiter(o.limit),
		Logger:         log,
		TracerProvider: o.tracer,
		Registry:       h.reg,
		AwaitRevision:  o.await,
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = lis.Addr().String()
	served := make(chan error, 1)
	go func() { served <- h.srv.Serve(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		h.srv.Shutdown(ctx)
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("Serve: %v", err)
		}
		h.sim.Close()
		h.store.Close()
		authn.Close()
	})
	return h
}

// bearer is per-RPC credentials over plain TCP: RequireTransportSecurity
// must say false, or grpc refuses to send them without TLS.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }

// dial opens a connection with extra dial options; the token may be empty
// (no credentials at all).
func (h *harness) dial(token string, extra ...grpc.DialOption) *client {
	h.t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(token)))
	}
	conn, err := grpc.NewClient("passthrough:///"+h.addr, append(opts, extra...)...)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { conn.Close() })
	return &client{
		conn:    conn,
		calls:   callcontrolv1.NewCallControlServiceClient(conn),
		devices: callcontrolv1.NewDeviceServiceClient(conn),
		sim:     callcontrolv1.NewSimulatorServiceClient(conn),
	}
}

// as returns the (shared) client of a demo login.
func (h *harness) as(login string) *client {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.clients[login]; ok {
		return c
	}
	c := h.dial("demo-" + login)
	h.clients[login] = c
	return c
}

func (h *harness) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	h.t.Cleanup(cancel)
	return ctx
}

// ---- control helpers: fail the test on error ----

func (h *harness) dialCall(login, device, number string) *callcontrolv1.Call {
	h.t.Helper()
	r, err := h.as(login).calls.Dial(h.ctx(), &callcontrolv1.DialRequest{Device: device, Number: number})
	if err != nil {
		h.t.Fatalf("%s: Dial(%s, %s): %v", login, device, number, err)
	}
	return r.GetCall()
}

func (h *harness) talk(login string, uid int64) *callcontrolv1.Call {
	h.t.Helper()
	r, err := h.as(login).calls.Talk(h.ctx(), &callcontrolv1.TalkRequest{Uid: uid})
	if err != nil {
		h.t.Fatalf("%s: Talk(%d): %v", login, uid, err)
	}
	return r.GetCall()
}

func (h *harness) hold(login string, uid int64) *callcontrolv1.HoldResponse {
	h.t.Helper()
	r, err := h.as(login).calls.Hold(h.ctx(), &callcontrolv1.HoldRequest{Uid: uid})
	if err != nil {
		h.t.Fatalf("%s: Hold(%d): %v", login, uid, err)
	}
	return r
}

func (h *harness) hangup(login string, uid int64) *callcontrolv1.Call {
	h.t.Helper()
	r, err := h.as(login).calls.Hangup(h.ctx(), &callcontrolv1.HangupRequest{Uid: uid})
	if err != nil {
		h.t.Fatalf("%s: Hangup(%d): %v", login, uid, err)
	}
	return r.GetCall()
}

func (h *harness) inbound(from, name, to string) []*callcontrolv1.Call {
	h.t.Helper()
	r, err := h.as("admin").sim.PlaceInboundCall(h.ctx(), &callcontrolv1.PlaceInboundCallRequest{FromNumber: from, FromName: name, ToExtension: to})
	if err != nil {
		h.t.Fatalf("PlaceInboundCall(%s → %s): %v", from, to, err)
	}
	return r.GetCalls()
}

// on returns the one live call on a device (as admin sees it).
func (h *harness) on(device string) *callcontrolv1.Call {
	h.t.Helper()
	r, err := h.as("admin").calls.ListCalls(h.ctx(), &callcontrolv1.ListCallsRequest{Filter: &callcontrolv1.CallFilter{Devices: []string{device}}})
	if err != nil {
		h.t.Fatal(err)
	}
	if len(r.GetCalls()) != 1 {
		h.t.Fatalf("%d calls on %s, want 1", len(r.GetCalls()), device)
	}
	return r.GetCalls()[0]
}

// ---- watchers ----

// watcher collects the frames of one WatchCalls stream in a goroutine.
type watcher struct {
	t      *testing.T
	name   string
	cancel context.CancelFunc
	frames chan *callcontrolv1.WatchCallsResponse
	done   chan struct{}
	err    error // the stream's end; valid once done is closed
}

func (h *harness) watch(login string, req *callcontrolv1.WatchCallsRequest) *watcher {
	return h.watchOn(h.as(login), login, req)
}

func (h *harness) watchOn(c *client, name string, req *callcontrolv1.WatchCallsRequest) *watcher {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{t: h.t, name: name, cancel: cancel, frames: make(chan *callcontrolv1.WatchCallsResponse, 1<<16), done: make(chan struct{})}
	stream, err := c.calls.WatchCalls(ctx, req)
	if err != nil {
		cancel()
		h.t.Fatalf("%s: WatchCalls: %v", name, err)
	}
	go func() {
		defer close(w.done)
		for {
			m, err := stream.Recv()
			if err != nil {
				w.err = err
				return
			}
			select {
			case w.frames <- m:
			case <-ctx.Done():
				w.err = ctx.Err()
				return
			}
		}
	}()
	h.t.Cleanup(w.stop)
	return w
}

// stop cancels the stream and waits for the collector to finish.
func (w *watcher) stop() {
	w.cancel()
	<-w.done
}

// next returns the next frame, or nil once the stream has ended (w.err
// then says how).
func (w *watcher) next() *callcontrolv1.WatchCallsResponse {
	w.t.Helper()
	select {
	case m := <-w.frames:
		return m
	case <-w.done:
		select {
		case m := <-w.frames:
			return m
		default:
			return nil
		}
	case <-time.After(waitLimit):
		w.t.Fatalf("%s: no frame within %v", w.name, waitLimit)
		return nil
	}
}

// mustNext is next for a stream that must not have ended.
func (w *watcher) mustNext() *callcontrolv1.WatchCallsResponse {
	w.t.Helper()
	m := w.next()
	if m == nil {
		w.t.Fatalf("%s: stream ended: %v", w.name, w.err)
	}
	return m
}

// end reads the remaining frames and returns them with the stream's end.
func (w *watcher) end() ([]*callcontrolv1.WatchCallsResponse, error) {
	w.t.Helper()
	var rest []*callcontrolv1.WatchCallsResponse
	for {
		m := w.next()
		if m == nil {
			return rest, w.err
		}
		rest = append(rest, m)
	}
}

// start reads started, the snapshot and snapshot_end.
func (w *watcher) start() (*callcontrolv1.WatchStarted, []*callcontrolv1.Call, *callcontrolv1.SnapshotEnd) {
	w.t.Helper()
	st := w.mustNext().GetStarted()
	if st == nil {
		w.t.Fatalf("%s: first frame is not started", w.name)
	}
	var calls []*callcontrolv1.Call
	for {
		m := w.mustNext()
		switch f := m.GetFrame().(type) {
		case *callcontrolv1.WatchCallsResponse_Snapshot:
			calls = append(calls, f.Snapshot.GetCalls()...)
		case *callcontrolv1.WatchCallsResponse_SnapshotEnd:
			if f.SnapshotEnd.GetRevision() != st.GetRevision() {
				w.t.Fatalf("%s: snapshot_end at %d, started at %d", w.name, f.SnapshotEnd.GetRevision(), st.GetRevision())
			}
			return st, calls, f.SnapshotEnd
		default:
			w.t.Fatalf("%s: unexpected frame in the snapshot: %v", w.name, m)
		}
	}
}

// until reads frames until one (events or progress) reaches rev and
// returns the event batches read on the way. The server sends a progress
// frame after ProgressInterval of silence, so a watcher with nothing more
// to hear reaches rev too.
func (w *watcher) until(rev int64) []*callcontrolv1.EventBatch {
	w.t.Helper()
	var out []*callcontrolv1.EventBatch
	for {
		m := w.mustNext()
		r, _, ok := frameRevision(m)
		if !ok {
			w.t.Fatalf("%s: unexpected frame %v", w.name, m)
		}
		if b := m.GetEvents(); b != nil {
			out = append(out, b)
		}
		if r >= rev {
			return out
		}
	}
}

// frameRevision returns the revision and resume token of an events,
// snapshot_end or progress frame.
func frameRevision(m *callcontrolv1.WatchCallsResponse) (int64, string, bool) {
	switch f := m.GetFrame().(type) {
	case *callcontrolv1.WatchCallsResponse_Events:
		return f.Events.GetRevision(), f.Events.GetResumeToken(), true
	case *callcontrolv1.WatchCallsResponse_Progress:
		return f.Progress.GetRevision(), f.Progress.GetResumeToken(), true
	case *callcontrolv1.WatchCallsResponse_SnapshotEnd:
		return f.SnapshotEnd.GetRevision(), f.SnapshotEnd.GetResumeToken(), true
	}
	return 0, "", false
}

// ---- ground truth: an unfiltered watcher on the store itself ----

// truth records every committed change, straight from the store (no
// server, no auth), to compute what each gRPC watcher must have seen.
type truth struct {
	t     *testing.T
	store *callstore.Store
	w     *callstore.Watcher
	start int64
	revs  []callstore.Batch
}

func (h *harness) truth() *truth {
	h.t.Helper()
	w, snap, rev, err := h.store.Watch(callstore.WatchRequest{Snapshot: true})
	if err != nil {
		h.t.Fatal(err)
	}
	if len(snap) != 0 {
		h.t.Fatalf("truth: %d calls before the flow, want a fresh store", len(snap))
	}
	h.t.Cleanup(w.Close)
	return &truth{t: h.t, store: h.store, w: w, start: rev}
}

// collect takes everything committed so far; it returns the revision.
func (tr *truth) collect() int64 {
	tr.t.Helper()
	want := tr.store.Revision()
	for {
		bs, prog, err := tr.w.Drain(nil)
		if err != nil {
			tr.t.Fatalf("truth watcher ended: %v", err)
		}
		tr.revs = append(tr.revs, bs...)
		if prog >= want {
			return want
		}
		select {
		case <-tr.w.Ready():
		case <-time.After(waitLimit):
			tr.t.Fatal("truth watcher stuck")
		}
	}
}

// view is what one watcher asked for: a login (its visibility) and a
// filter.
type view struct {
	login  string
	filter *callcontrolv1.CallFilter
}

// visibleTo is the visibility table (README, "Who sees what"), written out
// independently of package auth: admin and sys-admin see all; a
// company-admin the devices of its companies; a user of "default" all; any
// other user its own company; an owner always its own devices.
func visibleTo(login string, c *callstore.Call) bool {
	switch login {
	case "admin", "sysadmin", "alice":
		return true
	case "acme-admin", "bob":
		return c.DeviceCompany == "acme" || c.OwnerLogin == login
	}
	panic("unknown login " + login)
}

// xferSeenBy keeps the xfer_data legs the login may see: a reference to a
// call is shown only to those who may see the call.
func xferSeenBy(login string, legs []callstore.XferLeg) []callstore.XferLeg {
	var out []callstore.XferLeg
	for _, l := range legs {
		d, ok := directory.Demo().Device(l.Device)
		if ok && visibleTo(login, &callstore.Call{DeviceRef: &callstore.DeviceRef{DeviceCompany: d.Company, OwnerLogin: d.Owner}}) {
			out = append(out, l)
		}
	}
	return out
}

func (v view) in(c *callstore.Call) bool {
	f := v.filter
	if f != nil {
		if len(f.GetStates()) > 0 && !containsFunc(f.GetStates(), func(s callcontrolv1.State) bool { return int(s) == int(c.State) }) {
			return false
		}
		if len(f.GetUids()) > 0 && !containsFunc(f.GetUids(), func(u int64) bool { return u == c.UID }) {
			return false
		}
		if len(f.GetDevices()) > 0 && !containsFunc(f.GetDevices(), func(d string) bool { return d == c.Device }) {
			return false
		}
		if len(f.GetCompanies()) > 0 && !containsFunc(f.GetCompanies(), func(d string) bool { return d == c.DeviceCompany }) {
			return false
		}
	}
	return visibleTo(v.login, c)
}

func containsFunc[T any](s []T, f func(T) bool) bool {
	for _, x := range s {
		if f(x) {
			return true
		}
	}
	return false
}

// expEvent is one event a watcher must receive.
type expEvent struct {
	typ  callcontrolv1.EventType
	view callcontrolv1.ViewChange
	call *callstore.Call
	xfer []callstore.XferLeg
}

type expBatch struct {
	rev    int64
	events []expEvent
}

// expect projects the recorded revisions after `after` onto a view.
func (tr *truth) expect(v view, after int64) []expBatch {
	prev := map[int64]*callstore.Call{}
	var out []expBatch
	for _, b := range tr.revs {
		var evs []expEvent
		for _, e := range b.Events {
			c := e.Call
			p := prev[c.UID]
			prev[c.UID] = c
			if b.Revision <= after {
				continue
			}
			if f := v.filter; f != nil && len(f.GetEventTypes()) > 0 &&
				!containsFunc(f.GetEventTypes(), func(t callcontrolv1.EventType) bool { return int(t) == int(e.Type) }) {
				continue
			}
			wasIn, isIn := p != nil && v.in(p), v.in(c)
			var vc callcontrolv1.ViewChange
			switch {
			case wasIn && isIn:
				vc = callcontrolv1.ViewChange_VIEW_CHANGE_STAYED
			case isIn:
				vc = callcontrolv1.ViewChange_VIEW_CHANGE_ENTERED
			case wasIn:
				vc = callcontrolv1.ViewChange_VIEW_CHANGE_LEFT
			default:
				continue
			}
			evs = append(evs, expEvent{typ: callcontrolv1.EventType(e.Type), view: vc, call: c, xfer: xferSeenBy(v.login, e.Xfer)})
		}
		if len(evs) > 0 {
			out = append(out, expBatch{rev: b.Revision, events: evs})
		}
	}
	return out
}

// ---- comparing what a watcher got with what it must get ----

var stateNames = map[callcontrolv1.State]string{
	callcontrolv1.State_STATE_DOWN: "down", callcontrolv1.State_STATE_DIAL: "dial", callcontrolv1.State_STATE_RING: "ring",
	callcontrolv1.State_STATE_UP: "up", callcontrolv1.State_STATE_HOLD: "hold", callcontrolv1.State_STATE_PARK: "park",
	callcontrolv1.State_STATE_DEAD: "dead",
}

var typeNames = map[callcontrolv1.EventType]string{
	callcontrolv1.EventType_EVENT_TYPE_NEW: "NEW", callcontrolv1.EventType_EVENT_TYPE_UPDATE: "UPDATE",
	callcontrolv1.EventType_EVENT_TYPE_TRANSFER: "TRANSFER",
}

var viewNames = map[callcontrolv1.ViewChange]string{
	callcontrolv1.ViewChange_VIEW_CHANGE_ENTERED: "entered", callcontrolv1.ViewChange_VIEW_CHANGE_STAYED: "stayed",
	callcontrolv1.ViewChange_VIEW_CHANGE_LEFT: "left",
}

// eventString is an event in the notation of pbx's flow tests, plus the
// uid and the view change: "TRANSFER SIP/201 up #3 stayed xfer=[3 5]".
func eventString(typ callcontrolv1.EventType, vc callcontrolv1.ViewChange, c *callcontrolv1.Call) string {
	s := fmt.Sprintf("%s %s %s #%d %s", typeNames[typ], c.GetDevice(), stateNames[c.GetState()], c.GetUid(), viewNames[vc])
	if c.GetCause() != 0 {
		s += fmt.Sprintf(" cause=%d", c.GetCause())
	}
	if xd := c.GetXferData(); xd != nil {
		var uids []string
		for _, r := range xd.GetCalls() {
			uids = append(uids, fmt.Sprint(r.GetUid()))
		}
		s += " xfer=[" + strings.Join(uids, " ") + "]"
	}
	return s
}

func batchString(rev int64, events []string) string {
	return fmt.Sprintf("r%d: %s", rev, strings.Join(events, " | "))
}

func gotStrings(bs []*callcontrolv1.EventBatch) []string {
	var out []string
	for _, b := range bs {
		var evs []string
		for _, e := range b.GetEvents() {
			evs = append(evs, eventString(e.GetType(), e.GetView(), e.GetCall()))
		}
		out = append(out, batchString(b.GetRevision(), evs))
	}
	return out
}

func wantStrings(bs []expBatch) []string {
	var out []string
	for _, b := range bs {
		var evs []string
		for _, e := range b.events {
			c := &callcontrolv1.Call{Uid: e.call.UID, Device: e.call.Device, State: callcontrolv1.State(e.call.State), Cause: e.call.Cause}
			if len(e.xfer) > 0 {
				c.XferData = &callcontrolv1.XferData{}
				for _, l := range e.xfer {
					c.XferData.Calls = append(c.XferData.Calls, &callcontrolv1.CallRef{Uid: l.UID})
				}
			}
			evs = append(evs, eventString(e.typ, e.view, c))
		}
		out = append(out, batchString(b.rev, evs))
	}
	return out
}

// diffLines reports the first difference of two line lists, with both in
// full for context.
func diffLines(got, want []string) string {
	if strings.Join(got, "\n") == strings.Join(want, "\n") {
		return ""
	}
	return fmt.Sprintf("got:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
}

// ---- status details ----

func statusOf(t *testing.T, err error, want codes.Code) *status.Status {
	t.Helper()
	if err == nil {
		t.Fatalf("got success, want %v", want)
	}
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("not a status error: %v", err)
	}
	if st.Code() != want {
		t.Fatalf("got %v (%s), want %v", st.Code(), st.Message(), want)
	}
	return st
}

func detail[T proto.Message](st *status.Status) (T, bool) {
	var zero T
	for _, d := range st.Details() {
		if m, ok := d.(T); ok {
			return m, true
		}
	}
	return zero, false
}

func errorInfo(t *testing.T, st *status.Status) *errdetails.ErrorInfo {
	t.Helper()
	ei, ok := detail[*errdetails.ErrorInfo](st)
	if !ok {
		t.Fatalf("%v %q: no ErrorInfo in %v", st.Code(), st.Message(), st.Details())
	}
	return ei
}

// badRequestFields returns the fields a BadRequest names, sorted.
func badRequestFields(t *testing.T, st *status.Status) []string {
	t.Helper()
	br, ok := detail[*errdetails.BadRequest](st)
	if !ok {
		t.Fatalf("%v %q: no BadRequest in %v", st.Code(), st.Message(), st.Details())
	}
	var fields []string
	for _, v := range br.GetFieldViolations() {
		fields = append(fields, v.GetField())
	}
	sort.Strings(fields)
	return fields
}
