//go:build !unix

package main

import "time"

// processCPU: not measured here.
func processCPU() time.Duration { return 0 }
