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
// appender to an R3 stream of a 3-node NATS cluster on loopback, and a
// watcher on a second replica's store receives. Each op is one revision
// (a leg's NEW, then its end). Reported: transitions/s, p50 and p99
// commit→receive.
func BenchmarkTransitions(b *testing.B) {
	b.Run("single", func(b *testing.B) {
		s := callstore.New(callstore.Options{})
		defer s.Close()
		benchTransitions(b, s, s.Commit)
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
		leader.mu.Lock()
		appendOp := leader.appender(leader.leading)
		leader.mu.Unlock()
		benchTransitions(b, follower.Store(), appendOp)
	})
}

// benchTransitions commits b.N revisions through commit and measures when
// a watcher on store receives each.
func benchTransitions(b *testing.B, store *callstore.Store, commit func(...callstore.Change) (int64, error)) {
	w, _, _, err := store.Watch(callstore.WatchRequest{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	recv := make([]time.Time, 0, b.N)
	var werr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the receiving watcher
		defer wg.Done()
		var batches []callstore.Batch
		for len(recv) < b.N {
			<-w.Ready()
			var err error
			batches, _, err = w.Drain(batches[:0])
			now := time.Now()
			for range batches {
				recv = append(recv, now)
			}
			if err != nil {
				werr = err
				return
			}
		}
	}()
	sent := make([]time.Time, b.N)
	base := time.Now().UnixNano() % 1e9 * 1000 // uids above any the engine handed out
	b.ResetTimer()
	t0 := time.Now()
	for i := range b.N {
		uid := base + int64(i/2) + 1
		c := &callstore.Call{UID: uid, ID: fmt.Sprint(uid), Device: "SIP/201", DeviceCompany: "default", State: callstore.StateRing, NRState: callstore.NRRinging}
		ch := callstore.Change{Type: callstore.EventNew, Call: c}
		if i%2 == 1 {
			d := *c
			d.State, d.NRState = callstore.StateDead, callstore.NRDead
			ch = callstore.Change{Type: callstore.EventUpdate, Call: &d}
		}
		sent[i] = time.Now()
		if _, err := commit(ch); err != nil {
			b.Fatalf("op %d: %v", i, err)
		}
	}
	wg.Wait()
	elapsed := time.Since(t0)
	b.StopTimer()
	if len(recv) < b.N {
		b.Fatalf("watcher received %d of %d revisions: %v", len(recv), b.N, werr)
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
