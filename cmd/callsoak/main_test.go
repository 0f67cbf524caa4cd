package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// series builds samples whose RSS and heap follow f(i).
func series(n int, f func(i int) uint64) []sample {
	var ss []sample
	for i := range n {
		ss = append(ss, sample{At: time.Duration(i) * time.Second, RSS: f(i), Heap: f(i) / 4, Live: f(i) / 8, Goroutines: 1100})
	}
	return ss
}

func TestJudge(t *testing.T) {
	// Warm-up growth (the first 30%) and wobble around a steady state: flat.
	steady := series(20, func(i int) uint64 {
		if i < 6 {
			return uint64(10+5*i) << 20
		}
		return uint64(30+i%3) << 20
	})
	if v := judge(steady, 0.10); !v.flat {
		t.Errorf("steady state judged not flat: %s", v.text)
	}
	// A steady climb after the warm-up: not flat.
	leak := series(20, func(i int) uint64 { return uint64(30+2*i) << 20 })
	if v := judge(leak, 0.10); v.flat || !strings.Contains(v.text, "RSS") {
		t.Errorf("growing memory judged flat: %s", v.text)
	}
	// Goroutines that pile up: not flat.
	g := series(20, func(int) uint64 { return 30 << 20 })
	for i := range g {
		g[i].Goroutines = 1100 + 10*i
	}
	if v := judge(g, 0.10); v.flat || !strings.Contains(v.text, "goroutines") {
		t.Errorf("growing goroutines judged flat: %s", v.text)
	}
	if v := judge(series(7, func(int) uint64 { return 1 }), 0.10); v.flat || !strings.Contains(v.text, "not judged") {
		t.Errorf("7 samples: %s", v.text)
	}
}

func TestFrameRevision(t *testing.T) {
	for _, tc := range []struct {
		frame *callcontrolv1.WatchCallsResponse
		rev   int64
		ok    bool
	}{
		{&callcontrolv1.WatchCallsResponse{Frame: &callcontrolv1.WatchCallsResponse_Started{Started: &callcontrolv1.WatchStarted{HistoryWindow: 9, Revision: 41}}}, 41, true},
		{&callcontrolv1.WatchCallsResponse{Frame: &callcontrolv1.WatchCallsResponse_Events{Events: &callcontrolv1.EventBatch{Revision: 42, ResumeToken: "t",
			Events: []*callcontrolv1.CallEvent{{Call: &callcontrolv1.Call{Uid: 7}}}}}}, 42, true},
		{&callcontrolv1.WatchCallsResponse{Frame: &callcontrolv1.WatchCallsResponse_Progress{Progress: &callcontrolv1.Progress{Revision: 43}}}, 43, true},
		{&callcontrolv1.WatchCallsResponse{Frame: &callcontrolv1.WatchCallsResponse_Snapshot{Snapshot: &callcontrolv1.SnapshotChunk{}}}, 0, false},
	} {
		b, err := proto.Marshal(tc.frame)
		if err != nil {
			t.Fatal(err)
		}
		if rev, ok := frameRevision(b); rev != tc.rev || ok != tc.ok {
			t.Errorf("%v: revision %d, %v; want %d, %v", tc.frame, rev, ok, tc.rev, tc.ok)
		}
	}
}

func TestParseFlags(t *testing.T) {
	c, err := parseFlags([]string{"--smoke"}, &bytes.Buffer{})
	if err != nil || c.duration > 10*time.Second || c.filtered+c.unfiltered+c.slow > 100 {
		t.Errorf("--smoke: %+v, %v", c, err)
	}
	for _, bad := range [][]string{{"--interval", "0"}, {"--duration", "1s", "--interval", "2s"}, {"--unfiltered", "0"}, {"--demo-traffic", "0"}, {"extra"}} {
		if _, err := parseFlags(bad, &bytes.Buffer{}); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
