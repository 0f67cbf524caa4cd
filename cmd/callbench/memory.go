package main

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"time"

	"callcontrold/internal/benchkit"
)

type memoryConfig struct {
	calls      int
	profileDir string // non-empty: write heap-memory.pprof there
}

type memoryResult struct {
	Calls          int     `json:"live_calls"`
	HeapBefore     uint64  `json:"heap_before_bytes"`
	HeapAfter      uint64  `json:"heap_after_bytes"`
	HeapPerCall    float64 `json:"heap_bytes_per_call"`
	RSSBefore      uint64  `json:"rss_before_bytes"`
	RSSAfter       uint64  `json:"rss_after_bytes"`
	RSSPerCall     float64 `json:"rss_bytes_per_call"`
	SetupSeconds   float64 `json:"setup_seconds"`
	Goroutines     int     `json:"goroutines"`
	CallsPerDevice int     `json:"calls_per_device"`
}

// runMemory places calls live legs through the simulated switch of a
// running server (outgoing calls to an external number, answered by the
// far end: one up leg each, spread over the fan-out devices) and reports
// the heap they hold after a GC: the store's legs and indexes, history,
// and the switch's own per-leg state. Both readings return freed memory
// to the OS first (serverMemory): the scenarios before this one leave
// pages resident that the runtime would give back while the calls are
// placed, and the resident set's delta came out negative.
func runMemory(ctx context.Context, e *env, cfg memoryConfig) (*memoryResult, error) {
	read := func() (heap, rss uint64) {
		heap, _, _, rss = serverMemory()
		return heap, rss
	}
	res := &memoryResult{Calls: cfg.calls, CallsPerDevice: memCallsPerDev}
	res.HeapBefore, res.RSSBefore = read()
	t := time.Now()
	for i := range cfg.calls {
		if _, err := e.upCall(ctx, fanoutDevice(i%spreadDevices)); err != nil {
			return nil, err
		}
	}
	res.SetupSeconds = time.Since(t).Seconds()
	if n := e.store.Len(); n != cfg.calls {
		return nil, fmt.Errorf("memory: %d live legs, want %d", n, cfg.calls)
	}
	res.HeapAfter, res.RSSAfter = read()
	res.Goroutines = runtime.NumGoroutine()
	res.HeapPerCall = (float64(res.HeapAfter) - float64(res.HeapBefore)) / float64(cfg.calls)
	res.RSSPerCall = (float64(res.RSSAfter) - float64(res.RSSBefore)) / float64(cfg.calls)
	if cfg.profileDir != "" {
		if err := benchkit.WriteProfile(filepath.Join(cfg.profileDir, "heap-memory.pprof"), "heap", 0); err != nil {
			return nil, err
		}
	}
	return res, nil
}
