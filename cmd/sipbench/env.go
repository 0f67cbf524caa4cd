package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"callcontrold/callstore"
	"callcontrold/directory"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/internal/benchserver"
	"callcontrold/pbx"
	"callcontrold/pbx/sip"
	"callcontrold/server"
)

// adminToken is the watcher's bearer token in the benchmark directory.
const adminToken = "bench-admin"

// The benchmark's devices: callee i is SIP/<2000+i> (its extension and
// SIP user are 2000+i), the caller is SIP/3000; every password is
// "bench-<user>".
func calleeUser(i int) string     { return fmt.Sprint(2000 + i) }
func password(user string) string { return "bench-" + user }

const callerUser = "3000"

// callerCalls bounds the caller's calls in progress (its SIP dialogs and
// the legs it originates): it places every call of the run, like a
// gateway, where a desk phone has a handful.
const callerCalls = 64

// benchDirectory is company default with an admin login (the watcher),
// n callee devices with an extension each, and the caller device.
func benchDirectory(n int) (*directory.Directory, error) {
	var b strings.Builder
	tok := sha256.Sum256([]byte(adminToken))
	fmt.Fprintf(&b, "companies:\n  - {name: default, display_name: Default company}\n")
	fmt.Fprintf(&b, "users:\n  - {id: 1, login: admin, name: Bench admin, role: admin, company: default, token_sha256: [%s]}\n", hex.EncodeToString(tok[:]))
	fmt.Fprintf(&b, "devices:\n")
	ha1 := func(u string) string { return directory.SIPHA1MD5(u, directory.DefaultSIPRealm, password(u)) }
	for i := range n {
		u := calleeUser(i)
		fmt.Fprintf(&b, "  - {name: SIP/%s, display_name: Bench %s, company: default, features: [answer, hold, talk], extension: %q, sip: {ha1_md5: %s}}\n", u, u, u, ha1(u))
	}
	fmt.Fprintf(&b, "  - {name: SIP/%s, display_name: Bench caller, company: default, features: [answer, hold, talk], sip: {ha1_md5: %s, max_dialogs: %d}}\n", callerUser, ha1(callerUser), callerCalls)
	fmt.Fprintf(&b, "extensions:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - {number: %q, company: default, name: Bench %s, type: device, members: [SIP/%s]}\n", calleeUser(i), calleeUser(i), calleeUser(i))
	}
	return directory.Parse([]byte(b.String()), "sipbench directory")
}

// switchEnv is callcontrold with the sip switch, in this process: the
// real store, engine, B2BUA, registrar, authenticator, interceptors and
// services, gRPC on a loopback listener, SIP on another. Logs are
// discarded (at info level, so the interceptors still format them).
type switchEnv struct {
	store *callstore.Store
	sw    *sip.Switch
	srv   *benchserver.Server
	cc    *grpc.ClientConn

	answers *answerLog
}

func newSwitchEnv(dir *directory.Directory) (*switchEnv, error) {
	log := benchserver.Logger()
	e := &switchEnv{answers: newAnswerLog()}
	e.store = callstore.New(callstore.Options{})
	var err error
	e.sw, err = sip.NewSwitch(dir, e.store, sip.Config{
		Addr:     "127.0.0.1:0",
		Engine:   pbx.Options{Logger: log, MaxCallsPerDevice: callerCalls},
		Logger:   log,
		OnAnswer: e.answers.answered,
	})
	if err != nil {
		e.close()
		return nil, err
	}
	e.srv, err = benchserver.New(server.Config{}, server.Deps{
		Store: e.store, Directory: dir, Switch: e.sw, Devices: e.sw, Logger: log,
	})
	if err == nil {
		err = e.srv.ServeLoopback()
	}
	if err == nil {
		e.cc, err = grpc.NewClient(e.srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *switchEnv) close() {
	if e.cc != nil {
		_ = e.cc.Close()
	}
	if e.srv != nil {
		e.srv.Close()
	}
	if e.sw != nil {
		_ = e.sw.Close()
	}
	if e.store != nil {
		e.store.Close()
	}
}

// answerLog pairs the two ends of "200 OK → WatchCalls event", both
// read from this process's clock: when the B2BUA received a callee's
// 2xx (sip.Config.OnAnswer), and when the watcher received the event
// that shows that leg up.
type answerLog struct {
	mu     sync.Mutex
	answer map[int64]time.Time
	event  map[int64]time.Time
	seen   chan struct{} // a new pair may be complete
}

func newAnswerLog() *answerLog {
	return &answerLog{answer: map[int64]time.Time{}, event: map[int64]time.Time{}, seen: make(chan struct{}, 1)}
}

func (a *answerLog) answered(uid int64, at time.Time) {
	a.mu.Lock()
	if _, dup := a.answer[uid]; !dup {
		a.answer[uid] = at
	}
	a.mu.Unlock()
	a.poke()
}

func (a *answerLog) up(uid int64, at time.Time) {
	a.mu.Lock()
	if _, dup := a.event[uid]; !dup {
		a.event[uid] = at
	}
	a.mu.Unlock()
	a.poke()
}

func (a *answerLog) poke() {
	select {
	case a.seen <- struct{}{}:
	default:
	}
}

// pairs returns the latency of every answer whose event arrived, and
// how many answers have none yet.
func (a *answerLog) pairs() (lat []time.Duration, unmatched int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for uid, at := range a.answer {
		ev, ok := a.event[uid]
		if !ok {
			unmatched++
			continue
		}
		lat = append(lat, ev.Sub(at))
	}
	return lat, unmatched
}

// settle waits until every answer has its event, or until limit.
func (a *answerLog) settle(limit time.Duration) {
	deadline := time.After(limit)
	for {
		if _, n := a.pairs(); n == 0 {
			return
		}
		select {
		case <-a.seen:
		case <-deadline:
			return
		}
	}
}

// watch runs a WatchCalls stream as admin, filtered to the callee
// devices, from now on (no snapshot), and notes the receive time of the
// first event that shows each leg up. It returns once the stream has
// started; the stream ends with ctx.
func (e *switchEnv) watch(ctx context.Context, devices []string) (<-chan error, error) {
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+adminToken)
	stream, err := callcontrolv1.NewCallControlServiceClient(e.cc).WatchCalls(ctx, &callcontrolv1.WatchCallsRequest{
		Filter:       &callcontrolv1.CallFilter{Devices: devices},
		SkipSnapshot: true,
	})
	if err != nil {
		return nil, err
	}
	first, err := stream.Recv()
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	if first.GetStarted() == nil {
		return nil, fmt.Errorf("watch: first frame is %T, want started", first.GetFrame())
	}
	done := make(chan error, 1)
	go func() {
		for {
			f, err := stream.Recv()
			if err != nil {
				if ctx.Err() != nil {
					err = nil
				}
				done <- err
				return
			}
			now := time.Now()
			for _, ev := range f.GetEvents().GetEvents() {
				if c := ev.GetCall(); c.GetState() == callcontrolv1.State_STATE_UP {
					e.answers.up(c.GetUid(), now)
				}
			}
		}
	}()
	return done, nil
}

// liveLegs is how many legs the store still holds.
func (e *switchEnv) liveLegs() int {
	live, _ := e.store.List(nil, nil, 0, 0)
	return len(live)
}

// waitRegistered waits until every device has a live binding.
func (e *switchEnv) waitRegistered(devices []string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for _, d := range devices {
		for !e.sw.Registrar.Up(d) {
			if time.Now().After(deadline) {
				return errors.New(d + " did not register")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}
