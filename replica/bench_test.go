package replica

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"callcontrold/callstore"
	"callcontrold/directory"
)

// BenchmarkTransitions measures transitions through the log and the
// commit→receive latency seen by a watcher on a follower's store, beside
// a single process's store in the same run: "single" commits to a store
// and a watcher on it receives; "r3" appends through the leader's
// pipeline to an R3 stream of a 3-node NATS cluster on loopback, and a
// watcher on a second replica's store receives. benchClients callers
// commit at once, as concurrent RPCs do: each takes the engine's place
// (one lock around the commit, as the engine holds its lock), then waits
// for its operation to be stored, as the switch does before it answers.
// Each op is one revision (a leg's NEW, then its end). Reported:
// transitions/s, p50 and p99 commit→receive.
func BenchmarkTransitions(b *testing.B) {
	b.Run("single", func(b *testing.B) {
		s := callstore.New(callstore.Options{})
		defer s.Close()
		benchTransitions(b, s, s.Commit, nil)
	})
	b.Run("r3", func(b *testing.B) {
		nc := startNATSCluster(b, 3)
		dir := directory.Demo()
		open := func(id string) *Node {
			n, err := Open(context.Background(), replicaConfig(nc.url(), id, "127.0.0.1:1", dir))
			if err != nil {
				b.Fatal(err)
			}
			if err := n.Run(context.Background()); err != nil {
				b.Fatal(err)
			}
			return n
		}
		leader := open("leader")
		defer leader.Close()
		deadline := time.Now().Add(30 * time.Second)
		for !leader.Leading() {
			if time.Now().After(deadline) {
				b.Fatal("no lease")
			}
			time.Sleep(10 * time.Millisecond)
		}
		follower := open("follower")
		defer follower.Close()
		p := leader.pipeline()
		benchTransitions(b, follower.Store(), func(ch ...callstore.Change) (int64, error) { return p.append(nil, ch...) }, func() error { return p.sync(context.Background()) })
	})
}

// benchClients is how many callers commit at once in BenchmarkTransitions.
const benchClients = 32

// benchTransitions commits b.N revisions through commit, from
// benchClients callers, and measures when a watcher on store receives
// each. await, if not nil, is what a caller waits on after its commit.
func benchTransitions(b *testing.B, store *callstore.Store, commit func(...callstore.Change) (int64, error), await func() error) {
	w, _, _, err := store.Watch(callstore.WatchRequest{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	rev0 := store.Revision()
	recv := make([]time.Time, b.N)
	var werr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the receiving watcher
		defer wg.Done()
		var batches []callstore.Batch
		for got := 0; got < b.N; {
			<-w.Ready()
			var err error
			batches, _, err = w.Drain(batches[:0])
			now := time.Now()
			for _, bt := range batches {
				if i := bt.Revision - rev0 - 1; i >= 0 && i < int64(b.N) {
					recv[i] = now
					got++
				}
			}
			if err != nil {
				werr = err
				return
			}
		}
	}()
	var engine sync.Mutex // the engine's lock: commits in revision order
	sent := make([]time.Time, b.N)
	base := time.Now().UnixNano() % 1e9 * 1000 // uids above any the engine handed out
	errs := make(chan error, benchClients)
	b.ResetTimer()
	t0 := time.Now()
	var clients sync.WaitGroup
	for k := range benchClients {
		clients.Add(1)
		go func() {
			defer clients.Done()
			errs <- benchClient(b.N, k, base, &engine, sent, rev0, commit, await)
		}()
	}
	clients.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	elapsed := time.Since(t0)
	b.StopTimer()
	if werr != nil {
		b.Fatalf("watcher: %v", werr)
	}
	lat := make([]time.Duration, b.N)
	for i := range lat {
		lat[i] = recv[i].Sub(sent[i])
	}
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "transitions/s")
	b.ReportMetric(float64(lat[b.N/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[b.N*99/100].Microseconds())/1000, "p99-ms")
}

// benchClient is caller k of benchClients: it commits ops k, k+clients,
// ... of n, on legs of its own (a NEW, then its DEAD, and again), and
// records when it committed each revision.
func benchClient(n, k int, base int64, engine *sync.Mutex, sent []time.Time, rev0 int64,
	commit func(...callstore.Change) (int64, error), await func() error) error {
	var c *callstore.Call
	for i := k; i < n; i += benchClients {
		var ch callstore.Change
		if c == nil || c.State == callstore.StateDead {
			uid := base + int64(i) + 1
			c = &callstore.Call{UID: uid, ID: fmt.Sprint(uid), DeviceRef: &callstore.DeviceRef{Device: "SIP/201", DeviceCompany: "default"}, State: callstore.StateRing, NRState: callstore.NRRinging}
			ch = callstore.Change{Type: callstore.EventNew, Call: c}
		} else {
			d := *c
			d.State, d.NRState = callstore.StateDead, callstore.NRDead
			c, ch = &d, callstore.Change{Type: callstore.EventUpdate, Call: &d}
		}
		engine.Lock()
		t := time.Now()
		rev, err := commit(ch)
		if err == nil && rev > rev0 && rev-rev0 <= int64(len(sent)) {
			sent[rev-rev0-1] = t
		}
		engine.Unlock()
		if err != nil {
			return fmt.Errorf("op %d: %w", i, err)
		}
		if await != nil {
			if err := await(); err != nil {
				return fmt.Errorf("op %d: %w", i, err)
			}
		}
	}
	return nil
}
