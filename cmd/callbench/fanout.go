package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"

	"callcontrold/callstore"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

type fanoutConfig struct {
	filtered   int     // watchers filtered to one device each
	unfiltered int     // watchers of everything
	conns      int     // client connections the watchers share
	rate       float64 // transitions (revisions) per second
	duration   time.Duration
	warmup     time.Duration // committed and checked, not in the latency figures
}

type fanoutResult struct {
	Filtered      int     `json:"filtered_watchers"`
	Unfiltered    int     `json:"unfiltered_watchers"`
	Conns         int     `json:"connections"`
	TargetRate    float64 `json:"target_transitions_per_second"`
	Rate          float64 `json:"transitions_per_second"`
	Commits       int64   `json:"commits"`
	Expected      uint64  `json:"expected_deliveries"`
	Received      uint64  `json:"received_deliveries"`
	Dropped       uint64  `json:"dropped"`
	Unexpected    uint64  `json:"unexpected"`
	Failures      int     `json:"watcher_failures"`
	FirstError    string  `json:"first_error,omitempty"`
	DeliveriesSec float64 `json:"deliveries_per_second"`
	Latency       latency `json:"commit_to_receive"`
}

// fanWatcher is one watch of the fan-out scenario.
type fanWatcher struct {
	device string // "" for an unfiltered watcher
	s      grpc.ClientStream
	revs   []int64 // received revisions, in order
	last   atomic.Int64
	err    error
}

// runFanout commits transitions straight to the store of a running server
// at a fixed rate while filtered watchers (one device each) and unfiltered
// ones stream them over gRPC; the driver is the store's only writer, so it
// knows each revision before committing it and notes the time just before
// the commit. Every watcher's received revisions are compared with what
// was committed for its filter: a missing one is dropped.
func runFanout(ctx context.Context, e *env, cfg fanoutConfig) (*fanoutResult, error) {
	if cfg.filtered > fanoutDevices {
		return nil, fmt.Errorf("fanout: %d filtered watchers > %d devices", cfg.filtered, fanoutDevices)
	}
	conns := make([]*grpc.ClientConn, cfg.conns)
	for i := range conns {
		cc, err := e.dial()
		if err != nil {
			return nil, err
		}
		conns[i] = cc
	}
	wctx, cancel := context.WithCancel(withToken(ctx, adminToken))
	defer cancel()
	ws := make([]*fanWatcher, 0, cfg.filtered+cfg.unfiltered)
	for i := range cfg.filtered + cfg.unfiltered {
		w := &fanWatcher{}
		req := &callcontrolv1.WatchCallsRequest{SkipSnapshot: true}
		if i < cfg.filtered {
			w.device = fanoutDevice(i)
			req.Filter = &callcontrolv1.CallFilter{Devices: []string{w.device}}
		}
		s, rev, err := openWatch(wctx, conns[i%len(conns)], req)
		if err != nil {
			return nil, fmt.Errorf("open watch %d: %w", i, err)
		}
		w.s = s
		w.last.Store(rev)
		ws = append(ws, w)
	}

	base := e.store.Revision()
	total := int(cfg.rate*(cfg.warmup+cfg.duration).Seconds()) + 1
	commitAt := make([]atomic.Int64, total+1) // by revision - base
	var markRev atomic.Int64                  // latencies count from this revision on
	markRev.Store(1 << 62)
	var lat hist

	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() {
			var m rawMsg
			for {
				err := w.s.RecvMsg(&m)
				now := time.Now().UnixNano()
				var kind protowire.Number
				var rev int64
				if err == nil {
					kind, rev, _, err = parseFrame(m.b)
				}
				if err != nil {
					if !ended(wctx, err) {
						w.err = err
					}
					return
				}
				if kind != frameEvents {
					continue
				}
				if i := rev - base; i > 0 && i < int64(len(commitAt)) && rev >= markRev.Load() {
					lat.record(time.Duration(now - commitAt[i].Load()))
				}
				w.revs = append(w.revs, rev)
				w.last.Store(rev)
			}
		})
	}

	// The driver: device k%filtered's leg moves ring → up → hold → up →
	// dead, then a new leg starts; one leg change per revision.
	devs := cfg.filtered
	if devs == 0 {
		devs = 1
	}
	committed := make([][]int64, devs)
	cur := make([]*callstore.Call, devs)
	step := make([]int, devs)
	interval := time.Duration(float64(time.Second) / cfg.rate)
	start := time.Now()
	due := start
	var derr error
	n := 0
	for ; n < total; n++ {
		if now := time.Now(); due.After(now) {
			time.Sleep(due.Sub(now))
		}
		if n == int(cfg.rate*cfg.warmup.Seconds()) {
			markRev.Store(base + int64(n) + 1)
		}
		due = due.Add(interval)
		d := n % devs
		ch := nextTransition(e.store, cur[d], &step[d], fanoutDevice(d))
		rev := base + int64(n) + 1
		commitAt[n+1].Store(time.Now().UnixNano())
		got, err := e.store.Commit(ch)
		if err != nil {
			derr = err
			break
		}
		if got != rev {
			derr = fmt.Errorf("fanout: committed revision %d, expected %d: another writer?", got, rev)
			break
		}
		cur[d] = ch.Call
		if ch.Call.State == callstore.StateDead {
			cur[d] = nil
		}
		committed[d] = append(committed[d], rev)
	}
	elapsed := time.Since(start)
	end := base + int64(n)

	// Let every watcher catch up (or give up after a while), then stop.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		done := true
		for i, w := range ws {
			want := end
			if w.device != "" {
				if c := committed[i]; len(c) > 0 {
					want = c[len(c)-1]
				} else {
					want = 0
				}
			}
			if w.last.Load() < want {
				done = false
				break
			}
		}
		if done {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	if derr != nil {
		return nil, derr
	}

	res := &fanoutResult{
		Filtered: cfg.filtered, Unfiltered: cfg.unfiltered, Conns: cfg.conns,
		TargetRate: cfg.rate, Rate: float64(n) / elapsed.Seconds(), Commits: int64(n),
		Latency: lat.summary(),
	}
	all := make([]int64, n)
	for i := range all {
		all[i] = base + int64(i) + 1
	}
	for i, w := range ws {
		if w.err != nil {
			res.Failures++
		}
		want := all
		if w.device != "" {
			want = committed[i]
		}
		missing, extra := compareRevs(want, w.revs)
		res.Expected += uint64(len(want))
		res.Received += uint64(len(w.revs))
		res.Dropped += uint64(missing)
		res.Unexpected += uint64(extra)
	}
	res.DeliveriesSec = float64(res.Received) / elapsed.Seconds()
	if res.Failures > 0 {
		// Reported, not fatal: a watcher that fell behind the retained
		// history (OUT_OF_RANGE) is part of what this scenario measures.
		res.FirstError = firstErr(ws).Error()
	}
	return res, nil
}

func firstErr(ws []*fanWatcher) error {
	for _, w := range ws {
		if w.err != nil {
			return w.err
		}
	}
	return nil
}

// compareRevs counts the revisions of want (ascending) missing from got,
// and those of got that are not in want or repeat one (duplicates, or
// revisions of another device).
func compareRevs(want, got []int64) (missing, extra int) {
	seen := make(map[int64]bool, len(got))
	for _, r := range got {
		if seen[r] {
			extra++
		}
		seen[r] = true
	}
	for _, r := range want {
		if !seen[r] {
			missing++
		}
		delete(seen, r)
	}
	return missing, extra + len(seen)
}

// nextTransition returns the next change of device's leg: a new ringing
// leg, then up, hold, up, dead.
func nextTransition(s *callstore.Store, c *callstore.Call, step *int, device string) callstore.Change {
	now := time.Now()
	if c == nil {
		uid := s.NewUID()
		*step = 0
		return callstore.Change{Type: callstore.EventNew, Call: &callstore.Call{
			UID: uid, ID: "bench-" + strconv.FormatInt(uid, 10), CID: "c" + strconv.FormatInt(uid, 10),
			Device: device, DeviceCompany: "default", OwnerID: 2, OwnerLogin: "load",
			Name: "Remote party", Number: extNumber, StampMillis: now.UnixMilli(),
			Party: callstore.PartyCallee, Features: callstore.FeatureAnswer,
			State: callstore.StateRing, NRState: callstore.NRRinging,
		}}
	}
	n := *c
	*step++
	switch *step {
	case 1, 3:
		n.State, n.NRState, n.Features = callstore.StateUp, callstore.NRUp, callstore.FeatureHold
		if n.StartMillis == 0 {
			n.StartMillis = now.UnixMilli()
		}
	case 2:
		n.State, n.NRState, n.Features = callstore.StateHold, callstore.NRHold, callstore.FeatureTalk
	default:
		n.State, n.NRState, n.Features = callstore.StateDead, callstore.NRDead, 0
		n.Cause, n.CauseTxt = 16, "Normal Clearing"
	}
	return callstore.Change{Type: callstore.EventUpdate, Call: &n}
}
