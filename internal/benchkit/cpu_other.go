//go:build !unix

package benchkit

import "time"

// ProcessCPU: not measured here.
func ProcessCPU() time.Duration { return 0 }
